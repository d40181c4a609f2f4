"""Survival histograms of 2DTM scores against the Gaussian noise expectation.

Under the noise model each pixel's score is the maximum of ``n_search`` independent unit
Gaussians, so the expected number of pixels scoring at or above t is

    E(t) = n_pixels * (1 - Phi(t)^n_search) = -n_pixels * expm1(n_search * log Phi(t)),

evaluated with ``log_ndtr`` and ``expm1`` so that it keeps full relative precision in the far
tail (where it equals the union bound ``n_pixels * n_search * 0.5 erfc(t / sqrt 2)`` used by
:func:`difftm.stats.threshold.erfc_threshold`) and near t -> -inf. For ``n_search = 1`` it is
``n_pixels * 0.5 erfc(t / sqrt 2)``. Observed counts above E(t) in the tail are detections
(or a noise model that underestimates the tail); counts below it mean fewer effective
independent search positions than ``n_search``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import log_ndtr


def expected_exceedances(
    threshold: float | np.ndarray, n_pixels: float, n_search: float
) -> np.ndarray:
    """Expected number of pixels whose max over ``n_search`` unit Gaussians is >= threshold.

    Args:
        threshold: score(s) in noise-sigma units.
        n_pixels: number of pixels.
        n_search: search positions per pixel (>= 1, need not be an integer).

    Returns:
        float64 array shaped like ``threshold``.
    """
    if not n_pixels > 0 or not n_search >= 1:
        raise ValueError(f"need n_pixels > 0 and n_search >= 1, got {n_pixels}, {n_search}")
    t = np.asarray(threshold, dtype=np.float64)
    return -float(n_pixels) * np.expm1(float(n_search) * log_ndtr(t))


@dataclass(frozen=True)
class SurvivalCurve:
    """Observed and expected survival counts of a score map.

    Attributes:
        thresholds: score thresholds t (ascending), float64.
        observed: number of values >= t, int64.
        expected: noise expectation E(t) (see module docstring), float64.
        n_pixels: number of pixels used for the expectation.
        n_search: search positions per pixel used for the expectation.
    """

    thresholds: np.ndarray
    observed: np.ndarray
    expected: np.ndarray
    n_pixels: int
    n_search: float

    @property
    def poisson_sigma(self) -> np.ndarray:
        """Poisson standard deviation sqrt(E(t)) of the observed counts under noise."""
        return np.sqrt(self.expected)

    def excess_sigma(self) -> np.ndarray:
        """(observed - expected) / sqrt(max(expected, 1)) per threshold."""
        return (self.observed - self.expected) / np.sqrt(np.maximum(self.expected, 1.0))


def survival_histogram(
    values: np.ndarray,
    n_search: float,
    bins: int | np.ndarray = 200,
    n_pixels: int | None = None,
) -> SurvivalCurve:
    """Count values >= t over thresholds t and compare with the Gaussian-maxima expectation.

    Args:
        values: per-pixel scores (any shape; NaN ignored), e.g. a 2DTM SNR map.
        n_search: search positions per pixel (orientations x defocus planes ...).
        bins: number of equally spaced thresholds from the lowest to the highest value, or
            an explicit array of thresholds (sorted on return).
        n_pixels: pixels for the expectation; default the number of finite values.

    Returns:
        :class:`SurvivalCurve`.

    Raises:
        ValueError: no finite values, or a bad ``bins``.
    """
    x = np.asarray(values, dtype=np.float64).ravel()
    x = np.sort(x[np.isfinite(x)])
    if x.size == 0:
        raise ValueError("survival_histogram: no finite values")
    if isinstance(bins, (int, np.integer)):
        if bins < 2:
            raise ValueError(f"bins must be >= 2, got {bins}")
        thresholds = np.linspace(x[0], x[-1], int(bins))
    else:
        thresholds = np.sort(np.asarray(bins, dtype=np.float64).ravel())
        if thresholds.size == 0 or not np.all(np.isfinite(thresholds)):
            raise ValueError("bins must be a non-empty array of finite thresholds")
    observed = (x.size - np.searchsorted(x, thresholds, side="left")).astype(np.int64)
    n_pix = int(x.size if n_pixels is None else n_pixels)
    expected = expected_exceedances(thresholds, n_pix, n_search)
    return SurvivalCurve(thresholds=thresholds, observed=observed, expected=expected,
                         n_pixels=n_pix, n_search=float(n_search))
