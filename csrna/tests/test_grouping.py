"""Sequence-identity groups and the nested (leave-one-group-out) threshold choice."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from csrna.grouping import group_of, identity, identity_groups


def test_identity():
    assert identity("GGGAAACCC", "GGGAAACCC") == 1.0
    assert identity("GGGAAACCC", "GGGAUACCC") == pytest.approx(8 / 9)
    # a construct with two extra residues at each end: 9 identities over a mean length of 11
    assert identity("GGGAAACCC", "AAGGGAAACCCUU") == pytest.approx(9 / 11)
    assert identity("GGGAAACCC", "CCCAAAGGG") < 0.8
    assert identity("GGGAAACCC", "") == 0.0
    # symmetric
    assert identity("ACGUACGUAA", "ACGUUCGUAA") == identity("ACGUUCGUAA", "ACGUACGUAA")


def test_identity_groups_single_linkage():
    seqs = {"a": "GGGAAACCCAAGG", "b": "GGGAAACCCAAGG", "c": "GGGAAUCCCAAGG",
            "d": "UUUUCCCCAAAAG", "e": "GCGCGCAUAUAUA"}
    groups = identity_groups(seqs, 0.8)
    assert groups == [["a", "b", "c"], ["d"], ["e"]]
    assert group_of(groups) == {"a": 0, "b": 0, "c": 0, "d": 1, "e": 2}
    assert identity_groups(seqs, 1.0) == [["a", "b"], ["c"], ["d"], ["e"]]


def test_nested_groups_never_choose_on_the_held_out_group():
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import csfold_loo

    # two grid points; point 0 is best on group 0 only, point 1 on everything else
    sp = np.zeros((2, 4, 2))
    sp[:, :, 0] = 1.0
    sp[0, :, 1] = [1.0, 1.0, 0.0, 0.0]
    sp[1, :, 1] = [0.9, 0.9, 0.5, 0.5]
    ref = sp[1]
    groups = np.array([0, 0, 1, 1])
    nested = csfold_loo.nested_groups(sp, ref, groups)
    # group 0 is scored with the point chosen on group 1 (point 1) and vice versa
    assert nested[:2, 1].tolist() == [0.9, 0.9] and nested[2:, 1].tolist() == [0.0, 0.0]
