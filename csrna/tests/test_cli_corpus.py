"""A corpus of malformed inputs and hostile options run through every ``csrna`` command.

Each case must end with a non-zero exit, no traceback, one ``error:`` line naming the file
or option at fault, no existing file overwritten and no file left behind (issue 15). Inputs
are tiny; every case fails before any folding or sampling.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from cli_checks import check_one_line_error, no_hang_fixture
from typer.testing import CliRunner

from csrna.cli import app

runner = CliRunner()

SEQ = "GGACUUCGGUCC"
GOOD = "\n".join(f"{b} {i} C1' {92.0 + 0.1 * i:.2f} 0.1" for i, b in enumerate(SEQ, 1)) + "\n"


@dataclass(frozen=True)
class Inputs:
    """Corpus files in one temporary folder."""

    root: Path
    good: Path
    empty: Path
    latin1: Path
    garbage: Path
    negative_error: Path
    conflict: Path
    outside: Path
    huge_resid: Path
    no_nucleus: Path
    nan_shift: Path
    exp: Path
    sim: Path
    sim_short: Path
    existing: Path
    folder: Path
    probs_input: Path


@pytest.fixture(scope="module")
def inp(tmp_path_factory) -> Inputs:
    root = tmp_path_factory.mktemp("csrna_corpus")

    def w(name: str, text: str | bytes) -> Path:
        path = root / name
        (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
        return path

    good = w("good.txt", GOOD)
    empty = w("empty.txt", "")
    latin1 = w("latin1.txt", "G 1 C1' 92.0 0.1\n# r\xe9sonance\n".encode("latin-1"))
    garbage = w("garbage.txt", "this is not a shift table at all\n")
    negative_error = w("negerr.txt", GOOD + "G 2 H1' 5.8 -0.5\n")
    conflict = w("conflict.txt", GOOD + "G 1 C1' 80.0 0.1\n")
    outside = w("outside.txt", GOOD + "G 40 C1' 92.0 0.1\n")
    huge_resid = w("hugeres.txt", "G 99999999999999999999999 C1' 92.0 0.1\n")
    no_nucleus = w("nonuc.txt", "G 1 XQ9 92.0 0.1\nG 2 XQ9 92.0 0.1\n")
    nan_shift = w("nanshift.txt", GOOD + "G 2 H1' nan 0.1\n")
    exp = w("exp.dat", "# DATA=CS PRIOR=GAUSS\n0 1.0 0.1\n1 2.0 0.1\n")
    sim = w("sim.dat", "0 1.0 2.0\n1 1.1 2.1\n")
    sim_short = w("sim_short.dat", "0 1.0\n1 1.1\n")
    existing = w("existing.csv", "precious\n")
    folder = root / "a_folder.csv"
    folder.mkdir()
    probs_input = w("x_probabilities.tsv", GOOD)
    write_star_corpus(root)
    return Inputs(root, good, empty, latin1, garbage, negative_error, conflict, outside,
                  huge_resid, no_nucleus, nan_shift, exp, sim, sim_short, existing, folder,
                  probs_input)


def write_star_corpus(root: Path) -> None:
    """Malformed BMRB NMR-STAR 3.x entries, each derived from one good entry."""
    from _star import entity_frame, entry, shift_frame

    rows = [(1, 1, i, b, "C1'", 92.0 + 0.1 * i) for i, b in enumerate(SEQ, 1)]
    good = entry(entity_frame(1, "rna", list(SEQ)), shift_frame(1, rows))
    (root / "good.str").write_text(good)
    lines = good.splitlines()
    row3 = next(k for k, ln in enumerate(lines) if ln.split()[:4] == ["3", "1", "1", "3"])

    def with_row3(change) -> str:
        out = list(lines)
        tokens = out[row3].split()
        change(tokens)
        out[row3] = "      " + " ".join(tokens)
        return "\n".join(out) + "\n"

    def set_token(k: int, value: str):
        return lambda t: t.__setitem__(k, value)

    loop_end = good.index("stop_", good.index("_Atom_chem_shift.Assigned_chem_shift_list_ID"))
    first_row = good.index("\n", good.index("_Atom_chem_shift.Assigned_chem_shift_list_ID")) + 1
    files = {
        "star_truncated.str": good[: loop_end - 60],
        "star_columns.str": with_row3(lambda t: t.pop()),
        "star_text_shift.str": with_row3(set_token(8, "ninety")),
        "star_nan_shift.str": with_row3(set_token(8, "nan")),
        "star_huge_resid.str": with_row3(set_token(3, "99999999999999999999")),
        "star_no_loop.str": entry(entity_frame(1, "rna", list(SEQ))),
        "star_empty_loop.str": good[:first_row] + good[loop_end - 3:],
        "star_unterminated_frame.str": good[: good.index("save_assigned") + 200],
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "star_nul.str").write_bytes(b"data_1\n" + b"\x00\x01\x02" * 2000)
    (root / "star_control.str").write_bytes(b"data_1\n" + bytes(range(1, 32)) * 40)
    (root / "star_latin1.str").write_bytes(good.replace("'rna'", "'r\xe9sonance'")
                                           .encode("latin-1"))


#: (file, what the one error line must say besides naming the file)
BAD_STAR = [
    ("star_truncated.str", "cannot parse NMR-STAR file at line"),
    ("star_columns.str", "expected number of data elements"),
    ("star_text_shift.str", "shift row 3: shift 'ninety' is not a number"),
    ("star_nan_shift.str", "shift row 3: shift 'nan' is not a finite number"),
    ("star_huge_resid.str", "shift row 3: residue number 99999999999999999999 is beyond"),
    ("star_no_loop.str", "no _Atom_chem_shift loop"),
    ("star_empty_loop.str", "loop of shift list 1 has no rows"),
    ("star_unterminated_frame.str", "Saveframe improperly terminated"),
    ("star_nul.str", "binary data (NUL bytes)"),
    ("star_control.str", "cannot parse NMR-STAR file at line 2"),
    ("star_latin1.str", "not UTF-8 text (byte 0xe9"),
]


def _fold(i: Inputs, shifts: Path, *extra: str, out: str = "f.ct") -> list[str]:
    return ["fold", str(shifts), "--sequence", SEQ, "--output", str(i.root / out), *extra]


def _bme(i: Inputs, shifts: Path, *extra: str, out: str = "bme_out") -> list[str]:
    return ["bme", str(shifts), "--sequence", SEQ, "--output", str(i.root / out), *extra]


def _ann(i: Inputs, shifts: Path, *extra: str, out: str = "ann.csv") -> list[str]:
    return ["annotate", str(shifts), "--output", str(i.root / out), *extra]


def _rew(i: Inputs, exp: Path, sim: Path, *extra: str, out: str = "w.csv") -> list[str]:
    return ["reweight", str(exp), str(sim), "--output", str(i.root / out), *extra]


BAD_SHIFTS = [
    ("missing", lambda i: i.root / "nope.txt", "nope.txt"),
    ("empty", lambda i: i.empty, "empty.txt"),
    ("latin1", lambda i: i.latin1, "latin1.txt"),
    ("garbage", lambda i: i.garbage, "garbage.txt"),
    ("negative-error", lambda i: i.negative_error, "negerr.txt"),
    ("conflicting-duplicate", lambda i: i.conflict, "conflict.txt"),
    ("huge-residue", lambda i: i.huge_resid, "hugeres.txt"),
    ("no-usable-nucleus", lambda i: i.no_nucleus, "nonuc.txt"),
    ("nan-shift", lambda i: i.nan_shift, "nanshift.txt"),
    ("directory", lambda i: i.folder, "a_folder.csv"),
]

CASES: list[tuple[str, object, str | tuple[str, ...]]] = []
for _name, _get, _expect in BAD_SHIFTS:
    CASES += [
        (f"fold-{_name}", lambda i, g=_get: _fold(i, g(i)), _expect),
        (f"bme-{_name}", lambda i, g=_get: _bme(i, g(i)), _expect),
        (f"annotate-{_name}", lambda i, g=_get: _ann(i, g(i)), _expect),
    ]
for _name, _problem in BAD_STAR:
    _exp = (_name, _problem)
    CASES += [
        (f"fold-{_name}", lambda i, n=_name: _fold(i, i.root / n), _exp),
        (f"bme-{_name}", lambda i, n=_name: _bme(i, i.root / n), _exp),
        (f"annotate-{_name}", lambda i, n=_name: _ann(i, i.root / n), _exp),
    ]
CASES += [
    ("fold-star-good-control", lambda i: _fold(i, i.root / "good.str", "--maxit", "0"),
     "--maxit"),
    # residues outside the sequence: refused by fold and bme alike (annotate has no sequence)
    ("fold-outside-sequence", lambda i: _fold(i, i.outside), "outside.txt"),
    ("bme-outside-sequence", lambda i: _bme(i, i.outside), "outside.txt"),
    # options
    ("fold-bad-sequence", lambda i: ["fold", str(i.good), "--sequence", "GGXZ!!",
                                     "--output", str(i.root / "f.ct")], "--sequence"),
    ("fold-fasta-missing", lambda i: ["fold", str(i.good), "--sequence", "no/such.fasta",
                                      "--output", str(i.root / "f.ct")], "such.fasta"),
    ("fold-maxit-huge", lambda i: _fold(i, i.good, "--maxit", "1000000"), "--maxit"),
    ("fold-maxit-zero", lambda i: _fold(i, i.good, "--maxit", "0"), "--maxit"),
    ("fold-offset-huge", lambda i: _fold(i, i.good, "--residue-offset",
                                         "99999999999999999999999"), "--residue-offset"),
    ("fold-mode-bad", lambda i: _fold(i, i.good, "--mode", "fast"), "--mode"),
    ("fold-output-is-input", lambda i: _fold(i, i.probs_input, "--overwrite", out="x.ct"),
     "x_probabilities.tsv"),
    ("fold-output-exists", lambda i: _fold(i, i.good, out="existing.csv"), "existing"),
    ("bme-theta-nan", lambda i: _bme(i, i.good, "--theta", "nan"), "--theta"),
    ("bme-theta-inf", lambda i: _bme(i, i.good, "--theta", "inf"), "--theta"),
    ("bme-samples-zero", lambda i: _bme(i, i.good, "--samples", "0"), "--samples"),
    ("bme-samples-huge", lambda i: _bme(i, i.good, "--samples", "1000000000"), "--samples"),
    ("bme-subopt-inf", lambda i: _bme(i, i.good, "--subopt-delta", "inf"), "--subopt-delta"),
    ("bme-subopt-negative", lambda i: _bme(i, i.good, "--subopt-delta", "-1"),
     "--subopt-delta"),
    ("bme-output-is-file", lambda i: _bme(i, i.good, out="existing.csv"), "existing.csv"),
    ("bme-library-missing", lambda i: _bme(i, i.good, "--library", str(i.root / "nolib")),
     "nolib"),
    ("annotate-output-is-dir", lambda i: _ann(i, i.good, "--overwrite", out="a_folder.csv"),
     "a_folder.csv"),
    ("annotate-output-exists", lambda i: _ann(i, i.good, out="existing.csv"), "existing.csv"),
    ("annotate-output-is-input", lambda i: _ann(i, i.good, "--overwrite", out="good.txt"),
     "good.txt"),
    ("annotate-output-no-folder", lambda i: _ann(i, i.good, out="no/such/ann.csv"), "no"),
    ("reweight-exp-missing", lambda i: _rew(i, i.root / "noexp.dat", i.sim), "noexp.dat"),
    ("reweight-exp-garbage", lambda i: _rew(i, i.garbage, i.sim), "garbage.txt"),
    ("reweight-exp-latin1", lambda i: _rew(i, i.latin1, i.sim), "latin1.txt"),
    ("reweight-sim-latin1", lambda i: _rew(i, i.exp, i.latin1), "latin1.txt"),
    ("reweight-sim-short", lambda i: _rew(i, i.exp, i.sim_short), "sim_short.dat"),
    ("reweight-theta-inf", lambda i: _rew(i, i.exp, i.sim, "--theta", "inf"), "--theta"),
    ("reweight-output-exists", lambda i: _rew(i, i.exp, i.sim, out="existing.csv"),
     "existing.csv"),
    ("reweight-output-is-input", lambda i: _rew(i, i.exp, i.sim, "--overwrite", out="sim.dat"),
     "sim.dat"),
    ("reweight-output-is-dir", lambda i: _rew(i, i.exp, i.sim, "--overwrite",
                                              out="a_folder.csv"), "a_folder.csv"),
    # typer's own parse errors
    ("parse-missing-argument", lambda i: ["fold"], "shifts"),
    ("parse-unknown-option", lambda i: ["annotate", str(i.good), "--nope"], "--nope"),
    ("parse-bad-int", lambda i: _fold(i, i.good, "--maxit", "many"), "--maxit"),
    ("parse-unknown-command", lambda i: ["unfold"], "unfold"),
]


no_hang = no_hang_fixture(60)


@pytest.mark.parametrize("case,build,expect", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_in_one_line(inp, case, build, expect):
    files = sorted(p for p in inp.root.iterdir() if p.is_file())
    before = {p: p.read_bytes() for p in files}
    entries = set(inp.root.iterdir())
    try:
        result = runner.invoke(app, build(inp))
        check_one_line_error(result, expect)
        for p in files:
            assert p.read_bytes() == before[p], f"{p.name} was overwritten"
        left = sorted(p.name for p in set(inp.root.iterdir()) - entries)
        assert not left, f"a failed command left files behind: {left}"
    finally:  # keep the cases independent
        for p in set(inp.root.iterdir()) - entries:
            shutil.rmtree(p) if p.is_dir() else p.unlink()


# --- kill -9 while writing (slow) ---------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.3, 0.6, 1.0, 1.5, 2.0, 3.0])
def test_kill_9_leaves_previous_or_complete_weights(tmp_path, delay):
    """``csrna reweight --overwrite`` killed at any moment: the weights file is either the
    previous one or a complete new one (temporary file, then rename)."""
    import subprocess
    import sys
    import time

    import numpy as np

    rng = np.random.default_rng(0)
    n_obs, n_conf = 200, 3000
    exp, sim = tmp_path / "exp.dat", tmp_path / "sim.dat"
    exp.write_text("# DATA=CS PRIOR=GAUSS\n" + "".join(
        f"{k} {v:.4f} 0.5\n" for k, v in enumerate(rng.normal(size=n_obs))))
    sim.write_text("".join(f"{c} " + " ".join(f"{v:.4f}" for v in rng.normal(size=n_obs))
                           + "\n" for c in range(n_conf)))
    out = tmp_path / "w.csv"
    out.write_text("previous\n")

    proc = subprocess.Popen(
        [sys.executable, "-c", "from csrna.cli import main; main()", "reweight", str(exp),
         str(sim), "--theta", "auto", "--output", str(out), "--overwrite"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    text = out.read_text()
    if text != "previous\n":
        lines = text.splitlines()
        assert lines[0] == "structure,weight" and len(lines) == n_conf + 1
