"""Nucleus and residue names used by CS-Fold.

The 19 nuclei are listed in the order of the published CS-Fold training tables
(``ss_table_0.txt``): five sugar carbons, four base carbons, then the protons.
"""

from __future__ import annotations

import re

#: The 19 nuclei of CS-Fold, in the published column order.
NUCLEI: tuple[str, ...] = (
    "C1'", "C2'", "C3'", "C4'", "C5'", "C2", "C5", "C6", "C8",
    "H1'", "H2'", "H3'", "H4'", "H2", "H5", "H5'", "H5''", "H6", "H8",
)

#: One-letter residue codes used everywhere in csrna (T is read as U).
RESIDUES: tuple[str, ...] = ("A", "C", "G", "U")

_RESNAME_MAP = {
    "A": "A", "ADE": "A", "RA": "A", "RA5": "A", "RA3": "A", "DA": "A",
    "C": "C", "CYT": "C", "RC": "C", "RC5": "C", "RC3": "C", "DC": "C",
    "G": "G", "GUA": "G", "RG": "G", "RG5": "G", "RG3": "G", "DG": "G",
    "U": "U", "URA": "U", "URI": "U", "RU": "U", "RU5": "U", "RU3": "U",
    "T": "U", "THY": "U", "DT": "U",
}

#: Three-letter (CHARMM-style) names of the one-letter codes, as in the published tables.
THREE_LETTER: dict[str, str] = {"A": "ADE", "C": "CYT", "G": "GUA", "U": "URA"}

# old PDB / BMRB spellings of the two-proton positions
_ALIASES = {
    "H5'1": "H5'", "H5'2": "H5''", "1H5'": "H5'", "2H5'": "H5''",
    "H2'1": "H2'", "1H2'": "H2'", "HO'2": "HO2'", "2HO'": "HO2'", "H2'2": "H2''",
}


def normalise_nucleus_name(name: str) -> str:
    """Return the canonical spelling of a nucleus (atom) name.

    Primes may be written ``'`` or ``*``, a double prime as ``''``, ``"`` or ``**``; old
    numbered forms (``H5'1``/``H5'2``, ``1H5'``/``2H5'``) are mapped to ``H5'``/``H5''``.
    Letters are upper-cased and surrounding quotes/whitespace stripped.

    Args:
        name: atom name as found in a file.

    Returns:
        The canonical name, e.g. ``"H5''"`` for ``'H5"'``, ``"C1'"`` for ``"c1*"``.

    Raises:
        ValueError: empty name.
    """
    s = name.strip()
    if len(s) > 2 and s[0] == '"' and s[-1] == '"':
        s = s[1:-1]  # a STAR-quoted token such as "H5''"
    s = s.upper().replace('"', "''").replace("*", "'")
    s = re.sub(r"\s+", "", s)
    if not s:
        raise ValueError("empty nucleus name")
    return _ALIASES.get(s, s)


def normalise_residue_name(name: str) -> str:
    """Return the one-letter code (A, C, G, U) of a nucleotide residue name.

    Args:
        name: residue name such as ``GUA``, ``G``, ``RG``, ``ura`` (T/THY are read as U).

    Returns:
        One of ``A``, ``C``, ``G``, ``U``.

    Raises:
        ValueError: unknown residue name.
    """
    key = name.strip().upper()
    if key not in _RESNAME_MAP:
        raise ValueError(f"unknown residue name {name!r} (expected A/C/G/U or ADE/CYT/GUA/URA)")
    return _RESNAME_MAP[key]

_SUGAR_PHOSPHATE = (
    "P", "OP1", "OP2", "OP3", "O5'", "C5'", "H5'", "H5''", "C4'", "H4'", "O4'", "C3'", "H3'",
    "O3'", "C2'", "H2'", "O2'", "HO2'", "C1'", "H1'", "HO3'", "HO5'", "H5T", "H3T",
)
_BASE_ATOMS = (
    "N1", "C2", "N2", "N3", "C4", "N4", "C5", "C6", "N6", "N7", "C8", "N9", "O2", "O4", "O6",
    "H1", "H2", "H3", "H5", "H6", "H8", "H21", "H22", "H41", "H42", "H61", "H62",
)
#: Every atom name accepted in a shift file (RNA sugar-phosphate and base atoms).
RNA_ATOMS: frozenset[str] = frozenset(_SUGAR_PHOSPHATE + _BASE_ATOMS)
