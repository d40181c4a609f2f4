"""Atomic file creation: write beside the target, then move into place.

A reader never sees a half-written file and an existing file is never clobbered unless the
caller asks for it: the payload is written to a temporary file in the destination folder and
then moved over the destination with :func:`os.replace` (overwrite) or hard-linked to it
(no overwrite; the link fails if the name already exists, so there is no check-then-write
race). File systems without hard links fall back to check-then-replace.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the folder of ``path``; move it onto ``path`` on success.

    The temporary file is removed if the body raises. Use as::

        with atomic_output("out.mrc") as tmp:
            write_something(tmp)

    Args:
        path: final file name.
        overwrite: replace an existing file if True, else raise :class:`FileExistsError`.

    Yields:
        The temporary file path (already created, empty) to write to.
    """
    path = check_writable(path, overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp
        if overwrite:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)
            except FileExistsError:
                raise FileExistsError(
                    f"{path}: file exists (use --overwrite / overwrite=True to replace it)"
                ) from None
            except OSError:  # no hard links on this file system
                if path.exists():
                    raise FileExistsError(
                        f"{path}: file exists (use --overwrite / overwrite=True to replace it)"
                    ) from None
                os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
