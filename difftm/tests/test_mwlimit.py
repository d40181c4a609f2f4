"""Tests of the molecular-weight-limit theory (difftm.theory, ``difftm mwlimit``).

Formulas are pinned against hand computations: SNR ~ sqrt(fluence), SNR^2 ~ mass, the DQE
and thickness factors, the integral of eq. (1) done independently on a numpy grid, the
ideal matched filter of the simulator's own noiseless particles, and the published limits
under their (documented, partly calibrated) parameter sets.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from difftm.physics.electron import interaction_constant
from difftm.theory.limits import (
    PUBLISHED,
    SearchSpace,
    particle_diameter,
    required_angular_accuracy_deg,
    smallest_detectable_mass,
)
from difftm.theory.snr import (
    ImagingParameters,
    SnrCalculator,
    expected_snr,
    inelastic_mean_free_path,
    mass_spectrum,
    model_spectrum,
)

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"

#: Fast settings: phase plate (no CTF oscillations: a 256 grid), 2 A pixels, no damage.
FAST = ImagingParameters(phase_plate=True, pixel_size=2.0, exposure="none",
                         detector="perfect", thickness_nm=0.0, fluence=20.0)


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_snr_scales_as_sqrt_fluence():
    a = expected_snr(50e3, FAST).snr
    b = expected_snr(50e3, FAST.with_(fluence=4 * FAST.fluence)).snr
    assert b / a == pytest.approx(2.0, rel=1e-9)


def test_snr_squared_is_linear_in_mass_at_high_resolution():
    # above the particle's low-resolution envelope only incoherent atom scattering is left:
    # SNR^2 = fluence * mass * const (random-atom / Wilson statistics)
    p = FAST.with_(highpass=8.0, solvent_potential=0.0)
    s1 = expected_snr(100e3, p).snr
    s4 = expected_snr(400e3, p).snr
    assert s4 / s1 == pytest.approx(2.0, rel=0.02)
    # and the full signal grows faster (coherent low-resolution term ~ mass^2)
    assert expected_snr(400e3, FAST).snr / expected_snr(100e3, FAST).snr > 2.05


def test_dqe_and_thickness_factors():
    base = expected_snr(50e3, FAST).snr
    assert expected_snr(50e3, FAST.with_(dqe0=0.5)).snr / base == pytest.approx(
        math.sqrt(0.5), rel=1e-9)
    mfp = inelastic_mean_free_path(300.0)
    assert mfp == pytest.approx(395.0)
    assert 250.0 < inelastic_mean_free_path(200.0) < mfp  # fewer collisions at higher kV
    t = 100.0
    filt = expected_snr(50e3, FAST.with_(thickness_nm=t)).snr / base
    assert filt == pytest.approx(math.exp(-t / (2 * mfp)), rel=1e-9)  # fluence x e^{-t/l}
    unfilt = expected_snr(50e3, FAST.with_(thickness_nm=t, energy_filter=False)).snr / base
    assert unfilt == pytest.approx(math.exp(-t / mfp), rel=1e-9)  # amplitude x e^{-t/l}
    noisy = expected_snr(50e3, FAST.with_(background_noise=3.0)).snr / base
    assert noisy == pytest.approx(0.5, rel=1e-9)


def test_dqe_curve_from_a_file_and_named_detectors(tmp_path):
    curve = tmp_path / "dqe.txt"
    curve.write_text("# fraction of Nyquist, DQE\n0 0.5\n1 0.5\n")
    base = expected_snr(50e3, FAST).snr
    flat = expected_snr(50e3, FAST.with_(detector=str(curve))).snr
    assert flat / base == pytest.approx(math.sqrt(0.5), rel=1e-6)
    # the pixel aperture of a counting detector and the K3 MTF lose signal at high k
    counting = expected_snr(50e3, FAST.with_(detector="counting")).snr
    k3 = expected_snr(50e3, FAST.with_(detector="k3", dqe0=1.0)).snr
    assert k3 < counting < base


def test_eq1_against_an_independent_numpy_integral():
    """SNR^2 = F (2 sigma_e)^2 sum_k CTF^2 P(|k|) dk^2 over the Nyquist square, done here
    with numpy on its own grid (phase plate, A = 0, Cs = 0: CTF^2 = 1; perfect detector)."""
    p = FAST.with_(amplitude_contrast=0.0, cs_mm=0.0)
    got = expected_snr(30e3, p).snr
    n = 2048
    f = np.fft.fftfreq(n, d=p.pixel_size)
    k = np.hypot(*np.meshgrid(f, f, indexing="ij")).ravel()
    k = k[k > 0]
    spec = mass_spectrum(30e3, np.linspace(0, k.max(), 3000), p)
    power = np.interp(k, spec.k, spec.power)
    sigma = interaction_constant(p.voltage_kv)
    hand = math.sqrt(p.fluence * (2 * sigma) ** 2 * power.sum() / (n * p.pixel_size) ** 2)
    assert got == pytest.approx(hand, rel=0.01)


def test_damage_and_cooling_lower_and_raise_snr():
    p = FAST.with_(phase_plate=False, defocus=8000.0, pixel_size=1.5, fluence=40.0)
    none = expected_snr(100e3, p).snr
    weighted = expected_snr(100e3, p.with_(exposure="dose-weighted")).snr
    summed = expected_snr(100e3, p.with_(exposure="summed")).snr
    helium = expected_snr(100e3, p.with_(exposure="dose-weighted", cooling="lhe")).snr
    assert summed < weighted < helium < none
    # a critical exposure scaled by s is the same as a fluence divided by s (per frame)
    s = p.with_(exposure="summed", critical_exposure_scale=2.0)
    assert expected_snr(100e3, s).snr > summed


def test_mass_route_close_to_model_route_for_a_globular_protein():
    atoms = _model("1ubi.pdb.gz")
    spec = model_spectrum(atoms, voxel_size=1.0)
    assert spec.mass_da == pytest.approx(7930.7, rel=1e-3)
    p = ImagingParameters(pixel_size=2.0, detector="counting", exposure="none",
                          thickness_nm=0.0, fluence=40.0, hydrogens=False)
    calc = SnrCalculator(p)
    model, mass = calc.snr(spec), calc.snr_of_mass(spec.mass_da)
    assert mass.snr == pytest.approx(model.snr, rel=0.10)
    # difftm's template has no solvent: its SNR is a little lower than the ideal filter's
    assert 0.85 * model.snr < model.snr_template < model.snr


def test_prediction_equals_the_simulators_ideal_matched_filter():
    """The orientation-averaged theory against sqrt(N0 sum c^2) of noiseless particles
    planted by the simulator (exact atom projections, solvent, CTF, pixel averaging)."""
    from difftm.simulate.micrograph import simulate_micrograph
    from difftm.simulate.template import simulate_template, suggest_box

    atoms = _model("1ubi.pdb.gz")
    # 1 A/px: at coarser pixels the pixel-averaged simulation aliases signal from beyond
    # Nyquist into the image, which the Nyquist-limited theory leaves out (docs/THEORY.md)
    px, defocus, fluence = 1.0, 5000.0, 40.0
    box = suggest_box(atoms, px)
    vol = simulate_template(atoms, pixel_size=px, box=box)
    n = 8
    sim = simulate_micrograph(vol, px, (512, 512), n, defocus, fluence=fluence, seed=3,
                              atoms=atoms, shot_noise=False, min_separation=100)
    n0 = sim.params["mean_counts"]
    c = sim.noiseless.astype(np.float64) / n0 - 1.0
    ideal = math.sqrt(n0 * (c**2).sum() / n)
    p = ImagingParameters(pixel_size=px, defocus=defocus, fluence=fluence,
                          detector="counting", exposure="none", thickness_nm=0.0,
                          hydrogens=False)
    predicted = expected_snr(model_spectrum(atoms, voxel_size=1.0), p).snr
    assert predicted == pytest.approx(ideal, rel=0.08)
    # a dropped factor 2 of the contrast (or sigma_e squared) would be far outside
    assert not 0.6 < predicted / (2 * ideal) < 1.4


def test_predicted_vs_measured_on_a_planted_crop():
    """Scores of planted particles at their true poses (the search's SNR units) agree with
    the prediction for difftm's template and the crop's particle density within 20 %
    (benchmarks/mwlimit_validation.py)."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    from mwlimit_validation import run_target

    r = run_target("1ubi.pdb.gz", 1.5, 6, 40.0, 8000.0, "none", 0, 1.0)
    assert r["measured_mean"] == pytest.approx(r["predicted_search"], rel=0.20)


@pytest.mark.parametrize("entry", PUBLISHED, ids=lambda e: e.name)
def test_published_limits_under_their_parameter_sets(entry):
    """Each published limit within 10 % under its parameter set of difftm.theory.limits."""
    got = entry.value_kda()
    assert got == pytest.approx(entry.published_kda, rel=0.10)


def test_detection_threshold_and_alignment_requirement():
    assert SearchSpace().threshold() == pytest.approx(7.81, abs=0.01)
    assert SearchSpace(defocus_planes=1).threshold() == pytest.approx(7.48, abs=0.01)
    assert particle_diameter(1e5) == pytest.approx(2 * (3 * 1.229e5 / (4 * math.pi)) ** (1 / 3))
    assert required_angular_accuracy_deg(1e5, 3.0) == pytest.approx(
        math.degrees(3.0 / particle_diameter(1e5)))


def test_smallest_detectable_mass_meets_the_threshold():
    t = 7.0
    m = smallest_detectable_mass(FAST, t)
    assert expected_snr(m, FAST).snr == pytest.approx(t, rel=1e-3)
    assert smallest_detectable_mass(FAST.with_(fluence=4 * FAST.fluence), t) < m


def test_bad_parameters_are_one_line_errors():
    with pytest.raises(ValueError, match="fluence"):
        ImagingParameters(fluence=-1.0).validate()
    with pytest.raises(ValueError, match="exposure"):
        ImagingParameters(exposure="some").validate()
    with pytest.raises(ValueError, match="detector"):
        ImagingParameters(detector="nope").validate()


def test_cli_table_json_figure_and_no_overwrite(tmp_path):
    from typer.testing import CliRunner

    from difftm.cli.main import app

    out, fig = tmp_path / "m.json", tmp_path / "m.png"
    args = ["mwlimit", "--phase-plate", "--pixel-size", "2", "--exposure", "none",
            "--detector", "perfect", "--mass", "20", "--mass", "200", "--json", str(out),
            "--figure", str(fig)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "smallest detectable mass" in res.output
    data = json.loads(out.read_text())
    assert [t["mass_kda"] for t in data["targets"]] == [20, 200]
    assert data["targets"][1]["snr"] > data["targets"][0]["snr"]
    assert fig.stat().st_size > 1000
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0
    bad = CliRunner().invoke(app, ["mwlimit", "--fluence", "-3"])
    assert bad.exit_code == 2 and "fluence" in bad.output


def _model(name: str):
    from difftm.io.models import load_model

    path = SHARED / "pdb" / name
    if not path.is_file():
        pytest.skip(f"{path} not available")
    return load_model(path)
