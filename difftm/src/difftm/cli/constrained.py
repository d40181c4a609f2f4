"""``difftm constrained-search``: search a second template only near detected partners.

A separate command rather than ``difftm search --constrain-to`` because ``cli/search.py``
and the search engine were being changed concurrently (``--strategy accelerated``); the
work is :func:`difftm.classify.constrained.constrained_search` and needs no engine change.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import check_number, user_errors
from difftm.cli.options import ThreadsOption
from difftm.cli.progress import progress_reporter

console = Console(stderr=True)

#: Largest constrained search accepted by default (partners x positions x orientations):
#: about an hour of scoring on a few CPU cores for a 64-pixel crop.
DEFAULT_MAX_TRIALS = 1e9


def _constrained(
    run: Annotated[Path, typer.Argument(
        help="Output folder of the partner's `difftm search` (micrograph, CTF, preparation).")],
    template: Annotated[Path, typer.Argument(help="Template MRC of the molecule to find.")],
    constrain_to: Annotated[Path, typer.Option(
        "--constrain-to", help="Partner detections (RELION STAR: centres, Euler angles, "
        "defocus), e.g. `difftm peaks` or `difftm refine` output of RUN.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Detections (.star, those above the threshold); a .csv with "
        "the best candidate of every partner is written beside it.")],
    radius: Annotated[float, typer.Option(
        help="Search radius around the predicted centre, Angstrom.")] = 10.0,
    cone: Annotated[float, typer.Option(
        help="Largest rotation from the partner's orientation, degrees.")] = 6.0,
    angle_step: Annotated[float, typer.Option(
        help="Step of the orientation grid within the cone, degrees [2].")] = 2.0,
    offset: Annotated[tuple[float, float, float] | None, typer.Option(
        help="X Y Z (A, model frame): the searched template's centre minus the partner "
             "template's centre [the difference of the centres recorded in both templates' "
             "headers by `difftm simulate template`, else 0 0 0].")] = None,
    false_positives: Annotated[float, typer.Option(
        help="Expected false positives over the whole constrained search: sets the "
             "threshold for its number of trials [1].")] = 1.0,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N [cpu].")] = "cpu",
    threads: ThreadsOption = None,
    max_trials: Annotated[float, typer.Option(
        "--max-trials", help="Largest search accepted: partners x positions within --radius "
        "x orientations within --cone, checked before anything is allocated [1e9]; raise "
        "it deliberately.")] = DEFAULT_MAX_TRIALS,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Find a small partner near detected large partners: the template is scored at every
    pixel within --radius of each partner's predicted centre and every orientation within
    --cone of the partner's, and detections are called at the erfc threshold of this
    reduced search space (trials = positions x orientations, printed with the threshold).

    The STAR has RELION's columns, difftmSNR, difftmPartner (1-based row of the partner
    table) and difftmAngleFromPartner (deg)."""
    import numpy as np

    from difftm.io.atomic import check_writable
    from difftm.refine.run import load_particles
    from difftm.search.config import load_config
    from difftm.search.device import resolve_device
    from difftm.search.engine import resolve_pixel_size
    from difftm.simulate.template import recorded_template_centre
    from difftm.threads import apply_threads

    if output.suffix.lower() != ".star":
        raise ValueError(f"{output}: the detections must be a .star file")
    csv_path = output.with_suffix(".csv")
    for path in (output, csv_path):
        check_writable(path, overwrite)
    check_number("--radius", radius, 0.0, 1000.0, "A")
    check_number("--cone", cone, 0.0, 45.0, "deg")
    check_number("--angle-step", angle_step, 0.05, 45.0, "deg")
    check_number("--false-positives", false_positives, 0.0, 1e6, low_open=True)
    check_number("--max-trials", max_trials, 1.0, None)
    if offset is not None:
        for v in offset:
            check_number("--offset", v, -5000.0, 5000.0, "A")
    try:
        resolve_device(device)
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise FileNotFoundError(f"{run}: not a search output folder (no config.yaml)")
    if not template.is_file():
        raise FileNotFoundError(f"{template}: template not found")
    cfg = resolve_pixel_size(load_config(run / "config.yaml", {}))
    _, partners = load_particles(constrain_to)
    check_constrained(cfg, template, constrain_to, partners, radius, cone, angle_step,
                      max_trials)
    note = "given"
    if offset is None:
        mine, theirs = recorded_template_centre(template), recorded_template_centre(
            cfg.template) if Path(cfg.template).is_file() else None
        if mine is not None and theirs is not None:
            offset = tuple(float(a - b) for a, b in zip(mine, theirs, strict=True))
            note = "from the templates' recorded centres"
        else:
            offset, note = (0.0, 0.0, 0.0), "0: no recorded centres"
    n_threads, _ = apply_threads(threads)
    run_constrained(cfg, template, constrain_to, output, radius, cone, angle_step,
                    np.asarray(offset), note, false_positives, device, overwrite,
                    f"{n_threads} thread(s)")


