"""The ``csrna`` command."""

from __future__ import annotations

import importlib

import typer

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
)

# Command modules; each defines ``register(app: typer.Typer) -> None``.
for _name in ("cli_fold", "cli_ensemble"):
    try:
        _module = importlib.import_module(f"csrna.{_name}")
    except ModuleNotFoundError as _err:
        if _err.name != f"csrna.{_name}":
            raise
        continue
    _module.register(app)


def main() -> None:
    """Run the ``csrna`` command."""
    app()
