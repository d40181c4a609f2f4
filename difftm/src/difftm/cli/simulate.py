"""``difftm simulate``: templates from atomic models and synthetic micrographs."""

from __future__ import annotations

import typer

#: Markup of help texts: none, so that "[default]" brackets print literally (see cli.main).
HELP_MARKUP = None

simulate_app = typer.Typer(
    help="Simulate a 3D template from an atomic model, or a micrograph with known particles.",
    no_args_is_help=True,
    rich_markup_mode=HELP_MARKUP,
)


def register(app: typer.Typer) -> None:
    """Attach ``simulate template`` and ``simulate micrograph`` to ``app``."""
    from difftm.cli import simulate_micrograph, simulate_template

    simulate_template.register(simulate_app)
    simulate_micrograph.register(simulate_app)
    app.add_typer(simulate_app, name="simulate")
