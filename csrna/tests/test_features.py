"""Tests for csrna.fold.features: the exact 71-feature layout of the published networks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _fold_data import CS2BPS, needs_data

from csrna.fold.features import (
    N_FEATURES,
    feature_names,
    neighbour_table,
    raw_features,
    read_ss_table_0,
    read_ss_table_1,
    scale_features,
    scaling_stats,
)
from csrna.io.nuclei import NUCLEI


def test_feature_layout():
    names = feature_names()
    assert N_FEATURES == 71 == len(names)
    assert names[0] == "C1'_prev" and names[19] == "C1'_own" and names[56] == "H8_next"
    assert names[57:] == ["prev_A", "prev_C", "prev_G", "prev_None", "prev_U",
                          "own_A", "own_C", "own_G", "own_U",
                          "next_A", "next_C", "next_G", "next_None", "next_U"]


def _toy() -> pd.DataFrame:
    rows = []
    for resid, name in ((1, "G"), (2, "A"), (3, "U"), (5, "C")):  # residue 4 missing: a gap
        rows.append({"resid": resid, "resname": name, **{n: resid * 100.0 + k
                                                        for k, n in enumerate(NUCLEI)}})
    return pd.DataFrame(rows)


def test_neighbour_table_reuses_own_shifts_at_ends_and_gaps():
    t = neighbour_table(_toy())
    assert t["prev"].tolist() == ["None", "G", "A", "None"]
    assert t["next"].tolist() == ["A", "U", "None", "None"]
    raw = raw_features(t)
    assert raw.shape == (4, 71)
    assert raw[0, 0] == 100.0 and raw[0, 19] == 100.0 and raw[0, 38] == 200.0  # G1: own as prev
    assert raw[2, 38] == 300.0 and raw[3, 0] == 500.0  # U3 has no i+1, C5 has no i-1
    assert raw[0, 57:].tolist() == [0, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0]


def test_scaling_uses_n_minus_1_std_and_leaves_one_hot():
    raw = raw_features(neighbour_table(_toy()))
    mean, std = scaling_stats(raw)
    assert np.allclose(std, raw[:, :57].std(axis=0, ddof=1))
    x = scale_features(raw, mean, std)
    assert np.allclose(x[:, :57].mean(axis=0), 0) and np.allclose(x[:, :57].std(0, ddof=1), 1)
    assert np.array_equal(x[:, 57:], raw[:, 57:])


@needs_data
def test_features_reproduce_published_neighbour_table():
    t0 = read_ss_table_0(CS2BPS / "ss_table_0.txt")
    t1 = read_ss_table_1(CS2BPS / "ss_table_1.txt")
    assert (t0["class"].to_numpy() == t1["class"].to_numpy()).all()
    ours = pd.concat([neighbour_table(g).assign(id=k) for k, g in t0.groupby("id", sort=False)])
    merged = t1[["id", "resid"]].merge(ours, on=["id", "resid"], how="left")
    assert len(merged) == 3352
    assert np.array_equal(raw_features(merged), raw_features(t1))


@needs_data
def test_published_networks_pin_feature_order_and_class_meaning():
    """The published Keras networks only reproduce the labels with this exact layout."""
    pytest.importorskip("h5py")
    from csrna.fold.classifier import load_published_ensemble

    t1 = read_ss_table_1(CS2BPS / "ss_table_1.txt")
    ens = load_published_ensemble(CS2BPS / "models", CS2BPS / "ss_table_1.txt")
    raw = raw_features(t1)
    y = t1["class"].to_numpy()
    acc = ((ens.predict(raw) > 0.5) == y).mean()
    assert acc > 0.97  # class 1 (unpaired) is the sigmoid output
    swapped = raw.copy()
    swapped[:, :19], swapped[:, 38:57] = raw[:, 38:57], raw[:, :19]  # next <-> prev
    swapped[:, 57:62], swapped[:, 66:71] = raw[:, 66:71], raw[:, 57:62]
    assert ((ens.predict(swapped) > 0.5) == y).mean() < acc - 0.03
    unscaled = ens.nets[0].predict(raw)
    assert ((unscaled > 0.5) == y).mean() < 0.8  # z-scoring is required
