"""Progress of long commands: a live bar on a terminal, periodic plain lines elsewhere.

A rich progress bar redraws one line in place; when the output is a file (a batch job, a
SLURM log, ``| tee``) it shows nothing until the end. :func:`progress_reporter` therefore
returns a :class:`PlainProgress` there, which prints a line such as::

    search 12.5% 3,400 orient/s ETA 0:05:12

every ``interval`` seconds (30 by default) or every ``fraction_step`` of the work (5%),
whichever comes first, and a last line at 100%. Both reporters have the same methods
(:class:`ProgressReporter`). Rate and ETA count from the first report (or ``begin``), so a
resumed search shows the rate of this session, not of work done before.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import IO, Protocol

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

__all__ = ["PlainProgress", "ProgressReporter", "TerminalProgress", "format_eta",
           "progress_reporter"]


class ProgressReporter(Protocol):
    """What commands call: ``update(done)`` after each step, ``close()`` at the end;
    ``begin(done)`` to start the clock before the first step and ``set_total`` when the
    amount of work becomes known late."""

    def begin(self, done: int = 0) -> None:
        """Start the clock now, with ``done`` units already finished."""

    def set_total(self, total: int) -> None:
        """Change the total amount of work."""

    def update(self, done: int) -> None:
        """Report that ``done`` of the total units are finished (absolute count)."""

    def close(self) -> None:
        """Finish the display."""


def format_eta(seconds: float) -> str:
    """``H:MM:SS`` for a number of seconds (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _format_rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.3g}"


class PlainProgress:
    """Periodic one-line progress reports for output that is not a terminal.

    Args:
        label: first word of every line (e.g. ``search``).
        total: units of work (e.g. search positions).
        unit: rate unit printed after the rate (e.g. ``orient/s``).
        per_unit: work units per rate unit (e.g. defocus planes per orientation): the rate
            printed is ``units per second / per_unit``.
        interval: seconds between lines at most.
        fraction_step: a line whenever the finished fraction grew by this much.
        stream: where lines go (default: the stream ``console`` writes to, or stderr).
        clock: monotonic seconds (tests pass a fake clock).
    """

    def __init__(
        self,
        label: str,
        total: int,
        unit: str = "/s",
        per_unit: float = 1.0,
        interval: float = 30.0,
        fraction_step: float = 0.05,
        stream: IO[str] | Callable[[], IO[str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or not 0 < fraction_step <= 1:
            raise ValueError("interval must be > 0 and fraction_step in (0, 1]")
        self.label, self.total, self.unit = label, max(int(total), 1), unit
        self.per_unit = per_unit
        self.interval, self.fraction_step = float(interval), float(fraction_step)
        self._stream = stream
        self._clock = clock
        self._start: tuple[float, int] | None = None  # (time, done) of the first update
        self._last: tuple[float, float] | None = None  # (time, fraction) of the last line
        self._finished = False

    def _write(self, line: str) -> None:
        import sys

        stream = self._stream() if callable(self._stream) else self._stream
        stream = stream or sys.stderr
        stream.write(line + "\n")
        stream.flush()

    def line(self, done: int, now: float) -> str:
        """The progress line for ``done`` units at time ``now``."""
        assert self._start is not None
        t0, d0 = self._start
        frac = min(done / self.total, 1.0)
        elapsed = now - t0
        rate = (done - d0) / elapsed if elapsed > 0 and done > d0 else float("nan")
        eta = (self.total - done) / rate if rate == rate and rate > 0 else float("nan")
        rate_text = (f"{_format_rate(rate / self.per_unit)} {self.unit}" if rate == rate
                     else f"- {self.unit}")
        return f"{self.label} {100 * frac:.1f}% {rate_text} ETA {format_eta(eta)}"

    def begin(self, done: int = 0) -> None:
        """Start the clock now (otherwise the first :meth:`update` does)."""
        now = self._clock()
        self._start = (now, done)
        self._last = (now, done / self.total)

    def set_total(self, total: int) -> None:
        """Change the total amount of work."""
        self.total = max(int(total), 1)

    def update(self, done: int) -> None:
        """Record progress; print a line when the interval or the fraction step has passed."""
        now = self._clock()
        if self._start is None:  # the first report sets the origin of rate and ETA
            self.begin(done)
            return
        last_t, last_frac = self._last  # type: ignore[misc]
        frac = done / self.total
        if done >= self.total:
            if not self._finished:
                self._finished = True
                self._write(self.line(done, now))
            return
        if now - last_t >= self.interval or frac - last_frac >= self.fraction_step - 1e-12:
            self._last = (now, frac)
            self._write(self.line(done, now))

    def close(self) -> None:
        """Nothing to tear down (the last line is printed at 100%)."""


class TerminalProgress:
    """A rich progress bar (started on the first update, so input errors print first)."""

    def __init__(self, console: Console, label: str, total: int, unit: str = "/s",
                 per_unit: float = 1.0, transient: bool = False) -> None:
        self._bar = Progress(
            TextColumn(f"[bold]{label}"), BarColumn(), TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("left"),
            TimeRemainingColumn(), console=console, transient=transient,
        )
        self._task = self._bar.add_task(label, total=max(int(total), 1), rate="")
        self._unit, self._per_unit = unit, per_unit
        self._start: tuple[float, int] | None = None

    def begin(self, done: int = 0) -> None:
        """Start the clock and show the bar."""
        self._start = (time.monotonic(), done)
        self._bar.start()

    def set_total(self, total: int) -> None:
        """Change the total amount of work."""
        self._bar.update(self._task, total=max(int(total), 1))

    def update(self, done: int) -> None:
        """Move the bar to ``done``."""
        if self._start is None:
            self.begin(done)
        now = time.monotonic()
        t0, d0 = self._start
        rate = ""
        if now > t0 and done > d0:
            rate = f"{_format_rate((done - d0) / (now - t0) / self._per_unit)} {self._unit}"
        self._bar.update(self._task, completed=done, rate=rate)

    def close(self) -> None:
        """Stop the live display."""
        if self._bar.live.is_started:
            self._bar.stop()


def progress_reporter(
    console: Console,
    label: str,
    total: int,
    unit: str = "/s",
    per_unit: float = 1.0,
    transient: bool = False,
    interval: float = 30.0,
    fraction_step: float = 0.05,
) -> ProgressReporter:
    """A :class:`TerminalProgress` when ``console`` is a terminal, else :class:`PlainProgress`
    writing to the console's stream (see the module docstring)."""
    if console.is_terminal:
        return TerminalProgress(console, label, total, unit, per_unit, transient)
    return PlainProgress(label, total, unit, per_unit, interval, fraction_step,
                         stream=lambda: console.file)
