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
from typer import _click as click  # typer 0.2x vendors its own click
from typer.core import TyperGroup
from typer.exceptions import Abort

P = ParamSpec("P")
R = TypeVar("R")

_console = Console(stderr=True)


class DifftmInputError(ValueError):
    """Bad user input: a missing/corrupt file, an impossible parameter. Message is one line."""


def fail(message: str, code: int = 2) -> None:
    """Print ``error: message`` on stderr and exit with ``code``."""
    _console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    sys.exit(code)


def check_number(option: str, value: float | None, low: float | None = None,
                 high: float | None = None, unit: str = "", low_open: bool = False) -> None:
    """Refuse NaN, infinity and values outside ``[low, high]`` of a numeric option.

    Args:
        option: the option as the user typed it (``--defocus``), named in the message.
        value: the value; None (option not given) passes.
        low, high: plausible bounds (None: unbounded on that side).
        unit: unit for the message.
        low_open: require ``value > low`` instead of ``>=``.

    Raises:
        DifftmInputError: one line naming the option, the value and the accepted range.
    """
    from difftm.physics.limits import Range, check_range

    try:
        check_range(option, value, Range(low, high, unit, low_open=low_open))
    except ValueError as err:
        raise DifftmInputError(str(err)) from None


def check_physical(name: str, value: float | None, option: str | None = None) -> None:
    """Refuse a physical parameter outside its plausible range
    (:data:`difftm.physics.limits.PLAUSIBLE`, the one place the ranges are defined).

    Args:
        name: the parameter (``voltage``, ``cs``, ``defocus``...).
        value: the value; None passes.
        option: the option as the user typed it [``--`` + name].

    Raises:
        DifftmInputError: one line naming the option and the accepted range.
    """
    from difftm.physics.limits import check_plausible

    try:
        check_plausible(name, value, option)
    except ValueError as err:
        raise DifftmInputError(str(err)) from None


def one_line(err: BaseException) -> str:
    """The first line of an exception's message, naming the file where the error has one.

    ``OSError`` from the operating system (disk full, read-only folder, a directory where a
    file is expected) carries the path in ``filename`` and the reason in ``strerror``;
    ``UnicodeDecodeError`` carries neither, so the byte offset is reported (the caller
    names the file when it knows it); ``KeyError`` is a missing entry.
    """
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


#: Exceptions that mean bad input or a bad environment, not a bug: one line, exit 2.
USER_ERRORS = (DifftmInputError, ValueError, OSError, OverflowError, KeyError, RuntimeError,
               AssertionError, EOFError)


def user_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Decorate a CLI command so that input errors become one line and a non-zero exit.

    Besides ``ValueError`` (which includes ``UnicodeDecodeError``) this catches every
    ``OSError`` (missing file, read-only folder, disk full, a directory given as an output
    file), ``OverflowError`` (absurd numbers), ``KeyError`` (a bundle or table missing an
    entry), ``RuntimeError``/``AssertionError`` (torch refusing a device the machine does
    not have) and ``EOFError`` (a truncated compressed file); the line names the file
    where the exception carries it.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as err:
            fail(one_line(err))
        except KeyboardInterrupt:
            fail("interrupted", code=130)
        raise AssertionError("unreachable")

    return wrapper


def usage_line(err: click.ClickException) -> str:
    """One line for a command-line parse error: the command, then click's message."""
    message = " ".join(err.format_message().split())
    ctx = getattr(err, "ctx", None)
    where = f"{ctx.command_path}: " if ctx is not None else ""
    if isinstance(err, click.exceptions.UsageError):
        return f"{where}{message} (see --help)"
    return message


class OneLineGroup(TyperGroup):
    """A typer group whose parse errors (missing argument, bad option value, unknown
    command) are one ``error:`` line and exit 2 instead of a usage block and a panel.

    Asking for nothing (``no_args_is_help``) still prints the help.
    """

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
            fail(usage_line(err), code=err.exit_code or 2)
        except Abort:
            fail("aborted", code=1)
        sys.exit(rv if isinstance(rv, int) else 0)
