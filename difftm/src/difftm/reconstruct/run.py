"""Reconstruction of a particle table: half-sets, streaming insertion, FSC, final map.

Steps (``difftm reconstruct``):

1. Particles (:func:`read_particle_set`): centres ``rlnCoordinateX/Y - rlnOriginX/YAngst /
   pixel size`` (fractional pixels allowed), RELION Euler angles, per-particle CTF (defocus
   U/V/angle, phase shift, CTF B-factor; voltage, Cs and amplitude contrast from the optics
   group), micrograph file names.
2. Random half-sets (:func:`assign_half_sets`) that share no pixel: particles whose boxes
   overlap in a micrograph are joined into one group (connected components), groups are
   visited in an order drawn from ``numpy.random.default_rng(seed)`` and each goes to the
   half with fewer particles so far (ties: half 1). The two half-maps therefore see disjoint
   pixels, so their noise is independent.
3. Streaming insertion: one micrograph is read at a time (normalised to zero mean, unit
   standard deviation), its particles are extracted in batches (:mod:`.extract`), zero-padded
   to the 3D grid ``N``, CTF-multiplied and inserted (:class:`.insert.FourierAccumulator`)
   into their half's sums ``sum CTF X`` and ``sum CTF^2``; with a point group each particle
   is inserted once per symmetry operator ``S`` with the matrix ``A S`` (``V(S r) = V(r)``).
   Memory: the two accumulators and one micrograph, independent of the particle count.
4. Half-maps: ``data / (weight + eps * <weight>_shell)`` with ``eps`` =
   :data:`HALF_MAP_EPSILON` (a floor that only matters where a node is barely sampled), then
   the FSC between them (:mod:`.fsc`) and the resolution at 0.143. With ``mask_diameter``
   the FSC is computed on half-maps multiplied by a soft spherical mask (:func:`soft_sphere`:
   1 inside the diameter, a raised-cosine edge :data:`MASK_EDGE_PX` pixels wide), as RELION's
   post-processing does, so that the solvent's noise does not dilute the correlation; the
   mask must be generous (no correction for mask-induced correlation is applied), and the
   final map is masked the same way.
5. Final map: both halves' sums with the Wiener regularisation
   ``tau(k) = <weight>_shell(k) / SSNR(k)``, ``SSNR = 2 FSC / (1 - FSC)`` (the SSNR of the
   full set; FSC clipped to [0, 0.999]; shells with FSC <= 0 are set to 0): where every node
   of a shell is sampled alike this multiplies the unregularised map by
   ``SSNR / (1 + SSNR) = 2 FSC / (1 + FSC)``, i.e. the map is FSC-weighted. With ``lowpass``
   (default) it is also cut at the FSC-0.143 resolution by a raised-cosine edge one shell
   wide.

Everything runs in a fixed order with float64 sums, so a run is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from difftm.geometry.euler import euler_to_matrix
from difftm.physics.ctf import ctf_2d
from difftm.reconstruct.extract import (
    extract_boxes,
    normalise_micrograph,
    particle_spectra,
    split_centres,
)
from difftm.reconstruct.fsc import FscCurve, fourier_shell_correlation
from difftm.reconstruct.insert import FourierAccumulator, accumulator_bytes

__all__ = [
    "HALF_MAP_EPSILON",
    "ParticleSet",
    "ReconstructionResult",
    "assign_half_sets",
    "default_padding",
    "estimate_memory_bytes",
    "read_particle_set",
    "reconstruct",
    "soft_sphere",
]

#: Width of the raised-cosine edge of the FSC mask, pixels.
MASK_EDGE_PX = 4.0

#: Half-map floor: ``weight + HALF_MAP_EPSILON * <weight>_shell`` in the denominator.
HALF_MAP_EPSILON = 1e-3

_REQUIRED = ("rlnCoordinateX", "rlnCoordinateY", "rlnAngleRot", "rlnAngleTilt",
             "rlnAnglePsi", "rlnDefocusU", "rlnMicrographName")


@dataclass
class ParticleSet:
    """Everything reconstruction needs per particle (plain arrays, one row per particle).

    Attributes:
        micrograph: file name per particle (as written in the STAR).
        xy: ``(n, 2)`` particle centres in micrograph pixels (x = column, y = row).
        angles: ``(n, 3)`` RELION ``(rot, tilt, psi)``, degrees.
        defocus: ``(n, 3)`` ``(defocus U, defocus V, angle)``: A, A, degrees.
        phase_shift, ctf_bfactor: ``(n,)`` degrees and A^2.
        voltage, cs, amplitude_contrast: ``(n,)`` kV, mm, fraction.
        pixel_size: A per micrograph pixel.
    """

    micrograph: np.ndarray
    xy: np.ndarray
    angles: np.ndarray
    defocus: np.ndarray
    phase_shift: np.ndarray
    ctf_bfactor: np.ndarray
    voltage: np.ndarray
    cs: np.ndarray
    amplitude_contrast: np.ndarray
    pixel_size: float

    def __len__(self) -> int:
        return len(self.xy)


def _column(table: pd.DataFrame, optics: pd.DataFrame, label: str, default: float | None,
            path: Path) -> np.ndarray:
    """A numeric per-particle column from the particles, else from their optics group."""
    if label in table.columns:
        values = pd.to_numeric(table[label], errors="coerce").to_numpy(dtype=float)
    elif label in optics.columns and "rlnOpticsGroup" in optics.columns \
            and "rlnOpticsGroup" in table.columns:
        by_group = dict(zip(optics["rlnOpticsGroup"].astype(int), optics[label].astype(float),
                            strict=True))
        groups = table["rlnOpticsGroup"].astype(int).to_numpy()
        missing = sorted(set(groups) - set(by_group))
        if missing:
            raise ValueError(f"{path}: particles refer to optics groups {missing} not in "
                             "data_optics")
        values = np.array([by_group[g] for g in groups], dtype=float)
    elif label in optics.columns and len(optics) == 1:
        values = np.full(len(table), float(optics[label].iloc[0]))
    elif default is not None:
        values = np.full(len(table), float(default))
    else:
        raise ValueError(f"{path}: no {label} in the particles or optics table")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{path}: {label} has missing, NaN or non-numeric values")
    return values


def _check_plausible(path: Path, label: str, values: np.ndarray, name: str,
                     row_name: str = "row") -> None:
    """Refuse a CTF value outside its plausible range (:mod:`difftm.physics.limits`, the one
    table) in one line naming the file, the first bad row and the column.

    ``rlnCtfBfactor`` is judged by its magnitude: RELION's per-particle CTF B-factors are
    relative and may be negative."""
    from difftm.physics.limits import PLAUSIBLE, Range, check_range

    accepted = PLAUSIBLE[name]
    if name == "ctf_bfactor":
        accepted = Range(-accepted.high, accepted.high, accepted.unit)
    bad = ~np.fromiter((accepted.contains(float(v)) for v in values), bool, len(values))
    if bad.any():
        row, n_bad = int(np.argmax(bad)), int(bad.sum())
        check_range(f"{path}: {row_name} {row + 1}"
                    + (f" (and {n_bad - 1} more)" if n_bad > 1 else "") + f": {label}",
                    values[row], accepted)


def read_particle_set(path: str | Path, pixel_size: float | None = None) -> ParticleSet:
    """Read a RELION 3.0/3.1+ particle STAR for reconstruction.

    Args:
        path: the STAR file.
        pixel_size: micrograph pixel size (A); default: ``rlnMicrographPixelSize``, else
            ``rlnImagePixelSize`` of the optics table (RELION 3.0 tables have neither: give
            it, or let the caller read the micrograph header).

    Returns:
        :class:`ParticleSet` (``pixel_size`` NaN when neither the option nor the table gives
        one).

    Raises:
        ValueError: one line naming the file and the missing or bad column.
    """
    from difftm.io.star import read_particles_star

    path = Path(path)
    optics, table = read_particles_star(path)
    if len(table) == 0:
        raise ValueError(f"{path}: the particle table is empty")
    missing = [c for c in _REQUIRED if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: particle table lacks {', '.join(missing)} (reconstruction "
                         "needs centres, Euler angles, defocus and micrograph names)")
    if pixel_size is None:
        for label in ("rlnMicrographPixelSize", "rlnImagePixelSize"):
            if label in optics.columns and len(optics):
                sizes = pd.to_numeric(optics[label], errors="coerce").to_numpy(dtype=float)
                _check_plausible(path, label, sizes, "pixel_size", "optics row")
                if np.ptp(sizes) > 1e-6 * sizes.max():
                    raise ValueError(f"{path}: optics groups have different pixel sizes "
                                     f"({', '.join(f'{s:g}' for s in sizes)}); reconstruct "
                                     "them separately")
                pixel_size = float(sizes[0])
                break
    ps = float("nan") if pixel_size is None else float(pixel_size)

    xy = np.stack([_column(table, optics, "rlnCoordinateX", None, path),
                   _column(table, optics, "rlnCoordinateY", None, path)], -1)
    for a in ("X", "Y"):
        k = 0 if a == "X" else 1
        if f"rlnOrigin{a}Angst" in table.columns:
            origin = _column(table, optics, f"rlnOrigin{a}Angst", 0.0, path)
            if np.any(origin != 0) and not math.isfinite(ps):
                raise ValueError(f"{path}: rlnOrigin{a}Angst needs a pixel size "
                                 "(give --pixel-size)")
            if np.any(origin != 0):
                xy[:, k] -= origin / ps
        elif f"rlnOrigin{a}" in table.columns:  # RELION 3.0: pixels
            xy[:, k] -= _column(table, optics, f"rlnOrigin{a}", 0.0, path)
    angles = np.stack([_column(table, optics, c, None, path)
                       for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")], -1)
    du = _column(table, optics, "rlnDefocusU", None, path)
    dv = _column(table, optics, "rlnDefocusV", None, path) if "rlnDefocusV" in table else du
    da = _column(table, optics, "rlnDefocusAngle", 0.0, path)
    ac = _column(table, optics, "rlnAmplitudeContrast", None, path)
    voltage = _column(table, optics, "rlnVoltage", None, path)
    cs = _column(table, optics, "rlnSphericalAberration", None, path)
    phase_shift = _column(table, optics, "rlnPhaseShift", 0.0, path)
    ctf_bfactor = _column(table, optics, "rlnCtfBfactor", 0.0, path)
    for label, values, name in (
            ("rlnCtfBfactor", ctf_bfactor, "ctf_bfactor"),
            ("rlnDefocusU", du, "defocus"), ("rlnDefocusV", dv, "defocus"),
            ("rlnDefocusAngle", da, "defocus_angle"), ("rlnPhaseShift", phase_shift,
                                                       "phase_shift"),
            ("rlnVoltage", voltage, "voltage"), ("rlnSphericalAberration", cs, "cs"),
            ("rlnAmplitudeContrast", ac, "amplitude_contrast")):
        _check_plausible(path, label, values, name)
    names = table["rlnMicrographName"].astype(str).to_numpy()
    return ParticleSet(
        micrograph=names, xy=xy, angles=angles, defocus=np.stack([du, dv, da], -1),
        phase_shift=phase_shift,
        ctf_bfactor=ctf_bfactor,
        voltage=voltage, cs=cs, amplitude_contrast=ac, pixel_size=ps)


def assign_half_sets(micrographs: np.ndarray, xy: np.ndarray, box: int,
                     seed: int = 0) -> np.ndarray:
    """Random half-sets whose particle boxes never overlap across halves (module docstring).

    Args:
        micrographs: ``(n,)`` micrograph name per particle.
        xy: ``(n, 2)`` centres in pixels.
        box: box edge in pixels: boxes overlap when both ``|dx|`` and ``|dy|`` < box.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``(n,)`` int array of 1 and 2.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    n = len(xy)
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    names = np.asarray(micrographs).astype(str)
    for name in dict.fromkeys(names):  # first-appearance order
        idx = np.nonzero(names == name)[0]
        if len(idx) < 2:
            continue
        pairs = cKDTree(xy[idx]).query_pairs(r=box - 1e-6, p=np.inf, output_type="ndarray")
        if len(pairs):
            rows.append(idx[pairs[:, 0]])
            cols.append(idx[pairs[:, 1]])
    r = np.concatenate(rows) if rows else np.zeros(0, dtype=np.int64)
    c = np.concatenate(cols) if cols else np.zeros(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(r)), (r, c)), shape=(n, n))
    n_groups, label = connected_components(graph, directed=False)
    sizes = np.bincount(label, minlength=n_groups)
    order = np.random.default_rng(seed).permutation(n_groups)
    half_of_group = np.zeros(n_groups, dtype=np.int64)
    counts = [0, 0]
    for g in order:
        h = 0 if counts[0] <= counts[1] else 1
        half_of_group[g] = h + 1
        counts[h] += int(sizes[g])
    return half_of_group[label]


