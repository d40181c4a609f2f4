"""Atomic model loading: real PDB/mmCIF files, masses, filtering and bad input."""

import gzip

import numpy as np
import pytest

from difftm.io.models import (
    Atoms,
    centre_of_mass,
    load_model,
    molecular_mass_da,
    summarize_model,
)

from model_files import model_path

# masses from shared/data/README.md (polymer atoms of model 1, first altloc)
EXPECTED_KDA = {"1ubi.pdb.gz": 7.9, "3enl.pdb.gz": 43.3, "1ake.pdb.gz": 21.9,
                "4e43.pdb.gz": 20.7, "6msm.pdb.gz": 125.5, "7pbl.pdb.gz": 224.3}


@pytest.mark.parametrize(("name", "kda"), sorted(EXPECTED_KDA.items()))
def test_masses_match_readme(name, kda):
    atoms = load_model(model_path(name))
    assert molecular_mass_da(atoms) / 1000 == pytest.approx(kda, abs=0.05)
    assert atoms.positions_angstrom.shape == (len(atoms), 3)
    assert atoms.positions_angstrom.dtype == np.float64
    assert np.all((atoms.occupancies > 0) & (atoms.occupancies <= 1))


def test_1ubi_content():
    atoms = load_model(model_path("1ubi.pdb.gz"))
    assert len(atoms) == 602  # ATOM records; the 81 HETATM are waters
    assert set(atoms.elements) == {"C", "N", "O", "S"}
    # first atom of the file: MET 1 N at (27.343, 24.294, 2.683), B 14.70
    np.testing.assert_allclose(atoms.positions_angstrom[0], [27.343, 24.294, 2.683])
    assert atoms.b_factors[0] == pytest.approx(14.70)


def test_hydrogens_kept_when_present():
    atoms = load_model(model_path("7pbl.pdb.gz"))
    assert int((atoms.elements == "H").sum()) == 15439


def test_ligands_optional():
    path = model_path("4e43.pdb.gz")  # acetate and a peptide; waters never kept
    polymer = load_model(path)
    with_ligands = load_model(path, keep_ligands=True)
    assert len(with_ligands) > len(polymer)
    assert molecular_mass_da(with_ligands) > molecular_mass_da(polymer)


def test_mmcif_large():
    atoms = load_model(model_path("6zu5.cif.gz"))
    assert len(atoms) == 164965
    assert molecular_mass_da(atoms) / 1000 == pytest.approx(2291, abs=1)


def test_alternative_conformers_first_kept_with_summed_occupancy(tmp_path):
    lines = [
        "ATOM      1  N   SER A   1       0.000   0.000   0.000  1.00 10.00           N",
        "ATOM      2  CA ASER A   1       1.000   0.000   0.000  0.60 11.00           C",
        "ATOM      3  CA BSER A   1       1.200   0.300   0.000  0.40 12.00           C",
        "ATOM      4  C   SER A   1       2.000   1.000   0.000  1.00 10.00           C",
        "ATOM      5  O  ASER A   1       3.000   1.000   0.000  0.50 13.00           O",
        "HETATM    6  O   HOH A 101       9.000   9.000   9.000  1.00 20.00           O",
        "END",
    ]
    path = tmp_path / "alt.pdb"
    path.write_text("\n".join(lines) + "\n")
    atoms = load_model(path)
    assert list(atoms.elements) == ["N", "C", "C", "O"]
    np.testing.assert_allclose(atoms.positions_angstrom[1], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(atoms.occupancies, [1.0, 1.0, 1.0, 0.5])
    # same model through gzip gives the same atoms
    gz = tmp_path / "alt.pdb.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    np.testing.assert_array_equal(load_model(gz).positions_angstrom, atoms.positions_angstrom)


def test_summarize_model():
    info = summarize_model(model_path("4e43.pdb.gz"))
    assert info["format"] == "pdb"
    assert info["chains"] == ["A", "B", "C"]
    assert info["n_residues"] == 204
    assert info["mass_kda"] == pytest.approx(20.7, abs=0.05)
    assert info["n_atoms"] == sum(info["elements"].values())
    assert all(20 < e < 80 for e in info["extent_angstrom"])
    assert 10 < info["max_radius_angstrom"] < 60
    assert summarize_model(model_path("6zu5.cif.gz"))["format"] == "cif"


def test_centre_of_mass_weights_by_mass():
    atoms = Atoms.from_arrays([[0.0, 0.0, 0.0], [10.0, 0.0, 0.0]], ["C", "S"])
    com = centre_of_mass(atoms)
    w_c, w_s = 12.0107, 32.065
    assert com[0] == pytest.approx(10 * w_s / (w_c + w_s), rel=1e-4)


def test_missing_file():
    with pytest.raises(FileNotFoundError, match="nope.pdb"):
        load_model("/nonexistent/nope.pdb")


def test_truncated_gzip(tmp_path):
    raw = model_path("3enl.pdb.gz").read_bytes()
    bad = tmp_path / "cut.pdb.gz"
    bad.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match=r"cut\.pdb\.gz: truncated or corrupt gzip"):
        load_model(bad)


@pytest.mark.parametrize(
    ("name", "content", "pattern"),
    [("notes.pdb", b"hello world\n", "no atoms found"),
     ("notes.cif", b"hello\n", "not a readable CIF"),
     ("image.pdb", bytes(range(256)) * 8, "binary content"),
     ("empty.cif", b"", "empty file")],
)
def test_not_a_structure(tmp_path, name, content, pattern):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ValueError, match=pattern) as err:
        load_model(path)
    message = str(err.value)
    assert name in message and "\n" not in message


def test_directory_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="directory"):
        load_model(tmp_path)
