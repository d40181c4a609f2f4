"""Refine the particles of a finished search: the Python API behind ``difftm refine``.

:func:`refine_particles` reads the search folder (its ``config.yaml`` gives the micrograph,
the template, the CTF and every preparation setting; ``results.npz`` the per-pixel mean and
sigma maps), the particle table (as ``difftm peaks`` wrote it, or any RELION particles STAR
with centres, Euler angles and defocus), refines every particle with the gradient or grid
optimiser of :mod:`difftm.refine.optimize`, and returns one table with the starting and
refined values side by side: SNR (the search's units), z-score against the search's
per-pixel mean and sigma at the refined centre, -ln p of the 2DTM p-value (the model fitted
on every searched pixel of the run, region q1), and the change in angle, shift and defocus.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from difftm.geometry.euler import euler_to_matrix, matrix_to_euler, rotation_angle_deg
from difftm.refine.optimize import (
    GradientSchedule,
    Refined,
    pixel_size_scan,
    refine_gradient,
    refine_grid,
)
from difftm.refine.scorer import ParticleScorer

#: Columns a particle table needs (plain names of :mod:`difftm.io.star`).
REQUIRED = ("x", "y", "rot", "tilt", "psi")


@dataclass
class RefineRun:
    """A refined particle table and what produced it."""

    table: pd.DataFrame
    refined: Refined
    method: str
    config: object  # SearchConfig
    metadata: dict
    #: ``(template voxel sizes, mean refined SNR)`` of the pixel-size scan, if one ran
    pixel_size_scan: tuple[np.ndarray, np.ndarray] | None = None


def load_particles(path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(optics, particles)`` of a STAR file, particles with plain column names.

    Raises:
        ValueError: a required column is missing (one line naming the file and the column).
    """
    from difftm.io.star import particles_to_plain, read_particles_star

    optics, particles = read_particles_star(path)
    plain = particles_to_plain(particles)
    for name in REQUIRED:
        if name not in plain.columns:
            from difftm.io.star import PLAIN_TO_STAR

            raise ValueError(f"{path}: particle table has no {PLAIN_TO_STAR[name]} column")
    if len(plain) == 0:
        raise ValueError(f"{path}: the particle table is empty")
    check_particle_values(path, plain)
    return optics, plain.reset_index(drop=True)


def check_particle_values(path: Path, plain: pd.DataFrame) -> None:
    """Refuse non-finite angles and defoci outside the plausible range
    (:mod:`difftm.physics.limits`) in one line naming the file, the row and the column."""
    from difftm.io.star import PLAIN_TO_STAR
    from difftm.physics.limits import PLAUSIBLE, check_range

    ranges = {"defocus_u": PLAUSIBLE["defocus"], "defocus_v": PLAUSIBLE["defocus"],
              "defocus_angle": PLAUSIBLE["defocus_angle"]}
    for column in ("rot", "tilt", "psi", *ranges):
        if column not in plain.columns:
            continue
        values = pd.to_numeric(plain[column], errors="coerce").to_numpy(dtype=float)
        accepted = ranges.get(column)
        bad = ~np.isfinite(values) if accepted is None else ~np.array(
            [accepted.contains(v) for v in values], dtype=bool)
        if bad.any():
            row = int(np.argmax(bad))
            label = PLAIN_TO_STAR.get(column, column)
            n_bad = int(bad.sum())
            what = (f"{path}: row {row + 1}" + (f" (and {n_bad - 1} more)" if n_bad > 1 else "")
                    + f": {label}")
            if accepted is None:
                raise ValueError(f"{what} {plain[column].iloc[row]} is not a finite angle")
            check_range(what, values[row], accepted)


