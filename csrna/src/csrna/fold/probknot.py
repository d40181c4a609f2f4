"""ProbKnot: pseudoknotted structures from base-pair probabilities (Bellaousov & Mathews,
RNA 2010), reimplemented on a ViennaRNA pair-probability matrix.

Algorithm: residues i and j are paired when p_ij is the largest pair probability in row i and
in column j of the (symmetric) probability matrix and exceeds ``threshold``. Because each
residue has a single maximum, the result has at most one partner per residue but may contain
crossing (pseudoknotted) pairs. With ``iterations`` > 1 the assignment is repeated on the
residues still unpaired (their rows/columns restricted to unpaired partners), as in the
iterative option of the published program. Finally helices shorter than ``min_helix_length``
consecutive stacked pairs are removed (published default 3).
"""

from __future__ import annotations

import numpy as np


def probknot(bpp: np.ndarray, threshold: float = 0.0, iterations: int = 1,
             min_helix_length: int = 3) -> list[tuple[int, int]]:
    """Predict base pairs by reciprocal maximum pair probability.

    Args:
        bpp: (n, n) or (n+1, n+1) pair-probability matrix (upper or full; 1-based ViennaRNA
            matrices with an unused row/column 0 are accepted when ``bpp.shape[0] == n + 1``
            and row 0 is all zero).
        threshold: minimum probability of a selected pair.
        iterations: rounds of reciprocal-maximum selection on still-unpaired residues.
        min_helix_length: remove helices with fewer stacked pairs than this (1 keeps all).

    Returns:
        Sorted 1-based pairs ``(i, j)``, ``i < j``.
    """
    p = np.asarray(bpp, dtype=np.float64)
    if p.shape[0] != p.shape[1]:
        raise ValueError("pair-probability matrix must be square")
    if not p[0].any() and not p[:, 0].any():
        p = p[1:, 1:]
    p = np.triu(p, 1)
    p = p + p.T
    n = p.shape[0]
    paired = np.zeros(n, dtype=bool)
    pairs: set[tuple[int, int]] = set()
    for _ in range(max(iterations, 1)):
        q = p.copy()
        q[paired, :] = 0.0
        q[:, paired] = 0.0
        if not q.any():
            break
        best = q.argmax(axis=1)
        new = []
        for i in range(n):
            j = best[i]
            if i < j and best[j] == i and q[i, j] > threshold:
                new.append((i, j))
        if not new:
            break
        for i, j in new:
            pairs.add((i + 1, j + 1))
            paired[i] = paired[j] = True
    return remove_short_helices(sorted(pairs), min_helix_length)


def helices(pairs: list[tuple[int, int]]) -> list[list[tuple[int, int]]]:
    """Split pairs into helices: maximal runs of stacked pairs (i, j), (i+1, j-1), ...

    Args:
        pairs: 1-based pairs.

    Returns:
        The helices, each outermost pair first, ordered by their first pair.
    """
    pair_set = set(pairs)
    out = []
    for i, j in sorted(pair_set):
        if (i - 1, j + 1) in pair_set:
            continue  # not the start of a helix
        run = [(i, j)]
        while (run[-1][0] + 1, run[-1][1] - 1) in pair_set:
            run.append((run[-1][0] + 1, run[-1][1] - 1))
        out.append(run)
    return out


def remove_short_helices(pairs: list[tuple[int, int]], min_length: int) -> list[tuple[int, int]]:
    """Drop helices (runs of stacked pairs (i, j), (i+1, j-1), ...) shorter than ``min_length``.

    Args:
        pairs: 1-based pairs.
        min_length: minimum number of stacked pairs to keep a helix.

    Returns:
        The kept pairs, sorted.
    """
    if min_length <= 1:
        return sorted(pairs)
    return sorted(p for run in helices(pairs) if len(run) >= min_length for p in run)
