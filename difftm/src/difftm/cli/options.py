"""Command-line options shared by several commands (one definition, one help text)."""

from __future__ import annotations

from typing import Annotated

import typer

#: Help of ``--threads`` (the default is chosen by :func:`difftm.threads.default_threads`).
THREADS_HELP = ("CPU threads of torch [$DIFFTM_THREADS or $OMP_NUM_THREADS, else the physical "
                "cores not busy with other processes at the start].")

#: ``--threads N`` for any command that computes; pass the value to
#: :func:`difftm.threads.apply_threads` before working and record what it returns.
ThreadsOption = Annotated[int | None, typer.Option("--threads", help=THREADS_HELP)]
