"""CS-Annotate: per-nucleotide structural annotations from chemical shifts.

Features (167 per residue, the layout of CS-Annotate's ``train_features_3.csv``):

* columns 0-132: the 19 shifts (:data:`SHIFT_COLUMNS` order) of residues i-3, i-2, i-1, i,
  i+1, i+2, i+3 (neighbours are the adjacent rows of the same RNA in residue order; a
  neighbour beyond a chain end contributes 19 zeros);
* columns 133-166: one-hot residue names per window position, in the order i-3 ... i+3;
  each neighbour position has 5 columns (ADE, CYT, GUA, <none>, URA: alphabetical with the
  "no residue" label sorting between GUA and URA), the centre has 4 (ADE, CYT, GUA, URA).

Missing shifts of a residue (e.g. H2 of a guanosine, or atoms not measured) must be
imputed before featurising; :func:`shift_table_from_long` fills them with the training mean
for that residue type and nucleus (shipped in ``data/annotate_model.npz``).

Model: a small multitask network of our own (numpy): standardised features -> dense
(``hidden`` units, ReLU) -> 11 sigmoid outputs (sasa, astack, nastack, pair, syn_anti and the
six sugar-pucker classes one-vs-rest); trained by full-batch Adam on the class-balanced
binary cross-entropy (each class of each task carries half of that task's loss), an
ensemble of a few seeds averaged.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from csrna.threads import single_thread

#: The 19 nuclei of each residue, in feature order (``p`` = prime).
SHIFT_COLUMNS: tuple[str, ...] = (
    "C1'", "C2'", "C3'", "C4'", "C5'", "C2", "C5", "C6", "C8",
    "H1'", "H2'", "H3'", "H4'", "H2", "H5", "H5'", "H5''", "H6", "H8",
)
#: Residue names (CHARMM-style, as in the training tables).
RESNAMES: tuple[str, ...] = ("ADE", "CYT", "GUA", "URA")
#: Target names, output order.
TASKS: tuple[str, ...] = (
    "sasa", "astack", "nastack", "pair", "syn_anti",
    "pucker_C2p_endo", "pucker_C3p_endo", "pucker_C2p_exo",
    "pucker_C3p_exo", "pucker_C1p_exo", "pucker_C4p_exo",
)
#: Short names used in the benchmark summary line.
TASK_SHORT: dict[str, str] = {
    "sasa": "sasa", "astack": "astack", "nastack": "nastack", "pair": "pair",
    "syn_anti": "syn", "pucker_C2p_endo": "c2endo", "pucker_C3p_endo": "c3endo",
    "pucker_C2p_exo": "c2exo", "pucker_C3p_exo": "c3exo", "pucker_C1p_exo": "c1exo",
    "pucker_C4p_exo": "c4exo",
}
WINDOW = 3
N_BINARY = 5
N_FEATURES = (2 * WINDOW + 1) * len(SHIFT_COLUMNS) + 2 * WINDOW * 5 + 4
MODEL_FILE = "annotate_model.npz"
_ONE_LETTER = {"A": "ADE", "C": "CYT", "G": "GUA", "U": "URA"}


def canonical_resname(name: str) -> str:
    """Map A/C/G/U, ADE/CYT/GUA/URA (any case) and RA/RC/... to ADE/CYT/GUA/URA."""
    s = str(name).strip().upper()
    if s in RESNAMES:
        return s
    if s in _ONE_LETTER:
        return _ONE_LETTER[s]
    if len(s) == 2 and s[0] == "R" and s[1] in _ONE_LETTER:
        return _ONE_LETTER[s[1]]
    raise ValueError(f"unknown RNA residue name {name!r}")


def build_features(table: pd.DataFrame) -> np.ndarray:
    """Build the 167 CS-Annotate features per residue.

    Args:
        table: one row per residue with columns ``id`` (RNA name; optional, default one
            RNA), ``resid``, ``resname`` and the 19 :data:`SHIFT_COLUMNS` (ppm, imputed;
            the ``C1p``-style names of the published tables are accepted too). Rows of
            an RNA are taken in ascending ``resid`` order.

    Returns:
        (n_residues, 167) float64 features, rows in the order of the sorted table
        (by id in first-appearance order, then resid).
    """
    tab = _normalise_columns(table)
    blocks = []
    for _, grp in tab.groupby("id", sort=False):
        grp = grp.sort_values("resid", kind="stable")
        shifts = grp[list(SHIFT_COLUMNS)].to_numpy(dtype=np.float64)
        names = [canonical_resname(r) for r in grp["resname"]]
        n = len(grp)
        feats = np.zeros((n, N_FEATURES))
        nsh = len(SHIFT_COLUMNS)
        onehot_base = (2 * WINDOW + 1) * nsh
        for k in range(n):
            col = onehot_base
            for p, off in enumerate(range(-WINDOW, WINDOW + 1)):
                j = k + off
                inside = 0 <= j < n
                if inside:
                    feats[k, p * nsh:(p + 1) * nsh] = shifts[j]
                if off == 0:
                    feats[k, col + RESNAMES.index(names[k])] = 1.0
                    col += 4
                else:
                    # categories ADE, CYT, GUA, <none>, URA
                    slot = {"ADE": 0, "CYT": 1, "GUA": 2, "URA": 4}[names[j]] if inside else 3
                    feats[k, col + slot] = 1.0
                    col += 5
        blocks.append(feats)
    return np.vstack(blocks) if blocks else np.zeros((0, N_FEATURES))


def _normalise_columns(table: pd.DataFrame) -> pd.DataFrame:
    tab = table.copy()
    rename = {c.replace("pp", "''").replace("p", "'"): c for c in []}
    for c in tab.columns:
        if c.endswith("p") and c[:-1].replace("pp", "") and c[0] in "CH":
            new = c[:-2] + "''" if c.endswith("pp") else c[:-1] + "'"
            rename[c] = new
    tab = tab.rename(columns=rename)
    if "id" not in tab.columns:
        tab["id"] = "rna"
    missing = [c for c in ("resid", "resname", *SHIFT_COLUMNS) if c not in tab.columns]
    if missing:
        raise ValueError(f"shift table lacks columns: {', '.join(missing)}")
    if tab[list(SHIFT_COLUMNS)].isna().any().any():
        raise ValueError("shift table has missing shifts; impute them first")
    return tab


@dataclass
class AnnotateModel:
    """A trained CS-Annotate ensemble.

    Attributes:
        mean, std: (167,) feature standardisation.
        layers: per ensemble member, (W1 (167,h), b1 (h,), W2 (h,11), b2 (11,)).
        impute: (4, 19) training mean shift per residue type (ADE, CYT, GUA, URA) and nucleus.
    """

    mean: np.ndarray
    std: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
    impute: np.ndarray

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Per-task probabilities (n, 11), one sigmoid per task (pucker classes one-vs-rest)."""
        x = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        out = np.zeros((x.shape[0], len(TASKS)))
        for w1, b1, w2, b2 in self.layers:
            out += _probs(_forward(x, w1, b1, w2, b2)[1])
        return out / len(self.layers)

    def save(self, path: str | Path) -> None:
        """Save to an ``.npz`` file (float32 weights)."""
        arrays: dict[str, np.ndarray] = {"mean": self.mean, "std": self.std, "impute": self.impute}
        for k, (w1, b1, w2, b2) in enumerate(self.layers):
            for name, arr in zip(("w1", "b1", "w2", "b2"), (w1, b1, w2, b2), strict=True):
                arrays[f"m{k}_{name}"] = arr.astype(np.float32)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load(cls, path: str | Path | None = None) -> AnnotateModel:
        """Load a model; the shipped one when ``path`` is None."""
        if path is None:
            ref = resources.files("csrna") / "data" / MODEL_FILE
            with resources.as_file(ref) as p:
                return cls.load(p)
        with np.load(path) as z:
            n = len([k for k in z.files if k.endswith("_w1")])
            layers = [
                tuple(z[f"m{k}_{nm}"].astype(np.float64) for nm in ("w1", "b1", "w2", "b2"))
                for k in range(n)
            ]
            return cls(z["mean"], z["std"], layers, z["impute"])  # type: ignore[arg-type]


