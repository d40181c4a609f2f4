"""Local refinement: the scorer equals the search, gradient and grid refinement at 1.5 A/px.

Particles of 6MSM (CFTR, 125 kDa) are planted with the faithful simulator (exact atom
projections with displaced solvent, per-particle defocus) at 1.5 A/px, then refined from
starts 3-6 deg, 1-2 px and 200 A off the truth. At 200 e/A^2 the true-pose SNR is ~28; at
50 e/A^2 (~17) the median angular error after refinement is ~0.9 deg, and there the refined
score already exceeds the score at the true pose, so the remaining error is the noise's,
not the optimiser's.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from difftm.geometry.euler import euler_to_matrix, rotation_angle_deg
from difftm.refine.optimize import refine_gradient, refine_grid
from difftm.refine.scorer import ParticleScorer, rotation_update
from difftm.search.config import SearchConfig
from difftm.search.engine import build_correlator

from model_files import model_path

PX = 1.5
DEFOCUS = 10000.0


@functools.lru_cache(maxsize=1)
def _case():
    from difftm.io.models import load_model
    from difftm.simulate.micrograph import simulate_micrograph
    from difftm.simulate.template import simulate_template, suggest_box

    path = model_path("6msm.pdb.gz")
    atoms = load_model(path)
    vol = simulate_template(path, pixel_size=PX, box=suggest_box(atoms, PX))
    sim = simulate_micrograph(vol, PX, (384, 384), 4, DEFOCUS, fluence=200.0, seed=5,
                              atoms=atoms, defocus_spread=150.0)
    cfg = SearchConfig(micrograph="m.mrc", template="t.mrc", output="o", pixel_size=PX,
                       defocus_u=DEFOCUS)
    scorer = ParticleScorer.from_search(cfg, sim.image, vol.numpy())
    return sim, vol, cfg, scorer


def _starts(sim, seed=0):
    """Starts 3-6 deg, 1-2 px (per axis) and +-200 A off the truth."""
    rng = np.random.default_rng(seed)
    truth = sim.truth
    n = len(truth)
    r_true = euler_to_matrix(torch.tensor(truth[["rot", "tilt", "psi"]].to_numpy())).float()
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    off = np.deg2rad(rng.uniform(3.0, 6.0, n))[:, None] * axis
    r0 = rotation_update(torch.tensor(off, dtype=torch.float32), r_true)
    xy = truth[["x", "y"]].to_numpy().astype(float)
    step = rng.uniform(1.0, 2.0, (n, 2)) * np.sign(rng.standard_normal((n, 2)))
    centres = torch.tensor(np.round(xy + step).astype(np.int64))
    dz_true = truth["defocus_u"].to_numpy() - DEFOCUS
    dz0 = torch.tensor(dz_true + rng.choice([-200.0, 200.0], n), dtype=torch.float32)
    return r_true, xy, dz_true, r0, centres, dz0


def _errors(res, r_true, xy, dz_true, centres):
    ang = np.array([float(rotation_angle_deg(res.rotations[i], r_true[i].double()))
                    for i in range(len(xy))])
    pos = centres.numpy() + res.shifts.numpy()
    return ang, np.hypot(*(pos - xy).T), res.defocus_offsets.numpy() - dz_true


def test_scorer_equals_the_search_correlation():
    sim, vol, cfg, scorer = _case()
    t = sim.truth.iloc[0]
    angles = torch.tensor([[t.rot, t.tilt, t.psi]], dtype=torch.float64)
    offsets = torch.tensor(cfg.defocus_offsets(), dtype=torch.float64)
    corr = build_correlator(cfg, sim.image, vol.numpy(), angles, offsets, torch.device("cpu"))
    assert corr.template_size == scorer.size
    plane = int(np.argmin(np.abs(offsets.numpy() - 200.0)))
    cc = corr.correlate(torch.tensor([plane]))[0]
    centre = torch.tensor([[int(t.x), int(t.y)]])
    ours = scorer.score(centre, euler_to_matrix(angles).float(), None,
                        torch.tensor([float(offsets[plane])]))
    assert float(ours[0]) == pytest.approx(float(cc[int(t.y), int(t.x)]), abs=1e-4)
    # and a shift of the template by whole pixels is the search's neighbouring value (up to
    # the edge mean of the circularly shifted P x P template: ~1e-4 relative)
    shifted = scorer.score(centre, euler_to_matrix(angles).float(),
                           torch.tensor([[1.0, -2.0]]), torch.tensor([float(offsets[plane])]))
    assert float(shifted[0]) == pytest.approx(float(cc[int(t.y) - 2, int(t.x) + 1]),
                                              abs=5e-3)
    # a sign error in the shift convention would land on the opposite neighbour
    assert abs(float(cc[int(t.y) + 2, int(t.x) - 1]) - float(shifted[0])) > 0.05


def test_gradient_refinement_recovers_planted_poses():
    sim, _, _, scorer = _case()
    r_true, xy, dz_true, r0, centres, dz0 = _starts(sim)
    res = refine_gradient(scorer, centres, r0, dz0)
    ang, shift, ddz = _errors(res, r_true, xy, dz_true, centres)
    msg = f"angle {np.round(ang, 2)} shift {np.round(shift, 2)} defocus {np.round(ddz)}"
    assert np.median(ang) < 0.5 and ang.max() < 1.0, msg
    assert np.median(shift) < 0.3 and shift.max() < 0.5, msg
    assert np.abs(ddz).max() <= 50.0, msg
    # never worse than the start, and in the search's units (close to the true pose's score)
    assert (res.score >= res.start_score).all()
    truth_score = scorer.score(torch.tensor(np.round(xy).astype(np.int64)), r_true, None,
                               torch.tensor(dz_true, dtype=torch.float32)).detach()
    assert (res.score.numpy() >= truth_score.double().numpy() - 0.5).all()
    assert res.trace.shape[1] == len(xy)


def test_gradient_refinement_does_not_depend_on_the_batch_size():
    sim, _, _, scorer = _case()
    _, _, _, r0, centres, dz0 = _starts(sim, seed=1)
    from difftm.refine.optimize import GradientSchedule

    quick = GradientSchedule(steps=8, lowpass_angstrom=(8.0, None),
                             start_offsets_deg=((0.0, 0.0, 0.0), (2.0, 0.0, 0.0)))
    a = refine_gradient(scorer, centres, r0, dz0, quick, batch_size=4)
    b = refine_gradient(scorer, centres, r0, dz0, quick, batch_size=1)
    torch.testing.assert_close(a.rotations, b.rotations, atol=1e-4, rtol=0)
    torch.testing.assert_close(a.shifts, b.shifts, atol=1e-3, rtol=0)
    torch.testing.assert_close(a.score, b.score, atol=1e-3, rtol=0)


def test_a_start_that_cannot_improve_is_kept():
    sim, _, _, scorer = _case()
    r_true, xy, dz_true, _, _, _ = _starts(sim)
    # a particle far from any planted one (pure noise): scores cannot rise much, and
    # whatever happens the result never drops below the start
    centres = torch.tensor([[40, 40]])
    start = r_true[:1].clone()
    res = refine_grid(scorer, centres, start, torch.zeros(1), out_of_plane_range=1.0,
                      out_of_plane_step=1.0, in_plane_range=1.0, in_plane_step=1.0,
                      defocus_range=20.0, defocus_step=20.0, shift_range=0.5, shift_step=0.5)
    assert float(res.score[0]) >= float(res.start_score[0])
    assert torch.equal(start, r_true[:1])  # the caller's rotations are not modified


@pytest.mark.slow
def test_grid_refinement_recovers_planted_poses():
    sim, _, _, scorer = _case()
    r_true, xy, dz_true, r0, centres, dz0 = _starts(sim)
    r0_before, dz0_before = r0.clone(), dz0.clone()
    res = refine_grid(scorer, centres, r0, dz0, out_of_plane_range=6.0, out_of_plane_step=1.0,
                      in_plane_range=6.0, in_plane_step=1.0, defocus_range=300.0,
                      defocus_step=20.0, shift_range=2.0, shift_step=0.1)
    ang, shift, ddz = _errors(res, r_true, xy, dz_true, centres)
    assert np.median(ang) < 1.0 and np.median(shift) < 0.3 and np.abs(ddz).max() <= 60.0
    assert torch.equal(r0, r0_before) and torch.equal(dz0, dz0_before)  # inputs untouched


def test_refine_command_end_to_end(tmp_path):
    """search (explicit orientations 4 deg off the truth) -> peaks -> refine: a RELION STAR
    with refined poses closer to the truth, better scores, CSV and HTML beside it; bad input
    gets one line."""
    from typer.testing import CliRunner

    from difftm.cli.main import app
    from difftm.io.mrc import write_mrc
    from difftm.io.star import particles_to_plain, read_particles_star, write_particles_star

    sim, vol, _, _ = _case()
    r_true, xy, _, _, _, _ = _starts(sim)
    rng = np.random.default_rng(3)
    axis = rng.standard_normal((len(xy), 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    r_off = rotation_update(torch.tensor(np.deg2rad(4.0) * axis, dtype=torch.float32), r_true)
    from difftm.geometry.euler import matrix_to_euler

    angles = matrix_to_euler(r_off.double()).numpy()
    orient = tmp_path / "orientations.txt"
    orient.write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in angles) + "\n")
    mic, tpl = tmp_path / "mic.mrc", tmp_path / "tpl.mrc"
    write_mrc(mic, sim.image, PX)
    write_mrc(tpl, vol.numpy(), PX)
    runner = CliRunner()
    run = tmp_path / "run"
    res = runner.invoke(app, ["search", str(mic), str(tpl), "--output", str(run),
                              "--defocus-u", str(DEFOCUS), "--defocus-range", "0",
                              "--orientations", str(orient), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    parts = tmp_path / "particles.star"
    res = runner.invoke(app, ["peaks", str(run), "--output", str(parts), "--no-report"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "refined.star"
    # no --particles: the table `difftm peaks` wrote for this run
    res = runner.invoke(app, ["refine", str(run), "-o", str(out),
                              "--pixel-size-search", "0.03", "0.015"])
    assert res.exit_code == 0, res.output
    assert "pixel size scan: best template voxel size" in res.output
    assert out.with_suffix(".csv").is_file() and out.with_suffix(".html").is_file()
    assert (tmp_path / "refined_figures" / "pixel_size_scan.png").is_file()
    _, refined = read_particles_star(out)
    for label in ("rlnCoordinateX", "rlnAngleRot", "rlnDefocusU", "difftmSNR",
                  "difftmSNRBefore", "difftmAngleChange", "difftmShiftChange",
                  "difftmDefocusChange", "difftmZScore", "difftmNegLogP"):
        assert label in refined.columns, label
    plain = particles_to_plain(refined)
    assert (plain["snr"] >= plain["snr_before"] - 1e-6).all()
    assert (plain["neg_log_p"] > 0).all() and np.isfinite(plain["neg_log_p"]).all()
    assert len(plain) >= 3
    # every refined particle is nearer its true pose than the search's 4 deg
    for row in plain.itertuples():
        k = int(np.argmin(np.hypot(xy[:, 0] - row.x, xy[:, 1] - row.y)))
        r = euler_to_matrix(torch.tensor([row.rot, row.tilt, row.psi], dtype=torch.float64))
        assert float(rotation_angle_deg(r, r_true[k].double())) < 1.5
    # refuses to overwrite; bad tables get one line
    res = runner.invoke(app, ["refine", str(run), "--particles", str(parts), "-o", str(out)])
    assert res.exit_code == 2 and "exists" in res.output
    optics, table = read_particles_star(parts)
    bad = tmp_path / "bad.star"
    write_particles_star(bad, table.drop(columns=["rlnAngleTilt"]), optics)
    res = runner.invoke(app, ["refine", str(run), "--particles", str(bad), "-o",
                              str(tmp_path / "x.star")])
    assert res.exit_code == 2 and "rlnAngleTilt" in res.output
    far = table.copy()
    far.loc[0, "rlnCoordinateX"] = 5000.0
    outside = tmp_path / "outside.star"
    write_particles_star(outside, far, optics)
    res = runner.invoke(app, ["refine", str(run), "--particles", str(outside), "-o",
                              str(tmp_path / "y.star")])
    assert res.exit_code == 2 and "outside" in res.output


def test_pixel_size_scan_finds_the_templates_true_voxel_size():
    """A template simulated at 1.53 A/voxel but used as if at 1.5 (a 2 % magnification
    error): the mean score over the planted particles peaks at 1.53 A (steps of 0.01)."""
    from difftm.io.models import load_model
    from difftm.refine.optimize import pixel_size_scan
    from difftm.simulate.template import simulate_template, suggest_box

    sim, _, cfg, _ = _case()
    path = model_path("6msm.pdb.gz")
    wrong = simulate_template(path, pixel_size=1.53, box=suggest_box(load_model(path), PX))
    scorer = ParticleScorer.from_search(cfg, sim.image, wrong.numpy())
    truth = sim.truth
    rot = euler_to_matrix(torch.tensor(truth[["rot", "tilt", "psi"]].to_numpy())).float()
    centres = torch.tensor(truth[["x", "y"]].to_numpy().astype(np.int64))
    dz = torch.tensor(truth["defocus_u"].to_numpy() - DEFOCUS, dtype=torch.float32)
    sizes = np.round(np.arange(1.45, 1.5801, 0.01), 2)
    mean = pixel_size_scan(scorer, centres, rot, torch.zeros(len(truth), 2), dz, sizes)
    assert sizes[int(np.argmax(mean))] == pytest.approx(1.53, abs=0.011)
    assert mean.max() > mean[sizes == 1.5][0] + 0.3  # the right size is clearly better
