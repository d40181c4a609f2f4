"""Atomic models (PDB, mmCIF, optionally gzip-compressed) read with gemmi.

What is kept: the first model; for atoms with alternative conformations, the first
conformer (its occupancy becomes the summed occupancy of all conformers of that atom, at most
1); polymer atoms (protein and nucleic acid) always, ligands only when asked, waters never;
hydrogens when the file has them. Atoms whose element gemmi cannot identify are dropped with
a warning.
"""

from __future__ import annotations

import gzip
import io
import math
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import gemmi
import numpy as np

from difftm.io.paths import CIF_SUFFIXES, PDB_SUFFIXES, content_suffix


@dataclass(frozen=True)
class Atoms:
    """Atoms of a model, as plain arrays.

    Attributes:
        positions_angstrom: ``(N, 3)`` float64 Cartesian coordinates ``[x, y, z]`` in A.
        elements: ``(N,)`` element symbols (str, capitalised as in ``"Fe"``).
        b_factors: ``(N,)`` float64 isotropic B-factors in A^2.
        occupancies: ``(N,)`` float64 occupancies in [0, 1].
        source: the file the atoms came from ("" if built in memory).
    """

    positions_angstrom: np.ndarray
    elements: np.ndarray
    b_factors: np.ndarray
    occupancies: np.ndarray
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.positions_angstrom)
        pos = np.asarray(self.positions_angstrom, dtype=np.float64).reshape(n, 3)
        object.__setattr__(self, "positions_angstrom", pos)
        object.__setattr__(self, "elements", np.asarray(self.elements, dtype=str).reshape(n))
        for name in ("b_factors", "occupancies"):
            arr = np.asarray(getattr(self, name), dtype=np.float64).reshape(n)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return len(self.positions_angstrom)

    @classmethod
    def from_arrays(
        cls,
        positions_angstrom,
        elements,
        b_factors=None,
        occupancies=None,
    ) -> Atoms:
        """Build atoms in memory; B-factors default to 0 and occupancies to 1."""
        n = len(positions_angstrom)
        return cls(
            positions_angstrom=np.asarray(positions_angstrom, dtype=np.float64),
            elements=np.asarray(elements, dtype=str),
            b_factors=np.zeros(n) if b_factors is None else b_factors,
            occupancies=np.ones(n) if occupancies is None else occupancies,
        )


def _format_of(path: Path, text: str) -> str:
    last = content_suffix(path, (".gz",))
    if last in CIF_SUFFIXES:
        return "cif"
    if last in PDB_SUFFIXES:
        return "pdb"
    return "cif" if text.lstrip().startswith("data_") else "pdb"


#: Largest decompressed model accepted (the biggest PDB entries are a few hundred MB of
#: mmCIF); a gzip file expanding beyond it is refused before it fills the memory.
MAX_MODEL_BYTES = 2 * 2**30


def _gunzip_bounded(path: Path, raw: bytes, limit: int | None = None) -> bytes:
    """Decompress gzip ``raw`` in chunks, refusing more than ``limit`` bytes of output."""
    limit = MAX_MODEL_BYTES if limit is None else limit
    out = bytearray()
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(raw)) as fh:
            while chunk := fh.read(1 << 20):
                out += chunk
                if len(out) > limit:
                    raise ValueError(f"{path}: expands beyond {limit:,} bytes when "
                                     "decompressed; not an atomic model")
    except (EOFError, OSError, zlib.error) as err:
        raise ValueError(f"{path}: truncated or corrupt gzip file ({err})") from None
    return bytes(out)


def _read_text(path: Path) -> str:
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such model file")
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, not an atomic model file")
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = _gunzip_bounded(path, raw)
    if not raw.strip():
        raise ValueError(f"{path}: empty file, not an atomic model")
    if b"\x00" in raw[:4096]:
        raise ValueError(f"{path}: not a PDB or mmCIF file (binary content)")
    return raw.decode("utf-8", errors="replace")


def _read_structure(path: Path) -> tuple[gemmi.Structure, str]:
    text = _read_text(path)
    fmt = _format_of(path, text)
    try:
        if fmt == "cif":
            doc = gemmi.cif.read_string(text)
            st = gemmi.make_structure_from_block(doc[0])
        else:
            st = gemmi.read_pdb_string(text)
    except (RuntimeError, ValueError, IndexError) as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path}: not a readable {fmt.upper()} model ({msg})") from None
    if len(st) == 0 or st[0].count_atom_sites() == 0:
        raise ValueError(f"{path}: no atoms found (not a PDB/mmCIF model, or truncated)")
    st.setup_entities()
    return st, fmt


def _is_polymer(residue: gemmi.Residue) -> bool:
    return residue.entity_type == gemmi.EntityType.Polymer


def _is_water(residue: gemmi.Residue) -> bool:
    return residue.is_water() or residue.entity_type == gemmi.EntityType.Water


def _kept_residues(model: gemmi.Model, keep_ligands: bool):
    for chain in model:
        for residue in chain:
            if _is_water(residue):
                continue
            if not keep_ligands and not _is_polymer(residue):
                continue
            yield chain, residue


