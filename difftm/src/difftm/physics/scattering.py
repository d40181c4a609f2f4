"""Electron scattering factors of neutral atoms (Peng five-Gaussian parameterisation).

``f_e(s) = sum_{i=1..5} a_i exp(-b_i s^2)`` with ``s = sin(theta) / lambda = |q| / 2`` in 1/A and
``f_e`` in A: Peng, Ren, Dudarev & Whelan (1996) Acta Cryst. A52, 257-276, the fit over
0 < s < 2 A^-1, as tabulated in International Tables for Crystallography Vol. C, Table
4.3.2.2. gemmi (>= 0.6) carries exactly this table as ``gemmi.Element(symbol).c4322``
(e.g. carbon: a = 0.0893 0.2563 0.7570 1.0487 0.3575, b = 0.2465 1.7100 6.4094 18.6113
50.2523, Peng 1996 table 1), so no copy of the numbers lives in this repository. Ionic charges
are ignored (neutral-atom factors). Deuterium uses the hydrogen factors.
"""

from __future__ import annotations

from functools import lru_cache

import gemmi
import numpy as np


@lru_cache(maxsize=256)
def _element_coefficients(symbol: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    element = gemmi.Element(symbol)
    if element.atomic_number == 0:
        raise ValueError(f"unknown element {symbol!r}: no electron scattering factor")
    coef = element.c4322
    return tuple(coef.a), tuple(coef.b)


def peng_coefficients(elements: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Peng (1996) five-Gaussian electron scattering coefficients per atom.

    Args:
        elements: ``(N,)`` element symbols.

    Returns:
        ``(a, b)``, each ``(N, 5)`` float64: ``a`` in A, ``b`` in A^2.
    """
    elements = np.asarray(elements, dtype=str)
    a = np.empty((len(elements), 5), dtype=np.float64)
    b = np.empty((len(elements), 5), dtype=np.float64)
    for symbol in np.unique(elements):
        coef_a, coef_b = _element_coefficients(str(symbol))
        mask = elements == symbol
        a[mask] = coef_a
        b[mask] = coef_b
    return a, b


def scattering_factor(elements: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``f_e(s)`` in A for each element (rows) at ``s = sin(theta)/lambda`` (columns, 1/A)."""
    a, b = peng_coefficients(elements)
    s2 = np.asarray(s, dtype=np.float64).reshape(1, 1, -1) ** 2
    return (a[:, :, None] * np.exp(-b[:, :, None] * s2)).sum(axis=1)
