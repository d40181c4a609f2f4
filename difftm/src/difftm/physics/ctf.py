"""Contrast transfer function (CTF) of the electron microscope, in PyTorch.

Convention (CTFFIND/RELION; defocus positive = underfocus)::

    chi(k)  = pi * lambda * df(theta) * k^2 - pi / 2 * Cs * lambda^3 * k^4 + phase_shift
    CTF(k)  = -(sqrt(1 - A^2) * sin(chi) + A * cos(chi)) * exp(-B * k^2 / 4)
    df(theta) = (df_u + df_v) / 2 + (df_u - df_v) / 2 * cos(2 (theta - angle))

with ``k`` the spatial frequency in 1/A, ``theta`` its direction measured from the x axis
towards y, ``A`` the amplitude contrast fraction and ``B`` an envelope B-factor (A^2).
``df_u`` is the defocus along the direction ``angle``; ``df_v`` perpendicular to it.
All functions are differentiable in the defocus values, the astigmatism angle, the phase
shift and the B-factor when these are given as tensors.
"""

from __future__ import annotations

import math

import torch

from difftm.fourier.frequencies import frequency_grid_2d
from difftm.physics.electron import electron_wavelength

Scalar = float | torch.Tensor


def _as_tensor(value: Scalar, device, dtype) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value.to(device=device, dtype=dtype)
    return torch.tensor(float(value), device=device, dtype=dtype)


def ctf_from_frequencies(
    ky: torch.Tensor,
    kx: torch.Tensor,
    defocus_u: Scalar,
    defocus_v: Scalar,
    defocus_angle: Scalar,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
    phase_shift_deg: Scalar = 0.0,
    b_factor: Scalar = 0.0,
) -> torch.Tensor:
    """Evaluate the CTF at arbitrary spatial frequencies.

    Args:
        ky, kx: spatial frequencies in 1/A, same shape ``S`` (e.g. a 2D grid or a 1D line).
        defocus_u, defocus_v: defoci in A (positive = underfocus), floats or tensors of any
            batch shape ``Bt`` (broadcast together).
        defocus_angle: direction of ``defocus_u`` in degrees from x towards y (float/tensor).
        voltage_kv: accelerating voltage in kV.
        cs_mm: spherical aberration in mm.
        amplitude_contrast: amplitude contrast fraction in [0, 1).
        phase_shift_deg: extra phase shift (phase plate) in degrees (float/tensor).
        b_factor: envelope B-factor in A^2; multiplies by ``exp(-B k^2 / 4)``.

    Returns:
        Tensor of shape ``Bt + S`` (real, dtype and device of ``kx``).
    """
    if not 0.0 <= amplitude_contrast < 1.0:
        raise ValueError(f"amplitude contrast must be in [0, 1), got {amplitude_contrast}")
    if cs_mm < 0:
        raise ValueError(f"spherical aberration must be >= 0 mm, got {cs_mm}")
    device, dtype = kx.device, kx.dtype
    lam = electron_wavelength(voltage_kv)
    cs = float(cs_mm) * 1e7  # mm -> A

    params = [
        _as_tensor(v, device, dtype)
        for v in (defocus_u, defocus_v, defocus_angle, phase_shift_deg, b_factor)
    ]
    batch_shape = torch.broadcast_shapes(*(p.shape for p in params))
    grid_ndim = kx.dim()
    du, dv, ang, ps, bf = (
        p.expand(batch_shape).reshape(batch_shape + (1,) * grid_ndim) for p in params
    )

    k2 = kx * kx + ky * ky
    safe = torch.where(k2 > 0, k2, torch.ones_like(k2))
    cos2t = torch.where(k2 > 0, (kx * kx - ky * ky) / safe, torch.zeros_like(k2))
    sin2t = torch.where(k2 > 0, 2.0 * kx * ky / safe, torch.zeros_like(k2))
    two_a = torch.deg2rad(ang) * 2.0
    cos_rel = cos2t * torch.cos(two_a) + sin2t * torch.sin(two_a)  # cos(2 (theta - angle))
    df = 0.5 * (du + dv) + 0.5 * (du - dv) * cos_rel

    chi = (
        math.pi * lam * df * k2
        - 0.5 * math.pi * cs * lam**3 * k2 * k2
        + torch.deg2rad(ps)
    )
    w_amp = float(amplitude_contrast)
    w_phase = math.sqrt(1.0 - w_amp * w_amp)
    ctf = -(w_phase * torch.sin(chi) + w_amp * torch.cos(chi))
    return ctf * torch.exp(-0.25 * bf * k2)


