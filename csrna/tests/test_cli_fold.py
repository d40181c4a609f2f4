"""Tests for the ``csrna fold`` command."""

from __future__ import annotations

import shutil

import pytest
import typer
from _fold_data import CS2BPS, needs_data
from typer.testing import CliRunner

from csrna.cli.fold import register
from csrna.io import read_ct

MIR = CS2BPS / "test_miR20b"


@pytest.fixture()
def app() -> typer.Typer:
    application = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(application)
    return application


def _run(app, args):
    return CliRunner().invoke(app, ["fold", *[str(a) for a in args]])


@needs_data
def test_fold_single_file_writes_ct_dbn_and_probabilities(app, tmp_path):
    out = tmp_path / "mir.ct"
    res = _run(app, [MIR / "measured_shifts_2N7X.dat", "--sequence", MIR / "mir20b.fasta",
                     "--output", out])
    assert res.exit_code == 0, res.output
    assert read_ct(out) == read_ct(MIR / "2N7X-2D-ct.txt")
    assert (tmp_path / "mir.dbn").read_text().splitlines()[2] == "(((((..((.....))..)))))"
    table = (tmp_path / "mir_probabilities.tsv").read_text().splitlines()
    assert table[0].split("\t")[:4] == ["resid", "resname", "n_measured", "p_unpaired"]
    assert len(table) == 24
    assert "mfe+cs" in (tmp_path / "mir_candidates.tsv").read_text()
    assert (tmp_path / "mir.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@needs_data
def test_fold_folder_batch(app, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for pdb in ("2N7X", "2N82"):
        shutil.copy(MIR / f"measured_shifts_{pdb}.dat", inputs / f"{pdb}.dat")
    (inputs / "2N7X.fasta").write_text(">2N7X\nGGUAGUUUUGGCAUGACUCUACC\n")
    res = _run(app, [inputs, "--output", tmp_path / "out"])
    assert res.exit_code == 2 and "2N82" in res.output  # no FASTA for 2N82
    (inputs / "2N82.fa").write_text("GGUAGUUUUGGCAUGACUCUACC\n")
    res = _run(app, [inputs, "--output", tmp_path / "out", "--mode", "tuned"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.ct")) == ["2N7X.ct", "2N82.ct"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["2N7X.png", "2N82.png"]


@pytest.mark.parametrize(
    ("content", "sequence", "message"),
    [
        ("GUA 1 C1' 92.7 .\nGUA 1 X7' 1.0 .\n", "GG", "unknown nucleus"),
        ("GUA 1 C1' 92.7 .\nGUA 5 C1' 92.7 .\n", "GG", "outside the sequence"),
        ("GUA 1 C1' 92.7 .\n", "GGXN", "letters other than ACGU/T"),
        ("", "GG", "empty"),
        ("GUA 1 C1' 92.7 .\n", None, "--sequence is required"),
        ("GUA 1 C1' 92.7 .\n", "missing.fasta", "not found"),
    ],
)
def test_bad_input_one_line_exit_2(app, tmp_path, content, sequence, message):
    shifts = tmp_path / "s.dat"
    shifts.write_text(content)
    args = [shifts, "--output", tmp_path / "o.ct"]
    if sequence is not None:
        args += ["--sequence", sequence]
    res = CliRunner().invoke(app, ["fold", *map(str, args)])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0] and lines[0].startswith("error:")
    assert not (tmp_path / "o.ct").exists()


def test_bad_mode(app, tmp_path):
    shifts = tmp_path / "s.dat"
    shifts.write_text("GUA 1 C1' 92.7 .\n")
    res = _run(app, [shifts, "--sequence", "G", "--mode", "fast"])
    assert res.exit_code == 2 and "--mode" in res.output

