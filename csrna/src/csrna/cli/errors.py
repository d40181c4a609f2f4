"""One-line user errors for the ``csrna`` command."""

from __future__ import annotations

import functools

import typer
from rich.console import Console
from rich.markup import escape

_err = Console(stderr=True)


def user_errors(func):
    """Turn ValueError/FileNotFoundError into one red line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (ValueError, FileNotFoundError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            _err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper
