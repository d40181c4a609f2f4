"""The molecular-weight limit of 2DTM: smallest detectable and alignable masses.

* Detection: the expected SNR of :mod:`difftm.theory.snr` meets the search's threshold for
  ``n_fp`` expected false positives per image, ``t = sqrt(2) erfcinv(2 n_fp / (N_pix N_search))``
  (:func:`difftm.stats.threshold.erfc_threshold`, the rule of ``difftm peaks``).
* Alignment: with the signal up to the target resolution ``d`` (optionally from a high-pass
  ``1/align_highpass`` on), (a) the SNR reaches the same threshold, so that the particle's
  position and orientation are found rather than a noise peak, and (b) the Cramer-Rao
  standard deviation of an angle meets the accuracy a reconstruction at ``d`` needs,
  ``dtheta = kappa * d / D`` (radians; ``D`` the particle diameter: a rotation error
  ``dtheta`` moves the particle's edge by ``dtheta D / 2``; ``kappa = 1`` allows half a
  resolution element there). Condition (a) is the binding one in practice.

docs/THEORY.md derives both and the published parameter sets of :data:`PUBLISHED`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from difftm.physics.potential import VOLUME_PER_DALTON
from difftm.stats.threshold import erfc_threshold
from difftm.theory.snr import ImagingParameters, SnrCalculator

#: Orientations of the default uniform C1 grid (2.5 deg out of plane, 1.5 deg in plane).
DEFAULT_ORIENTATIONS = 1_584_480
#: Mass range searched for the limits, Da.
MASS_RANGE = (500.0, 1e9)


@dataclass(frozen=True)
class SearchSpace:
    """What the detection threshold depends on (defaults: a 4096^2 image, the default grid,
    13 defocus planes, one false positive per image: t = 7.81, SCIENCE.md section 1)."""

    image_pixels: float = 4096.0 * 4096.0
    orientations: float = DEFAULT_ORIENTATIONS
    defocus_planes: int = 13
    false_positives: float = 1.0

    def threshold(self) -> float:
        """Detection threshold in SNR units."""
        return erfc_threshold(self.image_pixels, self.orientations * self.defocus_planes,
                              self.false_positives)


def particle_diameter(mass_da: float) -> float:
    """Diameter (A) of a sphere of the protein's volume (1.229 A^3 per Dalton)."""
    return 2.0 * (3.0 * VOLUME_PER_DALTON * float(mass_da) / (4.0 * math.pi)) ** (1.0 / 3.0)


def required_angular_accuracy_deg(mass_da: float, resolution: float, kappa: float = 1.0
                                  ) -> float:
    """Angular accuracy (degrees) needed for ``resolution`` (A): ``kappa * d / D``."""
    return math.degrees(kappa * float(resolution) / particle_diameter(mass_da))


def _bisect_mass(func, lo: float = MASS_RANGE[0], hi: float = MASS_RANGE[1],
                 rel: float = 1e-4) -> float | None:
    """Smallest mass where the increasing ``func(mass)`` is >= 0 (log bisection), or None
    when it is negative at ``hi``; ``lo`` when already met there."""
    if func(hi) < 0:
        return None
    if func(lo) >= 0:
        return lo
    a, b = math.log(lo), math.log(hi)
    while b - a > rel:
        m = 0.5 * (a + b)
        if func(math.exp(m)) >= 0:
            b = m
        else:
            a = m
    return math.exp(b)


def smallest_detectable_mass(params: ImagingParameters, threshold: float,
                             calculator: SnrCalculator | None = None) -> float | None:
    """Mass (Da) of average protein whose expected SNR equals ``threshold`` (None: none up
    to 1e9 Da)."""
    calc = calculator or SnrCalculator(params)
    return _bisect_mass(lambda m: calc.snr_of_mass(m).snr - threshold)


def _alignment_calculator(params: ImagingParameters, resolution: float,
                          highpass: float | None = None) -> SnrCalculator:
    """The calculator that uses the signal between ``highpass`` and ``resolution`` (A)."""
    lowpass = max(float(resolution), 2.0 * params.pixel_size)
    if params.lowpass is not None:
        lowpass = max(lowpass, params.lowpass)
    return SnrCalculator(params.with_(lowpass=lowpass), highpass=highpass)


def smallest_alignable_mass(params: ImagingParameters, resolution: float,
                            kappa: float = 1.0, threshold: float | None = None,
                            highpass: float | None = None) -> float | None:
    """Smallest mass (Da) that can be aligned for a reconstruction at ``resolution``.

    Two conditions, both with the signal between ``highpass`` (None: all low frequencies)
    and ``resolution``: the Cramer-Rao angular precision meets
    :func:`required_angular_accuracy_deg`, and, when ``threshold`` is given, the SNR in that
    band reaches it (the orientation is found, not only locally precise). None: not
    reached up to 1e9 Da.
    """
    calc = _alignment_calculator(params, resolution, highpass)

    def margin(mass: float) -> float:
        res = calc.snr_of_mass(mass)
        m = math.log(required_angular_accuracy_deg(mass, resolution, kappa)
                     / res.angular_precision_deg)
        if threshold is not None:
            m = min(m, math.log(max(res.snr, 1e-300) / threshold))
        return m
    return _bisect_mass(margin)


@dataclass
class MassLimits:
    """Result of :func:`mass_limits` (masses in Da; None when not reached below 1e9 Da)."""

    threshold: float
    detectable_mass_da: float | None
    alignable_mass_da: float | None
    resolution: float
    kappa: float
    search_space: dict
    align_highpass: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return asdict(self)


