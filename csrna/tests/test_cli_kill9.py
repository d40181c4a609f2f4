"""kill -9 during every writing ``csrna`` command (issue 15: "kill -9 during every writing
command leaves either the previous file or a complete new one").

Each command runs in a subprocess over previous outputs (``--overwrite``) and is killed at
seven moments: 1 s after its start, 0, 10, 100 and 400 ms after its writing phase began and
0 and 1 ms after its first output was moved into place (see :mod:`kill_helpers`). Every
output is then its previous bytes or a complete new file (identical to an uninterrupted
rerun's, or with the same rows, sequence and pairs); the rerun must succeed and leave
exactly the expected visible files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from kill_helpers import (
    check_previous_or_complete,
    kill_during_writes,
    run_to_end,
    snapshot,
    write_previous,
)
from test_cli_output_safety import WRITERS, inputs

__all__ = ["inputs"]  # the module's fixture, shared

CSRNA = [sys.executable, "-c", "from csrna.cli import main; main()"]
#: when to kill (see kill_helpers.kill_during_writes)
MOMENTS = ["start+1", "write+0", "write+0.01", "write+0.1", "write+0.4", "commit+0",
           "commit+0.001"]



def _readers() -> dict[str, Callable[[Path], object]]:
    from csrna.io import read_ct
    from csrna.io.structures import read_bpseq, read_dot_bracket

    return {".ct": read_ct, ".bpseq": read_bpseq, ".dbn": read_dot_bracket}


def _visible(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


@pytest.mark.slow
@pytest.mark.parametrize("moment", MOMENTS)
@pytest.mark.parametrize("case,build,names", WRITERS, ids=[w[0] for w in WRITERS])
def test_kill_9_leaves_previous_or_complete_files(inputs, tmp_path, case, build, names,
                                                  moment):
    """Killed at ``moment``: each output is the previous file or a complete new one; a rerun
    then writes them all and nothing else visible."""
    out = tmp_path / "out"
    out.mkdir()
    files = [out / n for n in names]
    previous = write_previous(files)
    cmd = [*CSRNA, *build(inputs, out)]
    outcome = kill_during_writes(cmd, files, moment)
    killed = snapshot(files)
    assert _visible(out) == set(names), _visible(out)
    run_to_end(cmd)
    assert all(p.read_bytes() != previous[p] for p in files)
    states = check_previous_or_complete(killed, previous, _readers())
    print(case, moment, outcome, states)  # shown with -s: where the kills landed
    assert _visible(out) == set(names)
