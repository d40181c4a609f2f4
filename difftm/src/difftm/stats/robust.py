"""Robust location and scale: the median and 1.4826 x the median absolute deviation (the
standard deviation for Gaussian data, insensitive to a minority of outliers such as
particles or contamination)."""

from __future__ import annotations

import numpy as np


def median_sigma(values: np.ndarray) -> tuple[float, float]:
    """``(median, 1.4826 * MAD)`` of ``values`` (any shape, flattened)."""
    v = np.asarray(values, dtype=np.float64)
    med = float(np.median(v))
    return med, 1.4826 * float(np.median(np.abs(v - med)))
