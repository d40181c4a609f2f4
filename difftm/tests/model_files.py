"""Locate the shared real atomic models (never copied into the repository)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def shared_data_dir() -> Path:
    """``$DIFFTM_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("DIFFTM_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def model_path(name: str) -> Path:
    """Path of ``pdb/<name>`` in the shared data, or skip the test with the reason."""
    path = shared_data_dir() / "pdb" / name
    if not path.is_file():
        pytest.skip(f"shared test model {path} not available (set DIFFTM_SHARED_DATA)")
    return path