def _forward(x, w1, b1, w2, b2):
    h = np.maximum(x @ w1 + b1, 0.0)
    return h, h @ w2 + b2


def _probs(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(logits, -50, 50)))


def train(
    features: np.ndarray,
    targets: np.ndarray,
    impute: np.ndarray,
    hidden: int = 32,
    epochs: int = 400,
    lr: float = 3e-3,
    l2: float = 1e-3,
    n_models: int = 3,
    seed: int = 0,
) -> AnnotateModel:
    """Train the multitask network (full-batch Adam, class-balanced cross-entropy).

    Args:
        features: (n, 167) training features.
        targets: (n, 11) 0/1 targets in :data:`TASKS` order (pucker columns one-hot).
        impute: (4, 19) per-residue-type mean shifts to store with the model.
        hidden: hidden units.
        epochs: full-batch Adam steps.
        lr: Adam learning rate.
        l2: weight decay on the weight matrices.
        n_models: ensemble size (seeds ``seed .. seed+n_models-1``).
        seed: base seed.

    Returns:
        :class:`AnnotateModel`.
    """
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64)
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std[std < 1e-8] = 1.0
    xs = (x - mean) / std
    # class-balanced weights per task (each class carries half of the task's loss)
    pos = y.mean(axis=0).clip(1e-3, 1 - 1e-3)
    wts = np.where(y > 0.5, 0.5 / pos, 0.5 / (1 - pos))
    with single_thread():
        layers = [_train_member(xs, y, wts, hidden, epochs, lr, l2, seed + m)
                  for m in range(n_models)]
    return AnnotateModel(mean, std, layers, np.asarray(impute, dtype=np.float64))


