"""``difftm orientations``: write the orientation grid of a search as a list of angles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import check_number, user_errors

console = Console(stderr=True)


def _orientations(
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Text file to write: one 'rot tilt psi' line per orientation "
        "(degrees, RELION ZYZ, exact decimals), in search order.")],
    out_of_plane_step: Annotated[float, typer.Option(
        help="Out-of-plane angular step, degrees.")] = 2.5,
    in_plane_step: Annotated[float, typer.Option(help="In-plane angular step, degrees.")] = 1.5,
    symmetry: Annotated[str, typer.Option(
        help="Template symmetry: C1, Cn, Dn, T, O, I.")] = "C1",
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Replace OUTPUT if it exists.")] = False,
) -> None:
    """Write the orientation grid that `difftm search` uses for these steps and symmetry.

    The file feeds other programs (compare on identical orientations) and
    `difftm search --orientations`, which then reproduces the grid search exactly. The
    grid's construction is described in docs/ARCHITECTURE.md.
    """
    from difftm.geometry.grids import orientation_grid, write_orientations
    from difftm.io.atomic import check_writable

    check_writable(output, overwrite)
    check_number("--out-of-plane-step", out_of_plane_step, 0.0, 180.0, "degrees", low_open=True)
    check_number("--in-plane-step", in_plane_step, 0.0, 180.0, "degrees", low_open=True)
    from difftm.geometry.grids import check_grid_bound

    try:
        check_grid_bound(out_of_plane_step, in_plane_step)
    except ValueError as err:
        raise ValueError(f"--out-of-plane-step/--in-plane-step: {err}") from None
    try:
        from difftm.geometry.symmetry import parse_symmetry

        parse_symmetry(symmetry)
    except ValueError as err:
        raise ValueError(f"--symmetry: {err}") from None
    angles = orientation_grid(out_of_plane_step, in_plane_step, symmetry.strip().upper())
    if angles.shape[0] == 0:
        raise ValueError("the orientation grid is empty: check the steps and symmetry")
    write_orientations(output, angles, overwrite=overwrite)
    console.print(f"wrote {output}: {angles.shape[0]:,} orientations ({out_of_plane_step:g} deg "
                  f"out of plane, {in_plane_step:g} deg in plane, {symmetry.upper()})",
                  highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Attach ``difftm orientations`` to ``app``."""
    app.command("orientations")(user_errors(_orientations))
