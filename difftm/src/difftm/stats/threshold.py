"""Detection thresholds for 2D template matching under a Gaussian noise model.

Under noise, each of the ``n_pixels * n_search`` cross-correlation values (pixels times searched
orientations/defocus planes) is modelled as an independent unit Gaussian. The threshold that
gives ``n_false_positives`` expected exceedances (union bound) is

    t = sqrt(2) * erfcinv(2 * n_fp / (n_pixels * n_search))

which equals ``-ndtri(n_fp / (n_pixels * n_search))``; we evaluate the latter because scipy's
``ndtri`` keeps full relative precision for arguments down to the smallest float64 (1e-308), far
below the ~1e-15 that real searches need.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import ndtr, ndtri


def _check_counts(n_pixels: float, n_search: float) -> None:
    if not (math.isfinite(n_pixels) and n_pixels >= 1):
        raise ValueError(f"n_pixels must be a finite number >= 1, got {n_pixels}")
    if not (math.isfinite(n_search) and n_search >= 1):
        raise ValueError(f"n_search must be a finite number >= 1, got {n_search}")


def erfc_threshold(n_pixels: float, n_search: float, n_false_positives: float = 1.0) -> float:
    """Score threshold giving ``n_false_positives`` expected noise detections per image.

    Args:
        n_pixels: number of searched pixels N_pix (e.g. ``ny * nx`` of the scored area).
        n_search: number of search positions per pixel (orientations x defocus planes
            x pixel sizes).
        n_false_positives: expected number of noise values above the threshold (> 0 and
            < ``n_pixels * n_search``).

    Returns:
        The threshold t in noise-sigma units (2DTM SNR / z-score units), float.

    Raises:
        ValueError: on non-positive or non-finite counts.
    """
    _check_counts(n_pixels, n_search)
    total = float(n_pixels) * float(n_search)
    if not (math.isfinite(n_false_positives) and 0 < n_false_positives < total):
        raise ValueError(
            f"n_false_positives must be in (0, n_pixels*n_search={total:g}), "
            f"got {n_false_positives}"
        )
    tail = float(n_false_positives) / total
    return float(-ndtri(tail))


def expected_false_positives(
    threshold: float | np.ndarray, n_pixels: float, n_search: float
) -> float | np.ndarray:
    """Expected number of noise values above ``threshold`` (inverse of :func:`erfc_threshold`).

    ``n_pixels * n_search * 0.5 * erfc(t / sqrt(2))``, the union-bound count used to define the
    threshold; it equals ``n_fp`` at ``t = erfc_threshold(n_pixels, n_search, n_fp)``.

    Args:
        threshold: score threshold(s) in noise-sigma units (scalar or array).
        n_pixels: number of searched pixels.
        n_search: number of search positions per pixel.

    Returns:
        Expected count(s), float or float64 array shaped like ``threshold``.
    """
    _check_counts(n_pixels, n_search)
    t = np.asarray(threshold, dtype=np.float64)
    out = float(n_pixels) * float(n_search) * ndtr(-t)
    return float(out) if out.ndim == 0 else out
