"""Secondary-structure candidates with ViennaRNA, optionally restrained by P(unpaired).

Restraints: the classifier's P(unpaired) enters as SHAPE-like pseudo-free energies with the
Deigan et al. (2009) formula dG_i = m ln(P_i + 1) + b (published CS-Fold: m = 1.8,
b = -0.6 kcal/mol), through ViennaRNA's ``fold_compound.sc_add_SHAPE_deigan``. This is the same
mechanism as RNAstructure's ``-sh -sm -si`` options: the term is added for each nucleotide of
every *stacked* base pair (so an interior pair of a helix receives it twice, a helix-terminal
pair once). Residues without a probability (no shifts) get no term.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import RNA

from csrna.fold.probknot import probknot
from csrna.io import dot_bracket, pairs_from_dot_bracket

PUBLISHED_SLOPE = 1.8
PUBLISHED_INTERCEPT = -0.6


@dataclass(frozen=True)
class Candidate:
    """One candidate structure.

    Attributes:
        method: ``mfe``, ``mea`` or ``probknot``.
        restrained: folded with the shift-derived pseudo-energies.
        pairs: 1-based base pairs.
        energy: free energy (kcal/mol) of the structure without restraints (Turner 2004,
            37 C); pseudoknotted pairs are evaluated on their nested part (the crossing pairs
            placed at higher bracket levels add no energy, documented limitation).
    """

    method: str
    restrained: bool
    pairs: tuple[tuple[int, int], ...]
    energy: float

    @property
    def name(self) -> str:
        """Short label such as ``mfe+cs`` or ``probknot``."""
        return self.method + ("+cs" if self.restrained else "")


def restrained_compound(sequence: str, p_unpaired: Sequence[float] | None, slope: float,
                        intercept: float) -> RNA.fold_compound:
    """ViennaRNA fold compound with the Deigan pseudo-energies of P(unpaired) (None: plain).

    Args:
        sequence: RNA sequence over ACGU.
        p_unpaired: per-nucleotide P(unpaired), NaN where unknown (no term), or None.
        slope, intercept: pseudo-energy parameters (kcal/mol).

    Returns:
        The compound (unique multiloop decomposition, ready for mfe/pf/subopt).
    """
    md = RNA.md()
    md.uniq_ML = 1
    fc = RNA.fold_compound(sequence, md)
    if p_unpaired is not None:
        p = np.asarray(p_unpaired, dtype=np.float64)
        if len(p) != len(sequence):
            raise ValueError("p_unpaired must have one value per nucleotide (NaN if unknown)")
        reactivities = [-1.0] + [float(v) if np.isfinite(v) else -1.0 for v in p]
        fc.sc_add_SHAPE_deigan(reactivities, slope, intercept)
    return fc


def nested_part(pairs: Sequence[tuple[int, int]], n: int) -> list[tuple[int, int]]:
    """The pairs written with ``()`` in :func:`csrna.io.dot_bracket` (a pseudoknot-free subset).

    Args:
        pairs: 1-based pairs.
        n: sequence length.

    Returns:
        Sorted nested pairs.
    """
    db = dot_bracket(list(pairs), n)
    return pairs_from_dot_bracket("".join(c if c in "()." else "." for c in db))


def free_energy(sequence: str, pairs: Sequence[tuple[int, int]]) -> float:
    """Free energy (kcal/mol) of a structure without restraints (nested part only).

    Args:
        sequence: RNA sequence.
        pairs: 1-based pairs.

    Returns:
        ViennaRNA ``eval_structure`` energy.
    """
    fc = RNA.fold_compound(sequence)
    return float(fc.eval_structure(dot_bracket(nested_part(pairs, len(sequence)),
                                               len(sequence))))


def pair_probabilities(sequence: str, p_unpaired: Sequence[float] | None = None,
                       slope: float = PUBLISHED_SLOPE,
                       intercept: float = PUBLISHED_INTERCEPT) -> np.ndarray:
    """Base-pair probability matrix from the (optionally restrained) partition function.

    Args:
        sequence: RNA sequence over ACGU.
        p_unpaired: per-nucleotide P(unpaired) or None for no restraints.
        slope, intercept: pseudo-energy parameters (kcal/mol).

    Returns:
        (n, n) symmetric float64 matrix, 0-based.
    """
    fc = restrained_compound(sequence, p_unpaired, slope, intercept)
    _, mfe = fc.mfe()
    fc.exp_params_rescale(mfe)
    fc.pf()
    p = np.array(fc.bpp(), dtype=np.float64)[1:, 1:]
    return p + p.T


def fold_candidates(sequence: str, p_unpaired: Sequence[float] | None,
                    slope: float = PUBLISHED_SLOPE, intercept: float = PUBLISHED_INTERCEPT,
                    gamma: float = 1.0, probknot_iterations: int = 1,
                    probknot_min_helix: int = 3) -> list[Candidate]:
    """The six CS-Fold candidates: MFE, MEA and ProbKnot, with and without restraints.

    Args:
        sequence: RNA sequence over ACGU.
        p_unpaired: per-nucleotide P(unpaired) (NaN where unknown); None gives only the three
            unrestrained candidates.
        slope, intercept: pseudo-energy parameters (kcal/mol).
        gamma: MEA weight of paired vs unpaired accuracy (RNAstructure MaxExpect default 1).
        probknot_iterations, probknot_min_helix: ProbKnot options.

    Returns:
        Candidates in the order mfe+cs, mea+cs, probknot+cs, mfe, mea, probknot.
    """
    out = []
    settings = [(True, p_unpaired), (False, None)] if p_unpaired is not None else [(False, None)]
    for restrained, prob in settings:
        fc = restrained_compound(sequence, prob, slope, intercept)
        db_mfe, mfe = fc.mfe()
        fc.exp_params_rescale(mfe)
        fc.pf()
        db_mea, _ = fc.MEA(gamma)
        bpp = np.array(fc.bpp(), dtype=np.float64)
        pk = probknot(bpp, iterations=probknot_iterations, min_helix_length=probknot_min_helix)
        for method, pairs in (("mfe", pairs_from_dot_bracket(db_mfe)),
                              ("mea", pairs_from_dot_bracket(db_mea)), ("probknot", pk)):
            out.append(Candidate(method, restrained, tuple(pairs), free_energy(sequence, pairs)))
    return out


def mfe_structure(sequence: str) -> tuple[list[tuple[int, int]], float]:
    """Plain ViennaRNA MFE structure (the no-shift baseline).

    Args:
        sequence: RNA sequence.

    Returns:
        (pairs, energy kcal/mol).
    """
    db, e = RNA.fold_compound(sequence).mfe()
    return pairs_from_dot_bracket(db), float(e)
