"""``difftm demo``: the whole pipeline on simulated data, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from difftm.cli.errors import user_errors

console = Console(stderr=True)


def _demo(
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder for all results.")] = Path(
        "demo_output"),
    model: Annotated[Path | None, typer.Option(
        help="Atomic model to use instead of PDB 6ZU5 (fetched or taken from the cache).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Annotated[int, typer.Option(help="Random seed of the simulation.")] = 2024,
    overwrite: Annotated[bool, typer.Option(
        "--overwrite", help="Reuse a non-demo folder.")] = False,
) -> None:
    """Simulate a template from an atomic model (80S ribosome, PDB 6ZU5), plant particles in
    micrographs (shot noise only, and on a real micrograph background), search, pick peaks,
    score against the truth and write report.html with figures."""
    from difftm.demo import DemoSettings, run_demo

    settings = DemoSettings(device=device, seed=seed)
    run_demo(output, settings, log=lambda m: console.print(m, highlight=False),
             overwrite=overwrite, model_path=model)


def register(app: typer.Typer) -> None:
    """Attach ``difftm demo`` to ``app``."""
    app.command("demo")(user_errors(_demo))
