"""From search maps to a particle table: candidates, every metric, and the decision.

Candidates are the local maxima of the chosen metric's map (the SNR map for ``snr``, the
default; the z-score map for ``zscore``, ``pvalue`` and ``gev``) after greedy suppression
within ``min_distance`` pixels (default: :data:`SUPPRESSION_DIAMETERS` template diameters,
because a strong particle's correlation footprint has side maxima above the threshold out to
about half its diameter) and outside a border (the template half-box by default). For every
candidate the table carries all metrics: 2DTM SNR, flat-field SNR, z-score, local mean and
sigma, -ln p of the 2DTM p-value (fitted on all candidates, region q1 or q3) and the
decisions of the erfc, GEV and p-value rules, the contamination statistic, the excess
contrast (for the candidates the chosen metric calls) and the orientation specificity. The chosen
metric's decision, less candidates near contamination and those on particle-sized blobs
(:mod:`difftm.search.contamination`, both on by default) and, as an option, those below a
minimum specificity, selects the rows written as particles.

Why the SNR is the default: the z-score saturates on strong particles (at pixels a particle
covers, many wrong orientations still correlate with it, so the per-pixel mean and sigma over
the search grow with the signal: measured SNR 29.9, mean 3.6, sigma 3.5, z 7.4), and on
coarse searches with a matched low-pass it stays near 4-5 whatever the SNR; with the
suppression radius scaled to the template the SNR's side lobes no longer count as
particles (benchmarks/detection_matrix.py, docs/STATISTICS.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from difftm.search.contamination import MAX_CONTAMINATION, MAX_EXCESS_CONTRAST
from difftm.search.results import SearchResult

Metric = Literal["snr", "zscore", "pvalue", "gev"]
METRICS: tuple[str, ...] = ("snr", "zscore", "pvalue", "gev")
#: The default decision rule.
DEFAULT_METRIC = "snr"
#: Default peak suppression radius, in template diameters.
SUPPRESSION_DIAMETERS = 0.7
#: Default minimum orientation specificity of a called particle (robust sigmas of the
#: micrograph's z-scores; :func:`orientation_specificity`): None, no such rule. Measured on
#: the detection matrix in held-out folds (one target out at a time), a minimum chosen on
#: the other targets did not generalise (no more held-out cells met the defaults' bar than
#: without it), so the rule is an option (docs/STATISTICS.md section 6).
MIN_SPECIFICITY: float | None = None


def template_diameter_px(result: SearchResult) -> float:
    """The template's diameter in pixels recorded by a search (runs made before it was
    recorded: the template box)."""
    md = result.metadata
    return float(md.get("template_diameter_px") or md["box"])


def default_min_distance(result: SearchResult) -> float:
    """Suppression radius (px) for a search: 0.7 template diameters."""
    return SUPPRESSION_DIAMETERS * template_diameter_px(result)


def _check_limit(value: float | None, what: str) -> None:
    """A rule's limit must be None (rule off) or a positive finite number (one line)."""
    if value is not None and not (np.isfinite(value) and value > 0):
        raise ValueError(f"maximum {what} must be a positive number, got {value}")


def _keep_only(table: pd.DataFrame, keep: pd.Series) -> int:
    """Uncall the called rows outside ``keep``; how many were uncalled."""
    rejected = int((table["called"] & ~keep).sum())
    table["called"] = table["called"] & keep
    return rejected


def orientation_specificity(zscore_map: np.ndarray, valid: np.ndarray,
                            zscore: np.ndarray | pd.Series) -> np.ndarray:
    """How unusual each z-score is among the micrograph's pixels, in robust sigmas.

    ``(z - median) / (1.4826 * MAD)`` with the median and MAD of the z-score map over the
    searched pixels. The z-score compares a pixel's best orientation with all its other
    orientations; at almost every pixel nothing is there, so the map's median and MAD are the
    z-score's null distribution for this search (its grid, low-pass and texture), whatever
    the particles. A particle correlates with one orientation far better than with the others
    (high specificity); a feature of the background that correlates with the template in many
    orientations alike (ice, carbon, a blob) can have a high SNR but a typical z-score.
    """
    from difftm.stats.robust import median_sigma

    z = np.asarray(zscore_map, dtype=np.float64)[np.asarray(valid, dtype=bool)]
    if z.size == 0:
        return np.full(len(zscore), np.nan)
    med, sigma = median_sigma(z)
    return (np.asarray(zscore, dtype=np.float64) - med) / max(sigma, 1e-12)


