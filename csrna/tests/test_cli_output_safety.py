"""Output safety of every writing ``csrna`` command (issue 15): a full disk, a read-only
file system, an output folder that is a file and a failure between the replacements of a
multi-file unit each end in one ``error:`` line naming the file, with the previous outputs
intact and no half-written or temporary file left; ``kill -9`` leaves previous or complete
files (slow).

A full disk is a real tmpfs filled to the brim (needs root and ``mount``; skipped
otherwise) or, anywhere on Linux, temporary files that are links to ``/dev/full``.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_checks import error_line
from disk_helpers import CAN_MOUNT, full_disk_fixture
from disk_helpers import run as _run
from disk_helpers import umount as _umount
from typer.testing import CliRunner

from csrna.cli import app

runner = CliRunner()
SEQ = "GGACUUCGGUCC"
GOOD = "\n".join(f"{b} {i} C1' {92.0 + 0.1 * i:.2f} 0.1" for i, b in enumerate(SEQ, 1)) + "\n"
FOLD_FILES = ["f.ct", "f.bpseq", "f.dbn", "f_probabilities.tsv", "f_candidates.tsv", "f.png"]
BME_FILES = ["predicted_shifts.csv", "weights.csv", "library.csv", "top_structure.ct",
             "top_structure.dbn", "top_structure.bpseq", "pair_probabilities.png"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("csrna_safety")
    (root / "good.txt").write_text(GOOD)
    (root / "exp.dat").write_text("# DATA=CS PRIOR=GAUSS\n0 1.0 0.1\n1 2.0 0.1\n")
    (root / "sim.dat").write_text("0 1.0 2.0\n1 1.1 2.1\n2 0.9 1.9\n")
    return root


def _fold(i: Path, out: Path) -> list[str]:
    return ["fold", str(i / "good.txt"), "--sequence", SEQ, "-o", str(out / "f.ct"),
            "--maxit", "2", "--overwrite"]


def _bme(i: Path, out: Path) -> list[str]:
    return ["bme", str(i / "good.txt"), "--sequence", SEQ, "-o", str(out), "--samples", "20",
            "--theta", "1", "--overwrite"]


def _annotate(i: Path, out: Path) -> list[str]:
    return ["annotate", str(i / "good.txt"), "-o", str(out / "a.csv"), "--overwrite"]


def _reweight(i: Path, out: Path) -> list[str]:
    return ["reweight", str(i / "exp.dat"), str(i / "sim.dat"), "-o", str(out / "w.csv"),
            "--theta", "1", "--overwrite"]


#: (command, argument builder, the files it writes into the output folder)
WRITERS: list[tuple[str, Callable[[Path, Path], list[str]], list[str]]] = [
    ("fold", _fold, FOLD_FILES),
    ("bme", _bme, BME_FILES),
    ("annotate", _annotate, ["a.csv"]),
    ("reweight", _reweight, ["w.csv"]),
]
IDS = [w[0] for w in WRITERS]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file (and link) under ``folder``: relative name -> bytes."""
    return {str(p.relative_to(folder)): (b"-> link" if p.is_symlink() else p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file() or p.is_symlink()}


def _previous(folder: Path, names: list[str]) -> dict[str, bytes]:
    for name in names:
        (folder / name).write_bytes(b"previous " + name.encode())
    return snapshot(folder)


full_disk = full_disk_fixture("2m")


@pytest.mark.parametrize("case,build,files", WRITERS, ids=IDS)
def test_full_disk_is_one_line_and_keeps_the_previous_files(inputs, full_disk, case, build,
                                                            files):
    before = _previous(full_disk.folder, files)
    full_disk.fill()
    result = runner.invoke(app, build(inputs, full_disk.folder))
    line = error_line(result)
    assert "no space left" in line.lower() and str(full_disk.folder) in line, line
    after = snapshot(full_disk.folder)
    after.pop("filler.bin", None)
    assert after == before, f"changed or left behind: {sorted(set(after) ^ set(before))}"


@pytest.mark.skipif(not CAN_MOUNT, reason="needs root and mount for a read-only tmpfs")
@pytest.mark.parametrize("case,build,files", WRITERS, ids=IDS)
def test_read_only_file_system_as_root(inputs, tmp_path, case, build, files):
    ro = tmp_path / "ro"
    ro.mkdir()
    assert _run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(ro)])
    try:
        before = _previous(ro, files)
        assert _run(["mount", "-o", "remount,ro", str(ro)])
        line = error_line(runner.invoke(app, build(inputs, ro)))
        assert "read-only file system" in line.lower() and str(ro) in line, line
        assert snapshot(ro) == before
    finally:
        _umount(ro)


