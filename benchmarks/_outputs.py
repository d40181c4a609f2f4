"""Output options shared by the benchmark scripts (imported as a sibling module)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path


def add_output_options(ap: argparse.ArgumentParser, threads: int | None = 1) -> None:
    """``--threads``, ``--json``, ``--figure`` and ``--from-json`` (redraw a saved run)."""
    ap.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    ap.add_argument("--figure", type=Path, default=None, help="write a PNG summary here")
    ap.add_argument("--from-json", type=Path, default=None,
                    help="only draw --figure from a saved --json run")


def redrawn(args: argparse.Namespace, plot: Callable, key: str) -> bool:
    """With ``--from-json``, draw ``--figure`` from the saved run's ``key`` and say so."""
    if args.from_json is None:
        return False
    plot(json.loads(args.from_json.read_text())[key], args.figure)
    return True
