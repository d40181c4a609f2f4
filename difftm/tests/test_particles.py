"""Particle calling: every metric per candidate, decisions consistent with thresholds."""

from __future__ import annotations

import numpy as np
import pytest

from difftm.search.engine import run_search
from difftm.search.particles import MIN_SPECIFICITY, call_particles, particles_star_tables
from difftm.stats.threshold import erfc_threshold

from search_helpers import write_inputs
from test_search_engine import PLANTS, _config, _planted


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("calls")
    image, vol, _ = _planted(tmp, seed=21, amplitude=12.0)
    mic, tpl = write_inputs(tmp, image, vol, 2.0)
    return run_search(_config(tmp, mic, tpl, "r", batch_size=16))


def test_all_metrics_and_decisions(result):
    table, summary = call_particles(result, metric="zscore")
    md = result.metadata
    t = erfc_threshold(md["valid_pixels"], md["n_search"], 1.0)
    assert summary.thresholds["zscore"] == pytest.approx(t)
    np.testing.assert_array_equal(table["called_zscore"], table["zscore"] >= t)
    np.testing.assert_array_equal(table["called_snr"], table["snr"] >= t)
    np.testing.assert_array_equal(table["called_pvalue"], table["neg_log_p"] >= 8.0)
    # the default is the chosen metric's decision alone (no specificity rule) ...
    assert MIN_SPECIFICITY is None
    np.testing.assert_array_equal(table["called"], table["called_zscore"])
    # ... and with a specificity rule, both
    gated, gsum = call_particles(result, metric="zscore", min_specificity=1.0)
    np.testing.assert_array_equal(
        gated["called"], gated["called_zscore"] & (gated["specificity"] >= 1.0))
    assert gsum.n_rejected_specificity == int((gated["called_zscore"]
                                               & (gated["specificity"] < 1.0)).sum())
    assert (np.diff(table["zscore"].to_numpy()) <= 0).all()  # strongest first
    # with --metric snr the candidates are SNR maxima: the planted centres exactly
    snr_table, _ = call_particles(result, metric="snr", min_specificity=None)
    called = {(int(r.y), int(r.x)) for r in snr_table[snr_table["called"]].itertuples()}
    assert {yx for yx, _ in PLANTS} <= called
    # defocus and Angstrom columns
    np.testing.assert_allclose(table["x_angstrom"], table["x"] * 2.0)
    np.testing.assert_allclose(table["defocus_u"], 9000.0 + table["defocus_offset"])
    assert summary.n_called["snr"] == int(table["called_snr"].sum())
    assert f"called {int(table['called'].sum())} of {len(table)} candidates" in summary.line()


def test_user_cutoff_and_pvalue_populations(result):
    table, summary = call_particles(result, metric="snr", cutoff=5.0, min_specificity=None)
    assert summary.cutoff == 5.0
    np.testing.assert_array_equal(table["called"], table["snr"] >= 5.0)
    t_all, _ = call_particles(result, metric="pvalue", pvalue_candidates="all", pvalue_region="q3")
    assert np.isfinite(t_all["neg_log_p"]).all() and (t_all["neg_log_p"] >= 0).all()
    strongest = t_all.sort_values("snr", ascending=False).iloc[0]
    assert strongest["neg_log_p"] >= np.quantile(t_all["neg_log_p"], 0.9)
    with pytest.raises(ValueError, match="metric"):
        call_particles(result, metric="nonsense")  # type: ignore[arg-type]


def test_star_tables_hold_called_particles_only(result):
    table, _ = call_particles(result, metric="snr")
    optics, particles = particles_star_tables(table, result, "mic.mrc")
    assert len(particles) == int(table["called"].sum())
    assert set(particles["rlnMicrographName"]) == {"mic.mrc"}
    assert float(optics["rlnImagePixelSize"].iloc[0]) == 2.0


def test_defaults_snr_metric_and_suppression_from_the_template_extent(tmp_path):
    from difftm.search.particles import DEFAULT_METRIC, SUPPRESSION_DIAMETERS

    image, vol, _ = _planted(tmp_path, seed=22, amplitude=12.0)
    mic, tpl = write_inputs(tmp_path, image, vol, 2.0)
    res = run_search(_config(tmp_path, mic, tpl, "d", batch_size=16, phase_shift=30.0,
                             ctf_bfactor=40.0))
    md = res.metadata
    assert 0 < md["template_diameter_px"] <= md["box"]
    table, summary = call_particles(res)
    assert summary.metric == DEFAULT_METRIC == "snr"
    peaks = table[["y", "x"]].to_numpy(float)
    d = np.hypot(*(peaks[:, None, :] - peaks[None, :, :]).transpose(2, 0, 1))
    d[np.diag_indices(len(peaks))] = np.inf
    # no two candidates closer than the suppression radius derived from the template
    assert d.min() >= SUPPRESSION_DIAMETERS * md["template_diameter_px"]
    # the CTF's phase shift and B-factor reach the RELION table
    _, particles = particles_star_tables(table, res, "m.mrc")
    assert len(particles) > 0
    assert (particles["rlnPhaseShift"] == 30.0).all()
    assert (particles["rlnCtfBfactor"] == 40.0).all()
    assert md["phase_shift"] == 30.0 and md["ctf_bfactor"] == 40.0


def test_undefined_pvalue_leaves_the_other_metrics_alone(result, monkeypatch):
    """Regression (detection matrix, 6ZU5 at 1 A/px: two particles, ten candidates): where
    the p-value model is undefined (z-score and SNR ranks alike), the call used to fail."""
    import difftm.stats.pvalue as pvalue

    def undefined(*args, **kwargs):
        raise ValueError("zscore and snr have (nearly) identical ranks; the p-value is undefined")

    monkeypatch.setattr(pvalue, "neg_log_pvalue", undefined)
    table, summary = call_particles(result, metric="snr", min_specificity=None)
    assert table["neg_log_p"].isna().all() and summary.n_called["pvalue"] == 0
    assert summary.n_called["snr"] >= 2
