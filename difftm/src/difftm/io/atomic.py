"""Atomic file creation: write beside the target, then move into place.

A reader never sees a half-written file and an existing file is never clobbered unless the
caller asks for it: the payload is written to a temporary file in the destination folder and
then moved over the destination with :func:`os.replace` (overwrite) or hard-linked to it
(no overwrite; the link fails if the name already exists, so there is no check-then-write
race). File systems without hard links fall back to check-then-replace.

Several files that belong together (a micrograph, its truth table and its parameters; a
particle table and its CSV) are written as one unit with :func:`output_unit`: every
``atomic_output`` inside it writes its temporary file as usual, and only when all of them
succeeded are they moved into place, each previous file kept under a temporary name until
the last move succeeded. A failure (disk full, a file that appeared meanwhile) puts every
previous file back and removes the new ones. A ``kill -9`` in the middle of the moves can
still leave some files new and some previous, but never a half-written file.

An ``OSError`` while writing (disk full, read-only folder, quota) names the final file, not
its temporary: ``out.mrc: No space left on device``.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import secrets
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn


def check_writable(path: str | os.PathLike, overwrite: bool) -> Path:
    """Validate an output path before doing expensive work.

    Args:
        path: the file to create.
        overwrite: allow replacing an existing file.

    Returns:
        The path as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: the file exists and ``overwrite`` is False.
        IsADirectoryError: the path is a directory.
        FileNotFoundError: the parent folder does not exist.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a file name")
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path}: file exists (use --overwrite / overwrite=True to replace it)"
        )
    if not path.parent.exists():
        raise FileNotFoundError(f"{path}: folder {path.parent} does not exist")
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _exists_error(path: Path) -> FileExistsError:
    return FileExistsError(
        f"{path}: file exists (use --overwrite / overwrite=True to replace it)")


def _named(err: OSError, path: Path) -> OSError:
    """``err`` naming ``path`` instead of its temporary file (or nothing).

    An error that names another file (an input read while writing) is returned unchanged.
    """
    name = None if err.filename is None else Path(str(err.filename))
    ours = name is None or (name.parent == path.parent
                            and name.name.startswith(f".{path.name}."))
    if not ours or err.errno is None:
        return err
    return OSError(err.errno, err.strerror or os.strerror(err.errno), str(path))


def _reraise_named(err: OSError, path: Path) -> NoReturn:
    """Raise ``err`` naming ``path`` (see :func:`_named`)."""
    named = _named(err, path)
    if named is err:
        raise err
    raise named from err


