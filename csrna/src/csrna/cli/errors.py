"""One-line user errors for the ``csrna`` command.

Every failure caused by the input or the environment ends with one red ``error:`` line
naming the file or option, and exit code 2: input errors (``ValueError``, which includes
``UnicodeDecodeError``), operating-system errors (missing file, read-only folder, full disk,
a directory given as an output file), ``OverflowError`` (absurd numbers), ``KeyError`` and
``RuntimeError``. :class:`OneLineGroup` does the same for typer's parse errors.
"""

from __future__ import annotations

import functools
import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer import _click as click  # typer 0.2x vendors its own click
from typer.core import TyperGroup
from typer.exceptions import Abort

_err = Console(stderr=True)

#: Exceptions that mean bad input or a bad environment, not a bug.
USER_ERRORS = (ValueError, OSError, OverflowError, KeyError, RuntimeError, EOFError)


def one_line(err: BaseException) -> str:
    """First line of an exception's message, with the file name where the error has one."""
    if isinstance(err, OSError) and err.strerror and err.filename is not None:
        where = f"{err.filename} -> {err.filename2}" if err.filename2 else f"{err.filename}"
        return f"{where}: {err.strerror}"
    if isinstance(err, UnicodeDecodeError):
        return (f"not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                "save the file as UTF-8")
    if isinstance(err, KeyError):
        return f"missing entry {err.args[0]!r}" if err.args else "missing entry"
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    _err.print(f"[red]error:[/red] {escape(message)}", highlight=False, soft_wrap=True)
    sys.exit(code)


def user_errors(func):
    """Turn input and environment errors into one red line on stderr and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            _err.print(f"[red]error:[/red] {escape(one_line(err))}", highlight=False,
                       soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper


def check_range(option: str, value: float | None, low: float, high: float,
                low_open: bool = False) -> None:
    """Refuse NaN, infinity and values outside ``[low, high]`` (``(low, high]``).

    Raises:
        ValueError: one line naming ``option``.
    """
    import math

    if value is None:
        return
    if not math.isfinite(value):
        raise ValueError(f"{option} must be a finite number, got {value}")
    if (value <= low if low_open else value < low) or value > high:
        raise ValueError(f"{option} {value:g} is outside the accepted range "
                         f"{'(' if low_open else '['}{low:g}, {high:g}]")


def check_output(path, inputs, overwrite: bool) -> None:
    """Refuse an output that is a directory, an input file, or exists without --overwrite.

    Args:
        path: the file to write.
        inputs: files the command reads (never overwritten, even with ``overwrite``).
        overwrite: whether an existing output may be replaced.

    Raises:
        ValueError: one line naming ``path``.
    """
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a file name")
    if path.exists() and any(path.resolve() == Path(i).resolve() for i in inputs
                             if i is not None):
        raise ValueError(f"{path}: is an input file of this command; choose another output")
    if path.exists() and not overwrite:
        raise ValueError(f"{path}: output file exists; use --overwrite to replace it")


class OneLineGroup(TyperGroup):
    """A typer group whose parse errors are one ``error:`` line (exit 2)."""

    def main(self, args=None, prog_name=None, complete_var=None,  # noqa: D102
             standalone_mode: bool = True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as err:
            err.show()
            sys.exit(err.exit_code)
        except click.ClickException as err:
            message = " ".join(err.format_message().split())
            ctx = getattr(err, "ctx", None)
            where = f"{ctx.command_path}: " if ctx is not None else ""
            fail(f"{where}{message} (see --help)", code=err.exit_code or 2)
        except Abort:
            fail("aborted", code=1)
        sys.exit(rv if isinstance(rv, int) else 0)
