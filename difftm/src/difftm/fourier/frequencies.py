"""Spatial-frequency grids matching ``torch.fft`` layouts.

All frequencies are in 1/Angstrom. Arrays are indexed [y, x] (2D) or [z, y, x] (3D); the
zero frequency sits at index 0 (unshifted FFT order). With ``rfft=True`` the last axis has
``n // 2 + 1`` non-negative frequencies, as returned by ``torch.fft.rfftn``.
"""

from __future__ import annotations

import torch


def _axis_freqs(
    n: int, pixel_size: float, last: bool, rfft: bool, device, dtype
) -> torch.Tensor:
    if last and rfft:
        return torch.fft.rfftfreq(n, d=pixel_size, device=device, dtype=dtype)
    return torch.fft.fftfreq(n, d=pixel_size, device=device, dtype=dtype)


def frequency_grid_2d(
    shape: tuple[int, int],
    pixel_size: float,
    rfft: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(ky, kx)``, each of shape ``(h, w//2+1)`` (rfft) or ``(h, w)``, in 1/A.

    Args:
        shape: image shape ``(h, w)`` in pixels.
        pixel_size: pixel size in Angstrom (> 0).
        rfft: half-spectrum layout of ``torch.fft.rfft2`` if True, else full ``fft2``.
        device, dtype: of the returned tensors.
    """
    if pixel_size <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size}")
    h, w = shape
    ky = _axis_freqs(h, pixel_size, False, rfft, device, dtype)
    kx = _axis_freqs(w, pixel_size, True, rfft, device, dtype)
    return torch.meshgrid(ky, kx, indexing="ij")


def frequency_grid_3d(
    shape: tuple[int, int, int],
    pixel_size: float,
    rfft: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return ``(kz, ky, kx)`` for a volume of ``shape`` ``(d, h, w)``, in 1/A (see 2D)."""
    if pixel_size <= 0:
        raise ValueError(f"pixel size must be positive, got {pixel_size}")
    d, h, w = shape
    kz = _axis_freqs(d, pixel_size, False, rfft, device, dtype)
    ky = _axis_freqs(h, pixel_size, False, rfft, device, dtype)
    kx = _axis_freqs(w, pixel_size, True, rfft, device, dtype)
    return torch.meshgrid(kz, ky, kx, indexing="ij")


def radial_frequency_2d(
    shape: tuple[int, int],
    pixel_size: float,
    rfft: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Return ``|k|`` in 1/A on the 2D grid of :func:`frequency_grid_2d`."""
    ky, kx = frequency_grid_2d(shape, pixel_size, rfft, device, dtype)
    return torch.sqrt(ky * ky + kx * kx)


def radial_frequency_3d(
    shape: tuple[int, int, int],
    pixel_size: float,
    rfft: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Return ``|k|`` in 1/A on the 3D grid of :func:`frequency_grid_3d`."""
    kz, ky, kx = frequency_grid_3d(shape, pixel_size, rfft, device, dtype)
    return torch.sqrt(kz * kz + ky * ky + kx * kx)
