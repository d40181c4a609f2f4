"""Readers and writers for chemical shifts, sequences and secondary structures.

Conventions used throughout csrna:

* residue numbers (``resid``) and base-pair indices are 1-based, as in CT files;
* a base pair is a tuple ``(i, j)`` with ``i < j``; pair lists are sorted;
* residue names are one-letter codes A/C/G/U (T and CHARMM names ADE/CYT/GUA/URA are mapped);
* nucleus names are canonical (see :func:`csrna.nuclei.normalise_nucleus_name`);
* shifts are in ppm; a missing error is NaN.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from csrna.nuclei import normalise_nucleus_name, normalise_residue_name

SHIFT_COLUMNS = ["resname", "resid", "nucleus", "shift", "error"]

_OPEN = "([{<" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CLOSE = ")]}>" + "abcdefghijklmnopqrstuvwxyz"


def _check_file(path: Path, what: str) -> str:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} file not found")
    text = path.read_text()
    if not text.strip():
        raise ValueError(f"{path}: empty {what} file")
    return text


def _float_or_nan(token: str, path: Path, lineno: int, what: str) -> float:
    if token in {".", "?", "NA", "nan", "NaN", "None", ""}:
        return float("nan")
    try:
        return float(token)
    except ValueError:
        raise ValueError(f"{path}:{lineno}: {what} {token!r} is not a number") from None


def _finish_shift_table(rows: list[tuple[str, int, str, float, float]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=SHIFT_COLUMNS)
    df["resid"] = df["resid"].astype(int)
    df["shift"] = df["shift"].astype(float)
    df["error"] = df["error"].astype(float)
    return df


def read_shifts(path: str | Path) -> pd.DataFrame:
    """Read a chemical-shift table.

    Two formats are recognised from the content:

    * whitespace table, one shift per line: ``resname resid nucleus shift [error]``
      (error may be ``.``); lines starting with ``#`` are comments;
    * BMRB NMR-STAR (3.x ``_Atom_chem_shift`` loop, or 2.1 ``_Chem_shift_value`` loop), read
      with pynmrstar.

    Args:
        path: shift file.

    Returns:
        DataFrame with columns ``resname`` (A/C/G/U), ``resid`` (int, 1-based as in the file),
        ``nucleus`` (canonical name), ``shift`` (ppm), ``error`` (ppm, NaN if absent), in file
        order. Duplicate (resid, nucleus) entries are kept as read.

    Raises:
        FileNotFoundError: missing file.
        ValueError: empty file or malformed line (one line naming file and line).
    """
    path = Path(path)
    text = _check_file(path, "chemical-shift")
    if "_Atom_chem_shift" in text or "_Chem_shift_value" in text or text.lstrip().startswith(
        "data_"
    ):
        return _read_nmrstar(path, text)
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens or tokens[0].startswith("#"):
            continue
        if len(tokens) not in (4, 5):
            raise ValueError(
                f"{path}:{lineno}: expected 'resname resid nucleus shift [error]', got {line!r}"
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
        nucleus = normalise_nucleus_name(tokens[2])
        shift = _float_or_nan(tokens[3], path, lineno, "shift")
        if not np.isfinite(shift):
            raise ValueError(f"{path}:{lineno}: missing shift value")
        error = _float_or_nan(tokens[4], path, lineno, "error") if len(tokens) == 5 else np.nan
        rows.append((resname, resid, nucleus, shift, error))
    if not rows:
        raise ValueError(f"{path}: no chemical shifts found")
    return _finish_shift_table(rows)


def _read_nmrstar(path: Path, text: str) -> pd.DataFrame:
    import pynmrstar

    try:
        entry = pynmrstar.Entry.from_string(text)
        loops = entry.get_loops_by_category("_Atom_chem_shift")
    except Exception as err:  # pynmrstar raises several parse error types
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: cannot parse NMR-STAR file ({first})") from None
    rows: list[tuple[str, int, str, float, float]] = []
    if loops:
        for loop in loops:
            tags = [t.lower() for t in loop.tags]
            seq_tag = "seq_id" if "seq_id" in tags else "comp_index_id"
            need = [seq_tag, "comp_id", "atom_id", "val"]
            if any(t not in tags for t in need):
                raise ValueError(f"{path}: _Atom_chem_shift loop lacks one of {need}")
            idx = {t: tags.index(t) for t in need}
            err_i = tags.index("val_err") if "val_err" in tags else None
            for row in loop.data:
                rows.append(_star_row(path, row, idx[seq_tag], idx["comp_id"], idx["atom_id"],
                                      idx["val"], err_i))
    else:
        # NMR-STAR 2.1: loop with _Residue_seq_code _Residue_label _Atom_name _Chem_shift_value
        for saveframe in entry.frame_list:
            for loop in saveframe.loops:
                tags = [t.lower() for t in loop.tags]
                if "chem_shift_value" not in tags:
                    continue
                err_i = (tags.index("chem_shift_value_error")
                         if "chem_shift_value_error" in tags else None)
                for row in loop.data:
                    rows.append(_star_row(path, row, tags.index("residue_seq_code"),
                                          tags.index("residue_label"), tags.index("atom_name"),
                                          tags.index("chem_shift_value"), err_i))
    rows = [r for r in rows if r is not None]
    if not rows:
        raise ValueError(f"{path}: no nucleotide chemical shifts in NMR-STAR file")
    return _finish_shift_table(rows)


def _star_row(path, row, i_seq, i_comp, i_atom, i_val, i_err):
    try:
        resname = normalise_residue_name(row[i_comp])
    except ValueError:
        return None  # not a nucleotide (ligand, protein): skipped
    val = _float_or_nan(row[i_val], path, 0, "shift")
    err = _float_or_nan(row[i_err], path, 0, "error") if i_err is not None else np.nan
    return (resname, int(row[i_seq]), normalise_nucleus_name(row[i_atom]), val, err)


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


def clean_sequence(seq: str, source: str = "sequence") -> str:
    """Upper-case an RNA sequence, map T to U and reject anything but A/C/G/U.

    Args:
        seq: sequence letters (whitespace ignored).
        source: name used in the error message (file name or 'sequence').

    Returns:
        The sequence over ``ACGU``.

    Raises:
        ValueError: empty or containing other letters.
    """
    s = "".join(seq.split()).upper().replace("T", "U")
    if not s:
        raise ValueError(f"{source}: empty sequence")
    bad = sorted(set(s) - set("ACGU"))
    if bad:
        raise ValueError(f"{source}: sequence has letters other than ACGU/T: {''.join(bad)}")
    return s


def read_fasta(path: str | Path) -> list[tuple[str, str]]:
    """Read a FASTA file.

    Args:
        path: FASTA file (``>`` header lines followed by sequence lines); a file with no
            header holding only sequence letters is read as one unnamed record.

    Returns:
        List of ``(name, sequence)``; sequences cleaned by :func:`clean_sequence`.

    Raises:
        FileNotFoundError: missing file.
        ValueError: empty file, record without sequence or bad letters.
    """
    path = Path(path)
    text = _check_file(path, "FASTA")
    records: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            records.append((line[1:].strip(), []))
        else:
            if not records:
                records.append(("", []))
            records[-1][1].append(line)
    out = []
    for name, parts in records:
        out.append((name, clean_sequence("".join(parts), f"{path} (record {name!r})")))
    if not out:
        raise ValueError(f"{path}: no sequence found")
    return out


def read_ct(path: str | Path) -> tuple[str, list[tuple[int, int]]]:
    """Read a connectivity-table (CT) file (first structure only).

    Args:
        path: CT file; first line ``N title``, then N lines ``i base prev next partner num``.

    Returns:
        ``(sequence, pairs)``: sequence over ACGU (upper-cased, T->U) and sorted 1-based pairs
        ``(i, j)``, ``i < j``.

    Raises:
        FileNotFoundError: missing file.
        ValueError: malformed or inconsistent file.
    """
    path = Path(path)
    text = _check_file(path, "CT")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    try:
        n = int(lines[0].split()[0])
    except (ValueError, IndexError):
        raise ValueError(f"{path}: first line must start with the sequence length") from None
    if len(lines) < n + 1:
        raise ValueError(f"{path}: expected {n} residue lines, found {len(lines) - 1}")
    seq = []
    partner = np.zeros(n + 1, dtype=int)
    for k, line in enumerate(lines[1 : n + 1], start=1):
        tok = line.split()
        if len(tok) < 5:
            raise ValueError(f"{path}: residue line {k} has fewer than 5 columns")
        i, j = int(tok[0]), int(tok[4])
        if i != k or not 0 <= j <= n:
            raise ValueError(f"{path}: residue line {k} has index {i} / partner {j} out of order")
        seq.append(tok[1])
        partner[i] = j
    pairs = []
    for i in range(1, n + 1):
        j = partner[i]
        if j > i:
            if partner[j] != i:
                raise ValueError(f"{path}: pair {i}-{j} is not symmetric")
            pairs.append((i, int(j)))
    return clean_sequence("".join(seq), str(path)), pairs


def write_ct(path: str | Path, sequence: str, pairs: Iterable[tuple[int, int]],
             title: str = "") -> None:
    """Write a CT file.

    Args:
        path: output file.
        sequence: RNA sequence (length N).
        pairs: 1-based base pairs.
        title: text after the length on the first line (may hold an energy).

    Raises:
        ValueError: a pair outside 1..N or a residue paired twice.
    """
    n = len(sequence)
    partner = _partner_array(pairs, n)
    lines = [f"{n:5d}  {title}".rstrip()]
    for i in range(1, n + 1):
        nxt = i + 1 if i < n else 0
        lines.append(f"{i:5d} {sequence[i - 1]} {i - 1:5d} {nxt:5d} {partner[i]:5d} {i:5d}")
    Path(path).write_text("\n".join(lines) + "\n")


def _partner_array(pairs: Iterable[tuple[int, int]], n: int) -> np.ndarray:
    partner = np.zeros(n + 1, dtype=int)
    for i, j in pairs:
        i, j = int(i), int(j)
        if not (1 <= i <= n and 1 <= j <= n) or i == j:
            raise ValueError(f"base pair ({i}, {j}) outside a sequence of length {n}")
        if partner[i] or partner[j]:
            raise ValueError(f"residue of pair ({i}, {j}) is paired twice")
        partner[i], partner[j] = j, i
    return partner


def pair_table(pairs: Iterable[tuple[int, int]], n: int) -> np.ndarray:
    """Return the 0-based partner array of length ``n`` (-1 = unpaired).

    Args:
        pairs: 1-based base pairs.
        n: sequence length.

    Returns:
        int array, ``pt[i-1] = j-1`` for each pair.
    """
    return _partner_array(pairs, n)[1:] - 1


def dot_bracket(pairs: Iterable[tuple[int, int]], n: int) -> str:
    """Dot-bracket string of a structure, pseudoknots as ``[]``, ``{}``, ``<>``, ``Aa`` ...

    Pairs are assigned to bracket levels greedily (each pair gets the first level in which it
    crosses no pair already placed), so nested structures use ``()`` only.

    Args:
        pairs: 1-based base pairs.
        n: sequence length.

    Returns:
        String of length ``n``.
    """
    _partner_array(pairs, n)  # validation
    levels: list[list[tuple[int, int]]] = []
    out = ["."] * n
    for i, j in sorted((min(p), max(p)) for p in pairs):
        lev = next((k for k, placed in enumerate(levels)
                    if not any(a < i < b < j or i < a < j < b for a, b in placed)), len(levels))
        if lev == len(levels):
            levels.append([])
        levels[lev].append((i, j))
        if lev >= len(_OPEN):
            raise ValueError("too many pseudoknot levels for dot-bracket notation")
        out[i - 1], out[j - 1] = _OPEN[lev], _CLOSE[lev]
    return "".join(out)


def pairs_from_dot_bracket(db: str) -> list[tuple[int, int]]:
    """Parse a dot-bracket string (with ``[]{}<>`` and ``Aa`` pseudoknot brackets).

    Args:
        db: dot-bracket string; ``.``, ``,``, ``-``, ``:`` and ``_`` mean unpaired.

    Returns:
        Sorted 1-based pairs.

    Raises:
        ValueError: unbalanced brackets or unknown characters.
    """
    stacks: dict[str, list[int]] = {c: [] for c in _OPEN}
    pairs = []
    for pos, c in enumerate(db.strip(), start=1):
        if c in ".,-:_":
            continue
        if c in _OPEN:
            stacks[c].append(pos)
        elif c in _CLOSE:
            o = _OPEN[_CLOSE.index(c)]
            if not stacks[o]:
                raise ValueError(f"dot-bracket: unmatched {c!r} at position {pos}")
            pairs.append((stacks[o].pop(), pos))
        else:
            raise ValueError(f"dot-bracket: unknown character {c!r} at position {pos}")
    left = [c for c, s in stacks.items() if s]
    if left:
        raise ValueError(f"dot-bracket: unmatched {left[0]!r}")
    return sorted(pairs)


def read_dot_bracket(path: str | Path) -> tuple[str, str, list[tuple[int, int]]]:
    """Read a dot-bracket file (``>title`` optional, sequence line, structure line).

    Text after the structure on its line (e.g. `` (-3.90)``) is ignored.

    Args:
        path: file as written by :func:`write_dot_bracket` or RNAfold.

    Returns:
        (title, sequence, sorted 1-based pairs).

    Raises:
        FileNotFoundError: missing file.
        ValueError: missing lines, length mismatch or bad brackets.
    """
    path = Path(path)
    text = _check_file(path, "dot-bracket")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    title = lines.pop(0)[1:].strip() if lines[0].startswith(">") else ""
    if len(lines) < 2:
        raise ValueError(f"{path}: expected a sequence line and a structure line")
    seq = clean_sequence(lines[0], str(path))
    db = lines[1].split()[0]
    if len(db) != len(seq):
        raise ValueError(f"{path}: structure length {len(db)} != sequence length {len(seq)}")
    try:
        pairs = pairs_from_dot_bracket(db)
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from None
    return title, seq, pairs


def write_dot_bracket(path: str | Path, sequence: str, pairs: Iterable[tuple[int, int]],
                      title: str = "") -> None:
    """Write a three-line dot-bracket file (``>title``, sequence, structure).

    Args:
        path: output file.
        sequence: RNA sequence.
        pairs: 1-based base pairs.
        title: header text.
    """
    Path(path).write_text(f">{title}\n{sequence}\n{dot_bracket(list(pairs), len(sequence))}\n")
