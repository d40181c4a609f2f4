"""Particles of a whole dataset: per-micrograph and combined STAR files and an HTML report.

For every micrograph of a dataset folder (:mod:`difftm.dataset.run`) the particles are
called exactly as ``difftm peaks`` does on one search
(:func:`difftm.search.particles.call_particles`, same options), and written

* per micrograph: ``<folder>/<micrograph>/particles.star`` (+ ``.csv`` of all candidates;
  named after the combined file, so another ``--output`` does not collide);
* combined: ``particles.star`` (one ``data_particles`` table for the dataset,
  ``rlnMicrographName`` as named by the input, ``rlnOpticsGroup`` of the micrograph and the
  ``data_optics`` block of the input STAR file, or one group per distinct pixel size,
  voltage, Cs and amplitude contrast when the input had none), ``particles.csv`` (every
  candidate with a ``micrograph`` column) and ``particles.html``: a per-micrograph table
  (defocus, threshold, counts under every metric, search time), totals and a gallery of
  detection figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from difftm.dataset.run import load_manifest
from difftm.search.contamination import MAX_CONTAMINATION, MAX_EXCESS_CONTRAST
from difftm.search.particles import METRICS, MIN_SPECIFICITY

__all__ = ["DatasetParticles", "dataset_particles"]

#: Micrographs shown in the report's gallery at most (each figure is embedded).
GALLERY_LIMIT = 48


@dataclass
class DatasetParticles:
    """What :func:`dataset_particles` wrote."""

    star: Path
    csv: Path
    html: Path | None
    per_micrograph: pd.DataFrame
    totals: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        """One summary line."""
        counts = ", ".join(f"{m} {self.totals.get(m, 0)}" for m in METRICS)
        return (f"{len(self.per_micrograph)} micrographs, {self.totals.get('candidates', 0)} "
                f"candidates; called: {counts}")


def _optics_table(manifest: dict, results: list) -> tuple[pd.DataFrame, list[int]]:
    """The combined optics table and each micrograph's group."""
    from difftm.io.star import make_optics_table

    rows = manifest["micrographs"]
    if manifest.get("optics"):
        optics = pd.DataFrame(manifest["optics"])
        if "rlnImagePixelSize" not in optics.columns and "rlnMicrographPixelSize" in optics:
            optics["rlnImagePixelSize"] = optics["rlnMicrographPixelSize"]
        return optics, [int(r.get("optics_group", 1)) for r in rows]
    keys: list[tuple] = []
    groups = []
    for res in results:
        md = res.metadata
        key = (float(md["pixel_size"]), float(md["voltage"]), float(md["cs"]),
               float(md["amplitude_contrast"]))
        if key not in keys:
            keys.append(key)
        groups.append(keys.index(key) + 1)
    optics = pd.concat([make_optics_table(px, kv, cs, ac, group_name=f"opticsGroup{g}",
                                          optics_group=g)
                        for g, (px, kv, cs, ac) in enumerate(keys, start=1)], ignore_index=True)
    return optics, groups


