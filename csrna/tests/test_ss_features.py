"""Tests for csrna.ensemble.ss_features (SS2CS secondary-structure features)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csrna.ensemble.ss_features import COLUMNS, ss_features
from csrna.io import read_ct

DATA = Path(
    os.environ.get(
        "DIFFTM_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    )
)
CSBME = DATA / "rna" / "csbme"


def test_hairpin_by_hand():
    # GGAAACC  ((...))  pairs 1-7, 2-6
    f = ss_features("GGAAACC", [(1, 7), (2, 6)])
    assert list(f.columns) == list(COLUMNS)
    r1 = f.iloc[0].tolist()
    # length resid i i-1 i+1 bp(i) bp(i-1) bp(i+1) [bp-1] [bp+1] bp(bp-1) bp(bp+1)
    assert r1 == [7, 1, 2, 0, 2, 3, 0, 3, 3, 0, 2, 0]
    r2 = f.iloc[1].tolist()
    assert r2 == [7, 2, 2, 2, 1, 3, 3, 0, 1, 3, 0, 2]
    r4 = f.iloc[3].tolist()  # unpaired A: all partner columns 0
    assert r4 == [7, 4, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]


def test_bad_structure_raises():
    with pytest.raises(ValueError):
        ss_features("GGAA", [(1, 5)])
    with pytest.raises(ValueError):
        ss_features("GGAA", [(1, 3), (1, 4)])
    with pytest.raises(ValueError):
        ss_features("GGXA", [])


@pytest.mark.skipif(not CSBME.is_dir(), reason="shared csbme data not available")
def test_reproduces_published_train_x_for_native_cts():
    """Every row of train_X_NEW.csv for the 12 RNAs with a native CT (<ID>_11.ct)."""
    table = pd.read_csv(CSBME / "train_X_NEW.csv", sep=r"\s+")
    checked = 0
    for pdb in sorted(set(table["id"])):
        ct = CSBME / "cts" / f"{pdb}_11.ct"
        if not ct.is_file():
            continue
        seq, pairs = read_ct(ct)
        ours = ss_features(seq, pairs).to_numpy()
        pub = table.loc[table["id"] == pdb, list(COLUMNS)].to_numpy()
        np.testing.assert_array_equal(ours, pub, err_msg=pdb)
        checked += 1
    assert checked >= 10
