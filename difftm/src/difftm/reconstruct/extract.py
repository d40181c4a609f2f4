"""Particle extraction from micrographs with sub-pixel centring (Fourier phase ramp).

A particle centred at the (generally fractional) micrograph pixel ``(x, y)`` is cut out as a
``D x D`` box around the nearest pixel ``(round(x), round(y))`` -- box pixel ``D // 2`` is that
pixel -- from the micrograph normalised to zero mean and unit standard deviation (pixels
outside the micrograph read as 0, the mean). The remaining fraction ``f = (x, y) - round``
(each in [-0.5, 0.5]) is removed after zero-padding the box to ``N`` and taking its ``rfft2``:
multiplying by ``exp(+2 pi i (kx fx + ky fy))`` moves the particle centre onto pixel
``(N//2, N//2)`` exactly (a band-limited shift; the box's periodic wrap is into the zero
padding). Positions follow difftm's convention: pixel of the particle centre, ``x`` = column,
``y`` = row, counted from 0 (RELION STAR: ``rlnCoordinateX - rlnOriginXAngst / pixel size``).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from difftm.fourier.padding import pad_to

__all__ = ["extract_boxes", "normalise_micrograph", "particle_spectra", "split_centres"]


def normalise_micrograph(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(image - mean) / std`` in float64 (a constant image gives zeros)."""
    img = torch.as_tensor(np.asarray(image), dtype=torch.float64)
    if img.dim() != 2:
        raise ValueError(f"a micrograph must be a 2D image, got shape {tuple(img.shape)}")
    sd = float(img.std())
    centred = img - img.mean()
    return centred / sd if sd > 0 else centred


def split_centres(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest pixels (int64 ``(n, 2)``) and the fractions ``xy - nearest`` in [-0.5, 0.5]."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if not np.all(np.isfinite(xy)):
        raise ValueError("particle coordinates must be finite")
    nearest = np.floor(xy + 0.5)
    return nearest.astype(np.int64), xy - nearest


def extract_boxes(micrograph: torch.Tensor, pixels: np.ndarray, box: int) -> torch.Tensor:
    """Cut ``(n, box, box)`` boxes whose pixel ``box // 2`` is each ``pixels[i]`` = (x, y).

    Args:
        micrograph: ``(H, W)`` normalised micrograph (:func:`normalise_micrograph`).
        pixels: ``(n, 2)`` integer centres (x = column, y = row).
        box: edge of the boxes.

    Returns:
        float64 ``(n, box, box)``; pixels beyond the micrograph are 0.
    """
    h, w = micrograph.shape
    half = box // 2
    pad = box
    padded = torch.nn.functional.pad(micrograph[None, None], (pad, pad, pad, pad))[0, 0]
    out = torch.empty((len(pixels), box, box), dtype=micrograph.dtype)
    for i, (x, y) in enumerate(np.asarray(pixels, dtype=np.int64)):
        x0, y0 = int(x) - half + pad, int(y) - half + pad
        if x0 < 0 or y0 < 0 or x0 + box > w + 2 * pad or y0 + box > h + 2 * pad:
            raise ValueError(f"particle centre ({x}, {y}) is more than a box outside the "
                             f"{w} x {h} micrograph")
        out[i] = padded[y0 : y0 + box, x0 : x0 + box]
    return out


def particle_spectra(boxes: torch.Tensor, fractions: np.ndarray, size: int) -> torch.Tensor:
    """``rfft2`` of boxes zero-padded to ``size``, shifted by ``-fractions`` (sub-pixel).

    Args:
        boxes: ``(n, D, D)`` particle boxes (centre pixel ``D // 2``).
        fractions: ``(n, 2)`` (fx, fy): the particle centre sits at ``D//2 + f`` in the box.
        size: ``N >= D``, edge after zero-padding.

    Returns:
        complex128 ``(n, N, N//2+1)``: spectra of images whose particle centre is pixel
        ``(N//2, N//2)``.
    """
    padded = pad_to(boxes.to(torch.float64), (size, size))
    spec = torch.fft.rfft2(padded)
    f = torch.as_tensor(np.asarray(fractions, dtype=np.float64).reshape(-1, 2))
    ky = torch.fft.fftfreq(size, dtype=torch.float64)
    kx = torch.fft.rfftfreq(size, dtype=torch.float64)
    ramp = torch.exp(2j * math.pi * (kx[None, None, :] * f[:, 0, None, None]
                                     + ky[None, :, None] * f[:, 1, None, None]))
    return spec * ramp
