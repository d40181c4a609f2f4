"""BMRB NMR-STAR 3.x chemical-shift entries: shift list and entity selection.

An entry may hold several assigned chemical-shift lists (saveframes of category
``assigned_chemical_shifts``, e.g. free and bound states) and several entities (two RNA
strands, a protein and an RNA). Rows are never merged across lists or entities: when more
than one candidate exists the caller must choose (``--list``, ``--entity``) and the error
names the choices. The sequence is taken from the entity saveframe (``_Entity_comp_index`` or
``_Entity_poly_seq`` loop, else ``_Entity.Polymer_seq_one_letter_code``); modified residues
(comp IDs other than A/C/G/U) are reported, their shifts are dropped and, for common
modifications, the parent base is used in the sequence. Residue numbers are the entity's
``Seq_ID`` (1..N along the entity sequence); the author numbering (``Auth_seq_ID``) offset is
reported.

NMR-STAR 2.1 files are not read (pynmrstar does not parse them); the error says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from csrna.io.nuclei import normalise_nucleus_name, normalise_residue_name

#: Common modified ribonucleotides (PDB chemical component IDs) and their parent base.
MODIFIED_PARENT: dict[str, str] = {
    "PSU": "U", "5MU": "U", "H2U": "U", "OMU": "U", "4SU": "U", "5BU": "U", "UR3": "U",
    "5MC": "C", "OMC": "C", "CBR": "C", "CCC": "C",
    "1MA": "A", "MA6": "A", "6MZ": "A", "A2M": "A",
    "2MG": "G", "M2G": "G", "7MG": "G", "OMG": "G", "1MG": "G", "GTP": "G", "GDP": "G",
}


@dataclass
class ShiftEntry:
    """Shifts of one RNA read from a file, with what was learnt about the entry.

    Attributes:
        shifts: long table (``resname resid nucleus shift error``).
        sequence: the entity sequence over ACGU when the file carries one, else None.
        notes: one-line remarks for the user (modified residues, numbering, averaging).
        modified: (residue number, comp ID) of modified residues whose shifts were dropped.
    """

    shifts: pd.DataFrame
    sequence: str | None = None
    notes: list[str] = field(default_factory=list)
    modified: list[tuple[int, str]] = field(default_factory=list)


#: Largest residue number accepted (larger ones are typos or junk, and overflow arrays).
MAX_RESIDUE_NUMBER = 1_000_000


def printable(text: str, limit: int = 120) -> str:
    """``text`` for a one-line message: control characters escaped, at most ``limit`` chars."""
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in str(text))
    return out if len(out) <= limit else out[:limit] + "..."


def _parse_reason(err: Exception) -> str:
    """`` at line N (first sentence)`` of a pynmrstar parse error, made printable."""
    import re

    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    line = re.search(r"[Ee]rror detected on line:? *(\d+)", text)
    first = re.split(r"(?<=\.) ", text, maxsplit=1)[0].rstrip(".")
    return (f" at line {line.group(1)}" if line else "") + f" ({printable(first)})"


class _Collect(logging.Handler):
    """Keeps the parser's warnings (``Loop with no data...``) instead of printing them."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:  # noqa: D102
        self.messages.append(record.getMessage())


def is_nmrstar_21(text: str) -> bool:
    """True for an NMR-STAR 2.1 shift file (``_Chem_shift_value`` tags, no 3.x loop)."""
    return "_Chem_shift_value" in text and "_Atom_chem_shift." not in text


def _tag_values(loop, name: str) -> list[str] | None:
    tags = [t.lower() for t in loop.tags]
    if name.lower() not in tags:
        return None
    k = tags.index(name.lower())
    return [row[k] for row in loop.data]


def _first_tag(frame, name: str) -> str | None:
    try:
        values = frame.get_tag(name)
    except (KeyError, ValueError):
        return None
    return str(values[0]) if values else None


def _missing(value: str | None) -> bool:
    return value is None or value in {".", "?", ""}


def _shift_lists(entry) -> dict[str, tuple[str, object]]:
    """{list ID: (saveframe name, _Atom_chem_shift loop)} in entry order."""
    out: dict[str, tuple[str, object]] = {}
    for k, frame in enumerate(entry.frame_list, start=1):
        loops = [lp for lp in frame.loops if lp.category.lower() == "_atom_chem_shift"]
        if not loops:
            continue
        list_id = _first_tag(frame, "ID")
        if _missing(list_id):
            ids = _tag_values(loops[0], "Assigned_chem_shift_list_ID")
            list_id = ids[0] if ids and not _missing(ids[0]) else str(len(out) + 1)
        out[str(list_id)] = (frame.name, loops[0])
        del k
    return out