def default_padding(box: int) -> float:
    """2 (accurate trilinear insertion) up to box 192, else 1 (8x less memory)."""
    return 2.0 if box <= 192 else 1.0


def estimate_memory_bytes(box: int, padding: float) -> int:
    """Peak bytes of a reconstruction: two accumulators while inserting, and about three
    more of the same size while computing the maps."""
    return 5 * accumulator_bytes(box, padding)


@dataclass
class ReconstructionResult:
    """Maps and statistics of a reconstruction.

    Attributes:
        final: ``(D, D, D)`` FSC-weighted (Wiener) map, float32 numpy.
        half1, half2: half-maps, float32 numpy.
        fsc: the half-map FSC curve.
        resolution: resolution at FSC 0.143, A.
        half: ``(n,)`` half-set (1 or 2) per particle.
        params: settings and counts (JSON-serialisable).
    """

    final: np.ndarray
    half1: np.ndarray
    half2: np.ndarray
    fsc: FscCurve
    resolution: float
    half: np.ndarray
    params: dict = field(default_factory=dict)


def soft_sphere(box: int, diameter_px: float, edge_px: float = MASK_EDGE_PX) -> torch.Tensor:
    """``(D, D, D)`` float64 mask: 1 within ``diameter_px / 2`` of voxel ``D // 2``, falling
    to 0 over ``edge_px`` with a raised cosine."""
    r = torch.arange(box, dtype=torch.float64) - box // 2
    dist = torch.sqrt(r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2)
    t = ((dist - diameter_px / 2.0) / edge_px).clamp(0.0, 1.0)
    return 0.5 * (1.0 + torch.cos(math.pi * t))


