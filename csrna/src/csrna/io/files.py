"""File helpers shared by the readers and writers: checked reading, atomic writing."""

from __future__ import annotations

from pathlib import Path


def _check_file(path: Path, what: str) -> str:
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a directory, expected a {what} file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    text = read_utf8(path)
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


def atomic_write(path: str | Path, writer) -> None:
    """Write ``path`` atomically: ``writer(tmp_path)`` writes a temporary file in the same
    folder, which then replaces ``path`` (no partial file is left on failure).

    Args:
        path: final file.
        writer: callable taking the temporary path (keeps ``path``'s suffix so that writers
            choosing a format by suffix, such as matplotlib, behave the same).
    """
    import os
    import tempfile

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        writer(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
