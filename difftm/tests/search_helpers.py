"""Shared builders for search tests: a small blob volume, planted micrographs, configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from difftm.io.mrc import write_mrc


def blob_volume(box: int = 32, n_blobs: int = 300, seed: int = 0) -> np.ndarray:
    """An asymmetric atom-like test object: small Gaussians filling a ball, [z, y, x]."""
    rng = np.random.default_rng(seed)
    c = box // 2
    zz, yy, xx = np.meshgrid(*(np.arange(box) - c,) * 3, indexing="ij")
    vol = np.zeros((box, box, box))
    r_max = box * 0.33
    for _ in range(n_blobs):
        p = rng.standard_normal(3)
        p = p / max(np.linalg.norm(p), 1e-9) * r_max * rng.uniform() ** (1 / 3)
        s = rng.uniform(0.7, 1.0)
        vol += rng.uniform(0.5, 1.5) * np.exp(
            -((zz - p[2]) ** 2 + (yy - p[1]) ** 2 + (xx - p[0]) ** 2) / (2 * s * s))
    return vol.astype(np.float32)


def plant(image: np.ndarray, template: np.ndarray, y: int, x: int, amplitude: float) -> None:
    """Add ``amplitude * template`` (centre at box//2) with its centre at pixel (y, x)."""
    d = template.shape[0]
    c = d // 2
    image[y - c : y - c + d, x - c : x - c + d] += amplitude * template


def write_inputs(
    folder: Path, image: np.ndarray, volume: np.ndarray, px: float
) -> tuple[Path, Path]:
    """Write micrograph and template MRCs; return their paths."""
    mic = folder / "mic.mrc"
    tpl = folder / "tpl.mrc"
    write_mrc(mic, image.astype(np.float32), px, overwrite=True)
    write_mrc(tpl, volume.astype(np.float32), px, overwrite=True)
    return mic, tpl


def white_noise(shape, seed) -> np.ndarray:
    """Unit-variance Gaussian noise."""
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def as_tensor(a) -> torch.Tensor:
    """float32 tensor of ``a``."""
    return torch.as_tensor(np.asarray(a), dtype=torch.float32)