def dataset_particles(
    folder: Path,
    output: Path | None = None,
    metric: str = "snr",
    cutoff: float | None = None,
    n_false_positives: float = 1.0,
    min_distance: float | None = None,
    border: int | None = None,
    pvalue_region: str = "q1",
    pvalue_candidates: str = "maxima",
    report: bool = True,
    overwrite: bool = False,
    min_specificity: float | None = MIN_SPECIFICITY,
    max_contamination: float | None = MAX_CONTAMINATION,
    max_excess_contrast: float | None = MAX_EXCESS_CONTRAST,
) -> DatasetParticles:
    """Call particles on every micrograph of a dataset folder and write the tables.

    Args:
        folder: output folder of ``difftm search --micrographs``.
        output: combined STAR file (default ``<folder>/particles.star``); the CSV and HTML
            go beside it.
        metric, cutoff, n_false_positives, min_distance, border, pvalue_region,
            pvalue_candidates: as :func:`difftm.search.particles.call_particles`, for every
            micrograph.
        report: also write the HTML report.
        overwrite: replace existing output files.
        min_specificity: the orientation-specificity rule of
            :func:`difftm.search.particles.call_particles`.
        max_contamination: its contamination rule.
        max_excess_contrast: its excess-contrast rule.

    Returns:
        The paths written and the per-micrograph table.

    Raises:
        FileNotFoundError: a micrograph is not searched yet (one line).
        FileExistsError: an output exists and ``overwrite`` is off.
    """
    from difftm.io.atomic import atomic_output, check_writable, output_unit
    from difftm.io.star import write_particles_star
    from difftm.search.particles import call_particles, particles_star_tables
    from difftm.search.results import BUNDLE_NAME, load_results

    folder = Path(folder)
    manifest = load_manifest(folder)
    rows = manifest["micrographs"]
    missing = [r["name"] for r in rows if not (folder / r["folder"] / BUNDLE_NAME).exists()]
    if missing:
        raise FileNotFoundError(
            f"{folder}: {len(missing)} of {len(rows)} micrographs not searched yet (first: "
            f"{missing[0]}); run the same difftm search command again to finish them")
    star = Path(output) if output is not None else folder / "particles.star"
    if star.suffix.lower() != ".star":
        raise ValueError(f"{star}: the particle table must be a .star file (the CSV and HTML "
                         "are written beside it)")
    csv_path, html_path = star.with_suffix(".csv"), star.with_suffix(".html")
    outputs = [star, csv_path, *([html_path] if report else [])]
    for r in rows:
        outputs += [folder / r["folder"] / star.name,
                    folder / r["folder"] / csv_path.name]
    for path in outputs:
        check_writable(path, overwrite)
    results = [load_results(folder / r["folder"]) for r in rows]
    optics, groups = _optics_table(manifest, results)
    merit = {"pvalue": "neg_log_p", "gev": "zscore"}.get(metric, metric)
    # every table (per micrograph and combined) and the report as one unit: a failure
    # (a full disk) leaves all of them as they were; figures are written at once
    with output_unit():
        all_particles, all_tables, summary_rows, figures = [], [], [], []
        for k, (row, res, group) in enumerate(zip(rows, results, groups, strict=True)):
            table, call = call_particles(
                res, metric=metric, cutoff=cutoff,  # type: ignore[arg-type]
                n_false_positives=n_false_positives, min_distance=min_distance, border=border,
                pvalue_region=pvalue_region,  # type: ignore[arg-type]
                pvalue_candidates=pvalue_candidates,  # type: ignore[arg-type]
                min_specificity=min_specificity, max_contamination=max_contamination,
                max_excess_contrast=max_excess_contrast)
            _, particles = particles_star_tables(table, res, micrograph_name=row["name"],
                                                 figure_of_merit=merit)
            particles["rlnOpticsGroup"] = np.full(len(particles), group, dtype=np.int64)
            sub = folder / row["folder"]
            own_optics = optics[optics["rlnOpticsGroup"].astype(int) == group]
            write_particles_star(sub / star.name, particles, own_optics, overwrite=overwrite)
            with atomic_output(sub / csv_path.name, overwrite=overwrite) as tmp:
                table.to_csv(tmp, index=False, float_format="%.6g")
            all_particles.append(particles)
            all_tables.append(table.assign(micrograph=row["name"]))
            md = res.metadata
            summary_rows.append({
                "micrograph": row["name"], "folder": row["folder"],
                "defocus_u": md["defocus_u"], "defocus_v": md["defocus_v"],
                "defocus_angle": md["defocus_angle"], "threshold": call.cutoff,
                "candidates": call.n_candidates,
                **{f"called_{m}": call.n_called[m] for m in METRICS},
                "seconds": float(md.get("timings", {}).get("seconds", 0.0))})
            if report and k < GALLERY_LIMIT:
                figures.append((_detections_figure(row, res, table,
                                                   sub / f"{star.stem}_detections.png"),
                                row["name"]))
        combined = pd.concat(all_particles, ignore_index=True)
        write_particles_star(star, combined, optics, overwrite=overwrite)
        candidates = pd.concat(all_tables, ignore_index=True)
        candidates = candidates[["micrograph", *[c for c in candidates.columns
                                                 if c != "micrograph"]]]
        with atomic_output(csv_path, overwrite=overwrite) as tmp:
            candidates.to_csv(tmp, index=False, float_format="%.6g")
        per_mic = pd.DataFrame(summary_rows)
        totals = {"micrographs": len(per_mic), "candidates": int(per_mic["candidates"].sum()),
                  "particles": len(combined),
                  **{m: int(per_mic[f"called_{m}"].sum()) for m in METRICS}}
        html = _report(html_path, folder, metric, per_mic, totals, figures,
                       overwrite) if report else None
    return DatasetParticles(star, csv_path, html, per_mic, totals)


def _detections_figure(row: dict, res, table: pd.DataFrame, png: Path) -> Path | None:
    from difftm.io.mrc import read_mrc
    from difftm.report.figures import plot_micrograph_detections

    path = Path(row["file"])
    if not path.is_file():
        return None
    called = table[table["called"]]
    return plot_micrograph_detections(
        read_mrc(path).data, called, png, 0.35 * float(res.metadata["box"]),
        title=f"{Path(row['name']).name}: {len(called)} called")


def _report(path: Path, folder: Path, metric: str, per_mic: pd.DataFrame, totals: dict,
            figures: list, overwrite: bool) -> Path:
    from difftm.report.html import Section, write_report

    header = ["micrograph", "defocus U (A)", "defocus V (A)", "angle (deg)",
              f"threshold ({metric})", "candidates", *[f"called {m}" for m in METRICS],
              "search (s)"]
    body = [[str(r.micrograph), f"{r.defocus_u:.0f}", f"{r.defocus_v:.0f}",
             f"{r.defocus_angle:.1f}", f"{r.threshold:.3f}", str(r.candidates),
             *[str(getattr(r, f"called_{m}")) for m in METRICS], f"{r.seconds:.1f}"]
            for r in per_mic.itertuples()]
    body.append(["total", "", "", "", "", str(totals["candidates"]),
                 *[str(totals[m]) for m in METRICS], f"{per_mic['seconds'].sum():.1f}"])
    summary = Section(
        "Dataset",
        paragraphs=[f"Particles called by {metric} on every micrograph; the combined table "
                    f"is {path.with_suffix('.star').name}, per micrograph "
                    f"<micrograph>/{path.with_suffix('.star').name}."],
        rows=[("micrographs", str(totals["micrographs"])),
              ("particles (called by the metric)", str(totals["particles"])),
              ("candidates", str(totals["candidates"])),
              ("total search time (s)", f"{per_mic['seconds'].sum():.1f}")],
        tables=[(header, body)])
    shown = [(p, c) for p, c in figures if p is not None]
    gallery = Section("Detections", paragraphs=[
        f"{len(shown)} of {len(per_mic)} micrographs shown (called particles circled)."],
        figures=shown)
    return write_report(path, f"difftm peaks: dataset {folder.name}", [summary, gallery],
                        overwrite=overwrite)
