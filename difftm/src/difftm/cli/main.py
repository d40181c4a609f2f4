"""The ``difftm`` command: one entry point with subcommands.

Each subcommand lives in its own module under ``difftm.cli`` exposing ``register(app)``.

Help texts are plain text (``rich_markup_mode=None``): defaults are written in square
brackets, e.g. ``[300]``, which rich markup would swallow as tags. Typer groups added with
``add_typer`` must set the same mode (:data:`HELP_MARKUP`).
"""

from __future__ import annotations

import typer

from difftm.cli import (  # issues 16, 17
    classify,
    constrained,
    demo,
    fetch,
    info,
    mwlimit,
    orientations,
    peaks,
    reconstruct,
    refine,
    search,
    simulate,
)
from difftm.cli.errors import OneLineGroup
from difftm.cli.simulate import HELP_MARKUP

app = typer.Typer(
    name="difftm",
    help=(
        "difftm: find molecules in cryo-EM micrographs by 2D template matching (2DTM).\n\n"
        "Typical workflow: `difftm simulate template` (atomic model -> 3D template), "
        "`difftm search` (micrograph x template -> SNR/z-score maps), "
        "`difftm peaks` (maps -> particle table), `difftm refine` (local pose, shift and "
        "defocus refinement). `difftm demo` runs it all on synthetic data."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=HELP_MARKUP,
    cls=OneLineGroup,
)

# Subcommand modules; each defines ``register(app: typer.Typer) -> None``.
for _module in (simulate, search, peaks, refine, reconstruct, orientations, demo, info, fetch):
    _module.register(app)
for _module in (classify, constrained, mwlimit):  # issues 16, 17
    _module.register(app)


def main() -> None:
    """Run the ``difftm`` command."""
    app()


if __name__ == "__main__":
    main()
