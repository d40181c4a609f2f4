"""Secondary-structure features for chemical-shift prediction (SS2CS layout).

Per residue ``i`` (1-based) of a structure with partner map ``bp`` (``bp(k)`` = partner of
residue ``k``), the twelve columns of SS2CS's ``train_X_NEW.csv`` after ``id``:

=========================  ===================================================
``length``                 number of residues
``resid``                  i
``i_resname``              code of residue i
``i_minus_1_resname``      code of residue i-1
``i_plus_1_resname``       code of residue i+1
``i_bp_resname``           code of bp(i)
``i_minus_1_bp_resname``   code of bp(i-1)
``i_plus_1_bp_resname``    code of bp(i+1)
``i_bp_minus_1_resname``   code of residue bp(i)-1
``i_bp_plus_1_resname``    code of residue bp(i)+1
``i_bp_minus_1_bp_resname`` code of bp(bp(i)-1)
``i_bp_plus_1_bp_resname``  code of bp(bp(i)+1)
=========================  ===================================================

Residue codes: A=1, G=2, C=3, U=4; 0 = no such residue (beyond a chain end, or the
residue is unpaired). All ``i_bp_*`` columns are 0 when i is unpaired. This mapping
reproduces every row of the published table for the RNAs whose native CT we have
(``tests/test_ss_features.py``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

#: Residue codes of the SS2CS tables.
RESIDUE_CODE: dict[str, int] = {"A": 1, "G": 2, "C": 3, "U": 4}
#: Categorical feature columns (each takes values 0..4).
CATEGORICAL: tuple[str, ...] = (
    "i_resname", "i_minus_1_resname", "i_plus_1_resname", "i_bp_resname",
    "i_minus_1_bp_resname", "i_plus_1_bp_resname", "i_bp_minus_1_resname",
    "i_bp_plus_1_resname", "i_bp_minus_1_bp_resname", "i_bp_plus_1_bp_resname",
)
COLUMNS: tuple[str, ...] = ("length", "resid", *CATEGORICAL)


def partner_array(pairs: Iterable[tuple[int, int]], n: int) -> np.ndarray:
    """0-based partner of each residue (-1 = unpaired) from 1-based pairs.

    Raises:
        ValueError: a pair outside 1..n or a residue in two pairs.
    """
    pt = np.full(n, -1, dtype=int)
    for i, j in pairs:
        if not (1 <= i <= n and 1 <= j <= n) or i == j:
            raise ValueError(f"base pair ({i}, {j}) is outside a sequence of length {n}")
        if pt[i - 1] >= 0 or pt[j - 1] >= 0:
            raise ValueError(f"residue of pair ({i}, {j}) is in two base pairs")
        pt[i - 1], pt[j - 1] = j - 1, i - 1
    return pt


def ss_features(sequence: str, pairs: Iterable[tuple[int, int]]) -> pd.DataFrame:
    """SS2CS features of one secondary structure.

    Args:
        sequence: RNA sequence over A/C/G/U (T is read as U).
        pairs: 1-based base pairs ``(i, j)``.

    Returns:
        DataFrame with :data:`COLUMNS`, one row per residue (int columns).
    """
    seq = sequence.upper().replace("T", "U")
    bad = set(seq) - set(RESIDUE_CODE)
    if bad:
        raise ValueError(f"sequence contains non-ACGU letters: {''.join(sorted(bad))}")
    n = len(seq)
    pt = partner_array(pairs, n)
    codes = np.array([RESIDUE_CODE[c] for c in seq] + [0])  # index -1 / n -> 0 via padding

    def rn(k: int) -> int:
        return int(codes[k]) if 0 <= k < n else 0

    def bp(k: int) -> int:
        return rn(int(pt[k])) if 0 <= k < n and pt[k] >= 0 else 0

    rows = []
    for k in range(n):
        p = int(pt[k])
        partner = [rn(p - 1), rn(p + 1), bp(p - 1), bp(p + 1)] if p >= 0 else [0, 0, 0, 0]
        rows.append([n, k + 1, rn(k), rn(k - 1), rn(k + 1), bp(k), bp(k - 1), bp(k + 1), *partner])
    return pd.DataFrame(rows, columns=list(COLUMNS), dtype=int)
