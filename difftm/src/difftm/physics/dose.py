"""Radiation-damage (exposure) weighting after Grant & Grigorieff (2015), eLife 4:e06980.

The measured critical exposure at 300 kV, the fluence at which a spatial frequency ``k`` (1/A)
has lost ``1/e`` of its power, is ``Ne(k) = 0.245 k^-1.665 + 2.81`` e-/A^2. Power decays as
``exp(-N / Ne)``, so the amplitude after a fluence ``N`` is ``q(k, N) = exp(-N / (2 Ne))``.

A summed (not dose-weighted) exposure from fluence ``N0`` to ``N0 + F`` carries the average
amplitude (derivation: integrate the exponential, divide by the range)::

    D(k) = (1/F) * integral_{N0}^{N0+F} exp(-N / (2 Ne)) dN
         = (2 Ne / F) * (exp(-N0 / (2 Ne)) - exp(-(N0 + F) / (2 Ne)))

which for ``N0 = 0`` is ``(2 Ne / F) (1 - exp(-F / (2 Ne)))``; ``D -> 1`` as ``k -> 0``
(``Ne -> infinity``) and ``D -> 2 Ne / F`` at high ``k``. The critical exposure was measured at
300 kV; at 200 kV it is multiplied by 0.8 (the voltage scaling used with the same model in
cisTEM/Unblur); other voltages are not calibrated and are refused.
"""

from __future__ import annotations

import torch

CRITICAL_EXPOSURE_A = 0.245
CRITICAL_EXPOSURE_B = -1.665
CRITICAL_EXPOSURE_C = 2.81
_VOLTAGE_SCALING = {300.0: 1.0, 200.0: 0.8}


def _voltage_scale(voltage_kv: float) -> float:
    for kv, scale in _VOLTAGE_SCALING.items():
        if abs(float(voltage_kv) - kv) < 1.0:
            return scale
    raise ValueError(
        f"dose weighting is calibrated at 200 and 300 kV only, got {voltage_kv:g} kV"
    )


def critical_exposure(k: torch.Tensor, voltage_kv: float = 300.0) -> torch.Tensor:
    """Critical exposure ``Ne(k)`` in e-/A^2 (infinite at ``k = 0``).

    Args:
        k: spatial frequency magnitude in 1/A (any shape, >= 0).
        voltage_kv: 300 or 200 kV.

    Returns:
        Tensor like ``k``.
    """
    scale = _voltage_scale(voltage_kv)
    ne = CRITICAL_EXPOSURE_A * torch.pow(k, CRITICAL_EXPOSURE_B) + CRITICAL_EXPOSURE_C
    return ne * scale


def dose_filter(
    k: torch.Tensor,
    fluence: float,
    voltage_kv: float = 300.0,
    pre_exposure: float = 0.0,
) -> torch.Tensor:
    """Average amplitude attenuation over an exposure (see the module docstring).

    Args:
        k: spatial frequency magnitude in 1/A (any shape, >= 0).
        fluence: total fluence ``F`` of the exposure in e-/A^2 (> 0).
        voltage_kv: 300 or 200 kV.
        pre_exposure: fluence ``N0`` received before the exposure starts, e-/A^2.

    Returns:
        Tensor like ``k`` with values in (0, 1]; exactly 1 at ``k = 0``.
    """
    fluence = float(fluence)
    if not fluence > 0:
        raise ValueError(f"fluence must be positive (e-/A^2), got {fluence}")
    if pre_exposure < 0:
        raise ValueError(f"pre-exposure must be >= 0 (e-/A^2), got {pre_exposure}")
    ne2 = 2.0 * critical_exposure(k, voltage_kv)  # inf at k = 0
    x = fluence / ne2  # 0 at k = 0
    # (1 - exp(-x)) / x, stable for small x
    safe = torch.where(x > 0, x, torch.ones_like(x))
    avg = torch.where(x > 1e-12, -torch.expm1(-safe) / safe, 1.0 - 0.5 * x)
    return avg * torch.exp(-float(pre_exposure) / ne2)
