"""Sequence-identity groups for honest benchmarks (hold out near-identical RNAs together).

Identity of two sequences: global alignment with free end gaps (match +1, mismatch -1, gap
-2), then identical aligned positions divided by the mean length of the two sequences (a
construct that contains another with a few extra residues is grouped with it, a short hairpin
is not "identical" to a long RNA that contains it); among
alignments of equal score the one with most identities is taken. RNAs are grouped by single
linkage: two RNAs at identity >= the threshold are in the same group, and so are their
partners' partners. A benchmark that holds out one group at a time never trains on a
near-copy of the RNA it scores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

MATCH, MISMATCH, GAP = 1, -1, -2


def identity(a: str, b: str) -> float:
    """Sequence identity of ``a`` and ``b`` (identical aligned positions / mean length).

    Args:
        a, b: sequences (compared letter by letter, case-sensitive).

    Returns:
        Identity in [0, 1]; 0 when either sequence is empty.
    """
    if not a or not b:
        return 0.0
    if len(a) > len(b):
        a, b = b, a
    n, m = len(a), len(b)
    # score and identities of the best alignment of a[:i] and b[:j]; free end gaps in b
    # (leading: row 0 is zero; trailing: the maximum over the last row)
    prev_s = np.zeros(m + 1)
    prev_k = np.zeros(m + 1)
    bb = np.frombuffer(b.encode(), dtype=np.uint8)
    for i in range(1, n + 1):
        same = bb == ord(a[i - 1])
        diag_s = prev_s[:-1] + np.where(same, MATCH, MISMATCH)
        diag_k = prev_k[:-1] + same
        up_s = prev_s[1:] + GAP
        up_k = prev_k[1:]
        take_up = (up_s > diag_s) | ((up_s == diag_s) & (up_k > diag_k))
        cur_s = np.empty(m + 1)
        cur_k = np.empty(m + 1)
        cur_s[0], cur_k[0] = GAP * i, 0.0  # a's leading residues against nothing
        cur_s[1:] = np.where(take_up, up_s, diag_s)
        cur_k[1:] = np.where(take_up, up_k, diag_k)
        # gaps in a (moves along b): sequential dependence, resolved in one pass
        for j in range(1, m + 1):
            s, k = cur_s[j - 1] + GAP, cur_k[j - 1]
            if s > cur_s[j] or (s == cur_s[j] and k > cur_k[j]):
                cur_s[j], cur_k[j] = s, k
        prev_s, prev_k = cur_s, cur_k
    best = max(range(m + 1), key=lambda j: (prev_s[j], prev_k[j]))
    return float(2.0 * prev_k[best] / (n + m))


def identity_groups(sequences: Mapping[str, str], threshold: float = 0.8) -> list[list[str]]:
    """Single-linkage groups of sequences at identity >= ``threshold``.

    Args:
        sequences: {name: sequence}.
        threshold: identity at or above which two sequences are linked.

    Returns:
        Groups (lists of names, each sorted), ordered by their first name; singletons
        included.
    """
    names = sorted(sequences)
    parent = {x: x for x in names}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for k, a in enumerate(names):
        for b in names[k + 1:]:
            sa, sb = sequences[a], sequences[b]
            if 2 * min(len(sa), len(sb)) < threshold * (len(sa) + len(sb)) or find(a) == find(b):
                continue  # identity over the mean length cannot reach the threshold
            if identity(sa, sb) >= threshold:
                parent[find(b)] = find(a)
    groups: dict[str, list[str]] = {}
    for x in names:
        groups.setdefault(find(x), []).append(x)
    return sorted((sorted(g) for g in groups.values()), key=lambda g: g[0])


def group_of(groups: Sequence[Sequence[str]]) -> dict[str, int]:
    """{name: index of its group}."""
    return {x: k for k, g in enumerate(groups) for x in g}