def check_constrained(cfg, template: Path, constrain_to: Path, partners, radius: float,
                      cone: float, angle_step: float, max_trials: float) -> None:
    """Up-front checks of a constrained search, before any image or template is read: the
    template's voxel size against the search's pixel size, partners inside the micrograph,
    positions per partner and the number of trials against ``max_trials``.

    Raises:
        ValueError: one line naming the file or option.
    """
    import numpy as np

    from difftm.classify.constrained import cone_vectors
    from difftm.io.mrc import read_mrc_header
    from difftm.search.engine import PIXEL_SIZE_TOLERANCE

    # sizes from the headers and the grids' counts, before any image or template is read
    header = read_mrc_header(template)
    px = float(header["pixel_size"])
    if header["pixel_size_calibrated"] and abs(px - cfg.pixel_size) > \
            PIXEL_SIZE_TOLERANCE * cfg.pixel_size:
        raise ValueError(f"{template}: voxel size {px:g} A differs from the search's pixel "
                         f"size {cfg.pixel_size:g} A")
    h, w = read_mrc_header(cfg.micrograph)["shape"][-2:]
    xy = partners[["x", "y"]].to_numpy(float)
    outside = ~np.isfinite(xy).all(1) | (xy[:, 0] < 0) | (xy[:, 1] < 0) | \
        (xy[:, 0] > w - 1) | (xy[:, 1] > h - 1)
    if outside.any():
        i = int(np.argmax(outside))
        raise ValueError(f"{constrain_to}: {int(outside.sum())} partner(s) outside the {w} x "
                         f"{h} micrograph (first: row {i + 1} at x={xy[i, 0]:g}, "
                         f"y={xy[i, 1]:g})")
    r = radius / cfg.pixel_size  # positions per partner, counted as disc_offsets draws them
    dx = np.arange(-int(math.floor(r + 1e-9)), int(math.floor(r + 1e-9)) + 1)
    n_positions = int((2 * np.floor(np.sqrt(np.maximum(r * r + 1e-9 - dx * dx, 0))) + 1).sum())
    if n_positions > 100_000:
        raise ValueError(f"--radius {radius:g} A is {n_positions} positions per partner "
                         "(> 100,000); search the whole micrograph instead")
    n_trials = len(partners) * n_positions * len(cone_vectors(cone, angle_step))
    if n_trials > max_trials:
        raise ValueError(f"{len(partners)} partners x --radius {radius:g} A x --cone {cone:g} "
                         f"deg at --angle-step {angle_step:g} is {n_trials:,} trials, more "
                         f"than --max-trials {max_trials:g}; shrink them or raise --max-trials")


