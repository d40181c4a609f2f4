"""Tests for difftm.stats.gev (GEV fit of noise z-scores and the implied threshold)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats
from scipy.special import log_ndtr, ndtri

from difftm.stats.gev import GevFit, exclusion_mask, fit_gev, fit_gev_noise, gev_threshold
from difftm.stats.threshold import erfc_threshold

N_SEARCH = 1000
SHAPE = (1000, 1000)
N_PIX = SHAPE[0] * SHAPE[1]


def _maxima_of_normals(shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """Exact samples of the maximum of ``n`` iid standard normals (inverse CDF of Phi^n)."""
    u = np.random.default_rng(seed).random(shape)
    return -ndtri(-np.expm1(np.log(u) / n))


@pytest.fixture(scope="module")
def maxima() -> np.ndarray:
    return _maxima_of_normals(SHAPE, N_SEARCH, seed=0)


@pytest.fixture(scope="module")
def clean_fit(maxima: np.ndarray) -> GevFit:
    return fit_gev(maxima)


def test_cutoff_close_to_erfc_and_empirical(maxima: np.ndarray, clean_fit: GevFit) -> None:
    # Gaussian maxima approach the GEV slowly: the extrapolated cutoff is a few % low at
    # N = 1e3 (measured -4.5%), closer for larger N (see the next test)
    t_gev = gev_threshold(clean_fit, N_PIX)
    t_erfc = erfc_threshold(N_PIX, N_SEARCH)
    assert -0.06 < t_gev / t_erfc - 1 < 0.0, (t_gev, t_erfc)
    # empirical cutoff with 10 exceedances (the single largest value is too noisy)
    t_emp10 = np.sort(maxima.ravel())[-10]
    assert abs(gev_threshold(clean_fit, N_PIX, 10) / t_emp10 - 1) < 0.05
    # the fitted distribution matches the exact one over the fitted (upper) part
    x = np.quantile(maxima, np.linspace(0.5, 0.999, 50))
    exact_cdf = np.exp(N_SEARCH * log_ndtr(x))
    assert np.max(np.abs(clean_fit.cdf(x) - exact_cdf)) < 2e-3
    assert clean_fit.n_upper == pytest.approx(0.005 * N_PIX, rel=0.01)


def test_cutoff_bias_shrinks_with_more_search_positions() -> None:
    n_search = 100_000
    values = _maxima_of_normals((N_PIX,), n_search, seed=4)
    t_gev = gev_threshold(fit_gev(values), N_PIX)
    assert abs(t_gev / erfc_threshold(N_PIX, n_search) - 1) < 0.03


def test_planted_outliers_barely_move_the_fit(maxima: np.ndarray, clean_fit: GevFit) -> None:
    rng = np.random.default_rng(1)
    dirty = maxima.copy().ravel()
    where = rng.choice(dirty.size, 2000, replace=False)  # 0.2% outliers far in the tail
    dirty[where] = rng.uniform(8.0, 20.0, where.size)
    t_clean = gev_threshold(clean_fit, N_PIX)
    t_dirty = gev_threshold(fit_gev(dirty), N_PIX)
    assert abs(t_dirty / t_clean - 1) < 0.01, (t_clean, t_dirty)
    # censoring (count kept) is less robust to the same outliers than truncation
    t_censor = gev_threshold(fit_gev(dirty, upper_mode="censor"), N_PIX)
    assert abs(t_censor / t_clean - 1) > 0.03
    # without censoring the same outliers drag the tail far out: the scenario is meaningful
    t_naive = gev_threshold(fit_gev(dirty, upper_quantile=None, lower_quantile=0.0), N_PIX)
    assert t_naive / t_clean - 1 > 0.1


def test_map_fit_excludes_particle_neighbourhoods(maxima: np.ndarray, clean_fit: GevFit) -> None:
    rng = np.random.default_rng(2)
    blobs = np.zeros(SHAPE)
    blobs[rng.integers(20, 980, 300), rng.integers(20, 980, 300)] = 1.0
    blobs = ndimage.gaussian_filter(blobs, 3.0)
    blobs *= 12.0 / ndimage.gaussian_filter(np.pad([[1.0]], 10), 3.0).max()
    contaminated = np.maximum(maxima, blobs)  # ~2% of pixels dominated by 300 particles
    contaminated[:5, :] = np.nan  # unsearched rows are ignored
    t_clean = gev_threshold(clean_fit, N_PIX)
    noise_fit = fit_gev_noise(contaminated, exclusion_radius=12)
    assert abs(gev_threshold(noise_fit, N_PIX) / t_clean - 1) < 0.02
    assert noise_fit.n_excluded > 300 * 400
    # a censored fit alone is overwhelmed by this much contamination
    assert gev_threshold(fit_gev(contaminated), N_PIX) / t_clean - 1 > 0.5


def test_recovers_known_parameters() -> None:
    for c, loc, scale in [(-0.1, 2.0, 0.5), (0.2, -1.0, 2.0), (0.0, 0.0, 1.0)]:
        sample = stats.genextreme.rvs(c, loc, scale, size=200_000, random_state=3)
        fit = fit_gev(sample, upper_quantile=None, lower_quantile=0.0)
        assert fit.c == pytest.approx(c, abs=0.01)
        assert fit.loc == pytest.approx(loc, abs=0.02 * scale)
        assert fit.scale == pytest.approx(scale, rel=0.01)


@pytest.mark.parametrize("c", [-0.2, 0.0, 1e-13, 0.15])
def test_distribution_functions_match_scipy(c: float) -> None:
    fit = GevFit(c=c, loc=1.5, scale=0.7, n_values=0, n_upper=0, upper_point=np.inf)
    x = np.linspace(0.0, 4.0, 9)
    np.testing.assert_allclose(fit.cdf(x), stats.genextreme.cdf(x, c, 1.5, 0.7), atol=1e-12)
    np.testing.assert_allclose(fit.sf(x), stats.genextreme.sf(x, c, 1.5, 0.7), rtol=1e-9)
    # bounded tails (c > 0) lose the far tail to the finite end point in float64
    p = np.logspace(-300 if c <= 0 else -12, -1, 30)
    np.testing.assert_allclose(fit.sf(fit.isf(p)), p, rtol=1e-8)


def test_deterministic_and_errors(maxima: np.ndarray) -> None:
    a = fit_gev(maxima[:200])
    b = fit_gev(maxima[:200].copy())
    assert a == b
    with pytest.raises(ValueError, match="at least 100"):
        fit_gev(np.arange(50.0))
    with pytest.raises(ValueError, match="upper_quantile"):
        fit_gev(maxima, upper_quantile=1.5)
    with pytest.raises(ValueError, match="upper_mode"):
        fit_gev(maxima, upper_mode="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="constant"):
        fit_gev(np.ones(500), lower_quantile=0.0)
    with pytest.raises(ValueError, match="n_false_positives"):
        gev_threshold(a, 100, 200)


def test_exclusion_mask_radius() -> None:
    m = np.zeros((41, 41))
    m[20, 20] = 10.0
    keep = exclusion_mask(m, 5.0, 4.0)
    assert not keep[20, 24] and keep[20, 25] and not keep[23, 22] and keep[23, 23]
    assert exclusion_mask(m, 50.0, 4.0).all()


def test_exclusion_mask_equals_distance_transform() -> None:
    m = np.random.default_rng(6).standard_normal((120, 90))
    for radius in (0.0, 1.0, 2.5, 7.3):
        for threshold in (2.0, 3.0):
            expected = ndimage.distance_transform_edt(m < threshold) > radius
            np.testing.assert_array_equal(exclusion_mask(m, threshold, radius), expected)


def test_noise_fit_survives_exclusion_covering_most_of_a_small_map():
    """Regression: discs around pixels above a low provisional threshold used to cover the
    whole map and the second fit raised; the screening fit is used then."""
    rng = np.random.default_rng(4)
    small = rng.standard_normal((200, 1000)).max(axis=1).reshape(10, 20)
    small = np.repeat(np.repeat(small, 3, axis=0), 3, axis=1)  # 30 x 60, smooth-ish
    fit = fit_gev_noise(small, exclusion_radius=25.0)
    assert np.isfinite(fit.loc) and fit.scale > 0
    assert np.isfinite(gev_threshold(fit, small.size))
