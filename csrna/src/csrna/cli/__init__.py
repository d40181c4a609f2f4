"""The ``csrna`` command."""

from __future__ import annotations

import typer

from csrna.cli import ensemble as cli_ensemble
from csrna.cli import fold as cli_fold
from csrna.cli.errors import OneLineGroup

app = typer.Typer(
    name="csrna",
    help=(
        "csrna: RNA structure from NMR chemical shifts.\n\n"
        "Workflow: `csrna fold` (CS-Fold: shifts -> P(unpaired) -> restrained folding -> CT), "
        "`csrna bme` / `csrna reweight` (CS-BME: ensemble reweighting), "
        "`csrna annotate` (CS-Annotate: per-nucleotide structural annotations)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineGroup,
)

# Command modules; each defines ``register(app: typer.Typer) -> None``.
for _module in (cli_fold, cli_ensemble):
    _module.register(app)


def main() -> None:
    """Run the ``csrna`` command."""
    app()
