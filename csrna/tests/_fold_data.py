"""Location of the shared test data for the CS-Fold tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(os.environ.get("DIFFTM_SHARED_DATA",
                           Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))
CS2BPS = DATA / "rna" / "cs2bps"
needs_data = pytest.mark.skipif(not (CS2BPS / "ss_table_0.txt").is_file(),
                                reason=f"shared CS-Fold data absent: {CS2BPS}")
