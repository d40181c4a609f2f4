"""``difftm info``: what is in an MRC image/volume, a STAR table or an atomic model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from difftm.cli.errors import user_errors
from difftm.io.paths import MODEL_SUFFIXES, content_suffix

console = Console()

_STAR_SUFFIXES = {".star"}
_MRC_SUFFIXES = {".mrc", ".mrcs", ".map", ".ccp4", ".rec", ".st", ".ali"}


def file_kind(path: Path) -> str:
    """``"mrc"``, ``"star"`` or ``"model"`` from the file name (``.gz`` ignored), else by
    sniffing the MRC header; raises ValueError for anything else."""
    last = content_suffix(path)
    if last in _STAR_SUFFIXES:
        return "star"
    if last in MODEL_SUFFIXES:
        return "model"
    if last in _MRC_SUFFIXES:
        return "mrc"
    with open(path, "rb") as fh:
        head = fh.read(224)
    if len(head) >= 212 and head[208:211] == b"MAP":
        return "mrc"
    raise ValueError(
        f"{path}: unknown file type (expected .mrc/.mrcs/.map, .star, .pdb or .cif)"
    )


def mrc_info(path: Path) -> dict:
    """Shape, pixel size, value statistics (float64) and header warnings of an MRC file."""
    from difftm.io.mrc import read_mrc
    from difftm.simulate.template import template_centre_label

    image = read_mrc(path, allow_nonfinite=True)
    data = image.data
    finite = data[np.isfinite(data)].astype(np.float64)
    centre = template_centre_label(path) if data.ndim == 3 else None
    return {
        "kind": "mrc",
        "path": str(path),
        "shape": list(image.shape),
        "type": "image" if data.ndim == 2 else ("stack" if image.is_stack else "volume"),
        "pixel_size": image.pixel_size,
        "pixel_size_calibrated": image.pixel_size_calibrated,
        "header_version": image.nversion,
        "min": float(finite.min()) if finite.size else float("nan"),
        "max": float(finite.max()) if finite.size else float("nan"),
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "std": float(finite.std()) if finite.size else float("nan"),
        "sum": float(finite.sum()) if finite.size else float("nan"),
        "warnings": image.warnings,
        "template_centre": centre,
    }


def star_info(path: Path) -> dict:
    """Block names, rows and columns of a STAR file; particle count when it has particles."""
    import pandas as pd

    from difftm.io.star import read_star_blocks

    blocks = read_star_blocks(path)
    described = []
    n_particles = None
    for name, block in blocks.items():
        if isinstance(block, pd.DataFrame):
            described.append({"name": f"data_{name}", "rows": len(block),
                              "columns": list(block.columns)})
            if name == "particles" or (n_particles is None and "rlnCoordinateX" in block):
                n_particles = len(block)
        else:
            described.append({"name": f"data_{name}", "rows": 1, "columns": list(block)})
    return {"kind": "star", "path": str(path), "blocks": described, "n_particles": n_particles}


def model_info(path: Path) -> dict:
    """Chains, residues, atoms, mass and size of an atomic model."""
    from difftm.io.models import summarize_model

    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    summary = summarize_model(path)
    return {"kind": "model", **summary}


def _print_mrc(info: dict) -> None:
    console.print(f"[bold]{info['path']}[/]", highlight=False)
    table = Table(show_header=False)
    shape = " x ".join(str(s) for s in info["shape"])
    axes = "(y, x)" if len(info["shape"]) == 2 else "(z, y, x)"
    calibrated = "" if info["pixel_size_calibrated"] else "  [yellow](not calibrated)[/]"
    rows = [
        ("type", f"MRC {info['type']}"),
        ("shape", f"{shape}  {axes}"),
        ("pixel size", f"{info['pixel_size']:.4f} A{calibrated}"),
        ("header", "MRC2014" if 20140 <= info["header_version"] < 20150 else "pre-MRC2014"),
        ("min / max", f"{info['min']:.6g} / {info['max']:.6g}"),
        ("mean / std", f"{info['mean']:.6g} / {info['std']:.6g}"),
    ]
    if info.get("template_centre"):
        rows.append(("template centre", info["template_centre"].removeprefix("difftm centre ")))
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    for warning in info["warnings"]:
        console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)


def _print_star(info: dict) -> None:
    console.print(f"[bold]{info['path']}[/]", highlight=False)
    if info["n_particles"] is not None:
        console.print(f"particles: {info['n_particles']}")
    for block in info["blocks"]:
        console.print(f"[bold]{block['name']}[/]: {block['rows']} rows", highlight=False)
        console.print("  " + ", ".join(block["columns"]), highlight=False)


def _print_model(info: dict) -> None:
    console.print(f"[bold]{info['path']}[/]", highlight=False)
    table = Table(show_header=False)
    ext = " x ".join(f"{v:.0f}" for v in info["extent_angstrom"])
    chains = ", ".join(info["chains"][:20]) + (" ..." if info["n_chains"] > 20 else "")
    rows = [
        ("format", info["format"]),
        ("chains", f"{info['n_chains']}: {chains}"),
        ("residues", str(info["n_residues"])),
        ("atoms", f"{info['n_atoms']} ({info['n_hydrogens']} H)"),
        ("mass", f"{info['mass_kda']:.1f} kDa"),
        ("extent", f"{ext} A (x, y, z)"),
        ("max radius", f"{info['max_radius_angstrom']:.1f} A from the centre of mass"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)


def _info(
    file: Annotated[Path, typer.Argument(help="An MRC image/volume, a STAR file or a PDB/mmCIF "
                                         "model (optionally .gz).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Describe a file: MRC (shape, pixel size, value statistics, header problems), STAR
    (data blocks, number of particles, columns) or atomic model (chains, atoms, mass)."""
    if not file.exists():
        raise FileNotFoundError(f"{file}: no such file")
    if file.is_dir():
        raise IsADirectoryError(f"{file}: is a directory, expected a file")
    kind = file_kind(file)
    info = {"mrc": mrc_info, "star": star_info, "model": model_info}[kind](file)
    if as_json:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    {"mrc": _print_mrc, "star": _print_star, "model": _print_model}[kind](info)


def register(app: typer.Typer) -> None:
    """Attach ``difftm info`` to ``app``."""
    app.command("info")(user_errors(_info))
