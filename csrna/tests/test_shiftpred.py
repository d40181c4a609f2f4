"""Tests for csrna.ensemble.shiftpred (per-nucleus ridge shift predictor)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from csrna.ensemble import shiftpred as S
from csrna.io import read_ct

DATA = Path(
    os.environ.get(
        "DIFFTM_SHARED_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
    )
)
CSBME = DATA / "rna" / "csbme"
needs_data = pytest.mark.skipif(not CSBME.is_dir(), reason="shared csbme data not available")


def published_mae(model: S.ShiftPredictor) -> dict[str, float]:
    """Per-nucleus MAE (ppm) vs the published SS2CS predictions of all conformers of
    1HWQ, 2N7X and 2N82 (nuclei that exist in the residue type only)."""
    joined = []
    for pdb in ("1HWQ", "2N7X", "2N82"):
        pub = S.read_computed_shifts(CSBME / "computed_shifts" / f"{pdb}.csv")
        for conf in sorted(pub["conformer"].unique()):
            seq, pairs = read_ct(CSBME / "cts" / f"{pdb}_{conf}.ct")
            ours = model.predict(seq, pairs)
            j = ours.merge(pub[pub["conformer"] == conf], on=["resid", "nucleus"],
                           suffixes=("", "_pub"))
            assert (j["resname"] == j["resname_pub"]).all()
            joined.append(j)
    j = pd.concat(joined)
    return {n: float(np.mean(np.abs(g["shift"] - g["shift_pub"]))) for n, g in j.groupby("nucleus")}


def test_design_matrix_one_hot():
    f = pd.DataFrame([[2, 0, 1, 3, 0, 4, 3, 0, 2, 0]], columns=list(S.CATEGORICAL))
    x = S.design_matrix(f)
    assert x.shape == (1, S.N_DESIGN)
    assert x[0, 0] == 1
    assert x[0, 1:51].sum() == 10
    assert x[0, 51:].sum() == 45
    assert x[0, 1 + 2] == 1 and x[0, 1 + 5 + 0] == 1


def test_prediction_only_existing_nuclei():
    model = S.ShiftPredictor.load()
    out = model.predict("GACU", [(1, 4)])
    per_res = out.groupby("resid")["nucleus"].apply(set).to_dict()
    assert per_res[1] == set(S.RESIDUE_NUCLEI["G"])
    assert per_res[2] == set(S.RESIDUE_NUCLEI["A"])
    assert "H8" not in per_res[3] and "H5" in per_res[3]
    h1 = out[out["nucleus"] == "H1'"]["shift"]
    c1 = out[out["nucleus"] == "C1'"]["shift"]
    assert h1.between(5.0, 6.5).all() and c1.between(88, 96).all()


@needs_data
def test_mae_vs_published_predictions_is_bounded():
    """Our predictor vs SS2CS's published predictions (conformers of 1HWQ, 2N7X, 2N82).

    Bound: for every nucleus the MAE between the two predictors must stay below our own
    cross-validated MAE vs measured shifts plus 0.1 ppm (carbons) / 0.03 ppm (protons): two
    regressors of the same data should not disagree more than either errs; and the mean over
    carbons / protons must stay below the CS-BME uncertainties (0.86 / 0.12 ppm).
    """
    model = S.ShiftPredictor.load()
    mae = published_mae(model)
    assert set(mae) == set(S.NUCLEI)
    for nuc, v in mae.items():
        slack = 0.1 if nuc.startswith("C") else 0.03
        assert v < model.cv_mae[nuc] + slack, (nuc, v, model.cv_mae[nuc])
    assert np.mean([v for n, v in mae.items() if n.startswith("C")]) < 0.86
    assert np.mean([v for n, v in mae.items() if n.startswith("H")]) < 0.12


@pytest.mark.slow
@needs_data
def test_training_reproduces_shipped_weights():
    fresh = S.train_published(DATA)
    shipped = S.ShiftPredictor.load()
    for nuc in S.NUCLEI:
        np.testing.assert_allclose(fresh.coef[nuc], shipped.coef[nuc], atol=1e-4)
