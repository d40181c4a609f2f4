"""``difftm peaks``: turn a finished search into a particle table."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import check_number, user_errors

console = Console(stderr=True)


def _peaks(
    results: Annotated[Path, typer.Argument(
        help="Output folder of `difftm search` (one micrograph, or a dataset searched with "
             "--micrographs).")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Particle table to write (.star); a .csv is written beside it "
        "[required for one micrograph; for a dataset: DIR/particles.star, plus "
        "DIR/<micrograph>/<same name> for each micrograph].")] = None,
    metric: Annotated[str, typer.Option(
        help="Decision rule: snr (the 2DTM SNR, i.e. the MIP in noise sigmas; erfc "
             "threshold), zscore (per-pixel z-score, erfc threshold; saturates on strong "
             "particles), pvalue (-ln p of SNR and z-score combined), gev (extreme-value fit "
             "to the z-scores).")] = "snr",
    threshold: Annotated[str, typer.Option(
        "--threshold", "--cutoff",
        help="Cutoff of the chosen metric, or 'auto' (erfc/GEV threshold for "
             "--n-false-positives; -ln p >= 8 for pvalue).")] = "auto",
    n_false_positives: Annotated[float, typer.Option(
        help="Expected false positives per micrograph for automatic thresholds.")] = 1.0,
    min_distance: Annotated[str, typer.Option(
        help="Suppress peaks closer than this many pixels to a stronger one, or 'auto' "
             "(0.7 template diameters: a strong particle's side maxima reach about half its "
             "diameter).")] = "auto",
    border: Annotated[int | None, typer.Option(
        help="Exclude peaks within this many pixels of the edge [template half-box].")] = None,
    min_specificity: Annotated[str, typer.Option(
        help="Also require this orientation specificity: how far the z-score stands above "
             "the micrograph's typical z-score, in robust sigmas (the CSV's specificity "
             "column). Rejects background features that match the template in many "
             "orientations alike, at the cost of some small, blob-like particles (measured "
             "trade-off: docs/STATISTICS.md section 6); 'none' or 'auto' (the default): no "
             "such rule.")] = "none",
    max_contamination: Annotated[str, typer.Option(
        help="Reject candidates within half a template diameter of contamination or carbon "
             "edges: where the micrograph smoothed over one template diameter departs from "
             "its median by more than this many robust sigmas (the CSV's contamination "
             "column); 'auto' (8, twice what a particle alone reaches) or 'none'. Reads the "
             "searched micrograph; skipped (and said) where it is no longer readable.")] = "auto",
    max_excess_contrast: Annotated[str, typer.Option(
        help="Reject candidates on particle-sized blobs: where the whitened micrograph's "
             "contrast at the particle's scale (a Gaussian of a quarter diameter), less the "
             "part the candidate's template explains, departs from the micrograph's median "
             "by more than this many robust sigmas (the CSV's excess_contrast column); 'auto' "
             "(6.75, chosen on the detection matrix: planted particles reach 4.1) or 'none'. "
             "May also reject particles carrying much more density than the template at "
             "their scale (a partner as large as the particle; a model micelle as dense as "
             "the protein is kept): check with 'none'. Reads the search's config.yaml and "
             "its files; skipped (and said) where they are no longer readable.")] = "auto",
    pvalue_region: Annotated[str, typer.Option(
        help="p-value region: q1 (both SNR and z-score positive) or q3 (either).")] = "q1",
    pvalue_candidates: Annotated[str, typer.Option(
        help="Population the p-value is fitted on: maxima (local maxima of the z-score map) "
             "or all (every searched pixel).")] = "maxima",
    report: Annotated[bool, typer.Option(
        "--report/--no-report",
        help="Also write <output>.html with figures (micrograph with detections, z-score "
             "map, survival histogram, SNR vs z-score with the p-value boundary).")] = True,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Pick peaks in the maps of a search and write RELION STAR and CSV particle tables.

    Every candidate gets every metric (SNR, z-score, flat-field SNR, -ln p, local mean and
    sigma, contamination, orientation specificity) as columns of the CSV; the STAR file holds
    the particles called by --metric, less those near contamination (--max-contamination)
    and those on particle-sized blobs (--max-excess-contrast).
    For a dataset folder: per-micrograph and combined STAR files (rlnMicrographName per
    particle, the optics of the input) and a dataset report (particles.html).
    """
    from difftm.io.atomic import atomic_output, output_unit
    from difftm.io.star import write_particles_star
    from difftm.search.contamination import (
        MAX_CONTAMINATION,
        MAX_EXCESS_CONTRAST,
        searched_micrograph,
    )
    from difftm.search.particles import (
        MIN_SPECIFICITY,
        call_particles,
        particles_star_tables,
        record_peaks_output,
    )
    from difftm.search.results import load_results

    cutoff = _auto_or_number(threshold, "--threshold", minimum=-float("inf"))
    distance = _auto_or_number(min_distance, "--min-distance", minimum=0.0)
    specificity = _rule_option(min_specificity, "--min-specificity", MIN_SPECIFICITY,
                               minimum=-float("inf"))
    contamination = _rule_option(max_contamination, "--max-contamination", MAX_CONTAMINATION,
                                 minimum=0.0, positive=True)
    excess = _rule_option(max_excess_contrast, "--max-excess-contrast", MAX_EXCESS_CONTRAST,
                          minimum=0.0, positive=True)
    if pvalue_region not in ("q1", "q3"):
        raise ValueError(f"--pvalue-region must be q1 or q3, got {pvalue_region!r}")
    check_number("--n-false-positives", n_false_positives, 0.0, 1e9, low_open=True)
    if not Path(results).is_dir():
        raise FileNotFoundError(f"{results}: not a search output folder")
    from difftm.dataset.run import MANIFEST_NAME

    if (Path(results) / MANIFEST_NAME).is_file():
        from difftm.dataset.combine import dataset_particles

        written = dataset_particles(
            Path(results), output, metric=metric, cutoff=cutoff,
            n_false_positives=n_false_positives, min_distance=distance, border=border,
            pvalue_region=pvalue_region, pvalue_candidates=pvalue_candidates, report=report,
            overwrite=overwrite, min_specificity=specificity,
            max_contamination=contamination, max_excess_contrast=excess)
        console.print(written.line(), highlight=False, soft_wrap=True)
        if written.html is not None:
            console.print(f"report: {written.html}", highlight=False, soft_wrap=True)
        console.print(f"wrote {written.totals['particles']} particles to {written.star} "
                      f"(per micrograph: {Path(results)}/<micrograph>/{written.star.name}) and all "
                      f"candidates to {written.csv}", highlight=False, soft_wrap=True)
        return
    if output is None:
        raise ValueError("give --output, the particle STAR file to write")
    check_peaks_outputs(Path(output), report, overwrite)
    csv_path = Path(output).with_suffix(".csv")
    result = load_results(results)
    # the searched micrograph, read once: for the contamination rule and the report
    image = (searched_micrograph(result.metadata, result.shape, result.folder)
             if report or contamination is not None else None)
    table, summary = call_particles(
        result, metric=metric, cutoff=cutoff, n_false_positives=n_false_positives,
        min_distance=distance, border=border, pvalue_region=pvalue_region,  # type: ignore[arg-type]
        pvalue_candidates=pvalue_candidates,  # type: ignore[arg-type]
        min_specificity=specificity, max_contamination=contamination, micrograph=image,
        max_excess_contrast=excess)
    merit = {"pvalue": "neg_log_p", "gev": "zscore"}.get(metric, metric)
    optics, particles = particles_star_tables(
        table, result, micrograph_name=str(result.metadata.get("micrograph", "")),
        figure_of_merit=merit)
    # the figures first (they only feed the report), then STAR, CSV, report and the record
    # for `difftm refine` as one unit: a failure leaves all of them as they were
    html = _report_writer(Path(output), result, table, summary, pvalue_region,
                          overwrite, image) if report else None
    with output_unit():
        write_particles_star(output, particles, optics, overwrite=overwrite)
        with atomic_output(csv_path, overwrite=overwrite) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        html_path = html() if html is not None else None
        record_peaks_output(results, output)  # `difftm refine RUN` reads it by default
    console.print(summary.line(), highlight=False, soft_wrap=True)
    if html_path is not None:
        console.print(f"report: {html_path}")
    console.print(f"wrote {len(particles)} particles to {output} and all "
                  f"{len(table)} candidates to {csv_path}")


