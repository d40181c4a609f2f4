"""Figures of the molecular-weight-limit theory (``difftm mwlimit``, benchmarks/mwlimit_validation).

Matplotlib through its object API with the Agg canvas; files are written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from difftm.report.figures import _save


def plot_snr_vs_mass(curve: dict, threshold: float, path: Path,
                     detectable_da: float | None = None, alignable_da: float | None = None,
                     model: dict | None = None, title: str = "", overwrite: bool = False
                     ) -> Path:
    """Expected SNR against mass with the detection threshold and the limits marked.

    Args:
        curve: ``mass_da`` and ``snr`` arrays (:func:`difftm.theory.limits.snr_curve`), and
            optionally ``angular_precision_deg`` / ``required_accuracy_deg``.
        threshold: detection threshold (SNR units).
        path: PNG to write.
        detectable_da, alignable_da: the limits (vertical lines), or None.
        model: optional ``{"name", "mass_da", "snr"}`` point for an atomic model.
        title: figure title.
        overwrite: replace an existing file.
    """
    from difftm.io.atomic import check_writable

    check_writable(path, overwrite)
    mass = np.asarray(curve["mass_da"]) / 1e3
    two = "angular_precision_deg" in curve
    fig = Figure(figsize=(9.5 if two else 5.5, 4.0))
    ax = fig.add_subplot(1, 2 if two else 1, 1)
    ax.loglog(mass, curve["snr"], "-", color="C0", label="expected SNR")
    ax.axhline(threshold, color="C3", ls="--", label=f"detection threshold {threshold:.2f}")
    if detectable_da:
        ax.axvline(detectable_da / 1e3, color="C3", ls=":",
                   label=f"smallest detectable {detectable_da / 1e3:.1f} kDa")
    if model is not None:
        ax.plot([model["mass_da"] / 1e3], [model["snr"]], "o", color="k",
                label=f"{model.get('name', 'model')}: {model['snr']:.1f}")
    ax.set_xlabel("mass (kDa)")
    ax.set_ylabel("2DTM SNR (noise sigmas)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    if two:
        ax2 = fig.add_subplot(1, 2, 2)
        ax2.loglog(mass, curve["angular_precision_deg"], color="C0",
                   label="angular precision (Cramer-Rao)")
        ax2.loglog(mass, curve["required_accuracy_deg"], color="C2", ls="--",
                   label="required d/D")
        if alignable_da:
            ax2.axvline(alignable_da / 1e3, color="C2", ls=":",
                        label=f"smallest alignable {alignable_da / 1e3:.1f} kDa")
        ax2.set_xlabel("mass (kDa)")
        ax2.set_ylabel("degrees")
        ax2.grid(True, which="both", alpha=0.3)
        ax2.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, Path(path))


def plot_validation(results: list[dict], path: Path) -> Path:
    """Measured true-pose SNR (each particle, mean +- s.e.m.) and predicted SNR vs mass, and
    the measured/predicted ratio (benchmarks/mwlimit_validation.py)."""
    fig = Figure(figsize=(9.5, 3.8))
    ax, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    mass = np.array([r["mass_kda"] for r in results])
    for r in results:
        ax.plot([r["mass_kda"]] * len(r["measured"]), r["measured"], ".", color="0.6", ms=3)
    ax.errorbar(mass, [r["measured_mean"] for r in results],
                yerr=[r["measured_sem"] for r in results], fmt="o", color="k",
                label="measured (scorer, true poses)")
    ax.plot(mass, [r["predicted"] for r in results], "s", mfc="none", color="C0",
            label="predicted (ideal matched filter)")
    ax.plot(mass, [r["predicted_template"] for r in results], "^", mfc="none", color="C1",
            label="predicted (difftm template)")
    ax.plot(mass, [r["predicted_mass"] for r in results], "x", color="C2",
            label="predicted from mass only")
    if all("predicted_search" in r for r in results):
        ax.plot(mass, [r["predicted_search"] for r in results], "D", mfc="none", color="C3",
                label="predicted for the search (template + self-whitening)")
    for r in results:
        ax.annotate(r["target"].split(".")[0].upper(), (r["mass_kda"], r["measured_mean"]),
                    fontsize=6, xytext=(3, -9), textcoords="offset points")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("mass (kDa)")
    ax.set_ylabel("SNR")
    ax.legend(fontsize=6, loc="upper left")
    ax.grid(True, which="both", alpha=0.3)
    ratio = [r["ratio"] for r in results]
    err = [r["measured_sem"] / r["predicted"] for r in results]
    ax2.errorbar(mass, ratio, yerr=err, fmt="o", color="k", label="measured / ideal")
    ax2.plot(mass, [r["ratio_template"] for r in results], "^", mfc="none", color="C1",
             label="measured / with template")
    if all("ratio_search" in r for r in results):
        ax2.errorbar(mass, [r["ratio_search"] for r in results],
                     yerr=[r["measured_sem"] / r["predicted_search"] for r in results],
                     fmt="D", color="C3", mfc="C3",
                     label="measured / predicted for the search (the check)")
    ax2.axhspan(0.8, 1.2, color="C2", alpha=0.12, label="+-20 %")
    ax2.axhline(1.0, color="0.5", lw=0.8)
    ax2.set_xscale("log")
    ax2.set_ylim(0.5, 1.5)
    ax2.set_xlabel("mass (kDa)")
    ax2.set_ylabel("measured / predicted")
    ax2.legend(fontsize=7)
    ax2.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    return _save(fig, Path(path))
