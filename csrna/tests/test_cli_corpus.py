"""A corpus of malformed inputs and hostile options run through every ``csrna`` command.

Each case must end with a non-zero exit, no traceback, one ``error:`` line naming the file
or option at fault, no existing file overwritten and no file left behind (issue 15). Inputs
are tiny; every case fails before any folding or sampling.
"""

from __future__ import annotations

import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
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
    return Inputs(root, good, empty, latin1, garbage, negative_error, conflict, outside,
                  huge_resid, no_nucleus, nan_shift, exp, sim, sim_short, existing, folder,
                  probs_input)


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

CASES: list[tuple[str, object, str]] = []
for _name, _get, _expect in BAD_SHIFTS:
    CASES += [
        (f"fold-{_name}", lambda i, g=_get: _fold(i, g(i)), _expect),
        (f"bme-{_name}", lambda i, g=_get: _bme(i, g(i)), _expect),
        (f"annotate-{_name}", lambda i, g=_get: _ann(i, g(i)), _expect),
    ]
CASES += [
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


class Hang(BaseException):
    """Raised by the alarm when a case runs too long."""


@pytest.fixture(autouse=True)
def no_hang():
    """Fail a case that runs longer than 60 s (every case should fail at once)."""
    def _alarm(signum, frame):
        raise Hang("case ran longer than 60 s")

    old = signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(60)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check_one_line_error(result, expect: str) -> None:
    """Assert a clean, one-line failure naming ``expect``."""
    text = result.output
    assert result.exit_code != 0, f"succeeded on bad input:\n{text}"
    assert isinstance(result.exception, SystemExit), (
        f"escaped exception {type(result.exception).__name__}: {result.exception}\n{text}")
    assert "Traceback" not in text, text
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one 'error:' line:\n{text}"
    assert expect.lower() in errors[0].lower(), f"{expect!r} not named in: {errors[0]}"


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
