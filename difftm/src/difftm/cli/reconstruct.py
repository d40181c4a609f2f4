"""``difftm reconstruct``: 3D map from a particle table (direct Fourier insertion, CTF
correction, half-maps, FSC), with an optional template-bias (omit) test."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import check_number, check_physical, user_errors
from difftm.cli.options import ThreadsOption
from difftm.cli.progress import progress_reporter

console = Console(stderr=True)


def _output_paths(output: Path, report: bool) -> dict[str, Path]:
    stem = output.with_suffix("")
    paths = {
        "map": output,
        "half1": Path(f"{stem}_half1.mrc"),
        "half2": Path(f"{stem}_half2.mrc"),
        "fsc": Path(f"{stem}_fsc.csv"),
        "json": Path(f"{stem}.json"),
    }
    if report:
        paths["html"] = Path(f"{stem}.html")
    return paths


def _micrograph_loader(star: Path):
    """name -> image; names are tried as given, then relative to the STAR file's folder."""
    from difftm.io.mrc import read_mrc

    def resolve(name: str) -> Path:
        p = Path(name)
        if p.is_file() or p.is_absolute():
            return p
        beside = star.parent / p
        return beside if beside.is_file() else p

    def load(name: str):
        path = resolve(name)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: micrograph named in {star} not found")
        image = read_mrc(path).data
        if image.ndim != 2:
            raise ValueError(f"{path}: expected a 2D micrograph, got shape {image.shape}")
        return image

    return load, resolve