@pytest.mark.parametrize("case,build,files", WRITERS, ids=IDS)
def test_output_folder_that_is_a_file(inputs, tmp_path, case, build, files):
    """Works for root too: one line naming the file in the way, nothing written."""
    blocker = tmp_path / "plain_file"
    blocker.write_bytes(b"precious")
    line = error_line(runner.invoke(app, build(inputs, blocker)))
    assert "plain_file" in line, line
    assert blocker.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain_file"]


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("case,build,files", WRITERS[:2], ids=IDS[:2])
def test_failed_replacement_rolls_the_unit_back(inputs, tmp_path, monkeypatch, case, build,
                                                files, k):
    """The files of fold (6) and bme (7) are one unit: when the k-th replacement fails, the
    ones already replaced get their previous content back."""
    out = tmp_path / "out"
    out.mkdir()
    before = _previous(out, files)
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst, *args, **kwargs):
        if Path(dst).parent == out and not Path(dst).name.startswith("."):
            calls["n"] += 1
            if calls["n"] == k:
                raise OSError(errno.EIO, "Input/output error", str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    line = error_line(runner.invoke(app, build(inputs, out)))
    assert "input/output error" in line.lower() and str(out) in line, line
    assert calls["n"] > k  # the failing replacement, then the restores
    assert snapshot(out) == before


@pytest.mark.parametrize("case,build,files", WRITERS[:2], ids=IDS[:2])
def test_unit_replaces_every_file_when_nothing_fails(inputs, tmp_path, case, build, files):
    out = tmp_path / "out"
    out.mkdir()
    _previous(out, files)
    result = runner.invoke(app, build(inputs, out))
    assert result.exit_code == 0, result.output
    assert sorted(snapshot(out)) == sorted(files)
    assert all(not (out / f).read_bytes().startswith(b"previous") for f in files)


# --- kill -9 (slow) -----------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.5])
def test_kill_9_during_fold_leaves_previous_or_complete_files(inputs, tmp_path, delay):
    """``csrna fold --overwrite`` killed at any moment: every one of its six files is the
    previous one or a complete new one that parses."""
    import sys
    import time

    from csrna.io import read_ct
    from csrna.io.structures import read_bpseq, read_dot_bracket

    out = tmp_path / "out"
    out.mkdir()
    previous = _previous(out, FOLD_FILES)
    cmd = [sys.executable, "-c", "from csrna.cli import main; main()",
           *_fold(inputs, out)[:-1], "--maxit", "20", "--overwrite"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    proc.kill()
    proc.wait()
    for name in FOLD_FILES:
        path = out / name
        data = path.read_bytes()
        if data == previous[name]:
            continue
        if name.endswith(".ct"):
            assert read_ct(path)[0] == SEQ
        elif name.endswith(".bpseq"):
            assert read_bpseq(path)[0] == SEQ
        elif name.endswith(".dbn"):
            assert read_dot_bracket(path)[0] == SEQ
        elif name.endswith(".tsv"):
            import pandas as pd

            assert len(pd.read_csv(path, sep="\t")) > 0
        else:
            assert data.startswith(b"\x89PNG") and data.rstrip().endswith(b"IEND\xaeB`\x82")
    stray = [p.name for p in out.iterdir() if p.name not in FOLD_FILES]
    assert all(n.startswith(".") for n in stray), stray  # temporaries only, hidden


@pytest.mark.parametrize("case,build,files", WRITERS, ids=IDS)
def test_outputs_get_the_usual_permissions(inputs, tmp_path, case, build, files):
    """Written through a temporary file, outputs still get 0666 less the umask (mkstemp's
    0600 made them unreadable to the group, unlike every other tool's outputs)."""
    out = tmp_path / "out"
    out.mkdir()
    mask = os.umask(0o022)
    try:
        result = runner.invoke(app, build(inputs, out))
    finally:
        os.umask(mask)
    assert result.exit_code == 0, result.output
    assert {n: oct((out / n).stat().st_mode & 0o777) for n in files} == {
        n: oct(0o644) for n in files}
