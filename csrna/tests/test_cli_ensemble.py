"""Tests for the `csrna reweight`, `csrna bme` and `csrna annotate` commands."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from csrna.cli import app

DATA = Path(
    os.environ.get(
        "DIFFTM_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    )
)
RNA = DATA / "rna"
needs_data = pytest.mark.skipif(not RNA.is_dir(), reason="shared RNA data not available")
runner = CliRunner()
HWQ_SEQ = "GGUGCGAAGGGCGUCGUCGCCCCGAGCGCC"


def _one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error:")
    return lines[0]


@needs_data
def test_reweight_prepared_pair(tmp_path):
    pairs = RNA / "csbme" / "bme_pairs"
    out = tmp_path / "w.csv"
    res = runner.invoke(app, ["reweight", str(pairs / "bme_experimental_1HWQ_assigned.dat"),
                              str(pairs / "bme_simulated_2D_assigned_1HWQ.dat"),
                              "--theta", "1", "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert "chi2 before" in res.output and "phi" in res.output
    w = pd.read_csv(out)
    assert list(w.columns) == ["structure", "weight"]
    assert list(w["structure"]) == list(range(11))
    assert w["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert (w["weight"] >= 0).all()
    assert int(w["weight"].idxmax()) == 10


@needs_data
def test_reweight_theta_auto(tmp_path):
    pairs = RNA / "csbme" / "bme_pairs"
    out = tmp_path / "w.csv"
    res = runner.invoke(app, ["reweight", str(pairs / "bme_experimental_2NBY_assigned.dat"),
                              str(pairs / "bme_simulated_2D_assigned_2NBY.dat"),
                              "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert "theta = " in res.output
    w = pd.read_csv(out)
    assert int(w["weight"].idxmax()) == 10


def test_reweight_malformed_files(tmp_path):
    exp = tmp_path / "exp.dat"
    exp.write_text("# DATA=CS PRIOR=GAUSS\n0 1.0 0.5\n1 2.0\n")
    sim = tmp_path / "sim.dat"
    sim.write_text("0 1.0 2.0\n1 1.5 2.5\n")
    res = runner.invoke(app, ["reweight", str(exp), str(sim), "--output", str(tmp_path / "w")])
    assert "exp.dat" in _one_error_line(res)
    exp.write_text("# DATA=CS PRIOR=GAUSS\n0 1.0 0.5\n1 2.0 0.5\n2 3.0 0.5\n")
    res = runner.invoke(app, ["reweight", str(exp), str(sim), "--output", str(tmp_path / "w")])
    _one_error_line(res)
    res = runner.invoke(app, ["reweight", str(tmp_path / "nope.dat"), str(sim),
                              "--output", str(tmp_path / "w")])
    assert "nope.dat" in _one_error_line(res)
    res = runner.invoke(app, ["reweight", str(exp), str(sim), "--theta", "-3",
                              "--output", str(tmp_path / "w")])
    _one_error_line(res)


@needs_data
def test_bme_with_ct_library(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    for f in (RNA / "csbme" / "cts").glob("1HWQ_*.ct"):
        shutil.copy(f, lib)
    out = tmp_path / "out"
    shifts = RNA / "csbme" / "measured_shifts" / "measured_shifts_1HWQ.txt"
    res = runner.invoke(app, ["bme", str(shifts), "--sequence", HWQ_SEQ, "--library", str(lib),
                              "--theta", "1", "--output", str(out)])
    assert res.exit_code == 0, res.output
    # shifts of nuclei the predictor does not model are counted, not dropped silently
    assert "45 of 300 measured (residue, nucleus) shifts have no predicted counterpart" in \
        " ".join(res.output.split())
    for name in ("weights.csv", "library.csv", "predicted_shifts.csv", "top_structure.ct",
                 "top_structure.dbn", "pair_probabilities.png"):
        assert (out / name).is_file(), name
    w = pd.read_csv(out / "weights.csv")
    assert w["structure"].tolist()[:3] == ["1HWQ_1", "1HWQ_2", "1HWQ_3"]
    assert w["weight"].sum() == pytest.approx(1.0, abs=1e-6)
    assert w.loc[w["weight"].idxmax(), "structure"] == "1HWQ_11"  # the native
    assert (out / "top_structure.dbn").read_text().splitlines()[2] == \
        "(((((...((((......))))...)))))"


@needs_data
def test_bme_sampled_library_finds_mir20b_native(tmp_path):
    d = RNA / "cs2bps" / "test_miR20b"
    out = tmp_path / "out"
    res = runner.invoke(app, ["bme", str(d / "measured_shifts_2N7X.dat"), "--sequence",
                              str(d / "mir20b.fasta"), "--samples", "200", "--theta", "1",
                              "--output", str(out)])
    assert res.exit_code == 0, res.output
    assert (out / "top_structure.dbn").read_text().splitlines()[2] == "(((((..((.....))..)))))"


@needs_data
def test_bme_errors(tmp_path):
    d = RNA / "cs2bps" / "test_miR20b"
    shifted = tmp_path / "far.dat"
    rows = [ln.split() for ln in (d / "measured_shifts_2N7X.dat").read_text().splitlines()
            if ln.strip()]
    shifted.write_text("".join(f"{r[0]} {int(r[1]) + 500} {' '.join(r[2:])}\n" for r in rows))
    res = runner.invoke(app, ["bme", str(shifted), "--sequence", str(d / "mir20b.fasta"),
                              "--samples", "20", "--theta", "1", "--output", str(tmp_path / "o")])
    assert "far.dat" in _one_error_line(res)
    renamed = tmp_path / "renamed.dat"
    renamed.write_text("".join(f"{'ADE' if r[1] == '1' else r[0]} {' '.join(r[1:])}\n"
                               for r in rows))
    res = runner.invoke(app, ["bme", str(renamed), "--sequence", str(d / "mir20b.fasta"),
                              "--samples", "20", "--theta", "1", "--output", str(tmp_path / "o")])
    assert "residue 1 is A" in _one_error_line(res)
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(RNA / "csbme" / "cts" / "1HWQ_1.ct", lib)
    res = runner.invoke(app, ["bme", str(d / "measured_shifts_2N7X.dat"), "--sequence",
                              str(d / "mir20b.fasta"), "--library", str(lib),
                              "--output", str(tmp_path / "o")])
    assert "1HWQ_1.ct" in _one_error_line(res)


@needs_data
def test_annotate_command(tmp_path):
    out = tmp_path / "ann.csv"
    res = runner.invoke(app, ["annotate", str(RNA / "cs2bps" / "test_miR20b" /
                                              "measured_shifts_2N7X.dat"), "--output", str(out)])
    assert res.exit_code == 0, res.output
    t = pd.read_csv(out)
    assert len(t) == 23
    assert {"resid", "resname", "pair", "syn_anti", "pucker_C3p_endo", "pucker"} <= set(t.columns)
    assert t["pair"].between(0, 1).all()
    # helix residues 1-5 / 19-23 of the native hairpin should mostly be called paired
    helix = t[t["resid"].isin([2, 3, 4, 20, 21, 22])]
    assert (helix["pair"] > 0.5).mean() >= 0.5
