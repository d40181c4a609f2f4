"""Conformational libraries of RNA secondary structures.

A library is a deduplicated list of :class:`Conformer` built from

* the minimum-free-energy fold and all suboptimal folds within ``subopt_delta`` kcal/mol of it
  (ViennaRNA ``subopt``; capped at ``max_subopt``, lowest energies kept), and
* ``n_samples`` structures drawn from the Boltzmann ensemble by stochastic backtracking
  (``RNA.fold_compound.pbacktrack``, seeded with ``RNA.init_rand(seed)`` so repeated runs
  give the same library), and/or
* user CT files (:func:`read_ct_library`).

Duplicates (same base-pair set) are dropped, keeping the first occurrence; order is MFE,
suboptimals by increasing energy, then samples in order of first appearance.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from csrna.io import clean_sequence, dot_bracket, pairs_from_dot_bracket, read_ct


@dataclass(frozen=True)
class Conformer:
    """One secondary structure of a library.

    Attributes:
        name: label (``s0``, ``s1`` ... for generated structures, the file stem for CTs).
        pairs: sorted 1-based base pairs ``(i, j)``, ``i < j``.
        source: ``mfe``, ``subopt``, ``sample`` or ``ct``.
        energy: ViennaRNA free energy (kcal/mol) of the structure on the sequence (turner
            2004 defaults); NaN when it could not be evaluated (e.g. pseudoknots).
    """

    name: str
    pairs: tuple[tuple[int, int], ...]
    source: str
    energy: float

    def dot_bracket(self, n: int) -> str:
        """Dot-bracket string of length ``n``."""
        return dot_bracket(self.pairs, n)


def _energy(fc, db: str) -> float:
    try:
        return float(fc.eval_structure(db))
    except Exception:  # noqa: BLE001 - ViennaRNA raises generic errors for pseudoknots
        return float("nan")


def sample_library(
    sequence: str,
    n_samples: int = 1000,
    subopt_delta: float = 2.0,
    max_subopt: int = 200,
    seed: int = 0,
    temperature: float = 37.0,
) -> list[Conformer]:
    """Build a library from ViennaRNA suboptimal folds and Boltzmann samples.

    Args:
        sequence: RNA sequence (A/C/G/U; T read as U).
        n_samples: stochastic-backtracking samples (0 to skip).
        subopt_delta: energy window above the MFE for ``subopt`` (kcal/mol; < 0 to skip).
        max_subopt: keep at most this many suboptimals (lowest energies).
        seed: seed of ViennaRNA's random number generator.
        temperature: folding temperature (deg C).

    Returns:
        Deduplicated list of :class:`Conformer` (MFE first).
    """
    import RNA

    seq = clean_sequence(sequence)
    md = RNA.md()
    md.temperature = temperature
    md.uniq_ML = 1
    fc = RNA.fold_compound(seq, md)
    mfe_db, mfe = fc.mfe()
    structures: list[tuple[str, str]] = [(mfe_db, "mfe")]
    if subopt_delta >= 0:
        subs = sorted(fc.subopt(int(round(subopt_delta * 100))),
                      key=lambda s: (s.energy, s.structure))
        structures += [(s.structure, "subopt") for s in subs[:max_subopt]]
    if n_samples > 0:
        fc.exp_params_rescale(mfe)
        fc.pf()
        RNA.init_rand(int(seed))
        structures += [(db, "sample") for db in fc.pbacktrack(int(n_samples))]
    out: list[Conformer] = []
    seen: set[tuple[tuple[int, int], ...]] = set()
    for db, source in structures:
        pairs = tuple(sorted(pairs_from_dot_bracket(db)))
        if pairs in seen:
            continue
        seen.add(pairs)
        out.append(Conformer(f"s{len(out)}", pairs, source, _energy(fc, db)))
    return out


def _natural_key(path: Path) -> list[object]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def read_ct_library(
    paths: Path | str | Iterable[Path | str], sequence: str | None = None
) -> tuple[str, list[Conformer]]:
    """Read CT files as a library.

    Args:
        paths: a directory (all ``*.ct`` files, natural sort order: ``x_2.ct`` before
            ``x_10.ct``) or an iterable of CT files (order kept).
        sequence: expected sequence; when None the first CT's sequence is used.

    Returns:
        (sequence, conformers) -- duplicates are kept (user libraries are taken as given),
        ``source="ct"``, name = file stem.

    Raises:
        FileNotFoundError: missing directory/file or no CT files.
        ValueError: a CT whose length or sequence differs from the expected sequence.
    """
    if isinstance(paths, (str, Path)):
        root = Path(paths)
        if not root.exists():
            raise FileNotFoundError(f"{root}: CT library not found")
        files: Sequence[Path] = (
            sorted(root.glob("*.ct"), key=_natural_key) if root.is_dir() else [root]
        )
        if not files:
            raise FileNotFoundError(f"{root}: no *.ct files in the library directory")
    else:
        files = [Path(p) for p in paths]
    seq = clean_sequence(sequence) if sequence is not None else None
    out = []
    for f in files:
        ct_seq, pairs = read_ct(f)
        if seq is None:
            seq = ct_seq
        if len(ct_seq) != len(seq):
            raise ValueError(
                f"{f}: CT has {len(ct_seq)} nucleotides but the sequence has {len(seq)}"
            )
        if ct_seq != seq:
            raise ValueError(f"{f}: CT sequence differs from the given sequence")
        out.append(Conformer(f.stem, tuple(sorted(pairs)), "ct", float("nan")))
    assert seq is not None
    return seq, out
