"""Tests for csrna.io and csrna.io.nuclei."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from csrna.io import (
    dot_bracket,
    pair_table,
    pairs_from_dot_bracket,
    read_ct,
    read_dot_bracket,
    read_fasta,
    read_shifts,
    shifts_to_wide,
    write_ct,
    write_dot_bracket,
)
from csrna.io.nuclei import NUCLEI, normalise_nucleus_name, normalise_residue_name

DATA = Path(os.environ.get("DIFFTM_SHARED_DATA",
                           Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
CS2BPS = DATA / "rna" / "cs2bps"
needs_data = pytest.mark.skipif(not CS2BPS.is_dir(), reason=f"shared data absent: {CS2BPS}")


def test_nuclei_order_matches_published_table():
    assert NUCLEI == ("C1'", "C2'", "C3'", "C4'", "C5'", "C2", "C5", "C6", "C8", "H1'", "H2'",
                      "H3'", "H4'", "H2", "H5", "H5'", "H5''", "H6", "H8")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [('H5"', "H5''"), ("H5''", "H5''"), ("H5**", "H5''"), ("c1*", "C1'"), ("H5'2", "H5''"),
     ("H5'1", "H5'"), ("2H5*", "H5''"), ('"H5\'\'"', "H5''"), ("C8", "C8"), (" h2' ", "H2'")],
)
def test_normalise_nucleus_name(raw, expected):
    assert normalise_nucleus_name(raw) == expected


def test_normalise_residue_name():
    assert [normalise_residue_name(x) for x in ("GUA", "ura", "T", "RA", "CYT")] == list("GUUAC")
    with pytest.raises(ValueError, match="unknown residue"):
        normalise_residue_name("LYS")


def test_read_shifts_table_with_dot_error(tmp_path):
    p = tmp_path / "s.dat"
    p.write_text("# comment\nGUA 1 C1* 92.7 .\nURA 2 H5\" 5.1 0.01\nCYT 3 H5'' 4.0\n")
    df = read_shifts(p)
    assert list(df.columns) == ["resname", "resid", "nucleus", "shift", "error"]
    assert df["resname"].tolist() == ["G", "U", "C"]
    assert df["nucleus"].tolist() == ["C1'", "H5''", "H5''"]
    assert np.isnan(df["error"].iloc[0]) and df["error"].iloc[1] == pytest.approx(0.01)
    wide = shifts_to_wide(df, NUCLEI)
    assert wide.loc[2, "H5''"] == pytest.approx(5.1) and np.isnan(wide.loc[1, "H8"])


@pytest.mark.parametrize(
    ("content", "message"),
    [("", "empty"), ("GUA one C1' 92.7 .\n", "not an integer"),
     ("GUA 1 C1' abc .\n", "not a number"), ("XXX 1 C1' 92 .\n", "unknown residue"),
     ("GUA 1 C1'\n", "expected")],
)
def test_read_shifts_errors_are_one_line(tmp_path, content, message):
    p = tmp_path / "bad.dat"
    p.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_shifts(p)
    assert "\n" not in str(info.value) and str(p) in str(info.value)
    with pytest.raises(FileNotFoundError):
        read_shifts(tmp_path / "missing.dat")


STAR = """data_test
save_assigned_chem_shift_list_1
   _Assigned_chem_shift_list.Sf_category assigned_chemical_shifts
   loop_
      _Atom_chem_shift.ID
      _Atom_chem_shift.Seq_ID
      _Atom_chem_shift.Comp_ID
      _Atom_chem_shift.Atom_ID
      _Atom_chem_shift.Atom_type
      _Atom_chem_shift.Val
      _Atom_chem_shift.Val_err
      1 1 G "H5''" H 4.41 0.01
      2 1 G C1' C 92.5 .
      3 2 U H5 H 5.20 0.02
      4 3 MG MG MG 1.0 .
   stop_
save_
"""


def test_read_shifts_nmrstar(tmp_path):
    p = tmp_path / "entry.str"
    p.write_text(STAR)
    df = read_shifts(p)
    assert df["nucleus"].tolist() == ["H5''", "C1'", "H5"]  # ion row skipped
    assert df["resid"].tolist() == [1, 1, 2] and df["resname"].tolist() == ["G", "G", "U"]
    assert df["shift"].tolist() == [4.41, 92.5, 5.20] and np.isnan(df["error"].iloc[1])


def test_dot_bracket_roundtrip_with_pseudoknot():
    db = "((((..[[[[[[))))......((((....))))....]]]]]]..."
    pairs = pairs_from_dot_bracket(db)
    assert (1, 16) in pairs and (7, 44) in pairs
    assert dot_bracket(pairs, len(db)) == db
    pt = pair_table(pairs, len(db))
    assert pt[0] == 15 and pt[15] == 0 and pt[4] == -1
    with pytest.raises(ValueError, match="unmatched"):
        pairs_from_dot_bracket("(()")


def test_ct_write_read_roundtrip(tmp_path):
    seq, pairs = "GGGAAACCC", [(1, 9), (2, 8), (3, 7)]
    write_ct(tmp_path / "x.ct", seq, pairs, "test -1.0")
    assert read_ct(tmp_path / "x.ct") == (seq, pairs)
    write_dot_bracket(tmp_path / "x.db", seq, pairs, "t")
    assert (tmp_path / "x.db").read_text().splitlines() == [">t", seq, "(((...)))"]
    assert read_dot_bracket(tmp_path / "x.db") == ("t", seq, pairs)
    (tmp_path / "r.db").write_text("GGGAAACCC\n(((...))) (-1.20)\n")
    assert read_dot_bracket(tmp_path / "r.db") == ("", seq, pairs)
    (tmp_path / "bad.db").write_text("GGGAAACCC\n(((...)\n")
    with pytest.raises(ValueError, match="length"):
        read_dot_bracket(tmp_path / "bad.db")
    with pytest.raises(ValueError, match="paired twice"):
        write_ct(tmp_path / "y.ct", seq, [(1, 9), (1, 8)])


def test_fasta(tmp_path):
    p = tmp_path / "a.fa"
    p.write_text(">one\nggu\nACT\n>two\nAAA\n")
    assert read_fasta(p) == [("one", "GGUACU"), ("two", "AAA")]
    p.write_text(">bad\nACGN\n")
    with pytest.raises(ValueError, match="other than ACGU"):
        read_fasta(p)


@needs_data
def test_published_files():
    seq, pairs = read_ct(CS2BPS / "test_miR20b" / "2N7X-2D-ct.txt")
    assert seq == read_fasta(CS2BPS / "test_miR20b" / "mir20b.fasta")[0][1]
    assert dot_bracket(pairs, len(seq)) == "(((((..((.....))..)))))"
    df = read_shifts(CS2BPS / "test_miR20b" / "measured_shifts_2N7X.dat")
    assert len(df) == 328 and set(df["nucleus"]) <= set(NUCLEI) | {"H1", "H3", "N1", "N3"}
    fsw = read_shifts(CS2BPS / "test_fsw" / "measured_shifts_apo_GUA.dat")
    assert len(fsw) == 48 and set(fsw["resname"]) == {"G"} and fsw["error"].isna().all()
