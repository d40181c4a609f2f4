"""Choose the limit of one of ``difftm peaks``'s call rules in held-out folds.

Reads what ``benchmarks/detection_matrix.py --json CELLS --candidates CANDIDATES`` wrote (the
matrix's cells with every metric's precision and recall, and every candidate of every cell
with its scores and truth label) and evaluates the default call (SNR >= erfc threshold, not
near contamination, and the product's other default rules) with the chosen rule added at
each value k of a grid: ``--rule specificity``, "specificity >= k"
(``difftm.search.particles.orientation_specificity``); ``--rule excess``, "|excess
contrast| <= k" (``difftm.search.contamination.excess_contrast``).

Honest evaluation: the folds hold out one target at a time (its planted cells and the
noise-only crops searched with its template). Inside the training folds k is chosen to
maximise the number of cells that meet the defaults' bar (precision >= 0.95 and recall within
0.05 of the best metric, the rule itself included) under at most 1 false positive per
noise-only micrograph, ties going to the middle of the best plateau; the held-out target is
then called with that k. The headline is the held-out figure; the k for the product is the
one chosen on all cells, printed last.

    python benchmarks/detection_rule.py --cells shot.json real.json \\
        --candidates shot.csv real.csv --figure specificity.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from detection_matrix import meets_bar

#: rule -> (candidate column, "min" (column >= k) or "max_abs" (|column| <= k), grid of k)
RULES = {
    "specificity": ("specificity", "min", np.round(np.arange(-2.0, 10.001, 0.25), 2)),
    "excess": ("excess_contrast", "max_abs", np.round(np.arange(2.0, 15.001, 0.25), 2)),
}


def cell_name(cell: dict) -> str:
    """The matrix's folder name of a cell (the ``cell`` column of the candidates)."""
    return (f"{cell['target']}_{cell['pixel_size']}_{cell['fluence']}_{cell['background']}_"
            f"{cell['seed']}_{cell['n_particles']}")


def load(cells_paths: list[Path], candidate_paths: list[Path],
         usable: bool = False, clean: bool = False) -> tuple[pd.DataFrame, dict]:
    """Candidates (one table) and, per planted cell, the best recall of the matrix's metrics
    on their own (the product's default call excluded); with ``usable`` only metrics with
    precision >= 0.95 in that cell count (a metric that calls mostly noise is no
    alternative). With ``clean`` the cells are scored on the clean area (the matrix's
    "clean" columns): true candidates on contamination are dropped (they count neither
    way), the recall is over the particles planted off contamination (column ``n_clean``)
    and so is the best recall."""
    from difftm.search.contamination import MAX_CONTAMINATION

    cand = pd.concat([pd.read_csv(p) for p in candidate_paths], ignore_index=True)
    best, n_clean = {}, {}
    key = "clean_recall" if clean else "recall"
    for path in cells_paths:
        for cell in json.loads(Path(path).read_text())["cells"]:
            if cell["n_particles"]:
                recalls = [v[key] for name, v in cell["metrics"].items()
                           if name != "default"
                           and (not usable or not v["n_called"] or v["precision"] >= 0.95)]
                best[cell_name(cell)] = max(recalls, default=0.0)
                n_clean[cell_name(cell)] = cell.get("n_clean", cell["n_particles"])
    if clean:
        on_dirt = cand["true"].astype(bool) & (cand["contamination"] > MAX_CONTAMINATION)
        cand = cand[~on_dirt].copy()
        planted = cand["n_particles"] > 0
        cand.loc[planted, "n_particles"] = cand.loc[planted, "cell"].map(n_clean)
    return cand, best


def product_limits() -> dict[str, float | None]:
    """Each rule's limit in the product's default call (None: the rule is off)."""
    from difftm.search.contamination import MAX_EXCESS_CONTRAST
    from difftm.search.particles import MIN_SPECIFICITY

    return {"specificity": MIN_SPECIFICITY, "excess": MAX_EXCESS_CONTRAST}


def _passes(cand: pd.DataFrame, rule: str, k: float) -> pd.Series:
    column, kind, _ = RULES[rule]
    if kind == "min":
        return cand[column] >= k
    return ~(cand[column].abs() > k)


