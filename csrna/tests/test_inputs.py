"""Inputs NMR users have: NMR-STAR 3.x selection, sequence from the entry, modified residues,
NMR-STAR 2.1, duplexes, author numbering, referencing check, batch folders and outputs."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import typer
from _fold_data import CS2BPS, needs_data
from _star import entity_frame, entry, shift_frame
from typer.testing import CliRunner

from csrna.cli.fold import register
from csrna.fold.pipeline import numbering_offsets, renumber
from csrna.io import (
    clean_sequence,
    read_bpseq,
    read_ct,
    read_shift_entry,
    read_shifts,
    write_bpseq,
)
from csrna.io.referencing import apply_correction, check_referencing

MIR = CS2BPS / "test_miR20b"
MIR_SEQ = "GGUAGUUUUGGCAUGACUCUACC"


def _two_entities(tmp_path):
    text = entry(
        entity_frame(1, "strand A", ["G", "G", "PSU", "C"]),
        entity_frame(2, "strand B", ["G", "C"]),
        shift_frame(1, [(1, 1, 1, "G", "C1'", 92.5), (1, 1, 3, "PSU", "C1'", 91.0),
                        (1, 1, 4, "C", "H5", 5.3), (2, 2, 1, "G", "H8", 7.9),
                        (2, 2, 2, "C", "H5", 5.2)]))
    p = tmp_path / "two.str"
    p.write_text(text)
    return p


def test_two_entities_refused_without_entity_and_named(tmp_path):
    p = _two_entities(tmp_path)
    with pytest.raises(ValueError, match="--entity") as info:
        read_shift_entry(p)
    msg = str(info.value)
    assert "\n" not in msg and "1 'strand A'" in msg and "2 'strand B'" in msg
    with pytest.raises(ValueError, match="no entity '3'"):
        read_shift_entry(p, entity="3")


def test_entity_selection_sequence_and_modified_residue(tmp_path):
    p = _two_entities(tmp_path)
    one = read_shift_entry(p, entity="1")
    assert one.sequence == "GGUC"  # PSU folded as U
    assert one.shifts["resid"].tolist() == [1, 4] and one.modified == [(3, "PSU")]
    assert any("PSU 3" in n and "not used" in n for n in one.notes)
    assert any("Seq_ID +100" in n for n in one.notes)  # author numbering reported
    two = read_shift_entry(p, entity="2")
    assert two.sequence == "GC" and two.shifts["nucleus"].tolist() == ["H8", "H5"]


def test_two_shift_lists_refused_and_selected(tmp_path):
    text = entry(entity_frame(1, "rna", ["G", "C"]),
                 shift_frame(1, [(1, 1, 1, "G", "H8", 7.9), (1, 1, 2, "C", "H5", 5.2)]),
                 shift_frame(2, [(1, 1, 1, "G", "H8", 7.5)]))
    p = tmp_path / "lists.str"
    p.write_text(text)
    with pytest.raises(ValueError, match="2 assigned chemical-shift lists.*--list") as info:
        read_shift_entry(p)
    assert "1 (assigned_chem_shift_list_1, 2 shifts)" in str(info.value)
    assert read_shifts(p, shift_list="2")["shift"].tolist() == [7.5]
    assert read_shifts(p, shift_list="1")["shift"].tolist() == [7.9, 5.2]  # never merged
    with pytest.raises(ValueError, match="no shift list '5'"):
        read_shift_entry(p, shift_list="5")


def test_duplex_copies_of_one_entity_refused(tmp_path):
    text = entry(entity_frame(1, "self-complementary", ["G", "C"]),
                 shift_frame(1, [(1, 1, 1, "G", "H8", 7.9), (1, 2, 1, "G", "H8", 7.8)]))
    p = tmp_path / "duplex.str"
    p.write_text(text)
    with pytest.raises(ValueError, match="duplex"):
        read_shift_entry(p)
    with pytest.raises(ValueError, match="duplex"):
        clean_sequence("GGAC&GUCC")


def test_nmrstar_21_refused_with_clear_message(tmp_path):
    p = tmp_path / "old.str"
    p.write_text("data_4000\nsave_shifts\n   loop_\n      _Atom_shift_assign_ID\n"
                 "      _Residue_seq_code\n      _Residue_label\n      _Atom_name\n"
                 "      _Chem_shift_value\n      1 1 G H8 7.9\n   stop_\nsave_\n")
    with pytest.raises(ValueError, match="NMR-STAR 2.1 is not supported") as info:
        read_shifts(p)
    assert "\n" not in str(info.value)


def test_repeated_entries_in_a_table_are_reported(tmp_path):
    p = tmp_path / "dup.dat"
    p.write_text("G 1 C8 137.0 .\nG 1 C8 138.0 .\nC 2 H5 5.2 .\n")
    assert any("1 repeated" in n for n in read_shift_entry(p).notes)


def test_bpseq_roundtrip(tmp_path):
    seq, pairs = "GGGAAACCCA", [(1, 9), (2, 8), (3, 7)]
    write_bpseq(tmp_path / "x.bpseq", seq, pairs, "title")
    lines = (tmp_path / "x.bpseq").read_text().splitlines()
    assert lines[0] == "# title" and lines[1] == "1 G 9" and lines[10] == "10 A 0"
    assert read_bpseq(tmp_path / "x.bpseq") == (seq, pairs)


def test_numbering_offsets():
    import pandas as pd

    shifts = pd.DataFrame({"resname": list("GUA"), "resid": [22, 23, 24],
                           "nucleus": ["H8"] * 3, "shift": [7.0] * 3, "error": [np.nan] * 3})
    assert numbering_offsets(shifts, "CCGUAC") == [19]
    assert renumber(shifts, 19)["resid"].tolist() == [3, 4, 5]


@needs_data
def test_referencing_check_flags_a_carbon_offset():
    shifts = read_shifts(MIR / "measured_shifts_2N7X.dat")
    assert not any(c.flagged for c in check_referencing(shifts))
    bad = shifts.copy()
    carbons = bad["nucleus"].str.startswith("C")
    bad.loc[carbons, "shift"] -= 2.0
    offsets = check_referencing(bad)
    flagged = {c.name: c for c in offsets if c.flagged}
    assert set(flagged) == {"sugar carbons", "base carbons"}
    assert flagged["sugar carbons"].correction == pytest.approx(-2.0, abs=0.3)
    fixed = apply_correction(bad, offsets)
    assert not any(c.flagged for c in check_referencing(fixed))
    assert np.abs(fixed["shift"] - shifts["shift"]).max() < 0.3


# ---- command line -------------------------------------------------------------------------

@pytest.fixture()
def app() -> typer.Typer:
    application = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(application)
    return application


def _run(app, args):
    return CliRunner().invoke(app, ["fold", *[str(a) for a in args]])


def _mir_entry(tmp_path):
    """2N7X's shifts as entity 1 of a two-entity NMR-STAR entry (entity 2: a short strand)."""
    s = read_shifts(MIR / "measured_shifts_2N7X.dat")
    rows = [(1, 1, int(r.resid), r.resname, r.nucleus, r.shift) for r in s.itertuples()]
    rows += [(2, 2, 1, "G", "H8", 7.9), (2, 2, 2, "C", "H5", 5.2)]
    p = tmp_path / "mir.str"
    p.write_text(entry(entity_frame(1, "miR-20b", list(MIR_SEQ)),
                       entity_frame(2, "other", ["G", "C"]), shift_frame(1, rows)))
    return p


