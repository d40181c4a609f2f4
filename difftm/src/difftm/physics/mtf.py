"""Detector modulation transfer function (MTF).

Frequencies are given as a fraction of the detector Nyquist frequency ``f = k * 2 * pixel``
(``f = 1`` at Nyquist). Two kinds of curve:

* :class:`ParametricMtf`: ``MTF(f) = sinc(pi f / 2) * (w exp(-f^2 / (2 s1^2)) +
  (1 - w) exp(-f^2 / (2 s2^2)))``: the pixel-aperture term ``sin(pi f/2)/(pi f/2)`` of an ideal
  counting detector (McMullan et al. 2009, Ultramicroscopy 109:1126) times a two-Gaussian
  charge-spread term. Named curves (parameters fitted here by least squares to the vendors'
  published 300 kV curves, distributed with RELION and Gatan's website; largest deviation from
  the published points up to Nyquist in brackets):

  - ``"k3"``: Gatan K3, standard counting mode, 300 kV, ``w = 0.011, s1 = 0.0345, s2 = 10``
    (0.012);
  - ``"falcon4"``: Thermo Fisher Falcon 4(i) EC, 300 kV, ``w = 0.0298, s1 = 0.1035,
    s2 = 0.5055`` (0.009);
  - ``"ideal"``: the pixel-aperture term alone.

* :class:`TabulatedMtf`: a user curve read from a file, linearly interpolated and held at its
  last value beyond its last frequency. Either a RELION MTF STAR file
  (``_rlnResolutionInversePixel`` in 1/pixel and ``_rlnMtfValue``) or a plain text file
  with two columns, frequency as a fraction of Nyquist and MTF (``#`` comments allowed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch


@dataclass(frozen=True)
class ParametricMtf:
    """Analytic MTF: pixel-aperture sinc times a two-Gaussian spread (see module docs)."""

    weight: float
    sigma_1: float
    sigma_2: float
    name: str = "parametric"

    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        """MTF at ``f`` (fraction of Nyquist, any shape); 1 at ``f = 0``."""
        aperture = torch.sinc(0.5 * f)  # torch.sinc(x) = sin(pi x) / (pi x)
        spread = self.weight * torch.exp(-0.5 * (f / self.sigma_1) ** 2)
        if math.isfinite(self.sigma_2):
            spread = spread + (1.0 - self.weight) * torch.exp(-0.5 * (f / self.sigma_2) ** 2)
        else:
            spread = spread + (1.0 - self.weight)
        return aperture * spread


@dataclass(frozen=True)
class TabulatedMtf:
    """MTF sampled at increasing frequencies (fraction of Nyquist), linearly interpolated."""

    frequencies: tuple[float, ...]
    values: tuple[float, ...]
    name: str = "file"

    def __call__(self, f: torch.Tensor) -> torch.Tensor:
        """MTF at ``f`` (fraction of Nyquist); held constant beyond the table's ends."""
        xp = torch.tensor(self.frequencies, dtype=torch.float64, device=f.device)
        fp = torch.tensor(self.values, dtype=torch.float64, device=f.device)
        x = f.to(torch.float64).clamp(xp[0], xp[-1])
        i = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, len(xp) - 1)
        x0, x1, y0, y1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
        t = (x - x0) / (x1 - x0)
        return (y0 + t * (y1 - y0)).to(f.dtype)


DetectorMtf = ParametricMtf | TabulatedMtf

DETECTORS: dict[str, ParametricMtf] = {
    "k3": ParametricMtf(0.011, 0.0345, 10.0, name="k3"),
    "falcon4": ParametricMtf(0.0298, 0.1035, 0.5055, name="falcon4"),
    "ideal": ParametricMtf(0.0, 1.0, math.inf, name="ideal"),
}


def _read_table(path: Path) -> tuple[np.ndarray, np.ndarray]:
    text = path.read_text(errors="replace")
    if "_rlnMtfValue" in text:
        import starfile

        try:
            table = starfile.read(path, always_dict=True)
            df = next(t for t in table.values() if "rlnMtfValue" in t.columns)
            freq = df["rlnResolutionInversePixel"].to_numpy(dtype=float) * 2.0
            vals = df["rlnMtfValue"].to_numpy(dtype=float)
        except (StopIteration, KeyError, ValueError, AttributeError) as err:
            raise ValueError(f"{path}: not a RELION MTF STAR file ({err})") from None
        return freq, vals
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.replace(",", " ").split()
        try:
            rows.append((float(parts[0]), float(parts[1])))
        except (ValueError, IndexError):
            raise ValueError(
                f"{path}: line {number} is not two numbers (frequency/Nyquist, MTF)"
            ) from None
    if not rows:
        raise ValueError(f"{path}: no MTF values (expected two columns: frequency/Nyquist, MTF)")
    arr = np.asarray(rows, dtype=float)
    return arr[:, 0], arr[:, 1]


def read_mtf_file(path: str | Path) -> TabulatedMtf:
    """Read a user MTF curve (RELION STAR or two-column text; see module docs).

    Raises:
        FileNotFoundError: missing file.
        ValueError: one line naming the file when the table is malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such MTF file")
    freq, vals = _read_table(path)
    if len(freq) < 2:
        raise ValueError(f"{path}: an MTF curve needs at least two points")
    if not (np.all(np.isfinite(freq)) and np.all(np.isfinite(vals))):
        raise ValueError(f"{path}: MTF table has non-finite values")
    if freq[0] < 0 or np.any(np.diff(freq) <= 0):
        raise ValueError(f"{path}: MTF frequencies must be >= 0 and strictly increasing")
    if vals.min() < 0 or vals.max() > 1.5:
        raise ValueError(f"{path}: MTF values must lie in [0, 1.5]")
    return TabulatedMtf(tuple(freq.tolist()), tuple(vals.tolist()), name=path.name)


def get_mtf(spec: str | Path | DetectorMtf | None) -> DetectorMtf | None:
    """Resolve an MTF specification.

    Args:
        spec: ``None`` or ``"none"`` (no MTF), a detector name (``"k3"``, ``"falcon4"``,
            ``"ideal"``), a path to an MTF file, or an MTF object (returned as is).

    Returns:
        A callable ``MTF(f)`` with ``f`` the fraction of Nyquist, or ``None``.
    """
    if spec is None or isinstance(spec, ParametricMtf | TabulatedMtf):
        return spec
    key = str(spec).strip().lower()
    if key in ("none", ""):
        return None
    if key in DETECTORS:
        return DETECTORS[key]
    path = Path(spec)
    if not path.exists():
        names = ", ".join(sorted(DETECTORS))
        raise ValueError(f"unknown MTF {spec!r}: use none, {names} or an MTF file path")
    return read_mtf_file(path)


def mtf_at_frequencies(
    mtf: DetectorMtf, k: torch.Tensor, pixel_size: float
) -> torch.Tensor:
    """Evaluate ``mtf`` at frequencies ``k`` (1/A) for detector pixels of ``pixel_size`` A."""
    return mtf(k * (2.0 * float(pixel_size)))