def _reconstruct(
    particles: Annotated[Path, typer.Argument(
        help="RELION particle STAR (rlnMicrographName, rlnCoordinateX/Y, rlnAngleRot/Tilt/Psi, "
             "rlnDefocusU/V/Angle; optics: rlnVoltage, rlnSphericalAberration, "
             "rlnAmplitudeContrast, pixel size).")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Final map (.mrc); MAP_half1/2.mrc, MAP_fsc.csv, MAP.json and "
        "MAP.html are written beside it.")],
    box: Annotated[int | None, typer.Option(
        help="Extraction box and map size in pixels (even) [rlnImageSize of the optics "
             "table].")] = None,
    pixel_size: Annotated[float | None, typer.Option(
        help="Micrograph pixel size in A [rlnMicrographPixelSize / rlnImagePixelSize, else the "
             "micrograph header].")] = None,
    symmetry: Annotated[str, typer.Option(
        help="Point group: C1, Cn, Dn, T, O, I (axes: 3DEM standard) [C1].")] = "C1",
    seed: Annotated[int, typer.Option(help="Seed of the random half-sets [0].")] = 0,
    padding: Annotated[float | None, typer.Option(
        help="Oversampling of the 3D Fourier grid [2 up to box 192, else 1].")] = None,
    batch_size: Annotated[int, typer.Option(
        help="Particles extracted and inserted at once [32].")] = 32,
    lowpass: Annotated[bool, typer.Option(
        "--lowpass/--no-lowpass",
        help="Cut the final map at the FSC-0.143 resolution [on].")] = True,
    mask_diameter: Annotated[float | None, typer.Option(
        help="Soft spherical mask diameter (A) for the FSC and the final map, as in "
             "post-processing; generous, around the particle [none: unmasked FSC].")] = None,
    max_box: Annotated[int, typer.Option(
        "--max-box", help="Largest --box accepted [512].")] = 512,
    max_memory: Annotated[float, typer.Option(
        "--max-memory", help="Refuse a reconstruction whose estimated peak memory exceeds "
        "this many GiB [16].")] = 16.0,
    omit_test: Annotated[bool, typer.Option(
        "--omit-test", help="Run the template-bias test: map-model correlation in the "
        "omitted region vs control regions and phase-randomised maps (needs --omit-model "
        "and --omit-chain or --omit-mask).")] = False,
    omit_model: Annotated[Path | None, typer.Option(
        help="Full atomic model (with the omitted part), PDB/mmCIF.")] = None,
    omit_chain: Annotated[str | None, typer.Option(
        help="Chain of --omit-model the template lacked.")] = None,
    omit_mask: Annotated[Path | None, typer.Option(
        help="MRC mask (> 0.5) of the omitted region on the map's grid, instead of "
             "--omit-chain.")] = None,
    omit_centre: Annotated[str, typer.Option(
        help="With --omit-chain, the model point at the map centre: 'kept' (centre of mass "
             "of the template's atoms, as `difftm simulate template` places the model lacking "
             "the chain) or 'full' [kept]. With --omit-mask the model's own centre of mass "
             "is used.")] = "kept",
    omit_radius: Annotated[float, typer.Option(
        help="Region radius around atoms, A [2.5].")] = 2.5,
    omit_random: Annotated[int, typer.Option(
        help="Phase-randomised maps in the noise reference [200].")] = 200,
    omit_resolution: Annotated[float | None, typer.Option(
        help="Low-pass (A) of the model map in the omit test [the map's FSC-0.143 "
             "resolution].")] = None,
    report: Annotated[bool, typer.Option(
        "--report/--no-report", help="Write MAP.html with figures [on].")] = True,
    threads: ThreadsOption = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing output files.")] = False,
) -> None:
    """Reconstruct a 3D map from particles found and aligned by 2DTM.

    Particles are extracted with sub-pixel centring, CTF-multiplied and inserted into a
    padded 3D Fourier grid (trilinear, the adjoint of difftm's projector) per random
    half-set (overlapping boxes stay in one half); half-maps give the FSC and the resolution
    at 0.143; the final map is the Wiener combination with SSNR = 2 FSC / (1 - FSC)."""
    import numpy as np
    import pandas as pd

    from difftm.io.atomic import atomic_output, check_writable, output_unit
    from difftm.io.mrc import read_mrc, read_mrc_header, write_mrc
    from difftm.reconstruct.fsc import fourier_shell_correlation, fsc_noise_sigma
    from difftm.reconstruct.run import (
        default_padding,
        estimate_memory_bytes,
        read_particle_set,
        reconstruct,
    )
    from difftm.threads import apply_threads

    if output.suffix.lower() != ".mrc":
        raise ValueError(f"{output}: the map must be an .mrc file")
    check_physical("pixel_size", pixel_size)
    check_number("--padding", padding, 1.0, 4.0)
    check_number("--max-memory", max_memory, 0.0, None, "GiB", low_open=True)
    check_number("--mask-diameter", mask_diameter, 0.0, None, "A", low_open=True)
    if max_box < 8:
        raise ValueError(f"--max-box {max_box} must be at least 8")
    if batch_size < 1 or batch_size > 100_000:
        raise ValueError(f"--batch-size {batch_size} must be 1 to 100000")
    from difftm.geometry.symmetry import parse_symmetry

    try:
        parse_symmetry(symmetry)
    except ValueError as err:
        raise ValueError(f"--symmetry: {err}") from None
    if omit_test:
        if omit_model is None or (omit_chain is None) == (omit_mask is None):
            raise ValueError("--omit-test needs --omit-model and one of --omit-chain or "
                             "--omit-mask")
        if omit_centre not in ("kept", "full"):
            raise ValueError(f"--omit-centre must be 'kept' or 'full', got {omit_centre!r}")
        check_number("--omit-radius", omit_radius, 0.0, 20.0, "A", low_open=True)
        check_number("--omit-resolution", omit_resolution, 0.0, 1000.0, "A", low_open=True)
        if not 10 <= omit_random <= 100_000:
            raise ValueError(f"--omit-random {omit_random} must be 10 to 100000")
        for p in (omit_model, omit_mask):
            if p is not None and not p.is_file():
                raise FileNotFoundError(f"{p}: no such file")
    if not particles.is_file():
        raise FileNotFoundError(f"{particles}: particle table not found")
    if omit_test and omit_chain is not None:
        from difftm.reconstruct.omit import split_model

        kept, omitted = split_model(omit_model, omit_chain)  # a bad chain fails here, early
    paths = _output_paths(output, report)
    for path in paths.values():
        check_writable(path, overwrite)
    figures_dir = Path(f"{output.with_suffix('')}_figures")
    if report and figures_dir.exists() and not figures_dir.is_dir():
        raise ValueError(f"{figures_dir}: exists and is not a folder (the report's figures go "
                         "there)")

    pset = read_particle_set(particles, pixel_size)
    from difftm.io.star import read_particles_star

    optics, _ = read_particles_star(particles)
    if box is None:
        if "rlnImageSize" in optics.columns and len(optics):
            size = float(pd.to_numeric(optics["rlnImageSize"], errors="coerce").iloc[0])
            if not (np.isfinite(size) and size == round(size) and size >= 1):
                raise ValueError(f"{particles}: rlnImageSize {optics['rlnImageSize'].iloc[0]} "
                                 "is not a box size in pixels; give --box")
            if size > max_box:  # before converting an absurd value
                raise ValueError(f"{particles}: rlnImageSize {size:g} is larger than "
                                 f"--max-box {max_box}; give --box or raise --max-box")
            box = int(size)
        else:
            raise ValueError(f"{particles}: no rlnImageSize in the optics table; give --box")
    if box > max_box:
        raise ValueError(f"--box {box} is larger than --max-box {max_box}; raise --max-box "
                         "deliberately")
    load, resolve = _micrograph_loader(particles)
    first = resolve(str(pset.micrograph[0]))
    if not np.isfinite(pset.pixel_size):
        if not first.is_file():
            raise FileNotFoundError(f"{first}: micrograph named in {particles} not found")
        header = read_mrc_header(first)
        if not header.get("pixel_size_calibrated", False):
            raise ValueError(f"{particles}: no pixel size in the STAR and {first} has no "
                             "calibrated header pixel size; give --pixel-size")
        pset.pixel_size = float(header["pixel_size"])
        check_physical("pixel_size", pset.pixel_size, f"{first}: header pixel size")
    if mask_diameter is not None and mask_diameter > box * pset.pixel_size:
        raise ValueError(f"--mask-diameter {mask_diameter:g} A is larger than the box ({box} x "
                         f"{pset.pixel_size:g} = {box * pset.pixel_size:g} A)")
    pad = default_padding(box) if padding is None else padding
    need = estimate_memory_bytes(box, pad) / 2**30
    if need > max_memory:
        raise ValueError(f"box {box} with padding {pad:g} needs about {need:.1f} GiB, more "
                         f"than --max-memory {max_memory:g}; use --padding 1, a smaller box, "
                         "or raise --max-memory")
    n_threads, _ = apply_threads(threads)
    mask = None
    if omit_test and omit_mask is not None:
        mask = read_mrc(omit_mask).data > 0.5
        if mask.shape != (box, box, box):
            raise ValueError(f"{omit_mask}: mask shape {mask.shape} is not the map's "
                             f"({box}, {box}, {box})")

    reporter = progress_reporter(console, "reconstruct", len(pset), unit="particles/s")

    def progress(done: int, total: int) -> None:
        reporter.update(done)

    t0 = time.perf_counter()
    try:
        res = reconstruct(pset, load, box, padding=pad, symmetry=symmetry, seed=seed,
                          batch_size=batch_size, lowpass=lowpass, progress=progress,
                          mask_diameter=mask_diameter)
    finally:
        reporter.close()
    seconds = time.perf_counter() - t0
    ps = pset.pixel_size

    omit_dict = None
    omit_null = None
    if omit_test:
        from difftm.io.models import centre_of_mass, load_model
        from difftm.physics.potential import simulate_potential
        from difftm.reconstruct.omit import (
            concat_atoms,
            region_masks,
            split_atoms_by_mask,
        )
        from difftm.reconstruct.omit import omit_test as run_omit

        if omit_chain is None:
            full_atoms = load_model(omit_model)
            c = centre_of_mass(full_atoms)
            kept, omitted = split_atoms_by_mask(full_atoms, mask, c, ps)
        full = concat_atoms(kept, omitted)
        if omit_chain is None:  # the mask is on the grid of the whole model's frame
            centre = c
        else:
            centre = centre_of_mass(kept) if omit_centre == "kept" else centre_of_mass(full)
        omask, controls = region_masks(kept, omitted, centre, ps, box, omit_radius, seed=seed)
        if mask is not None:
            omask = mask
        model_map = simulate_potential(full, ps, box, centre=centre).numpy()
        result, omit_null = run_omit(res.final, model_map, omask, controls, ps,
                                     omit_resolution or max(res.resolution, 2 * ps),
                                     n_random=omit_random, seed=seed)
        omit_dict = result.as_dict()

    curve = res.fsc
    table = pd.DataFrame({
        "shell": np.arange(len(curve.fsc)), "frequency_per_A": curve.frequency,
        "resolution_A": np.where(curve.frequency > 0, 1.0 / np.maximum(curve.frequency, 1e-12),
                                 np.inf),
        "fsc": curve.fsc, "voxels": curve.count, "noise_sigma": fsc_noise_sigma(curve.count)})
    summary = {**res.params, "seconds": seconds, "threads": n_threads,
               "star": str(particles), "outputs": {k: str(v) for k, v in paths.items()}}
    if omit_dict is not None:
        summary["omit_test"] = {**omit_dict, "model": str(omit_model), "chain": omit_chain,
                                "mask": str(omit_mask) if omit_mask else None,
                                "centre": omit_centre, "radius_A": omit_radius}
    section = None
    if report:  # the figures first (they only feed the report)
        from difftm.report.reconstruct_report import (
            fsc_figure,
            omit_figure,
            orientation_figure,
            reconstruct_section,
            slices_figure,
        )

        folder = figures_dir
        curves = {("masked " if mask_diameter else "") + "half-maps": curve.fsc}
        if mask_diameter:
            curves["unmasked half-maps"] = fourier_shell_correlation(res.half1, res.half2,
                                                                     ps).fsc
        figs = [
            (fsc_figure(folder / "fsc.png", curve.frequency, curves, res.resolution,
                        fsc_noise_sigma(curve.count)),
             f"Half-map FSC; 0.143 at {res.resolution:.2f} A"),
            (slices_figure(folder / "slices.png", res.final), "Central slices of the map"),
            (orientation_figure(folder / "orientations.png", pset.angles),
             "Viewing directions (rot, tilt)"),
        ]
        if omit_dict is not None:
            figs.append((omit_figure(folder / "omit.png", omit_dict["cc_omit"],
                                     omit_dict["cc_control"], omit_null, omit_dict["z"]),
                         "Omit test: omitted region vs controls and noise reference"))
        section = reconstruct_section(res.params, figs, omit_dict)
    # map, half-maps, FSC table, summary and report as one unit: all of them or none
    with output_unit():
        write_mrc(paths["map"], res.final, ps, overwrite=overwrite)
        write_mrc(paths["half1"], res.half1, ps, overwrite=overwrite)
        write_mrc(paths["half2"], res.half2, ps, overwrite=overwrite)
        with atomic_output(paths["fsc"], overwrite=overwrite) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        with atomic_output(paths["json"], overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(summary, indent=1))
        if section is not None:
            from difftm.report.html import write_report

            write_report(paths["html"], f"difftm reconstruct: {particles.name}", [section],
                         overwrite=overwrite)
    console.print(
        f"reconstructed {len(pset)} particles ({res.params['half1']} / "
        f"{res.params['half2']} per half, {symmetry.upper()}, box {box}, {n_threads} "
        f"thread(s), {seconds:.1f} s): FSC 0.143 at {res.resolution:.2f} A; wrote "
        + ", ".join(str(p) for p in paths.values()), highlight=False, soft_wrap=True)
    if omit_dict is not None:
        console.print(
            f"omit test: CC in omitted region {omit_dict['cc_omit']:.3f} (controls "
            f"{np.mean(omit_dict['cc_control']) if omit_dict['cc_control'] else float('nan'):.3f}"
            f", noise {omit_dict['null_mean']:.3f} +- {omit_dict['null_sd']:.3f}); z = "
            f"{omit_dict['z']:.2f}, p = {omit_dict['p_normal']:.2g}: omitted density "
            + ("returns" if omit_dict["returns"] else "does not return"), highlight=False)


def register(app: typer.Typer) -> None:
    """Attach ``difftm reconstruct`` to ``app``."""
    app.command("reconstruct")(user_errors(_reconstruct))
