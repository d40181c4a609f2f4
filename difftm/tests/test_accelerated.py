"""The accelerated search (coarse pass, candidates, gradient refinement) at 2 A/px.

Planted particles come from the faithful simulator (exact atom projections, Poisson counts),
so the search's projector and the truth are independent. Checks: the accelerated search
calls the planted particles with refined poses close to the truth, in the exhaustive
search's SNR units (its scores match the scorer's at the refined pose, and are at least the
exhaustive coarse-grid scores); its counts (correlations, local scores, projections) are
recorded in the bundle and in search_summary.json; noise-only micrographs give no more
false positives than the threshold allows; the candidate threshold follows its formula; and
the exhaustive fingerprint does not change with accelerated-only settings.
"""

from __future__ import annotations

import functools
import json
import math
from statistics import NormalDist

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from difftm.accelerate.search import (
    Candidates,
    candidate_threshold,
    merge_refined,
    retained_fraction,
)
from difftm.cli.main import app
from difftm.evaluate import score_detections
from difftm.geometry.euler import euler_to_matrix, rotation_angle_deg
from difftm.geometry.grids import grid_size
from difftm.io.models import load_model
from difftm.io.mrc import write_mrc
from difftm.search.config import SearchConfig
from difftm.search.engine import SUMMARY_NAME, run_search
from difftm.search.particles import call_particles
from difftm.simulate.micrograph import simulate_micrograph
from difftm.simulate.template import simulate_template, suggest_box

from model_files import model_path

PX = 2.0
DEFOCUS = 10000.0
SIZE = 160
COARSE = 15.0


@functools.lru_cache(maxsize=1)
def _template() -> np.ndarray:
    atoms = load_model(model_path("3enl.pdb.gz"))
    vol = simulate_template(model_path("3enl.pdb.gz"), pixel_size=PX,
                            box=suggest_box(atoms, PX))
    return vol.numpy().astype(np.float32)


def _case(folder, n: int, seed: int, strategy: str = "accelerated", **extra):
    vol = _template()
    atoms = load_model(model_path("3enl.pdb.gz"))
    sim = simulate_micrograph(torch.from_numpy(vol), PX, (SIZE, SIZE), n, DEFOCUS,
                              fluence=60.0, seed=seed, atoms=atoms)
    folder.mkdir(parents=True, exist_ok=True)
    write_mrc(folder / "mic.mrc", sim.image, PX, overwrite=True)
    write_mrc(folder / "tpl.mrc", vol, PX, overwrite=True)
    settings = dict(micrograph=folder / "mic.mrc", template=folder / "tpl.mrc",
                    output=folder / strategy, pixel_size=PX, defocus_u=DEFOCUS,
                    defocus_range=0.0, out_of_plane_step=5.0, in_plane_step=3.0,
                    strategy=strategy, coarse_out_of_plane_step=COARSE, device="cpu")
    settings.update(extra)
    cfg = SearchConfig(**settings)
    return sim, cfg, run_search(cfg)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    return _case(tmp_path_factory.mktemp("acc"), 3, seed=4)


def test_accelerated_calls_the_planted_particles_with_refined_poses(planted):
    sim, cfg, result = planted
    table, summary = call_particles(result)
    called = table[table["called"]].reset_index(drop=True)
    score = score_detections(called, sim.truth, max_distance=2.0)
    assert score.recall == 1.0 and score.precision == 1.0, (summary.line(), called)
    truth = sim.truth
    errors = []
    for row in called.itertuples():
        d = np.hypot(truth.x - row.x, truth.y - row.y)
        t = truth.iloc[int(np.argmin(d))]
        r = euler_to_matrix(torch.tensor([[row.rot, row.tilt, row.psi]], dtype=torch.float64))
        rt = euler_to_matrix(torch.tensor([[t.rot, t.tilt, t.psi]], dtype=torch.float64))
        errors.append(float(rotation_angle_deg(r[0], rt[0])))
    # the coarse grid alone is ~7.5 deg from the truth on average; refined poses are close
    assert max(errors) < 2.5, errors


