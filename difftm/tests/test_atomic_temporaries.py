"""Temporaries left by a killed writer are removed by the next write of the same file."""

from __future__ import annotations

import os
import subprocess
import sys

from difftm.io.atomic import atomic_output, remove_dead_temporaries


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_write_removes_a_dead_writers_temporaries(tmp_path):
    target = tmp_path / "out.star"
    dead = tmp_path / f".out.star.{_dead_pid()}-abcd1234.tmp"
    live = tmp_path / f".out.star.{os.getppid()}-abcd1234.tmp"  # a live process
    other = tmp_path / f".other.star.{_dead_pid()}-abcd1234.tmp"  # another file's
    old_style = tmp_path / ".out.star.abcd1234.tmp"  # no pid: cannot tell, kept
    for p in (dead, live, other, old_style):
        p.write_text("partial")
    with atomic_output(target) as tmp:
        assert tmp.name.startswith(f".out.star.{os.getpid()}-")
        tmp.write_text("complete")
    assert target.read_text() == "complete"
    assert not dead.exists()
    assert live.exists() and other.exists() and old_style.exists()
    assert remove_dead_temporaries(tmp_path / "other.star") == [other]


def test_a_killed_writer_leaves_nothing_after_the_rerun(tmp_path):
    """kill -9 inside the write, then the same write again: no hidden file remains."""
    target = tmp_path / "table.csv"
    code = ("import os, signal\n"
            "from difftm.io.atomic import atomic_output\n"
            f"with atomic_output({str(target)!r}) as tmp:\n"
            "    tmp.write_text('half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n")
    subprocess.run([sys.executable, "-c", code])
    assert [p.name for p in tmp_path.iterdir()][0].startswith(".table.csv.")
    with atomic_output(target) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