def check_inside(table: pd.DataFrame, shape: tuple[int, int],
                 path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The particles' ``x`` and ``y`` (pixels), refusing any outside an ``(H, W)``
    micrograph.

    Raises:
        ValueError: one line naming ``path``, the count and the first such row.
    """
    h, w = shape
    x = table["x"].to_numpy(float)
    y = table["y"].to_numpy(float)
    outside = (x < 0) | (y < 0) | (x > w - 1) | (y > h - 1) | ~np.isfinite(x) | ~np.isfinite(y)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"{path}: {int(outside.sum())} particle(s) outside the "
                         f"{w} x {h} micrograph (first: row {i + 1} at x={x[i]:g}, y={y[i]:g})")
    return x, y


def refine_particles(
    run: Path,
    particles: Path,
    method: str = "gradient",
    schedule: GradientSchedule | None = None,
    grid_options: dict | None = None,
    refine_defocus: bool = True,
    device: str = "cpu",
    progress=None,
    pixel_size_search: tuple[float, float] | None = None,
) -> RefineRun:
    """Refine the particles of ``particles`` against the search in folder ``run``.

    Args:
        run: output folder of ``difftm search`` (``config.yaml`` and ``results.npz``).
        particles: particle STAR (centres in pixels of that micrograph).
        method: ``gradient`` or ``grid``.
        schedule: gradient schedule (default :class:`GradientSchedule`).
        grid_options: keyword arguments of :func:`refine_grid`.
        refine_defocus: refine per-particle defocus too (gradient).
        device: torch device.
        progress: ``progress(done, total)`` callback.
        pixel_size_search: ``(range, step)`` in Angstrom: after refinement, the mean score of
            all particles for template voxel sizes within +- range of the search's pixel
            size (:func:`difftm.refine.optimize.pixel_size_scan`).

    Returns:
        :class:`RefineRun`.

    Raises:
        FileNotFoundError, ValueError: one line naming the file and the problem.
    """
    from difftm.search.config import load_config
    from difftm.search.engine import _load_inputs, resolve_pixel_size
    from difftm.search.results import load_results

    if method not in ("gradient", "grid"):
        raise ValueError(f"--method must be gradient or grid, got {method!r}")
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run}: not a search output folder (no config.yaml)")
    result = load_results(run)
    cfg = resolve_pixel_size(load_config(run / "config.yaml", {}))
    _, table = load_particles(Path(particles))
    h, w = result.maps["snr"].shape
    x, y = check_inside(table, (h, w), Path(particles))
    image, volume = _load_inputs(cfg)
    scorer = ParticleScorer.from_search(cfg, image, volume, device=device)
    centres = torch.tensor(np.stack([np.rint(x), np.rint(y)], 1).astype(np.int64))
    rot0 = euler_to_matrix(torch.tensor(table[["rot", "tilt", "psi"]].to_numpy(float)))
    du = table["defocus_u"].to_numpy(float) if "defocus_u" in table else np.full(len(x),
                                                                                 cfg.defocus_u)
    dz0 = torch.tensor(du - cfg.defocus_u, dtype=torch.float32)
    if method == "gradient":
        refined = refine_gradient(scorer, centres, rot0.float(), dz0, schedule,
                                  refine_defocus=refine_defocus, progress=progress)
    else:
        refined = refine_grid(scorer, centres, rot0.float(), dz0, progress=progress,
                              **(grid_options or {}))
    out = _refined_table(table, refined, result, cfg, centres, rot0)
    scan = None
    if pixel_size_search is not None:
        half, step = (float(v) for v in pixel_size_search)
        if not (0 < step <= half < cfg.pixel_size and np.isfinite(half)):
            raise ValueError("--pixel-size-search needs 0 < STEP <= RANGE < the pixel size, "
                             f"got {half:g} {step:g}")
        n = int(np.floor(half / step + 1e-9))
        sizes = cfg.pixel_size + step * np.arange(-n, n + 1)
        means = pixel_size_scan(scorer, centres, refined.rotations, refined.shifts,
                                refined.defocus_offsets, sizes)
        scan = (sizes, means)
    return RefineRun(out, refined, method, cfg, result.metadata, scan)


def _refined_table(table, refined: Refined, result, cfg, centres, rot0) -> pd.DataFrame:
    """The particle table with refined centres (the integer start plus the refined shift),
    angles and defocus, and the starting values and changes beside them."""
    out = table.copy()
    shifts = refined.shifts.numpy()
    new_x = centres[:, 0].numpy() + shifts[:, 0]
    new_y = centres[:, 1].numpy() + shifts[:, 1]
    eul = matrix_to_euler(refined.rotations).numpy()
    h, w = result.maps["snr"].shape
    iy = np.clip(np.rint(new_y).astype(int), 0, h - 1)
    ix = np.clip(np.rint(new_x).astype(int), 0, w - 1)
    mean = result.maps["mean"][iy, ix].astype(float)
    sigma = np.maximum(result.maps["sigma"][iy, ix].astype(float), 1e-12)
    out["x_before"], out["y_before"] = table["x"].to_numpy(float), table["y"].to_numpy(float)
    for name in ("rot", "tilt", "psi"):
        out[f"{name}_before"] = table[name].to_numpy(float)
    out["x"], out["y"] = new_x, new_y
    out["rot"], out["tilt"], out["psi"] = eul[:, 0], eul[:, 1], eul[:, 2]
    dz = refined.defocus_offsets.numpy()
    dv = cfg.defocus_v_resolved - cfg.defocus_u
    if "defocus_u" in table:
        out["defocus_u_before"] = table["defocus_u"].to_numpy(float)
    out["defocus_u"] = cfg.defocus_u + dz
    out["defocus_v"] = cfg.defocus_u + dv + dz
    out["defocus_angle"] = cfg.defocus_angle
    out["snr_before"] = refined.start_score.numpy()
    out["snr"] = refined.score.numpy()
    out["zscore"] = (out["snr"] - mean) / sigma
    # -ln p (region q1) from the p-value model fitted on every searched pixel of the run, as
    # `difftm peaks --pvalue-candidates all` does
    from difftm.stats.pvalue import fit_pvalue_model

    valid = result.valid_mask()
    model = fit_pvalue_model(result.maps["zscore"][valid], result.maps["snr"][valid])
    out["neg_log_p"] = model.neg_log_p(*model.to_probit(out["zscore"].to_numpy(),
                                                       out["snr"].to_numpy()))
    out["angle_change"] = [float(rotation_angle_deg(refined.rotations[i], rot0[i]))
                           for i in range(len(out))]
    out["shift_change"] = np.hypot(new_x - out["x_before"], new_y - out["y_before"])
    start_du = out["defocus_u_before"] if "defocus_u_before" in out else cfg.defocus_u
    out["defocus_change"] = out["defocus_u"] - start_du
    return out
