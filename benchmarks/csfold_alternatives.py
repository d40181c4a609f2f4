"""Alternatives to CS-Fold's use of the classifier, scored on the leave-one-out predictions.

Reads the cache written by ``csfold_loo.py --cache`` (per RNA: the held-out P(unpaired), the
six candidates, the reference pairs and the imputed shift table) and prints, for each
alternative, the mean sensitivity / PPV over the fully covered RNAs, next to the ViennaRNA
baseline and the ``published`` and ``conservative`` modes. An alternative with parameters is
shown at every grid point (in-sample) and with its parameters chosen leaving each RNA out
(best PPV among the grid points that keep the baseline's sensitivity on the other RNAs: the
issue's criterion), the figure to compare with ``conservative`` held out (0.977 / 0.948).

1. ``logodds``: per-nucleotide likelihood restraint instead of the Deigan term: an unpaired
   nucleotide gets -(k RT logit P + b) kcal/mol (ViennaRNA ``sc_add_up``), then MFE or MEA.
2. ``short-helix``: after ``conservative``, drop helices of at most L pairs whose nucleotides
   have mean P(unpaired) > t.
3. ``subopt``: restrained suboptimal structures within delta kcal/mol join the six
   candidates before the consistency selection (then ``conservative`` pruning).
4. ``oracle``: the best of the six candidates per RNA (by F1), the ceiling of any selection
   rule over them.
5. ``gbt``: gradient-boosted trees (scikit-learn, installed with rnapolis) instead of the
   networks, same 71 features, retrained leaving each RNA out on the cached imputed tables.
6. ``pooled`` (only with ``--pooled M``): classify each of M imputations and average the
   probabilities (Rubin-style pooling of predictions) instead of classifying the median
   imputed table; networks retrained leaving each RNA out (40 epochs, as ``csfold_loo``).
7. ``helix-end``: a logistic model of whether a helix-end pair of the ``conservative``
   structure is false (the shifts of both nucleotides centred per residue type, pair type,
   loop side), trained on the helix ends of all 108 RNAs' predicted structures with labels
   from ``ss_table_0`` (false = a nucleotide labelled unpaired), leaving each RNA out.

With a cache of the grouped protocol (``csfold_loo.py --protocol grouped80``, the default)
"leaving each RNA out" above means leaving out the RNA's whole sequence-identity group:
held-out parameter choices are made on the other groups and the retrained models (gbt,
pooled, helix-end) never see a near-copy of the scored RNA.

Usage::

    python benchmarks/csfold_alternatives.py --cache grouped.pkl [--data DIR] [--skip-models]
        [--pooled 5 --workers 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import RNA
from csfold_loo import (
    default_data,
    folded_full,
    grid_scores,
    loo_model,
    measured_shifts,
    nested_groups,
    nested_loo,
    per_nucleotide,
    rna_groups,
    score,
)

from csrna.fold.features import neighbour_table, raw_features, read_ss_table_0, read_ss_table_1
from csrna.fold.folding import (
    PUBLISHED_INTERCEPT,
    PUBLISHED_SLOPE,
    fold_candidates,
    free_energy,
    restrained_compound,
)
from csrna.fold.pipeline import (
    choose_structure,
    consistency,
    prune_terminal_pairs,
    settings_for,
)
from csrna.fold.probknot import helices
from csrna.grouping import group_of
from csrna.io import pairs_from_dot_bracket
from csrna.io.nuclei import NUCLEI

RT = 0.61632  # kcal/mol at 37 C

Pairs = list[tuple[int, int]]


def scores_of(res: list[dict], structures: list[Pairs]) -> np.ndarray:
    """(RNAs, 2) sensitivity and PPV of one structure per RNA."""
    return np.array([score(s, r["ref_pairs"], set(r["covered"]))
                     for r, s in zip(res, structures, strict=True)])


def conservative_pairs(r: dict) -> Pairs:
    """The ``conservative`` structure of one cached RNA."""
    return choose_structure(r["candidates"], r["p_seq"], settings_for("conservative"))[0]


def logodds_fold(seq: str, p: np.ndarray, k: float, b: float, how: str) -> Pairs:
    """MFE or MEA (gamma 1) with an unpaired energy -(k RT logit P + b) per nucleotide."""
    md = RNA.md()
    md.uniq_ML = 1
    fc = RNA.fold_compound(seq, md)
    for i, v in enumerate(p, start=1):
        if np.isfinite(v):
            v = min(max(float(v), 1e-3), 1 - 1e-3)
            fc.sc_add_up(i, -(k * RT * np.log(v / (1 - v)) + b))
    db, mfe = fc.mfe()
    if how == "mea":
        fc.exp_params_rescale(mfe)
        fc.pf()
        db, _ = fc.MEA(1.0)
    return pairs_from_dot_bracket(db)


def drop_short_helices(pairs: Pairs, p: np.ndarray, length: int, t: float) -> Pairs:
    """Remove helices of at most ``length`` pairs whose nucleotides have mean P > t."""
    kept = []
    for h in helices(pairs):
        pv = p[[k - 1 for ij in h for k in ij]]
        if not (len(h) <= length and np.isfinite(pv).all() and pv.mean() > t):
            kept += h
    return kept


def subopt_pick(r: dict, delta: float) -> Pairs:
    """Consistency selection over the six candidates plus restrained suboptimals."""
    seq, p = r["seq"], r["p_seq"]
    fc = restrained_compound(seq, p, PUBLISHED_SLOPE, PUBLISHED_INTERCEPT)
    extra = [pairs_from_dot_bracket(s.structure) for s in fc.subopt(int(delta * 100))][:200]
    cands = [list(c.pairs) for c in r["candidates"]] + extra
    s = settings_for("published")
    best = max(cands, key=lambda c: (round(consistency(c, p, s), 10), -free_energy(seq, c)))
    return prune_terminal_pairs(best, p, 0.99, 0.5)


#: RNA -> the RNAs held out with it (itself, or its identity group); set by :func:`main`.
HELD: dict[str, list[str]] = {}
#: (RNAs,) group index of the scored RNAs, for the nested choices; set by :func:`main`.
GROUP_IDS: np.ndarray | None = None


def held_out(rna: str) -> list[str]:
    """The RNAs left out of training when ``rna`` is scored."""
    return HELD.get(rna, [rna])


def nested(sp: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Held-out grid choice: leave-one-group-out (grouped cache) or leave-one-RNA-out."""
    if GROUP_IDS is not None and len(GROUP_IDS) == sp.shape[1]:
        return nested_groups(sp, ref, GROUP_IDS)
    return nested_loo(sp, ref)


