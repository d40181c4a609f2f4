"""Figures for the detection statistics: SNR vs z-score with the p-value decision boundary,
and the survival histogram of scores against the noise expectation.

Matplotlib is used through its object API with the Agg canvas; nothing is set globally and
importing this module has no side effects.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from difftm.stats.pvalue import DEFAULT_CUTOFF, PValueModel, fit_pvalue_model
from difftm.stats.survival import SurvivalCurve

MAX_BACKGROUND_POINTS = 50_000
"""Non-called candidates drawn at most (a fixed-seed subsample beyond that)."""


def _save(fig: Figure, path: str | Path) -> Path:
    """Save ``fig`` as PNG atomically (a kill or a full disk leaves no half-written file)."""
    from difftm.io.atomic import atomic_output

    path = Path(path)
    FigureCanvasAgg(fig)
    with atomic_output(path, overwrite=True, immediate=True) as tmp:  # read by reports
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def decision_boundary(
    model: PValueModel,
    cutoff: float = DEFAULT_CUTOFF,
    region: str = "q1",
    space: str = "raw",
    n_points: int = 721,
) -> tuple[np.ndarray, np.ndarray]:
    """The curve -ln p = ``cutoff`` as (z-score, SNR) arrays, NaN where it is not defined.

    Args:
        model: fitted :class:`~difftm.stats.pvalue.PValueModel`.
        cutoff: -ln p level.
        region: p-value region ("q1" or "q3").
        space: "probit" (the exact ellipse arc) or "raw" (mapped back through the fitted
            empirical CDFs; NaN beyond the range of the fitted values).
        n_points: samples along the ellipse.
    """
    q1, q2 = model.boundary(cutoff, region=region, n_points=n_points)
    if space == "probit":
        return q1, q2
    if space != "raw":
        raise ValueError(f"space must be 'raw' or 'probit', got {space!r}")
    return model.from_probit(q1, q2)


def plot_snr_vs_zscore(
    snr: np.ndarray,
    zscore: np.ndarray,
    model: PValueModel | None,
    called_mask: np.ndarray,
    cutoff: float,
    path: str | Path,
    region: str = "q1",
    title: str = "",
) -> Path:
    """Scatter of candidates (z-score vs 2DTM SNR) with called ones and the decision boundary.

    Left panel: raw values; right panel: probit coordinates, where the boundary is an ellipse
    arc. Called particles are red, the rest grey (at most ``MAX_BACKGROUND_POINTS`` drawn).

    Args:
        snr: 2DTM SNR of each candidate.
        zscore: z-score of each candidate (same shape).
        model: fitted p-value model; ``None`` fits it to (zscore, snr).
        called_mask: boolean, True for called particles (same shape).
        cutoff: the -ln p cutoff whose level curve is drawn.
        path: PNG to write.
        region: p-value region the boundary is drawn for.
        title: figure title (default states counts and cutoff).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    snr = np.asarray(snr, dtype=np.float64).ravel()
    zscore = np.asarray(zscore, dtype=np.float64).ravel()
    called = np.asarray(called_mask, dtype=bool).ravel()
    if not snr.shape == zscore.shape == called.shape:
        raise ValueError(f"snr, zscore and called_mask shapes differ: {snr.shape}, "
                         f"{zscore.shape}, {called.shape}")
    if model is None:
        model = fit_pvalue_model(zscore, snr)
    background = np.flatnonzero(~called)
    if background.size > MAX_BACKGROUND_POINTS:
        rng = np.random.default_rng(0)
        background = np.sort(rng.choice(background, MAX_BACKGROUND_POINTS, replace=False))
    q1, q2 = model.to_probit(zscore, snr)

    fig = Figure(figsize=(12.0, 5.4))
    raw_ax, probit_ax = fig.subplots(1, 2)
    panels = ((raw_ax, zscore, snr, "raw", "z-score", "2DTM SNR"),
              (probit_ax, q1, q2, "probit", "probit(z-score)", "probit(SNR)"))
    for ax, x, y, space, xlabel, ylabel in panels:
        ax.scatter(x[background], y[background], s=3, c="0.6", lw=0, rasterized=True,
                   label=f"not called ({np.count_nonzero(~called)})")
        ax.scatter(x[called], y[called], s=10, c="tab:red", lw=0,
                   label=f"called ({np.count_nonzero(called)})")
        bx, by = decision_boundary(model, cutoff, region=region, space=space)
        if np.isfinite(bx).any():
            ax.plot(bx, by, c="k", lw=1.3, label=f"-ln p = {cutoff:g} ({region})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.legend(loc="upper left", fontsize=8, markerscale=2)
    probit_ax.axhline(0.0, c="0.8", lw=0.8, zorder=0)
    probit_ax.axvline(0.0, c="0.8", lw=0.8, zorder=0)
    fig.suptitle(title or f"{np.count_nonzero(called)} of {called.size} candidates called; "
                 f"a={model.a:.3f} b={model.b:.3f} w={np.degrees(model.w):.1f} deg")
    return _save(fig, path)


def plot_survival(
    curve: SurvivalCurve, threshold: float | None, path: str | Path, title: str = ""
) -> Path:
    """Log-scale survival plot: observed counts of scores >= t vs the noise expectation.

    Args:
        curve: from :func:`difftm.stats.survival.survival_histogram`.
        threshold: detection threshold drawn as a vertical line (``None`` for none).
        path: PNG to write.
        title: figure title.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    t = curve.thresholds
    fig = Figure(figsize=(7.0, 5.0))
    ax = fig.add_subplot()
    positive = curve.observed > 0
    ax.step(t[positive], curve.observed[positive], where="post", c="tab:blue",
            label="observed")
    shown = curve.expected > 1e-3
    sigma = curve.poisson_sigma
    ax.plot(t[shown], curve.expected[shown], c="k", lw=1.2,
            label=f"expected noise (N_search = {curve.n_search:g})")
    lower = np.maximum(curve.expected - 2 * sigma, 1e-3)
    ax.fill_between(t[shown], lower[shown], (curve.expected + 2 * sigma)[shown],
                    color="0.8", label="+-2 Poisson sigma")
    if threshold is not None:
        above = int(curve.observed[np.searchsorted(t, threshold)]) if threshold <= t[-1] else 0
        ax.axvline(threshold, c="tab:red", ls="--",
                   label=f"threshold {threshold:.2f} ({above} at or above)")
    ax.set_yscale("log")
    ax.set_xlabel("score threshold t (noise sigma)")
    ax.set_ylabel("pixels with score >= t")
    ax.set_title(title or f"survival of {curve.n_pixels} pixels")
    ax.legend(fontsize=8)
    return _save(fig, path)
