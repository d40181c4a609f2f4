"""``difftm search``: exhaustive 2DTM of one micrograph with one template."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import user_errors
from difftm.cli.limits import (
    DEFAULT_MAX_BOX,
    DEFAULT_MAX_SHAPE,
    MAX_BOX_HELP,
    MAX_SHAPE_HELP,
    check_search_sizes,
)
from difftm.cli.options import THREADS_HELP
from difftm.cli.progress import progress_reporter

console = Console(stderr=True)


def _search(
    micrograph: Annotated[Path | None, typer.Argument(help="Micrograph MRC file.")] = None,
    template: Annotated[Path | None, typer.Argument(help="3D template MRC file.")] = None,
    config: Annotated[Path | None, typer.Option(
        "--config", help="YAML file with any of the options below (command line wins).")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Output folder (maps, bundle, config, checkpoints).")] = None,
    pixel_size: Annotated[float | None, typer.Option(
        help="Pixel size, Angstrom [the micrograph header; required when the header has "
             "none; a calibrated header that disagrees is refused].")] = None,
    voltage: Annotated[float | None, typer.Option(help="Voltage, kV [300].")] = None,
    cs: Annotated[float | None, typer.Option(help="Spherical aberration, mm [2.7].")] = None,
    amplitude_contrast: Annotated[float | None, typer.Option(
        help="Amplitude contrast fraction [0.07].")] = None,
    defocus_u: Annotated[float | None, typer.Option(
        help="Defocus U, Angstrom, positive = underfocus.")] = None,
    defocus_v: Annotated[float | None, typer.Option(help="Defocus V, Angstrom [= U].")] = None,
    defocus_angle: Annotated[float | None, typer.Option(
        help="Astigmatism angle, degrees [0].")] = None,
    phase_shift: Annotated[float | None, typer.Option(
        help="Phase-plate phase shift, degrees [0].")] = None,
    out_of_plane_step: Annotated[float | None, typer.Option(
        help="Out-of-plane angular step, degrees [2.5].")] = None,
    in_plane_step: Annotated[float | None, typer.Option(
        help="In-plane angular step, degrees [1.5].")] = None,
    symmetry: Annotated[str | None, typer.Option(
        help="Template symmetry: C1, Cn, Dn, T, O, I [C1].")] = None,
    orientations: Annotated[Path | None, typer.Option(
        help="Search these orientations instead of the grid: a text/CSV file of rot tilt psi "
             "in degrees (RELION ZYZ), one per line, or a STAR file with rlnAngleRot, "
             "rlnAngleTilt, rlnAnglePsi (e.g. a peer's grid or a previous run's particles). "
             "The steps and symmetry are then not used for the grid.")] = None,
    defocus_range: Annotated[float | None, typer.Option(
        help="Search defocus within +- this, Angstrom [1200].")] = None,
    defocus_step: Annotated[float | None, typer.Option(
        help="Defocus step, Angstrom [200].")] = None,
    highpass: Annotated[float | None, typer.Option(
        help="High-pass: drop structure larger than this, Angstrom.")] = None,
    lowpass: Annotated[float | None, typer.Option(
        help="Low-pass: resolution limit, Angstrom.")] = None,
    whiten: Annotated[bool | None, typer.Option(
        "--whiten/--no-whiten", help="Whiten by the micrograph power spectrum [on].")] = None,
    projector_oversampling: Annotated[int | None, typer.Option(
        help="Padding factor of the template's 3D FFT, 1-4 [2]. 1 uses 8x less memory but "
             "interpolates projections less accurately: lower SNR for off-grid orientations "
             "(docs/ARCHITECTURE.md).")] = None,
    gridding_correction: Annotated[bool | None, typer.Option(
        "--gridding-correction/--no-gridding-correction",
        help="Divide the template by the sinc^2 kernel of trilinear interpolation before "
             "projecting [on] (docs/ARCHITECTURE.md).")] = None,
    template_padding: Annotated[str | None, typer.Option(
        help="Box in which templates are CTF-filtered: auto (template box + 2 x the CTF "
             "delocalisation at the searched defocus and band limit, a fast FFT size), none "
             "(the template box itself, as other 2DTM tools: the CTF fringes wrap around and "
             "the SNR drops at high defocus and fine pixels) or an edge in pixels [auto].")] = None,
    strategy: Annotated[str | None, typer.Option(
        help="exhaustive: correlate every orientation of the grid; accelerated: a coarse "
             "pass, candidates and gradient refinement of each on the raw micrograph, "
             "scores in the same units (docs/ACCELERATED.md) [exhaustive].")] = None,
    coarse_step: Annotated[float | None, typer.Option(
        help="Accelerated: out-of-plane step of the coarse pass, degrees; in-plane 0.6 x "
             "[12].")] = None,
    candidate_miss_rate: Annotated[float | None, typer.Option(
        help="Accelerated: chance that a particle at the threshold is not refined [0.02].")
    ] = None,
    device: Annotated[str | None, typer.Option(
        help="auto, cpu, cuda or cuda:N [auto].")] = None,
    threads: Annotated[int | None, typer.Option(
        help=THREADS_HELP + " With --scheduler: per Dask worker [1].")] = None,
    batch_size: Annotated[int | None, typer.Option(
        help="Correlations per batch [planned from free memory].")] = None,
    chunk_batches: Annotated[int | None, typer.Option(
        help="Batches per checkpointed chunk [about 2% of the search].")] = None,
    checkpoint_minutes: Annotated[float | None, typer.Option(
        help="Write the checkpoint at most every this many minutes [after every chunk]: "
             "fewer writes when many GPUs share one file system (docs/SCALING.md).")] = None,
    overwrite: Annotated[bool | None, typer.Option(
        "--overwrite", help="Replace another run's results in the output folder.")] = None,
    scheduler: Annotated[str | None, typer.Option(
        help="Distribute with Dask: 'local' (all GPUs/cores of this machine) or a scheduler "
             "address such as tcp://host:8786 (e.g. from dask-jobqueue on SLURM).")] = None,
    n_workers: Annotated[int | None, typer.Option(
        help="Workers of a local Dask cluster [GPUs, or cores / 2].")] = None,
    n_parts: Annotated[int | None, typer.Option(
        help="Parts of a distributed search [4 per worker]. With --micrographs: cut every "
             "micrograph into this many orientation parts (the tasks) [whole micrographs "
             "are the tasks].")] = None,
    micrographs: Annotated[str | None, typer.Option(
        "--micrographs", help="Search a dataset: a RELION micrographs_ctf.star (CTF per "
        "micrograph, optics per group), or a quoted glob such as 'mics/*.mrc' with one CTF "
        "(--defocus-u ...) or, without it, the CTFFIND4/5 output beside each micrograph "
        "(<stem>.txt, <stem>_ctf.txt, <stem>_diag.txt). Give only TEMPLATE as argument; "
        "--output gets one sub-folder per micrograph and dataset.yaml. Running the same "
        "command again skips finished micrographs and resumes partial ones. Also 'micrographs:' "
        "and 'project_dir:' in --config.")] = None,
    project_dir: Annotated[Path | None, typer.Option(
        help="RELION project folder that relative micrograph names in the STAR file refer "
             "to [the STAR file's folder, its parent or grandparent, or the current folder: "
             "the first where the file exists].")] = None,
    max_shape: Annotated[int, typer.Option("--max-shape", help=MAX_SHAPE_HELP)
                         ] = DEFAULT_MAX_SHAPE,
    max_box: Annotated[int, typer.Option("--max-box", help=MAX_BOX_HELP)] = DEFAULT_MAX_BOX,
    constrain_to: Annotated[Path | None, typer.Option(
        "--constrain-to", help="Search TEMPLATE only near these partner detections (STAR): "
        "positions within --radius of each partner, orientations within --cone of its pose; "
        "threshold for that reduced space; writes OUTPUT/constrained.star and .csv instead "
        "of maps (docs/CLASSIFY.md; also `difftm constrained-search`).")] = None,
    radius: Annotated[float, typer.Option(
        help="With --constrain-to: search radius around each partner, Angstrom [10].")] = 10.0,
    cone: Annotated[float, typer.Option(
        help="With --constrain-to: largest rotation from the partner's orientation, "
             "degrees [6].")] = 6.0,
    cone_step: Annotated[float, typer.Option(
        help="With --constrain-to: orientation step within the cone, degrees [2].")] = 2.0,
    offset: Annotated[tuple[float, float, float] | None, typer.Option(
        help="With --constrain-to: X Y Z (A, model frame), TEMPLATE's centre minus the "
             "partner template's centre [0 0 0].")] = None,
) -> None:
    """Search a micrograph (or a dataset) for a template over orientations and defocus.

    Writes SNR (MIP), z-score, mean, sigma, flat-field SNR and best-pose maps as MRC, a
    results.npz bundle and the resolved config.yaml into --output. The run checkpoints as it
    goes: after a crash, run the same command again to resume. Then call `difftm peaks`.
    With --micrographs, every micrograph is searched with its own CTF into its own
    sub-folder of --output (docs/SCALING.md for clusters).
    """
    from difftm.search.config import load_config
    from difftm.search.engine import SearchPlan, run_search

    overrides = dict(
        micrograph=micrograph, template=template, output=output, pixel_size=pixel_size,
        voltage=voltage, cs=cs, amplitude_contrast=amplitude_contrast, defocus_u=defocus_u,
        defocus_v=defocus_v, defocus_angle=defocus_angle, phase_shift=phase_shift,
        out_of_plane_step=out_of_plane_step, in_plane_step=in_plane_step, symmetry=symmetry,
        defocus_range=defocus_range, defocus_step=defocus_step, highpass=highpass,
        lowpass=lowpass, whiten=whiten, device=device, batch_size=batch_size,
        chunk_batches=chunk_batches, overwrite=overwrite, scheduler=scheduler,
        n_workers=n_workers, n_parts=n_parts,
    )
    overrides.update(orientations=orientations, projector_oversampling=projector_oversampling,
                     gridding_correction=gridding_correction, threads=threads,
                     template_padding=template_padding,
                     checkpoint_minutes=checkpoint_minutes)
    overrides.update(strategy=strategy, coarse_out_of_plane_step=coarse_step,
                     candidate_miss_rate=candidate_miss_rate)
    if constrain_to is not None:  # issue 16: a local search near partners (docs/CLASSIFY.md)
        from difftm.cli.constrained import search_constrained
        return search_constrained(config, overrides, micrographs, constrain_to, radius, cone,
                                  cone_step, offset, max_shape, max_box)
    if micrographs is None and config is not None:  # a dataset may be named in the YAML
        from difftm.search.config import merge_settings

        named = merge_settings(config, {})
        micrographs = named.get("micrographs")
        project_dir = project_dir or named.get("project_dir")
    if micrographs is not None:
        if micrograph is not None and template is not None:
            raise ValueError("with --micrographs give only the TEMPLATE argument")
        _search_dataset(micrographs, template or micrograph, config, overrides, project_dir,
                        limits=(max_shape, max_box))
        return
    cfg = load_config(config, overrides)
    for path in (cfg.micrograph, cfg.template):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: file not found")
    check_search_sizes([cfg.micrograph], cfg.template, max_shape, max_box)  # from headers
    from difftm.search.engine import resolve_pixel_size
    from difftm.threads import apply_threads

    px_given = cfg.pixel_size is not None
    cfg = resolve_pixel_size(cfg)
    n_threads = None
    if cfg.scheduler in (None, "none"):  # this process computes (whole search or parts)
        # the value used goes into the results' metadata; cfg.threads stays as given, so
        # that a resumed search can keep the thread count of its checkpoint
        n_threads, reason = apply_threads(cfg.threads)
        threads_note = f"{n_threads} CPU thread{'s' if n_threads != 1 else ''} ({reason})"
    else:
        threads_note = f"{cfg.threads or 1} CPU thread(s) per Dask worker"
    console.print(
        f"pixel size {cfg.pixel_size:g} A"
        + ("" if px_given else f" (from the header of {cfg.micrograph.name})")
        + f", {threads_note}", highlight=False, soft_wrap=True)

    reporter = None

    def on_plan(plan: SearchPlan) -> None:
        nonlocal reporter
        if reporter is not None:
            reporter.close()
        if plan.stage == "refine":  # the accelerated search's second stage
            console.print(f"refining {plan.n_orientations:,} candidates by gradient ascent",
                          highlight=False, soft_wrap=True)
            reporter = progress_reporter(console, "refine", max(1, plan.n_orientations),
                                         unit="candidates/s")
            return
        console.print(
            ("coarse pass: " if cfg.strategy == "accelerated" else "") +
            f"{plan.n_orientations:,} orientations x {plan.n_defocus} defocus planes = "
            f"{plan.n_search:,} correlations of {plan.shape[0]}x{plan.shape[1]} px "
            f"(template box {plan.box}) on {plan.device}, batch {plan.batch_size}"
            + (f"; resuming with {plan.threads} CPU threads like the interrupted run (same "
               "rounding, identical results)" if plan.threads != n_threads else ""),
            highlight=False, soft_wrap=True)
        reporter = progress_reporter(console, "search", plan.n_search, unit="orient/s",
                                     per_unit=plan.n_defocus)

    def on_progress(done: int, total: int, seconds: float) -> None:
        if reporter is not None:
            reporter.update(done)

    if cfg.scheduler is not None or cfg.n_parts is not None:
        result = _run_distributed(cfg)
    else:
        try:
            result = run_search(cfg, progress=on_progress, on_plan=on_plan)
        finally:
            if reporter is not None:
                reporter.close()
    md = result.metadata
    work = (f"{md['n_correlations']:,} correlations" if "n_correlations" in md else
            f"{md['n_search']:,} search positions")
    if md.get("n_local_scores"):
        work += f" + {md['n_local_scores']:,} local scores"
    console.print(
        f"done ({md.get('strategy', 'exhaustive')}): {work}, max SNR "
        f"{result.maps['snr'].max():.2f}, max z-score {result.maps['zscore'].max():.2f}; "
        f"results in {cfg.output}")


def _run_distributed(cfg):
    from difftm.search.distributed import run_search_distributed

    # the number of parts is known from the first report
    reporter = progress_reporter(console, "search (parts)", 1, unit="parts/s")
    reporter.begin(0)

    def on_progress(done: int, total: int, seconds: float) -> None:
        reporter.set_total(total)
        reporter.update(done)

    sched = None if cfg.scheduler in (None, "none") else cfg.scheduler
    try:
        return run_search_distributed(cfg, scheduler=sched, n_parts=cfg.n_parts,
                                      n_workers=cfg.n_workers, progress=on_progress)
    finally:
        reporter.close()


def _search_dataset(spec: str, template: Path | None, config: Path | None, overrides: dict,
                    project_dir: Path | None,
                    limits: tuple[int, int] = (DEFAULT_MAX_SHAPE, DEFAULT_MAX_BOX)) -> None:
    """``difftm search --micrographs``: every micrograph of a dataset (difftm.dataset.run)."""
    from difftm.dataset.inputs import read_micrographs
    from difftm.dataset.run import build_dataset, run_dataset
    from difftm.search.config import merge_settings
    from difftm.threads import apply_threads

    settings = merge_settings(config, {**overrides, "template": template})
    for key in ("micrographs", "project_dir"):  # dataset keys of a YAML file
        settings.pop(key, None)
    if project_dir is not None:
        project_dir = Path(project_dir)
    if settings.get("template") is None:
        raise ValueError("give the TEMPLATE argument (or template: in --config)")
    if settings.get("output") is None:
        raise ValueError("give --output, the dataset folder")
    if not Path(settings["template"]).is_file():
        raise FileNotFoundError(f"{settings['template']}: file not found")
    ctf_keys = ("defocus_u", "defocus_v", "defocus_angle", "phase_shift", "ctf_bfactor")
    cli_ctf = {k: overrides.get(k) for k in ctf_keys if overrides.get(k) is not None}
    if spec.endswith(".star") and {"defocus_u", "defocus_v", "defocus_angle"} & set(cli_ctf):
        raise ValueError(f"{spec}: the CTF of every micrograph comes from this STAR file; "
                         "drop --defocus-u/--defocus-v/--defocus-angle")
    ctf = cli_ctf if "defocus_u" in cli_ctf else None
    entries, optics = read_micrographs(spec, ctf, project_dir)
    check_search_sizes([e.path for e in entries], settings["template"], *limits)
    for key in ("micrograph", *ctf_keys[:3]):
        settings.pop(key, None)
    if ctf is None:  # each micrograph's own CTF; phase shift / B-factor from the CLI if any
        settings.update({k: v for k, v in cli_ctf.items() if k in ctf_keys[3:]})
    output = Path(settings["output"])
    job = build_dataset(entries, settings, output, optics, source=spec)
    scheduler = None if settings.get("scheduler") in (None, "none") else settings["scheduler"]
    if scheduler is None:
        n_threads, reason = apply_threads(settings.get("threads"))
        note = f"{n_threads} CPU thread{'s' if n_threads != 1 else ''} ({reason})"
    else:
        note = f"{settings.get('threads') or 1} CPU thread(s) per Dask worker, {scheduler}"
    n = len(entries)
    console.print(f"dataset: {n} micrograph{'s' if n != 1 else ''} from {spec} into {output}, "
                  f"{note}", highlight=False, soft_wrap=True)
    dataset = progress_reporter(console, "dataset", n, unit="micrographs/s")
    dataset.begin(0)
    current: dict = {}
    done = {"n": 0}

    def on_start(i: int) -> None:
        current["reporter"] = None
        current["label"] = f"[{i + 1}/{n}] {job.folders[i]}"

    def on_progress(i: int, d: int, total: int, seconds: float) -> None:
        if current.get("reporter") is None:
            current["reporter"] = progress_reporter(  # in logs: a line per quarter
                console, current.get("label", "search"), total, unit="positions/s",
                transient=True, fraction_step=0.25)
        current["reporter"].update(d)

    def on_done(i: int, row: dict) -> None:
        if current.get("reporter") is not None:
            current["reporter"].close()
            current["reporter"] = None
        done["n"] += 1
        what = {"skipped": "already done", "searched": "searched"}.get(row["status"], "")
        resumed = f", resumed at {row['resumed_from']:,}" if row.get("resumed_from") else ""
        console.print(f"[{done['n']}/{n}] {entries[i].name}: {what}{resumed}, "
                      f"{row['seconds']:.1f} s, max SNR {row['max_snr']:.2f}",
                      highlight=False, soft_wrap=True)
        dataset.update(done["n"])

    def on_running(running: list[tuple[int, float]]) -> None:  # Dask: micrographs on workers
        if running:
            console.print("running: " + ", ".join(
                f"{job.folders[i]} {100 * f:.0f}%" for i, f in running),
                highlight=False, soft_wrap=True)

    try:
        status = run_dataset(job, scheduler=scheduler, n_workers=settings.get("n_workers"),
                             n_parts=settings.get("n_parts"), threads=settings.get("threads"),
                             overwrite=bool(settings.get("overwrite")), on_start=on_start,
                             on_done=on_done, on_progress=on_progress, on_running=on_running)
    finally:
        if current.get("reporter") is not None:
            current["reporter"].close()
        dataset.close()
    skipped = sum(1 for r in status.values() if r["status"] == "skipped")
    console.print(f"done: {n} micrographs ({n - skipped} searched now, {skipped} already "
                  f"done); results in {output}; next: difftm peaks {output}",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Attach ``difftm search`` to ``app``."""
    app.command("search")(user_errors(_search))
