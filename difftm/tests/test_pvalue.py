"""Tests for difftm.stats.pvalue (2DTM p-value, Zhang et al. 2025)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest
from scipy.special import ndtri

from difftm.stats.pvalue import (
    candidates_all_pixels,
    candidates_local_maxima,
    fit_pvalue_model,
    neg_log_pvalue,
    probit_ranks,
)


def _shared_data() -> Path:
    env = os.environ.get("DIFFTM_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    path = _shared_data() / "reference" / "pvalue_reference_a.npz"
    if not path.is_file():
        pytest.skip(f"reference data not found at {path} (set DIFFTM_SHARED_DATA)")
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.mark.parametrize("region", ["q1", "q3"])
def test_matches_reference(reference: dict[str, np.ndarray], region: str) -> None:
    ours = neg_log_pvalue(reference["zscore"], reference["snr"], region=region)
    np.testing.assert_allclose(ours, reference[f"neglogp_{region}"], rtol=0, atol=1e-5)
    # the planted signals are the strongest candidates
    assert np.all(ours[reference["signal_index"]] > np.median(ours))


def test_probit_matches_reference(reference: dict[str, np.ndarray]) -> None:
    np.testing.assert_allclose(probit_ranks(reference["zscore"]), reference["probit_zscore"],
                               rtol=0, atol=1e-10)
    np.testing.assert_allclose(probit_ranks(reference["snr"]), reference["probit_snr"],
                               rtol=0, atol=1e-10)


def test_rank_invariance(reference: dict[str, np.ndarray]) -> None:
    z, s = reference["zscore"], reference["snr"]
    base = neg_log_pvalue(z, s)
    moved = neg_log_pvalue(np.exp(z / 3.0), 2.0 * s**3 - 7.0)
    np.testing.assert_allclose(moved, base, rtol=0, atol=1e-12)
    assert np.count_nonzero(base) > 1000  # the check compares real values, not all zeros


def test_probit_ties_get_average_rank() -> None:
    q = probit_ranks(np.array([3.0, 1.0, 3.0, 2.0]))
    # ranks 4 and 3 tie -> 3.5 each; u = (r - 0.5)/4
    expected = ndtri((np.array([3.5, 1.0, 3.5, 2.0]) - 0.5) / 4.0)
    np.testing.assert_allclose(q, expected, rtol=0, atol=1e-15)


def _isotropic_inputs(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs whose probit moment matrix is exactly isotropic (sum q1 q2 = 0).

    Blocks of four ranks with probit values (x, y, -x, -y) are given SNR ranks that rotate the
    points by 90 degrees: (x, y), (y, -x), (-x, -y), (-y, x).
    """
    n = 4 * m
    zscore = np.arange(n, dtype=np.float64)  # rank k -> probit P[k]
    snr_rank = np.empty(n, dtype=np.int64)
    for i in range(m):
        ix, iy, jx, jy = i, i + m, n - 1 - i, n - 1 - (i + m)  # values x, y, -x, -y
        snr_rank[ix], snr_rank[iy], snr_rank[jx], snr_rank[jy] = iy, jx, jy, ix
    assert np.array_equal(np.sort(snr_rank), np.arange(n))
    return zscore, snr_rank.astype(np.float64) * 0.5 + 10.0


def test_isotropic_inputs_give_quarter_gaussian() -> None:
    z, s = _isotropic_inputs(500)
    model = fit_pvalue_model(z, s)
    assert model.a == pytest.approx(model.b, rel=1e-12)
    assert model.gamma == pytest.approx(math.pi / 2, abs=1e-12)
    q1, q2 = probit_ranks(z), probit_ranks(s)
    r2 = (q1**2 + q2**2) / model.a**2
    nlp = neg_log_pvalue(z, s)
    first = (q1 > 0) & (q2 > 0)
    assert first.sum() > 100
    # p = exp(-r^2/2) / 4 in the first quadrant, 1 elsewhere
    np.testing.assert_allclose(np.exp(-nlp[first]), np.exp(-r2[first] / 2) / 4, rtol=1e-12)
    assert np.all(nlp[~first] == 0.0)


