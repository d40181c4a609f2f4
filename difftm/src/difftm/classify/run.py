"""Classify the particles of a finished search under several templates: the Python API
behind ``difftm classify``.

Every particle is refined locally under every template with the refine API
(:func:`difftm.refine.optimize.refine_gradient` on a :class:`ParticleScorer` per template,
all starting from the particle table's pose), giving its SNR vector in the search's units;
the Gram matrix of the templates at the refined poses gives the expected relative SNRs and
the noise correlation; :func:`difftm.classify.model.fit_mixture` then fits the class
populations by EM and gives each particle's posteriors (model: docs/CLASSIFY.md).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from difftm.classify.model import MixtureFit, fit_mixture, naive_classes
from difftm.refine.optimize import GradientSchedule, Refined, refine_gradient
from difftm.refine.scorer import ParticleScorer


@dataclass
class ClassifyRun:
    """A classified particle table and what produced it.

    Attributes:
        table: one row per particle: the input columns, ``class`` (1-based MAP class),
            ``posterior_k``, ``snr_k`` (refined SNR under template k, 1-based k),
            ``naive_class``, ``chi2``, and the MAP class's refined centre, angles, defocus
            and SNR in the plain columns (``x``, ``y``, ``rot``, ..., ``snr``).
        fit: the mixture fit.
        snr: (N, K) refined SNRs.
        gram: (N, K, K) template correlations at the refined poses.
        refined: one :class:`Refined` per template.
        config: the search's configuration.
        templates: the template files (or names).
    """

    table: pd.DataFrame
    fit: MixtureFit
    snr: np.ndarray
    gram: np.ndarray
    refined: list[Refined]
    config: object
    templates: list[str]


@torch.no_grad()
def gram_matrices(scorers: Sequence[ParticleScorer], refined: Sequence[Refined],
                  batch_size: int = 256) -> np.ndarray:
    """Correlations ``<t_k, t_l>`` (N, K, K) of the templates at each particle's refined
    poses (rotation, sub-pixel shift and defocus of template k's refinement), with the
    scorer's normalisation (zero mean over the micrograph's grid, unit norm): the noise
    covariance of the K scores and, column by column, their expected relative values.

    Raises:
        ValueError: the templates' padded boxes differ.
    """
    sizes = {s.size for s in scorers}
    if len(sizes) != 1:
        raise ValueError(f"the templates must share one box (padded boxes {sorted(sizes)}); "
                         "simulate them with the same --box")
    n = len(refined[0].score)
    k = len(scorers)
    n_pix = float(scorers[0].n_pixels)
    out = np.empty((n, k, k))
    for b0 in range(0, n, batch_size):
        sl = slice(b0, min(n, b0 + batch_size))
        ts = []
        for scorer, ref in zip(scorers, refined, strict=True):
            t = scorer.templates(ref.rotations[sl].float().to(scorer.device),
                                 ref.defocus_offsets[sl].float().to(scorer.device),
                                 ref.shifts[sl].float().to(scorer.device))
            ts.append(t.double().cpu().reshape(t.shape[0], -1))
        stack = torch.stack(ts, 1)  # (B, K, P*P)
        sums = stack.sum(-1)
        g = stack @ stack.transpose(1, 2) - sums[:, :, None] * sums[:, None, :] / n_pix
        out[sl] = g.numpy()
    return out


def score_under_templates(
    scorers: Sequence[ParticleScorer],
    centres: torch.Tensor,
    rotations: torch.Tensor,
    defocus_offsets: torch.Tensor,
    schedule: GradientSchedule | None = None,
    refine_defocus: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Refined]]:
    """Refine every particle under every template from the same start.

    Args:
        scorers: one scorer per template (same micrograph).
        centres: (N, 2) integer centres (x, y).
        rotations: (N, 3, 3) starting matrices.
        defocus_offsets: (N,) starting defocus offsets, A.
        schedule: gradient schedule (default :class:`GradientSchedule`).
        refine_defocus: refine defocus too.
        progress: ``progress(done, total)`` over particles x templates.

    Returns:
        ``(snr (N, K), gram (N, K, K), refined per template)``.
    """
    n = int(rotations.shape[0])
    k = len(scorers)
    refined = []
    for i, scorer in enumerate(scorers):
        def step(done: int, total: int, i: int = i) -> None:
            if progress is not None:
                progress(i * n + done, k * n)

        refined.append(refine_gradient(scorer, centres, rotations.float(),
                                       defocus_offsets.float(), schedule,
                                       refine_defocus=refine_defocus, progress=step))
    snr = np.stack([r.score.numpy() for r in refined], 1)
    return snr, gram_matrices(scorers, refined), refined


def classify_table(table: pd.DataFrame, snr: np.ndarray, gram: np.ndarray,
                   refined: Sequence[Refined], centres: torch.Tensor, fit: MixtureFit,
                   defocus_u: float, defocus_v: float) -> pd.DataFrame:
    """The particle table with the classification: class (1-based MAP), posteriors, SNR per
    template, the naive class, chi-square, and the MAP class's refined pose."""
    from difftm.geometry.euler import matrix_to_euler

    out = table.copy()
    k = snr.shape[1]
    cls = fit.classes
    rows = np.arange(len(cls))
    for c in range(k):
        out[f"snr_{c + 1}"] = snr[:, c]
        out[f"posterior_{c + 1}"] = fit.posteriors[:, c]
    out["class"] = cls + 1
    out["naive_class"] = naive_classes(snr) + 1
    out["chi2"] = fit.chi2
    rot = torch.stack([refined[c].rotations[j] for j, c in zip(rows, cls, strict=True)])
    eul = matrix_to_euler(rot).numpy()
    shifts = np.stack([refined[c].shifts[j].numpy() for j, c in zip(rows, cls, strict=True)])
    dz = np.array([float(refined[c].defocus_offsets[j]) for j, c in zip(rows, cls,
                                                                       strict=True)])
    out["x"] = centres[:, 0].numpy() + shifts[:, 0]
    out["y"] = centres[:, 1].numpy() + shifts[:, 1]
    out["rot"], out["tilt"], out["psi"] = eul[:, 0], eul[:, 1], eul[:, 2]
    out["defocus_u"] = defocus_u + dz
    out["defocus_v"] = defocus_v + dz
    out["snr"] = snr[rows, cls]
    return out


