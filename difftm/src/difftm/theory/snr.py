"""Expected 2DTM SNR from image-formation theory (derivations: docs/THEORY.md).

A particle of projected potential ``Vp`` (V*A) imaged in the weak-phase approximation gives
image contrast ``c = 2 sigma_e (Vp * psf)``, whose spectrum is
``C(k) = 2 sigma_e CTF(k) F(k) E(k)`` with ``F`` the Fourier transform of the projected
potential (V*A^3; the central slice of the 3D transform) and ``E`` the envelopes (radiation
damage, B-factor). With a fluence ``n_e`` (e-/A^2) recorded by a detector of detective quantum
efficiency ``DQE(k)``, the matched filter (a template equal to the signal, in whitened noise)
reaches

    SNR^2 = n_e * integral DQE(k) |C(k)|^2 d^2k                                   (1)

over the image's Nyquist square without the DC term. For a particle of random orientation
``|F(k)|^2`` is replaced by its orientation average, the spherical shell average ``P(|k|)`` of
the 3D power spectrum, so ``<SNR^2> = n_e * integral DQE (2 sigma_e)^2 CTF^2 E^2 P d^2k``.
Specimen thickness multiplies ``n_e`` by ``exp(-t / lambda_in)`` with an energy filter (the
inelastically scattered electrons are removed with their signal) and the signal amplitude by
``exp(-t / lambda_in)`` without one (they add shot noise but no coherent signal); an extra
background (e.g. the structural noise of cellular material) of variance ``b`` times the shot
noise divides ``SNR^2`` by ``1 + b``. With ``rho`` particles per unit area, the search's
whitening by the image's own spectrum turns ``W P`` into ``W P / (1 + rho n_e W P)``.

``P(k)`` comes from an atomic model (:func:`model_spectrum`: 3D FFT of the voxel-averaged
potential of :func:`difftm.physics.potential.simulate_potential` minus the displaced solvent,
shell-averaged, the voxel average divided out) or from a mass (:func:`mass_spectrum`: atoms of
average protein composition placed at random in a sphere, ``P = sum a_i^2 (1 - Phi^2) +
(sum a_i)^2 Phi^2`` with ``a_i`` the atom's solvent-subtracted scattering amplitude and
``Phi`` the sphere form factor), so ``SNR`` grows as ``sqrt(mass)`` at high resolution.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from difftm.io.models import Atoms, atomic_weights, centre_of_mass
from difftm.physics.ctf import ctf_from_frequencies
from difftm.physics.dose import critical_exposure, dose_filter
from difftm.physics.electron import POTENTIAL_PER_SCATTERING_FACTOR, interaction_constant
from difftm.physics.mtf import DETECTORS, read_mtf_file
from difftm.physics.potential import (
    SOLVENT_BLUR_A,
    VOLUME_PER_DALTON,
    WATER_POTENTIAL_V,
    simulate_potential,
)
from difftm.physics.scattering import scattering_factor

#: "Averagine", the average amino-acid residue of Senko, Beu & McLafferty (1995)
#: J. Am. Soc. Mass Spectrom. 6:229: C4.9384 H7.7583 N1.3577 O1.4773 S0.0417, 111.1254 Da.
AVERAGINE: dict[str, float] = {"C": 4.9384, "H": 7.7583, "N": 1.3577, "O": 1.4773,
                               "S": 0.0417}

#: Inelastic mean free path of 300 kV electrons in vitreous ice, nm: the value used for
#: energy-filtered ice-thickness measurement by Rice et al. (2018) J. Struct. Biol. 204:38
#: (published measurements span roughly 300-400 nm; set ``inelastic_mfp_nm`` to override).
INELASTIC_MFP_300KV_NM = 395.0
#: Mean energy loss of water (eV) in Egerton's mean-free-path formula, ``7.6 Z^0.36`` with
#: ``Z_eff = 7.42`` (Egerton, *Electron Energy-Loss Spectroscopy*, 3rd ed., eq. 5.2).
_WATER_MEAN_LOSS_EV = 7.6 * 7.42**0.36
#: Collection semi-angle (mrad) used in the voltage scaling of the mean free path.
_COLLECTION_MRAD = 10.0

#: Radiation-damage protection of liquid-helium (~4-12 K) relative to liquid-nitrogen
#: cooling: diffraction spots of 2D crystals fade 1.2-1.8x more slowly (Naydenova et al. 2022,
#: Ultramicroscopy 237:113512); the midpoint multiplies the critical exposure. Single-particle
#: data at 17 K showed no net gain because of extra beam-induced motion (Pfeil-Gardiner et al.
#: 2019, IUCrJ 6:1099): the factor is the ideal case.
COOLING_CRITICAL_EXPOSURE = {"ln2": 1.0, "lhe": 1.5}

#: Named detectors: DQE(0) and the MTF curve of :mod:`difftm.physics.mtf`. ``perfect``:
#: DQE = 1 at every frequency; ``counting``: an ideal counting detector, DQE = the squared
#: pixel aperture ``sinc^2(pi kx p) sinc^2(pi ky p)`` (what the simulator produces);
#: ``k3``/``falcon4``: ``DQE(0) * MTF(f)^2`` (white noise after counting), DQE(0) an assumed
#: round 0.8 -- replace it with the vendor's measured value.
DETECTOR_DQE0 = {"perfect": 1.0, "counting": 1.0, "k3": 0.8, "falcon4": 0.8}
EXPOSURE_MODES = ("none", "summed", "dose-weighted")


@dataclass(frozen=True)
class ImagingParameters:
    """Every assumption of the SNR calculation (defaults: a typical 2DTM experiment).

    Attributes:
        voltage_kv: accelerating voltage (dose weighting is calibrated at 200 and 300 kV).
        cs_mm: spherical aberration.
        amplitude_contrast: amplitude contrast fraction (0.07: the simulator's default).
        defocus: underfocus in A (ignored with ``phase_plate``: then 0).
        phase_plate: ideal phase plate: 90 degree phase shift, in focus.
        phase_shift_deg: extra phase shift without ``phase_plate``.
        pixel_size: image pixel (A); the integral runs over its Nyquist square.
        lowpass: resolution limit of the search (A), None for Nyquist.
        highpass: frequencies below ``1/highpass`` are not used (A; None: all). Stands for
            the search's band-pass, or for whitening that suppresses low frequencies where a
            real image's noise is far above the shot noise.
        fluence: total exposure, e-/A^2.
        exposure: ``none`` (no damage), ``summed`` (frame sum) or ``dose-weighted``
            (optimal frame weights; Grant & Grigorieff 2015 critical exposure).
        cooling: ``ln2`` or ``lhe`` (:data:`COOLING_CRITICAL_EXPOSURE`).
        critical_exposure_scale: overrides the cooling factor when not None.
        detector: ``perfect``, ``counting``, ``k3``, ``falcon4`` or a two-column DQE file
            (fraction of Nyquist, DQE).
        dqe0: DQE at zero frequency (None: the detector's default).
        b_factor: extra image B-factor (A^2): amplitude ``exp(-B k^2 / 4)`` (motion, drift,
            heterogeneity; the model's atomic B-factors are part of its spectrum).
        thickness_nm: specimen (ice or cell) thickness.
        inelastic_mfp_nm: inelastic mean free path (None: :func:`inelastic_mean_free_path`).
        energy_filter: zero-loss filtering (True) or not.
        background_noise: extra noise variance in units of the shot noise (cellular
            structural noise; 0 for clean ice).
        solvent_potential: mean inner potential of the displaced medium (V), 3.5 for ice.
        atomic_b_factor: B-factor of every atom of a mass-based target (A^2).
        hydrogens: a mass-based target includes hydrogen atoms (False: the composition of
            models without H; its mass is then the heavy-atom mass).
        particle_density: copies of the target per square micrometre of image. The search
            whitens by the image's own radial power spectrum, which then includes the
            particles' signal: frequencies where it rivals the shot noise are down-weighted
            (0: isolated particles; docs/THEORY.md section 7).
    """

    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus: float = 10000.0
    phase_plate: bool = False
    phase_shift_deg: float = 0.0
    pixel_size: float = 1.0
    lowpass: float | None = None
    highpass: float | None = None
    fluence: float = 30.0
    exposure: str = "dose-weighted"
    cooling: str = "ln2"
    critical_exposure_scale: float | None = None
    detector: str = "k3"
    dqe0: float | None = None
    b_factor: float = 0.0
    thickness_nm: float = 30.0
    inelastic_mfp_nm: float | None = None
    energy_filter: bool = True
    background_noise: float = 0.0
    solvent_potential: float = WATER_POTENTIAL_V
    atomic_b_factor: float = 20.0
    hydrogens: bool = True
    particle_density: float = 0.0

    def validate(self) -> ImagingParameters:
        """Check ranges (one-line ``ValueError``); returns self."""
        def need(ok: bool, text: str) -> None:
            if not ok:
                raise ValueError(text)
        for name in ("voltage_kv", "pixel_size", "fluence"):
            value = getattr(self, name)
            need(math.isfinite(value) and value > 0, f"{name} must be > 0, got {value}")
        for name in ("cs_mm", "b_factor", "thickness_nm", "background_noise",
                     "atomic_b_factor", "solvent_potential", "particle_density"):
            value = getattr(self, name)
            need(math.isfinite(value) and value >= 0, f"{name} must be >= 0, got {value}")
        need(0 <= self.amplitude_contrast < 1,
             f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast}")
        need(math.isfinite(self.defocus), f"defocus must be finite, got {self.defocus}")
        need(self.exposure in EXPOSURE_MODES,
             f"exposure must be one of {', '.join(EXPOSURE_MODES)}, got {self.exposure!r}")
        need(self.cooling in COOLING_CRITICAL_EXPOSURE,
             f"cooling must be ln2 or lhe, got {self.cooling!r}")
        if self.critical_exposure_scale is not None:
            need(self.critical_exposure_scale > 0, "critical_exposure_scale must be > 0")
        if self.dqe0 is not None:
            need(0 < self.dqe0 <= 1, f"dqe0 must be in (0, 1], got {self.dqe0}")
        if self.lowpass is not None:
            need(self.lowpass >= 2 * self.pixel_size,
                 f"lowpass {self.lowpass} A is finer than Nyquist ({2 * self.pixel_size} A)")
        if self.highpass is not None:
            need(self.highpass > (self.lowpass or 2 * self.pixel_size),
                 f"highpass {self.highpass} A must be coarser than the low-pass limit")
        if self.inelastic_mfp_nm is not None:
            need(self.inelastic_mfp_nm > 0, "inelastic_mfp_nm must be > 0")
        if self.exposure != "none":
            critical_exposure(torch.ones(1), self.voltage_kv)  # refuses uncalibrated kV
        if self.detector not in DETECTOR_DQE0 and not Path(self.detector).is_file():
            raise ValueError(f"unknown detector {self.detector!r}: use "
                             f"{', '.join(DETECTOR_DQE0)} or a two-column DQE file")
        return self

    @property
    def damage_scale(self) -> float:
        """Multiplier of the critical exposure (cooling)."""
        if self.critical_exposure_scale is not None:
            return float(self.critical_exposure_scale)
        return COOLING_CRITICAL_EXPOSURE[self.cooling]

    def with_(self, **changes) -> ImagingParameters:
        """A copy with ``changes`` applied."""
        return replace(self, **changes)


@dataclass
class ScatteringSpectrum:
    """Orientation-averaged power spectrum of a target's projected potential.

    Attributes:
        k: (n,) spatial frequencies, 1/A (increasing, from 0).
        power: (n,) ``P(k) = <|F(k)|^2>`` in (V*A^3)^2.
        incoherent: (n,) ``sum_i a_i(k)^2``, the part that carries orientation information.
        mass_da: mass of the atoms (Da).
        radius: radius of the sphere of the target's volume (1.229 A^3/Da), A.
        second_moment: mean squared atom coordinate along one axis about the centre, A^2.
        source: description (model file or ``mass``).
        template_power: (n,) ``<|T(k)|^2>`` of the template difftm simulates from the same
            atoms (potential without the displaced solvent), or None.
        cross_power: (n,) ``<Re F(k) T*(k)>``, signal times template, or None.
    """

    k: np.ndarray
    power: np.ndarray
    incoherent: np.ndarray
    mass_da: float
    radius: float
    second_moment: float
    source: str = ""
    template_power: np.ndarray | None = None
    cross_power: np.ndarray | None = None

    def at(self, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(P(k), incoherent(k))`` interpolated at ``k`` (0 beyond the last sample)."""
        p = np.interp(k, self.k, self.power, right=0.0)
        q = np.interp(k, self.k, self.incoherent, right=0.0)
        return p, q


def sphere_form_factor(k: np.ndarray, radius: float) -> np.ndarray:
    """``Phi(k) = 3 (sin x - x cos x) / x^3``, ``x = 2 pi k R``: the normalised transform of a
    uniform ball (1 at ``k = 0``)."""
    x = 2.0 * math.pi * np.asarray(k, dtype=np.float64) * float(radius)
    out = np.ones_like(x)
    big = x > 1e-3
    xb = x[big]
    out[big] = 3.0 * (np.sin(xb) - xb * np.cos(xb)) / xb**3
    small = ~big
    out[small] = 1.0 - x[small] ** 2 / 10.0
    return out


def atom_amplitudes(elements: np.ndarray, k: np.ndarray, b_factors: np.ndarray | float,
                    solvent_potential: float) -> np.ndarray:
    """Solvent-subtracted scattering amplitude of each atom, V*A^3, shape (atoms, k).

    ``a_i(k) = 47.878 f_e,i(k/2) exp(-B_i k^2/4) - V_w 1.229 m_i exp(-2 pi^2 s^2 k^2)``: the
    atom's potential transform (Peng factors, :mod:`difftm.physics.scattering`) minus the
    displaced solvent of :func:`difftm.physics.potential.projected_potential` (Gaussian of
    ``s = 2 A``, volume 1.229 A^3 per Dalton).
    """
    k = np.asarray(k, dtype=np.float64)
    b = np.broadcast_to(np.asarray(b_factors, dtype=np.float64), (len(elements),))
    f = scattering_factor(elements, k / 2.0)  # (atoms, k), s = k / 2
    amp = POTENTIAL_PER_SCATTERING_FACTOR * f * np.exp(-b[:, None] * k[None, :] ** 2 / 4.0)
    if solvent_potential:
        vol = VOLUME_PER_DALTON * atomic_weights(np.asarray(elements))
        blur = np.exp(-2.0 * math.pi**2 * SOLVENT_BLUR_A**2 * k**2)
        amp = amp - float(solvent_potential) * vol[:, None] * blur[None, :]
    return amp


def composition(hydrogens: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """Average-protein composition: (elements, atoms per Dalton, mass per residue (Da)).

    With ``hydrogens=False`` the hydrogens are dropped and counts are per Dalton of
    heavy-atom mass (the composition of an X-ray model without H).
    """
    elements = np.array([e for e in AVERAGINE if hydrogens or e != "H"])
    counts = np.array([AVERAGINE[e] for e in elements])
    mass = float((counts * atomic_weights(elements)).sum())
    return elements, counts / mass, mass


def mass_spectrum(mass_da: float, k: np.ndarray, params: ImagingParameters) -> ScatteringSpectrum:
    """Spectrum of ``mass_da`` of average protein (module docstring), at frequencies ``k``.

    Atoms with the :data:`AVERAGINE` composition (``params.hydrogens``), B-factor
    ``params.atomic_b_factor``, at random positions in a ball of volume 1.229 A^3/Da.
    """
    if not (math.isfinite(mass_da) and mass_da > 0):
        raise ValueError(f"mass must be > 0 Da, got {mass_da}")
    k = np.asarray(k, dtype=np.float64)
    elements, per_da, _ = composition(params.hydrogens)
    amp = atom_amplitudes(elements, k, params.atomic_b_factor, params.solvent_potential)
    n = per_da[:, None] * float(mass_da)
    incoherent = (n * amp**2).sum(axis=0)
    coherent = (n * amp).sum(axis=0)
    radius = (3.0 * VOLUME_PER_DALTON * mass_da / (4.0 * math.pi)) ** (1.0 / 3.0)
    phi2 = sphere_form_factor(k, radius) ** 2
    power = incoherent * (1.0 - phi2) + coherent**2 * phi2
    bare = atom_amplitudes(elements, k, params.atomic_b_factor, 0.0)  # template: no solvent
    t_coh = (n * bare).sum(axis=0)
    template = (n * bare**2).sum(axis=0) * (1.0 - phi2) + t_coh**2 * phi2
    cross = (n * amp * bare).sum(axis=0) * (1.0 - phi2) + coherent * t_coh * phi2
    return ScatteringSpectrum(k=k, power=power, incoherent=incoherent, mass_da=float(mass_da),
                              radius=radius, second_moment=radius**2 / 5.0, source="mass",
                              template_power=template, cross_power=cross)


def _model_volume(atoms: Atoms, voxel: float, box: int, b_factor_add: float,
                  solvent_potential: float, centre: np.ndarray
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Voxel-averaged potential of ``atoms`` minus the displaced solvent (V), [z, y, x],
    and the potential alone (the template)."""
    from difftm.physics.potential import WINDOW_SIGMAS, _accumulate

    bare = simulate_potential(atoms, voxel, box, b_factor_add=b_factor_add,
                              dtype=torch.float64, centre=centre)
    vol = bare
    if solvent_potential:
        flat = bare.reshape(-1).clone()
        sig = SOLVENT_BLUR_A / voxel
        r = int(math.ceil(WINDOW_SIGMAS * sig))
        centres = (atoms.positions_angstrom - centre) / voxel + box // 2
        weights = (-float(solvent_potential) * VOLUME_PER_DALTON
                   * atomic_weights(atoms.elements) * atoms.occupancies / voxel**3)
        chunk = 20000
        for start in range(0, len(atoms), chunk):
            sl = slice(start, start + chunk)
            n = len(weights[sl])
            _accumulate(flat, centres[sl], np.full((n, 1), sig), weights[sl, None], r, box,
                        torch.float64)
        vol = flat.reshape(box, box, box)
    return vol, bare


def model_spectrum(atoms: Atoms, voxel_size: float = 1.0, b_factor_add: float = 0.0,
                   solvent_potential: float = WATER_POTENTIAL_V,
                   max_box: int = 256) -> ScatteringSpectrum:
    """Orientation-averaged power spectrum of an atomic model (module docstring).

    Args:
        atoms: the model (its atomic B-factors and occupancies are used).
        voxel_size: sampling of the 3D potential, A; coarsened automatically so that the box
            stays within ``max_box`` (then the spectrum ends at that voxel's Nyquist).
        b_factor_add: added to every atom's B-factor (A^2).
        solvent_potential: mean inner potential of the displaced solvent (V).
        max_box: largest box edge in voxels (memory: ~16 bytes x box^3).

    Returns:
        :class:`ScatteringSpectrum` sampled at shells ``j / (box * voxel)``.
    """
    from difftm.io.models import molecular_mass_da

    if len(atoms) == 0:
        raise ValueError("the model has no atoms")
    centre = centre_of_mass(atoms)
    offsets = atoms.positions_angstrom - centre
    extent = 2.0 * float(np.abs(offsets).max()) + 2.0 * 4.5 * SOLVENT_BLUR_A + 8.0
    voxel = max(float(voxel_size), extent / max_box)
    box = int(math.ceil(extent / voxel))
    box += box % 2
    vol, bare = _model_volume(atoms, voxel, box, b_factor_add, solvent_potential, centre)
    spec = torch.fft.rfftn(vol) * voxel**3  # continuous transform units, V*A^3
    tspec = torch.fft.rfftn(bare) * voxel**3
    del vol, bare
    freq = torch.fft.fftfreq(box, d=voxel, dtype=torch.float64)
    rfreq = torch.fft.rfftfreq(box, d=voxel, dtype=torch.float64)
    # the voxel average multiplies the transform by sinc(k_x v) sinc(k_y v) sinc(k_z v)
    aperture = (torch.sinc(freq * voxel)[:, None, None] * torch.sinc(freq * voxel)[None, :, None]
                * torch.sinc(rfreq * voxel)[None, None, :])
    power = (spec.abs() ** 2) / aperture**2
    tpower = (tspec.abs() ** 2) / aperture**2
    cross = (spec * tspec.conj()).real / aperture**2
    del spec, tspec
    kmag = torch.sqrt(freq[:, None, None] ** 2 + freq[None, :, None] ** 2
                      + rfreq[None, None, :] ** 2)
    shell = torch.round(kmag * box * voxel).to(torch.int64)
    # the rfft half holds each non-real column once: weight 2 (except kx = 0 and Nyquist)
    weight = torch.full(rfreq.shape, 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if box % 2 == 0:
        weight[-1] = 1.0
    weight = weight[None, None, :].expand_as(power)
    n_shell = box // 2
    keep = shell <= n_shell
    sums = torch.bincount(shell[keep], weights=(power * weight)[keep], minlength=n_shell + 1)
    counts = torch.bincount(shell[keep], weights=weight[keep], minlength=n_shell + 1)
    k = np.arange(n_shell + 1) / (box * voxel)
    p = (sums / counts.clamp_min(1)).numpy()

    def shell_mean(values: torch.Tensor) -> np.ndarray:
        total = torch.bincount(shell[keep], weights=(values * weight)[keep],
                               minlength=n_shell + 1)
        return (total / counts.clamp_min(1)).numpy()
    tp, cp = shell_mean(tpower), shell_mean(cross)
    # sum of squared atom amplitudes (the incoherent part), element by element
    b_eff = atoms.b_factors + float(b_factor_add)
    incoherent = np.zeros_like(k)
    for start in range(0, len(atoms), 20000):
        sl = slice(start, start + 20000)
        amp = atom_amplitudes(atoms.elements[sl], k, b_eff[sl], solvent_potential)
        incoherent += ((amp * atoms.occupancies[sl, None]) ** 2).sum(axis=0)
    mass = molecular_mass_da(atoms)
    radius = (3.0 * VOLUME_PER_DALTON * mass / (4.0 * math.pi)) ** (1.0 / 3.0)
    return ScatteringSpectrum(k=k, power=p, incoherent=incoherent, mass_da=mass, radius=radius,
                              second_moment=float((offsets**2).mean()),
                              source=atoms.source or "model", template_power=tp,
                              cross_power=cp)


def inelastic_mean_free_path(voltage_kv: float, at_300kv_nm: float = INELASTIC_MFP_300KV_NM
                             ) -> float:
    """Inelastic mean free path in vitreous ice (nm) at ``voltage_kv``.

    ``at_300kv_nm`` scaled by Egerton's formula ``lambda ~ F E0 / ln(2 beta E0 / E_m)`` with
    the relativistic factor ``F = (1 + E0/1022) / (1 + E0/511)^2`` (E0 in keV), ``E_m`` the
    mean loss of water and ``beta`` = 10 mrad (Egerton 2011, eq. 5.2): 300 kV -> 395 nm,
    200 kV -> ~315 nm.
    """
    def egerton(e0: float) -> float:
        f = (1.0 + e0 / 1022.0) / (1.0 + e0 / 511.0) ** 2
        return f * e0 / math.log(2.0 * _COLLECTION_MRAD * e0 / _WATER_MEAN_LOSS_EV)
    return float(at_300kv_nm) * egerton(float(voltage_kv)) / egerton(300.0)


def dqe_curve(params: ImagingParameters, ky: torch.Tensor, kx: torch.Tensor) -> torch.Tensor:
    """DQE at frequencies ``(ky, kx)`` (1/A) for ``params.detector`` (see
    :data:`DETECTOR_DQE0`)."""
    p = params.pixel_size
    name = params.detector
    dqe0 = params.dqe0
    if name == "perfect":
        return torch.full_like(kx, 1.0 if dqe0 is None else dqe0)
    if name == "counting":
        aperture = (torch.sinc(kx * p) * torch.sinc(ky * p)) ** 2
        return aperture * (1.0 if dqe0 is None else dqe0)
    f = torch.sqrt(kx**2 + ky**2) * (2.0 * p)  # fraction of Nyquist
    if name in DETECTOR_DQE0:
        mtf = DETECTORS[name](f)
        return (DETECTOR_DQE0[name] if dqe0 is None else dqe0) * mtf**2
    curve = read_mtf_file(name)  # two columns: fraction of Nyquist, DQE
    return curve(f) * (1.0 if dqe0 is None else dqe0)


def exposure_power(params: ImagingParameters, k: torch.Tensor) -> torch.Tensor:
    """Fraction of the signal power left by radiation damage at ``k`` (module
    docstring of :mod:`difftm.simulate.micrograph` for the three modes)."""
    if params.exposure == "none":
        return torch.ones_like(k)
    scale = params.damage_scale
    if params.exposure == "summed":
        # Ne -> s * Ne is the same as fluence -> fluence / s
        return dose_filter(k, params.fluence / scale, params.voltage_kv) ** 2
    ne = critical_exposure(k, params.voltage_kv) * scale
    x = params.fluence / ne
    safe = torch.where(x > 0, x, torch.ones_like(x))
    return torch.where(x > 1e-12, -torch.expm1(-safe) / safe, 1.0 - 0.5 * x)


def thickness_factor(params: ImagingParameters) -> tuple[float, float]:
    """``(fluence factor, signal-amplitude factor)`` of the specimen thickness."""
    mfp = (params.inelastic_mfp_nm if params.inelastic_mfp_nm is not None
           else inelastic_mean_free_path(params.voltage_kv))
    loss = math.exp(-params.thickness_nm / mfp)
    return (loss, 1.0) if params.energy_filter else (1.0, loss)


@dataclass
class SnrResult:
    """Expected SNR of one target and its ingredients.

    Attributes:
        snr: expected matched-filter SNR (search units: noise standard deviations).
        mass_da: target mass.
        angular_precision_deg: Cramer-Rao standard deviation of an in-plane angle from the
            same image (degrees).
        effective_fluence: fluence after the thickness loss (e-/A^2).
        signal_norm: ``integral DQE |C|^2 d^2k`` per unit fluence, A^2 (``SNR^2 / n_eff``).
        grid: size of the frequency grid used.
        snr_template: expected SNR with the template difftm simulates from the same atoms
            (no displaced solvent): ``<s, t> / |t|`` instead of ``|s|``; None when the
            spectrum has no template terms.
    """

    snr: float
    mass_da: float
    angular_precision_deg: float
    effective_fluence: float
    signal_norm: float
    grid: int
    snr_template: float | None = None

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        return asdict(self)


def frequency_grid(params: ImagingParameters, grid: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor, int]:
    """``(ky, kx, dk, multiplicity, grid)``: one quadrant (``kx, ky >= 0``) of the image's
    Nyquist square, sampled at ``dk = 1 / (grid * pixel)`` with ``grid`` at least 2048 and
    fine enough that the CTF phase changes by less than 0.5 rad between neighbours. The
    integrand is even in ``kx`` and ``ky`` (no astigmatism), so each quadrant point stands
    for ``multiplicity`` (1, 2 or 4) points of the full ``grid x grid`` FFT grid."""
    p = params.pixel_size
    if grid is None:
        from difftm.physics.electron import electron_wavelength

        lam = electron_wavelength(params.voltage_kv)
        kmax = math.sqrt(2.0) * 0.5 / p
        df = 0.0 if params.phase_plate else abs(params.defocus)
        slope = 2 * math.pi * (lam * df * kmax + params.cs_mm * 1e7 * lam**3 * kmax**3)
        dk = 0.5 / max(slope, 1e-9)
        grid = int(min(4096, max(2048, math.ceil(1.0 / (p * dk)))))
        grid += grid % 2
    grid = int(grid)
    half = grid // 2
    freq = torch.arange(half + 1, dtype=torch.float64) / (grid * p)
    mult = torch.full((half + 1,), 2.0, dtype=torch.float64)
    mult[0] = 1.0
    mult[half] = 1.0  # the Nyquist line appears once (as -N/2) in an even FFT grid
    ky, kx = torch.meshgrid(freq, freq, indexing="ij")
    return ky, kx, 1.0 / (grid * p), mult[:, None] * mult[None, :], grid


class SnrCalculator:
    """Expected SNR for one set of imaging parameters, reused across targets.

    Everything but the target's spectrum (CTF, DQE, damage, B-factor, band limit) is
    evaluated once on the frequency grid and binned radially (``n_samples`` shells).
    ``highpass`` (A) drops frequencies below ``1/highpass`` (the band of the alignment
    criterion).
    """

    def __init__(self, params: ImagingParameters, grid: int | None = None,
                 highpass: float | None = None, n_samples: int = 4096) -> None:
        self.params = params.validate()
        ky, kx, dk, multiplicity, n_grid = frequency_grid(params, grid)
        k = torch.sqrt(kx**2 + ky**2)
        pp = params
        defocus = 0.0 if pp.phase_plate else pp.defocus
        shift = 90.0 if pp.phase_plate else pp.phase_shift_deg
        ctf = ctf_from_frequencies(ky, kx, defocus, defocus, 0.0, pp.voltage_kv, pp.cs_mm,
                                   pp.amplitude_contrast, shift)
        sigma_e = interaction_constant(pp.voltage_kv)
        weight = (2.0 * sigma_e) ** 2 * ctf**2 * dqe_curve(pp, ky, kx)
        del ctf
        weight = weight * exposure_power(pp, k) * torch.exp(-0.5 * pp.b_factor * k**2)
        mask = k > 0
        if pp.lowpass is not None:
            mask &= k <= 1.0 / pp.lowpass
        highpass = highpass if highpass is not None else pp.highpass
        if highpass is not None:
            mask &= k >= 1.0 / highpass
        kk = k[mask]
        w = weight[mask]
        mult = multiplicity[mask]
        # P depends on |k| only: bin the weights onto a fine radial grid with linear
        # interpolation weights, which equals interpolating P at every grid point
        self.k_samples = np.linspace(0.0, float(kk.max()) if kk.numel() else 1.0, n_samples)
        step = float(self.k_samples[1])
        pos = (kk / step).clamp(max=n_samples - 1 - 1e-9)
        lo = pos.floor().to(torch.int64)
        frac = pos - lo

        def radial(values: torch.Tensor) -> np.ndarray:
            out = torch.bincount(lo, weights=values * (1 - frac), minlength=n_samples)
            out += torch.bincount(lo + 1, weights=values * frac, minlength=n_samples + 1
                                  )[:n_samples]
            return out.numpy()
        counts = radial(mult)
        total = radial(w * mult)
        self.weight = total * dk**2  # includes the area element
        self.angular_weight = radial(w * mult * (2 * math.pi * kk) ** 2) * dk**2
        self.weight_mean = np.where(counts > 0, total / np.maximum(counts, 1e-300), 0.0)
        fluence_factor, amplitude = thickness_factor(pp)
        self.effective_fluence = pp.fluence * fluence_factor
        self.noise_scale = amplitude**2 / (1.0 + pp.background_noise)
        self.grid = n_grid

    def snr(self, spectrum: ScatteringSpectrum) -> SnrResult:
        """Expected SNR of the target with ``spectrum`` (eq. 1 of the module docstring)."""
        power, incoherent = spectrum.at(self.k_samples)
        # self-whitening: the image's power relative to the shot noise is
        # 1 + rho * n_eff * W * P, and the search divides by it (docs/THEORY.md section 7)
        rho = self.params.particle_density * 1e-8  # per A^2
        h2 = 1.0 / (1.0 + rho * self.effective_fluence * self.noise_scale
                    * self.weight_mean * power)
        norm = float((self.weight * power * h2).sum()) * self.noise_scale
        snr2 = self.effective_fluence * norm
        # angular information: only the atoms' fluctuations (not the smooth envelope)
        phi2 = sphere_form_factor(self.k_samples, spectrum.radius) ** 2
        info = (self.angular_weight * spectrum.second_moment * incoherent * (1.0 - phi2) * h2
                ).sum() * self.noise_scale * self.effective_fluence
        sigma = math.degrees(1.0 / math.sqrt(info)) if info > 0 else math.inf
        snr_t = None
        if spectrum.template_power is not None and spectrum.cross_power is not None:
            tp = np.interp(self.k_samples, spectrum.k, spectrum.template_power, right=0.0)
            cp = np.interp(self.k_samples, spectrum.k, spectrum.cross_power, right=0.0)
            t_norm = float((self.weight * tp * h2).sum()) * self.noise_scale
            cross = float((self.weight * cp * h2).sum()) * self.noise_scale
            if t_norm > 0:
                snr_t = math.sqrt(self.effective_fluence) * cross / math.sqrt(t_norm)
        return SnrResult(snr=math.sqrt(max(snr2, 0.0)), mass_da=spectrum.mass_da,
                         angular_precision_deg=sigma,
                         effective_fluence=self.effective_fluence, signal_norm=norm,
                         grid=self.grid, snr_template=snr_t)

    def snr_of_mass(self, mass_da: float) -> SnrResult:
        """Expected SNR of ``mass_da`` of average protein (:func:`mass_spectrum`)."""
        return self.snr(mass_spectrum(mass_da, self.k_samples, self.params))


def expected_snr(target: ScatteringSpectrum | float, params: ImagingParameters,
                 grid: int | None = None) -> SnrResult:
    """Expected 2DTM SNR of ``target`` (a spectrum or a mass in Da) under ``params``."""
    calc = SnrCalculator(params, grid)
    if isinstance(target, ScatteringSpectrum):
        return calc.snr(target)
    return calc.snr_of_mass(float(target))
