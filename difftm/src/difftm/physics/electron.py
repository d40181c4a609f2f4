"""Relativistic electron wavelength and interaction constant.

CODATA 2018 exact SI constants. For an accelerating voltage ``V`` the relativistic wavelength
is ``lambda = h / sqrt(2 m0 e V (1 + e V / (2 m0 c^2)))`` and the interaction constant (the
phase shift per unit projected potential) is ``sigma_e = 2 pi m e lambda / h^2`` with the
relativistic mass ``m = m0 (1 + e V / (m0 c^2))`` (Kirkland, *Advanced Computing in Electron
Microscopy*, eqs. 2.5 and 5.6).
"""

from __future__ import annotations

import math

PLANCK_H = 6.62607015e-34  # J s
ELECTRON_MASS = 9.1093837015e-31  # kg
ELEMENTARY_CHARGE = 1.602176634e-19  # C
SPEED_OF_LIGHT = 299792458.0  # m / s

#: ``h^2 / (2 pi m0 e)`` in V * A^2: converts an electron scattering factor (A) into the
#: volume integral of the electrostatic potential (V * A^3). About 47.878.
POTENTIAL_PER_SCATTERING_FACTOR = (
    PLANCK_H**2 / (2.0 * math.pi * ELECTRON_MASS * ELEMENTARY_CHARGE) * 1e20
)


def _check_voltage(voltage_kv: float) -> float:
    v = float(voltage_kv)
    if not math.isfinite(v) or v <= 0:
        raise ValueError(f"accelerating voltage must be positive (kV), got {voltage_kv}")
    return v * 1e3


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength.

    Args:
        voltage_kv: accelerating voltage in kV (> 0).

    Returns:
        The wavelength in Angstrom (300 kV -> 0.019687 A).
    """
    v = _check_voltage(voltage_kv)
    energy = ELEMENTARY_CHARGE * v
    rest = ELECTRON_MASS * SPEED_OF_LIGHT**2
    momentum = math.sqrt(2.0 * ELECTRON_MASS * energy * (1.0 + energy / (2.0 * rest)))
    return PLANCK_H / momentum * 1e10


def interaction_constant(voltage_kv: float) -> float:
    """Relativistic interaction constant ``sigma_e``.

    The phase shift of the electron wave is ``sigma_e`` times the projected potential.

    Args:
        voltage_kv: accelerating voltage in kV (> 0).

    Returns:
        ``sigma_e`` in rad / (V * A) (300 kV -> about 6.526e-4).
    """
    v = _check_voltage(voltage_kv)
    wavelength_m = electron_wavelength(voltage_kv) * 1e-10
    gamma = 1.0 + ELEMENTARY_CHARGE * v / (ELECTRON_MASS * SPEED_OF_LIGHT**2)
    mass = gamma * ELECTRON_MASS
    sigma_si = 2.0 * math.pi * mass * ELEMENTARY_CHARGE * wavelength_m / PLANCK_H**2
    return sigma_si * 1e-10  # rad / (V m) -> rad / (V A)