def run_constrained(cfg, template: Path, constrain_to: Path, output: Path, radius: float,
                    cone: float, angle_step: float, offset, offset_note: str,
                    false_positives: float = 1.0, device: str = "cpu",
                    overwrite: bool = False, threads_note: str = "") -> None:
    """Score ``template`` near the partners of ``constrain_to`` on the micrograph of search
    configuration ``cfg`` and write ``output`` (.star, calls) and its .csv (every partner's
    best candidate) as one unit; print the trials, the threshold and the count.

    Shared by ``difftm constrained-search`` and ``difftm search --constrain-to``.
    """
    import numpy as np

    from difftm.classify.constrained import constrained_search
    from difftm.io.atomic import atomic_output, check_writable, output_unit
    from difftm.io.mrc import read_mrc
    from difftm.io.star import make_optics_table, make_particles_table, write_particles_star
    from difftm.refine.run import load_particles
    from difftm.refine.scorer import ParticleScorer

    csv_path = output.with_suffix(".csv")
    for path in (output, csv_path):
        check_writable(path, overwrite)
    _, partners = load_particles(constrain_to)
    vol = read_mrc(template).data
    if vol.ndim != 3 or len(set(vol.shape)) != 1:
        raise ValueError(f"{template}: expected a cubic 3D template, got shape {vol.shape}")
    if not np.isfinite(vol).all() or float(vol.max()) == float(vol.min()):
        raise ValueError(f"{template}: constant or non-finite template")
    image = read_mrc(cfg.micrograph).data
    scorer = ParticleScorer.from_search(cfg, image, vol, device=device)
    reporter = progress_reporter(console, "constrained search", len(partners), unit="/s")
    t0 = time.perf_counter()
    try:
        res = constrained_search(scorer, partners, radius, cone, angle_step,
                                 np.asarray(offset, dtype=float), cfg.defocus_u,
                                 cfg.defocus_v_resolved, false_positives,
                                 progress=lambda d, t: reporter.update(d))
    finally:
        reporter.close()
    seconds = time.perf_counter() - t0
    table = res.table
    called = res.called
    optics = make_optics_table(cfg.pixel_size, voltage_kv=cfg.voltage, cs_mm=cfg.cs,
                               amplitude_contrast=cfg.amplitude_contrast)
    cols = {name: called[name].to_numpy() for name in (
        "x", "y", "rot", "tilt", "psi", "defocus_u", "defocus_v", "snr")}
    cols["defocus_angle"] = np.full(len(called), cfg.defocus_angle)
    cols["difftmPartner"] = called["partner"].to_numpy(int) + 1
    cols["difftmAngleFromPartner"] = called["angle_from_partner"].to_numpy()
    star = make_particles_table(cols, micrograph_name=str(cfg.micrograph),
                                pixel_size=cfg.pixel_size, figure_of_merit="snr")
    with output_unit():
        write_particles_star(output, star, optics, overwrite=overwrite)
        with atomic_output(csv_path, overwrite=overwrite) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
    console.print(
        f"constrained search near {len(partners)} partners"
        + (f" ({threads_note}, {seconds:.1f} s)" if threads_note else f" ({seconds:.1f} s)")
        + f": {res.n_orientations} orientations within {cone:g} deg x "
        f"{res.n_positions} positions within {radius:g} A = {res.n_trials:,} trials; "
        f"threshold -ndtri({false_positives:g} / {res.n_trials:,}) = {res.threshold:.2f}; "
        f"{len(called)} detected; offset {tuple(round(float(v), 2) for v in offset)} A "
        f"({offset_note}); wrote {output}, {csv_path}", highlight=False, soft_wrap=True)


def search_constrained(config: Path | None, overrides: dict, micrographs: str | None,
                       constrain_to: Path, radius: float, cone: float, cone_step: float,
                       offset: tuple[float, float, float] | None, max_shape: int,
                       max_box: int) -> None:
    """``difftm search MIC TPL --constrain-to PARTNERS.star``: the constrained search of
    TPL on MIC with the search's own settings (CTF, preparation), written to
    ``OUTPUT/constrained.star`` and ``.csv`` instead of maps; one expected false positive
    over the constrained search; the offset between the templates' centres is ``offset``
    (default 0: templates centred on one model point).

    Raises:
        ValueError: a dataset, a scheduler or the accelerated strategy with
            ``--constrain-to``, or a bad value (one line).
    """
    import numpy as np

    from difftm.cli.limits import check_search_sizes
    from difftm.refine.run import load_particles
    from difftm.search.config import load_config
    from difftm.search.device import resolve_device
    from difftm.search.engine import resolve_pixel_size
    from difftm.threads import apply_threads

    if micrographs is not None:
        raise ValueError("--constrain-to searches one micrograph; run it per micrograph "
                         "(not with --micrographs)")
    check_number("--radius", radius, 0.0, 1000.0, "A")
    check_number("--cone", cone, 0.0, 45.0, "deg")
    check_number("--cone-step", cone_step, 0.05, 45.0, "deg")
    for v in offset or ():
        check_number("--offset", v, -5000.0, 5000.0, "A")
    cfg = load_config(config, overrides)
    if cfg.scheduler not in (None, "none") or getattr(cfg, "strategy", None) == "accelerated":
        raise ValueError("--constrain-to is its own local search: not with --scheduler or "
                         "--strategy accelerated")
    for path in (cfg.micrograph, cfg.template):
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: file not found")
    check_search_sizes([cfg.micrograph], cfg.template, max_shape, max_box)
    cfg = resolve_pixel_size(cfg)
    _, partners = load_particles(constrain_to)
    check_constrained(cfg, cfg.template, constrain_to, partners, radius, cone, cone_step,
                      DEFAULT_MAX_TRIALS)
    n_threads, _ = apply_threads(cfg.threads)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    run_constrained(cfg, cfg.template, constrain_to, out / "constrained.star", radius, cone,
                    cone_step, np.asarray(offset or (0.0, 0.0, 0.0)),
                    "given" if offset else "0: templates centred on one model point",
                    1.0, str(resolve_device(cfg.device)), bool(cfg.overwrite),
                    f"{n_threads} thread(s)")


def register(app: typer.Typer) -> None:
    """Attach ``difftm constrained-search`` to ``app``."""
    app.command("constrained-search")(user_errors(_constrained))