def report_grid(name: str, labels: list[str], sp: np.ndarray, base: np.ndarray) -> None:
    """Print every grid point and the held-out choice."""
    for lab, s in zip(labels, sp, strict=True):
        print(f"{name:12s} {lab:22s} {s[:, 0].mean():.3f} / {s[:, 1].mean():.3f}")
    if not (sp[:, :, 0].mean(axis=1) >= base[:, 0].mean() - 1e-9).any():
        print(f"{name:12s} {'held-out choice':22s} none: no grid point keeps the baseline's "
              f"sensitivity {base[:, 0].mean():.3f}")
        return
    loo = nested(sp, base).mean(axis=0)
    print(f"{name:12s} {'held-out choice':22s} {loo[0]:.3f} / {loo[1]:.3f}")


def gbt_probabilities(results: list[dict],
                      data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Held-out P(unpaired) of gradient-boosted trees on the cached imputed tables (trained
    without the RNA's group, :func:`held_out`).

    Returns:
        {RNA: (residue numbers, P(unpaired))}.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    t1 = read_ss_table_1(data / "rna" / "cs2bps" / "ss_table_1.txt")
    out = {}
    correct = total = 0
    for r in results:
        train = t1[~t1["id"].isin(held_out(r["rna"]))]
        model = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=0)
        model.fit(raw_features(train), train["class"].to_numpy())
        table = neighbour_table(r["complete"])
        p = model.predict_proba(raw_features(table))[:, 1]
        truth = t1[t1["id"] == r["rna"]].merge(
            pd.DataFrame({"resid": table["resid"], "p": p}), on="resid", how="left")
        correct += int(((truth["p"] > 0.5) == truth["class"]).sum())
        total += len(truth)
        out[r["rna"]] = (table["resid"].to_numpy(), p)
    print(f"gbt          classifier accuracy {correct / total:.3f} (networks: see csfold_loo)")
    return out


def helix_end_rows(results: list[dict], data: Path, scored: dict[str, Pairs]) -> pd.DataFrame:
    """Helix-end pairs of every RNA's predicted structure with features and labels.

    Args:
        results: the cached fold results of all RNAs.
        data: shared data folder.
        scored: the ``conservative`` structures of the scored RNAs, by RNA; the others are
            folded with plain ViennaRNA MFE.
    """
    t0 = read_ss_table_0(data / "rna" / "cs2bps" / "ss_table_0.txt")
    label = {(a, b): c for a, b, c in t0[["id", "resid", "class"]].itertuples(index=False)}
    values = t0[list(NUCLEI)].to_numpy(np.float64)
    stats = {n: (values[(t0["resname"] == n).to_numpy()].mean(0),
                 values[(t0["resname"] == n).to_numpy()].std(0)) for n in "ACGU"}
    rows = []
    for r in results:
        comp = r["complete"]
        centred = {int(k): (np.asarray(v, np.float64) - stats[n][0]) / stats[n][1]
                   for k, n, v in zip(comp["resid"], comp["resname"],
                                      comp[list(NUCLEI)].to_numpy(np.float64), strict=True)}
        is_scored = r["rna"] in scored
        if is_scored:
            seq, pairs = r["seq"], scored[r["rna"]]
        else:
            ids = comp["resid"].to_numpy()
            if ids.min() != 1 or np.any(np.diff(ids) != 1):
                continue
            seq = "".join(comp.sort_values("resid")["resname"])
            pairs = pairs_from_dot_bracket(RNA.fold(seq)[0])
        s = set(pairs)
        for i, j in pairs:
            outer, inner = (i - 1, j + 1) in s, (i + 1, j - 1) in s
            if (outer and inner) or i not in centred or j not in centred:
                continue
            if (r["rna"], i) not in label or (r["rna"], j) not in label:
                continue
            kind = seq[i - 1] + seq[j - 1]
            rows.append({"rna": r["rna"], "i": i, "j": j, "scored": is_scored,
                         "false": int(label[(r["rna"], i)] == 1 or label[(r["rna"], j)] == 1),
                         "x": np.r_[centred[i], centred[j], kind in ("GC", "CG"),
                                    kind in ("GU", "UG"), inner, outer]})
    return pd.DataFrame(rows)


def pooled_fold(task: tuple) -> tuple[str, np.ndarray, np.ndarray]:
    """One leave-one-out fold with predictions pooled over M imputations (worker process)."""
    from csrna.fold.impute import impute_with_reference
    from csrna.fold.pipeline import residue_shift_table

    rna, data, m, held = task
    ens, (ref_shifts, ref_names), _ = loo_model(data, held, 40)
    table = residue_shift_table(measured_shifts(data, rna))
    imps = impute_with_reference(table[list(NUCLEI)].to_numpy(np.float64),
                                 table["resname"].to_numpy(), ref_shifts, ref_names, m=m,
                                 combine="none")
    probs = []
    for imp in imps:
        complete = table[["resid", "resname"]].copy()
        complete[list(NUCLEI)] = imp
        probs.append(ens.predict(raw_features(neighbour_table(complete))))
    return rna, table["resid"].to_numpy(), np.mean(probs, axis=0)


def refold(res: list[dict], probs: dict[str, tuple[np.ndarray, np.ndarray]],
           modes: tuple[str, ...]) -> tuple[dict[str, np.ndarray], list[dict]]:
    """Fold every scored RNA with new per-residue probabilities.

    Returns:
        ({mode: (RNAs, 2) scores}, cache-like results with the new candidates).
    """
    new = []
    for r in res:
        p_seq = per_nucleotide(*probs[r["rna"]], len(r["seq"]))
        new.append({**r, "p_seq": p_seq, "candidates": fold_candidates(r["seq"], p_seq)})
    out = {m: scores_of(new, [choose_structure(r["candidates"], r["p_seq"],
                                               settings_for(m))[0] for r in new])
           for m in modes}
    return out, new


def main(argv: list[str] | None = None) -> None:
    """Score the alternatives and print one block per alternative."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, required=True, help="csfold_loo.py --cache file")
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--skip-models", action="store_true",
                    help="skip the gbt and helix-end alternatives (they need scikit-learn)")
    ap.add_argument("--pooled", type=int, default=0, metavar="M",
                    help="also run the pooled-prediction alternative with M imputations "
                         "(retrains every fold: minutes)")
    ap.add_argument("--workers", type=int, default=2, help="processes for --pooled")
    args = ap.parse_args(argv)
    global GROUP_IDS
    results = pd.read_pickle(args.cache)
    res = folded_full(results)
    protocol = results[0].get("protocol", "loo")
    groups = rna_groups(args.data, sorted(r["rna"] for r in results), protocol)
    HELD.update({x: g for g in groups for x in g})
    index = group_of(groups)
    GROUP_IDS = np.array([index[r["rna"]] for r in res])
    print(f"# protocol={protocol}: held-out choices and retrained models leave out "
          + ("each RNA" if protocol == "loo" else "the RNA's identity group"))
    base = scores_of(res, [r["baseline"] for r in res])
    print(f"# {len(res)} fully covered RNAs; sensitivity / PPV")
    print(f"{'baseline':12s} {'ViennaRNA MFE':22s} {base[:, 0].mean():.3f} / "
          f"{base[:, 1].mean():.3f}")
    for m in ("published", "conservative"):
        s = scores_of(res, [choose_structure(r["candidates"], r["p_seq"], settings_for(m))[0]
                            for r in res])
        print(f"{'mode':12s} {m:22s} {s[:, 0].mean():.3f} / {s[:, 1].mean():.3f}")

    grid = [(how, k, b) for how in ("mfe", "mea") for k in (0.5, 1.0, 1.5, 2.0)
            for b in (-1.0, -0.5, 0.0, 0.5)]
    sp = np.array([scores_of(res, [logodds_fold(r["seq"], r["p_seq"], k, b, how)
                                   for r in res]) for how, k, b in grid])
    report_grid("logodds", [f"{h} k={k} b={b}" for h, k, b in grid], sp, base)

    grid2 = [(n, t) for n in (1, 2, 3) for t in (0.1, 0.2, 0.3, 0.4, 0.5)]
    cons = [conservative_pairs(r) for r in res]
    sp = np.array([scores_of(res, [drop_short_helices(c, r["p_seq"], n, t)
                                   for r, c in zip(res, cons, strict=True)]) for n, t in grid2])
    report_grid("short-helix", [f"L<={n} meanP>{t}" for n, t in grid2], sp, base)

    deltas = (0.5, 1.0, 2.0)
    sp = np.array([scores_of(res, [subopt_pick(r, d) for r in res]) for d in deltas])
    report_grid("subopt", [f"delta={d} kcal/mol" for d in deltas], sp, base)

    best = []
    for r in res:
        sc = [score(c.pairs, r["ref_pairs"], set(r["covered"])) for c in r["candidates"]]
        f1 = [2 * a * b / (a + b) if a + b > 0 else 0.0 for a, b in sc]
        best.append(list(r["candidates"][int(np.argmax(f1))].pairs))
    s = scores_of(res, best)
    print(f"{'oracle':12s} {'best of six candidates':22s} {s[:, 0].mean():.3f} / "
          f"{s[:, 1].mean():.3f}")
    if args.pooled:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.workers) as pool:
            tasks = [(r["rna"], args.data, args.pooled, held_out(r["rna"])) for r in res]
            outs = list(pool.map(pooled_fold, tasks))
        scored, new = refold(res, {k: (rid, p) for k, rid, p in outs},
                             ("published", "conservative"))
        for m, s in scored.items():
            print(f"{'pooled':12s} {f'M={args.pooled} {m}':22s} {s[:, 0].mean():.3f} / "
                  f"{s[:, 1].mean():.3f}")
        sp, _ = grid_scores(new)
        loo = nested(sp, sp[-1]).mean(axis=0)
        print(f"{'pooled':12s} {'pruning held out':22s} {loo[0]:.3f} / {loo[1]:.3f}")
    if args.skip_models:
        return
    if "complete" not in results[0]:
        sys.exit("the cache has no imputed tables: rerun csfold_loo.py to rebuild it")

    probs = gbt_probabilities(results, args.data)
    scored, _ = refold(res, probs, ("published", "conservative"))
    for m, s in scored.items():
        print(f"{'gbt':12s} {m:22s} {s[:, 0].mean():.3f} / {s[:, 1].mean():.3f}")

    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rows = helix_end_rows(results, args.data,
                          {r["rna"]: c for r, c in zip(res, cons, strict=True)})
    x, y = np.nan_to_num(np.stack(rows["x"])), rows["false"].to_numpy()
    pred = np.zeros(len(rows))
    for rna in rows["rna"].unique():
        m = (rows["rna"] == rna).to_numpy()
        trained = ~rows["rna"].isin(held_out(rna)).to_numpy()
        model = LogisticRegression(C=0.05, max_iter=3000).fit(x[trained], y[trained])
        pred[m] = model.predict_proba(x[m])[:, 1]
    sc = rows["scored"].to_numpy()
    print(f"helix-end    {len(rows)} helix ends ({y.mean():.2f} false); held-out AUC "
          f"{roc_auc_score(y, pred):.2f} (scored RNAs {roc_auc_score(y[sc], pred[sc]):.2f})")
    for thr in (0.2, 0.3, 0.4, 0.5):
        drop = rows[(pred > thr) & sc]
        gone = {(a, i, j) for a, i, j in drop[["rna", "i", "j"]].itertuples(index=False)}
        s = scores_of(res, [[q for q in c if (r["rna"], *q) not in gone]
                            for r, c in zip(res, cons, strict=True)])
        print(f"{'helix-end':12s} {f'drop P(false)>{thr}':22s} {s[:, 0].mean():.3f} / "
              f"{s[:, 1].mean():.3f} ({len(drop)} pairs dropped, "
              f"{int(drop['false'].sum())} labelled false)")


if __name__ == "__main__":
    main()