def _shell_mean(weight: torch.Tensor, shells: torch.Tensor, n_shells: int) -> torch.Tensor:
    """Mean weight per shell (shells beyond ``n_shells - 1`` ignored) -> ``(n_shells,)``."""
    s = shells.reshape(-1)
    keep = s < n_shells
    total = torch.zeros(n_shells, dtype=torch.float64).index_add_(
        0, s[keep], weight.reshape(-1)[keep])
    count = torch.zeros(n_shells, dtype=torch.float64).index_add_(
        0, s[keep], torch.ones_like(weight.reshape(-1)[keep]))
    return total / count.clamp_min(1.0)


def _half_map(acc: FourierAccumulator, shells: torch.Tensor, n_shells: int) -> torch.Tensor:
    data, weight = acc.hermitian_sums()
    mean = _shell_mean(weight, shells, n_shells)
    tau = HALF_MAP_EPSILON * mean[shells.clamp(max=n_shells - 1)]
    denom = weight + tau
    spec = torch.where(denom > 0, data / torch.where(denom > 0, denom, 1.0), 0.0)
    spec = torch.where(shells < n_shells, spec, 0.0)
    return acc.volume_from_spectrum(spec)


def _final_map(acc1: FourierAccumulator, acc2: FourierAccumulator, shells: torch.Tensor,
               fsc: FscCurve, resolution: float, lowpass: bool) -> torch.Tensor:
    data1, weight1 = acc1.hermitian_sums()
    data2, weight2 = acc2.hermitian_sums()
    data, weight = data1 + data2, weight1 + weight2
    del data1, data2, weight1, weight2
    n_shells = len(fsc.fsc)
    c = np.clip(fsc.fsc, 0.0, 0.999)
    ssnr = torch.as_tensor(2.0 * c / (1.0 - c))
    mean = _shell_mean(weight, shells, n_shells)
    s = shells.clamp(max=n_shells - 1)
    snr_node = ssnr[s]
    ok = (snr_node > 0) & (shells < n_shells)
    tau = torch.where(ok, mean[s] / torch.where(ok, snr_node, 1.0), 0.0)
    denom = weight + tau
    spec = torch.where(ok & (denom > 0), data / torch.where(denom > 0, denom, 1.0), 0.0)
    if lowpass:
        d = acc1.box
        f_cut = fsc.pixel_size / resolution  # cycles per voxel
        n = acc1.grid_size
        kz = torch.fft.fftfreq(n, dtype=torch.float64)
        kx = torch.fft.rfftfreq(n, dtype=torch.float64)
        r = torch.sqrt(kz[:, None, None] ** 2 + kz[None, :, None] ** 2 + kx[None, None, :] ** 2)
        width = 1.0 / d
        t = ((r - f_cut) / width).clamp(0.0, 1.0)
        spec = spec * (0.5 * (1.0 + torch.cos(math.pi * t)))
    return acc1.volume_from_spectrum(spec)


