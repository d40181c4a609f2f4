"""Figures and report sections that show why particles were called on one micrograph."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from difftm.report.html import Section
from difftm.search.particles import CallSummary
from difftm.search.results import SearchResult

CAPTIONS = {
    "detections": "Micrograph (smoothed for display) with called particles circled",
    "zscore": "z-score map",
    "survival": "Survival histogram of the z-score map: observed vs expected under noise",
    "snr_vs_zscore": "SNR vs z-score of all candidates, -ln p decision boundary, called "
                     "particles highlighted",
}


def search_figures(
    folder: Path,
    result: SearchResult,
    table: pd.DataFrame,
    call: CallSummary,
    image: np.ndarray | None = None,
    truth: pd.DataFrame | None = None,
    prefix: str = "",
    pvalue_region: str = "q1",
) -> dict[str, Path]:
    """Write the standard figures of one searched micrograph into ``folder``.

    Also writes ``<prefix>survival.csv`` (threshold, observed, expected counts).

    Returns:
        figure name -> PNG path (``detections`` only when ``image`` is given).
    """
    from difftm.report.figures import plot_map, plot_micrograph_detections
    from difftm.report.stats_figures import plot_snr_vs_zscore, plot_survival
    from difftm.stats.pvalue import fit_pvalue_model
    from difftm.stats.survival import survival_histogram

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    called = table[table["called"]]
    figs: dict[str, Path] = {}
    if image is not None:
        radius = 0.35 * float(result.metadata["box"])
        title = f"{len(called)} called (yellow)" + (
            f", {len(truth)} planted (cyan)" if truth is not None else "")
        # above the cutoff but rejected by a rule (contamination: orange outline; a blob;
        # the optional specificity)
        rejected = table[table[f"called_{call.metric}"] & ~table["called"]]
        if len(rejected):
            title += f"; {len(rejected)} rejected by the rules (red x)"
        if call.excluded is not None and call.excluded.any():
            title += "; contamination outlined (orange)"
        figs["detections"] = plot_micrograph_detections(
            image, called, folder / f"{prefix}detections.png", radius, truth=truth, title=title,
            excluded=call.excluded, rejected=rejected)
    figs["zscore"] = plot_map(result.maps["zscore"], folder / f"{prefix}zscore.png",
                              "z-score map", "z-score")
    valid = result.valid_mask()
    curve = survival_histogram(result.maps["zscore"][valid], result.metadata["n_search"])
    figs["survival"] = plot_survival(curve, call.thresholds["zscore"],
                                     folder / f"{prefix}survival.png")
    pd.DataFrame({"threshold": curve.thresholds, "observed": curve.observed,
                  "expected": curve.expected}).to_csv(folder / f"{prefix}survival.csv",
                                                       index=False, float_format="%.6g")
    if len(table) >= 3:
        model = fit_pvalue_model(table["zscore"].to_numpy(), table["snr"].to_numpy())
        figs["snr_vs_zscore"] = plot_snr_vs_zscore(
            table["snr"].to_numpy(), table["zscore"].to_numpy(), model,
            table["called"].to_numpy(), call.thresholds["pvalue"],
            folder / f"{prefix}snr_vs_zscore.png", region=pvalue_region)
    return figs


def search_section(
    title: str,
    result: SearchResult,
    call: CallSummary,
    figures: dict[str, Path],
    extra_lines: list[str] | None = None,
    extra_rows: list[tuple[str, str]] | None = None,
) -> Section:
    """A report section: the per-micrograph summary line, key numbers and figures."""
    md = result.metadata
    rows = [
        ("search positions per pixel", f"{md['n_search']:,}"),
        ("searched pixels", f"{md['valid_pixels']:,}"),
        *[(f"threshold ({k})", f"{v:.3f}") for k, v in call.thresholds.items()],
        *[(f"called ({k})", str(v)) for k, v in call.n_called.items()],
    ]
    secs = md.get("timings", {}).get("seconds")
    if secs is not None:
        rows.append(("search time (s)", f"{secs:.1f}"))
    rows += extra_rows or []
    return Section(
        title,
        paragraphs=[call.line(), *(extra_lines or [])],
        rows=rows,
        figures=[(p, CAPTIONS.get(k, k)) for k, p in figures.items()],
    )
