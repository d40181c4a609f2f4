"""kill -9 at chosen moments of a writing command, and the checks that follow (issue 15);
shared by the difftm and csrna test suites (their tests/conftest.py put this folder on the path).

A moment is a delay after the start, after the command's *writing phase* began (the
first time one of its output files, or a hidden temporary beside it, ``.<name>.*`` or
``.<stem>.*``, appears or changes; removals do not count) or after its *commit* began (an
output itself appears or changes: the moves into place). Killing there, and a few
milliseconds later, lands in the middle of the writes far more reliably than a fixed delay
from the start on a loaded machine.

After the kill, every output must be its previous bytes or a complete new file; complete
means byte-identical to the file of an uninterrupted rerun, or, for files that differ from
run to run (timings, paths), the same :func:`digest` (row counts, shapes, keys), so that a
table cut at a line boundary is caught as well.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _entries(folder: Path, names: Sequence[str],
             temporaries: bool = True) -> dict[str, tuple[int, int, int]]:
    """(inode, size, mtime) of the entries of ``folder`` that are ``names`` (or, with
    ``temporaries``, hidden temporaries beside them)."""
    prefixes = tuple(f".{n}." for n in names) + tuple(f".{Path(n).stem}." for n in names)
    if not temporaries:
        prefixes = ()
    found = {}
    try:
        with os.scandir(folder) as it:
            for e in it:
                if e.name in names or (prefixes and e.name.startswith(prefixes)):
                    try:
                        st = e.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    found[e.name] = (st.st_ino, st.st_size, st.st_mtime_ns)
    except FileNotFoundError:
        pass
    return found


def _appeared(before: dict, now: dict) -> bool:
    """An entry is new or changed (a removal alone, as ``search --overwrite`` removing
    another run's files first, does not start the writing phase)."""
    return any(before.get(name) != stat for name, stat in now.items())


def kill_during_writes(cmd: Sequence[str], outputs: Sequence[Path], moment: str,
                       timeout: float = 300.0) -> str:
    """Run ``cmd`` and ``kill -9`` it at ``moment``.

    Args:
        cmd: the command line.
        outputs: the files it writes (their folders are watched).
        moment: ``"start+T"``: ``T`` seconds after the start; ``"write+T"``: ``T`` seconds
            after the writing phase began (an output or a temporary beside it appeared or
            changed); ``"commit+T"``: ``T`` seconds after an output itself first appeared
            or changed (the moves into place began).
        timeout: give up (kill, and fail) after this long.

    Returns:
        ``"killed"`` or ``"finished"`` (the command ended before the moment came).
    """
    phase, _, seconds = moment.partition("+")
    delay = float(seconds)
    assert phase in ("start", "write", "commit"), moment
    temporaries = phase == "write"
    folders: dict[Path, list[str]] = {}
    for p in outputs:
        folders.setdefault(p.parent, []).append(p.name)
    before = {f: _entries(f, n, temporaries) for f, n in folders.items()}
    proc = subprocess.Popen(list(cmd), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=ENV)
    start = time.monotonic()
    try:
        if phase == "start":
            fire = start + delay
        else:
            fire = None
            while fire is None:
                if proc.poll() is not None:
                    return "finished"
                if time.monotonic() - start > timeout:
                    raise AssertionError(f"no write within {timeout} s: {' '.join(cmd)}")
                if any(_appeared(before[f], _entries(f, n, temporaries))
                       for f, n in folders.items()):
                    fire = time.monotonic() + delay
                else:
                    time.sleep(0.0005)
        while time.monotonic() < fire:
            if proc.poll() is not None:
                return "finished"
            time.sleep(min(0.001, max(0.0, fire - time.monotonic())))
        if proc.poll() is not None:
            return "finished"
        os.kill(proc.pid, signal.SIGKILL)
        return "killed"
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def run_to_end(cmd: Sequence[str], timeout: float = 300.0) -> None:
    """Run ``cmd`` to its end; fail with its output unless it succeeds."""
    done = subprocess.run(list(cmd), capture_output=True, text=True, env=ENV,
                          timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout}\n{done.stderr}"


def digest(path: Path, readers: dict[str, Callable[[Path], object]] | None = None) -> object:
    """What a complete file of this kind must share with another complete one written by
    the same command: row counts and columns of tables, shapes of arrays, keys of JSON and
    YAML, the closing tag of HTML, the trailer of PNG. Raises on a damaged file."""
    readers = readers or {}
    suffix = path.suffix.lower()
    if suffix in readers:
        return readers[suffix](path)
    data = path.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG\r\n\x1a\n") and data.endswith(b"IEND\xaeB`\x82"), \
            f"{path.name}: not a complete PNG"
        return "png"
    if suffix == ".html":
        assert data.rstrip().endswith(b"</html>"), f"{path.name}: HTML cut short"
        return "html"
    if suffix == ".json":
        value = json.loads(data)
        return sorted(value) if isinstance(value, dict) else type(value).__name__
    if suffix in (".yaml", ".yml"):
        import yaml

        return sorted(yaml.safe_load(data))
    if suffix in (".csv", ".tsv"):
        import pandas as pd

        table = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",")
        return list(table.columns), len(table)
    if suffix == ".npz":
        with np.load(path) as z:
            return {k: z[k].shape for k in z.files}
    if suffix in (".mrc", ".mrcs", ".map"):
        import mrcfile

        with mrcfile.open(path, permissive=False) as m:
            return m.data.shape, str(m.data.dtype)
    if suffix == ".txt":
        lines = data.decode().splitlines()
        assert data.endswith(b"\n"), f"{path.name}: last line cut"
        return len(lines), [len(ln.split()) for ln in lines[-1:]]
    raise AssertionError(f"{path.name}: no digest for {suffix}")


def check_previous_or_complete(killed: dict[Path, bytes | None], previous: dict[Path, bytes],
                               readers: dict[str, Callable[[Path], object]] | None = None,
                               may_vanish: bool = False) -> dict[str, str]:
    """Every output after the kill (``killed``: bytes, None if absent) is its previous
    bytes or matches the complete file now in place (written by an uninterrupted rerun).

    No hidden temporary of an output may remain beside it (the rerun removes a killed
    writer's leftovers).

    Returns:
        What each file was after the kill: absent, previous, new (identical to the
        rerun's) or complete (same digest as the rerun's).
    """
    import tempfile

    # the rerun removed what the killed writer left beside the outputs (temporaries, backups)
    left = sorted({str(p) for path in killed for pattern in (f".{path.name}.*", f".{path.stem}.*")
                   for p in path.parent.glob(pattern)})
    assert not left, f"temporaries of a killed writer left after the rerun: {left}"
    states = {}
    for path, data in killed.items():
        if data is None:
            assert may_vanish or path not in previous, f"{path.name}: removed by the kill"
            states[path.name] = "absent"
            continue
        if data == previous.get(path):
            states[path.name] = "previous"
            continue
        final = path.read_bytes()
        if data == final:
            states[path.name] = "new"
            continue
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / path.name
            copy.write_bytes(data)
            try:
                got = digest(copy, readers)
            except Exception as err:  # noqa: BLE001 - any parse error means a damaged file
                raise AssertionError(f"{path.name}: neither previous nor complete after "
                                     f"kill -9 ({len(data)} bytes): {err}") from err
        assert got == digest(path, readers), (
            f"{path.name}: neither previous nor complete after kill -9: {got!r} vs "
            f"{digest(path, readers)!r}")
        states[path.name] = "complete"
    return states


def snapshot(paths: Sequence[Path]) -> dict[Path, bytes | None]:
    return {p: (p.read_bytes() if p.is_file() else None) for p in paths}


def write_previous(paths: Sequence[Path]) -> dict[Path, bytes]:
    """Put a recognisable previous file at every output path."""
    for p in paths:
        p.write_bytes(b"previous " + p.name.encode())
    return {p: p.read_bytes() for p in paths}
