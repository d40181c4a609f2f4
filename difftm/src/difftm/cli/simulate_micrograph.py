"""``difftm simulate micrograph``: a synthetic micrograph with known particles."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import check_number, check_physical, user_errors
from difftm.cli.limits import DEFAULT_MAX_SHAPE
from difftm.cli.options import ThreadsOption
from difftm.cli.progress import progress_reporter

console = Console(stderr=True)


def _micrograph(
    template: Annotated[Path, typer.Argument(
        help="3D template (MRC volume of the scattering potential in Volts), e.g. from "
        "`difftm simulate template`.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Micrograph to write (MRC, counts per pixel).")],
    truth: Annotated[Path, typer.Option(
        help="Ground-truth particle table to write (RELION STAR: centres, angles, defocus).")],
    shape: Annotated[tuple[int, int], typer.Option(
        help="Micrograph size in pixels: HEIGHT WIDTH.")],
    n_particles: Annotated[int, typer.Option(help="Number of particles to place.")],
    defocus: Annotated[float, typer.Option(
        help="Mean defocus in Angstrom, positive = underfocus (e.g. 10000).")],
    fluence: Annotated[float, typer.Option(
        help="Electron exposure in e-/A^2 (e.g. 40); sets the shot noise.")],
    pixel_size: Annotated[float | None, typer.Option(
        help="Pixel size in Angstrom of template and micrograph. Default: the template's "
        "header (required when the header has none; a calibrated header that disagrees is "
        "refused).")] = None,
    defocus_spread: Annotated[float, typer.Option(
        help="Standard deviation (A) of per-particle defocus offsets (ice thickness).")] = 0.0,
    astigmatism: Annotated[float, typer.Option(
        help="Defocus U minus defocus V in Angstrom.")] = 0.0,
    astigmatism_angle: Annotated[float, typer.Option(
        help="Direction of defocus U, degrees from the x axis.")] = 0.0,
    voltage: Annotated[float, typer.Option(help="Accelerating voltage in kV.")] = 300.0,
    cs: Annotated[float, typer.Option(help="Spherical aberration in mm.")] = 2.7,
    amplitude_contrast: Annotated[float, typer.Option(
        help="Amplitude contrast fraction.")] = 0.07,
    background: Annotated[Path | None, typer.Option(
        help="Real micrograph (MRC) used as background texture (cropped or mirror-tiled to "
        "the shape, normalised).")] = None,
    background_scale: Annotated[float, typer.Option(
        help="Background standard deviation in units of the shot noise.")] = 1.0,
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same micrograph.")] = 0,
    min_separation: Annotated[float | None, typer.Option(
        help="Minimum distance between particle centres in pixels (default: the template "
        "diameter).")] = None,
    shot_noise: Annotated[bool, typer.Option(
        "--shot-noise/--no-shot-noise", help="Draw Poisson counts (off: expected counts).")
    ] = True,
    model: Annotated[Path | None, typer.Option(
        help="The atomic model TEMPLATE was made from (PDB/mmCIF): particles are then "
        "projected exactly from its atoms (no voxel grid or interpolation) with the solvent "
        "they displace, centred where the template's header says (the centre of mass for "
        "templates without one). Without it the template volume is projected.")] = None,
    solvent_potential: Annotated[float, typer.Option(
        help="Mean inner potential (V) of the solvent the molecule displaces, with --model "
        "(3.5 = vitreous ice; 0 = vacuum).")] = 3.5,
    exposure: Annotated[str, typer.Option(
        help="Radiation-damage envelope of the particles: none, summed (a plain frame sum "
        "over the fluence) or dose-weighted (a dose-weighted sum).")] = "none",
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    threads: ThreadsOption = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace existing output files.")] = False,
    max_shape: Annotated[int, typer.Option(
        "--max-shape", help="Largest micrograph edge accepted, pixels (memory is allocated "
        "for the whole image); raise it deliberately.")] = DEFAULT_MAX_SHAPE,
    max_particles: Annotated[int, typer.Option(
        "--max-particles", help="Largest --n-particles accepted; raise it deliberately.")
    ] = 100_000,
) -> None:
    """Simulate a micrograph holding copies of TEMPLATE at random positions and orientations
    (weak-phase image formation, CTF per particle, Poisson shot noise, optional real
    background) and write it with its ground-truth particle table.

    Also writes the simulation parameters as JSON next to the micrograph (OUTPUT, suffix
    .json)."""
    import numpy as np
    import torch

    from difftm.io.atomic import atomic_output, check_writable, output_unit
    from difftm.io.mrc import read_mrc, write_mrc
    from difftm.io.star import make_optics_table, make_particles_table, write_particles_star
    from difftm.simulate.micrograph import EXPOSURE_MODES, simulate_micrograph
    from difftm.threads import apply_threads

    params_path = output.with_suffix(".json")
    if len({output.resolve(), truth.resolve(), params_path.resolve()}) < 3:
        raise ValueError(f"{output}: the micrograph, truth and parameter files must differ")
    inputs = {p.resolve() for p in (template, model, background) if p is not None}
    for path in (output, truth, params_path):
        if path.resolve() in inputs:
            raise ValueError(f"{path}: is also an input file; choose another output name")
        check_writable(path, overwrite)
    for name, value, option in (
            ("pixel_size", pixel_size, None), ("defocus", defocus, None),
            ("fluence", fluence, None), ("voltage", voltage, None), ("cs", cs, None),
            ("amplitude_contrast", amplitude_contrast, None),
            ("defocus_spread", defocus_spread, None), ("astigmatism", astigmatism, None),
            ("defocus_angle", astigmatism_angle, "--astigmatism-angle")):
        check_physical(name, value, option)
    check_number("--background-scale", background_scale, 0.0, 1e6)
    check_number("--min-separation", min_separation, 0.0, float(max(shape)))
    if not (1 <= min(shape) and max(shape) <= max_shape):
        raise ValueError(f"--shape {shape[0]} {shape[1]}: each edge must be 1 to --max-shape "
                         f"{max_shape} pixels")
    if not 0 <= n_particles <= max_particles:
        raise ValueError(f"--n-particles {n_particles} must be 0 to --max-particles "
                         f"{max_particles}")
    if device.strip().lower() != "cpu":
        from difftm.search.device import resolve_device

        try:
            resolve_device(device)
        except ValueError as err:
            raise ValueError(f"--device: {err}") from None
    vol = read_mrc(template)
    if vol.data.ndim != 3:
        raise ValueError(f"{template}: expected a 3D volume, got a 2D image {vol.shape}")
    if float(vol.data.max()) == float(vol.data.min()):
        raise ValueError(f"{template}: every voxel is {float(vol.data.flat[0]):g}; a constant "
                         "template has no particle to plant")
    if pixel_size is None:
        if not vol.pixel_size_calibrated:
            raise ValueError(f"{template}: header has no pixel size; give --pixel-size")
        pixel_size = vol.pixel_size
    expected_counts = fluence * pixel_size**2
    if expected_counts > 1e7:
        raise ValueError(f"--fluence {fluence:g} e-/A^2 at {pixel_size:g} A/px gives "
                         f"{expected_counts:.3g} electrons per pixel, beyond what the counts "
                         "can hold (at most 1e7)")
    elif vol.pixel_size_calibrated and abs(vol.pixel_size - pixel_size) > 0.005 * max(
            pixel_size, vol.pixel_size):
        raise ValueError(
            f"{template}: pixel size {vol.pixel_size:.4g} A in the header does not match "
            f"--pixel-size {pixel_size:.4g} A (resample the template or fix its header)")
    if exposure not in EXPOSURE_MODES:
        raise ValueError(f"--exposure must be one of {', '.join(EXPOSURE_MODES)}, got "
                         f"{exposure!r}")
    if not (math.isfinite(solvent_potential) and solvent_potential >= 0):
        raise ValueError(f"--solvent-potential must be a finite number >= 0 V, got "
                         f"{solvent_potential}")
    atoms, centre = None, None
    if model is not None:
        from difftm.io.models import load_model
        from difftm.simulate.template import recorded_template_centre

        atoms = load_model(model)
        recorded = recorded_template_centre(template)
        centre = None if recorded is None else np.asarray(recorded)
    bg = None
    if background is not None:
        bg_image = read_mrc(background)
        if bg_image.data.ndim != 2:
            raise ValueError(f"{background}: background must be a 2D micrograph")
        bg = bg_image.data

    n_threads, _ = apply_threads(threads)
    reporter = progress_reporter(console, "simulating particles", max(n_particles, 1),
                                 unit="particles/s", transient=True)

    def progress(done: int, total: int) -> None:
        reporter.update(done)

    try:
        sim = simulate_micrograph(
            torch.from_numpy(vol.data), pixel_size, tuple(shape), n_particles, defocus,
            voltage_kv=voltage, cs_mm=cs, amplitude_contrast=amplitude_contrast,
            fluence=fluence, defocus_spread=defocus_spread, astigmatism=astigmatism,
            astigmatism_angle=astigmatism_angle, background=bg,
            background_scale=background_scale, seed=seed, min_separation=min_separation,
            shot_noise=shot_noise, device=device, progress=progress, atoms=atoms,
            centre=centre, solvent_potential=solvent_potential, exposure=exposure,
        )
    finally:
        reporter.close()
    particles = make_particles_table(
        {k: sim.truth[k].to_numpy() for k in sim.truth.columns},
        micrograph_name=output.name, pixel_size=pixel_size,
    )
    optics = make_optics_table(pixel_size, voltage_kv=voltage, cs_mm=cs,
                               amplitude_contrast=amplitude_contrast)
    params = sim.params | {
        "template": str(template),
        "model_file": str(model) if model is not None else None,
        "background_file": str(background) if background is not None else None,
        "output": str(output),
        "truth": str(truth),
        "threads": n_threads,
    }
    # one unit: all three files are written to temporaries first and moved into place only
    # after every write succeeded; a failed move puts the previous files back, so a
    # failure (disk full) never leaves a micrograph without its truth table
    with output_unit():
        write_mrc(output, sim.image, pixel_size, overwrite=overwrite)
        write_particles_star(truth, particles, optics, overwrite=overwrite)
        with atomic_output(params_path, overwrite=overwrite) as tmp_params:
            tmp_params.write_text(json.dumps(params, indent=2) + "\n")
    console.print(
        f"wrote {output} ({shape[0]} x {shape[1]}, mean {sim.image.mean():.2f} counts), "
        f"{truth} ({n_particles} particles), {params_path}", highlight=False, soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Attach the ``micrograph`` command to ``app`` (the ``difftm simulate`` group)."""
    app.command("micrograph")(user_errors(_micrograph))
