"""Plausible ranges of the physical parameters of image formation, in one place.

Every command and reader where a CTF or micrograph parameter enters (``difftm search`` and
its YAML configuration, ``simulate template`` / ``simulate micrograph``, the particle STAR
files read by ``refine``, the CTF of a dataset from RELION or CTFFIND) checks its values
against :data:`PLAUSIBLE` and refuses, in one line naming the option (or file) and the
accepted range, a value outside it. The ranges do not judge what is sensible for a given
experiment: they catch unit mistakes and typos (defocus in metres or micrometres, voltage in
volts, Cs in micrometres, a percentage for a fraction), and they are wide enough for every
real instrument:

* pixel size 0.05-100 A (super-resolution to heavily binned tomography-style images);
* voltage 10-3000 kV (low-voltage instruments to the 3 MV high-voltage microscopes;
  300 V or 0.3 MV typed for 300 kV is refused);
* Cs 0-20 mm (corrected instruments at 0, uncorrected objectives at 1-6 mm; a value in
  micrometres such as 2700 is refused);
* amplitude contrast in [0, 1) (the CTF is undefined at 1);
* defocus -1e5 to 1e5 A, i.e. +-10 um, both for a micrograph and for a particle;
* astigmatism angle and phase shift within +-3600 degrees (ten turns), CTF B-factor
  0-1e4 A^2 (also the extra image B-factor of ``difftm mwlimit``), fluence (0, 1e4] e-/A^2;
* specimen (ice, lamella or cell) thickness 0-5000 nm (``difftm mwlimit --thickness``; a
  value in Angstrom for a 5 um specimen or in micrometres typed as nm is caught at the top).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """An accepted range ``[low, high]`` (ends open where flagged) in ``unit``."""

    low: float | None
    high: float | None
    unit: str = ""
    low_open: bool = False
    high_open: bool = False

    def contains(self, value: float) -> bool:
        """True if ``value`` is finite and within the range."""
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return not (self.high is not None
                    and (value >= self.high if self.high_open else value > self.high))

    def describe(self) -> str:
        """The range as text, e.g. ``[10, 3000] kV`` or ``[0, 1)``."""
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        text = f"{'(' if self.low_open else '['}{lo}, {hi}{')' if self.high_open else ']'}"
        return f"{text} {self.unit}" if self.unit else text


#: Plausible values of each physical parameter (see the module docstring).
PLAUSIBLE: dict[str, Range] = {
    "pixel_size": Range(0.05, 100.0, "A"),
    "voltage": Range(10.0, 3000.0, "kV"),
    "cs": Range(0.0, 20.0, "mm"),
    "amplitude_contrast": Range(0.0, 1.0, high_open=True),
    "defocus": Range(-1e5, 1e5, "A"),
    "astigmatism": Range(-1e5, 1e5, "A"),
    "defocus_spread": Range(0.0, 1e5, "A"),
    "defocus_range": Range(0.0, 1e5, "A"),
    "defocus_step": Range(1.0, 1e5, "A"),
    "defocus_angle": Range(-3600.0, 3600.0, "degrees"),
    "phase_shift": Range(-3600.0, 3600.0, "degrees"),
    "ctf_bfactor": Range(0.0, 1e4, "A^2"),
    "fluence": Range(0.0, 1e4, "e-/A^2", low_open=True),
    "highpass": Range(0.0, 1e6, "A"),
    "lowpass": Range(0.0, 1e6, "A"),
    "thickness": Range(0.0, 5000.0, "nm"),
}

#: Parameters whose range is another parameter's (defocus U and V are defoci).
ALIASES = {"defocus_u": "defocus", "defocus_v": "defocus"}


def plausible_range(name: str) -> Range | None:
    """The range of parameter ``name`` (``defocus_u`` -> the defocus range), or None."""
    return PLAUSIBLE.get(ALIASES.get(name, name))


def check_range(what: str, value: float | None, accepted: Range) -> None:
    """Refuse NaN, infinity and values outside ``accepted``.

    Args:
        what: the option or column as the user knows it (``--voltage``, ``rlnDefocusU``).
        value: the value; None (not given) passes.
        accepted: the accepted range.

    Raises:
        ValueError: one line naming ``what``, the value and the accepted range.
    """
    if value is None:
        return
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be a finite number, got {value}")
    if not accepted.contains(value):
        unit = f" {accepted.unit}" if accepted.unit else ""
        raise ValueError(f"{what} {value:g}{unit} is outside the accepted range "
                         f"{accepted.describe()}")


def check_plausible(name: str, value: float | None, what: str | None = None) -> None:
    """Refuse a physical parameter outside its plausible range (:data:`PLAUSIBLE`).

    Args:
        name: parameter name (a key of :data:`PLAUSIBLE` or :data:`ALIASES`).
        value: the value; None passes.
        what: how the message names it [``--`` + name with dashes].

    Raises:
        KeyError: ``name`` has no range (a programming error).
        ValueError: one line naming ``what`` and the accepted range.
    """
    accepted = plausible_range(name)
    if accepted is None:
        raise KeyError(f"no plausible range for {name!r}")
    check_range(what or "--" + name.replace("_", "-"), value, accepted)