def evaluate(cand: pd.DataFrame, best: dict, k: float | None,
             contamination: bool = True, rule: str = "specificity") -> pd.DataFrame:
    """Per cell: precision, recall, bar met (planted) or false positives (noise-only), for
    the default call (SNR threshold, with ``contamination`` the contamination rule, and the
    product's default for every rule but ``rule``) with ``rule`` at limit ``k`` (None:
    without it)."""
    from difftm.search.contamination import MAX_CONTAMINATION

    called = cand["snr"] >= cand["erfc_threshold"]
    if contamination and "contamination" in cand and MAX_CONTAMINATION is not None:
        called &= ~(cand["contamination"] > MAX_CONTAMINATION)
    for other, limit in product_limits().items():
        if other != rule and limit is not None and RULES[other][0] in cand:
            called &= _passes(cand, other, limit)
    if k is not None:
        called &= _passes(cand, rule, k)
    rows = []
    for name, g in cand.assign(called=called).groupby("cell", sort=False):
        n = int(g["n_particles"].iloc[0])
        c = g[g["called"]]
        row = {"cell": name, "target": g["target"].iloc[0],
               "background": g["background"].iloc[0], "pixel_size": g["pixel_size"].iloc[0],
               "fluence": g["fluence"].iloc[0], "n": n}
        if g["cell"].iloc[0] not in best:
            row.update(noise=True, fp=len(c))
        else:
            tp = int(c["true"].sum())
            prec = tp / len(c) if len(c) else 1.0
            rec = tp / n if n else 1.0
            top = max(best.get(name, rec), rec)
            row.update(noise=False, precision=prec, recall=rec, best=top,
                       ok=meets_bar(prec, rec, top))
        rows.append(row)
    return pd.DataFrame(rows)


def tally(ev: pd.DataFrame) -> dict:
    """Cells meeting the bar and noise false positives per micrograph."""
    planted = ev[~ev["noise"]]
    noise = ev[ev["noise"]]
    out = {"cells": len(planted), "ok": int(planted["ok"].sum())}
    for bg in ("shot", "real"):
        p, q = planted[planted["background"] == bg], noise[noise["background"] == bg]
        out[f"ok_{bg}"] = f"{int(p['ok'].sum())}/{len(p)}"
        out[f"fp_{bg}"] = float(q["fp"].mean()) if len(q) else float("nan")
    out["fp"] = float(noise["fp"].mean()) if len(noise) else float("nan")
    return out


