"""``difftm simulate``: templates from atomic models and synthetic micrographs."""

from __future__ import annotations

import typer

simulate_app = typer.Typer(
    help="Simulate a 3D template from an atomic model, or a micrograph with known particles.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Attach ``simulate template`` and ``simulate micrograph`` to ``app``."""
    import importlib

    for name in ("simulate_template", "simulate_micrograph"):
        try:
            module = importlib.import_module(f"difftm.cli.{name}")
        except ModuleNotFoundError as err:  # a command module not written yet
            if err.name != f"difftm.cli.{name}":
                raise
            continue
        module.register(simulate_app)
    app.add_typer(simulate_app, name="simulate")
