"""Tests for the CS-Fold figure."""

from __future__ import annotations

import numpy as np
import pytest

from csrna.fold.figure import plot_fold


def test_plot_fold_draws_nested_and_pseudoknotted_pairs(tmp_path):
    seq = "GGGAAACCCAGGGAAAACCCUUU"
    pairs = [(1, 9), (2, 8), (3, 7), (12, 22), (13, 21)]  # two nested hairpins
    pairs += [(5, 15), (6, 14)]  # cross both hairpins: drawn below the axis
    p = np.linspace(0, 1, len(seq))
    p[[4, 10]] = np.nan
    out = tmp_path / "fold.png"
    plot_fold(out, seq, sorted(pairs), p, title="test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_plot_fold_without_pairs_and_long_sequence(tmp_path):
    out = tmp_path / "empty.svg"
    plot_fold(out, "A" * 120, [], np.full(120, np.nan))
    assert out.read_text().lstrip().startswith("<?xml")


def test_plot_fold_rejects_wrong_length(tmp_path):
    with pytest.raises(ValueError, match="3 values for 4 residues"):
        plot_fold(tmp_path / "x.png", "ACGU", [], [0.1, 0.2, 0.3])