def check_peaks_outputs(output: Path, report: bool, overwrite: bool) -> None:
    """Check every file ``peaks`` writes for one micrograph before writing any of them.

    The STAR table, the CSV beside it and, with ``report``, the HTML report and its
    figures folder: a wrong suffix, an existing file without ``overwrite``, a directory
    where a file goes or a missing folder is refused in one line.
    """
    from difftm.io.atomic import check_writable

    if output.suffix.lower() != ".star":
        raise ValueError(f"{output}: the particle table must be a .star file (the CSV and "
                         "HTML are written beside it)")
    paths = [output, output.with_suffix(".csv")]
    if report:
        paths.append(output.with_suffix(".html"))
        figures = output.parent / f"{output.stem}_figures"
        if figures.exists() and not figures.is_dir():
            raise ValueError(f"{figures}: exists and is not a folder (the report's figures "
                             "go there)")
    for path in paths:
        check_writable(path, overwrite)


def _report_writer(output: Path, result, table, summary, region: str,
                   overwrite: bool, image) -> Callable[[], Path]:
    """Draw the report's figures now (the micrograph figure when ``image`` is not None);
    return the function that writes the HTML report."""
    from difftm.report.html import write_report
    from difftm.report.search_report import search_figures, search_section

    mic = Path(str(result.metadata.get("micrograph", "")))
    figures = search_figures(output.parent / f"{output.stem}_figures", result, table, summary,
                             image=image, pvalue_region=region)
    section = search_section(mic.name or "micrograph", result, summary, figures)
    return lambda: write_report(output.with_suffix(".html"), f"difftm peaks: {mic.name}",
                                [section], overwrite=overwrite)


def _auto_or_number(text: str, option: str, minimum: float) -> float | None:
    """None for 'auto', else a finite number >= ``minimum`` (one-line error otherwise)."""
    if text.strip().lower() == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{option} must be 'auto' or a number, got {text!r}") from None
    if not (value >= minimum and abs(value) < float("inf")):
        bound = f" >= {minimum:g}" if minimum > -float("inf") else ""
        raise ValueError(f"{option} must be a finite number{bound}, got {text}")
    return value


def _rule_option(text: str, option: str, default: float | None, minimum: float,
                 positive: bool = False) -> float | None:
    """A rule's option: 'none' (off), 'auto' (``default``) or a finite number >= ``minimum``
    (> 0 with ``positive``); one-line error otherwise."""
    if text.strip().lower() == "none":
        return None
    value = _auto_or_number(text, f"{option} (or 'none')", minimum=minimum)
    if positive and value == 0.0:
        raise ValueError(f"{option} must be positive (or 'none')")
    return default if value is None else value


def register(app: typer.Typer) -> None:
    """Attach ``difftm peaks`` to ``app``."""
    app.command("peaks")(user_errors(_peaks))
