"""Figures and the HTML section of ``difftm refine``: score before vs after, changes,
convergence traces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from difftm.report.html import Section


def _save(fig: Figure, path: Path) -> Path:
    from difftm.io.atomic import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True, immediate=True) as tmp:  # read by reports
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def refine_figures(folder: Path, table: pd.DataFrame, trace: np.ndarray,
                   scan: tuple[np.ndarray, np.ndarray] | None = None) -> list[Path]:
    """Write the refinement figures into ``folder``; return their paths."""
    figs = []
    fig = Figure(figsize=(4.6, 4.2))
    ax = fig.add_subplot()
    ax.scatter(table["snr_before"], table["snr"], s=12)
    lo = float(min(table["snr_before"].min(), table["snr"].min()))
    hi = float(max(table["snr_before"].max(), table["snr"].max()))
    ax.plot([lo, hi], [lo, hi], color="0.6", lw=1)
    ax.set_xlabel("SNR before")
    ax.set_ylabel("SNR after refinement")
    ax.set_title("score per particle")
    figs.append(_save(fig, folder / "snr_before_after.png"))
    fig = Figure(figsize=(9.0, 3.2))
    for k, (col, label) in enumerate((("angle_change", "angle change (deg)"),
                                      ("shift_change", "shift (px)"),
                                      ("defocus_change", "defocus change (A)"))):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.hist(table[col].to_numpy(float), bins=20)
        ax.set_xlabel(label)
    fig.suptitle("changes from the starting poses")
    figs.append(_save(fig, folder / "changes.png"))
    if trace.size:
        fig = Figure(figsize=(4.6, 3.4))
        ax = fig.add_subplot()
        ax.plot(trace, lw=0.8, alpha=0.7)
        ax.set_xlabel("step (gradient) or stage (grid)")
        ax.set_ylabel("score (stage low-pass)")
        ax.set_title("convergence")
        figs.append(_save(fig, folder / "convergence.png"))
    if scan is not None:
        fig = Figure(figsize=(4.6, 3.4))
        ax = fig.add_subplot()
        ax.plot(scan[0], scan[1], marker="o", ms=3)
        ax.set_xlabel("template voxel size (A)")
        ax.set_ylabel("mean SNR of all particles")
        ax.set_title("pixel size scan")
        figs.append(_save(fig, folder / "pixel_size_scan.png"))
    return figs


def refine_section(table: pd.DataFrame, method: str, seconds: float,
                   figures: list[Path],
                   scan: tuple[np.ndarray, np.ndarray] | None = None) -> Section:
    """The report section of one refinement."""
    gain = table["snr"] - table["snr_before"]
    rows = [
        ("method", method),
        ("particles", f"{len(table)}"),
        ("mean SNR before / after", f"{table['snr_before'].mean():.2f} / "
                                    f"{table['snr'].mean():.2f}"),
        ("SNR gain: median (min, max)", f"{gain.median():.2f} ({gain.min():.2f}, "
                                        f"{gain.max():.2f})"),
        ("angle change median (deg)", f"{table['angle_change'].median():.2f}"),
        ("shift median (px)", f"{table['shift_change'].median():.2f}"),
        ("defocus change median |A|", f"{table['defocus_change'].abs().median():.0f}"),
        ("wall time", f"{seconds:.1f} s ({seconds / max(len(table), 1):.2f} s per particle)"),
    ]
    if scan is not None:
        k = int(np.argmax(scan[1]))
        rows.append(("best template voxel size", f"{scan[0][k]:.4g} A (mean SNR "
                                                 f"{scan[1][k]:.2f})"))
    return Section(title="Refinement", rows=rows,
                   figures=[(p, p.stem.replace("_", " ")) for p in figures])
