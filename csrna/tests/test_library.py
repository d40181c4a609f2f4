"""Tests for csrna.ensemble.library (ViennaRNA and CT conformer libraries)."""

from __future__ import annotations

import pytest

from csrna.ensemble.library import read_ct_library, sample_library
from csrna.io import write_ct

SEQ = "GGUAGUUUUGGCAUGACUCUACC"


def test_sample_library_dedup_deterministic():
    lib = sample_library(SEQ, n_samples=300, subopt_delta=1.0, seed=3)
    keys = [c.pairs for c in lib]
    assert len(keys) == len(set(keys))
    assert lib[0].source == "mfe"
    assert {c.source for c in lib} <= {"mfe", "subopt", "sample"}
    assert any(c.source == "sample" for c in lib)
    subs = [c.energy for c in lib if c.source == "subopt"]
    assert subs == sorted(subs)
    assert all(e <= lib[0].energy + 1.0 + 1e-6 for e in subs)
    again = sample_library(SEQ, n_samples=300, subopt_delta=1.0, seed=3)
    assert [c.pairs for c in again] == keys
    assert lib[0].dot_bracket(len(SEQ)) == "(((((..((.....))..)))))"


def test_sample_only_and_subopt_only():
    only_sub = sample_library(SEQ, n_samples=0, subopt_delta=0.5)
    assert all(c.source in {"mfe", "subopt"} for c in only_sub)
    only_samples = sample_library(SEQ, n_samples=50, subopt_delta=-1)
    assert {c.source for c in only_samples} <= {"mfe", "sample"}


def test_ct_library_natural_order_and_length_check(tmp_path):
    for k, pairs in ((10, [(1, 23)]), (2, [(2, 22)]), (1, [])):
        write_ct(tmp_path / f"x_{k}.ct", SEQ, pairs, f"x_{k}")
    seq, lib = read_ct_library(tmp_path, SEQ)
    assert seq == SEQ
    assert [c.name for c in lib] == ["x_1", "x_2", "x_10"]
    assert lib[2].pairs == ((1, 23),)
    write_ct(tmp_path / "x_11.ct", SEQ[:-1], [], "short")
    with pytest.raises(ValueError, match="x_11.ct"):
        read_ct_library(tmp_path, SEQ)
    with pytest.raises(FileNotFoundError):
        read_ct_library(tmp_path / "missing")
