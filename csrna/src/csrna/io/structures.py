"""Sequences and secondary structures: FASTA, CT, BPSEQ, dot-bracket, pair tables.

Conventions used throughout csrna:

* residue numbers (``resid``) and base-pair indices are 1-based, as in CT files;
* a base pair is a tuple ``(i, j)`` with ``i < j``; pair lists are sorted;
* residue names are one-letter codes A/C/G/U (T and CHARMM names ADE/CYT/GUA/URA are mapped);
* nucleus names are canonical (see :func:`csrna.io.nuclei.normalise_nucleus_name`);
* shifts are in ppm; a missing error is NaN.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from csrna.io.files import _check_file, atomic_write_text

_OPEN = "([{<" + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CLOSE = ")]}>" + "abcdefghijklmnopqrstuvwxyz"


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
    if any(c in s for c in "&+"):
        raise ValueError(f"{source}: two-strand (duplex) input is not supported; csrna folds "
                         "one strand (fold each strand, or join them with a loop)")
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
    atomic_write_text(path, "\n".join(lines) + "\n")


def write_bpseq(path: str | Path, sequence: str, pairs: Iterable[tuple[int, int]],
                title: str = "") -> None:
    """Write a BPSEQ file (``i base partner``, 0 = unpaired), title as a ``#`` comment.

    Args:
        path: output file.
        sequence: RNA sequence.
        pairs: 1-based base pairs.
        title: comment line (omitted when empty).
    """
    n = len(sequence)
    partner = _partner_array(pairs, n)
    lines = [f"# {title}"] if title else []
    lines += [f"{i} {sequence[i - 1]} {partner[i]}" for i in range(1, n + 1)]
    atomic_write_text(path, "\n".join(lines) + "\n")


def read_bpseq(path: str | Path) -> tuple[str, list[tuple[int, int]]]:
    """Read a BPSEQ file (``#`` comment lines ignored).

    Returns:
        (sequence, sorted 1-based pairs).

    Raises:
        ValueError: malformed or inconsistent file.
    """
    path = Path(path)
    text = _check_file(path, "BPSEQ")
    rows = [ln.split() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    try:
        idx = [int(r[0]) for r in rows]
        partner = [int(r[2]) for r in rows]
    except (ValueError, IndexError):
        raise ValueError(f"{path}: expected lines 'index base partner'") from None
    if idx != list(range(1, len(rows) + 1)):
        raise ValueError(f"{path}: residue indices are not 1..{len(rows)}")
    pairs = sorted((i, j) for i, j in zip(idx, partner, strict=True) if j > i)
    for i, j in pairs:
        if j > len(rows) or partner[j - 1] != i:
            raise ValueError(f"{path}: pair {i}-{j} is not symmetric")
    return clean_sequence("".join(r[1] for r in rows), str(path)), pairs


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
    atomic_write_text(path, f">{title}\n{sequence}\n"
                            f"{dot_bracket(list(pairs), len(sequence))}\n")
