"""Tests for difftm.stats.survival."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erfc, ndtri

from difftm.stats.survival import expected_exceedances, survival_histogram
from difftm.stats.threshold import erfc_threshold, expected_false_positives

N_PIX = 1_000_000
N_SEARCH = 1000


def _maxima(n_pix: int, n_search: int, seed: int) -> np.ndarray:
    u = np.random.default_rng(seed).random(n_pix)
    return -ndtri(-np.expm1(np.log(u) / n_search))  # exact max of n_search unit normals


@pytest.fixture(scope="module")
def maxima() -> np.ndarray:
    return _maxima(N_PIX, N_SEARCH, seed=0)


def test_observed_matches_expected_within_poisson_error(maxima: np.ndarray) -> None:
    curve = survival_histogram(maxima, N_SEARCH, bins=np.linspace(2.0, 6.0, 81))
    assert curve.n_pixels == N_PIX
    assert curve.observed[0] > 0.99 * N_PIX and curve.expected[-1] < 1.5
    dev = np.abs(curve.observed - curve.expected)
    assert np.all(dev <= 5 * np.sqrt(curve.expected) + 2), np.max(dev / np.sqrt(curve.expected))
    # the test has power: the wrong number of search positions is rejected
    wrong = survival_histogram(maxima, 800, bins=curve.thresholds)
    assert np.max(np.abs(wrong.excess_sigma())) > 10


def test_counts_are_exact() -> None:
    v = np.array([3.0, 1.0, 2.0, 2.0, np.nan, 5.0])
    curve = survival_histogram(v, 1, bins=np.array([2.0, 0.0, 5.0, 5.5]))
    np.testing.assert_array_equal(curve.thresholds, [0.0, 2.0, 5.0, 5.5])
    np.testing.assert_array_equal(curve.observed, [5, 4, 1, 0])
    default = survival_histogram(v, 1, bins=5)
    np.testing.assert_allclose(default.thresholds, np.linspace(1.0, 5.0, 5))
    assert default.observed[0] == 5 and default.observed[-1] == 1


def test_single_search_is_erfc_and_tail_is_union_bound() -> None:
    t = np.linspace(-5, 8, 27)
    np.testing.assert_allclose(expected_exceedances(t, 1e6, 1),
                               1e6 * 0.5 * erfc(t / math.sqrt(2)), rtol=1e-12)
    # far tail: equals the union bound, no cancellation at huge n_search
    n_pix, n_search = 4096**2, 1_584_480 * 13
    t_star = erfc_threshold(n_pix, n_search)
    e = expected_exceedances(t_star, n_pix, n_search)
    assert e == pytest.approx(1.0, rel=1e-6)
    far = np.array([10.0, 20.0, 30.0])
    np.testing.assert_allclose(expected_exceedances(far, n_pix, n_search),
                               expected_false_positives(far, n_pix, n_search), rtol=1e-9)
    assert np.all(expected_exceedances(far, n_pix, n_search) > 0)
    # deep in the bulk every pixel exceeds
    assert expected_exceedances(-3.0, n_pix, n_search) == pytest.approx(n_pix, rel=1e-15)


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="no finite"):
        survival_histogram(np.array([np.nan]), 10)
    with pytest.raises(ValueError, match="bins"):
        survival_histogram(np.arange(5.0), 10, bins=1)
    with pytest.raises(ValueError, match="n_search"):
        expected_exceedances(1.0, 10, 0.5)