def _place(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished temporary ``tmp`` onto ``path`` (see the module docstring)."""
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise _exists_error(path) from None
    except OSError:  # no hard links on this file system
        if path.exists():
            raise _exists_error(path) from None
        os.replace(tmp, path)
    else:
        tmp.unlink()


@dataclass
class _Pending:
    """A finished temporary file of an :func:`output_unit`, waiting to be moved."""

    tmp: Path
    path: Path
    overwrite: bool


_UNIT: contextvars.ContextVar[list[_Pending] | None] = contextvars.ContextVar(
    "difftm_output_unit", default=None)


def _temporary_prefix(path: Path) -> str:
    """Temporaries of ``path`` are ``.<name>.<pid>-<random>.tmp``: the writer's process id
    lets a later writer tell a killed writer's leftovers from a live one's."""
    return f".{path.name}.{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def remove_dead_temporaries(path: Path) -> list[Path]:
    """Delete the temporaries of ``path`` whose writer process no longer exists (a writer
    killed with ``kill -9`` cannot clean up); those of live processes stay.

    Returns:
        The files removed.
    """
    import glob

    removed = []
    for tmp in Path(path).parent.glob(f".{glob.escape(Path(path).name)}.*-*.tmp"):
        tag = tmp.name[len(Path(path).name) + 2:-len(".tmp")]
        pid = tag.split("-", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False,
                  immediate: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the folder of ``path``; move it onto ``path`` on success.

    The temporary file is removed if the body raises. Use as::

        with atomic_output("out.mrc") as tmp:
            write_something(tmp)

    Inside :func:`output_unit` the move waits for the unit to end, unless ``immediate``.

    Args:
        path: final file name.
        overwrite: replace an existing file if True, else raise :class:`FileExistsError`.
        immediate: move into place at once even inside a unit (a file that the unit's
            other writers read, such as a report's figures).

    Yields:
        The temporary file path (already created, empty) to write to.

    Raises:
        OSError: writing failed (disk full, read-only folder...); the error names ``path``.
    """
    path = check_writable(path, overwrite)
    remove_dead_temporaries(path)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=_temporary_prefix(path), suffix=".tmp",
                                        dir=path.parent)
    except OSError as err:
        _reraise_named(err, path)
    os.close(fd)
    tmp = Path(tmp_name)
    unit = None if immediate else _UNIT.get()
    keep = False
    try:
        if stat.S_ISREG(os.lstat(tmp).st_mode):  # never through a link (tests: /dev/full)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the usual permissions
        try:
            yield tmp
        except OSError as err:
            _reraise_named(err, path)
        if unit is not None:
            if any(p.path.resolve() == path.resolve() for p in unit):
                raise ValueError(f"{path}: written twice in one output unit")
            unit.append(_Pending(tmp, path, overwrite))
            keep = True
        else:
            _place(tmp, path, overwrite)
    finally:
        if not keep:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def output_unit() -> Iterator[None]:
    """Write every :func:`atomic_output` of the body as one unit: all files or none.

    Every file is first written to its temporary; when the body ends without an error,
    each existing destination is kept under a temporary name (a hard link), the temporaries
    are moved into place, and the kept previous files are removed. If a move fails, the
    files already moved are taken back (previous versions restored, new ones removed) and
    the error is raised. Units do not nest.

    Raises:
        FileExistsError: a destination appeared meanwhile (without ``overwrite``).
        OSError: a move failed; the previous files are in place again.
    """
    if _UNIT.get() is not None:
        raise RuntimeError("output_unit() does not nest")
    pending: list[_Pending] = []
    token = _UNIT.set(pending)
    try:
        yield
    except BaseException:
        for item in pending:
            item.tmp.unlink(missing_ok=True)
        raise
    finally:
        _UNIT.reset(token)
    commit_unit(pending)


def _backup(path: Path) -> Path | None:
    """Keep the current ``path`` under a temporary name (hard link, else a copy)."""
    if not path.exists():
        return None
    while True:
        backup = path.parent / f"{_temporary_prefix(path)}{secrets.token_hex(4)}.tmp"
        try:
            os.link(path, backup)
            return backup
        except FileExistsError:
            continue
        except OSError:  # no hard links: copy (the original stays until replaced)
            import shutil

            shutil.copy2(path, backup)
            return backup


def commit_unit(pending: list[_Pending]) -> None:
    """Move the finished temporaries of a unit into place, all or none (see
    :func:`output_unit`)."""
    backups: dict[Path, Path | None] = {}
    placed: list[_Pending] = []
    try:
        for item in pending:
            if item.path.exists() and not item.overwrite:
                raise _exists_error(item.path)
        for item in pending:
            backups[item.path] = _backup(item.path)
        for item in pending:
            try:
                _place(item.tmp, item.path, item.overwrite)
            except OSError as err:
                _reraise_named(err, item.path)
            placed.append(item)
    except BaseException:
        for item in reversed(placed):  # take the unit back
            backup = backups.get(item.path)
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, item.path)
                    backups[item.path] = None
                else:
                    item.path.unlink(missing_ok=True)
        for item in pending:
            item.tmp.unlink(missing_ok=True)
        for backup in backups.values():
            if backup is not None:
                backup.unlink(missing_ok=True)
        raise
    for backup in backups.values():
        if backup is not None:
            backup.unlink(missing_ok=True)