def load_templates(paths: Sequence[Path], pixel_size: float) -> list[np.ndarray]:
    """Read the templates (cubic 3D MRC of one box) and check their voxel size.

    Raises:
        ValueError: fewer than two, not cubic 3D, constant, non-finite, different boxes, or a
            calibrated voxel size more than 0.5 % from the search's pixel size.
    """
    from difftm.io.mrc import read_mrc
    from difftm.search.engine import PIXEL_SIZE_TOLERANCE

    if len(paths) < 2:
        raise ValueError("--templates needs at least two templates to classify between")
    if len(set(Path(p).resolve() for p in paths)) != len(paths):
        raise ValueError("--templates lists the same file twice")
    vols = []
    for path in paths:
        mrc = read_mrc(path)
        data = np.asarray(mrc.data, dtype=np.float32)
        if data.ndim != 3 or len(set(data.shape)) != 1:
            raise ValueError(f"{path}: expected a cubic 3D template, got shape {data.shape}")
        if not np.isfinite(data).all():
            raise ValueError(f"{path}: contains NaN or infinite values")
        if float(data.max()) == float(data.min()):
            raise ValueError(f"{path}: constant template")
        px = float(mrc.pixel_size)
        if mrc.pixel_size_calibrated and abs(px - pixel_size) > PIXEL_SIZE_TOLERANCE * pixel_size:
            raise ValueError(f"{path}: voxel size {px:g} A differs from the search's pixel "
                             f"size {pixel_size:g} A")
        if vols and data.shape != vols[0].shape:
            raise ValueError(f"{path}: box {data.shape[0]} differs from {paths[0]} "
                             f"({vols[0].shape[0]}); simulate the templates with one --box")
        vols.append(data)
    return vols


def classify_particles(
    run: Path,
    particles: Path,
    templates: Sequence[Path],
    noise: str = "unit",
    schedule: GradientSchedule | None = None,
    refine_defocus: bool = True,
    device: str = "cpu",
    bootstrap: int = 200,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> ClassifyRun:
    """Classify the particles of ``particles`` found by the search in ``run``.

    Args:
        run: output folder of ``difftm search`` (its micrograph, CTF and preparation).
        particles: particle STAR (centres in pixels of that micrograph, Euler angles).
        templates: two or more template MRC files (same box, the search's pixel size,
            one model frame).
        noise: ``unit`` or ``fitted`` (:func:`fit_mixture`).
        schedule: gradient schedule of the per-template refinement.
        refine_defocus: refine defocus too.
        device: torch device.
        bootstrap, seed: bootstrap resamples and seed of the population intervals.
        progress: ``progress(done, total)`` over particles x templates.

    Returns:
        :class:`ClassifyRun`.
    """
    from difftm.geometry.euler import euler_to_matrix
    from difftm.io.mrc import read_mrc
    from difftm.refine.run import check_inside, load_particles
    from difftm.search.config import load_config
    from difftm.search.engine import resolve_pixel_size

    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run}: not a search output folder (no config.yaml)")
    cfg = resolve_pixel_size(load_config(run / "config.yaml", {}))
    vols = load_templates([Path(p) for p in templates], cfg.pixel_size)
    _, table = load_particles(Path(particles))
    image = read_mrc(cfg.micrograph).data
    x, y = check_inside(table, image.shape[-2:], Path(particles))
    scorers = [ParticleScorer.from_search(cfg, image, v, device=device) for v in vols]
    centres = torch.tensor(np.stack([np.rint(x), np.rint(y)], 1).astype(np.int64))
    rot0 = euler_to_matrix(torch.tensor(table[["rot", "tilt", "psi"]].to_numpy(float)))
    du = (table["defocus_u"].to_numpy(float) if "defocus_u" in table
          else np.full(len(x), cfg.defocus_u))
    dz0 = torch.tensor(du - cfg.defocus_u, dtype=torch.float32)
    snr, gram, refined = score_under_templates(scorers, centres, rot0, dz0, schedule,
                                               refine_defocus, progress)
    fit = fit_mixture(snr, gram, noise=noise, bootstrap=bootstrap, seed=seed)
    out = classify_table(table, snr, gram, refined, centres, fit, cfg.defocus_u,
                         cfg.defocus_v_resolved)
    return ClassifyRun(out, fit, snr, gram, refined, cfg, [str(p) for p in templates])
