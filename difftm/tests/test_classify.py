"""Classification under several templates and the constrained search (issue 16).

Model tests draw SNR vectors from the stated generative model (docs/CLASSIFY.md) and pin
the derivation (the Gram matrix drops out of the class comparison), EM populations, the
calibration of posteriors and the fitted noise. Physics tests plant yeast enolase (3ENL)
and enolase without its N-terminal domain (28 % of the mass, deleted with gemmi) with exact
atom projections at 1.5-2 A/px, refine under both templates through the refine API and
classify; the constrained search finds the N-terminal domain (12 kDa) next to the rest of
the molecule, and its threshold follows the stated number of trials.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from scipy.special import log_ndtr

from difftm.classify.constrained import (
    cone_vectors,
    constrained_search,
    disc_offsets,
    predicted_centres,
)
from difftm.classify.model import (
    class_log_likelihoods,
    em_weights,
    fit_mixture,
    naive_classes,
    residual_chi2,
)
from difftm.geometry.euler import euler_to_matrix
from difftm.refine.optimize import GradientSchedule
from difftm.refine.scorer import ParticleScorer, rotation_update
from difftm.search.config import SearchConfig
from difftm.stats.threshold import erfc_threshold

from model_files import model_path

QUICK = GradientSchedule(steps=10, lowpass_angstrom=(8.0, None),
                         start_offsets_deg=((0.0, 0.0, 0.0),))


def _draw(n, pi1, rho, sigma=1.0, alpha=(5.0, 10.0), seed=0):
    """SNR vectors of two classes from the model: mean alpha G e_c, covariance sigma^2 G."""
    rng = np.random.default_rng(seed)
    g = np.array([[1.0, rho], [rho, 1.0]])
    cls = (rng.random(n) >= pi1).astype(int)  # class 0 with probability pi1
    a = rng.uniform(*alpha, n)
    s = a[:, None] * g[:, cls].T + sigma * rng.standard_normal((n, 2)) @ np.linalg.cholesky(g).T
    return s, np.repeat(g[None], n, 0), cls


def _reliability_gap(p, hit, min_count):
    edges = np.linspace(0, 1, 11)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, 9)
    gaps = [abs(p[idx == b].mean() - hit[idx == b].mean()) for b in range(10)
            if (idx == b).sum() >= min_count]
    return max(gaps)


# -- the likelihood model ----------------------------------------------------------------
def test_the_gram_matrix_drops_out_of_the_class_comparison():
    """With mean alpha G e_c and covariance G, log p(s|c) differs between classes only by
    s_c^2/2 + log Phi(s_c) (flat prior on alpha >= 0), whatever the correlation."""
    rng = np.random.default_rng(1)
    s = rng.normal(6.0, 2.0, (50, 3))
    a = rng.standard_normal((50, 3, 3)) * 0.3 + np.eye(3) * 1.5
    g = a @ a.transpose(0, 2, 1)
    d = np.sqrt(np.einsum("nkk->nk", g))
    g = g / d[:, :, None] / d[:, None, :]  # unit diagonal, arbitrary correlations
    ll = class_log_likelihoods(s, g)
    expect = 0.5 * s**2 + log_ndtr(s)
    np.testing.assert_allclose(ll - ll[:, :1], expect - expect[:, :1], atol=1e-8)
    # and the absolute value is the Gaussian integral (a numerical check of one target)
    from scipy.integrate import quad
    from scipy.stats import multivariate_normal

    j = 0
    mvn = multivariate_normal(np.zeros(3), g[j])
    shift = float(ll[j, 1])  # integrate exp(log pdf - shift): a well-scaled integrand
    val, _ = quad(lambda al: math.exp(mvn.logpdf(s[j] - al * g[j][:, 1]) - shift), 0, 60,
                  points=[max(s[j, 1], 0.0)], epsabs=0, epsrel=1e-11, limit=200)
    assert math.log(val) == pytest.approx(0.0, abs=1e-6)
    # sigma scales it: a = s_c / sigma^2, b = 1 / sigma^2
    ll2 = class_log_likelihoods(s, g, sigma=2.0)
    e2 = s**2 / 8 + log_ndtr(s / 2)
    np.testing.assert_allclose(ll2 - ll2[:, :1], e2 - e2[:, :1], atol=1e-8)


def test_em_recovers_populations_with_calibrated_posteriors():
    s, g, cls = _draw(3000, 0.8, rho=0.9, seed=2)
    fit = fit_mixture(s, g, bootstrap=100, seed=0)
    truth = 0.8 * 0 + (cls == 0).mean()
    assert fit.weights[0] == pytest.approx(truth, abs=0.02)
    lo, hi = fit.weights_interval[0]
    assert lo < truth < hi and hi - lo < 0.08
    assert fit.weights_se[0] == pytest.approx((hi - lo) / 3.92, rel=0.35)
    p = fit.posteriors[np.arange(len(cls)), fit.classes]
    assert _reliability_gap(p, (fit.classes == cls).astype(float), 100) < 0.06
    # MAP with fitted weights beats or ties "highest SNR wins"; the naive population is
    # pulled towards 50/50 by the symmetric errors, EM's is not
    acc, acc_naive = (fit.classes == cls).mean(), (naive_classes(s) == cls).mean()
    assert acc >= acc_naive
    naive_pop = (naive_classes(s) == 0).mean()
    assert abs(naive_pop - truth) > 2 * abs(fit.weights[0] - truth)
    # labels follow the templates: swapping the columns swaps the classes and weights
    swapped = fit_mixture(s[:, ::-1].copy(), g[:, ::-1, ::-1].copy(), bootstrap=0)
    np.testing.assert_allclose(swapped.weights, fit.weights[::-1], atol=1e-6)
    assert (swapped.classes == 1 - fit.classes).all()
    # deterministic for a seed
    again = fit_mixture(s, g, bootstrap=100, seed=0)
    np.testing.assert_array_equal(again.weights_interval, fit.weights_interval)


def test_unit_noise_is_overconfident_when_the_noise_is_larger_and_fitted_noise_is_not():
    s, g, cls = _draw(6000, 0.5, rho=0.9, sigma=1.6, alpha=(8.0, 16.0), seed=3)
    unit = fit_mixture(s, g, noise="unit", bootstrap=0)
    fitted = fit_mixture(s, g, noise="fitted", bootstrap=0)
    assert fitted.sigma == pytest.approx(1.6, rel=0.05)
    excess = {}  # mean posterior of the MAP class minus the fraction correct
    for name, fit in (("unit", unit), ("fitted", fitted)):
        p = fit.posteriors[np.arange(len(cls)), fit.classes]
        excess[name] = float(p.mean() - (fit.classes == cls).mean())
    assert excess["unit"] > 0.02 and abs(excess["fitted"]) < 0.015, excess
    # residual chi2 of the true class ~ chi2(1) * sigma^2 before scaling
    chi = residual_chi2(s, g, cls, sigma=1.6)
    assert chi.mean() == pytest.approx(1.0, abs=0.12)


def test_em_weights_and_inputs_are_checked():
    ll = np.log(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]))
    pi, post, total, _ = em_weights(ll)
    assert pi.sum() == pytest.approx(1.0) and post.shape == (3, 2)
    np.testing.assert_allclose(post.mean(0), pi, atol=1e-8)  # the EM fixed point
    s, g, _ = _draw(10, 0.5, 0.9)
    with pytest.raises(ValueError, match="cannot be told apart"):
        fit_mixture(s, np.repeat(np.ones((1, 2, 2)), 10, 0))
    with pytest.raises(ValueError, match="K >= 2"):
        fit_mixture(s[:, :1], g[:, :1, :1])
    with pytest.raises(ValueError, match="unit"):
        fit_mixture(s, g, noise="none")


def test_models_without_chains_or_residues(tmp_path):
    """gemmi deletions keep the model frame: the remaining atoms are the original ones."""
    from difftm.classify.mixture import write_model_without
    from difftm.io.models import load_model

    src = model_path("4e43.pdb.gz")
    full = load_model(src)
    out = write_model_without(src, tmp_path / "no_b.cif", chains=["B"])
    cut = load_model(out)
    assert 0 < len(cut) < len(full)
    kept = {tuple(np.round(p, 3)) for p in full.positions_angstrom}
    assert all(tuple(np.round(p, 3)) in kept for p in cut.positions_angstrom)
    part = load_model(write_model_without(src, tmp_path / "part.cif",
                                          residues=[("A", 1, 50)]))
    assert len(cut) < len(part) < len(full)
    with pytest.raises(ValueError, match="no chain 'Z'"):
        write_model_without(src, tmp_path / "z.cif", chains=["Z"])
    with pytest.raises(ValueError, match="no residues"):
        write_model_without(src, tmp_path / "r.cif", residues=[("A", 5000, 6000)])
    with pytest.raises(FileExistsError):
        write_model_without(src, out, chains=["B"])


# -- planted states ------------------------------------------------------------------------
PX = 1.5


@functools.lru_cache(maxsize=1)
def _states():
    import tempfile
    from pathlib import Path

    from difftm.classify.mixture import write_model_without
    from difftm.io.models import centre_of_mass, load_model
    from difftm.simulate.template import simulate_template, suggest_box

    src = model_path("3enl.pdb.gz")
    with tempfile.TemporaryDirectory() as tmp:
        cut = load_model(write_model_without(src, Path(tmp) / "cut.cif",
                                             residues=[("A", 1, 126)]))
    full = load_model(src)
    centre = centre_of_mass(full)
    box = suggest_box(full, PX)
    vols = [simulate_template(m, PX, box, centre=centre).numpy() for m in (full, cut)]
    return (full, cut), vols, centre, box


@functools.lru_cache(maxsize=1)
def _mixture():
    from difftm.classify.mixture import simulate_mixture

    models, vols, centre, box = _states()
    classes = np.array([0, 1, 1, 0, 1, 0, 0, 1, 0, 1])
    sim = simulate_mixture(models, classes, PX, (320, 320), box, 10000.0, centre,
                           fluence=40.0, seed=4)
    return sim, classes


def test_planted_states_are_classified_through_the_refine_api():
    from difftm.classify.run import score_under_templates

    _, vols, _, _ = _states()
    sim, classes = _mixture()
    cfg = SearchConfig(micrograph="m.mrc", template="t.mrc", output="o", pixel_size=PX,
                       defocus_u=10000.0)
    scorers = [ParticleScorer.from_search(cfg, sim.image, v) for v in vols]
    truth = sim.truth
    n = len(truth)
    r_true = euler_to_matrix(torch.tensor(truth[["rot", "tilt", "psi"]].to_numpy())).float()
    rng = np.random.default_rng(0)
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    r0 = rotation_update(torch.tensor(np.deg2rad(1.5) * axis, dtype=torch.float32), r_true)
    centres = torch.tensor(truth[["x", "y"]].to_numpy().astype(np.int64))
    snr, gram, refined = score_under_templates(scorers, centres, r0, torch.zeros(n), QUICK)
    # the Gram matrix: unit diagonal (the scorer's normalisation), the states correlate
    # at about sqrt(1 - 0.28) (one shared part, one missing)
    np.testing.assert_allclose(np.einsum("nkk->nk", gram), 1.0, atol=1e-3)
    assert 0.7 < float(np.median(gram[:, 0, 1])) < 0.9
    # the full template scores higher on full particles, the cut one on cut particles
    assert ((snr[:, 0] > snr[:, 1]) == (classes == 0)).all(), np.round(snr, 2)
    fit = fit_mixture(snr, gram, bootstrap=50)
    assert (fit.classes == classes).all()
    assert fit.weights[0] == pytest.approx(0.5, abs=0.05)
    assert (fit.posteriors[np.arange(n), classes] > 0.95).all()
    # templates in the other order: the classes follow
    snr2, gram2, _ = score_under_templates(scorers[::-1], centres, r0, torch.zeros(n), QUICK)
    assert (fit_mixture(snr2, gram2, bootstrap=0).classes == 1 - classes).all()


def test_classify_command_end_to_end(tmp_path):
    """search (the truth's orientations, fast) -> peaks -> classify: rlnClassNumber is each
    particle's state, posteriors and SNRs per template; bad input gets one line."""
    from typer.testing import CliRunner

    from difftm.cli.main import app
    from difftm.io.mrc import write_mrc
    from difftm.io.star import particles_to_plain, read_particles_star

    _, vols, _, _ = _states()
    sim, classes = _mixture()
    truth = sim.truth
    orient = tmp_path / "orientations.txt"
    orient.write_text("\n".join(f"{r.rot:.5f} {r.tilt:.5f} {r.psi:.5f}"
                                for r in truth.itertuples()) + "\n")
    mic, ta, tb = tmp_path / "mic.mrc", tmp_path / "full.mrc", tmp_path / "cut.mrc"
    write_mrc(mic, sim.image, PX)
    write_mrc(ta, vols[0], PX)
    write_mrc(tb, vols[1], PX)
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, ["search", str(mic), str(ta), "-o", str(run), "--defocus-u",
                              "10000", "--defocus-range", "0", "--orientations", str(orient),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    parts = tmp_path / "particles.star"
    res = runner.invoke(app, ["peaks", str(run), "-o", str(parts), "--no-report"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "classes.star"
    res = runner.invoke(app, ["classify", str(run), "--particles", str(parts), "--templates",
                              str(ta), str(tb), "-o", str(out), "--steps", "6", "--starts", "1",
                              "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    assert "populations full" in res.output
    _, table = read_particles_star(out)
    for label in ("rlnClassNumber", "difftmClassPosterior1", "difftmClassPosterior2",
                  "difftmClassSNR1", "difftmClassSNR2", "difftmNaiveClass", "difftmSNR"):
        assert label in table.columns, label
    plain = particles_to_plain(table)
    xy = truth[["x", "y"]].to_numpy(float)
    matched = 0
    for row in plain.itertuples():
        k = int(np.argmin(np.hypot(xy[:, 0] - row.x, xy[:, 1] - row.y)))
        if np.hypot(*(xy[k] - (row.x, row.y))) < 2:
            matched += 1
            assert row.rlnClassNumber == classes[k] + 1
    assert matched >= 8
    post = table[["difftmClassPosterior1", "difftmClassPosterior2"]].to_numpy()
    np.testing.assert_allclose(post.sum(1), 1.0, atol=1e-9)
    for name in ("snr_scatter", "populations", "reliability"):
        assert (tmp_path / "classes_figures" / f"{name}.png").is_file()
    assert out.with_suffix(".csv").is_file() and out.with_suffix(".html").is_file()
    # refuses to overwrite; one template, a missing template, another box: one line
    res = runner.invoke(app, ["classify", str(run), "--particles", str(parts), "--templates",
                              str(ta), str(tb), "-o", str(out)])
    assert res.exit_code == 2 and "exists" in res.output
    res = runner.invoke(app, ["classify", str(run), "--particles", str(parts), "--templates",
                              str(ta), "-o", str(tmp_path / "x.star")])
    assert res.exit_code == 2 and "at least two" in res.output
    small = tmp_path / "small.mrc"
    write_mrc(small, vols[1][2:-2, 2:-2, 2:-2].copy(), PX)
    res = runner.invoke(app, ["classify", str(run), "--particles", str(parts), "--templates",
                              str(ta), str(small), "-o", str(tmp_path / "y.star")])
    assert res.exit_code == 2 and "box" in res.output
    assert not (tmp_path / "y.star").exists()


# -- constrained search --------------------------------------------------------------------
CPX = 2.0


@functools.lru_cache(maxsize=1)
def _complex():
    """Whole enolase planted at 2 A/px (fluence 50); templates of the part without the
    N-terminal domain (L) and of the domain alone (S), each centred on its own centre of
    mass; the true centres of L and S in the micrograph."""
    import tempfile
    from pathlib import Path

    from difftm.classify.mixture import simulate_mixture, write_model_without
    from difftm.io.models import centre_of_mass, load_model
    from difftm.simulate.template import simulate_template, suggest_box

    src = model_path("3enl.pdb.gz")
    with tempfile.TemporaryDirectory() as tmp:
        big = load_model(write_model_without(src, Path(tmp) / "L.cif", residues=[("A", 1, 126)]))
        small = load_model(write_model_without(src, Path(tmp) / "S.cif",
                                               residues=[("A", 127, 100000)]))
    full = load_model(src)
    cf, cb, cs = (centre_of_mass(a) for a in (full, big, small))
    box = suggest_box(full, CPX)
    vb = simulate_template(big, CPX, box, centre=cb).numpy()
    vs = simulate_template(small, CPX, box, centre=cs).numpy()
    sim = simulate_mixture([full], np.zeros(12, int), CPX, (256, 256), box, 10000.0, cf,
                           fluence=50.0, seed=7)
    noise = simulate_mixture([full], np.zeros(0, int), CPX, (256, 256), box, 10000.0, cf,
                             fluence=50.0, seed=8)
    truth = sim.truth
    rot = euler_to_matrix(torch.tensor(truth[["rot", "tilt", "psi"]].to_numpy()))
    xy = truth[["x", "y"]].to_numpy(float)
    return (sim, noise, vb, vs, cb, cs, predicted_centres(xy, rot, cb - cf, CPX),
            predicted_centres(xy, rot, cs - cf, CPX), box)


def test_cone_and_disc_grids_and_the_trial_count():
    v = cone_vectors(6.0, 2.0)
    ang = torch.rad2deg(v.norm(dim=1))
    assert float(ang[0]) == 0.0 and float(ang.max()) <= 6.0 + 1e-9
    # the cubic grid's points in a ball of radius 3 steps: 123
    assert len(v) == 123
    d = disc_offsets(3.0)
    assert len(d) == 29 and d[0].tolist() == [0, 0]
    with pytest.raises(ValueError, match="200,000"):
        cone_vectors(45.0, 0.2)
    sim, _, _, vs, cb, cs, xy_big, _, _ = _complex()
    cfg = SearchConfig(micrograph="m.mrc", template="t.mrc", output="o", pixel_size=CPX,
                       defocus_u=10000.0)
    scorer = ParticleScorer.from_search(cfg, sim.image, vs)
    truth = sim.truth
    partners = pd.DataFrame({"x": xy_big[:3, 0], "y": xy_big[:3, 1],
                             "rot": truth.rot[:3], "tilt": truth.tilt[:3],
                             "psi": truth.psi[:3]})
    res = constrained_search(scorer, partners, 6.0, 4.0, 2.0, cs - cb, n_false_positives=0.5)
    # 6 A at 2 A/px: 29 positions per partner; cone 4 deg at 2 deg: 33 rotation vectors
    assert res.n_orientations == 33 and res.n_positions == 3 * 29
    assert res.n_trials == 3 * 29 * 33
    assert res.threshold == pytest.approx(erfc_threshold(3 * 29, 33, 0.5))
    assert res.threshold == pytest.approx(-float(__import__("scipy.special").special.ndtri(
        0.5 / (3 * 29 * 33))))


def test_constrained_search_finds_the_small_partner_and_not_noise():
    sim, noise, _, vs, cb, cs, xy_big, xy_small, _ = _complex()
    cfg = SearchConfig(micrograph="m.mrc", template="t.mrc", output="o", pixel_size=CPX,
                       defocus_u=10000.0)
    truth = sim.truth
    rng = np.random.default_rng(1)
    n = len(truth)
    r_true = euler_to_matrix(torch.tensor(truth[["rot", "tilt", "psi"]].to_numpy())).float()
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    from difftm.geometry.euler import matrix_to_euler

    eul = matrix_to_euler(rotation_update(torch.tensor(np.deg2rad(2.0) * axis,
                                                       dtype=torch.float32), r_true).double())
    partners = pd.DataFrame({"x": np.rint(xy_big[:, 0]) + 1, "y": np.rint(xy_big[:, 1]),
                             "rot": eul[:, 0].numpy(), "tilt": eul[:, 1].numpy(),
                             "psi": eul[:, 2].numpy()})
    scorer = ParticleScorer.from_search(cfg, sim.image, vs)
    res = constrained_search(scorer, partners, 8.0, 6.0, 2.0, cs - cb)
    tab = res.table
    dist = np.hypot(tab["x"] - xy_small[:, 0], tab["y"] - xy_small[:, 1])
    found = tab["called"] & (dist <= 1.5)
    assert found.mean() >= 0.8, tab[["snr", "called"]].assign(dist=dist)
    assert (tab.loc[tab["called"], "angle_from_partner"] <= 6.0 + 1e-6).all()
    # the offset's sign matters: the mirrored prediction lands ~27 A away and finds nothing
    wrong = constrained_search(scorer, partners, 8.0, 6.0, 2.0, cb - cs).table
    wdist = np.hypot(wrong["x"] - xy_small[:, 0], wrong["y"] - xy_small[:, 1])
    assert (wrong["called"] & (wdist <= 1.5)).sum() <= 1
    # the same partners on a micrograph of pure noise: at most a stray call
    sn = ParticleScorer.from_search(cfg, noise.image, vs)
    on_noise = constrained_search(sn, partners, 8.0, 6.0, 2.0, cs - cb)
    assert int(on_noise.table["called"].sum()) <= 1
    # the small domain is weak: below the threshold of a whole-micrograph search on the
    # default 2.5/1.5 deg grid for most copies, above the constrained one
    full = erfc_threshold(256 * 256, 1_584_000)
    assert res.threshold < full - 1.5
    assert (found & (tab["snr"] < full)).sum() >= 4


def test_constrained_search_command(tmp_path):
    """difftm constrained-search RUN S.mrc --constrain-to L.star: the offset from the
    templates' recorded centres, the trials and threshold printed, detections written."""
    from typer.testing import CliRunner

    from difftm.cli.main import app
    from difftm.io.mrc import write_mrc
    from difftm.io.star import (
        make_optics_table,
        make_particles_table,
        particles_to_plain,
        read_particles_star,
        write_particles_star,
    )
    from difftm.simulate.template import write_template

    sim, _, vb, vs, cb, cs, xy_big, xy_small, _ = _complex()
    truth = sim.truth
    mic, tl, ts = tmp_path / "mic.mrc", tmp_path / "L.mrc", tmp_path / "S.mrc"
    write_mrc(mic, sim.image, CPX)
    write_template(tl, vb, CPX, cb)
    write_template(ts, vs, CPX, cs)
    orient = tmp_path / "o.txt"
    orient.write_text("0 0 0\n")
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, ["search", str(mic), str(tl), "-o", str(run), "--defocus-u",
                              "10000", "--defocus-range", "0", "--orientations", str(orient),
                              "--device", "cpu"])
    assert res.exit_code == 0, res.output
    partners = tmp_path / "L.star"
    cols = {"x": np.rint(xy_big[:, 0]), "y": np.rint(xy_big[:, 1]), "rot": truth.rot,
            "tilt": truth.tilt, "psi": truth.psi}
    write_particles_star(partners, make_particles_table(cols), make_optics_table(CPX))
    out = tmp_path / "S.star"
    res = runner.invoke(app, ["constrained-search", str(run), str(ts), "--constrain-to",
                              str(partners), "--radius", "6", "--cone", "4", "--angle-step",
                              "2", "-o", str(out)])
    assert res.exit_code == 0, res.output
    text = " ".join(res.output.split())
    assert "33 orientations" in text and "from the templates' recorded centres" in text
    assert "threshold -ndtri(1 /" in text
    _, found = read_particles_star(out)
    plain = particles_to_plain(found)
    assert len(plain) >= 9 and "difftmPartner" in found.columns
    k = plain["difftmPartner"].to_numpy(int) - 1
    assert (np.hypot(plain["x"] - xy_small[k, 0], plain["y"] - xy_small[k, 1]) <= 1.5).all()
    assert out.with_suffix(".csv").is_file()
    res = runner.invoke(app, ["constrained-search", str(run), str(ts), "--constrain-to",
                              str(partners), "-o", str(out)])
    assert res.exit_code == 2 and "exists" in res.output
    res = runner.invoke(app, ["constrained-search", str(run), str(ts), "--constrain-to",
                              str(partners), "--cone", "nan", "-o", str(tmp_path / "z.star")])
    assert res.exit_code == 2 and "--cone" in res.output
    # the same search as `difftm search S.mrc --constrain-to`: same detections
    d = cs - cb
    run2 = tmp_path / "run2"
    res = runner.invoke(app, ["search", str(mic), str(ts), "-o", str(run2), "--defocus-u",
                              "10000", "--defocus-range", "0", "--device", "cpu",
                              "--constrain-to", str(partners), "--radius", "6", "--cone", "4",
                              "--cone-step", "2", "--offset", *(f"{v:.6f}" for v in d)])
    assert res.exit_code == 0, res.output
    assert "33 orientations" in " ".join(res.output.split())
    _, again = read_particles_star(run2 / "constrained.star")
    np.testing.assert_allclose(again["rlnCoordinateX"], found["rlnCoordinateX"])
    np.testing.assert_allclose(again["difftmSNR"], found["difftmSNR"], atol=1e-4)
    assert not (run2 / "snr.mrc").exists()  # no maps: a local search
    res = runner.invoke(app, ["search", "--micrographs", str(mic), str(ts), "-o",
                              str(tmp_path / "run3"), "--constrain-to", str(partners)])
    assert res.exit_code == 2 and "one micrograph" in res.output
