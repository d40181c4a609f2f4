"""Tests for difftm.report.stats_figures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from difftm.report.stats_figures import decision_boundary, plot_snr_vs_zscore, plot_survival
from difftm.stats.pvalue import fit_pvalue_model, neg_log_pvalue
from difftm.stats.survival import survival_histogram
from difftm.stats.threshold import erfc_threshold


@pytest.fixture(scope="module")
def candidates() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    n = 5000
    z = rng.standard_normal(n) + 4.0
    s = 0.6 * (z - 4.0) + 0.8 * rng.standard_normal(n) + 5.0
    z[:20] += 4.0
    s[:20] += 4.0
    return z, s


def _png_ok(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 5000
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("region", ["q1", "q3"])
def test_snr_vs_zscore_figure(tmp_path: Path, candidates: tuple[np.ndarray, np.ndarray],
                              region: str) -> None:
    z, s = candidates
    model = fit_pvalue_model(z, s)
    nlp = neg_log_pvalue(z, s, region=region)
    called = nlp >= 6.0
    assert 0 < called.sum() < 200
    out = plot_snr_vs_zscore(s, z, model, called, 6.0, tmp_path / f"scatter_{region}.png",
                             region=region)
    assert out == tmp_path / f"scatter_{region}.png"
    _png_ok(out)


def test_boundary_has_cutoff_value(candidates: tuple[np.ndarray, np.ndarray]) -> None:
    z, s = candidates
    model = fit_pvalue_model(z, s)
    for region in ("q1", "q3"):
        for cutoff in (4.0, 6.0):
            bz, bs = decision_boundary(model, cutoff, region=region, space="raw")
            ok = np.isfinite(bz) & np.isfinite(bs)
            assert ok.sum() > 100
            nlp = model.neg_log_p(*model.to_probit(bz[ok], bs[ok]), region=region)
            np.testing.assert_allclose(nlp, cutoff, rtol=1e-9)
            # points just outside the curve (larger values) are called, inside are not
            q1, q2 = decision_boundary(model, cutoff, region=region, space="probit")
            fin = np.isfinite(q1) & (q1 > 0.1) & (q2 > 0.1)
            assert np.all(model.neg_log_p(1.05 * q1[fin], 1.05 * q2[fin], region) > cutoff)
            assert np.all(model.neg_log_p(0.95 * q1[fin], 0.95 * q2[fin], region) < cutoff)
    with pytest.raises(ValueError, match="space"):
        decision_boundary(model, 6.0, space="log")


def test_scatter_fits_model_when_missing_and_checks_shapes(
    tmp_path: Path, candidates: tuple[np.ndarray, np.ndarray]
) -> None:
    z, s = candidates
    _png_ok(plot_snr_vs_zscore(s, z, None, np.zeros(z.shape, bool), 8.0, tmp_path / "a.png"))
    with pytest.raises(ValueError, match="shapes differ"):
        plot_snr_vs_zscore(s, z[:10], None, np.zeros(10, bool), 8.0, tmp_path / "b.png")


def test_survival_figure(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    values = rng.standard_normal(200_000)
    values[:5] = 9.0
    curve = survival_histogram(values, 1, bins=100)
    t = erfc_threshold(values.size, 1)
    out = plot_survival(curve, t, tmp_path / "survival.png")
    _png_ok(out)
    _png_ok(plot_survival(curve, None, tmp_path / "survival_nothr.png"))
