"""``difftm simulate template``: a 3D template (MRC) from an atomic model."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import check_number, check_physical, user_errors
from difftm.cli.limits import DEFAULT_MAX_BOX
from difftm.cli.options import ThreadsOption
from difftm.cli.progress import progress_reporter

console = Console(stderr=True)


def _template(
    model: Annotated[Path, typer.Argument(
        help="Atomic model: PDB or mmCIF file, optionally gzip-compressed (.pdb.gz, .cif.gz). "
        "Model 1 is used, first alternative conformer, no waters.")],
    pixel_size: Annotated[float, typer.Option(
        "--pixel-size", help="Voxel size in Angstrom; use the pixel size of your micrographs.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Output MRC volume (scattering potential in Volts).")],
    box: Annotated[int | None, typer.Option(
        "--box", help="Edge of the cubic volume in voxels. Default: the smallest even box "
        "holding the model with a 15% margin.")] = None,
    b_factor_scale: Annotated[float, typer.Option(
        "--b-factor-scale", help="Multiply every atom's B-factor by this (blur more or "
        "less).")] = 1.0,
    b_factor_add: Annotated[float, typer.Option(
        "--b-factor-add", help="Add this B-factor (A^2) to every atom after scaling.")] = 0.0,
    fluence: Annotated[float | None, typer.Option(
        "--fluence", help="Total exposure of the micrographs in e-/A^2: weights the template "
        "by the average radiation damage (Grant & Grigorieff 2015). Default: none.")] = None,
    voltage: Annotated[float, typer.Option(
        "--voltage", help="Accelerating voltage in kV (200 or 300) for --fluence.")] = 300.0,
    mtf: Annotated[str, typer.Option(
        "--mtf", help="Detector MTF to apply: none, k3, falcon4, ideal, or a file (RELION MTF "
        ".star, or two columns: frequency/Nyquist and MTF).")] = "none",
    keep_ligands: Annotated[bool, typer.Option(
        "--keep-ligands", help="Also include ligands and ions (waters are never "
        "included).")] = False,
    center: Annotated[str, typer.Option(
        "--center", help="Model point placed at the centre voxel (box//2), which particle "
        "coordinates of a search refer to: com (centre of mass), box (keep the model's own "
        "frame: model origin at voxel 0, for a model fitted into a map of this --box and "
        "--pixel-size) or X,Y,Z in Angstrom. Recorded in the MRC header (origin and a "
        "label).")] = "com",
    device: Annotated[str, typer.Option(
        "--device", help="auto (CUDA when available), cpu, or cuda[:N].")] = "auto",
    threads: ThreadsOption = None,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace OUTPUT if it exists.")] = False,
    max_box: Annotated[int, typer.Option(
        "--max-box", help="Largest --box accepted (a 1024^3 float volume is 4 GiB); raise it "
        "deliberately for bigger templates.")] = DEFAULT_MAX_BOX,
) -> None:
    """Simulate the 3D electrostatic potential of an atomic model as a 2DTM template.

    Example: difftm simulate template 6zu5.cif.gz --pixel-size 2 -o 80S.mrc --mtf k3
    """
    import torch

    from difftm.io.atomic import check_writable
    from difftm.io.models import load_model, molecular_mass_da
    from difftm.simulate.template import (
        parse_centre,
        resolve_centre,
        simulate_template,
        suggest_box,
        write_template,
    )
    from difftm.threads import apply_threads

    check_physical("pixel_size", pixel_size)
    if box is not None and box < 2:
        raise ValueError(f"--box must be at least 2 voxels, got {box}")
    if box is not None and box > max_box:
        raise ValueError(f"--box {box} is larger than --max-box {max_box} (a {box}^3 volume "
                         f"needs {4 * box**3 / 2**30:.1f} GiB per copy); raise --max-box to "
                         "allow it")
    check_physical("fluence", fluence)
    check_physical("voltage", voltage)
    check_number("--b-factor-scale", b_factor_scale, 0.0, 100.0)
    check_number("--b-factor-add", b_factor_add, -500.0, 1e4, "A^2")
    centre_mode = parse_centre(center)
    if centre_mode == "box" and box is None:
        raise ValueError("--center box keeps the model's frame (model origin at voxel 0): "
                         "give --box, the box of the map the model is fitted into")
    check_writable(output, overwrite)
    n_threads, _ = apply_threads(threads)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        torch_device = torch.device(device)
    except RuntimeError:
        raise ValueError(f"--device {device!r} is not a torch device (auto, cpu, cuda)") from None
    if torch_device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: CUDA is not available on this machine")

    with console.status(f"reading {model.name}"):
        atoms = load_model(model, keep_ligands=keep_ligands)
    point = resolve_centre(atoms, centre_mode, pixel_size, box)
    if box is None:
        box = suggest_box(atoms, pixel_size, centre=point)
        if box > max_box:
            raise ValueError(f"{model}: the model needs a box of {box} voxels at "
                             f"{pixel_size:g} A/px, larger than --max-box {max_box}; give a "
                             "larger --pixel-size or raise --max-box")

    reporter = progress_reporter(console, "simulating potential", len(atoms), unit="atoms/s",
                                 transient=True)
    start = time.perf_counter()
    try:
        volume = simulate_template(
            atoms, pixel_size, box, b_factor_scale=b_factor_scale, fluence=fluence, mtf=mtf,
            device=torch_device, b_factor_add=b_factor_add, voltage_kv=voltage,
            progress=lambda done, total: reporter.update(done), centre=point,
        )
    finally:
        reporter.close()
    note = centre_mode if isinstance(centre_mode, str) else "given"
    write_template(output, volume, pixel_size, point, overwrite=overwrite, note=note)
    elapsed = time.perf_counter() - start
    filters = [f"fluence {fluence:g} e-/A^2"] if fluence is not None else []
    if mtf.strip().lower() != "none":
        filters.append(f"MTF {mtf}")
    console.print(
        f"wrote {output}: {box}^3 voxels at {pixel_size:g} A/px from {len(atoms)} atoms "
        f"({molecular_mass_da(atoms) / 1000:.1f} kDa)"
        + (f", {', '.join(filters)}" if filters else "")
        + f"; centre ({note}) x,y,z = {point[0]:.2f}, {point[1]:.2f}, {point[2]:.2f} A at "
        f"voxel {box // 2}; {elapsed:.1f} s on {torch_device}"
        + (f", {n_threads} thread{'s' if n_threads != 1 else ''}"
           if torch_device.type == "cpu" else ""),
        highlight=False, soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    """Attach the ``template`` command to ``app`` (the ``difftm simulate`` group)."""
    app.command("template")(user_errors(_template))
