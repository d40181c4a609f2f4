"""Classifier features of CS-Fold and the published training tables.

Feature vector of residue i (71 numbers, in this order):

* 19 shifts of residue i-1, 19 of residue i, 19 of residue i+1 (nuclei in
  :data:`csrna.io.nuclei.NUCLEI` order); when residue i-1 (i+1) has no shifts in the table
  (chain end or a gap), residue i's own shifts are used instead; each of the 57 columns is
  z-scored with the mean and (n-1) standard deviation of the training table ``ss_table_1``;
* one-hot name of residue i-1 over (A, C, G, None, U) — 'None' when i-1 is absent;
* one-hot name of residue i over (A, C, G, U);
* one-hot name of residue i+1 over (A, C, G, None, U).

This matches the published R code (caret ``dummyVars`` orders factor levels alphabetically:
ADE, CYT, GUA, None, URA) and the 71-input Keras networks.

Class label of the tables: ``class`` = 1 means *unpaired*, 0 means paired; the networks output
P(class = 1) = P(unpaired).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from csrna.io.nuclei import NUCLEI, THREE_LETTER

N_SHIFT_FEATURES = 3 * len(NUCLEI)
NEIGHBOUR_LEVELS = ("A", "C", "G", "None", "U")
OWN_LEVELS = ("A", "C", "G", "U")
N_FEATURES = N_SHIFT_FEATURES + 2 * len(NEIGHBOUR_LEVELS) + len(OWN_LEVELS)

_FROM3 = {v: k for k, v in THREE_LETTER.items()}


def feature_names() -> list[str]:
    """Names of the 71 features in order (``C1'_prev`` ... ``next_U``)."""
    names = [f"{n}_{w}" for w in ("prev", "own", "next") for n in NUCLEI]
    names += [f"prev_{r}" for r in NEIGHBOUR_LEVELS]
    names += [f"own_{r}" for r in OWN_LEVELS]
    names += [f"next_{r}" for r in NEIGHBOUR_LEVELS]
    return names


def read_ss_table_0(path: str | Path) -> pd.DataFrame:
    """Read the published per-residue training table ``ss_table_0.txt``.

    Args:
        path: file with columns id resid resname(3-letter) + 19 shifts + class, no header.

    Returns:
        DataFrame with columns ``id``, ``resid``, ``resname`` (one-letter), the 19 nuclei and
        ``class`` (1 = unpaired).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: training table not found")
    df = pd.read_csv(path, sep=r"\s+", header=None)
    if df.shape[1] != 23:
        raise ValueError(f"{path}: expected 23 columns, found {df.shape[1]}")
    df.columns = ["id", "resid", "resname", *NUCLEI, "class"]
    df["id"] = df["id"].astype(str)
    df["resname"] = df["resname"].map(_FROM3)
    return df


def read_ss_table_1(path: str | Path) -> pd.DataFrame:
    """Read the published neighbour table ``ss_table_1.txt``.

    Args:
        path: file with id resid prev/own/next resname + 57 shifts + class, no header.

    Returns:
        DataFrame with ``id``, ``resid``, ``prev``, ``resname``, ``next`` (one-letter or
        ``None``), the 57 shift features named as in :func:`feature_names` and ``class``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: training table not found")
    df = pd.read_csv(path, sep=r"\s+", header=None, keep_default_na=False)
    if df.shape[1] != 63:
        raise ValueError(f"{path}: expected 63 columns, found {df.shape[1]}")
    df.columns = ["id", "resid", "prev", "resname", "next", *feature_names()[:57], "class"]
    df["id"] = df["id"].astype(str)
    for c in ("prev", "resname", "next"):
        df[c] = df[c].map(lambda v: _FROM3.get(v, "None"))
    return df


def neighbour_table(residues: pd.DataFrame) -> pd.DataFrame:
    """Add i-1 / i+1 context to a per-residue shift table of one RNA.

    Args:
        residues: one RNA, columns ``resid``, ``resname`` and the 19 nuclei (complete).

    Returns:
        DataFrame sorted by resid with ``resid``, ``prev``, ``resname``, ``next`` and the 57
        shift columns named as in :func:`feature_names` (own shifts reused when a neighbour
        residue is absent, whose name is then ``None``).
    """
    r = residues.sort_values("resid").reset_index(drop=True)
    by_id = {int(k): i for i, k in enumerate(r["resid"])}
    own = r[list(NUCLEI)].to_numpy(dtype=np.float64)
    idx = np.arange(len(r))
    prev_i = np.array([by_id.get(int(k) - 1, -1) for k in r["resid"]])
    next_i = np.array([by_id.get(int(k) + 1, -1) for k in r["resid"]])
    names = r["resname"].to_numpy()
    shifts = np.hstack([own[np.where(prev_i >= 0, prev_i, idx)], own,
                        own[np.where(next_i >= 0, next_i, idx)]])
    out = pd.DataFrame(shifts, columns=feature_names()[:57])
    out.insert(0, "next", np.where(next_i >= 0, names[np.maximum(next_i, 0)], "None"))
    out.insert(0, "resname", names)
    out.insert(0, "prev", np.where(prev_i >= 0, names[np.maximum(prev_i, 0)], "None"))
    out.insert(0, "resid", r["resid"].to_numpy())
    return out


def raw_features(table: pd.DataFrame) -> np.ndarray:
    """Unscaled (n, 71) features from a neighbour table.

    Args:
        table: output of :func:`neighbour_table` or :func:`read_ss_table_1`.

    Returns:
        float64 array: 57 shifts (ppm) then the 14 one-hot columns.
    """
    shifts = table[feature_names()[:57]].to_numpy(dtype=np.float64)
    blocks = [shifts]
    for col, levels in (("prev", NEIGHBOUR_LEVELS), ("resname", OWN_LEVELS),
                        ("next", NEIGHBOUR_LEVELS)):
        vals = table[col].to_numpy()
        blocks.append(np.stack([vals == lev for lev in levels], axis=1).astype(np.float64))
    return np.hstack(blocks)


def scaling_stats(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (n-1) standard deviation of the 57 shift columns of a training matrix.

    Args:
        raw: (n, 71) unscaled features.

    Returns:
        (mean (57,), std (57,)).
    """
    shifts = raw[:, :N_SHIFT_FEATURES]
    return shifts.mean(axis=0), shifts.std(axis=0, ddof=1)


def scale_features(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Z-score the 57 shift columns; the one-hot columns are left as 0/1.

    Args:
        raw: (n, 71) unscaled features.
        mean, std: from :func:`scaling_stats` of the training table.

    Returns:
        (n, 71) float64 features for the networks.
    """
    out = np.array(raw, dtype=np.float64, copy=True)
    out[:, :N_SHIFT_FEATURES] = (out[:, :N_SHIFT_FEATURES] - mean) / std
    return out