def _train_member(xs: np.ndarray, y: np.ndarray, wts: np.ndarray, hidden: int, epochs: int,
                  lr: float, l2: float, seed: int) -> tuple[np.ndarray, ...]:
    """One ensemble member: full-batch Adam on the weighted binary cross-entropy."""
    n = xs.shape[0]
    rng = np.random.default_rng(seed)
    params = [
        rng.normal(scale=np.sqrt(2.0 / xs.shape[1]), size=(xs.shape[1], hidden)),
        np.zeros(hidden),
        rng.normal(scale=np.sqrt(1.0 / hidden), size=(hidden, len(TASKS))),
        np.zeros(len(TASKS)),
    ]
    mom = [np.zeros_like(p) for p in params]
    vel = [np.zeros_like(p) for p in params]
    for step in range(1, epochs + 1):
        h, logits = _forward(xs, *params)
        g = wts * (_probs(logits) - y) / n
        gw2 = h.T @ g + l2 * params[2]
        gb2 = g.sum(axis=0)
        gh = (g @ params[2].T) * (h > 0)
        gw1 = xs.T @ gh + l2 * params[0]
        gb1 = gh.sum(axis=0)
        for k, gr in enumerate((gw1, gb1, gw2, gb2)):
            mom[k] = 0.9 * mom[k] + 0.1 * gr
            vel[k] = 0.999 * vel[k] + 0.001 * gr**2
            mhat = mom[k] / (1 - 0.9**step)
            vhat = vel[k] / (1 - 0.999**step)
            params[k] = params[k] - lr * mhat / (np.sqrt(vhat) + 1e-8)
    return tuple(params)