def delocalisation_distance(
    defocus: float, voltage_kv: float, cs_mm: float, k_max: float
) -> float:
    """How far (A) the CTF moves signal of frequencies up to ``k_max`` (1/A) from its origin.

    The point-spread function of the CTF at frequency ``k`` is displaced by the gradient of
    the phase, ``d chi / (2 pi dk) = lambda * df * k - Cs * lambda^3 * k^3`` (A); its largest
    magnitude over ``[0, k_max]`` is bounded by ``lambda |df| k_max + Cs lambda^3 k_max^3``,
    the bound used here (``Cs`` in A). At 300 kV, 15,000 A and Nyquist of 1 A/px this is
    ~174 A: a template filtered by such a CTF needs that margin on every side of its box.

    Args:
        defocus: the largest defocus magnitude in A (positive or negative).
        voltage_kv: accelerating voltage in kV.
        cs_mm: spherical aberration in mm.
        k_max: highest spatial frequency carried, 1/A (e.g. Nyquist ``0.5 / pixel_size`` or
            the low-pass limit).

    Returns:
        Distance in Angstrom (>= 0).
    """
    lam = electron_wavelength(voltage_kv)
    k = abs(float(k_max))
    return lam * abs(float(defocus)) * k + abs(float(cs_mm)) * 1e7 * lam**3 * k**3


def ctf_2d(
    shape: tuple[int, int],
    pixel_size: float,
    defocus_u: Scalar,
    defocus_v: Scalar,
    defocus_angle: Scalar,
    voltage_kv: float,
    cs_mm: float,
    amplitude_contrast: float,
    phase_shift_deg: Scalar = 0.0,
    b_factor: Scalar = 0.0,
    rfft: bool = True,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """CTF on the 2D Fourier grid of an image, in unshifted FFT order.

    Args:
        shape: image shape ``(H, W)`` in pixels.
        pixel_size: pixel size in A.
        defocus_u, defocus_v: defoci in A (positive = underfocus); floats or tensors of
            shape ``(B,)`` (or any broadcastable batch shape); differentiable.
        defocus_angle: astigmatism angle in degrees (from x towards y).
        voltage_kv: accelerating voltage in kV.
        cs_mm: spherical aberration in mm.
        amplitude_contrast: amplitude contrast fraction (e.g. 0.07).
        phase_shift_deg: additional phase shift in degrees (phase plate).
        b_factor: envelope B-factor in A^2 (``exp(-B k^2 / 4)``).
        rfft: half-spectrum layout ``(H, W//2+1)`` of ``torch.fft.rfft2`` if True, else the
            full ``(H, W)`` layout of ``fft2``.
        device, dtype: of the output (tensor inputs are moved there).

    Returns:
        ``(H, W//2+1)`` (or ``(H, W)``) for scalar parameters, ``(B, H, W//2+1)`` for
        batched ones.
    """
    if device is None:
        for v in (defocus_u, defocus_v, defocus_angle, phase_shift_deg, b_factor):
            if isinstance(v, torch.Tensor):
                device = v.device
                break
    ky, kx = frequency_grid_2d(shape, pixel_size, rfft=rfft, device=device, dtype=dtype)
    return ctf_from_frequencies(
        ky, kx, defocus_u, defocus_v, defocus_angle, voltage_kv, cs_mm,
        amplitude_contrast, phase_shift_deg, b_factor,
    )
