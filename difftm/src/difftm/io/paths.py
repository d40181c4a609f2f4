"""File-name conventions shared by the readers."""

from __future__ import annotations

from pathlib import Path

COMPRESSION_SUFFIXES = (".gz", ".bz2")
PDB_SUFFIXES = frozenset({".pdb", ".ent", ".pdb1"})
CIF_SUFFIXES = frozenset({".cif", ".mmcif", ".bcif"})
MODEL_SUFFIXES = PDB_SUFFIXES | CIF_SUFFIXES


def content_suffix(path: Path, compressions: tuple[str, ...] = COMPRESSION_SUFFIXES) -> str:
    """The lower-case suffix naming a file's content, a compression suffix skipped.

    Args:
        path: file name (``model.cif.gz`` -> ``.cif``; ``image.mrc`` -> ``.mrc``).
        compressions: suffixes that name a compression rather than the content.

    Returns:
        The suffix, or ``""`` when there is none.
    """
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in compressions:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""
