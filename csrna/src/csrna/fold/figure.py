"""Figure of a CS-Fold result: the structure as an arc diagram above the classifier's
P(unpaired) per residue, so that agreement and disagreement can be seen at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from csrna.fold.folding import nested_part
from csrna.io import atomic_write, pair_table

PAIRED_COLOUR = "#2b6cb0"
UNPAIRED_COLOUR = "#dd8452"
CROSSING_COLOUR = "#c53030"


def plot_fold(path: str | Path, sequence: str, pairs: Sequence[tuple[int, int]],
              p_unpaired: Sequence[float], title: str = "",
              threshold: float = 0.6,
              pair_probability: dict[tuple[int, int], float] | None = None) -> None:
    """Save a two-panel figure of a structure and the per-residue P(unpaired).

    Top: arc diagram (nested pairs in blue above the axis, pseudoknotted pairs in red below).
    Bottom: P(unpaired) bars, blue where the residue is paired in the structure, orange where
    unpaired; a cross marks residues whose state disagrees with the call P > ``threshold``;
    residues without shifts (NaN) are marked with a grey dot on the axis.

    Args:
        path: output image (PNG, PDF or SVG by suffix).
        sequence: RNA sequence.
        pairs: 1-based base pairs.
        p_unpaired: (n,) classifier P(unpaired), NaN where the residue has no prediction.
        title: figure title.
        threshold: the unpaired call used by the selection.
        pair_probability: optional per-pair confidence (restrained base-pair probability);
            when given, arcs are coloured by it (colour bar) instead of blue/red, and
            pseudoknotted pairs are still drawn below the axis.

    Uses matplotlib's object API with the Agg canvas (no pyplot global state).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Arc, Patch

    n = len(sequence)
    p = np.asarray(p_unpaired, dtype=np.float64)
    if len(p) != n:
        raise ValueError(f"p_unpaired has {len(p)} values for {n} residues")
    x = np.arange(1, n + 1)
    paired = pair_table(list(pairs), n) >= 0
    nested = set(nested_part(pairs, n))

    fig = Figure(figsize=(max(6.0, min(16.0, 0.16 * n + 2.5)), 5.2), dpi=120)
    FigureCanvasAgg(fig)
    ax_arc, ax_p = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1.1, 1.0]})
    span = max((j - i for i, j in pairs), default=1)
    cmap = None
    if pair_probability is not None:
        from matplotlib import colormaps
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        cmap = colormaps["viridis_r"]
    for i, j in pairs:
        inside = (i, j) in nested
        colour = PAIRED_COLOUR if inside else CROSSING_COLOUR
        if cmap is not None:
            colour = cmap(float(np.clip(pair_probability.get((i, j), 0.0), 0.0, 1.0)))
        ax_arc.add_patch(Arc(((i + j) / 2, 0), j - i, j - i, theta1=0 if inside else 180,
                             theta2=180 if inside else 360, lw=1.3 if cmap else 1.0,
                             color=colour))
    if cmap is not None:
        bar = fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=ax_arc, fraction=0.025,
                           pad=0.01)
        bar.set_label("pair probability", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    ax_arc.axhline(0, color="0.3", lw=0.8)
    crossing = len(pairs) - len(nested)
    ax_arc.set_ylim(-0.55 * span if crossing else -0.05 * span, 0.55 * span)
    ax_arc.set_yticks([])
    for side in ("left", "right", "top", "bottom"):
        ax_arc.spines[side].set_visible(False)
    ax_arc.tick_params(bottom=False)
    ax_arc.set_title(title or f"{len(pairs)} base pairs"
                     + (f" ({crossing} pseudoknotted, below)" if crossing else ""), fontsize=9)

    known = np.isfinite(p)
    colours = np.where(paired, PAIRED_COLOUR, UNPAIRED_COLOUR)
    ax_p.bar(x[known], p[known], width=0.8, color=colours[known])
    ax_p.bar(x, np.full(n, 0.05), bottom=-0.07, width=1.0, color=colours)  # state strip
    wrong = known & ((p > threshold) == paired)
    ax_p.plot(x[wrong], p[wrong] + 0.06, "x", color="k", ms=5,
              label="state disagrees with the call")
    ax_p.plot(x[~known], np.zeros((~known).sum()), "o", color="0.6", ms=3,
              label="no shifts")
    ax_p.axhline(threshold, color="0.4", lw=0.8, ls="--")
    ax_p.axhline(0, color="0.3", lw=0.5)
    ax_p.set_ylim(-0.08, 1.12)
    ax_p.set_yticks([0, 0.2, 0.4, 0.6, 0.8, 1.0])
    ax_p.set_xlim(0.3, n + 0.7)
    ax_p.set_ylabel("P(unpaired)")
    handles = [Patch(color=c, label=lab) for c, lab in
               ((PAIRED_COLOUR, "paired in structure"), (UNPAIRED_COLOUR, "unpaired"))]
    ax_p.legend(handles=handles + ax_p.get_lines()[:2], fontsize=7, ncol=4, loc="upper center",
                bbox_to_anchor=(0.5, -0.18 if n <= 80 else -0.12), frameon=False)
    if n <= 80:
        ax_p.set_xticks(x, list(sequence), fontsize=6)
    else:
        ax_p.set_xlabel("residue")
    if cmap is not None:
        fig.colorbar(ScalarMappable(Normalize(0, 1), cmap), ax=ax_p, fraction=0.025,
                     pad=0.01).ax.set_visible(False)  # keeps the two panels aligned
    fig.tight_layout()
    atomic_write(path, fig.savefig)
