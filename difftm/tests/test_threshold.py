"""Tests for difftm.stats.threshold."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import erfcinv

from difftm.stats.threshold import erfc_threshold, expected_false_positives

HOPF_C1_GRID = 1_584_480  # 2.5 deg out-of-plane, 1.5 deg in-plane


@pytest.mark.parametrize(
    ("ny", "nx", "n_defocus", "expected", "digits"),
    [
        (4092, 5760, 13, 7.851, 3),
        (4092, 5760, 1, 7.52, 2),
        (4096, 4096, 13, 7.81, 2),
        (4096, 4096, 1, 7.48, 2),
    ],
)
def test_science_table(ny: int, nx: int, n_defocus: int, expected: float, digits: int) -> None:
    t = erfc_threshold(ny * nx, HOPF_C1_GRID * n_defocus)
    assert round(t, digits) == pytest.approx(expected, abs=1e-12)


def test_matches_erfcinv_formula_for_moderate_arguments() -> None:
    for n_pix, n_search, n_fp in [(100, 10, 1.0), (1e6, 1e3, 3.0), (2e7, 2e7, 0.5)]:
        direct = math.sqrt(2) * erfcinv(2 * n_fp / (n_pix * n_search))
        assert erfc_threshold(n_pix, n_search, n_fp) == pytest.approx(direct, rel=1e-13)


def test_tiny_tail_probabilities_stay_accurate() -> None:
    # Mills-ratio asymptotics: Q(t) ~ phi(t)/t (1 - 1/t^2 + 3/t^4); check at p = 1e-300.
    t = erfc_threshold(1e150, 1e150, 1.0)
    log_q = -0.5 * t * t - math.log(t * math.sqrt(2 * math.pi)) + math.log1p(
        -1 / t**2 + 3 / t**4 - 15 / t**6
    )
    assert log_q == pytest.approx(math.log(1e-300), rel=1e-9)
    assert t == pytest.approx(37.0471, abs=1e-4)


def test_round_trip_and_monotonicity() -> None:
    n_pix, n_search = 4096.0 * 4096.0, HOPF_C1_GRID * 13.0
    fps = np.array([0.01, 0.1, 1.0, 10.0, 100.0])
    ts = np.array([erfc_threshold(n_pix, n_search, f) for f in fps])
    assert np.all(np.diff(ts) < 0)
    np.testing.assert_allclose(expected_false_positives(ts, n_pix, n_search), fps, rtol=1e-10)
    assert isinstance(expected_false_positives(7.0, n_pix, n_search), float)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((0, 10, 1.0), "n_pixels"),
        ((10, 0.5, 1.0), "n_search"),
        ((10, 10, 0.0), "n_false_positives"),
        ((10, 10, 100.0), "n_false_positives"),
        ((10, 10, float("nan")), "n_false_positives"),
    ],
)
def test_bad_input(args: tuple[float, float, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        erfc_threshold(*args)
