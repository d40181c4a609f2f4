"""Figures and the HTML section of ``difftm reconstruct``: FSC curve, central slices,
orientation distribution, and the omit (template-bias) test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from difftm.report.html import Section

__all__ = ["fsc_figure", "omit_figure", "orientation_figure", "reconstruct_section",
           "slices_figure"]


def _save(fig: Figure, path: Path) -> Path:
    from difftm.io.atomic import atomic_output

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def fsc_figure(path: Path, frequency: np.ndarray, curves: dict[str, np.ndarray],
               resolution: float, noise_sigma: np.ndarray | None = None) -> Path:
    """FSC curves against spatial frequency with the 0.143 line and the resolution.

    Args:
        path: PNG to write.
        frequency: shell frequencies, 1/A.
        curves: label -> FSC per shell (the first is the half-map FSC).
        resolution: marked with a vertical line (A).
        noise_sigma: optional 3-sigma band of independent noise per shell.
    """
    fig = Figure(figsize=(5.6, 3.8))
    ax = fig.add_subplot()
    for label, values in curves.items():
        ax.plot(frequency, values, lw=1.6, label=label)
    if noise_sigma is not None:
        ax.fill_between(frequency, -3 * noise_sigma, 3 * noise_sigma, color="0.85",
                        label="noise +-3 sigma")
    ax.axhline(0.143, color="k", lw=0.8, ls="--", label="0.143")
    ax.axvline(1.0 / resolution, color="tab:red", lw=0.8)
    ax.text(1.0 / resolution, 0.9, f" {resolution:.2f} A", color="tab:red")
    ax.set_xlabel("spatial frequency (1/A)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.2, 1.05)
    ax.legend(fontsize=8)
    return _save(fig, path)


def slices_figure(path: Path, volume: np.ndarray, title: str = "") -> Path:
    """The three central slices (z, y, x) of a volume."""
    d = volume.shape[0]
    fig = Figure(figsize=(9.0, 3.2))
    # Grey levels from the slices themselves: the 1st percentile to the maximum (a
    # particle fills a few per cent of the box, so a high percentile would saturate it).
    shown = np.concatenate([volume[d // 2].ravel(), volume[:, d // 2].ravel(),
                            volume[:, :, d // 2].ravel()])
    lo, hi = float(np.percentile(shown, 1.0)), float(shown.max())
    for k, (name, sl) in enumerate((("xy (z = D/2)", volume[d // 2]),
                                    ("xz (y = D/2)", volume[:, d // 2]),
                                    ("yz (x = D/2)", volume[:, :, d // 2]))):
        ax = fig.add_subplot(1, 3, k + 1)
        ax.imshow(sl, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def orientation_figure(path: Path, angles: np.ndarray) -> Path:
    """Viewing directions (rot = longitude, 90 - tilt = latitude) on a Mollweide map."""
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.add_subplot(projection="mollweide")
    rot = np.deg2rad(((angles[:, 0] + 180.0) % 360.0) - 180.0)
    lat = np.deg2rad(90.0 - angles[:, 1])
    hb = ax.hexbin(rot, lat, gridsize=36, mincnt=1, cmap="viridis")
    fig.colorbar(hb, ax=ax, shrink=0.7, label="particles")
    ax.set_title(f"orientation distribution ({len(angles)} particles)", fontsize=9)
    ax.grid(True, lw=0.4)
    ax.set_xticklabels([])
    ax.set_xlabel("rot (longitude, -180 to 180 deg)", fontsize=8)
    ax.set_ylabel("90 - tilt (deg)", fontsize=8)
    return _save(fig, path)


def omit_figure(path: Path, cc_omit: float, controls: list[float], null: np.ndarray,
                z: float) -> Path:
    """Histogram of the phase-randomised null, the omitted-region CC and the controls."""
    fig = Figure(figsize=(5.6, 3.6))
    ax = fig.add_subplot()
    ax.hist(null, bins=30, color="0.7", label=f"phase-randomised ({len(null)})")
    for k, c in enumerate(controls):
        ax.axvline(c, color="tab:green", lw=1.0, alpha=0.7,
                   label="control regions" if k == 0 else None)
    ax.axvline(cc_omit, color="tab:red", lw=2.0, label=f"omitted region (z = {z:.1f})")
    ax.set_xlabel("map-model correlation in region")
    ax.set_ylabel("count")
    ax.legend(fontsize=8)
    return _save(fig, path)


def reconstruct_section(params: dict, figures: list[tuple[Path, str]],
                        omit: dict | None = None) -> Section:
    """The report section: settings, resolution and figures."""
    rows = [
        ("particles (half 1 / half 2)",
         f"{params['particles']} ({params['half1']} / {params['half2']})"),
        ("micrographs", str(params["micrographs"])),
        ("box, padding, pixel size", f"{params['box']} px, {params['padding']:g}, "
                                     f"{params['pixel_size']:g} A"),
        ("symmetry", f"{params['symmetry']} (order {params['symmetry_order']})"),
        ("resolution (FSC 0.143 / 0.5)", f"{params['resolution_0143']:.2f} A / "
                                         f"{params['resolution_05']:.2f} A"),
        ("half-set seed", str(params["seed"])),
        ("regularisation", params["regularisation"]),
    ]
    paragraphs = ["Half-sets share no pixel (overlapping boxes go to the same half); the FSC "
                  "is unmasked; the final map is the Wiener (FSC-weighted) combination"
                  + (", low-passed at the FSC-0.143 resolution." if params["lowpass"] else ".")]
    if omit is not None:
        rows.append(("omit test: CC omitted region", f"{omit['cc_omit']:.3f}"))
        rows.append(("omit test: CC control regions (mean)",
                     f"{np.mean(omit['cc_control']):.3f}" if omit["cc_control"] else "n/a"))
        rows.append(("omit test: noise reference mean, sd",
                     f"{omit['null_mean']:.3f}, {omit['null_sd']:.3f}"))
        rows.append(("omit test: z, p", f"{omit['z']:.2f}, {omit['p_normal']:.2g}"))
        rows.append(("omitted density returns (z >= 3)", "yes" if omit["returns"] else "no"))
    return Section(title="Reconstruction", paragraphs=paragraphs, rows=rows, figures=figures)
