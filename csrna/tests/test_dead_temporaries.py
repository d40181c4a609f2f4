"""Temporaries left by a killed writer are removed by the next write of the same file."""

from __future__ import annotations

import os
import subprocess
import sys

from csrna.io.files import atomic_write, remove_dead_temporaries


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_the_next_write_removes_a_dead_writers_temporaries(tmp_path):
    dead = tmp_path / f".out.{_dead_pid()}-abcd.csv"
    dead_backup = tmp_path / f".out.{_dead_pid()}-abcd.bak"
    live = tmp_path / f".out.{os.getppid()}-abcd.csv"
    other = tmp_path / f".other.{_dead_pid()}-abcd.csv"
    for p in (dead, dead_backup, live, other):
        p.write_text("partial")
    atomic_write(tmp_path / "out.csv", lambda tmp: open(tmp, "w").write("complete"))
    assert (tmp_path / "out.csv").read_text() == "complete"
    assert not dead.exists() and not dead_backup.exists()
    assert live.exists() and other.exists()
    assert remove_dead_temporaries(tmp_path / "other.csv") == [other]


def test_a_killed_writer_leaves_nothing_after_the_rerun(tmp_path):
    target = tmp_path / "table.csv"
    code = ("import os, signal\n"
            "from csrna.io.files import atomic_write\n"
            "def w(tmp):\n"
            "    open(tmp, 'w').write('half')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            f"atomic_write({str(target)!r}, w)\n")
    subprocess.run([sys.executable, "-c", code])
    assert len(list(tmp_path.iterdir())) == 1
    atomic_write(target, lambda tmp: open(tmp, "w").write("whole"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["table.csv"]
