"""The CS-Fold base-pairing classifier: an ensemble of small networks giving P(unpaired).

The shipped ensemble (``csrna/data/csfold_ensemble.npz``) was trained by
:func:`train_ensemble` on the published table ``ss_table_1.txt`` (108 RNAs, 3,352 residues;
class 1 = unpaired) with this package's own numpy code; rebuild it with
``python -m csrna.fold.classifier ss_table_1.txt ss_table_0.txt csrna/src/csrna/data``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from csrna.fold.features import (
    N_FEATURES,
    raw_features,
    read_ss_table_0,
    read_ss_table_1,
    scale_features,
    scaling_stats,
)
from csrna.fold.network import MLP, read_keras_h5, train_mlps
from csrna.io.nuclei import NUCLEI

ENSEMBLE_FILE = "csfold_ensemble.npz"
REFERENCE_FILE = "csfold_reference.npz"
N_MODELS = 6
DEFAULT_EPOCHS = 60


@dataclass
class Ensemble:
    """Networks plus the z-scoring statistics of their training table.

    Attributes:
        nets: the member networks (71 -> 70 -> 16 -> 1).
        mean, std: (57,) statistics of the shift features of the training table.
    """

    nets: list[MLP]
    mean: np.ndarray
    std: np.ndarray

    def predict_members(self, raw: np.ndarray) -> np.ndarray:
        """P(unpaired) of every member for (n, 71) unscaled features; returns (n, k)."""
        raw = np.asarray(raw, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[1] != N_FEATURES:
            raise ValueError(f"expected (n, {N_FEATURES}) features, got {raw.shape}")
        x = scale_features(raw, self.mean, self.std)
        return np.stack([net.predict(x) for net in self.nets], axis=1)

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Ensemble P(unpaired): mean over members, (n,)."""
        return self.predict_members(raw).mean(axis=1)


def train_ensemble(table: pd.DataFrame, n_models: int = N_MODELS, epochs: int = DEFAULT_EPOCHS,
                   seed: int = 0) -> Ensemble:
    """Train an ensemble on a neighbour table.

    Args:
        table: rows as returned by :func:`csrna.fold.features.read_ss_table_1` (or
            :func:`csrna.fold.features.neighbour_table` plus a ``class`` column; 1 = unpaired).
        n_models: ensemble size (published 6).
        epochs: epochs per network.
        seed: base seed; member k uses ``seed + k``.

    Returns:
        The trained :class:`Ensemble` (z-scoring from this table).
    """
    raw = raw_features(table)
    mean, std = scaling_stats(raw)
    x = scale_features(raw, mean, std)
    y = table["class"].to_numpy(dtype=np.float64)
    nets = train_mlps(x, y, [seed + k for k in range(n_models)], epochs=epochs)
    return Ensemble(nets, mean, std)


def save_ensemble(path: str | Path, ensemble: Ensemble) -> None:
    """Write an ensemble to a compressed ``.npz`` (float32 weights)."""
    arrays: dict[str, np.ndarray] = {"mean": ensemble.mean, "std": ensemble.std,
                                     "n_models": np.array(len(ensemble.nets))}
    for k, net in enumerate(ensemble.nets):
        for layer, (w, b) in enumerate(zip(net.kernels, net.biases, strict=True)):
            arrays[f"m{k}_w{layer}"] = w.astype(np.float32)
            arrays[f"m{k}_b{layer}"] = b.astype(np.float32)
    np.savez_compressed(path, **arrays)


def load_ensemble(path: str | Path | None = None) -> Ensemble:
    """Load an ensemble saved by :func:`save_ensemble` (default: the shipped one).

    Args:
        path: ``.npz`` file, or None for ``csrna/data/csfold_ensemble.npz``.

    Returns:
        The :class:`Ensemble`.
    """
    z = _read_npz(path, ENSEMBLE_FILE)
    nets = []
    for k in range(int(z["n_models"])):
        layers = sorted(int(key.split("_w")[1]) for key in z if key.startswith(f"m{k}_w"))
        nets.append(MLP([z[f"m{k}_w{i}"].astype(np.float64) for i in layers],
                        [z[f"m{k}_b{i}"].astype(np.float64) for i in layers]))
    return Ensemble(nets, z["mean"].astype(np.float64), z["std"].astype(np.float64))


def _read_npz(path: str | Path | None, default: str) -> dict[str, np.ndarray]:
    if path is None:
        with resources.as_file(resources.files("csrna") / "data" / default) as p:
            with np.load(p) as z:
                return {k: z[k] for k in z.files}
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: weights file not found")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def load_published_ensemble(model_dir: str | Path, ss_table_1: str | Path) -> Ensemble:
    """The six published Keras networks (``nn_model_whole_{1..6}.h5``) as an :class:`Ensemble`.

    Args:
        model_dir: folder holding the h5 files (needs h5py).
        ss_table_1: the published training table, source of the z-scoring statistics.

    Returns:
        The :class:`Ensemble`.
    """
    model_dir = Path(model_dir)
    files = [model_dir / f"nn_model_whole_{k}.h5" for k in range(1, N_MODELS + 1)]
    for f in files:
        if not f.is_file():
            raise FileNotFoundError(f"{f}: published network not found")
    mean, std = scaling_stats(raw_features(read_ss_table_1(ss_table_1)))
    return Ensemble([read_keras_h5(f) for f in files], mean, std)


def save_reference(path: str | Path, table0: pd.DataFrame) -> None:
    """Write the imputation reference population (``ss_table_0`` rows) to a ``.npz``."""
    np.savez_compressed(path, shifts=table0[list(NUCLEI)].to_numpy(np.float64),
                        resnames=table0["resname"].to_numpy(dtype="U1"),
                        ids=table0["id"].to_numpy(dtype="U8"))


def load_reference(path: str | Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Load the imputation reference population.

    Args:
        path: ``.npz`` from :func:`save_reference`, or None for the shipped copy.

    Returns:
        (shifts (N, 19) float64, resnames (N,), RNA ids (N,)).
    """
    z = _read_npz(path, REFERENCE_FILE)
    return z["shifts"].astype(np.float64), z["resnames"], z["ids"]


def main(argv: list[str]) -> None:
    """Build the shipped files: ``python -m csrna.fold.classifier SS_TABLE_1 SS_TABLE_0 OUTDIR``."""
    t1, t0, out = argv
    out_dir = Path(out)
    ens = train_ensemble(read_ss_table_1(t1))
    save_ensemble(out_dir / ENSEMBLE_FILE, ens)
    save_reference(out_dir / REFERENCE_FILE, read_ss_table_0(t0))


if __name__ == "__main__":
    main(sys.argv[1:])
