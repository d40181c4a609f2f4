"""Electron wavelength and interaction constant against textbook values."""

import math

import pytest

from difftm.physics.electron import (
    POTENTIAL_PER_SCATTERING_FACTOR,
    electron_wavelength,
    interaction_constant,
)


def test_wavelength_300kv():
    assert electron_wavelength(300) == pytest.approx(0.019687, abs=1e-6)


@pytest.mark.parametrize(("kv", "expected"), [(100, 0.037014), (200, 0.025079)])
def test_wavelength_other_voltages(kv, expected):
    # Kirkland, Advanced Computing in Electron Microscopy, table 2.2.
    assert electron_wavelength(kv) == pytest.approx(expected, abs=1e-6)


def test_interaction_constant_matches_closed_form():
    # sigma = 2 pi / (lambda V) * (m0 c^2 + eV) / (2 m0 c^2 + eV), m0 c^2 = 510.99895 keV
    for kv in (100.0, 200.0, 300.0):
        rest = 510.99895
        expected = 2 * math.pi / (electron_wavelength(kv) * kv * 1e3) * (rest + kv) / (
            2 * rest + kv
        )
        assert interaction_constant(kv) == pytest.approx(expected, rel=1e-6)
    assert interaction_constant(300) == pytest.approx(6.526e-4, rel=1e-3)


def test_potential_constant():
    assert POTENTIAL_PER_SCATTERING_FACTOR == pytest.approx(47.878, abs=1e-3)


@pytest.mark.parametrize("bad", [0, -300, float("nan")])
def test_bad_voltage(bad):
    with pytest.raises(ValueError, match="voltage"):
        electron_wavelength(bad)