def test_null_calibration() -> None:
    """Under correlated Gaussian noise, P(-ln p >= c) = exp(-c) (for exp(-c) < gamma/2pi)."""
    rng = np.random.default_rng(11)
    n, rho = 400_000, 0.6
    g = rng.standard_normal((2, n))
    z = g[0]
    s = rho * g[0] + math.sqrt(1 - rho**2) * g[1]
    nlp = neg_log_pvalue(z, s)
    for c in (2.0, 4.0, 6.0):
        expected = n * math.exp(-c)
        observed = np.count_nonzero(nlp >= c)
        assert abs(observed - expected) < 5 * math.sqrt(expected) + 5, (c, observed, expected)


def test_regions_and_log_space() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal(5000)
    s = 0.5 * z + rng.standard_normal(5000)
    z[0], s[0] = 1e6, 1e6  # ranks are bounded, values never overflow
    q1 = neg_log_pvalue(z, s, region="q1")
    q3 = neg_log_pvalue(z, s, region="q3")
    assert np.all(np.isfinite(q1)) and np.all(np.isfinite(q3))
    inside_q1 = q1 > 0
    np.testing.assert_array_equal(q1[inside_q1], q3[inside_q1])
    assert np.count_nonzero(q3 > 0) > np.count_nonzero(inside_q1)
    assert q1[0] == q1.max()


def test_boundary_points_have_cutoff_value(reference: dict[str, np.ndarray]) -> None:
    model = fit_pvalue_model(reference["zscore"], reference["snr"])
    for region in ("q1", "q3"):
        b1, b2 = model.boundary(8.0, region=region)
        ok = np.isfinite(b1)
        assert ok.sum() > 50
        np.testing.assert_allclose(model.neg_log_p(b1[ok], b2[ok], region=region), 8.0,
                                   rtol=1e-12)
    # raw-space round trip through the empirical CDFs
    b1, b2 = model.boundary(6.0)
    zr, sr = model.from_probit(b1, b2)
    ok = np.isfinite(zr) & np.isfinite(sr)
    assert ok.sum() > 50
    back = model.neg_log_p(*model.to_probit(zr[ok], sr[ok]))
    np.testing.assert_allclose(back, 6.0, rtol=1e-9)


@pytest.mark.parametrize(
    ("zscore", "snr", "region", "message"),
    [
        (np.arange(2.0), np.arange(2.0), "q1", "at least 3"),
        (np.arange(5.0), np.arange(4.0), "q1", "shapes differ"),
        (np.ones(10), np.arange(10.0), "q1", "zscore is constant"),
        (np.arange(10.0), np.full(10, 2.0), "q1", "snr is constant"),
        (np.r_[np.arange(9.0), np.nan], np.arange(10.0)[::-1], "q1", "non-finite"),
        (np.arange(10.0), np.arange(10.0) ** 2, "q1", "identical ranks"),
        (np.arange(10.0), np.arange(10.0)[::-1], "q2", "unknown p-value region"),
    ],
)
def test_degenerate_input(zscore: np.ndarray, snr: np.ndarray, region: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        neg_log_pvalue(zscore, snr, region=region)
    assert "\n" not in str(info.value)


def test_candidates_all_pixels() -> None:
    z = np.zeros((6, 7))
    s = np.ones((6, 7))
    s[2, 3] = np.nan
    idx = candidates_all_pixels([z, s], border=1)
    assert idx.shape == (4 * 5 - 1, 2)
    assert [2, 3] not in idx.tolist()
    assert idx[:, 0].min() == 1 and idx[:, 0].max() == 4
    assert idx[:, 1].min() == 1 and idx[:, 1].max() == 5
    with pytest.raises(ValueError, match="same-shaped"):
        candidates_all_pixels([z, s[:, :3]])


def test_candidates_local_maxima_then_pvalue() -> None:
    rng = np.random.default_rng(5)
    shape = (300, 300)
    z = rng.standard_normal(shape)
    s = 0.6 * z + 0.8 * rng.standard_normal(shape)
    planted = [(50, 60), (150, 200), (250, 100)]
    for y, x in planted:
        z[y, x] += 9.0
        s[y, x] += 9.0
    idx = candidates_local_maxima(z, min_distance=10, border=5)
    assert idx.shape[0] > 100
    d = np.hypot(*(idx[:, None, :] - idx[None, :, :]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(idx), 1)].min() >= 10
    nlp = neg_log_pvalue(z[idx[:, 0], idx[:, 1]], s[idx[:, 0], idx[:, 1]])
    top = {tuple(p) for p in idx[np.argsort(-nlp)[:3]].tolist()}
    assert top == set(planted)
