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


def particles_of_run(run, particles, device: str):
    """The particle table a local command (refine, classify) works on, after checking
    ``--device``: ``particles`` as given, else the table `difftm peaks RUN` wrote last, else
    ``RUN/particles.star``.

    Raises:
        ValueError: a bad ``--device`` (one line naming the option).
        FileNotFoundError: no particle table.
    """
    from pathlib import Path

    from difftm.search.device import resolve_device
    from difftm.search.particles import recorded_peaks_output

    try:
        resolve_device(device)
    except ValueError as err:
        raise ValueError(f"--device: {err}") from None
    if particles is None:
        particles = recorded_peaks_output(Path(run)) or Path(run) / "particles.star"
    particles = Path(particles)
    if not particles.is_file():
        raise FileNotFoundError(f"{particles}: particle table not found (give --particles)")
    return particles