def impute_means(table: pd.DataFrame) -> np.ndarray:
    """(4, 19) mean shift per residue type (ADE, CYT, GUA, URA) and nucleus of a table."""
    tab = _normalise_columns(table)
    names = tab["resname"].map(canonical_resname)
    return np.vstack([tab.loc[names == r, list(SHIFT_COLUMNS)].mean().to_numpy() for r in RESNAMES])


def balanced_accuracy(y_true: np.ndarray, y_score: np.ndarray, threshold: float = 0.5) -> float:
    """Balanced accuracy (mean of sensitivity and specificity) of a thresholded score.

    Returns NaN when one of the classes is absent from ``y_true``.
    """
    t = np.asarray(y_true) > 0.5
    p = np.asarray(y_score) >= threshold
    if t.all() or (~t).all():
        return float("nan")
    return float(0.5 * ((p & t).sum() / t.sum() + (~p & ~t).sum() / (~t).sum()))


def shift_table_from_long(shifts: pd.DataFrame, impute: np.ndarray) -> pd.DataFrame:
    """Pivot a long shift table to one row per residue with all 19 nuclei, imputed.

    Args:
        shifts: columns ``resname, resid, nucleus, shift`` (nucleus names already
            normalised to the :data:`SHIFT_COLUMNS` spelling, e.g. ``H5''``).
        impute: (4, 19) fill values per residue type (from :class:`AnnotateModel`).

    Returns:
        DataFrame ``resid, resname, <19 nuclei>, n_measured`` sorted by resid.
    """
    known = shifts[shifts["nucleus"].isin(SHIFT_COLUMNS)]
    if known.empty:
        raise ValueError("no shifts of the 19 CS-Annotate nuclei (C1'..H8) found")
    wide = known.pivot_table(index="resid", columns="nucleus", values="shift", aggfunc="mean")
    wide = wide.reindex(columns=list(SHIFT_COLUMNS))
    names = shifts.groupby("resid")["resname"].first().map(canonical_resname)
    wide.insert(0, "resname", names.reindex(wide.index))
    n_meas = wide[list(SHIFT_COLUMNS)].notna().sum(axis=1)
    for r_i, r in enumerate(RESNAMES):
        rows = wide["resname"] == r
        for c_i, c in enumerate(SHIFT_COLUMNS):
            wide.loc[rows, c] = wide.loc[rows, c].fillna(impute[r_i, c_i])
    wide["n_measured"] = n_meas
    return wide.reset_index().sort_values("resid").reset_index(drop=True)


def annotate_shifts(shifts: pd.DataFrame, model: AnnotateModel | None = None) -> pd.DataFrame:
    """Per-nucleotide annotation probabilities from a long shift table.

    Args:
        shifts: ``resname, resid, nucleus, shift`` rows (one RNA; nuclei normalised).
        model: trained model; the shipped one when None.

    Returns:
        DataFrame ``resid, resname`` (one-letter), ``n_measured`` + one probability column per task
        (:data:`TASKS`), plus ``pucker`` (most probable class by :func:`pucker_decision`)
        and ``pucker_probability`` (its normalised posterior).
    """
    model = model or AnnotateModel.load()
    wide = shift_table_from_long(shifts, model.impute)
    probs = model.predict_proba(build_features(wide))
    out = wide[["resid", "resname", "n_measured"]].copy()
    out["resname"] = out["resname"].map({v: k for k, v in _ONE_LETTER.items()})
    for k, t in enumerate(TASKS):
        out[t] = np.round(probs[:, k], 4)
    labels, posterior = pucker_decision(probs[:, N_BINARY:])
    out["pucker"] = labels
    out["pucker_probability"] = np.round(posterior.max(axis=1), 4)
    return out


#: Residues per sugar-pucker class in the published training split (``train_target_3.csv``,
#: :data:`TASKS` pucker order): the class prior that the class-balanced training removed.
PUCKER_TRAINING_COUNTS: tuple[int, ...] = (183, 2092, 289, 64, 55, 297)