@dataclass
class CallSummary:
    """How particles were called on one micrograph."""

    metric: str
    cutoff: float
    n_candidates: int
    n_called: dict[str, int] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    min_specificity: float | None = None
    n_rejected_specificity: int = 0
    max_contamination: float | None = None
    n_rejected_contamination: int = 0
    max_excess_contrast: float | None = None
    n_rejected_excess: int = 0
    note: str = ""
    n_final: int = 0
    #: (H, W) bool: where the contamination rule excludes calls (None: rule off or skipped)
    excluded: np.ndarray | None = field(default=None, repr=False, compare=False)

    def line(self) -> str:
        """One summary line: chosen metric, cutoff, rules, number called under each metric."""
        counts = ", ".join(f"{k} {v}" for k, v in self.n_called.items())
        rules = ""
        if self.max_contamination is not None:
            rules += (f"; near contamination (> {self.max_contamination:g}) rejected "
                      f"{self.n_rejected_contamination}")
        if self.max_excess_contrast is not None:
            rules += (f"; unexplained blob contrast (|z| > {self.max_excess_contrast:g}) "
                      f"rejected {self.n_rejected_excess}")
        if self.min_specificity is not None:
            rules += (f"; specificity < {self.min_specificity:g} rejected "
                      f"{self.n_rejected_specificity}")
        if self.note:
            rules += f"; {self.note}"
        return (f"metric {self.metric}, cutoff {self.cutoff:.3f}{rules}; called "
                f"{self.n_final} of {self.n_candidates} candidates; above the cutoff: {counts}")


