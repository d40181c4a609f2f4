"""Figures and the HTML section of ``difftm classify``: SNR under template 1 vs 2 coloured
by posterior, populations with intervals, and a reliability diagram."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from difftm.classify.model import MixtureFit
from difftm.report.html import Section


def _save(fig: Figure, path: Path) -> Path:
    from difftm.io.atomic import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def reliability_bins(p: np.ndarray, truth: np.ndarray, bins: int = 10):
    """``(mean predicted, observed frequency, counts)`` per posterior bin (NaN when empty)."""
    edges = np.linspace(0, 1, bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    pred, obs, cnt = np.full(bins, np.nan), np.full(bins, np.nan), np.zeros(bins, int)
    for b in range(bins):
        m = idx == b
        cnt[b] = int(m.sum())
        if cnt[b]:
            pred[b], obs[b] = float(p[m].mean()), float(truth[m].mean())
    return pred, obs, cnt


def simulated_labels(fit: MixtureFit, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Model-based check when the truth is unknown: each target's class drawn from its
    posterior (the fitted model's own prediction), returned with the posterior of the MAP
    class. A calibrated model's reliability diagram against these draws lies on the
    diagonal by construction up to sampling noise; it shows how much sampling noise the
    diagram has at this number of targets, not whether the model is right."""
    rng = np.random.default_rng(seed)
    u = rng.random(len(fit.posteriors))
    draws = (fit.posteriors.cumsum(1) < u[:, None]).sum(1)
    rows = np.arange(len(draws))
    return fit.posteriors[rows, fit.classes], (draws == fit.classes).astype(float)


def classify_figures(folder: Path, table: pd.DataFrame, fit: MixtureFit, names: list[str],
                     truth: np.ndarray | None = None) -> list[Path]:
    """Write the classification figures into ``folder``; return their paths.

    Args:
        folder: output folder.
        table: the classified table (``snr_k``, ``posterior_k``, ``class``; 1-based k).
        fit: the mixture fit.
        names: template names (legend).
        truth: optional 0-based true classes: the reliability diagram is then against them;
            without it, against classes drawn from the posteriors (:func:`simulated_labels`).
    """
    figs = []
    k = len(names)
    fig = Figure(figsize=(4.8, 4.2))
    ax = fig.add_subplot()
    sc = ax.scatter(table["snr_1"], table["snr_2"], c=table["posterior_1"], cmap="coolwarm_r",
                    vmin=0, vmax=1, s=14, edgecolors="k", linewidths=0.3)
    lo = float(min(table["snr_1"].min(), table["snr_2"].min()))
    hi = float(max(table["snr_1"].max(), table["snr_2"].max()))
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
    ax.set_xlabel(f"SNR under {names[0]}")
    ax.set_ylabel(f"SNR under {names[1]}")
    fig.colorbar(sc, ax=ax, label=f"posterior of {names[0]}")
    ax.set_title("refined SNR per template")
    figs.append(_save(fig, folder / "snr_scatter.png"))

    fig = Figure(figsize=(4.6, 3.4))
    ax = fig.add_subplot()
    x = np.arange(k)
    ax.bar(x, fit.weights, color="C0", alpha=0.7, label="EM population")
    if np.isfinite(fit.weights_interval).all():
        lo_, hi_ = fit.weights_interval[:, 0], fit.weights_interval[:, 1]
        ax.errorbar(x, fit.weights, yerr=[fit.weights - lo_, hi_ - fit.weights], fmt="none",
                    color="k", capsize=4, label=f"{fit.level:.0%} bootstrap")
    naive = np.bincount(table["naive_class"].to_numpy(int) - 1, minlength=k) / len(table)
    ax.plot(x, naive, "x", color="C3", ms=8, label="highest SNR wins")
    ax.set_xticks(x, names, fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("population")
    ax.legend(fontsize=7)
    ax.set_title("class populations")
    figs.append(_save(fig, folder / "populations.png"))

    fig = Figure(figsize=(4.6, 4.0))
    ax = fig.add_subplot()
    if truth is not None:
        rows = np.arange(len(truth))
        p = fit.posteriors[rows, fit.classes]
        hit = (np.asarray(truth) == fit.classes).astype(float)
        title = "reliability against the truth"
    else:
        p, hit = simulated_labels(fit)
        title = "reliability (model-based: classes drawn from posteriors)"
    pred, obs, cnt = reliability_bins(p, hit)
    ok = cnt > 0
    ax.plot([0, 1], [0, 1], color="0.6", lw=1)
    ax.plot(pred[ok], obs[ok], "o-")
    for px_, py_, c in zip(pred[ok], obs[ok], cnt[ok], strict=True):
        ax.annotate(str(c), (px_, py_), fontsize=7, xytext=(3, -9), textcoords="offset points")
    ax.set_xlabel("posterior of the MAP class (bin mean)")
    ax.set_ylabel("fraction correct")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_title(title, fontsize=9)
    figs.append(_save(fig, folder / "reliability.png"))
    return figs


def classify_section(table: pd.DataFrame, fit: MixtureFit, names: list[str], seconds: float,
                     figures: list[Path]) -> Section:
    """The report section of one classification."""
    rows = [("particles", f"{len(table)}"),
            ("noise sigma (SNR units)", f"{fit.sigma:.3f}"),
            ("EM iterations", f"{fit.iterations}"),
            ("wall time", f"{seconds:.1f} s")]
    header = ["template", "EM population", f"{fit.level:.0%} bootstrap", "Fisher s.e.",
              "MAP count", "highest-SNR count", "mean SNR"]
    body = []
    for c, name in enumerate(names):
        lo, hi = fit.weights_interval[c]
        body.append([name, f"{fit.weights[c]:.3f}", f"{lo:.3f}-{hi:.3f}",
                     f"{fit.weights_se[c]:.3f}", f"{int((table['class'] == c + 1).sum())}",
                     f"{int((table['naive_class'] == c + 1).sum())}",
                     f"{table[f'snr_{c + 1}'].mean():.2f}"])
    return Section(title="Classification", rows=rows, tables=[(header, body)],
                   paragraphs=["Each particle refined under each template; populations by "
                               "EM over the likelihood of docs/CLASSIFY.md; posteriors per "
                               "particle."],
                   figures=[(p, p.stem.replace("_", " ")) for p in figures])
