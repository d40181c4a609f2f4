"""kill -9 during every writing ``difftm`` command (issue 15: "kill -9 during every writing
command leaves either the previous file or a complete new one").

Each command runs in a subprocess over previous outputs (``--overwrite``) and is killed at
seven moments: 2.5 s after its start (computing, or just starting to write), 0, 10, 100
and 400 ms after its writing phase began and 0 and 1 ms after its first output was moved
into place (see :mod:`kill_helpers`). Every output is then
its previous bytes or a complete new file; an uninterrupted rerun must succeed and leave
exactly the expected visible files. ``search``, ``peaks`` and ``reconstruct`` have their
own such tests in test_cli_output_safety.py (``search --micrographs`` in test_dataset.py);
``simulate micrograph`` also in test_cli_corpus.py with fixed delays.

``test_the_check_catches_a_writer_in_place`` shows that the check fails on a writer that
overwrites its file in place, the failure these tests exist to catch.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from kill_helpers import (
    check_previous_or_complete,
    kill_during_writes,
    run_to_end,
    snapshot,
    write_previous,
)
from test_cli_output_safety import (
    Inputs,
    _classify_args,
    _constrained_args,
    _mwlimit_args,
    _search_args,
    inp,
)

__all__ = ["inp"]  # the module's fixture, shared

DIFFTM = [sys.executable, "-m", "difftm.cli.main"]
#: when to kill (see kill_helpers.kill_during_writes)
MOMENTS = ["start+2.5", "write+0", "write+0.01", "write+0.1", "write+0.4", "commit+0",
           "commit+0.001"]


def _star_digest(path: Path) -> object:
    from difftm.io.star import read_star_blocks

    return {name: (len(block) if hasattr(block, "columns") else sorted(block))
            for name, block in read_star_blocks(path).items()}


READERS: dict[str, Callable[[Path], object]] = {".star": _star_digest}


@dataclass(frozen=True)
class Writer:
    """A writing command: its arguments (inputs, output folder), the files it writes into
    that folder, other visible names it may leave there (figure folders)."""

    name: str
    args: Callable[[Inputs, Path], list[str]]
    files: tuple[str, ...]
    extra: tuple[str, ...] = ()


WRITERS = [
    Writer("orientations", lambda i, d: ["orientations", "-o", str(d / "o.txt"), "--overwrite",
                                         "--out-of-plane-step", "5", "--in-plane-step", "5"],
           ("o.txt",)),
    Writer("simulate-template", lambda i, d: [
        "simulate", "template", str(i.model), "--pixel-size", "2", "-o", str(d / "t.mrc"),
        "--box", "64", "--device", "cpu", "--threads", "1", "--overwrite"], ("t.mrc",)),
    Writer("simulate-micrograph", lambda i, d: [
        "simulate", "micrograph", str(i.tpl), "-o", str(d / "k.mrc"), "--truth",
        str(d / "k.star"), "--shape", "256", "256", "--n-particles", "20", "--defocus", "9000",
        "--fluence", "40", "--seed", "2", "--threads", "1", "--overwrite"],
        ("k.mrc", "k.star", "k.json")),
    Writer("refine", lambda i, d: [
        "refine", str(i.run), "--particles", str(i.particles), "-o", str(d / "r.star"),
        "--method", "grid", "--angle-step", "10", "--angle-range", "10",
        "--no-refine-defocus", "--threads", "1", "--overwrite"],
        ("r.star", "r.csv", "r.html"), ("r_figures",)),
    Writer("classify", lambda i, d: _classify_args(i, d / "c.star"),
           ("c.star", "c.csv", "c.html"), ("c_figures",)),
    Writer("constrained-search", lambda i, d: _constrained_args(i, d / "s.star"),
           ("s.star", "s.csv")),
    Writer("mwlimit", lambda i, d: _mwlimit_args(d / "m.json", d / "m.png"),
           ("m.json", "m.png")),
]


def _visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("writer", WRITERS, ids=[w.name for w in WRITERS])
def test_kill_9_leaves_previous_or_complete_files(inp, tmp_path, writer, moment):
    """Killed at ``moment``: each output is the previous file or a complete new one; a rerun
    then writes them all and nothing else visible."""
    out = tmp_path / "out"
    out.mkdir()
    files = [out / n for n in writer.files]
    previous = write_previous(files)
    cmd = [*DIFFTM, *writer.args(inp, out)]
    outcome = kill_during_writes(cmd, files, moment)
    killed = snapshot(files)
    assert _visible(out) <= set(writer.files) | set(writer.extra), _visible(out)
    run_to_end(cmd)
    assert all(p.read_bytes() != previous[p] for p in files)
    states = check_previous_or_complete(killed, previous, READERS)
    print(writer.name, moment, outcome, states)  # shown with -s: where the kills landed
    assert _visible(out) == set(writer.files) | set(writer.extra)


SEARCH_FILES = ("results.npz", "config.yaml", "search_summary.json", "snr.mrc",
                "snr_flatfield.mrc", "zscore.mrc", "mean.mrc", "sigma.mrc", "rot.mrc",
                "tilt.mrc", "psi.mrc", "defocus_offset.mrc")


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
def test_kill_9_during_accelerated_search(inp, tmp_path, moment):
    """``search --strategy accelerated --overwrite`` over another run's folder, killed at
    ``moment``: every file present is the previous run's or a complete new one (the other
    run's files may be gone: --overwrite removes them before searching); the rerun
    completes the folder and removes the temporaries of the killed run."""
    out = tmp_path / "acc"
    files = [out / n for n in SEARCH_FILES]
    run_to_end([*DIFFTM, *_search_args(inp.mic, inp.tpl, out)])  # the exhaustive search
    previous = {p: p.read_bytes() for p in files}
    cmd = [*DIFFTM, *_search_args(inp.mic, inp.tpl, out, "--strategy", "accelerated",
                                  "--coarse-step", "60", "--overwrite")]
    watched = [out / n for n in ("results.npz", *SEARCH_FILES[3:])]
    outcome = kill_during_writes(cmd, watched, moment)
    killed = snapshot(files)
    run_to_end(cmd)
    states = check_previous_or_complete(killed, previous, READERS, may_vanish=True)
    print("search-accelerated", moment, outcome, states)
    assert _visible(out) == set(SEARCH_FILES), _visible(out)
    assert not list(out.rglob("*.tmp"))


def test_the_check_catches_a_writer_in_place(tmp_path):
    """A writer that rewrites its output in place (open, truncate, write in pieces), killed
    during the write, is caught; the same writer through a temporary and a rename is not.
    Fast: a few short Python subprocesses."""
    script = ("import os, sys, time\n"
              "from pathlib import Path\n"
              "path, atomic = Path(sys.argv[1]), sys.argv[2] == '1'\n"
              "dest = path.with_name('.' + path.name + '.x.tmp') if atomic else path\n"
              "text = 'a,b\\n' + ''.join(f'{k},{k * k}\\n' for k in range(20000))\n"
              "time.sleep(0.3)\n"
              "with open(dest, 'w') as f:\n"
              "    for k in range(0, len(text), 4096):\n"
              "        f.write(text[k:k + 4096]); f.flush(); time.sleep(0.002)\n"
              "if atomic:\n"
              "    os.replace(dest, path)\n")
    caught = {}
    for atomic in ("0", "1"):
        out = tmp_path / atomic
        out.mkdir()
        path = out / "t.csv"
        previous = write_previous([path])
        cmd = [sys.executable, "-c", script, str(path), atomic]
        assert kill_during_writes(cmd, [path], "write+0.05") == "killed"
        killed = snapshot([path])
        run_to_end(cmd)
        try:
            check_previous_or_complete(killed, previous)
            caught[atomic] = False
        except AssertionError:
            caught[atomic] = True
    assert caught == {"0": True, "1": False}
