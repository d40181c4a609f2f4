"""Chemical-shift prediction from secondary structure (our SS2CS-style regressor).

Design matrix (see :func:`design_matrix`): one-hot of the ten categorical
:mod:`csrna.ensemble.ss_features` columns (5 levels each: 0 = none, A, G, C, U) plus all pairwise
interactions of those one-hots (45 column pairs x 25 level pairs) and an intercept; one
ridge regressor per nucleus (closed form, numpy), the ridge strength chosen per nucleus by
5-fold cross-validation grouped by RNA. Trained on the SS2CS feature table
(``train_X_NEW.csv``, 108 RNAs) joined by (id, resid) with the measured, reference-corrected
shifts of ``cs2bps/shifts_corrected`` (only nuclei that exist in the residue type).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from itertools import combinations
from pathlib import Path

import numpy as np
import pandas as pd

from csrna.ensemble.ss_features import CATEGORICAL, ss_features

#: Nuclei predicted, in output order.
NUCLEI: tuple[str, ...] = (
    "C1'", "C2'", "C3'", "C4'", "C5'", "C2", "C5", "C6", "C8",
    "H1'", "H2'", "H3'", "H4'", "H2", "H5", "H5'", "H5''", "H6", "H8",
)
_SUGAR = ("C1'", "C2'", "C3'", "C4'", "C5'", "H1'", "H2'", "H3'", "H4'", "H5'", "H5''")
#: Nuclei present in each residue type (one-letter codes).
RESIDUE_NUCLEI: dict[str, tuple[str, ...]] = {
    "A": (*_SUGAR, "C2", "C8", "H2", "H8"),
    "G": (*_SUGAR, "C8", "H8"),
    "C": (*_SUGAR, "C5", "C6", "H5", "H6"),
    "U": (*_SUGAR, "C5", "C6", "H5", "H6"),
}
MODEL_FILE = "ss2cs_ridge.npz"
ALPHAS: tuple[float, ...] = (1.0, 3.0, 10.0, 30.0, 100.0)
_PAIRS = tuple(combinations(range(len(CATEGORICAL)), 2))
N_DESIGN = 1 + 5 * len(CATEGORICAL) + 25 * len(_PAIRS)


def design_matrix(features: pd.DataFrame) -> np.ndarray:
    """Ridge design matrix from SS2CS feature rows.

    Args:
        features: DataFrame with the :data:`csrna.ensemble.ss_features.CATEGORICAL` columns (0..4).

    Returns:
        (n, N_DESIGN) float64: intercept, one-hots, pairwise one-hot products.
    """
    cat = features[list(CATEGORICAL)].to_numpy(dtype=int)
    if cat.size and (cat.min() < 0 or cat.max() > 4):
        raise ValueError("SS2CS feature codes must be in 0..4")
    n = cat.shape[0]
    x = np.zeros((n, N_DESIGN))
    x[:, 0] = 1.0
    rows = np.arange(n)
    for c in range(cat.shape[1]):
        x[rows, 1 + 5 * c + cat[:, c]] = 1.0
    base = 1 + 5 * len(CATEGORICAL)
    for k, (a, b) in enumerate(_PAIRS):
        x[rows, base + 25 * k + 5 * cat[:, a] + cat[:, b]] = 1.0
    return x


def _ridge_from_gram(gram: np.ndarray, xty: np.ndarray, alpha: float) -> np.ndarray:
    """Ridge coefficients from ``X^T X`` and ``X^T y``; the intercept (column 0) is not
    penalised."""
    pen = np.full(gram.shape[0], alpha)
    pen[0] = 1e-9
    return np.linalg.solve(gram + np.diag(pen), xty)


@dataclass
class ShiftPredictor:
    """Per-nucleus ridge regressors.

    Attributes:
        coef: {nucleus: (N_DESIGN,) coefficients}.
        alpha: {nucleus: chosen ridge strength}.
        cv_mae: {nucleus: cross-validated MAE vs measured shifts, ppm}.
    """

    coef: dict[str, np.ndarray]
    alpha: dict[str, float]
    cv_mae: dict[str, float]

    def predict_features(self, features: pd.DataFrame, resnames: Iterable[str]) -> pd.DataFrame:
        """Predict shifts for feature rows.

        Args:
            features: SS2CS feature rows (with ``resid``).
            resnames: one-letter residue name per row.

        Returns:
            Long DataFrame ``resid, resname, nucleus, shift`` (ppm), only nuclei that exist
            in the residue type, residue-major, nuclei in :data:`NUCLEI` order.
        """
        x = design_matrix(features)
        pred = {nuc: x @ self.coef[nuc] for nuc in NUCLEI}
        out = []
        for k, (resid, rn) in enumerate(zip(features["resid"], resnames, strict=True)):
            for nuc in NUCLEI:
                if nuc in RESIDUE_NUCLEI[rn]:
                    out.append((int(resid), rn, nuc, float(pred[nuc][k])))
        return pd.DataFrame(out, columns=["resid", "resname", "nucleus", "shift"])

    def predict(self, sequence: str, pairs: Iterable[tuple[int, int]]) -> pd.DataFrame:
        """Predict shifts of one secondary structure (see :meth:`predict_features`)."""
        seq = sequence.upper().replace("T", "U")
        return self.predict_features(ss_features(seq, pairs), list(seq))

    def save(self, path: str | Path) -> None:
        """Save coefficients (float32), alphas and CV errors to ``.npz``."""
        np.savez_compressed(
            path,
            nuclei=np.array(NUCLEI),
            coef=np.vstack([self.coef[n] for n in NUCLEI]).astype(np.float32),
            alpha=np.array([self.alpha[n] for n in NUCLEI]),
            cv_mae=np.array([self.cv_mae[n] for n in NUCLEI]),
        )

    @classmethod
    def load(cls, path: str | Path | None = None) -> ShiftPredictor:
        """Load a predictor; the shipped one when ``path`` is None."""
        if path is None:
            with resources.as_file(resources.files("csrna") / "data" / MODEL_FILE) as p:
                return cls.load(p)
        with np.load(path) as z:
            names = [str(s) for s in z["nuclei"]]
            return cls(
                coef={n: z["coef"][k].astype(np.float64) for k, n in enumerate(names)},
                alpha={n: float(z["alpha"][k]) for k, n in enumerate(names)},
                cv_mae={n: float(z["cv_mae"][k]) for k, n in enumerate(names)},
            )


def training_table(feature_file: str | Path, shift_dir: str | Path) -> pd.DataFrame:
    """Join the SS2CS feature table with measured shifts.

    Args:
        feature_file: ``train_X_NEW.csv`` (space separated, header ``id length resid ...``).
        shift_dir: folder of ``measured_shifts_<ID>.dat`` (``resname resid nucleus shift
            error``).

    Returns:
        Long DataFrame: feature columns + ``resname`` (one-letter), ``nucleus``, ``shift``,
        restricted to nuclei present in the residue type and residues whose name in the
        shift file matches the feature table's ``i_resname``.
    """
    feats = pd.read_csv(feature_file, sep=r"\s+")
    code_to_res = {1: "A", 2: "G", 3: "C", 4: "U"}
    three = {"ADE": "A", "GUA": "G", "CYT": "C", "URA": "U"}
    frames = []
    for pdb in feats["id"].unique():
        path = Path(shift_dir) / f"measured_shifts_{pdb}.dat"
        if not path.is_file():
            continue
        s = pd.read_csv(path, sep=r"\s+", header=None,
                        names=["resname", "resid", "nucleus", "shift", "error"])
        s["id"] = pdb
        frames.append(s[["id", "resid", "resname", "nucleus", "shift"]])
    shifts = pd.concat(frames, ignore_index=True)
    shifts["resname"] = shifts["resname"].map(three)
    tab = feats.merge(shifts, on=["id", "resid"], how="inner")
    tab = tab[tab["resname"] == tab["i_resname"].map(code_to_res)]
    pairs = zip(tab["resname"], tab["nucleus"], strict=True)
    keep = [nuc in RESIDUE_NUCLEI[rn] for rn, nuc in pairs]
    tab = tab[np.array(keep, dtype=bool)]
    return tab.groupby(["id", "resid", "nucleus"], as_index=False).first()


def train(table: pd.DataFrame, n_folds: int = 5, alphas: tuple[float, ...] = ALPHAS,
          seed: int = 0) -> ShiftPredictor:
    """Fit one ridge regressor per nucleus, alpha by RNA-grouped cross-validation.

    Args:
        table: output of :func:`training_table`.
        n_folds: CV folds (RNAs assigned by a seeded permutation).
        alphas: ridge strengths tried.
        seed: fold seed.

    Returns:
        :class:`ShiftPredictor`.
    """
    ids = np.array(sorted(table["id"].unique()))
    fold_of = dict(zip(ids, np.random.default_rng(seed).permutation(len(ids)) % n_folds,
                       strict=True))
    coef, alpha, cv = {}, {}, {}
    for nuc in NUCLEI:
        sub = table[table["nucleus"] == nuc]
        full = design_matrix(sub)
        used = np.flatnonzero(full.any(axis=0))  # never-seen cells get coefficient 0
        x = full[:, used]
        y = sub["shift"].to_numpy(float)
        folds = sub["id"].map(fold_of).to_numpy()
        gram, xty = x.T @ x, x.T @ y
        parts = []
        for f in range(n_folds):
            te = folds == f
            parts.append((te, gram - x[te].T @ x[te], xty - x[te].T @ y[te]))
        best: tuple[float, float] | None = None
        for a in alphas:
            err = np.empty_like(y)
            for te, g_tr, b_tr in parts:
                err[te] = x[te] @ _ridge_from_gram(g_tr, b_tr, a) - y[te]
            mae = float(np.mean(np.abs(err)))
            if best is None or mae < best[1]:
                best = (a, mae)
        assert best is not None
        alpha[nuc], cv[nuc] = best
        coef[nuc] = np.zeros(N_DESIGN)
        coef[nuc][used] = _ridge_from_gram(gram, xty, best[0])
    return ShiftPredictor(coef, alpha, cv)


def train_published(data_dir: str | Path) -> ShiftPredictor:
    """Train the shipped predictor from the shared data root (``.../shared/data``)."""
    d = Path(data_dir) / "rna"
    return train(training_table(d / "csbme" / "train_X_NEW.csv", d / "cs2bps" / "shifts_corrected"))


def read_computed_shifts(path: str | Path) -> pd.DataFrame:
    """Read SS2CS published predictions (``conformer resid resname nucleus shift id``)."""
    df = pd.read_csv(path, sep=r"\s+", header=None,
                     names=["conformer", "resid", "resname", "nucleus", "shift", "id"])
    df["resname"] = df["resname"].map({"ADE": "A", "GUA": "G", "CYT": "C", "URA": "U"})
    return df
