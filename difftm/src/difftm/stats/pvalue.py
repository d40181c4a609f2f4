"""The 2DTM p-value combining z-score and SNR (Zhang et al., IUCrJ 2025).

Algorithm (reimplemented from the paper's description, see docs / SCIENCE.md section 2):

1. Each variable is probit transformed on its own: rank r in 1..n, u = (r - 0.5) / n,
   q = sqrt(2) erfinv(2u - 1) = Phi^-1(u). Tied values get the average of their ranks
   (independent of input order, and a tie group keeps the mean probit of its ranks); the
   reference data have no ties, so this choice is not constrained by them.
2. Moment matrix without mean subtraction C = (1/n) sum [q1 q2]^T [q1 q2] with q1 = probit
   z-score and q2 = probit SNR; a = sqrt(largest eigenvalue), b = sqrt(smallest), u the major
   eigenvector (negated when both components are negative), w = atan2(u_y, u_x).
3. gamma = atan2(1, 0.5 sin(2w) (b/a - a/b)), the opening angle of the allowed quadrant after
   whitening.
4. y0 = (cos w q1 + sin w q2) / a, y1 = (-sin w q1 + cos w q2) / b, r2 = y0^2 + y1^2;
   p = gamma / (2 pi) exp(-r2 / 2) inside the region, p = 1 outside. We return
   -ln p = r2 / 2 - ln(gamma / (2 pi)) (never underflows), and 0 outside the region.
   Region "q1": q1 > 0 and q2 > 0; region "q3": q1 > 0 or q2 > 0.

Candidates are either every pixel of the maps (:func:`candidates_all_pixels`) or the local
maxima of the z-score map (:func:`candidates_local_maxima`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri

from difftm.stats.peaks import pick_peaks

REGIONS = ("q1", "q3")
DEFAULT_CUTOFF = 8.0
"""Default detection cutoff on -ln p."""


def _check_region(region: str) -> None:
    if region not in REGIONS:
        raise ValueError(f"unknown p-value region {region!r}; use one of {', '.join(REGIONS)}")


def _check_inputs(zscore: np.ndarray, snr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = np.asarray(zscore, dtype=np.float64)
    s = np.asarray(snr, dtype=np.float64)
    if z.shape != s.shape:
        raise ValueError(f"zscore and snr shapes differ: {z.shape} vs {s.shape}")
    if z.size < 3:
        raise ValueError(f"the p-value needs at least 3 candidates, got {z.size}")
    for name, arr in (("zscore", z), ("snr", s)):
        if not np.all(np.isfinite(arr)):
            n_bad = int(np.count_nonzero(~np.isfinite(arr)))
            raise ValueError(f"{name} has {n_bad} non-finite values (NaN/inf); drop them first")
        if np.all(arr == arr.flat[0]):
            raise ValueError(f"{name} is constant ({arr.flat[0]:g}); its ranks carry no signal")
    return z, s


def _probit_with_knots(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Probit of average ranks (flattened), plus the sorted distinct values and their probits.

    One sort per variable: tie groups are runs of equal values in sorted order; a group that
    occupies sorted positions s..e-1 (0-based) gets the average rank (s + 1 + e) / 2.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    n = x.size
    order = np.argsort(x)
    ordered = x[order]
    starts_mask = np.empty(n, dtype=bool)
    starts_mask[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=starts_mask[1:])
    starts = np.flatnonzero(starts_mask)
    ends = np.append(starts[1:], n)
    group_probit = ndtri(((starts + 1 + ends) / 2.0 - 0.5) / n)
    q = np.empty(n, dtype=np.float64)
    if starts.size == n:  # no ties
        q[order] = group_probit
    else:
        q[order] = group_probit[np.cumsum(starts_mask) - 1]
    return q, ordered[starts], group_probit


def probit_ranks(values: np.ndarray) -> np.ndarray:
    """Rank-based probit (inverse normal) transform, float64, same shape as ``values``.

    q = Phi^-1((r - 0.5) / n) with r the 1-based rank; ties get their average rank.
    """
    return _probit_with_knots(values)[0].reshape(np.shape(values))


@dataclass(frozen=True)
class PValueModel:
    """Fitted parameters of the 2DTM p-value and the empirical probit maps of the inputs.

    Attributes:
        a: sqrt of the largest eigenvalue of the probit moment matrix.
        b: sqrt of the smallest eigenvalue.
        w: angle (rad) of the major eigenvector from the z-score axis towards the SNR axis.
        gamma: opening angle (rad) of the first quadrant after whitening;
            p = gamma / (2 pi) exp(-r2 / 2).
        zscore_knots, zscore_probit: sorted distinct z-scores and their probit values.
        snr_knots, snr_probit: same for the SNR; used to map raw values <-> probit space by
            piecewise-linear interpolation (exact at the fitted points).
    """

    a: float
    b: float
    w: float
    gamma: float
    zscore_knots: np.ndarray = field(repr=False)
    zscore_probit: np.ndarray = field(repr=False)
    snr_knots: np.ndarray = field(repr=False)
    snr_probit: np.ndarray = field(repr=False)

    def neg_log_p(self, q1: np.ndarray, q2: np.ndarray, region: str = "q1") -> np.ndarray:
        """-ln p for probit coordinates (q1 = probit z-score, q2 = probit SNR); 0 outside region."""
        _check_region(region)
        q1 = np.asarray(q1, dtype=np.float64)
        q2 = np.asarray(q2, dtype=np.float64)
        c, s = math.cos(self.w), math.sin(self.w)
        y0 = (c * q1 + s * q2) / self.a
        y1 = (-s * q1 + c * q2) / self.b
        nlp = 0.5 * (y0 * y0 + y1 * y1) - math.log(self.gamma / (2.0 * math.pi))
        inside = (q1 > 0) & (q2 > 0) if region == "q1" else (q1 > 0) | (q2 > 0)
        return np.where(inside, nlp, 0.0)

    def to_probit(self, zscore: np.ndarray, snr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map raw (z-score, SNR) to probit coordinates with the fitted empirical CDFs.

        Values outside the fitted range are clamped to the extreme probit values.
        """
        q1 = np.interp(np.asarray(zscore, dtype=np.float64), self.zscore_knots, self.zscore_probit)
        q2 = np.interp(np.asarray(snr, dtype=np.float64), self.snr_knots, self.snr_probit)
        return q1, q2

    def from_probit(self, q1: np.ndarray, q2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map probit coordinates back to raw (z-score, SNR); NaN outside the fitted range."""
        z = np.interp(q1, self.zscore_probit, self.zscore_knots, left=np.nan, right=np.nan)
        s = np.interp(q2, self.snr_probit, self.snr_knots, left=np.nan, right=np.nan)
        return z, s

    def boundary(
        self, cutoff: float = DEFAULT_CUTOFF, region: str = "q1", n_points: int = 721
    ) -> tuple[np.ndarray, np.ndarray]:
        """Decision boundary -ln p = ``cutoff`` in probit coordinates.

        The level set is the ellipse y0^2 + y1^2 = 2 (cutoff + ln(gamma / 2 pi)) traced over
        ``n_points`` angles; points outside ``region`` are NaN so that a plotted line breaks
        there. Empty arrays when the whole region already has -ln p >= cutoff.

        Returns:
            (q1, q2) float64 arrays of probit z-score and probit SNR.
        """
        _check_region(region)
        r2 = 2.0 * (cutoff + math.log(self.gamma / (2.0 * math.pi)))
        if r2 <= 0:
            return np.zeros(0), np.zeros(0)
        theta = np.linspace(0.0, 2.0 * math.pi, n_points)
        radius = math.sqrt(r2)
        y0 = radius * np.cos(theta) * self.a
        y1 = radius * np.sin(theta) * self.b
        c, s = math.cos(self.w), math.sin(self.w)
        q1 = c * y0 - s * y1
        q2 = s * y0 + c * y1
        inside = (q1 > 0) & (q2 > 0) if region == "q1" else (q1 > 0) | (q2 > 0)
        return np.where(inside, q1, np.nan), np.where(inside, q2, np.nan)


def fit_pvalue_model(zscore: np.ndarray, snr: np.ndarray) -> PValueModel:
    """Fit the p-value model to the candidates' z-scores and SNRs (same shape, >= 3 values).

    Raises:
        ValueError: mismatched shapes, fewer than 3 candidates, non-finite or constant input,
            or perfectly rank-correlated inputs (singular moment matrix).
    """
    return _fit(zscore, snr)[0]


def _fit(zscore: np.ndarray, snr: np.ndarray) -> tuple[PValueModel, np.ndarray, np.ndarray]:
    """Fit the model; also return the probit arrays (flattened) of the inputs."""
    z, s = _check_inputs(zscore, snr)
    q1, zk, zp = _probit_with_knots(z)
    q2, sk, sp = _probit_with_knots(s)
    n = q1.size
    moments = np.array(
        [[q1 @ q1, q1 @ q2], [q1 @ q2, q2 @ q2]], dtype=np.float64
    ) / n
    eigval, eigvec = np.linalg.eigh(moments)  # ascending eigenvalues
    if not eigval[0] > 1e-12 * eigval[1]:
        raise ValueError("zscore and snr have (nearly) identical ranks; the p-value is undefined")
    a = math.sqrt(eigval[1])
    b = math.sqrt(eigval[0])
    major = eigvec[:, 1]
    if major[0] < 0 and major[1] < 0:
        major = -major
    w = math.atan2(major[1], major[0])
    gamma = math.atan2(1.0, 0.5 * math.sin(2.0 * w) * (b / a - a / b))
    model = PValueModel(a=a, b=b, w=w, gamma=gamma, zscore_knots=zk, zscore_probit=zp,
                        snr_knots=sk, snr_probit=sp)
    return model, q1, q2


def neg_log_pvalue(zscore: np.ndarray, snr: np.ndarray, region: str = "q1") -> np.ndarray:
    """-ln p of each candidate (float64, shaped like the inputs; 0 outside the region).

    Args:
        zscore: z-scores (scaled MIP) of the candidates.
        snr: 2DTM SNRs (MIP) of the same candidates, same shape.
        region: "q1" (both probits > 0, default) or "q3" (either > 0; for small targets).

    Raises:
        ValueError: see :func:`fit_pvalue_model`, or an unknown region.
    """
    _check_region(region)
    model, q1, q2 = _fit(zscore, snr)
    return model.neg_log_p(q1, q2, region=region).reshape(np.shape(zscore))


def candidates_all_pixels(maps: np.ndarray | list[np.ndarray], border: int = 0) -> np.ndarray:
    """Every pixel where all ``maps`` are finite, outside ``border``; int64 (K, 2) [y, x].

    Args:
        maps: one 2D map or a sequence of same-shaped 2D maps (e.g. [zscore, snr]).
        border: pixels within this distance of an edge are excluded.

    Note: a 4096 x 4096 map gives ~16.8M rows (268 MB of indices); prefer
    :func:`candidates_local_maxima` unless every pixel is really wanted.
    """
    arrays = [np.asarray(maps)] if isinstance(maps, np.ndarray) else [np.asarray(m) for m in maps]
    if not arrays:
        raise ValueError("candidates_all_pixels needs at least one map")
    shape = arrays[0].shape
    if len(shape) != 2 or any(m.shape != shape for m in arrays):
        raise ValueError(f"maps must be 2D and same-shaped, got {[m.shape for m in arrays]}")
    valid = np.ones(shape, dtype=bool)
    for m in arrays:
        valid &= np.isfinite(m)
    if border:
        valid[:border, :] = False
        valid[shape[0] - border :, :] = False
        valid[:, :border] = False
        valid[:, shape[1] - border :] = False
    return np.argwhere(valid).astype(np.int64)


def candidates_local_maxima(
    zscore_map: np.ndarray, min_distance: float = 10, border: int = 0
) -> np.ndarray:
    """Local maxima of the z-score map, pairwise >= ``min_distance`` apart, outside ``border``.

    Same rule as :func:`difftm.stats.peaks.pick_peaks` with no threshold; int64 (K, 2) [y, x]
    sorted by descending z-score.
    """
    return pick_peaks(zscore_map, -np.inf, min_distance=min_distance, border=border)
