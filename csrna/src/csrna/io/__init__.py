"""Inputs and outputs of every csrna workflow.

Reading order: :mod:`csrna.io.nuclei` (names), :mod:`csrna.io.shifts` (shift tables and
NMR-STAR entries, with :mod:`csrna.io.nmrstar` for list/entity selection),
:mod:`csrna.io.referencing` (referencing check), :mod:`csrna.io.structures` (FASTA, CT,
BPSEQ, dot-bracket), :mod:`csrna.io.files` (atomic writes).

Conventions used throughout csrna:

* residue numbers (``resid``) and base-pair indices are 1-based, as in CT files;
* a base pair is a tuple ``(i, j)`` with ``i < j``; pair lists are sorted;
* residue names are one-letter codes A/C/G/U (T and CHARMM names ADE/CYT/GUA/URA are mapped);
* nucleus names are canonical (see :func:`csrna.io.nuclei.normalise_nucleus_name`);
* shifts are in ppm; a missing error is NaN.
"""

from csrna.io.files import atomic_write, atomic_write_text, output_unit
from csrna.io.nmrstar import ShiftEntry
from csrna.io.shifts import (
    SHIFT_COLUMNS,
    finish_shift_table,
    read_shift_entry,
    read_shifts,
    shifts_to_wide,
)
from csrna.io.structures import (
    clean_sequence,
    dot_bracket,
    pair_table,
    pairs_from_dot_bracket,
    read_bpseq,
    read_ct,
    read_dot_bracket,
    read_fasta,
    write_bpseq,
    write_ct,
    write_dot_bracket,
)

__all__ = [
    "SHIFT_COLUMNS", "ShiftEntry", "atomic_write", "atomic_write_text", "clean_sequence",
    "dot_bracket", "finish_shift_table", "output_unit", "pair_table", "pairs_from_dot_bracket",
    "read_bpseq", "read_ct", "read_dot_bracket", "read_fasta", "read_shift_entry", "read_shifts",
    "shifts_to_wide", "write_bpseq", "write_ct", "write_dot_bracket",
]
