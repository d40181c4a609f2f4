"""``difftm classify``: in situ classification of a search's particles under several
templates (refine under each, SNR vectors, EM over class populations, posteriors)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import check_number, user_errors
from difftm.cli.options import ThreadsOption, particles_of_run
from difftm.cli.progress import progress_reporter

console = Console(stderr=True)

#: Most templates one classification accepts (each costs one refinement per particle).
MAX_TEMPLATES = 16
#: Most refinements (particles x templates) one classification accepts by default: the
#: per-template results and the (N, K, K) Gram matrix grow with both.
MAX_REFINEMENTS = 200_000


def _classify(
    run: Annotated[Path, typer.Argument(help="Output folder of `difftm search`.")],
    more_templates: Annotated[list[Path] | None, typer.Argument(
        metavar="[TEMPLATE]...", help="Templates (also accepted after --templates).",
        show_default=False)] = None,
    templates: Annotated[list[Path] | None, typer.Option(
        "--templates", "-t", help="Two or more template MRC files of the states (one box, "
        "the search's pixel size, one model frame): --templates A.mrc B.mrc ...")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Classified particle table (.star); a .csv and a .html "
        "report are written beside it.")] = None,
    particles: Annotated[Path | None, typer.Option(
        help="Particles to classify (RELION STAR) [the table `difftm peaks RUN` wrote "
             "last, or RUN/particles.star].")] = None,
    noise: Annotated[str, typer.Option(
        help="unit (noise of unit variance in SNR units, the search's) or fitted (sigma "
             "fitted by maximum likelihood in 0.5-4) [unit].")] = "unit",
    steps: Annotated[int, typer.Option(
        help="Gradient steps per refinement stage (3 stages) [30].")] = 30,
    starts: Annotated[int, typer.Option(
        help="Starting poses per refinement: 1 (the table's pose) to 5 (also +-2 deg about "
             "the image x and y axes) [5].")] = 5,
    refine_defocus: Annotated[bool, typer.Option(
        "--refine-defocus/--no-refine-defocus",
        help="Refine each particle's defocus under each template [on].")] = True,
    bootstrap: Annotated[int, typer.Option(
        help="Bootstrap resamples for the population intervals (0: none) [200].")] = 200,
    seed: Annotated[int, typer.Option(help="Bootstrap seed [0].")] = 0,
    report: Annotated[bool, typer.Option(
        "--report/--no-report", help="Write <output>.html with figures [on].")] = True,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N [cpu].")] = "cpu",
    threads: ThreadsOption = None,
    max_templates: Annotated[int, typer.Option(
        "--max-templates", help=f"Most templates accepted [{MAX_TEMPLATES}]; raise it "
        "deliberately.")] = MAX_TEMPLATES,
    max_refinements: Annotated[int, typer.Option(
        "--max-refinements", help="Largest classification accepted: particles x templates "
        f"(one refinement each), checked before anything is read [{MAX_REFINEMENTS}]; raise "
        "it deliberately.")] = MAX_REFINEMENTS,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Classify particles under two or more templates of different states (Lucas et al.
    2022): every particle is refined locally under every template (scores in the search's
    SNR units), the SNR vectors are modelled per class (expected relative SNRs from the
    templates' correlation at the refined poses, a per-particle scale, unit-variance noise;
    docs/CLASSIFY.md), class populations are fitted by EM and each particle gets posteriors.

    The STAR has rlnClassNumber (1-based, the most probable class, in the order of the
    templates), difftmClassPosterior<k>, difftmClassSNR<k>, difftmNaiveClass (highest SNR),
    difftmClassChi2 (fit to its class; large: no template describes it), and the pose,
    centre, defocus and SNR refined under its class's template."""
    from difftm.io.atomic import check_writable
    from difftm.threads import apply_threads

    paths = list(templates or []) + list(more_templates or [])
    if output is None:
        raise ValueError("give --output OUT.star")
    if output.suffix.lower() != ".star":
        raise ValueError(f"{output}: the classified particle table must be a .star file")
    if len(paths) < 2:
        raise ValueError("--templates needs at least two templates to classify between")
    if max_templates < 2 or max_refinements < 1:
        raise ValueError("--max-templates must be at least 2 and --max-refinements at least 1")
    if len(paths) > max_templates:
        raise ValueError(f"--templates: {len(paths)} templates, more than --max-templates "
                         f"{max_templates}; raise --max-templates deliberately")
    for p in paths:
        if not p.is_file():
            raise FileNotFoundError(f"{p}: template not found")
    if noise not in ("unit", "fitted"):
        raise ValueError(f"--noise must be unit or fitted, got {noise!r}")
    check_number("--steps", steps, 1, 1000)
    check_number("--starts", starts, 1, 5)
    check_number("--bootstrap", bootstrap, 0, 100000)
    csv_path, html_path = output.with_suffix(".csv"), output.with_suffix(".html")
    for path in (output, csv_path) + ((html_path,) if report else ()):
        check_writable(path, overwrite)
    figures_dir = output.parent / f"{output.stem}_figures"
    if report and figures_dir.exists() and not figures_dir.is_dir():
        raise ValueError(f"{figures_dir}: exists and is not a folder (the report's figures go "
                         "there)")
    particles = particles_of_run(run, particles, device)
    from difftm.io.star import read_particles_star

    n_particles = len(read_particles_star(particles)[1])
    if n_particles * len(paths) > max_refinements:
        raise ValueError(f"{particles}: {n_particles} particles x {len(paths)} templates = "
                         f"{n_particles * len(paths)} refinements, more than --max-refinements "
                         f"{max_refinements}; classify a subset or raise --max-refinements")
    n_threads, _ = apply_threads(threads)
    from difftm.classify.run import classify_particles
    from difftm.refine.optimize import GradientSchedule

    reporter = progress_reporter(console, "refining under each template", 1, unit="/s")

    def progress(done: int, total: int) -> None:
        reporter.set_total(total)
        reporter.update(done)

    t0 = time.perf_counter()
    try:
        res = classify_particles(run, particles, paths, noise=noise,
                                 schedule=GradientSchedule(
                                     steps=steps,
                                     start_offsets_deg=GradientSchedule.start_offsets_deg[
                                         :starts]),
                                 refine_defocus=refine_defocus, device=device,
                                 bootstrap=bootstrap, seed=seed, progress=progress)
    finally:
        reporter.close()
    seconds = time.perf_counter() - t0
    write_outputs(res, output, csv_path, html_path if report else None, seconds, overwrite)
    names = [p.stem for p in paths]
    fit = res.fit
    pops = ", ".join(f"{n} {w:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if bootstrap else "")
                     for n, w, (lo, hi) in zip(names, fit.weights, fit.weights_interval,
                                               strict=True))
    console.print(f"classified {len(res.table)} particles under {len(paths)} templates "
                  f"({n_threads} thread(s), {seconds:.1f} s): populations {pops}; noise "
                  f"sigma {fit.sigma:.2f}; wrote {output}, {csv_path}"
                  + (f", {html_path}" if report else ""), highlight=False, soft_wrap=True)


