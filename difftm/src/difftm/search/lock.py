"""A lock file that keeps two searches (or two dataset runs) out of one output folder.

The lock is ``<folder>/.difftm.lock``, created with ``O_CREAT | O_EXCL`` (atomic on local
and NFSv3+ file systems) and holding the owner's host name, process id and process start
time as JSON. A second search into the same folder is refused in one line naming the owner.
A lock left behind by a process that no longer exists (``kill -9``, a cancelled SLURM job)
is taken over: on the same host when the process id is gone or now belongs to a process
started at another time; from another host (a cluster node) when its heartbeat stopped:
the owner touches the lock every :data:`HEARTBEAT_SECONDS`, and a lock untouched for
:data:`STALE_SECONDS` is stale.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

LOCK_NAME = ".difftm.lock"
#: The owner refreshes the lock's modification time this often.
HEARTBEAT_SECONDS = 30.0
#: A lock of another host whose modification time is older than this is stale.
STALE_SECONDS = 300.0


def _process_start(pid: int) -> str | None:
    """Start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may contain spaces; fields after ')' are fixed
    fields = stat.rsplit(")", 1)[-1].split()
    return fields[19] if len(fields) > 19 else None


def _alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if start is not None:
        now = _process_start(pid)
        if now is not None and now != start:
            return False  # the pid was reused by another process
    return True


class OutputLock:
    """Exclusive use of an output folder by one process (a context manager).

    Args:
        folder: the output folder (created if missing).
        what: what holds the lock, for messages (``search``, ``dataset``).

    Raises (on enter):
        FileExistsError: another live process holds the lock (one line), or ``folder`` is a
            file.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "search") -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.what = what
        self._token: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def _holder(self) -> dict | None:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return None

    def _age(self) -> float:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return float("inf")

    def _is_stale(self, holder: dict | None) -> bool:
        if holder is None:  # empty or garbled: killed between creating and writing it
            return self._age() > HEARTBEAT_SECONDS
        if holder.get("host") != socket.gethostname():
            return self._age() > STALE_SECONDS  # no heartbeat from that node
        return not _alive(int(holder.get("pid", -1)), holder.get("start"))

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                return

    def acquire(self) -> None:
        """Take the lock (see the class docstring)."""
        if self.folder.exists() and not self.folder.is_dir():
            raise FileExistsError(f"{self.folder}: exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        pid = os.getpid()
        info = {"pid": pid, "host": socket.gethostname(), "start": _process_start(pid),
                "what": self.what, "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "token": f"{pid}-{time.time_ns()}"}
        for _ in range(5):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if self._is_stale(holder):
                    self.path.unlink(missing_ok=True)
                    continue
                who = ("another process" if holder is None else
                       f"another difftm {holder.get('what', 'search')} (pid "
                       f"{holder.get('pid')} on {holder.get('host')}, since "
                       f"{holder.get('since')})")
                raise FileExistsError(
                    f"{self.folder}: {who} is writing into this folder; wait for it to "
                    f"finish or choose another --output (if that process is gone, remove "
                    f"{self.path}; a lock of another host expires {STALE_SECONDS:.0f} s "
                    "after its last heartbeat)") from None
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump(info, fh)
            except OSError as err:  # a full disk: no half-written lock, the file named
                self.path.unlink(missing_ok=True)
                raise OSError(err.errno, err.strerror, str(self.path)) from err
            self._token = info["token"]
            self._stop.clear()
            self._beat = threading.Thread(target=self._heartbeat, daemon=True,
                                          name="difftm-lock-heartbeat")
            self._beat.start()
            return
        raise FileExistsError(f"{self.folder}: could not take the lock {self.path}")

    def release(self) -> None:
        """Remove the lock if it is still ours."""
        if self._token is None:
            return
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
            self._beat = None
        holder = self._holder()
        if holder is not None and holder.get("token") == self._token:
            self.path.unlink(missing_ok=True)
        self._token = None

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def remove_stale_temporaries(folder: Path, owned: tuple[str, ...]) -> list[Path]:
    """Delete temporary files that a killed writer left in ``folder`` (call under the lock).

    :func:`difftm.io.atomic.atomic_output` writes ``.<name>.<random>.tmp`` beside ``<name>``;
    those of the names in ``owned`` (and of part files in ``folder/parts``) are removed.

    Returns:
        The files removed.
    """
    removed = []
    candidates = list(Path(folder).glob(".*.tmp")) + list((Path(folder) / "parts").glob(
        ".part_*.tmp"))
    for tmp in candidates:
        name = tmp.name[1:].rsplit(".", 2)[0]  # .<name>.<random>.tmp -> <name>
        if name in owned or name.startswith("part_"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed
