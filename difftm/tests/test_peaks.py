"""Tests for difftm.stats.peaks.pick_peaks."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from difftm.stats.peaks import local_maximum_mask, pick_peaks


def _noise(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape)


def _pairwise_min_distance(peaks: np.ndarray) -> float:
    diff = peaks[:, None, :].astype(float) - peaks[None, :, :]
    d = np.hypot(diff[..., 0], diff[..., 1])
    return float(d[np.triu_indices(len(peaks), 1)].min())


def test_planted_peaks_recovered_in_order() -> None:
    m = _noise((256, 320))
    planted = [(40, 50, 12.0), (100, 200, 10.0), (200, 30, 9.0), (128, 300, 8.0)]
    for y, x, v in planted:
        m[y, x] = v
    peaks = pick_peaks(m, threshold=7.0, min_distance=10)
    assert peaks.dtype == np.int64 and peaks.shape == (4, 2)
    np.testing.assert_array_equal(peaks, [[y, x] for y, x, _ in planted])


def test_suppression_radius_is_a_disc() -> None:
    m = np.zeros((100, 100))
    m[50, 50] = 10.0
    m[50, 59] = 9.0  # distance 9 < 10: suppressed
    m[50, 40] = 8.0  # distance 10: kept (peaks are >= min_distance apart)
    m[57, 57] = 7.0  # distance 9.9: suppressed
    m[59, 59] = 6.0  # distance 12.7 from (50, 50), 2.8 from the suppressed (57, 57): kept
    peaks = pick_peaks(m, threshold=1.0, min_distance=10)
    np.testing.assert_array_equal(peaks, [[50, 50], [50, 40], [59, 59]])


def test_greedy_not_disc_maxima() -> None:
    """A peak suppressed by a higher one does not suppress others (cisTEM greedy rule)."""
    m = np.zeros((60, 60))
    m[30, 10], m[30, 18], m[30, 26] = 10.0, 9.0, 8.0
    peaks = pick_peaks(m, threshold=1.0, min_distance=10)
    np.testing.assert_array_equal(peaks, [[30, 10], [30, 26]])


def test_random_maps_respect_radius_and_greedy_order() -> None:
    m = ndimage.gaussian_filter(_noise((300, 300), seed=1), 1.5)
    peaks = pick_peaks(m, threshold=0.0, min_distance=12)
    assert len(peaks) > 50
    assert _pairwise_min_distance(peaks) >= 12
    scores = m[peaks[:, 0], peaks[:, 1]]
    assert np.all(np.diff(scores) <= 0)
    # every local maximum above threshold is either accepted or within 12 px of a higher peak
    lm = np.argwhere(local_maximum_mask(m) & (m >= 0.0))
    for y, x in lm:
        d = np.hypot(peaks[:, 0] - y, peaks[:, 1] - x)
        near = d < 12
        assert d.min() == 0 or np.any(m[peaks[near, 0], peaks[near, 1]] >= m[y, x])


def test_border_respected() -> None:
    m = np.zeros((80, 80))
    m[3, 40] = 9.0
    m[40, 76] = 9.0
    m[40, 40] = 5.0
    m[10, 10] = 4.0
    peaks = pick_peaks(m, threshold=1.0, min_distance=5, border=10)
    np.testing.assert_array_equal(peaks, [[40, 40], [10, 10]])
    assert pick_peaks(m, threshold=1.0, border=40).shape == (0, 2)


def test_shoulder_of_border_peak_not_picked() -> None:
    yy, xx = np.mgrid[:64, :64]
    m = 10.0 * np.exp(-((yy - 2) ** 2 + (xx - 32) ** 2) / 50.0)  # broad peak inside the border
    peaks = pick_peaks(m, threshold=1.0, min_distance=3, border=5)
    assert peaks.shape == (0, 2)


def test_ties_are_deterministic() -> None:
    m = np.zeros((50, 50))
    m[20, 30] = 5.0
    m[20, 25] = 5.0  # same row, smaller x -> first in row-major order
    m[24, 10] = 5.0  # later row
    peaks = pick_peaks(m, threshold=1.0, min_distance=6)
    np.testing.assert_array_equal(peaks, [[20, 25], [24, 10]])
    # a plateau yields exactly one peak, its top-left pixel
    p = np.zeros((30, 30))
    p[10:13, 10:14] = 3.0
    np.testing.assert_array_equal(pick_peaks(p, 1.0, min_distance=5), [[10, 10]])
    # identical results when called again or on a transposed-back copy
    np.testing.assert_array_equal(pick_peaks(m, 1.0, 6), pick_peaks(m.copy(order="F"), 1.0, 6))


def test_max_peaks_nan_and_threshold_inclusive() -> None:
    m = np.zeros((40, 40))
    m[5, 5], m[20, 20], m[30, 35] = 3.0, 2.0, 1.0
    m[10, 30] = np.nan
    np.testing.assert_array_equal(pick_peaks(m, 1.0, 5, max_peaks=2), [[5, 5], [20, 20]])
    np.testing.assert_array_equal(pick_peaks(m, 1.0, 5), [[5, 5], [20, 20], [30, 35]])
    assert pick_peaks(m, 3.5).shape == (0, 2)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="2D"):
        pick_peaks(np.zeros(10), 1.0)
    with pytest.raises(ValueError, match="min_distance"):
        pick_peaks(np.zeros((5, 5)), 1.0, min_distance=-1)
    with pytest.raises(ValueError, match="NaN"):
        pick_peaks(np.zeros((5, 5)), float("nan"))


def test_large_map_is_fast() -> None:
    m = ndimage.gaussian_filter(_noise((4096, 4096), seed=2), 1.0)
    m /= m.std()
    start = time.perf_counter()
    peaks = pick_peaks(m, threshold=2.5, min_distance=10, border=16)
    elapsed = time.perf_counter() - start
    assert len(peaks) > 1000
    assert elapsed < 20.0, elapsed  # ~0.1 s unloaded; a per-pixel Python loop takes minutes
    assert _pairwise_min_distance(peaks[:2000]) >= 10