def load_model(path: str | Path, keep_ligands: bool = False) -> Atoms:
    """Read the atoms of an atomic model.

    Args:
        path: PDB (``.pdb``, ``.ent``) or mmCIF (``.cif``) file, optionally ``.gz``.
        keep_ligands: also keep non-polymer, non-water residues (ligands, ions).

    Returns:
        :class:`Atoms` of model 1 (first alternative conformer, no waters).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: one line naming the file when it is not a readable model, is truncated,
            or has no atoms left after filtering.
    """
    path = Path(path)
    st, _fmt = _read_structure(path)
    return _atoms_from_structure(st, path, keep_ligands)


def _atoms_from_structure(st: gemmi.Structure, path: Path, keep_ligands: bool) -> Atoms:
    positions: list[tuple[float, float, float]] = []
    elements: list[str] = []
    b_factors: list[float] = []
    occupancies: list[float] = []
    unknown = 0
    for _chain, residue in _kept_residues(st[0], keep_ligands):
        first_index: dict[str, int] = {}
        for atom in residue:
            name = atom.name
            if name in first_index:  # a later alternative conformer: add its occupancy
                i = first_index[name]
                if i >= 0:
                    occupancies[i] = min(1.0, occupancies[i] + atom.occ)
                continue
            if atom.element.atomic_number == 0:
                unknown += 1
                first_index[name] = -1
                continue
            first_index[name] = len(positions)
            p = atom.pos
            positions.append((p.x, p.y, p.z))
            elements.append(atom.element.name)
            b_factors.append(atom.b_iso)
            occupancies.append(min(1.0, max(0.0, atom.occ)))
    if unknown:
        warnings.warn(f"{path}: skipped {unknown} atoms of unknown element", stacklevel=3)
    if not positions:
        what = "atoms" if keep_ligands else "polymer atoms (try keeping ligands)"
        raise ValueError(f"{path}: no {what} in model 1")
    return Atoms(
        positions_angstrom=np.asarray(positions, dtype=np.float64),
        elements=np.asarray(elements, dtype=str),
        b_factors=np.asarray(b_factors, dtype=np.float64),
        occupancies=np.asarray(occupancies, dtype=np.float64),
        source=str(path),
    )


_WEIGHTS: dict[str, float] = {}


def atomic_weights(elements: np.ndarray) -> np.ndarray:
    """Standard atomic weights (Da) of element symbols, as float64."""
    out = np.empty(len(elements), dtype=np.float64)
    for symbol in np.unique(elements):
        if symbol not in _WEIGHTS:
            _WEIGHTS[symbol] = gemmi.Element(str(symbol)).weight
        out[elements == symbol] = _WEIGHTS[symbol]
    return out


def molecular_mass_da(atoms: Atoms) -> float:
    """Sum of standard atomic weights over the atoms (Da); occupancies are not applied."""
    return float(math.fsum(atomic_weights(atoms.elements)))


def centre_of_mass(atoms: Atoms) -> np.ndarray:
    """Mass-weighted centre ``[x, y, z]`` of the atoms in A (float64)."""
    w = atomic_weights(atoms.elements)
    return (atoms.positions_angstrom * w[:, None]).sum(axis=0) / w.sum()


def summarize_model(path: str | Path, keep_ligands: bool = False) -> dict:
    """Facts about a model file for ``difftm info``.

    Args:
        path: PDB/mmCIF file (optionally gzip).
        keep_ligands: count ligands as in :func:`load_model`.

    Returns:
        dict with ``path``, ``format`` ("pdb"/"cif"), ``chains`` (list of chain names),
        ``n_chains``, ``n_residues``, ``n_atoms``, ``n_hydrogens``, ``mass_da``,
        ``mass_kda``, ``extent_angstrom`` (x, y, z bounding-box size), ``max_radius_angstrom``
        (largest distance of an atom from the centre of mass) and ``elements`` (symbol ->
        count), all for the atoms that :func:`load_model` keeps.
    """
    path = Path(path)
    st, fmt = _read_structure(path)
    chains: list[str] = []
    n_residues = 0
    for chain, _residue in _kept_residues(st[0], keep_ligands):
        if not chains or chains[-1] != chain.name:
            chains.append(chain.name)
        n_residues += 1
    atoms = _atoms_from_structure(st, path, keep_ligands)
    pos = atoms.positions_angstrom
    com = centre_of_mass(atoms)
    symbols, counts = np.unique(atoms.elements, return_counts=True)
    mass = molecular_mass_da(atoms)
    unique_chains = list(dict.fromkeys(chains))
    return {
        "path": str(path),
        "format": fmt,
        "chains": unique_chains,
        "n_chains": len(unique_chains),
        "n_residues": n_residues,
        "n_atoms": len(atoms),
        "n_hydrogens": int(np.isin(atoms.elements, ["H", "D"]).sum()),
        "mass_da": mass,
        "mass_kda": mass / 1000.0,
        "extent_angstrom": tuple(float(v) for v in pos.max(axis=0) - pos.min(axis=0)),
        "max_radius_angstrom": float(np.sqrt(((pos - com) ** 2).sum(axis=1)).max()),
        "elements": {str(s): int(c) for s, c in zip(symbols, counts, strict=True)},
    }