def write_outputs(res, output: Path, csv_path: Path, html_path: Path | None, seconds: float,
                  overwrite: bool) -> None:
    """Draw the report's figures (optional), then write the STAR, the CSV and the HTML
    report of a classification as one unit (all or none)."""
    from difftm.io.atomic import atomic_output, output_unit
    from difftm.io.star import make_optics_table, make_particles_table, write_particles_star

    table = res.table
    cfg = res.config
    k = res.snr.shape[1]
    optics = make_optics_table(cfg.pixel_size, voltage_kv=cfg.voltage, cs_mm=cfg.cs,
                               amplitude_contrast=cfg.amplitude_contrast)
    cols = {name: table[name].to_numpy() for name in (
        "x", "y", "rot", "tilt", "psi", "defocus_u", "defocus_v", "snr")}
    cols["defocus_angle"] = [cfg.defocus_angle] * len(table)
    cols["rlnClassNumber"] = table["class"].to_numpy(int)
    for c in range(1, k + 1):
        cols[f"difftmClassPosterior{c}"] = table[f"posterior_{c}"].to_numpy()
        cols[f"difftmClassSNR{c}"] = table[f"snr_{c}"].to_numpy()
    cols["difftmNaiveClass"] = table["naive_class"].to_numpy(int)
    cols["difftmClassChi2"] = table["chi2"].to_numpy()
    if "micrograph" in table:
        cols["micrograph"] = table["micrograph"].to_numpy()
    star = make_particles_table(cols, micrograph_name=str(cfg.micrograph),
                                pixel_size=cfg.pixel_size, figure_of_merit="snr")
    section = None
    if html_path is not None:  # the figures first (they only feed the report)
        from difftm.report.classify_report import classify_figures, classify_section

        names = [Path(t).stem for t in res.templates]
        figures = classify_figures(output.parent / f"{output.stem}_figures", table, res.fit,
                                   names)
        section = classify_section(table, res.fit, names, seconds, figures)
    with output_unit():
        write_particles_star(output, star, optics, overwrite=overwrite)
        with atomic_output(csv_path, overwrite=overwrite) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        if html_path is not None and section is not None:
            from difftm.report.html import write_report

            write_report(html_path, f"difftm classify: {Path(str(cfg.micrograph)).name}",
                         [section], overwrite=overwrite)


def register(app: typer.Typer) -> None:
    """Attach ``difftm classify`` to ``app``."""
    app.command("classify")(user_errors(_classify))