@needs_data
def test_cli_two_entities_select_and_refuse(app, tmp_path):
    star = _mir_entry(tmp_path)
    res = _run(app, [star, "--output", tmp_path / "a.ct"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error:")
    assert "--entity" in lines[0] and "miR-20b" in lines[0] and "'other'" in lines[0]
    assert not (tmp_path / "a.ct").exists()
    res = _run(app, [star, "--entity", "1", "--output", tmp_path / "a.ct"])  # no --sequence
    assert res.exit_code == 0, res.output
    assert read_ct(tmp_path / "a.ct") == read_ct(MIR / "2N7X-2D-ct.txt")
    assert read_bpseq(tmp_path / "a.bpseq") == read_ct(MIR / "2N7X-2D-ct.txt")
    table = (tmp_path / "a_probabilities.tsv").read_text().splitlines()
    header = table[0].split("\t")
    assert "pair_probability" in header
    k = header.index("pair_probability")
    conf = [row.split("\t")[k] for row in table[1:]]
    partner = [int(row.split("\t")[header.index("partner")]) for row in table[1:]]
    assert all((c == "NA") == (p == 0) for c, p in zip(conf, partner, strict=True))
    assert all(0.5 < float(c) <= 1.0 for c in conf if c != "NA")
    res = _run(app, [star, "--entity", "1", "--output", tmp_path / "a.ct"])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = _run(app, [star, "--entity", "1", "--output", tmp_path / "a.ct", "--overwrite"])
    assert res.exit_code == 0, res.output


@needs_data
def test_cli_author_numbering_hint_and_offset(app, tmp_path):
    s = read_shifts(MIR / "measured_shifts_2N7X.dat")
    p = tmp_path / "auth.dat"
    p.write_text("".join(f"{r.resname} {r.resid + 40} {r.nucleus} {r.shift}\n"
                         for r in s.itertuples()))
    res = _run(app, [p, "--sequence", MIR_SEQ, "--output", tmp_path / "o.ct"])
    assert res.exit_code == 2 and "--residue-offset 40" in res.output
    res = _run(app, [p, "--sequence", MIR_SEQ, "--residue-offset", "40",
                     "--output", tmp_path / "o.ct"])
    assert res.exit_code == 0, res.output
    assert read_ct(tmp_path / "o.ct") == read_ct(MIR / "2N7X-2D-ct.txt")


@needs_data
def test_cli_reference_warning_and_correction(app, tmp_path):
    s = read_shifts(MIR / "measured_shifts_2N7X.dat")
    s.loc[s["nucleus"].str.startswith("C"), "shift"] -= 2.0
    p = tmp_path / "offset.dat"
    p.write_text("".join(f"{r.resname} {r.resid} {r.nucleus} {r.shift:.3f}\n"
                         for r in s.itertuples()))
    res = _run(app, [p, "--sequence", MIR_SEQ, "--output", tmp_path / "w.ct"])
    assert res.exit_code == 0 and "warning:" in res.output and "mis-referenced" in res.output
    assert "referencing corrected" not in res.output
    res = _run(app, [p, "--sequence", MIR_SEQ, "--output", tmp_path / "c.ct",
                     "--reference-correct"])
    assert res.exit_code == 0 and "referencing corrected" in res.output


@needs_data
def test_cli_batch_on_the_shipped_example_folder_skips_ct_files(app, tmp_path):
    folder = tmp_path / "miR20b"
    shutil.copytree(MIR, folder)
    res = _run(app, [folder, "--sequence", folder / "mir20b.fasta",
                     "--output", tmp_path / "out"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "out").glob("*.ct")) == [
        "measured_shifts_2N7X.ct", "measured_shifts_2N82.ct"]
    assert "skipped" in res.output and "2N7X-2D-ct.txt" in res.output
    assert "2 files skipped" in res.output


@needs_data
def test_cli_pseudoknot_energy_is_labelled_nested_part(app, tmp_path):
    fsw = CS2BPS / "test_fsw"
    res = _run(app, [fsw / "measured_shifts_apo_GUA.dat", "--sequence", fsw / "fsw.fasta",
                     "--output", tmp_path / "apo.ct"])
    assert res.exit_code == 0, res.output
    assert "nested part only" in res.output
    assert "nested part only" in (tmp_path / "apo.ct").read_text().splitlines()[0]
    cands = (tmp_path / "apo_candidates.tsv").read_text()
    assert "energy_nested_part_only" in cands


def test_cli_duplex_fasta_refused(app, tmp_path):
    (tmp_path / "s.dat").write_text("G 1 H8 7.9 .\n")
    (tmp_path / "d.fasta").write_text(">a\nGGAC\n>b\nGUCC\n")
    res = _run(app, [tmp_path / "s.dat", "--sequence", tmp_path / "d.fasta",
                     "--output", tmp_path / "o.ct"])
    assert res.exit_code == 2 and "duplex" in res.output
    res = _run(app, [tmp_path / "s.dat", "--sequence", "GGAC&GUCC",
                     "--output", tmp_path / "o.ct"])
    assert res.exit_code == 2 and "duplex" in res.output


@needs_data
def test_annotate_reads_entity_and_refuses_overwrite(tmp_path):
    from csrna.cli import app as csrna_app

    star = _mir_entry(tmp_path)
    out = tmp_path / "ann.csv"
    runner = CliRunner()
    res = runner.invoke(csrna_app, ["annotate", str(star), "--output", str(out)])
    assert res.exit_code == 2 and "--entity" in res.output and not out.exists()
    res = runner.invoke(csrna_app, ["annotate", str(star), "--entity", "1", "--output", str(out)])
    assert res.exit_code == 0, res.output
    header = out.read_text().splitlines()[0].split(",")
    assert {"pucker", "pucker_probability"} <= set(header)
    res = runner.invoke(csrna_app, ["annotate", str(star), "--entity", "1", "--output", str(out)])
    assert res.exit_code == 2 and "--overwrite" in res.output


def test_cli_two_shift_lists_refused_naming_them(app, tmp_path):
    text = entry(entity_frame(1, "rna", ["G", "C"]),
                 shift_frame(1, [(1, 1, 1, "G", "H8", 7.9), (1, 1, 2, "C", "H5", 5.2)]),
                 shift_frame(2, [(1, 1, 1, "G", "H8", 7.5)]))
    p = tmp_path / "lists.str"
    p.write_text(text)
    res = _run(app, [p, "--output", tmp_path / "o.ct"])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "--list" in lines[0]
    assert "assigned_chem_shift_list_1" in lines[0] and "assigned_chem_shift_list_2" in lines[0]


def test_bme_refuses_an_ambiguous_entry(tmp_path):
    from csrna.cli import app as csrna_app

    p = _two_entities(tmp_path)
    res = CliRunner().invoke(csrna_app, ["bme", str(p), "--output", str(tmp_path / "o")])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and "--entity" in lines[0]
    assert not (tmp_path / "o").exists()