def _entities(entry) -> dict[str, dict]:
    """{entity ID: {'name', 'type', 'comps' (list of comp IDs by Seq_ID) or None}}."""
    out: dict[str, dict] = {}
    for frame in entry.frame_list:
        if (frame.category or "").lower() != "entity":
            continue
        eid = _first_tag(frame, "ID") or str(len(out) + 1)
        comps = None
        for lp in frame.loops:
            cat = lp.category.lower()
            if cat in ("_entity_comp_index", "_entity_poly_seq"):
                num = _tag_values(lp, "ID" if cat == "_entity_comp_index" else "Num")
                comp = _tag_values(lp, "Comp_ID" if cat == "_entity_comp_index" else "Mon_ID")
                if comp is None:
                    comp = _tag_values(lp, "Comp_ID")
                if num is not None and comp is not None:
                    try:
                        order = sorted(zip((int(n) for n in num), comp, strict=True))
                    except ValueError:
                        continue
                    comps = [c for _, c in order]
                    break
        if comps is None:
            code = _first_tag(frame, "Polymer_seq_one_letter_code")
            if not _missing(code):
                comps = list("".join(str(code).split()))
        out[str(eid)] = {"name": _first_tag(frame, "Name") or "",
                         "type": _first_tag(frame, "Polymer_type") or "", "comps": comps}
    return out


def _parent(comp: str) -> str | None:
    """A/C/G/U for a standard or known modified ribonucleotide comp ID, else None."""
    try:
        return normalise_residue_name(comp)
    except ValueError:
        return MODIFIED_PARENT.get(comp.upper())


