"""The rules of the particle call beyond the threshold: contamination, blobs, specificity.

Contamination (on by default): candidates within half a template diameter of a region where
the micrograph, smoothed over one template diameter, departs from its median by more than
MAX_CONTAMINATION robust sigmas are not called. Checked with a dark disc (ice
contamination) laid over one of two planted particles, and on the plain micrograph, where
the particles alone must stay well below the limit.

Excess contrast (on by default): a candidate whose particle-scale contrast in the whitened
micrograph is more than MAX_EXCESS_CONTRAST robust sigmas beyond what its template explains
is not called. Checked with a dark Gaussian blob a quarter diameter wide (too small for the
contamination rule) whose SNR passes the threshold, beside two planted particles that must
stay called (test_excess_contrast.py checks the statistic itself against direct sums).

Orientation specificity (an option):

A real micrograph holds features (ice, carbon, blobs, other proteins) that correlate with a
template in many orientations alike: their SNR can pass the erfc threshold, but their best
orientation is no better than the others, so their z-score is typical of the micrograph.
``call_particles(..., min_specificity=k)`` (``difftm peaks --min-specificity k``) requires
both the SNR threshold and a minimum orientation specificity (the z-score in robust sigmas
of the micrograph's z-score map). Checked here at 2 A/px against an independent decoy: the
average of a particle over many orientations (a blob with the particle's mass, size and
CTF), planted beside two particles. The default call has no such rule (a minimum chosen on
the detection matrix did not generalise across held-out targets, docs/STATISTICS.md).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from difftm.io.models import load_model
from difftm.io.mrc import write_mrc
from difftm.search.config import SearchConfig
from difftm.search.engine import run_search
from difftm.search.particles import MIN_SPECIFICITY, call_particles, orientation_specificity
from difftm.simulate.micrograph import simulate_micrograph
from difftm.simulate.template import simulate_template, suggest_box

from model_files import model_path

#: The minimum specificity used here (an example value of --min-specificity).
K = 2.0


def test_specificity_is_the_robust_z_of_the_micrographs_z_scores():
    rng = np.random.default_rng(0)
    z = 3.4 + 0.3 * rng.standard_normal((200, 200))
    valid = np.zeros_like(z, dtype=bool)
    valid[20:-20, 20:-20] = True
    z[~valid] = 50.0  # outside the searched region: ignored
    z[30:40, 30:40] = 9.0  # a few particles barely move the median and the MAD
    spec = orientation_specificity(z, valid, np.array([3.4, 3.7, 9.0]))
    assert spec[0] == pytest.approx(0.0, abs=0.05)
    assert spec[1] == pytest.approx(1.0, abs=0.06)
    assert spec[2] == pytest.approx(5.6 / 0.3, rel=0.03)


def test_non_finite_minimum_specificity_is_refused():
    from difftm.search.results import SearchResult

    with pytest.raises(ValueError, match="finite"):
        call_particles(SearchResult.__new__(SearchResult), min_specificity=float("nan"))


@pytest.fixture(scope="module")
def decoy_case(tmp_path_factory):
    """3ENL at 2 A/px, 60 e/A^2: two particles and an orientation-averaged decoy (twelve
    views, each centred, averaged and then averaged over in-plane rotations, at twice a
    particle's contrast) in shot noise; searched over all orientations on an 8-deg grid."""
    name, px, df, fluence = "3enl.pdb.gz", 2.0, 10000.0, 60.0
    atoms = load_model(model_path(name))
    vol = simulate_template(model_path(name), pixel_size=px, box=suggest_box(atoms, px))
    shape = (192, 192)
    sim = simulate_micrograph(vol, px, shape, 2, df, fluence=fluence, seed=3, atoms=atoms)
    n0 = fluence * px * px
    views = []
    for seed in range(4, 16):
        one = simulate_micrograph(vol, px, shape, 1, df, fluence=fluence, seed=seed,
                                  atoms=atoms, shot_noise=False)
        t = one.truth.iloc[0]
        views.append(np.roll(one.noiseless / n0 - 1.0,
                             (shape[0] // 2 - int(t.y), shape[1] // 2 - int(t.x)), axis=(0, 1)))
    blob = np.mean(views, axis=0)
    blob = np.mean([ndimage.rotate(blob, a, reshape=False, order=1)
                    for a in range(0, 360, 10)], axis=0)
    centres = sim.truth[["y", "x"]].to_numpy()
    spots = [(y, x) for y in range(40, 152, 8) for x in range(40, 152, 8)]
    decoy = max(spots, key=lambda q: np.hypot(*(centres - q).T).min())
    image = sim.image + 2.0 * n0 * np.roll(blob, (decoy[0] - shape[0] // 2,
                                                  decoy[1] - shape[1] // 2), axis=(0, 1))
    folder = tmp_path_factory.mktemp("decoy")
    write_mrc(folder / "m.mrc", image.astype(np.float32), px)
    write_mrc(folder / "t.mrc", vol.numpy(), px)
    torch.set_num_threads(1)
    cfg = SearchConfig(micrograph=folder / "m.mrc", template=folder / "t.mrc",
                       output=folder / "run", pixel_size=px, defocus_u=df, defocus_range=0.0,
                       out_of_plane_step=8.0, in_plane_step=8.0, device="cpu")
    return sim, np.asarray(decoy), run_search(cfg), folder


def _nearest(table, yx):
    d = np.hypot(table["y"] - yx[0], table["x"] - yx[1])
    return table.loc[d.idxmin()], float(d.min())


def test_specificity_rule_rejects_an_orientation_averaged_decoy_and_keeps_particles(
        decoy_case):
    sim, decoy, result, _ = decoy_case
    plain, plain_summary = call_particles(result)
    assert MIN_SPECIFICITY is None and plain_summary.min_specificity is None
    table, summary = call_particles(result, min_specificity=K)
    row, dist = _nearest(plain, decoy)
    assert dist <= 3
    # the decoy passes the SNR threshold (the default call, SNR alone, takes it) ...
    assert row["called"] and row["snr"] >= summary.thresholds["snr"], row
    # ... but not the specificity rule: it correlates with every orientation alike
    assert row["specificity"] < K
    assert not table.loc[row.name, "called"]
    assert summary.n_rejected_specificity >= 1
    for t in sim.truth.itertuples():
        prow, pdist = _nearest(table, (t.y, t.x))
        assert pdist <= 2 and prow["called"], prow
        assert prow["specificity"] >= K + 2


def test_peaks_command_takes_the_rule_and_writes_the_specificity(decoy_case):
    import pandas as pd
    from typer.testing import CliRunner

    from difftm.cli.main import app

    _, decoy, result, folder = decoy_case
    runner = CliRunner()
    outcome = {}
    for option in ("none", str(K)):
        star = folder / f"p_{option}.star"
        res = runner.invoke(app, ["peaks", str(folder / "run"), "-o", str(star), "--no-report",
                                  "--min-specificity", option])
        assert res.exit_code == 0, res.output
        table = pd.read_csv(star.with_suffix(".csv"))
        assert "specificity" in table
        outcome[option] = table
        if option != "none":
            assert f"specificity < {K:g} rejected" in res.output
    row = lambda t: t.loc[np.hypot(t["y"] - decoy[0], t["x"] - decoy[1]).idxmin()]  # noqa: E731
    assert row(outcome["none"])["called"] and not row(outcome[str(K)])["called"]


def test_contamination_map_flags_a_dark_disc_and_its_edge_but_not_particles():
    from difftm.search.contamination import MAX_CONTAMINATION, contamination_map

    rng = np.random.default_rng(1)
    n0, diam = 100.0, 30.0
    image = rng.poisson(n0, (320, 320)).astype(np.float64)
    yy, xx = np.mgrid[:320, :320]
    image[np.hypot(yy - 80, xx - 80) < 45] *= 0.6  # contamination, 90 px across
    cmap = contamination_map(image, diam)
    assert cmap[80, 80] > MAX_CONTAMINATION
    assert cmap[80, 80 + 45 + 10] > MAX_CONTAMINATION  # within half a diameter of the edge
    assert cmap[240, 240] < 4
    with pytest.raises(ValueError, match="diameter"):
        contamination_map(image, 0.0)


def test_default_call_rejects_a_particle_on_contamination_only(decoy_case, tmp_path):
    import shutil

    from difftm.search.contamination import MAX_CONTAMINATION
    from difftm.search.results import load_results

    sim, _, result, folder = decoy_case
    # the particles alone stay far below the limit: both are called by default
    table, summary = call_particles(result)
    assert summary.max_contamination == MAX_CONTAMINATION and not summary.note
    for t in sim.truth.itertuples():
        row, dist = _nearest(table, (t.y, t.x))
        assert dist <= 2 and row["called"] and row["contamination"] < MAX_CONTAMINATION / 2
    # a dark disc (ice contamination, 2 diameters across) laid over the first particle
    from difftm.io.mrc import read_mrc

    image = read_mrc(folder / "m.mrc").data.astype(np.float64)
    first, second = sim.truth.iloc[0], sim.truth.iloc[1]
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    diameter = result.metadata["template_diameter_px"]
    image[np.hypot(yy - first.y, xx - first.x) < diameter] *= 0.7
    dirty, dsum = call_particles(result, micrograph=image)
    r1, _ = _nearest(dirty, (first.y, first.x))
    r2, _ = _nearest(dirty, (second.y, second.x))
    assert r1["contamination"] > MAX_CONTAMINATION and not r1["called"]
    assert r2["called"] and dsum.n_rejected_contamination >= 1
    assert "contamination" in dsum.line()
    # the report's detections figure outlines the excluded region and marks the rejected
    from difftm.report.search_report import search_figures

    figs = search_figures(tmp_path / "figs", result, dirty, dsum, image=image)
    assert figs["detections"].stat().st_size > 0
    off, _ = call_particles(result, micrograph=image, max_contamination=None)
    assert _nearest(off, (first.y, first.x))[0]["called"]
    # the searched micrograph gone: the rule is skipped, and the summary says so
    moved = tmp_path / "project" / "runs" / "run"
    shutil.copytree(folder / "run", moved)
    res = load_results(moved)
    res.metadata["micrograph"] = str(tmp_path / "gone.mrc")
    _, gone = call_particles(res)
    assert "skipped" in gone.line() and gone.max_contamination is None
    # a relative path recorded by a search run from the project folder is found from the
    # search's folder upwards, whatever the working directory
    (tmp_path / "project" / "data").mkdir()
    shutil.copy(folder / "m.mrc", tmp_path / "project" / "data" / "m.mrc")
    res.metadata["micrograph"] = "data/m.mrc"
    _, found = call_particles(res)
    assert found.max_contamination == MAX_CONTAMINATION and not found.note


@pytest.fixture(scope="module")
def blob_case(decoy_case, tmp_path_factory):
    """The decoy case's micrograph with a dark particle-sized blob added away from the
    particles and the decoy (a Gaussian of a quarter template diameter, 10% of the dose
    deep at its centre: a small dense object of the background), searched again."""
    from difftm.io.mrc import read_mrc
    from difftm.simulate.micrograph import template_diameter

    sim, decoy, result, folder = decoy_case
    image = read_mrc(folder / "m.mrc").data.astype(np.float64)
    vol = read_mrc(folder / "t.mrc").data
    diameter = template_diameter(torch.as_tensor(vol))
    taken = np.vstack([sim.truth[["y", "x"]].to_numpy(), decoy])
    spots = [(y, x) for y in range(40, 152, 8) for x in range(40, 152, 8)]
    spot = np.asarray(max(spots, key=lambda q: np.hypot(*(taken - q).T).min()))
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    n0 = 60.0 * 2.0 * 2.0
    image -= 0.1 * n0 * np.exp(-((yy - spot[0]) ** 2 + (xx - spot[1]) ** 2)
                               / (2 * (diameter / 4) ** 2))
    out = tmp_path_factory.mktemp("blob")
    write_mrc(out / "m.mrc", image.astype(np.float32), 2.0)
    write_mrc(out / "t.mrc", vol, 2.0)
    cfg = SearchConfig(micrograph=out / "m.mrc", template=out / "t.mrc", output=out / "run",
                       pixel_size=2.0, defocus_u=10000.0, defocus_range=0.0,
                       out_of_plane_step=8.0, in_plane_step=8.0, device="cpu")
    return sim, spot, run_search(cfg), out


def test_default_call_rejects_a_dark_blob_its_template_does_not_explain(blob_case, tmp_path):
    import shutil

    import pandas as pd
    from typer.testing import CliRunner

    from difftm.cli.main import app
    from difftm.search.contamination import MAX_CONTAMINATION, MAX_EXCESS_CONTRAST
    from difftm.search.results import load_results

    sim, spot, result, folder = blob_case
    table, summary = call_particles(result)
    assert summary.max_excess_contrast == MAX_EXCESS_CONTRAST and not summary.note
    row, dist = _nearest(table, spot)
    # the blob passes the SNR threshold and is too small for the contamination rule ...
    assert dist <= 8 and row["snr"] >= summary.thresholds["snr"], row
    assert row["contamination"] < MAX_CONTAMINATION
    # ... but it is much darker than a particle of that SNR: rejected
    assert row["excess_contrast"] < -MAX_EXCESS_CONTRAST and not row["called"]
    assert summary.n_rejected_excess >= 1 and "blob" in summary.line()
    for t in sim.truth.itertuples():
        prow, pdist = _nearest(table, (t.y, t.x))
        assert pdist <= 2 and prow["called"] and abs(prow["excess_contrast"]) < 4, prow
    off, _ = call_particles(result, max_excess_contrast=None)
    assert off.loc[row.name, "called"] and off["excess_contrast"].isna().all()
    # the command line: the option and the CSV column
    runner = CliRunner()
    for option, called in (("auto", False), ("none", True)):
        star = folder / f"p_{option}.star"
        res = runner.invoke(app, ["peaks", str(folder / "run"), "-o", str(star), "--no-report",
                                  "--max-excess-contrast", option])
        assert res.exit_code == 0, res.output
        csv = pd.read_csv(star.with_suffix(".csv"))
        assert bool(csv.loc[np.hypot(csv["y"] - spot[0], csv["x"] - spot[1]).idxmin(),
                            "called"]) is called
    bad = runner.invoke(app, ["peaks", str(folder / "run"), "-o", str(folder / "b.star"),
                              "--max-excess-contrast", "0"])
    assert bad.exit_code != 0 and "--max-excess-contrast" in bad.output
    # the search's inputs gone: the rule is skipped, and the summary says so
    moved = tmp_path / "run"
    shutil.copytree(folder / "run", moved)
    (moved / "config.yaml").unlink()
    _, gone = call_particles(load_results(moved), micrograph=sim.image)
    assert "excess-contrast rule skipped" in gone.line() and gone.max_excess_contrast is None


def test_searched_scorer_reproduces_the_searchs_scores_with_its_own_projector(blob_case):
    """``searched_scorer(..., projector_oversampling=None)`` (the detection matrix's true-pose
    SNR) is the search's own statistic: at each planted particle's best pixel and recorded
    pose it gives the map's SNR; the default (oversampling 1, enough for the excess-contrast
    rule) gives a cruder projector."""
    from difftm.geometry.euler import euler_to_matrix
    from difftm.search.contamination import searched_scorer

    sim, _, result, folder = blob_case
    shape = result.maps["snr"].shape
    own = searched_scorer(folder / "run", shape, projector_oversampling=None)
    crude = searched_scorer(folder / "run", shape)
    assert own.projector.oversampling == pytest.approx(2.0)
    assert crude.projector.oversampling == pytest.approx(1.0)
    ys, xs = [], []
    for t in sim.truth.itertuples():
        win = result.maps["snr"][t.y - 2:t.y + 3, t.x - 2:t.x + 3]
        dy, dx = np.unravel_index(np.argmax(win), win.shape)
        ys.append(t.y - 2 + dy)
        xs.append(t.x - 2 + dx)
    ys, xs = np.array(ys), np.array(xs)
    angles = np.stack([result.maps[k][ys, xs] for k in ("rot", "tilt", "psi")], -1)
    rot = euler_to_matrix(torch.tensor(angles, dtype=torch.float64)).float()
    centres = torch.tensor(np.stack([xs, ys], -1))
    with torch.no_grad():
        score = own.score(centres, rot).double().numpy()
    np.testing.assert_allclose(score, result.maps["snr"][ys, xs], rtol=2e-3)
