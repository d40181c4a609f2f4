"""Fourier shell correlation (FSC) and the resolution where it crosses a threshold.

Shells are ``1/D`` cycles per voxel wide: voxel frequency ``|k|`` (cycles/voxel, rfftn
layout) belongs to shell ``round(|k| D)``, shells ``0 .. D//2`` (the Nyquist shell last);
the corners of the cube beyond Nyquist are ignored. Per shell::

    FSC = Re sum F1 conj(F2) / sqrt(sum |F1|^2 sum |F2|^2)

summed over the full spectrum (the rfftn half counted with weight 2 off the x = 0 and
x = D/2 planes, which only matters for the normalisation being exact). The resolution at a
threshold is the frequency where the curve first drops below it, interpolated linearly
between the shells around the crossing (shell 0 excluded); if it never drops, Nyquist.
Noise-only half-maps give FSC ~ N(0, 1/n) with ``n`` the independent voxels of the shell
(half the voxels of the full shell): :func:`fsc_noise_sigma`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["FscCurve", "fourier_shell_correlation", "fsc_noise_sigma", "resolution_at",
           "shell_index"]


@dataclass
class FscCurve:
    """An FSC curve.

    Attributes:
        frequency: ``(S,)`` shell centres in 1/A (``shell / (D * pixel_size)``).
        fsc: ``(S,)`` correlation per shell.
        count: ``(S,)`` voxels of the full spectrum per shell.
        pixel_size: A per voxel.
        box: ``D``.
    """

    frequency: np.ndarray
    fsc: np.ndarray
    count: np.ndarray
    pixel_size: float
    box: int

    def resolution(self, threshold: float = 0.143) -> float:
        """Resolution (A) where the curve first falls below ``threshold``."""
        return resolution_at(self.frequency, self.fsc, threshold)


def shell_index(box: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``(D, D, D//2+1)`` int64 shell of every rfftn voxel (``round(|k| D)``)."""
    k = torch.fft.fftfreq(box, device=device, dtype=torch.float64)
    kx = torch.fft.rfftfreq(box, device=device, dtype=torch.float64)
    r = torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)
    return torch.round(r * box).to(torch.int64)


def _half_weights(box: int, device=None) -> torch.Tensor:
    """Multiplicity of each rfftn column in the full spectrum (1 at x = 0 and Nyquist)."""
    w = torch.full((box // 2 + 1,), 2.0, dtype=torch.float64, device=device)
    w[0] = 1.0
    if box % 2 == 0:
        w[-1] = 1.0
    return w


def fourier_shell_correlation(map1, map2, pixel_size: float) -> FscCurve:
    """FSC of two cubic maps of the same size.

    Args:
        map1, map2: ``(D, D, D)`` arrays or tensors.
        pixel_size: A per voxel (> 0).

    Returns:
        :class:`FscCurve` with ``D // 2 + 1`` shells.
    """
    a = torch.as_tensor(np.asarray(map1), dtype=torch.float64)
    b = torch.as_tensor(np.asarray(map2), dtype=torch.float64)
    if a.shape != b.shape or a.dim() != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"FSC needs two cubes of one size, got {tuple(a.shape)} and "
                         f"{tuple(b.shape)}")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel size must be positive, got {pixel_size}")
    d = a.shape[0]
    fa, fb = torch.fft.rfftn(a), torch.fft.rfftn(b)
    shells = shell_index(d).reshape(-1)
    mult = _half_weights(d).expand(d, d, -1).reshape(-1)
    keep = shells <= d // 2
    s, m = shells[keep], mult[keep]
    n_shells = d // 2 + 1

    def shell_sum(values: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(n_shells, dtype=torch.float64)
        return out.index_add_(0, s, values.reshape(-1)[keep] * m)

    cross = shell_sum((fa * fb.conj()).real)
    pa, pb = shell_sum(fa.abs() ** 2), shell_sum(fb.abs() ** 2)
    denom = torch.sqrt(pa * pb)
    fsc = torch.where(denom > 0, cross / torch.where(denom > 0, denom, 1.0), 0.0)
    count = torch.zeros(n_shells, dtype=torch.float64).index_add_(0, s, m)
    freq = np.arange(n_shells) / (d * pixel_size)
    return FscCurve(frequency=freq, fsc=fsc.numpy(), count=count.numpy(),
                    pixel_size=float(pixel_size), box=int(d))


def resolution_at(frequency: np.ndarray, fsc: np.ndarray, threshold: float = 0.143) -> float:
    """Resolution (A, ``1 / frequency``) where ``fsc`` first drops below ``threshold``.

    Linear interpolation between the last shell at or above and the first below; shell 0 is
    skipped. A curve that never drops gives the last shell (Nyquist); one below at shell 1
    gives the resolution of shell 1.
    """
    f, c = np.asarray(frequency, dtype=float), np.asarray(fsc, dtype=float)
    below = np.nonzero(c[1:] < threshold)[0]
    if len(below) == 0:
        return float(1.0 / f[-1])
    i = int(below[0]) + 1
    if i == 1:
        return float(1.0 / f[1])
    c0, c1 = c[i - 1], c[i]
    t = (c0 - threshold) / (c0 - c1) if c0 != c1 else 0.0
    return float(1.0 / (f[i - 1] + t * (f[i] - f[i - 1])))


def fsc_noise_sigma(count: np.ndarray) -> np.ndarray:
    """Standard deviation of the FSC of independent noise per shell: ``1 / sqrt(count / 2)``
    (the full-spectrum count holds each independent Fourier coefficient twice)."""
    n = np.maximum(np.asarray(count, dtype=float) / 2.0, 1.0)
    return 1.0 / np.sqrt(n)
