"""How both suites check a failed command and a hang (one copy for difftm and csrna)."""

from __future__ import annotations

import signal

import pytest


class Hang(BaseException):
    """Raised by the alarm when a case runs longer than its budget (a hang)."""


def no_hang_fixture(seconds: int):
    """An autouse fixture failing any test of the module that runs longer than ``seconds``."""

    @pytest.fixture(autouse=True)
    def no_hang():
        def _alarm(signum, frame):
            raise Hang(f"case ran longer than {seconds} s")

        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(seconds)
        try:
            yield
        finally:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)

    return no_hang


def error_line(result, exit_code: int | None = None) -> str:
    """The single ``error:`` line of a failed typer ``result``: non-zero exit (``exit_code``
    when given), a clean SystemExit, no traceback, exactly one ``error:`` line."""
    text = result.output
    assert result.exit_code != 0, f"succeeded on bad input:\n{text}"
    assert isinstance(result.exception, SystemExit), (
        f"escaped exception {type(result.exception).__name__}: {result.exception}\n{text}")
    assert "Traceback" not in text, text
    if exit_code is not None:
        assert result.exit_code == exit_code, (
            f"exit code {result.exit_code}, expected {exit_code}:\n{text}")
    errors = [line for line in text.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, f"expected one 'error:' line:\n{text}"
    return errors[0]


def check_one_line_error(result, expect: str | tuple[str, ...],
                         exit_code: int | None = None) -> None:
    """:func:`error_line`, which must name ``expect`` (every part of a tuple)."""
    line = error_line(result, exit_code)
    for part in (expect,) if isinstance(expect, str) else expect:
        assert part.lower() in line.lower(), f"{part!r} not named in: {line}"
