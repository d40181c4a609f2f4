"""CS-Annotate benchmark: per-task balanced accuracy on the published test split.

Usage: python benchmarks/csannotate_test.py [--retrain] [--data DIR]

Evaluates the shipped model (``csrna/data/annotate_model.npz``; ``--retrain`` trains a
fresh one from the published training split first) on ``test_features_3.csv`` (284 residues,
RNAs 2JTP, 2LU0, 2N1Q, 5KH8), on the 130-residue subset covered by the published
``predictions.txt`` (2JTP, 2LU0, 5KH8), and computes the same figures from the published
predictions. The LAST line is ``sasa=X astack=Y ... c4exo=Z`` for our model on the full test
split.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd

from csrna import annotate as A


def _default_data() -> Path:
    root = Path(__file__).resolve().parents[1]
    return Path(os.environ.get("DIFFTM_SHARED_DATA", root / ".." / "shared" / "data"))


def _published(pred_file: Path) -> pd.DataFrame:
    """predictions.txt: leading index, id, resid, raw sasa, then 11 targets and 11 p-values."""
    rows = [ln.split() for ln in pred_file.read_text().splitlines()[1:] if ln.strip()]
    cols = ["idx", "id", "resid", "sasa_raw", *A.TASKS, *("p" + t for t in A.TASKS)]
    df = pd.DataFrame(rows, columns=cols)
    for c in cols[2:]:
        df[c] = df[c].astype(float)
    return df


def _scores(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {A.TASK_SHORT[t]: A.balanced_accuracy(y[:, k], p[:, k]) for k, t in enumerate(A.TASKS)}


def _line(scores: dict[str, float]) -> str:
    return " ".join(f"{k}={v:.3f}" for k, v in scores.items())


def main() -> None:
    """Run the benchmark and print the per-task balanced accuracies."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=_default_data())
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args()
    d = args.data / "rna" / "csannotate"
    tabs = A.load_published_tables(d)
    model = A.train_published(d) if args.retrain else A.AnnotateModel.load()
    x = tabs["test_X"].to_numpy(float)
    y = tabs["test_y"][list(A.TASKS)].to_numpy(float)
    prob = model.predict_proba(x)
    ids = A.row_ids(tabs["test_X"], tabs["shifts"])
    pub = _published(d / "predictions.txt")
    sub = np.isin(ids, pub["id"].unique())
    pub_scores = _scores(pub[list(A.TASKS)].to_numpy(), pub[["p" + t for t in A.TASKS]].to_numpy())
    ours_sub = _scores(y[sub], prob[sub])
    ours = _scores(y, prob)
    print(f"test split: {len(y)} residues, RNAs {', '.join(dict.fromkeys(ids))}")
    print(f"{'task':8s} {'published(130)':>15s} {'ours(130)':>10s} {'ours(all)':>10s} n_pos")
    for k, t in enumerate(A.TASKS):
        s = A.TASK_SHORT[t]
        n_pos = int(y[:, k].sum())
        print(f"{s:8s} {pub_scores[s]:15.3f} {ours_sub[s]:10.3f} {ours[s]:10.3f} {n_pos:6d}")
    print("published (predictions.txt, 130 residues): " + _line(pub_scores))
    print("ours (same 130 residues): " + _line(ours_sub))
    print(_line(ours))


if __name__ == "__main__":
    main()