def pucker_decision(ovr: np.ndarray,
                    counts: tuple[int, ...] = PUCKER_TRAINING_COUNTS
                    ) -> tuple[list[str], np.ndarray]:
    """Multiclass sugar-pucker call from the six one-vs-rest outputs.

    The outputs were trained with each class carrying half of its task's loss, i.e. they
    estimate P(class) under a balanced prior. Their odds are multiplied by the training prior
    odds of the class and normalised over the six classes; the call is the most probable
    class (the Bayes decision under 0/1 loss). A plain argmax of the raw outputs ignores the
    prior and over-calls the rare puckers.

    Args:
        ovr: (n, 6) one-vs-rest probabilities in :data:`TASKS` pucker order.
        counts: training residues per class.

    Returns:
        (class names such as ``C3p_endo``, (n, 6) normalised posterior).
    """
    p = np.clip(np.asarray(ovr, dtype=np.float64), 1e-6, 1 - 1e-6)
    prior = np.asarray(counts, dtype=np.float64) / float(np.sum(counts))
    odds = p / (1 - p) * prior / (1 - prior)
    post = odds / odds.sum(axis=1, keepdims=True)
    names = [TASKS[N_BINARY + int(i)][len("pucker_"):] for i in post.argmax(axis=1)]
    return names, post


#: Hyper-parameters of the shipped model (chosen on the training set only, see docs).
SHIPPED_HYPERPARAMETERS: dict[str, float] = {
    "hidden": 8, "epochs": 400, "lr": 3e-3, "l2": 1e-2, "n_models": 5, "seed": 0,
}


def load_published_tables(data_dir: str | Path) -> dict[str, pd.DataFrame]:
    """Read CS-Annotate's published tables from ``data_dir`` (``rna/csannotate``).

    Returns:
        dict with ``train_X``, ``train_y``, ``test_X``, ``test_y`` and ``shifts``.
    """
    d = Path(data_dir)
    names = {
        "train_X": "train_features_3.csv", "train_y": "train_target_3.csv",
        "test_X": "test_features_3.csv", "test_y": "test_target_3.csv",
        "shifts": "chemical_shifts.csv",
    }
    out = {}
    for key, fname in names.items():
        path = d / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CS-Annotate table not found")
        out[key] = pd.read_csv(path, sep=r"\s+")
    return out


def train_published(data_dir: str | Path) -> AnnotateModel:
    """Train the shipped model on the published training split (deterministic).

    Imputation means come from the rows of ``chemical_shifts.csv`` whose RNA is not in
    the test split (identified by matching the centre-residue shifts of the test rows).
    """
    tabs = load_published_tables(data_dir)
    shifts = tabs["shifts"]
    test_ids = test_rna_ids(tabs["test_X"], shifts)
    train_shifts = shifts[~shifts["id"].isin(test_ids)]
    return train(
        tabs["train_X"].to_numpy(float), tabs["train_y"][list(TASKS)].to_numpy(float),
        impute_means(train_shifts), **SHIPPED_HYPERPARAMETERS,  # type: ignore[arg-type]
    )


def row_ids(features: pd.DataFrame | np.ndarray, shifts: pd.DataFrame) -> np.ndarray:
    """RNA id of each feature row, matched by the centre residue's 19 shifts (3 decimals)."""
    tab = _normalise_columns(shifts)
    values = tab[list(SHIFT_COLUMNS)].to_numpy()
    key = {tuple(np.round(r, 3)): i for i, r in zip(tab["id"], values, strict=True)}
    nsh = len(SHIFT_COLUMNS)
    centre = np.asarray(features, dtype=np.float64)[:, WINDOW * nsh:(WINDOW + 1) * nsh]
    return np.array([key.get(tuple(np.round(r, 3)), "") for r in centre], dtype=object)


def test_rna_ids(test_features: pd.DataFrame, shifts: pd.DataFrame) -> list[str]:
    """RNA ids of the published test split (in order of appearance)."""
    return list(dict.fromkeys(i for i in row_ids(test_features, shifts) if i))
