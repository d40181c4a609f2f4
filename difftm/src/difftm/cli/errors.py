"""One-line user errors for the command line.

Library code raises :class:`DifftmInputError` (or ``ValueError``/``FileNotFoundError``) with a
message naming the file and the problem; the CLI turns it into a single red line and exit 2.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from rich.console import Console

P = ParamSpec("P")
R = TypeVar("R")

_console = Console(stderr=True)


class DifftmInputError(ValueError):
    """Bad user input: a missing/corrupt file, an impossible parameter. Message is one line."""


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    _console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a CLI command so that input errors become one line and a non-zero exit."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except (DifftmInputError, ValueError, FileNotFoundError, FileExistsError,
                IsADirectoryError, PermissionError) as err:
            fail(str(err).splitlines()[0] if str(err) else type(err).__name__)
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        raise AssertionError("unreachable")

    return wrapper