def choose_k(cand: pd.DataFrame, best: dict, contamination: bool = True,
             rule: str = "specificity") -> float:
    """The k with most cells meeting the bar at <= 1 noise false positive per micrograph
    (the middle of the best plateau)."""
    grid = RULES[rule][2]
    scores = []
    for k in grid:
        t = tally(evaluate(cand, best, float(k), contamination, rule))
        feasible = not (t["fp"] > 1.0)
        scores.append(t["ok"] if feasible else -1)
    scores = np.asarray(scores)
    top = np.flatnonzero(scores == scores.max())
    return float(grid[top[len(top) // 2]])


def main() -> None:
    """Run the folds, print the held-out table and the k chosen on all cells."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", nargs="+", type=Path, required=True)
    ap.add_argument("--candidates", nargs="+", type=Path, required=True)
    ap.add_argument("--usable", action="store_true",
                    help="compare recall only with metrics whose precision in the cell is "
                         ">= 0.95 (default: with every metric, as the issue's bar says)")
    ap.add_argument("--rule", choices=sorted(RULES), default="specificity",
                    help="the rule whose limit is chosen")
    ap.add_argument("--clean", action="store_true",
                    help="score the planted cells on the clean area (particles planted on "
                         "contamination, and calls at them, left out)")
    ap.add_argument("--no-contamination", action="store_true",
                    help="base the rule on the SNR alone (default: on the default call, SNR "
                         "and contamination rule)")
    ap.add_argument("--figure", type=Path, default=None,
                    help="the rule's statistic vs SNR of the candidates above the "
                         "threshold (PNG)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    cand, best = load(args.cells, args.candidates, args.usable, args.clean)
    rule = args.rule
    if RULES[rule][0] not in cand:
        raise SystemExit(f"the candidates have no {RULES[rule][0]} column: rerun "
                         "detection_matrix.py")
    base = not args.no_contamination
    held = []
    folds = {}
    for target in sorted(cand["target"].unique()):
        train = cand[cand["target"] != target]
        k = choose_k(train, best, base, rule)
        folds[target] = k
        ev = evaluate(cand[cand["target"] == target], best, k, base, rule)
        held.append(ev.assign(k=k))
        print(f"fold {target:<12} k chosen on the other targets: {k:5.2f}  held out: "
              f"{tally(ev)}", flush=True)
    held_ev = pd.concat(held, ignore_index=True)
    plain = evaluate(cand, best, None, base, rule)
    k_all = choose_k(cand, best, base, rule)
    print("\nheld-out cells (each with its fold's k):")
    cols = ["target", "pixel_size", "fluence", "background", "precision", "recall", "best",
            "ok", "k"]
    print(held_ev[~held_ev["noise"]][cols].to_string(index=False))
    h, p = tally(held_ev), tally(plain)
    print(f"\nHELD-OUT rule: cells ok {h['ok']}/{h['cells']} (shot {h['ok_shot']}, real "
          f"{h['ok_real']}); noise fp/micrograph shot {h['fp_shot']:.2f} real {h['fp_real']:.2f}")
    print(f"no rule     : cells ok {p['ok']}/{p['cells']} (shot {p['ok_shot']}, real "
          f"{p['ok_real']}); noise fp/micrograph shot {p['fp_shot']:.2f} real {p['fp_real']:.2f}")
    a = tally(evaluate(cand, best, k_all, base, rule))
    print(f"k chosen on all cells: {k_all:.2f} (in-sample: cells ok {a['ok']}/{a['cells']}, "
          f"noise fp {a['fp']:.2f})")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "folds": folds, "k_all": k_all, "held_out": h, "snr_alone": p, "in_sample": a,
            "held_out_cells": held_ev.to_dict(orient="records")}, indent=1, default=str))
    if args.figure is not None:
        _figure(cand, k_all, args.figure, rule)


def _figure(cand: pd.DataFrame, k: float, path: Path, rule: str = "specificity") -> None:
    """The rule's statistic (``|excess contrast|`` for ``excess``) against SNR for candidates
    above the erfc threshold, by background: planted particles, false positives the
    contamination rule rejects, the others."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from difftm.search.contamination import MAX_CONTAMINATION

    column, kind, _ = RULES[rule]
    above = cand[cand["snr"] >= cand["erfc_threshold"]]
    value = above[column].abs() if kind == "max_abs" else above[column]
    dirty = above["contamination"] > MAX_CONTAMINATION
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    for ax, bg in zip(axes, ("shot", "real"), strict=True):
        on_bg = above["background"] == bg
        true = above["true"].astype(bool)
        groups = ((on_bg & true & ~dirty, "tab:blue", "planted particle"),
                  (on_bg & true & dirty, "tab:cyan", "planted on contamination"),
                  (on_bg & ~true & dirty, "tab:orange", "false positive near contamination"),
                  (on_bg & ~true & ~dirty, "tab:red", "other false positive"))
        for mask, colour, label in groups:
            if mask.any():
                ax.scatter(above.loc[mask, "snr"], value[mask], s=12, c=colour, alpha=0.7,
                           label=f"{label} ({int(mask.sum())})")
        ax.axhline(k, color="k", ls="--", lw=1, label=f"limit chosen on all cells: {k:g}")
        default = product_limits()[rule]
        if default is not None and default != k:
            ax.axhline(default, color="k", ls=":", lw=1, label=f"product default: {default:g}")
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if rule == "specificity":
            ax.set_yscale("symlog", linthresh=10)
        ax.set_xlabel("SNR (calls above the erfc threshold)")
        ax.set_title(f"{bg} background")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("orientation specificity (robust sigmas)" if rule == "specificity"
                       else "|excess contrast| (robust sigmas)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
