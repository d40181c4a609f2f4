"""Figures of a search: the micrograph with detections circled, and score maps.

Matplotlib is used through its object API with the Agg canvas; nothing is set globally.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Circle


def _save(fig: Figure, path: Path) -> Path:
    """Save ``fig`` as PNG atomically (a kill or a full disk leaves no half-written file)."""
    from difftm.io.atomic import atomic_output

    FigureCanvasAgg(fig)
    with atomic_output(path, overwrite=True, immediate=True) as tmp:  # read by reports
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return Path(path)


def _robust_limits(image: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(image[np.isfinite(image)], [0.5, 99.5])
    return float(lo), float(hi)


def plot_micrograph_detections(
    image: np.ndarray,
    detections: pd.DataFrame,
    path: Path,
    radius_px: float,
    truth: pd.DataFrame | None = None,
    title: str = "",
    lowpass_sigma_px: float = 1.5,
    excluded: np.ndarray | None = None,
    rejected: pd.DataFrame | None = None,
) -> Path:
    """Micrograph (lightly smoothed for display) with detections and true particles circled.

    Args:
        image: (H, W) micrograph.
        detections: columns x, y (pixels) of called particles (yellow circles).
        path: PNG to write.
        radius_px: circle radius in pixels (about the particle radius).
        truth: optional true centres (cyan dashed circles).
        title: figure title.
        lowpass_sigma_px: Gaussian smoothing for display only.
        excluded: optional boolean (H, W) mask of regions excluded from calls (outlined in
            orange: contamination).
        rejected: optional columns x, y of candidates above the threshold that a rule
            rejected (red crosses).
    """
    from scipy.ndimage import gaussian_filter

    shown = gaussian_filter(np.asarray(image, dtype=np.float64), lowpass_sigma_px)
    lo, hi = _robust_limits(shown)
    h, w = shown.shape
    fig = Figure(figsize=(7.0, 7.0 * h / w + 0.4))
    ax = fig.add_subplot()
    ax.imshow(shown, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    if truth is not None:
        for x, y in zip(truth["x"], truth["y"], strict=True):
            ax.add_patch(Circle((x, y), radius_px * 1.15, fill=False, ec="cyan", lw=1.0,
                                ls="--"))
    for x, y in zip(detections["x"], detections["y"], strict=True):
        ax.add_patch(Circle((x, y), radius_px, fill=False, ec="yellow", lw=1.4))
    if excluded is not None and np.any(excluded):
        ax.contour(np.asarray(excluded, dtype=float), levels=[0.5], colors="orange",
                   linewidths=1.0)
    if rejected is not None and len(rejected):
        ax.scatter(rejected["x"], rejected["y"], marker="x", c="red", s=40, lw=1.2)
    ax.set_title(title or f"{len(detections)} detections (yellow)"
                 + ("; truth dashed cyan" if truth is not None else ""))
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    return _save(fig, path)


def plot_map(values: np.ndarray, path: Path, title: str, label: str,
             cmap: str = "magma") -> Path:
    """A score map (e.g. z-score) with a colour bar."""
    h, w = values.shape
    fig = Figure(figsize=(7.0, 6.2 * h / w + 0.4))
    ax = fig.add_subplot()
    lo, hi = _robust_limits(values)
    im = ax.imshow(values, cmap=cmap, vmin=lo, vmax=max(hi, float(np.nanmax(values)) * 0.8),
                   interpolation="nearest")
    fig.colorbar(im, ax=ax, label=label, shrink=0.85)
    ax.set_title(title)
    ax.set_xlabel("x (px)")
    ax.set_ylabel("y (px)")
    return _save(fig, path)