def read_nmrstar(path: Path, text: str, entity: str | None = None,
                 shift_list: str | None = None) -> ShiftEntry:
    """Read the nucleotide shifts of one entity from one shift list of an NMR-STAR 3.x entry.

    Args:
        path: file name (for messages).
        text: file content.
        entity: ``Entity_ID`` to read; required when several entities have nucleotide shifts.
        shift_list: assigned chemical-shift list ID; required when the entry has several.

    Returns:
        :class:`ShiftEntry`.

    Raises:
        ValueError: NMR-STAR 2.1, unparsable file, ambiguous or unknown list/entity (the
            message names the choices), two copies of one entity (duplex), no shifts.
    """
    import pynmrstar

    if is_nmrstar_21(text):
        raise ValueError(f"{path}: NMR-STAR 2.1 is not supported; use the entry's NMR-STAR 3.1 "
                         "file (BMRB bmr<ID>_3.str) or a 'resname resid nucleus shift error' "
                         "table")
    logger = logging.getLogger("pynmrstar")
    parser_notes = _Collect()
    logger.addHandler(parser_notes)
    propagate, logger.propagate = logger.propagate, False  # no stray lines on stderr
    try:
        entry = pynmrstar.Entry.from_string(text)
    except Exception as err:  # pynmrstar raises several parse error types
        raise ValueError(f"{path}: cannot parse NMR-STAR file{_parse_reason(err)}") from None
    finally:
        logger.removeHandler(parser_notes)
        logger.propagate = propagate
    lists = _shift_lists(entry)
    if not lists:
        raise ValueError(f"{path}: no _Atom_chem_shift loop in NMR-STAR file")
    described = ", ".join(f"{k} ({name}, {len(lp.data)} shifts)"
                          for k, (name, lp) in lists.items())
    if shift_list is None:
        if len(lists) > 1:
            raise ValueError(f"{path}: {len(lists)} assigned chemical-shift lists: {described}; "
                             "choose one with --list")
        shift_list = next(iter(lists))
    if str(shift_list) not in lists:
        raise ValueError(f"{path}: no shift list {shift_list!r}; lists: {described}")
    _, loop = lists[str(shift_list)]
    notes = [f"shift list {shift_list} of {len(lists)}"] if len(lists) > 1 else []
    notes += [f"NMR-STAR parser: {printable(m)}" for m in parser_notes.messages]

    seq_col = _tag_values(loop, "Seq_ID") or _tag_values(loop, "Comp_index_ID")
    comp_col = _tag_values(loop, "Comp_ID")
    atom_col = _tag_values(loop, "Atom_ID")
    val_col = _tag_values(loop, "Val")
    if len(loop.data) == 0:
        raise ValueError(f"{path}: the _Atom_chem_shift loop of shift list {shift_list} has "
                         "no rows")
    if seq_col is None or comp_col is None or atom_col is None or val_col is None:
        raise ValueError(f"{path}: _Atom_chem_shift loop lacks one of Seq_ID, Comp_ID, "
                         "Atom_ID, Val")
    n_rows = len(val_col)
    err_col = _tag_values(loop, "Val_err") or ["."] * n_rows
    ent_col = _tag_values(loop, "Entity_ID") or ["1"] * n_rows
    asm_col = _tag_values(loop, "Entity_assembly_ID") or ["1"] * n_rows
    auth_col = _tag_values(loop, "Auth_seq_ID") or ["."] * n_rows
    entities = _entities(entry)

    nucleic = {}
    for e, c in zip(ent_col, comp_col, strict=True):
        nucleic.setdefault(e, False)
        nucleic[e] = nucleic[e] or _parent(c) is not None
    choices = [e for e, ok in nucleic.items() if ok]
    if not choices:
        raise ValueError(f"{path}: no nucleotide chemical shifts in NMR-STAR file")

    def label(e: str) -> str:
        info = entities.get(e, {})
        n = sum(1 for x in ent_col if x == e)
        name = f" '{info['name']}'" if info.get("name") else ""
        return f"{e}{name} ({n} shifts)"

    listed = ", ".join(label(e) for e in nucleic)
    if entity is None:
        if len(choices) > 1:
            raise ValueError(f"{path}: {len(choices)} entities with nucleotide shifts: {listed}; "
                             "choose one with --entity")
        entity = choices[0]
    entity = str(entity)
    if entity not in nucleic:
        raise ValueError(f"{path}: no entity {entity!r} in the shift list; entities: {listed}")
    if entity not in choices:
        raise ValueError(f"{path}: entity {entity} has no nucleotide shifts; entities: {listed}")
    if len(nucleic) > 1:
        notes.append(f"entity {entity} of {len(nucleic)} ({listed})")
    copies = sorted({a for e, a in zip(ent_col, asm_col, strict=True) if e == entity})
    if len(copies) > 1:
        raise ValueError(f"{path}: entity {entity} has shifts for {len(copies)} copies (entity "
                         f"assembly {', '.join(copies)}): two-strand (duplex) input is not "
                         "supported; csrna folds a single strand")

    rows: list[tuple[str, int, str, float, float]] = []
    modified: dict[int, str] = {}
    auth_offsets = set()
    for k in range(n_rows):
        if ent_col[k] != entity:
            continue
        try:
            resid = int(seq_col[k])
        except ValueError:
            raise ValueError(f"{path}: shift row {k + 1}: residue number "
                             f"'{printable(seq_col[k])}' is not an integer") from None
        if abs(resid) > MAX_RESIDUE_NUMBER:
            raise ValueError(f"{path}: shift row {k + 1}: residue number "
                             f"{printable(seq_col[k])} is beyond +-{MAX_RESIDUE_NUMBER:,}")
        try:
            resname = normalise_residue_name(comp_col[k])
        except ValueError:
            modified[resid] = comp_col[k]
            continue
        try:
            val = float(val_col[k])
        except ValueError:
            raise ValueError(f"{path}: shift row {k + 1}: shift '{printable(val_col[k])}' is "
                             "not a number") from None
        if not np.isfinite(val):
            raise ValueError(f"{path}: shift row {k + 1}: shift {val_col[k]!r} is not a finite "
                             "number")
        try:
            err = float(err_col[k]) if not _missing(err_col[k]) else np.nan
        except ValueError:
            err = np.nan
        if not _missing(auth_col[k]):
            try:
                auth_offsets.add(int(auth_col[k]) - resid)
            except ValueError:
                pass
        rows.append((resname, resid, normalise_nucleus_name(atom_col[k]), val, err))
    if not rows:
        raise ValueError(f"{path}: entity {entity} has no shifts of standard nucleotides")
    mods = sorted(modified.items())
    if mods:
        notes.append("modified residues, shifts not used: "
                     + ", ".join(f"{c} {r}" for r, c in mods))
    if len(auth_offsets) == 1 and (off := auth_offsets.pop()) != 0:
        notes.append(f"residue numbers are the entity's Seq_ID; author numbering = Seq_ID "
                     f"{off:+d}")
    elif len(auth_offsets) > 1:
        notes.append("residue numbers are the entity's Seq_ID (author numbering is not a "
                     "constant offset)")

    sequence = None
    comps = entities.get(entity, {}).get("comps")
    if comps:
        letters = [_parent(c) for c in comps]
        unknown = [(k + 1, c) for k, (c, x) in enumerate(zip(comps, letters, strict=True))
                   if x is None]
        if unknown:
            notes.append("sequence not taken from the entry (unknown residue "
                         + ", ".join(f"{c} {r}" for r, c in unknown[:5]) + ")")
        else:
            sequence = "".join(letters)  # type: ignore[arg-type]
            parents = [(k + 1, c, x) for k, (c, x) in enumerate(zip(comps, letters, strict=True))
                       if c.upper() not in {"A", "C", "G", "U"} and len(c) > 1 and
                       c.upper() in MODIFIED_PARENT]
            if parents:
                notes.append("modified residues folded as their parent base: "
                             + ", ".join(f"{c} {r} -> {x}" for r, c, x in parents))
    from csrna.io.shifts import finish_shift_table

    return ShiftEntry(finish_shift_table(rows), sequence, notes, mods)
