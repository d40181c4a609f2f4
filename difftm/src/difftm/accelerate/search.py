"""The accelerated 2DTM search (DiffTM): a coarse pass, candidates, gradient refinement.

The exhaustive search correlates every orientation of a fine grid (2.5 / 1.5 deg: 1.58 M)
at every defocus plane with the whole micrograph. Most of that work scores poses far from
any particle. The accelerated strategy spends it only where it can matter:

1. **Coarse pass.** The same engine correlates a coarse grid (default 12 / 7.2 deg, ~1/100
   of the fine grid's orientations) at the nominal defocus only, with templates low-passed
   to the grid's covering radius (:func:`grid_matched_lowpass`): a particle between grid
   points still correlates, at a lower score.
2. **Candidates with a controlled miss rate.** Every local maximum of the coarse SNR map
   (suppression radius :data:`CANDIDATE_SUPPRESSION` template diameters) above a threshold
   ``t_c`` becomes a candidate. ``t_c`` is chosen so that a particle that the exhaustive
   search would call (SNR >= the erfc threshold ``t_f``) is kept with probability about
   ``1 - miss_rate``: :func:`retained_fraction` measures, from the template alone, the
   fraction ``r`` of a particle's full-resolution score that the best nearby coarse
   template recovers (random poses, the nearest coarse grid points, the best shift), and
   ``t_c = quantile(r, miss_rate) * t_f - z(1 - miss_rate)`` (the coarse score of a particle
   at the threshold minus the noise's one-sided margin, unit noise sd in SNR units).
3. **Gradient refinement.** Each candidate is refined on the raw micrograph through the one
   scorer (:class:`difftm.refine.scorer.ParticleScorer`): rotation, sub-pixel shift and
   defocus by Adam steps with a coarse-to-fine low-pass starting at the coarse pass's
   (:func:`accelerated_schedule`). Final scores are the scorer's: the exhaustive search's
   SNR units (the same whitening, band-pass, padded CTF box and normalisation).
4. **Maps.** The result has the exhaustive search's maps so that ``difftm peaks``, the
   thresholds and the p-value apply unchanged: the coarse pass's maps, with the refined
   score, pose and defocus written at each candidate's refined position (its z-score uses
   the coarse pass's per-pixel mean and sigma).

**Search space of the statistics.** A refined candidate's score is the maximum of the same
correlation over a neighbourhood of poses, shifts and defocus values that the exhaustive
grid samples at (or finer than) the correlation's own width; candidates cover only the
coarse local maxima, a subset of the positions. Its null distribution is therefore bounded
by that of the exhaustive search with the configured fine grid, and the metadata's
``n_search`` is the exhaustive grid's (orientations x defocus planes): thresholds and the
expected false positives are those of the exhaustive search of the same configuration.
``benchmarks/accelerated_vs_exhaustive.py`` checks the false-positive rate on noise-only
micrographs.

**Counts.** ``n_correlations`` counts full-micrograph correlations (one template, every
position); ``n_local_scores`` counts template evaluations on one particle's crop (forward
and backward through the scorer); ``n_projections`` counts Fourier-slice projections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from difftm.refine.optimize import GradientSchedule, Refined, refine_gradient
from difftm.refine.scorer import ParticleScorer

#: Candidates' suppression radius on the coarse map, in template diameters (smaller than
#: the picking default: two nearby particles must both become candidates).
CANDIDATE_SUPPRESSION = 0.5

#: Adam step (degrees, pixels, 100 A) of the last refinement stage.
FINAL_STEP = 0.06

#: Random poses used to measure the coarse pass's retained fraction.
RETAINED_SAMPLES = 48


def grid_matched_lowpass(radius_angstrom: float, step_deg: float, pixel_size: float) -> float:
    """Low-pass (A) matched to a grid of ``step_deg`` degrees for a particle of this radius.

    The median angular distance to the nearest grid point (about half a step) moves the
    particle's edge by ``radius * angle``; frequencies finer than twice that displacement
    do not survive the mismatch. Never finer than Nyquist (2 pixels).
    """
    lp = 2.0 * radius_angstrom * math.radians(0.5 * step_deg)
    return max(lp, 2.0 * pixel_size)


@dataclass
class Candidates:
    """Candidates of the coarse pass.

    Attributes:
        centres: (K, 2) integer pixel centres (x, y).
        rotations: (K, 3, 3) coarse best rotations (RELION matrices).
        coarse_score: (K,) coarse SNR.
        threshold: the coarse threshold ``t_c`` used.
    """

    centres: torch.Tensor
    rotations: torch.Tensor
    coarse_score: np.ndarray
    threshold: float


def retained_fraction(scorer: ParticleScorer, coarse_scorer: ParticleScorer,
                      coarse_rotations: torch.Tensor, n_samples: int = RETAINED_SAMPLES,
                      nearest: int = 6, symmetry: str = "C1", seed: int = 0) -> np.ndarray:
    """Fraction of a particle's score that the coarse pass recovers, for random poses.

    For each random rotation ``R`` the full template ``t(R)`` (``scorer``'s) is correlated,
    over all shifts of the padded box, with the templates of ``coarse_scorer`` (the coarse
    pass's band, same box) at the ``nearest`` coarse grid rotations (symmetry-equivalent
    poses counted);
    both unit-norm, so the best value is the coarse score of a noise-free particle divided
    by its full score.

    Returns:
        (n_samples,) fractions in [0, 1], deterministic for a given seed.
    """
    from difftm.geometry.symmetry import symmetry_matrices

    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(n_samples, 4, generator=gen, dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    rand = torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
    grid = coarse_rotations.to(torch.float64)
    sym = symmetry_matrices(symmetry).to(torch.float64)
    dev = scorer.device
    out = np.empty(n_samples)
    with torch.no_grad():
        for i in range(n_samples):
            r = rand[i]
            # similarity to every grid rotation, best over symmetry-equivalent poses
            eq = r[None] @ sym  # (S, 3, 3): the template looks the same at R S
            trace = torch.einsum("sij,gij->sg", eq, grid).max(dim=0).values
            near = grid[torch.topk(trace, min(nearest, grid.shape[0])).indices]
            full = scorer.templates(r[None].float().to(dev), torch.zeros(1, device=dev))
            coarse = coarse_scorer.templates(near.float().to(dev),
                                             torch.zeros(near.shape[0], device=dev))
            full = full / full.norm()
            coarse = coarse / coarse.flatten(1).norm(dim=1)[:, None, None]
            cc = torch.fft.irfft2(torch.fft.rfft2(coarse).conj() * torch.fft.rfft2(full),
                                  s=full.shape[-2:])
            out[i] = float(cc.max().clamp(0.0, 1.0))
    return out


def candidate_threshold(final_threshold: float, fractions: np.ndarray,
                        miss_rate: float) -> float:
    """Coarse threshold ``t_c = quantile(r, miss_rate) * t_f - z(1 - miss_rate)``."""
    from statistics import NormalDist

    r_low = float(np.quantile(fractions, miss_rate))
    z = NormalDist().inv_cdf(1.0 - miss_rate)
    return r_low * final_threshold - z


def select_candidates(coarse, threshold: float, min_distance: float,
                      max_candidates: int) -> Candidates:
    """Local maxima of the coarse SNR map above ``threshold`` (a
    :class:`~difftm.search.results.SearchResult`), at most ``max_candidates`` (highest)."""
    from difftm.geometry.euler import euler_to_matrix
    from difftm.stats.peaks import pick_peaks

    valid = coarse.valid_mask()
    snr = np.where(valid, coarse.maps["snr"], np.nan)
    yx = pick_peaks(snr, threshold, min_distance=min_distance,
                    border=int(coarse.metadata["border_low"]), max_peaks=max_candidates)
    y, x = yx[:, 0], yx[:, 1]
    angles = np.stack([coarse.maps[k][y, x] for k in ("rot", "tilt", "psi")], -1)
    return Candidates(
        centres=torch.as_tensor(np.stack([x, y], -1).astype(np.int64)),
        rotations=euler_to_matrix(torch.as_tensor(angles, dtype=torch.float64)).float(),
        coarse_score=snr[y, x].astype(np.float64),
        threshold=float(threshold),
    )


def accelerated_schedule(coarse_lowpass: float, coarse_step: float,
                         defocus_range: float) -> GradientSchedule:
    """Gradient schedule from a coarse grid: the low-pass starts at the coarse pass's and
    halves per stage down to the full band; starts span the grid's covering radius."""
    stages: list[float | None] = []
    lp = coarse_lowpass
    while lp > 6.0 and len(stages) < 3:
        stages.append(lp)
        lp /= 2.0
    stages += [max(lp, 4.0), None] if stages else [None]
    a = 0.3 * coarse_step
    # first steps span the grid spacing; the last stage's are fine enough to converge
    lr0 = max(0.25, 0.1 * coarse_step)
    decay = (FINAL_STEP / lr0) ** (1.0 / max(1, len(stages) - 1))
    return GradientSchedule(
        lowpass_angstrom=tuple(stages),
        steps=15,
        learning_rate=lr0,
        decay=decay,
        start_offsets_deg=((0.0, 0.0, 0.0), (a, a, 0.0), (-a, -a, 0.0)),
        max_angle_deg=1.5 * coarse_step,
        max_shift_px=4.0,
        max_defocus=float(defocus_range),
    )


def refine_candidates(scorer: ParticleScorer, candidates: Candidates,
                      schedule: GradientSchedule, refine_defocus: bool,
                      progress=None) -> Refined:
    """Gradient refinement of every candidate on the raw micrograph (the refine API)."""
    n = candidates.centres.shape[0]
    return refine_gradient(scorer, candidates.centres, candidates.rotations,
                           torch.zeros(n), schedule=schedule, refine_defocus=refine_defocus,
                           progress=progress)


def local_score_count(n_candidates: int, schedule: GradientSchedule) -> int:
    """Template evaluations of :func:`refine_candidates`: every start of every candidate
    at every step, plus the start and final scores."""
    starts = len(schedule.start_offsets_deg)
    return n_candidates * (starts * (len(schedule.lowpass_angstrom) * schedule.steps + 1) + 1)


def merge_refined(coarse, candidates: Candidates, refined: Refined) -> dict[str, np.ndarray]:
    """The coarse pass's maps with each candidate's refined score, pose and defocus written
    at its refined position (highest score wins where two land on one pixel)."""
    from difftm.geometry.euler import matrix_to_euler

    maps = {k: v.copy() for k, v in coarse.maps.items()}
    if candidates.centres.shape[0] == 0:
        return maps
    pos = candidates.centres.double() + refined.shifts
    x = np.rint(pos[:, 0].numpy()).astype(int)
    y = np.rint(pos[:, 1].numpy()).astype(int)
    valid = coarse.valid_mask()
    h, w = valid.shape
    score = refined.score.numpy()
    eul = matrix_to_euler(refined.rotations).numpy()
    dz = refined.defocus_offsets.numpy()
    g_mean = float(coarse.metadata["global_mean"])
    g_sd = float(coarse.metadata["global_sd"])
    for i in np.argsort(score, kind="stable"):  # ascending: the best is written last
        yi, xi = int(y[i]), int(x[i])
        if not (0 <= yi < h and 0 <= xi < w and valid[yi, xi]):
            yi, xi = int(candidates.centres[i, 1]), int(candidates.centres[i, 0])
        s = float(score[i])
        if s < maps["snr"][yi, xi]:
            continue
        maps["snr"][yi, xi] = s
        maps["snr_flatfield"][yi, xi] = (s - g_mean) / g_sd
        sigma = max(float(maps["sigma"][yi, xi]), 1e-12)
        maps["zscore"][yi, xi] = (s - float(maps["mean"][yi, xi])) / sigma
        maps["rot"][yi, xi], maps["tilt"][yi, xi], maps["psi"][yi, xi] = eul[i]
        maps["defocus_offset"][yi, xi] = dz[i]
    return maps
