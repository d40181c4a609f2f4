"""CS-BME pipeline: predicted shifts of a library, matching to measured shifts, figures.

Measured and predicted shifts are matched by (resid, nucleus) with nucleus names
normalised (:func:`csrna.io.nuclei.normalise_nucleus_name`); the experimental uncertainty of
each datum is the per-nucleus CS-BME value (0.86 ppm for carbons, 0.12 ppm for protons and
anything else), as in the reference implementation (the file's error column is not used).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from csrna.ensemble.library import Conformer
from csrna.ensemble.shiftpred import ShiftPredictor
from csrna.ensemble.ss_features import ss_features
from csrna.io.nuclei import normalise_nucleus_name

#: CS-BME uncertainties (ppm) by element.
UNCERTAINTY: dict[str, float] = {"C": 0.86, "H": 0.12}


def uncertainty(nucleus: str) -> float:
    """CS-BME uncertainty of a nucleus (ppm): 0.86 for carbons, 0.12 otherwise."""
    return UNCERTAINTY.get(nucleus[0].upper(), 0.12)


def predict_library(
    sequence: str,
    conformers: Sequence[Conformer],
    predictor: ShiftPredictor,
    progress: Callable[[int], None] | None = None,
) -> pd.DataFrame:
    """Predicted shifts of every conformer.

    Args:
        sequence: RNA sequence.
        conformers: the library.
        predictor: shift predictor.
        progress: called with 1 after each conformer (for progress bars).

    Returns:
        Long DataFrame ``structure, resid, resname, nucleus, shift`` (ppm).
    """
    seq = sequence.upper().replace("T", "U")
    frames = []
    for conf in conformers:
        feats = ss_features(seq, conf.pairs)
        df = predictor.predict_features(feats, list(seq))
        df.insert(0, "structure", conf.name)
        frames.append(df)
        if progress is not None:
            progress(1)
    return pd.concat(frames, ignore_index=True)


def match_observables(
    measured: pd.DataFrame, predicted: pd.DataFrame, names: Sequence[str], source: str = "shifts"
) -> tuple[pd.DataFrame, np.ndarray]:
    """Align measured shifts with the predicted shifts of every conformer.

    Args:
        measured: ``resid, nucleus, shift`` rows (duplicates averaged).
        predicted: output of :func:`predict_library`.
        names: conformer names, row order of the returned matrix.
        source: name of the measured file (for error messages).

    Returns:
        (table ``resid, nucleus, shift, sigma`` of the matched data, calc matrix
        (n_conformers, n_matched)).

    Raises:
        ValueError: no measured (resid, nucleus) is predicted, or a residue name in the
            shift file disagrees with the sequence at the same residue number.
    """
    meas = measured.copy()
    if "resname" in meas.columns and "resname" in predicted.columns:
        seq_names = predicted.groupby("resid")["resname"].first()
        for resid, name in meas.groupby("resid")["resname"].first().items():
            if resid in seq_names.index and seq_names[resid] != name:
                raise ValueError(
                    f"{source}: residue {resid} is {name} in the shift file but "
                    f"{seq_names[resid]} in the sequence; residue numbers must follow the "
                    "sequence (1-based)"
                )
    meas["nucleus"] = [normalise_nucleus_name(n) for n in meas["nucleus"]]
    meas = meas.groupby(["resid", "nucleus"], as_index=False)["shift"].mean()
    wide = predicted.pivot_table(index=["resid", "nucleus"], columns="structure", values="shift")
    wide = wide.reindex(columns=list(names))
    keys = pd.MultiIndex.from_frame(meas[["resid", "nucleus"]])
    hit = keys.isin(wide.index)
    if not hit.any():
        raise ValueError(
            f"{source}: no measured shift matches a predicted one (by residue number and "
            "nucleus); check the residue numbering and nucleus names"
        )
    meas = meas[hit].reset_index(drop=True)
    calc = wide.loc[pd.MultiIndex.from_frame(meas[["resid", "nucleus"]])].to_numpy().T
    meas["sigma"] = [uncertainty(n) for n in meas["nucleus"]]
    return meas, np.asarray(calc, dtype=np.float64)


def pair_probability_matrix(
    conformers: Sequence[Conformer], weights: np.ndarray, n: int
) -> np.ndarray:
    """Weighted base-pair probability matrix (n x n, symmetric)."""
    p = np.zeros((n, n))
    for conf, w in zip(conformers, np.asarray(weights, dtype=np.float64), strict=True):
        for i, j in conf.pairs:
            p[i - 1, j - 1] += w
            p[j - 1, i - 1] += w
    return p


def plot_pair_probabilities(
    path: str | Path, prior: np.ndarray, posterior: np.ndarray, sequence: str, title: str = ""
) -> None:
    """Save a figure: prior (lower triangle) and reweighted (upper triangle) pair probabilities.

    Uses matplotlib's object API with the Agg canvas (no pyplot global state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n = len(sequence)
    mat = np.triu(posterior, 1) + np.tril(prior, -1)
    fig = Figure(figsize=(6.5, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(mat, cmap="Blues", vmin=0, vmax=1, origin="upper")
    ax.plot([-0.5, n - 0.5], [-0.5, n - 0.5], color="0.6", lw=0.5)
    ax.set_xlabel("residue j")
    ax.set_ylabel("residue i")
    ax.set_title(title or "base-pair probability: reweighted (upper) / prior (lower)", fontsize=9)
    if n <= 60:
        ax.set_xticks(range(n), list(sequence), fontsize=6)
        ax.set_yticks(range(n), list(sequence), fontsize=6)
    fig.colorbar(im, ax=ax, label="probability")
    fig.tight_layout()
    from csrna.io import atomic_write

    atomic_write(path, fig.savefig)