def call_particles(
    result: SearchResult,
    metric: Metric = DEFAULT_METRIC,
    cutoff: float | None = None,
    n_false_positives: float = 1.0,
    min_distance: float | None = None,
    border: int | None = None,
    pvalue_region: Literal["q1", "q3"] = "q1",
    pvalue_cutoff: float = 8.0,
    pvalue_candidates: Literal["maxima", "all"] = "maxima",
    min_specificity: float | None = MIN_SPECIFICITY,
    max_contamination: float | None = MAX_CONTAMINATION,
    micrograph: np.ndarray | None = None,
    max_excess_contrast: float | None = MAX_EXCESS_CONTRAST,
    scorer: object | None = None,
) -> tuple[pd.DataFrame, CallSummary]:
    """Pick candidates, score them with every metric and call particles with one.

    Args:
        result: a finished search.
        metric: which decision selects the particles.
        cutoff: threshold of the chosen metric (None: the erfc threshold for SNR and
            z-score, the GEV threshold for gev, ``pvalue_cutoff`` for pvalue).
        n_false_positives: expected false positives per micrograph for automatic cutoffs.
        min_distance: suppression radius in pixels (None: :func:`default_min_distance`).
        border: pixels excluded at the edges (None: the template half-box).
        pvalue_region: region of the p-value (q1: both positive; q3: either positive).
        pvalue_cutoff: default -ln p cutoff.
        pvalue_candidates: population the p-value model is fitted on: ``maxima`` (the
            local maxima of the z-score map, i.e. the candidates of this table) or ``all``
            (every searched pixel); candidates are scored with that model.
        min_specificity: a called particle must also have an orientation specificity
            (:func:`orientation_specificity`) of at least this; None (default): no such
            rule. It removes background features that pass the threshold in many
            orientations alike, and also some particles of small, blob-like targets; it
            only ever removes calls, so the false-positive rate stays within the erfc
            formula.
        max_contamination: a called particle must lie at least half a template diameter
            from contamination, i.e. have a contamination statistic
            (:func:`difftm.search.contamination.contamination_map`) of at most this
            (default :data:`~difftm.search.contamination.MAX_CONTAMINATION`); None: no
            such rule. Needs the micrograph: ``micrograph``, else the file the search read
            (where it is no longer readable the rule is skipped and the summary says so).
        micrograph: the searched image (default: read from the search's metadata).
        max_excess_contrast: a called particle must also have an excess contrast
            (:func:`difftm.search.contamination.excess_contrast`: particle-scale contrast
            of the whitened micrograph that its template does not explain) of at most this
            in absolute value (default
            :data:`~difftm.search.contamination.MAX_EXCESS_CONTRAST`); None: no such rule.
            Computed for the candidates the chosen metric calls (NaN for the others); needs the
            search's inputs (``scorer``, else ``config.yaml`` of the search's folder and
            the files it names; where they are gone the rule is skipped and the summary
            says so).
        scorer: :func:`difftm.search.contamination.searched_scorer` of the search, if the
            caller has it.

    Returns:
        ``(table, summary)``: a plain-named table of all candidates with a boolean column
        ``called`` and one ``called_<metric>`` column per metric, sorted by descending score.
    """
    from difftm.stats.gev import fit_gev_noise, gev_threshold
    from difftm.stats.peaks import pick_peaks
    from difftm.stats.pvalue import fit_pvalue_model, neg_log_pvalue
    from difftm.stats.threshold import erfc_threshold

    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}")
    if min_specificity is not None and not np.isfinite(min_specificity):
        raise ValueError(f"minimum specificity must be a finite number, got {min_specificity}")
    _check_limit(max_contamination, "contamination")
    _check_limit(max_excess_contrast, "excess contrast")
    md = result.metadata
    maps = result.maps
    if border is None:
        border = int(md["border_low"])
    valid = result.valid_mask()
    diameter = template_diameter_px(result)
    n_pix = int(md["valid_pixels"])
    n_search = int(md["n_search"])
    t_erfc = erfc_threshold(n_pix, n_search, n_false_positives)
    if min_distance is None:
        min_distance = default_min_distance(result)
    score_map = maps["snr"] if metric == "snr" else maps["zscore"]
    score = np.where(valid, score_map, np.nan)
    yx = pick_peaks(score, -np.inf, min_distance=min_distance, border=border)
    y, x = yx[:, 0].astype(int), yx[:, 1].astype(int)
    table = pd.DataFrame({"y": y, "x": x})
    for name in ("snr", "snr_flatfield", "zscore", "mean", "sigma", "rot", "tilt", "psi",
                 "defocus_offset"):
        table[name] = maps[name][y, x].astype(np.float64)
    table["specificity"] = orientation_specificity(maps["zscore"], valid, table["zscore"])
    contamination_note = ""
    excluded = None
    table["contamination"] = np.nan
    if max_contamination is not None:
        from difftm.search.contamination import contamination_map, searched_micrograph

        image = micrograph if micrograph is not None else searched_micrograph(
            md, maps["snr"].shape, result.folder)
        if image is None:
            contamination_note = "contamination rule skipped: micrograph not readable"
        else:
            cmap = contamination_map(image, diameter)
            table["contamination"] = cmap[y, x]
            excluded = cmap > max_contamination
    px = float(md["pixel_size"])
    table["x_angstrom"] = table["x"] * px
    table["y_angstrom"] = table["y"] * px
    table["defocus_u"] = md["defocus_u"] + table["defocus_offset"]
    table["defocus_v"] = md["defocus_v"] + table["defocus_offset"]
    table["defocus_angle"] = md["defocus_angle"]

    fit = fit_gev_noise(np.where(valid, maps["zscore"], np.nan),
                        exclusion_radius=max(min_distance, md["box"] / 2),
                        n_false_positives=n_false_positives)
    t_gev = gev_threshold(fit, n_pix, n_false_positives)
    if pvalue_candidates not in ("maxima", "all"):
        raise ValueError(f"pvalue candidates must be 'maxima' or 'all', got {pvalue_candidates!r}")
    # the p-value model needs a population whose z-score and SNR ranks differ; where they
    # do not (a few candidates, e.g. a crop holding two large particles) it is undefined:
    # NaN, so that nothing is called by it, and every other metric still is
    table["neg_log_p"] = np.nan
    try:
        if pvalue_candidates == "all":
            model = fit_pvalue_model(maps["zscore"][valid], maps["snr"][valid])
            q1, q2 = model.to_probit(table["zscore"].to_numpy(), table["snr"].to_numpy())
            table["neg_log_p"] = model.neg_log_p(q1, q2, region=pvalue_region)
        elif len(table) >= 3:
            table["neg_log_p"] = neg_log_pvalue(table["zscore"].to_numpy(),
                                                table["snr"].to_numpy(), region=pvalue_region)
    except ValueError as err:
        if "undefined" not in str(err):
            raise
    thresholds = {"snr": t_erfc, "zscore": t_erfc, "gev": t_gev, "pvalue": pvalue_cutoff}
    if cutoff is not None:
        thresholds[metric] = float(cutoff)
    table["called_zscore"] = table["zscore"] >= thresholds["zscore"]
    table["called_snr"] = table["snr"] >= thresholds["snr"]
    table["called_gev"] = table["zscore"] >= thresholds["gev"]
    table["called_pvalue"] = table["neg_log_p"] >= thresholds["pvalue"]
    table["called"] = table[f"called_{metric}"]
    table["excess_contrast"] = np.nan
    excess_note = ""
    if max_excess_contrast is not None:
        from difftm.search.contamination import excess_contrast, searched_scorer

        rows = table["called"].to_numpy()  # the chosen metric's calls: what the rule judges
        if scorer is None and rows.any():
            scorer = searched_scorer(result.folder, maps["snr"].shape)
            if scorer is None:
                excess_note = "excess-contrast rule skipped: search inputs not readable"
        if scorer is not None and rows.any():
            sub = table[rows]
            table.loc[rows, "excess_contrast"] = excess_contrast(
                scorer, valid, diameter,
                sub["y"].to_numpy(), sub["x"].to_numpy(), sub["snr"].to_numpy(),
                sub[["rot", "tilt", "psi"]].to_numpy(), sub["defocus_offset"].to_numpy())
    rejected = rejected_contamination = rejected_excess = 0
    if min_specificity is not None:
        rejected = _keep_only(table, table["specificity"] >= min_specificity)
    if max_contamination is not None and not contamination_note:
        rejected_contamination = _keep_only(
            table, ~(table["contamination"] > max_contamination))
    if max_excess_contrast is not None and not excess_note:
        rejected_excess = _keep_only(table, ~(table["excess_contrast"].abs()
                                              > max_excess_contrast))
    summary = CallSummary(
        metric=metric,
        cutoff=thresholds[metric],
        n_candidates=len(table),
        n_called={m: int(table[f"called_{m}"].sum()) for m in METRICS},
        thresholds=thresholds,
        min_specificity=min_specificity,
        n_rejected_specificity=rejected,
        max_contamination=None if contamination_note else max_contamination,
        n_rejected_contamination=rejected_contamination,
        max_excess_contrast=None if excess_note else max_excess_contrast,
        n_rejected_excess=rejected_excess,
        note="; ".join(n for n in (contamination_note, excess_note) if n),
        n_final=int(table["called"].sum()),
        excluded=excluded,
    )
    return table, summary