def reconstruct(
    particles: ParticleSet,
    load_micrograph: Callable[[str], np.ndarray],
    box: int,
    padding: float | None = None,
    symmetry: str = "C1",
    seed: int = 0,
    batch_size: int = 32,
    lowpass: bool = True,
    half: np.ndarray | None = None,
    progress: Callable[[int, int], None] | None = None,
    mask_diameter: float | None = None,
) -> ReconstructionResult:
    """Reconstruct half-maps, their FSC and the final map from a particle set.

    Args:
        particles: from :func:`read_particle_set` (``pixel_size`` must be set).
        load_micrograph: name -> ``(H, W)`` image (raw counts or any units; each micrograph
            is normalised to zero mean and unit standard deviation).
        box: extraction box and map size ``D`` in pixels (even, >= 8).
        padding: 3D grid oversampling (default :func:`default_padding`).
        symmetry: point group (``C1``, ``Cn``, ``Dn``, ``T``, ``O``, ``I``; axes as in
            :mod:`difftm.geometry.symmetry`).
        seed: half-set seed (:func:`assign_half_sets`).
        batch_size: particles extracted and inserted at once (memory ``~ batch * N^2 * 60``
            bytes).
        lowpass: cut the final map at the FSC-0.143 resolution (module docstring).
        half: optional ``(n,)`` half-set labels (1/2) to use instead of drawing them.
        progress: ``progress(done, total)`` after each batch.
        mask_diameter: soft spherical mask diameter in A for the FSC and the final map
            (None: unmasked FSC).

    Returns:
        :class:`ReconstructionResult`.
    """
    from difftm.geometry.symmetry import symmetry_matrices

    if int(box) != box or box < 8 or box % 2:
        raise ValueError(f"--box must be an even integer >= 8, got {box}")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    ps = float(particles.pixel_size)
    if not (math.isfinite(ps) and ps > 0):
        raise ValueError("no pixel size: give --pixel-size (the STAR and the micrograph "
                         "header carry none)")
    padding = default_padding(box) if padding is None else float(padding)
    sym = symmetry_matrices(symmetry)
    n = len(particles)
    if half is None:
        half = assign_half_sets(particles.micrograph, particles.xy, box, seed)
    half = np.asarray(half, dtype=np.int64)
    if half.shape != (n,) or not np.all((half == 1) | (half == 2)):
        raise ValueError("half-set labels must be 1 or 2, one per particle")
    if min(int((half == 1).sum()), int((half == 2).sum())) == 0:
        raise ValueError(f"{n} particle(s) cannot be split into two non-empty half-sets of "
                         "non-overlapping boxes; give more particles")
    accs = {1: FourierAccumulator(box, padding), 2: FourierAccumulator(box, padding)}
    grid = accs[1].grid_size
    names = np.asarray(particles.micrograph).astype(str)
    done = 0
    for name in dict.fromkeys(names):
        rows = np.nonzero(names == name)[0]
        image = normalise_micrograph(load_micrograph(name))
        for start in range(0, len(rows), batch_size):
            sel = rows[start : start + batch_size]
            pixels, frac = split_centres(particles.xy[sel])
            try:
                boxes = extract_boxes(image, pixels, box)
            except ValueError as err:  # a centre far outside: name the micrograph
                raise ValueError(f"micrograph {name}: {err}") from None
            spectra = particle_spectra(boxes, frac, grid)
            ctf = torch.empty(spectra.shape, dtype=torch.float64)
            optics = np.stack([particles.voltage[sel], particles.cs[sel],
                               particles.amplitude_contrast[sel]], -1)
            for key in np.unique(optics, axis=0):
                m = np.all(optics == key, axis=1)
                dfs = torch.as_tensor(particles.defocus[sel][m])
                ctf[torch.as_tensor(m)] = ctf_2d(
                    (grid, grid), ps, dfs[:, 0], dfs[:, 1], dfs[:, 2], float(key[0]),
                    float(key[1]), float(key[2]),
                    phase_shift_deg=torch.as_tensor(particles.phase_shift[sel][m]),
                    b_factor=torch.as_tensor(particles.ctf_bfactor[sel][m]),
                    dtype=torch.float64)
            rot = euler_to_matrix(torch.as_tensor(particles.angles[sel]), dtype=torch.float64)
            rot = torch.matmul(rot[:, None], sym[None]).reshape(-1, 3, 3)  # A S per operator
            g = sym.shape[0]
            for h in (1, 2):
                m = torch.as_tensor(half[sel] == h)
                if not bool(m.any()):
                    continue
                mm = m.repeat_interleave(g)
                accs[h].insert(spectra[m].repeat_interleave(g, 0), rot[mm],
                               ctf[m].repeat_interleave(g, 0))
            done += len(sel)
            if progress is not None:
                progress(done, n)
        del image
    shells = accs[1].radial_shells()
    n_shells = box // 2 + 1
    half1 = _half_map(accs[1], shells, n_shells)
    half2 = _half_map(accs[2], shells, n_shells)
    mask = None
    if mask_diameter is not None:
        if not (math.isfinite(mask_diameter) and 0 < mask_diameter <= box * ps):
            raise ValueError(f"mask diameter must be in (0, {box * ps:g}] A (the box), got "
                             f"{mask_diameter}")
        mask = soft_sphere(box, mask_diameter / ps)
        fsc = fourier_shell_correlation(half1 * mask, half2 * mask, ps)
    else:
        fsc = fourier_shell_correlation(half1, half2, ps)
    resolution = fsc.resolution(0.143)
    final = _final_map(accs[1], accs[2], shells, fsc, resolution, lowpass)
    if mask is not None:
        final = final * mask
    params = {
        "box": int(box), "padding": float(padding), "grid_size": int(grid),
        "pixel_size": ps, "symmetry": str(symmetry).upper(), "symmetry_order": int(sym.shape[0]),
        "seed": int(seed), "particles": int(n), "half1": int((half == 1).sum()),
        "half2": int((half == 2).sum()), "micrographs": len(dict.fromkeys(names)),
        "resolution_0143": float(resolution),
        "resolution_05": float(fsc.resolution(0.5)),
        "half_map_epsilon": HALF_MAP_EPSILON, "lowpass": bool(lowpass),
        "mask_diameter_A": None if mask_diameter is None else float(mask_diameter),
        "regularisation": "final = sum CTF X / (sum CTF^2 + <sum CTF^2>_shell / SSNR), "
                          "SSNR = 2 FSC / (1 - FSC)",
    }
    return ReconstructionResult(
        final=final.numpy().astype(np.float32), half1=half1.numpy().astype(np.float32),
        half2=half2.numpy().astype(np.float32), fsc=fsc, resolution=resolution, half=half,
        params=params)
