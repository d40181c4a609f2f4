"""Synthetic inputs shared by the benchmark scripts (imported as a sibling module)."""

from __future__ import annotations

import numpy as np


def blob_volume(box: int, seed: int = 0) -> np.ndarray:
    """A cubic test template: 40 random Gaussian blobs within the central half of the box."""
    rng = np.random.default_rng(seed)
    ax = np.arange(box) - box // 2
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    vol = np.zeros((box,) * 3)
    for _ in range(40):
        p = (rng.random(3) - 0.5) * box * 0.5
        s = rng.random() * box * 0.03 + box * 0.02
        vol += np.exp(-((zz - p[2]) ** 2 + (yy - p[1]) ** 2 + (xx - p[0]) ** 2) / (2 * s * s))
    return vol.astype(np.float32)