def particles_star_tables(
    table: pd.DataFrame, result: SearchResult, micrograph_name: str,
    figure_of_merit: str = DEFAULT_METRIC,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """RELION optics and particles tables for the called rows of ``table``.

    ``figure_of_merit`` names the score column copied to ``rlnAutopickFigureOfMerit`` (the
    metric that called the particles; -ln p for ``pvalue``, the z-score for ``gev``).
    """
    from difftm.io.star import make_optics_table, make_particles_table

    md = result.metadata
    called = table[table["called"]]
    optics = make_optics_table(
        pixel_size=md["pixel_size"], voltage_kv=md["voltage"], cs_mm=md["cs"],
        amplitude_contrast=md["amplitude_contrast"])
    cols = {
        "x": called["x"].to_numpy(), "y": called["y"].to_numpy(),
        "rot": called["rot"].to_numpy(), "tilt": called["tilt"].to_numpy(),
        "psi": called["psi"].to_numpy(),
        "defocus_u": called["defocus_u"].to_numpy(), "defocus_v": called["defocus_v"].to_numpy(),
        "defocus_angle": called["defocus_angle"].to_numpy(),
        "phase_shift": np.full(len(called), float(md.get("phase_shift", 0.0))),
        "ctf_bfactor": np.full(len(called), float(md.get("ctf_bfactor", 0.0))),
        "snr": called["snr"].to_numpy(), "zscore": called["zscore"].to_numpy(),
        "mean": called["mean"].to_numpy(), "sigma": called["sigma"].to_numpy(),
        "neg_log_p": called["neg_log_p"].to_numpy(),
        "defocus_offset": called["defocus_offset"].to_numpy(),
        "difftmSNRFlatField": called["snr_flatfield"].to_numpy(),
    }
    particles = make_particles_table(cols, micrograph_name=micrograph_name,
                                     pixel_size=md["pixel_size"], figure_of_merit=figure_of_merit)
    return optics, particles


#: File in a search folder naming the particle table `difftm peaks` last wrote for it.
PEAKS_RECORD = "last_peaks.txt"


def record_peaks_output(run: Path, table_path: Path) -> None:
    """Remember (atomically) in the search folder ``run`` where its particles were written,
    so that ``difftm refine RUN`` finds them without ``--particles``."""
    from difftm.io.atomic import atomic_output

    with atomic_output(Path(run) / PEAKS_RECORD, overwrite=True) as tmp:
        tmp.write_text(str(Path(table_path).resolve()) + "\n")


def recorded_peaks_output(run: Path) -> Path | None:
    """The particle table recorded by :func:`record_peaks_output`, if any."""
    record = Path(run) / PEAKS_RECORD
    if not record.is_file():
        return None
    text = record.read_text(errors="replace").strip()
    return Path(text) if text else None
