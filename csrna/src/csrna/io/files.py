"""File helpers shared by the readers and writers: checked reading, atomic writing, and
writing several files as one unit (:func:`output_unit`)."""

from __future__ import annotations

import contextlib
import contextvars
import os
import secrets
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn


def _check_file(path: Path, what: str) -> str:
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a {what} file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    text = read_utf8(path)
    if "\x00" in text:
        raise ValueError(f"{path}: binary data (NUL bytes), not a {what} file")
    if not text.strip():
        raise ValueError(f"{path}: empty {what} file")
    return text


def read_utf8(path: Path) -> str:
    """The text of ``path``; a file that is not UTF-8 is refused in one line naming it."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at "
                         f"offset {err.start}); save it as UTF-8") from None


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file atomically (temporary file in the same folder, then rename)."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


_UNIT: contextvars.ContextVar[list[tuple[Path, Path]] | None] = contextvars.ContextVar(
    "csrna_output_unit", default=None)


def _named(err: OSError, path: Path, tmp: str | None) -> OSError:
    """``err`` naming ``path`` when it names the temporary ``tmp`` or no file at all (a full
    disk while flushing); an error naming another file is returned unchanged."""
    name = None if err.filename is None else str(err.filename)
    if err.errno is None or (name is not None and name != tmp
                             and not Path(name).name.startswith(f".{path.stem}.")):
        return err
    return OSError(err.errno, err.strerror or os.strerror(err.errno), str(path))


def _reraise_named(err: OSError, path: Path, tmp: str | None) -> NoReturn:
    named = _named(err, path, tmp)
    if named is err:
        raise err
    raise named from err


def _temporary_prefix(path: Path) -> str:
    """Temporaries of ``path`` are ``.<stem>.<pid>-<random><suffix>`` (backups ``.bak``):
    the writer's process id lets a later writer remove a killed writer's leftovers."""
    return f".{path.stem}.{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_dead_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries and backups of ``path`` whose writer process no longer exists
    (a writer killed with ``kill -9`` cannot clean up); those of live processes stay."""
    import glob

    path = Path(path)
    removed = []
    for pattern in (f".{glob.escape(path.stem)}.*-*{glob.escape(path.suffix)}",
                    f".{glob.escape(path.stem)}.*-*.bak"):
        for tmp in path.parent.glob(pattern):
            pid = tmp.name[len(path.stem) + 2:].split("-", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def atomic_write(path: str | Path, writer) -> None:
    """Write ``path`` atomically: ``writer(tmp_path)`` writes a temporary file in the same
    folder, which then replaces ``path`` (no partial file is left on failure).

    Inside :func:`output_unit` the replacement waits until every file of the unit is
    written. An ``OSError`` while writing (disk full, read-only folder) names ``path``.

    Args:
        path: final file.
        writer: callable taking the temporary path (keeps ``path``'s suffix so that writers
            choosing a format by suffix, such as matplotlib, behave the same).
    """
    path = Path(path)
    remove_dead_temporaries(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=path.suffix,
                                   dir=path.parent)
    except OSError as err:
        _reraise_named(err, path, None)
    os.close(fd)
    unit = _UNIT.get()
    try:
        mask = os.umask(0)
        os.umask(mask)
        if stat.S_ISREG(os.lstat(tmp).st_mode):  # never through a link (tests: /dev/full)
            os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the usual permissions
        try:
            writer(tmp)
        except OSError as err:
            _reraise_named(err, path, tmp)
        if unit is not None:
            if any(p.resolve() == path.resolve() for _, p in unit):
                raise ValueError(f"{path}: written twice in one output unit")
            unit.append((Path(tmp), path))
            return
        try:
            os.replace(tmp, path)
        except OSError as err:
            _reraise_named(err, path, tmp)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def output_unit() -> Iterator[None]:
    """Write every :func:`atomic_write` of the body as one unit: all files or none.

    Each file is written to its temporary first; when the body ends without an error, each
    existing destination is kept under a temporary name (a hard link), the temporaries
    replace the destinations, and the kept previous files are removed. If a replacement
    fails, the files already replaced are taken back (previous versions restored, new ones
    removed) and the error is raised. A ``kill -9`` during the replacements can leave some
    files new and some previous, never a half-written one. Units do not nest.
    """
    if _UNIT.get() is not None:
        raise RuntimeError("output_unit() does not nest")
    pending: list[tuple[Path, Path]] = []
    token = _UNIT.set(pending)
    try:
        yield
    except BaseException:
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        raise
    finally:
        _UNIT.reset(token)
    commit_unit(pending)


def _backup(path: Path) -> Path | None:
    """Keep the current ``path`` under a temporary name (hard link, else a copy)."""
    if not path.exists():
        return None
    while True:
        backup = path.parent / f"{_temporary_prefix(path)}{secrets.token_hex(4)}.bak"
        try:
            os.link(path, backup)
            return backup
        except FileExistsError:
            continue
        except OSError:  # no hard links on this file system
            shutil.copy2(path, backup)
            return backup


def commit_unit(pending: list[tuple[Path, Path]]) -> None:
    """Move finished temporaries ``(tmp, path)`` into place, all or none."""
    backups: dict[Path, Path | None] = {}
    placed: list[Path] = []
    try:
        for _, path in pending:
            backups[path] = _backup(path)
        for tmp, path in pending:
            try:
                os.replace(tmp, path)
            except OSError as err:
                _reraise_named(err, path, str(tmp))
            placed.append(path)
    except BaseException:
        for path in reversed(placed):  # take the unit back
            backup = backups.get(path)
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, path)
                    backups[path] = None
                else:
                    path.unlink(missing_ok=True)
        for tmp, _ in pending:
            tmp.unlink(missing_ok=True)
        for backup in backups.values():
            if backup is not None:
                backup.unlink(missing_ok=True)
        raise
    for backup in backups.values():
        if backup is not None:
            backup.unlink(missing_ok=True)