def mass_limits(params: ImagingParameters, space: SearchSpace | None = None,
                resolution: float = 3.0, kappa: float = 1.0,
                threshold: float | None = None,
                align_highpass: float | None = None) -> MassLimits:
    """Smallest detectable and alignable masses under ``params``.

    Args:
        params: imaging assumptions.
        space: search space defining the detection threshold (default :class:`SearchSpace`).
        resolution: target resolution for the alignment criterion, A.
        kappa: factor of the required angular accuracy ``kappa * d / D``.
        threshold: detection threshold overriding the one of ``space``.
        align_highpass: when given (A), alignment uses only the band from
            ``1/align_highpass`` to ``1/resolution`` (default: all frequencies up to
            ``1/resolution``); in that band the SNR must reach the detection threshold (the
            particle and its orientation are found) and the Cramer-Rao precision must meet
            the required accuracy.
    """
    space = space or SearchSpace()
    t = float(threshold) if threshold is not None else space.threshold()
    align = smallest_alignable_mass(params, resolution, kappa, threshold=t,
                                    highpass=align_highpass)
    return MassLimits(threshold=t,
                      detectable_mass_da=smallest_detectable_mass(params, t),
                      alignable_mass_da=align, resolution=float(resolution),
                      kappa=float(kappa), search_space=asdict(space),
                      align_highpass=align_highpass)


def snr_curve(params: ImagingParameters, masses: np.ndarray, resolution: float = 3.0,
              kappa: float = 1.0) -> dict[str, np.ndarray]:
    """Expected SNR, angular precision and required accuracy at each mass (Da)."""
    calc = SnrCalculator(params)
    align = _alignment_calculator(params, resolution)
    masses = np.asarray(masses, dtype=np.float64)
    snr = np.array([calc.snr_of_mass(m).snr for m in masses])
    precision = np.array([align.snr_of_mass(m).angular_precision_deg for m in masses])
    required = np.array([required_angular_accuracy_deg(m, resolution, kappa) for m in masses])
    return {"mass_da": masses, "snr": snr, "angular_precision_deg": precision,
            "required_accuracy_deg": required}


@dataclass(frozen=True)
class PublishedLimit:
    """A published molecular-weight limit and the parameter set that stands for it here."""

    name: str
    criterion: str  # "detection" or "alignment"
    published_kda: float
    source: str
    params: ImagingParameters
    space: SearchSpace
    resolution: float = 3.0
    kappa: float = 1.0
    align_highpass: float | None = None
    calibrated: str = ""
    note: str = ""

    def limits(self) -> MassLimits:
        """The calculator's limits under this parameter set."""
        return mass_limits(self.params, self.space, self.resolution, self.kappa,
                           align_highpass=self.align_highpass)

    def value_kda(self) -> float | None:
        """The calculator's value of this limit's criterion, kDa."""
        lim = self.limits() if self.criterion == "alignment" else None
        if lim is not None:
            m = lim.alignable_mass_da
        else:
            m = smallest_detectable_mass(self.params, self.space.threshold())
        return None if m is None else m / 1e3


#: Parameter sets for the published limits (docs/THEORY.md explains each choice). The
#: parameter named in ``calibrated`` is not in the publication: it was solved for so that
#: the calculator gives the published number, and docs/THEORY.md says what it stands for.
PUBLISHED: tuple[PublishedLimit, ...] = (
    PublishedLimit(
        name="henderson1995",
        criterion="alignment",
        published_kda=38.0,
        source="Henderson (1995) Q. Rev. Biophys. 28:171",
        params=ImagingParameters(phase_plate=True, detector="perfect", fluence=5.0,
                                 exposure="none", thickness_nm=0.0, atomic_b_factor=0.0,
                                 b_factor=0.0, pixel_size=1.0),
        space=SearchSpace(),
        resolution=3.0,
        align_highpass=37.0,
        calibrated="align_highpass = 37 A",
        note="perfect phase contrast and detector, 5 e-/A^2 (the damage-limited exposure of "
             "the paper), no envelope; angular accuracy d/D at 3 A and the SNR of the band "
             "1/37-1/3 A^-1 at the detection threshold",
    ),
    PublishedLimit(
        name="rickgauer2017",
        criterion="detection",
        published_kda=150.0,
        source="Rickgauer, Grigorieff & Denk (2017) eLife 6:e25648",
        params=ImagingParameters(detector="k3", fluence=30.0, exposure="dose-weighted",
                                 defocus=10000.0, thickness_nm=30.0, b_factor=43.0,
                                 highpass=20.0, pixel_size=1.0),
        space=SearchSpace(),
        calibrated="b_factor = 43 A^2 (with highpass = 20 A)",
        note="a 2017-era experiment: counting detector, defocus phase contrast, 30 e-/A^2 "
             "dose-weighted, 30 nm of ice; real-image low-frequency noise whitened away "
             "below 1/20 A^-1 and an image B-factor",
    ),
    PublishedLimit(
        name="zhang_ideal",
        criterion="detection",
        published_kda=7.8,
        source="Zhang et al. (DiffTM authors), the ideal-imaging analysis (SCIENCE.md 5)",
        params=ImagingParameters(phase_plate=True, detector="perfect", fluence=30.0,
                                 exposure="dose-weighted", cooling="lhe", thickness_nm=0.0,
                                 b_factor=0.0, highpass=34.7, pixel_size=1.0),
        space=SearchSpace(),
        calibrated="highpass = 34.7 A",
        note="perfect detector, ideal phase plate, liquid-helium cooling, no ice loss; "
             "signal below 1/34.7 A^-1 not used",
    ),
)
