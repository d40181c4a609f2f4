"""Chemical-shift files: whitespace tables and BMRB NMR-STAR 3.x entries.

Conventions: residue numbers 1-based as in the file, residue names A/C/G/U, canonical
nucleus names (:func:`csrna.io.nuclei.normalise_nucleus_name`), shifts in ppm, a missing
error is NaN.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from csrna.io.files import _check_file
from csrna.io.nmrstar import MAX_RESIDUE_NUMBER, ShiftEntry, printable
from csrna.io.nuclei import normalise_nucleus_name, normalise_residue_name

SHIFT_COLUMNS = ["resname", "resid", "nucleus", "shift", "error"]


def _float_or_nan(token: str, path: Path, lineno: int, what: str) -> float:
    if token in {".", "?", "NA", "nan", "NaN", "None", ""}:
        return float("nan")
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: {what} {token!r} is not a number") from None


def finish_shift_table(rows: list[tuple[str, int, str, float, float]]) -> pd.DataFrame:
    """Long shift table (:data:`SHIFT_COLUMNS`) from ``(resname, resid, nucleus, shift, error)``
    tuples, with integer residue numbers and float shifts/errors."""
    df = pd.DataFrame(rows, columns=SHIFT_COLUMNS)
    df["resid"] = df["resid"].astype(int)
    df["shift"] = df["shift"].astype(float)
    df["error"] = df["error"].astype(float)
    return df


def read_shifts(path: str | Path, entity: str | None = None,
                shift_list: str | None = None) -> pd.DataFrame:
    """Read a chemical-shift table (the shifts of :func:`read_shift_entry`).

    Args:
        path: shift file.
        entity, shift_list: NMR-STAR selection, see :func:`read_shift_entry`.

    Returns:
        DataFrame with columns ``resname`` (A/C/G/U), ``resid`` (int, 1-based as in the file),
        ``nucleus`` (canonical name), ``shift`` (ppm), ``error`` (ppm, NaN if absent), in file
        order. Duplicate (resid, nucleus) entries are kept as read.
    """
    return read_shift_entry(path, entity, shift_list).shifts




def read_shift_entry(path: str | Path, entity: str | None = None,
                     shift_list: str | None = None) -> ShiftEntry:
    """Read a chemical-shift file with what it says about the RNA.

    Two formats are recognised from the content:

    * whitespace table, one shift per line: ``resname resid nucleus shift [error]``
      (error may be ``.``); lines starting with ``#`` are comments;
    * BMRB NMR-STAR 3.x (``_Atom_chem_shift`` loop, read with pynmrstar): one shift list and
      one entity are read, chosen with ``shift_list`` / ``entity`` when the entry has several
      (see :mod:`csrna.io.nmrstar`); the sequence comes from the entry. NMR-STAR 2.1 is refused
      with a clear message.

    Args:
        path: shift file.
        entity: NMR-STAR ``Entity_ID`` (ignored for tables).
        shift_list: NMR-STAR assigned chemical-shift list ID (ignored for tables).

    Returns:
        :class:`csrna.io.nmrstar.ShiftEntry` (shifts, sequence or None, notes, modified residues).

    Raises:
        FileNotFoundError: missing file.
        ValueError: empty file, malformed line or ambiguous entry (one line naming the file).
    """
    from csrna.io.nmrstar import read_nmrstar

    path = Path(path)
    text = _check_file(path, "chemical-shift")
    if "_Atom_chem_shift" in text or "_Chem_shift_value" in text or text.lstrip().startswith(
        "data_"
    ):
        return read_nmrstar(path, text, entity, shift_list)
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) not in (4, 5):
            raise ValueError(
                f"{path}:{lineno}: expected 'resname resid nucleus shift [error]', got "
                f"'{printable(line, 80)}'"
            )
        try:
            resname = normalise_residue_name(tokens[0])
        except ValueError as err:
            raise ValueError(f"{path}:{lineno}: {err}") from None
        try:
            resid = int(tokens[1])
        except ValueError:
            raise ValueError(
                f"{path}:{lineno}: residue number {tokens[1]!r} is not an integer"
            ) from None
        if abs(resid) > MAX_RESIDUE_NUMBER:
            raise ValueError(f"{path}:{lineno}: residue number {tokens[1]} is beyond "
                             f"+-{MAX_RESIDUE_NUMBER:,}")
        nucleus = normalise_nucleus_name(tokens[2])
        shift = _float_or_nan(tokens[3], path, lineno, "shift")
        if not np.isfinite(shift):
            raise ValueError(f"{path}:{lineno}: missing shift value")
        error = _float_or_nan(tokens[4], path, lineno, "error") if len(tokens) == 5 else np.nan
        rows.append((resname, resid, nucleus, shift, error))
    if not rows:
        raise ValueError(f"{path}: no chemical shifts found")
    table = finish_shift_table(rows)
    notes = []
    dup = int(table.duplicated(["resid", "nucleus"]).sum())
    if dup:
        notes.append(f"{dup} repeated (residue, nucleus) entries; their shifts are averaged")
    return ShiftEntry(table, None, notes)


def shifts_to_wide(shifts: pd.DataFrame, nuclei: Iterable[str]) -> pd.DataFrame:
    """Pivot a long shift table to one row per residue and one column per nucleus.

    Args:
        shifts: table from :func:`read_shifts`.
        nuclei: the nucleus columns wanted (others are dropped).

    Returns:
        DataFrame indexed by ``resid`` with a ``resname`` column and one float column per
        nucleus (NaN where unmeasured); duplicates are averaged.
    """
    nuclei = list(nuclei)
    sub = shifts[shifts["nucleus"].isin(nuclei)]
    wide = sub.pivot_table(index="resid", columns="nucleus", values="shift", aggfunc="mean")
    wide = wide.reindex(columns=nuclei)
    names = shifts.groupby("resid")["resname"].first()
    wide.insert(0, "resname", names.reindex(wide.index))
    return wide
