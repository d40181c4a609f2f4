"""Tests for csrna.fold.folding (ViennaRNA candidates, pseudo-energies) and csrna.fold.probknot."""

from __future__ import annotations

import math

import numpy as np
import RNA

from csrna.fold.folding import (
    fold_candidates,
    free_energy,
    mfe_structure,
    nested_part,
    pair_probabilities,
    restrained_compound,
)
from csrna.fold.probknot import helices, probknot, remove_short_helices
from csrna.io import dot_bracket, pairs_from_dot_bracket

FSW = "GGCGAUGGUGUUCGCCAUAAACGCUCUUCGGAGCUAAUGACACCUAC"


def _matrix(n: int, pairs: dict[tuple[int, int], float]) -> np.ndarray:
    p = np.zeros((n, n))
    for (i, j), v in pairs.items():
        p[i - 1, j - 1] = p[j - 1, i - 1] = v
    return p


def test_probknot_reciprocal_maximum_and_pseudoknot():
    # helix 1-3/10-8 and a crossing helix 5-7/14-12; a weaker competitor of residue 1
    pairs = {(1, 10): 0.9, (2, 9): 0.9, (3, 8): 0.8, (5, 14): 0.7, (6, 13): 0.7, (7, 12): 0.6,
             (1, 14): 0.3, (4, 11): 0.2}
    out = probknot(_matrix(14, pairs), min_helix_length=1)
    assert (1, 14) not in out  # not the maximum of row 1
    assert {(1, 10), (2, 9), (3, 8), (5, 14), (6, 13), (7, 12), (4, 11)} == set(out)
    assert "[" in dot_bracket(out, 14)  # crossing pairs kept
    assert (4, 11) not in probknot(_matrix(14, pairs), min_helix_length=3)
    assert (4, 11) not in probknot(_matrix(14, pairs), threshold=0.25, min_helix_length=1)
    # 1-based ViennaRNA matrices with an empty row/column 0 are accepted
    padded = np.zeros((15, 15))
    padded[1:, 1:] = np.triu(_matrix(14, pairs))
    assert probknot(padded) == probknot(_matrix(14, pairs))


def test_probknot_iterations_pair_leftover_residues():
    # residue 2's best partner (5) prefers residue 1, so 2-6 is found only on a 2nd pass
    p = _matrix(8, {(1, 5): 0.8, (2, 5): 0.6, (2, 6): 0.5})
    assert probknot(p, min_helix_length=1) == [(1, 5)]
    assert probknot(p, iterations=2, min_helix_length=1) == [(1, 5), (2, 6)]


def test_remove_short_helices():
    pairs = [(1, 20), (2, 19), (3, 18), (6, 12), (7, 11)]
    assert remove_short_helices(pairs, 3) == [(1, 20), (2, 19), (3, 18)]
    assert remove_short_helices(pairs, 1) == pairs
    assert helices(pairs[::-1]) == [[(1, 20), (2, 19), (3, 18)], [(6, 12), (7, 11)]]


def test_deigan_pseudo_energy_per_nucleotide_of_each_stacked_pair():
    seq = "GGGGAAACCCC"
    db = "((((...))))"
    p = np.linspace(0.05, 0.95, len(seq))
    g = 1.8 * np.log(p + 1.0) - 0.6
    pairs = pairs_from_dot_bracket(db)
    pair_set = set(pairs)
    expected = 0.0
    for i, j in pairs:  # one stack per pair (i, j) enclosing (i+1, j-1)
        if (i + 1, j - 1) in pair_set:
            expected += g[i - 1] + g[j - 1] + g[i] + g[j - 2]
    plain = RNA.fold_compound(seq).eval_structure(db)
    restrained = restrained_compound(seq, p, 1.8, -0.6).eval_structure(db)
    assert math.isclose(restrained - plain, expected, abs_tol=0.02)  # energies in dcal/mol
    # NaN = no data: no pseudo-energy
    nan_p = np.full(len(seq), np.nan)
    assert math.isclose(restrained_compound(seq, nan_p, 1.8, -0.6).eval_structure(db), plain)


def test_restraints_open_a_helix_called_unpaired():
    seq = "GUGUGAAAACACAAAAGGGGAAACCCC"
    pairs0, _ = mfe_structure(seq)
    assert (1, 12) in pairs0
    p = np.zeros(len(seq))
    p[:12] = 1.0  # everything of the first (G-U rich) hairpin called unpaired
    cands = fold_candidates(seq, p)
    assert [c.name for c in cands] == ["mfe+cs", "mea+cs", "probknot+cs", "mfe", "mea",
                                       "probknot"]
    assert cands[0].pairs == ((17, 27), (18, 26), (19, 25), (20, 24))
    assert cands[3].pairs == tuple(pairs0)
    # candidate energies are unrestrained energies
    assert math.isclose(cands[0].energy, free_energy(seq, cands[0].pairs))


def test_pair_probabilities_and_pseudoknot_energy():
    p = pair_probabilities(FSW)
    assert p.shape == (47, 47) and np.allclose(p, p.T) and (p.sum(axis=1) <= 1 + 1e-9).all()
    pk = fold_candidates(FSW, None)[2]
    assert pk.method == "probknot" and "[" in dot_bracket(list(pk.pairs), 47)
    nested = nested_part(list(pk.pairs), 47)
    assert math.isclose(pk.energy, free_energy(FSW, nested))
