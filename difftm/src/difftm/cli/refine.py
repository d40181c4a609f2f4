"""``difftm refine``: local refinement of the particles of a search (gradient or grid)."""

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


def _refine(
    run: Annotated[Path, typer.Argument(help="Output folder of `difftm search`.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Refined particle table (.star); a .csv and a .html report "
        "are written beside it.")],
    particles: Annotated[Path | None, typer.Option(
        help="Particles to refine (RELION STAR) [the table `difftm peaks RUN` wrote last, or "
             "RUN/particles.star].")] = None,
    method: Annotated[str, typer.Option(
        help="gradient (autograd through the projector, CTF and shift; all particles at "
             "once, coarse-to-fine) or grid (local grids of angles, defocus and shifts) "
             "[gradient].")] = "gradient",
    refine_defocus: Annotated[bool, typer.Option(
        "--refine-defocus/--no-refine-defocus",
        help="Refine each particle's defocus too [on].")] = True,
    angle_step: Annotated[float, typer.Option(
        help="grid: out-of-plane step in degrees (in-plane: half of it) [0.2].")] = 0.2,
    angle_range: Annotated[float, typer.Option(
        help="grid: search +- this many degrees out of plane (in plane: 0.6 of it) [3.75].")
    ] = 3.75,
    pixel_size_search: Annotated[tuple[float, float] | None, typer.Option(
        help="RANGE STEP (Angstrom): after refinement, score all particles with the template "
             "rescaled to voxel sizes within +- RANGE of the pixel size and report the best "
             "(a magnification mismatch between template and micrograph).")] = None,
    report: Annotated[bool, typer.Option(
        "--report/--no-report", help="Write <output>.html with figures [on].")] = True,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N [cpu].")] = "cpu",
    threads: ThreadsOption = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Refine Euler angles, sub-pixel centres and defocus of detected particles against
    the search's micrograph and template; scores stay in the search's SNR units.

    The STAR keeps RELION's columns (refined rlnCoordinateX/Y, rlnAngleRot/Tilt/Psi,
    rlnDefocusU/V) and adds the SNR before, the refined SNR, z-score and -ln p, and the
    change in angle, shift and defocus per particle. Every particle ends at least as good as it
    started."""
    import numpy as np

    from difftm.io.atomic import atomic_output, check_writable, output_unit
    from difftm.io.star import make_optics_table, make_particles_table, write_particles_star
    from difftm.refine.run import refine_particles
    from difftm.threads import apply_threads

    if output.suffix.lower() != ".star":
        raise ValueError(f"{output}: the refined particle table must be a .star file")
    csv_path, html_path = output.with_suffix(".csv"), output.with_suffix(".html")
    for path in (output, csv_path) + ((html_path,) if report else ()):
        check_writable(path, overwrite)
    if not (angle_step > 0 and angle_range > 0 and angle_step < float("inf")
            and angle_range < float("inf")):
        raise ValueError("--angle-step and --angle-range must be finite and positive")
    if pixel_size_search is not None:
        scan_range, scan_step = pixel_size_search
        check_number("--pixel-size-search RANGE", scan_range, 0.0, 10.0, "A", low_open=True)
        check_number("--pixel-size-search STEP", scan_step, 0.0, scan_range, "A",
                     low_open=True)
        if 2 * scan_range / scan_step + 1 > 201:
            raise ValueError(f"--pixel-size-search {scan_range:g} {scan_step:g}: more than 201 "
                             "pixel sizes; use a larger STEP")
    particles = particles_of_run(run, particles, device)
    n_threads, _ = apply_threads(threads)
    grid_options = dict(out_of_plane_range=angle_range, out_of_plane_step=angle_step,
                        in_plane_range=0.6 * angle_range, in_plane_step=0.5 * angle_step)
    reporter = progress_reporter(console, f"refining ({method})", 1, unit="/s")

    def progress(done: int, total: int) -> None:
        reporter.set_total(total)
        reporter.update(done)

    t0 = time.perf_counter()
    try:
        res = refine_particles(run, particles, method=method, grid_options=grid_options,
                               refine_defocus=refine_defocus, device=device, progress=progress,
                               pixel_size_search=pixel_size_search)
    finally:
        reporter.close()
    seconds = time.perf_counter() - t0
    table = res.table
    cfg = res.config
    optics = make_optics_table(cfg.pixel_size, voltage_kv=cfg.voltage, cs_mm=cfg.cs,
                               amplitude_contrast=cfg.amplitude_contrast)
    cols = {name: table[name].to_numpy() for name in (
        "x", "y", "rot", "tilt", "psi", "defocus_u", "defocus_v", "defocus_angle", "snr",
        "zscore", "neg_log_p", "snr_before", "angle_change", "shift_change", "defocus_change")}
    if "micrograph" in table:
        cols["micrograph"] = table["micrograph"].to_numpy()
    star = make_particles_table(cols, micrograph_name=str(cfg.micrograph),
                                pixel_size=cfg.pixel_size, figure_of_merit="snr")
    section = None
    if report:  # the figures first; STAR, CSV and report then as one unit (all or none)
        from difftm.report.refine_report import refine_figures, refine_section

        figures = refine_figures(output.parent / f"{output.stem}_figures", table,
                                 res.refined.trace, res.pixel_size_scan)
        section = refine_section(table, method, seconds, figures, res.pixel_size_scan)
    with output_unit():
        write_particles_star(output, star, optics, overwrite=overwrite)
        with atomic_output(csv_path, overwrite=overwrite) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        if section is not None:
            from difftm.report.html import write_report

            write_report(html_path, f"difftm refine: {Path(run).name}", [section],
                         overwrite=overwrite)
    gain = (table["snr"] - table["snr_before"]).median()
    console.print(
        f"refined {len(table)} particles ({method}, {n_threads} thread(s), {seconds:.1f} s): "
        f"mean SNR {table['snr_before'].mean():.2f} -> {table['snr'].mean():.2f} (median gain "
        f"{gain:.2f}); wrote {output}, {csv_path}" + (f", {html_path}" if report else ""),
        highlight=False, soft_wrap=True)
    if res.pixel_size_scan is not None:
        sizes, means = res.pixel_size_scan
        k = int(np.argmax(means))
        console.print(f"pixel size scan: best template voxel size {sizes[k]:.4g} A (mean SNR "
                      f"{means[k]:.2f}; {cfg.pixel_size:.4g} A: "
                      f"{means[int(np.argmin(np.abs(sizes - cfg.pixel_size)))]:.2f})",
                      highlight=False)


def register(app: typer.Typer) -> None:
    """Attach ``difftm refine`` to ``app``."""
    app.command("refine")(user_errors(_refine))