def test_counts_and_search_space_are_recorded(planted):
    _, cfg, result = planted
    md = result.metadata
    acc = md["accelerated"]
    n_coarse = grid_size(COARSE, 0.6 * COARSE)
    assert md["strategy"] == "accelerated"
    assert md["n_correlations"] == n_coarse == acc["coarse_orientations"]
    # statistics use the configured fine grid, as the exhaustive search would
    assert md["n_search"] == grid_size(5.0, 3.0) * 1
    assert md["n_local_scores"] > 0 and acc["n_candidates"] >= 3
    assert md["n_projections"] == n_coarse + md["n_local_scores"]
    summary = json.loads((cfg.output / SUMMARY_NAME).read_text())
    for key in ("n_correlations", "n_local_scores", "n_projections", "n_search"):
        assert summary[key] == md[key]
    assert summary["strategy"] == "accelerated"
    # far fewer correlations than the exhaustive grid of the same configuration
    assert md["n_search"] / (md["n_correlations"] + md["n_local_scores"]) > 3


def test_scores_are_in_the_exhaustive_units(planted, tmp_path):
    """At every called particle the accelerated SNR is the scorer's value at the written
    pose, and at least what an exhaustive search on the coarse grid finds there."""
    from difftm.refine.scorer import ParticleScorer

    sim, cfg, result = planted
    table, _ = call_particles(result)
    called = table[table["called"]].reset_index(drop=True)
    ex_cfg = cfg.model_copy(update={"strategy": "exhaustive", "out_of_plane_step": COARSE,
                                    "in_plane_step": 0.6 * COARSE,
                                    "output": tmp_path / "exh"})
    ex = run_search(ex_cfg)
    for row in called.itertuples():
        window = ex.maps["snr"][row.y - 2:row.y + 3, row.x - 2:row.x + 3]
        assert row.snr >= window.max() - 0.05
    scorer = ParticleScorer.from_search(cfg, sim.image, _template())
    rot = euler_to_matrix(torch.tensor(called[["rot", "tilt", "psi"]].to_numpy()))
    centres = torch.tensor(called[["x", "y"]].to_numpy().astype(np.int64))
    with torch.no_grad():
        s = scorer.score(centres, rot.float()).double().numpy()
    # written at the rounded refined position (sub-pixel shift dropped): a little lower
    assert np.all(s <= called.snr.to_numpy() + 0.1) and np.all(s > called.snr - 1.5)


def _noise_calls(tmp_path, seeds) -> list[int]:
    calls = []
    for seed in seeds:
        _, _, result = _case(tmp_path / str(seed), 0, seed=seed)
        table, _ = call_particles(result)
        calls.append(int(table["called"].sum()))
        assert result.metadata["accelerated"]["n_candidates"] > 0
    return calls


def test_noise_only_false_positives_stay_at_the_threshold(tmp_path):
    # one expected false positive per micrograph at the default threshold
    assert sum(_noise_calls(tmp_path, (11,))) <= 2


@pytest.mark.slow
def test_noise_only_false_positive_rate_over_several_micrographs(tmp_path):
    calls = _noise_calls(tmp_path, range(20, 28))
    assert sum(calls) / len(calls) <= 1.5, calls


def test_candidate_threshold_formula():
    r = np.linspace(0.5, 1.0, 101)
    t = candidate_threshold(8.0, r, 0.05)
    assert t == pytest.approx(np.quantile(r, 0.05) * 8.0 - NormalDist().inv_cdf(0.95))
    # a lower miss rate lowers the threshold (more candidates)
    assert candidate_threshold(8.0, r, 0.01) < t


def test_retained_fraction_sees_grid_mismatch(planted):
    """A dense grid recovers most of a random pose's score; a one-pose grid far from the
    random poses recovers little (a nearest-rotation search that ignored the grid, or took
    the farthest pose, fails)."""
    from difftm.geometry.grids import orientation_grid
    from difftm.refine.scorer import ParticleScorer

    sim, cfg, _ = planted
    scorer = ParticleScorer.from_search(cfg, sim.image, _template())
    one = retained_fraction(scorer, scorer, euler_to_matrix(torch.zeros(1, 3)), n_samples=4)
    dense = retained_fraction(scorer, scorer, euler_to_matrix(orientation_grid(6.0, 6.0)),
                              n_samples=4)
    assert np.all(one < 0.8) and np.all(dense > one + 0.1) and np.median(dense) > 0.6


def test_merge_writes_refined_scores_where_they_land(planted):
    from difftm.refine.optimize import Refined

    _, _, result = planted
    cands = Candidates(centres=torch.tensor([[80, 80], [81, 80]]),
                       rotations=torch.eye(3).repeat(2, 1, 1),
                       coarse_score=np.array([3.0, 3.0]), threshold=3.0)
    refined = Refined(rotations=torch.eye(3, dtype=torch.float64).repeat(2, 1, 1),
                      shifts=torch.tensor([[0.4, 0.0], [-0.6, 0.0]], dtype=torch.float64),
                      defocus_offsets=torch.tensor([10.0, 20.0], dtype=torch.float64),
                      score=torch.tensor([50.0, 60.0], dtype=torch.float64),
                      start_score=torch.zeros(2, dtype=torch.float64))
    maps = merge_refined(result, cands, refined)
    assert maps["snr"][80, 80] == pytest.approx(60.0)  # both land on x=80: the best wins
    assert maps["defocus_offset"][80, 80] == pytest.approx(20.0)
    z = (60.0 - result.maps["mean"][80, 80]) / result.maps["sigma"][80, 80]
    assert maps["zscore"][80, 80] == pytest.approx(z, rel=1e-5)
    assert np.array_equal(maps["snr"][:70], result.maps["snr"][:70])


def test_exhaustive_fingerprint_ignores_accelerated_settings(tmp_path):
    base = dict(micrograph=tmp_path / "m.mrc", template=tmp_path / "t.mrc",
                output=tmp_path / "o", pixel_size=1.0, defocus_u=1e4)
    a = SearchConfig(**base).fingerprint()
    assert SearchConfig(**base, coarse_out_of_plane_step=8.0).fingerprint() == a
    acc = SearchConfig(**base, strategy="accelerated").fingerprint()
    assert acc != a
    assert SearchConfig(**base, strategy="accelerated",
                        coarse_out_of_plane_step=8.0).fingerprint() != acc


def test_cli_accelerated_reports_its_work(planted, tmp_path):
    _, cfg, _ = planted
    res = CliRunner().invoke(app, [
        "search", str(cfg.micrograph), str(cfg.template), "-o", str(tmp_path / "cli"),
        "--pixel-size", str(PX), "--defocus-u", str(DEFOCUS), "--defocus-range", "0",
        "--out-of-plane-step", "10", "--in-plane-step", "6", "--strategy", "accelerated",
        "--coarse-step", "30", "--device", "cpu", "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "coarse pass" in res.output and "refining" in res.output
    assert "done (accelerated)" in res.output and "local scores" in res.output
    bad = CliRunner().invoke(app, [
        "search", str(cfg.micrograph), str(cfg.template), "-o", str(tmp_path / "bad"),
        "--pixel-size", str(PX), "--defocus-u", str(DEFOCUS), "--strategy", "fastest"])
    assert bad.exit_code == 2 and "strategy" in bad.output and "Traceback" not in bad.output
    assert math.isfinite(float(cfg.coarse_in_plane_step_resolved))


@pytest.mark.slow
def test_accelerated_resumes_bit_identically(planted, tmp_path):
    """Killed during the coarse pass, the same command resumes from the checkpoint and
    gives the maps of an uninterrupted run."""
    from difftm.search.engine import SearchInterrupted

    _, cfg, result = planted
    again = cfg.model_copy(update={"output": tmp_path / "resumed", "chunk_batches": 20})
    with pytest.raises(SearchInterrupted):
        run_search(again, stop_after_chunks=2)
    assert (again.output / "checkpoint.npz").exists()
    resumed = run_search(again)
    for name, arr in result.maps.items():
        assert np.array_equal(resumed.maps[name], arr), name
