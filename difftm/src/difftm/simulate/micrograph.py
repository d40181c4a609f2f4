"""Synthetic micrographs with known particles (ground truth for testing 2DTM).

Image-formation model (weak-phase approximation, one scattering event, no inelastic loss):

1. Poses: orientations drawn uniformly (Haar measure) on SO(3) from random unit quaternions,
   reported as RELION ZYZ Euler angles; particle centres drawn uniformly at integer pixels
   at least ``D//2`` from the edges (the whole template box lies inside the image) and at
   least ``min_separation`` pixels apart (default: the template's diameter, see
   :func:`template_diameter`).
2. Projected potential ``Vp(x, y) = integral V(A^T (x, y, z)) dz`` (V*A), averaged over each
   pixel, in a ``D x D`` box with the centre at ``D//2``:

   * from the atomic model when ``atoms`` is given (the faithful route, and the default of
     ``difftm simulate micrograph --model``): every atom's Peng Gaussians integrated exactly
     along the beam and over the pixel (:func:`difftm.physics.potential.projected_potential`),
     with the solvent the molecule displaces subtracted (mean inner potential of vitreous
     ice, 3.5 V, over Gaussian excluded volumes). No voxel grid and no interpolation, and a
     route independent of the search's Fourier-slice projector, so a search is not tested
     against its own approximations. Per-shell amplitude = the exact projection to 1e-5.
   * from the template volume otherwise: a Fourier-slice projection of the volume
     (:func:`volume_projector`; per-shell amplitude within 1 % of an exact projection up to
     0.4 cycles/px and 4 % above; the trilinear real-space projection used before lost
     10-48 % from 0.15 cycles/px on). No solvent term is added (the volume carries
     whatever it holds).
3. Optional exposure envelope (``exposure``): ``"summed"`` multiplies the particle spectrum
   by the average radiation-damage attenuation over the fluence (Grant & Grigorieff 2015,
   :func:`difftm.physics.dose.dose_filter`), as in a plain frame sum; ``"dose-weighted"`` by
   ``sqrt((1/F) integral_0^F exp(-N / Ne(k)) dN)``, the signal left in a dose-weighted sum
   whose per-frequency frame weights are proportional to the frames' signal and normalised to
   keep the noise power; ``"none"`` (default) applies no damage.
4. Phase ``phi = sigma_e * Vp`` (``sigma_e``: interaction constant, rad/(V*A)).
5. Image contrast ``c = 2 * (phi convolved with the CTF point-spread function)`` with the CTF of
   :func:`difftm.physics.ctf.ctf_2d` (``CTF = -(sqrt(1-A^2) sin chi + A cos chi)``), applied
   per particle with its own defocus on a box padded by the CTF delocalisation distance (so
   the delocalised fringes are kept, not wrapped around), then added into the image. Positive
   potential at underfocus gives dark particles (``c < 0``).
6. Expected counts per pixel ``N0 * (1 + c)`` with ``N0 = fluence * pixel_size^2``; counts are
   drawn from a Poisson distribution (seeded torch generator, deterministic for a seed).
7. Optional real background (``background``: e.g. a real micrograph): resized to the image
   shape (centre crop, or mirror tiling when smaller), normalised to zero mean and unit
   variance, and added as ``background_scale * sqrt(N0) * b(x, y)``: a texture (ice, carbon,
   Thon rings, detector pattern) whose standard deviation is ``background_scale`` times the
   shot-noise level. The total noise variance is then ``N0 * (1 + background_scale^2)`` and
   the mean stays ``N0``. The particle contrast is added on top of it (it does not modulate
   the background), which is adequate for texture that is itself mostly noise.

The output image is in counts (electrons per pixel, float32), indexed [y, x].
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from difftm.fourier.padding import next_fast_size
from difftm.geometry.euler import euler_to_matrix, matrix_to_euler
from difftm.io.models import Atoms
from difftm.physics.ctf import ctf_2d, delocalisation_distance
from difftm.physics.electron import interaction_constant
from difftm.physics.potential import WATER_POTENTIAL_V, projected_potential

__all__ = [
    "SimulatedMicrograph",
    "TRUTH_COLUMNS",
    "prepare_background",
    "project_volume",
    "volume_projector",
    "random_orientations",
    "simulate_micrograph",
    "template_diameter",
]

TRUTH_COLUMNS = ("x", "y", "rot", "tilt", "psi", "defocus_u", "defocus_v", "defocus_angle")
"""Columns of :attr:`SimulatedMicrograph.truth` (pixels, degrees, Angstrom)."""


@dataclass
class SimulatedMicrograph:
    """A synthetic micrograph and what was put into it.

    Attributes:
        image: counts per pixel, float32 [y, x] (shot noise and background included).
        truth: one row per particle: ``x``, ``y`` (pixel of the particle centre), ``rot``,
            ``tilt``, ``psi`` (RELION Euler, degrees), ``defocus_u``, ``defocus_v`` (A,
            positive underfocus), ``defocus_angle`` (degrees).
        params: every simulation parameter and derived quantity (``mean_counts`` = N0,
            ``sigma_e``, ``padded_box``, ...), JSON-serialisable.
        noiseless: expected counts ``N0 * (1 + c)`` without shot noise or background,
            float32 [y, x].
    """

    image: np.ndarray
    truth: pd.DataFrame
    params: dict = field(default_factory=dict)
    noiseless: np.ndarray | None = None


def random_orientations(n: int, rng: np.random.Generator) -> np.ndarray:
    """Uniformly random rotations (Haar measure on SO(3)) as RELION Euler angles.

    Args:
        n: number of rotations.
        rng: numpy random generator (the only source of randomness).

    Returns:
        ``(n, 3)`` float64 array of ``(rot, tilt, psi)`` in degrees.
    """
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)  # uniform on S^3 -> Haar on SO(3)
    w, x, y, z = q.T
    R = np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )
    return matrix_to_euler(torch.from_numpy(R)).numpy()


def volume_projector(volume: torch.Tensor, device: torch.device | str | None = None):
    """The simulator's Fourier-slice projector of a template volume.

    Padded 4x (2x above a 128 box, to bound memory: ~0.5 GB at 128 or 256) and without the
    gridding correction, which would scale on-grid frequencies (the DC term among them) by
    up to a few per cent. Measured on ubiquitin at 1 A/px (box 64) against the exact
    projection of the rotated atoms: per-shell amplitude 0.99-1.00 in every 0.05 cycles/px
    shell up to 0.4 and 0.96-1.00 above, integral exact (a trilinear real-space projection
    keeps only 0.52-0.85 above 0.2 cycles/px; padding 2x: 0.95-0.99).
    """
    from difftm.fourier.projector import FourierSliceProjector

    oversampling = 4.0 if volume.shape[0] <= 128 else 2.0
    return FourierSliceProjector(volume, oversampling=oversampling, device=device,
                                 gridding_correction=False)


def project_volume(volume: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Projections ``P(x, y) = sum_z V(A^T (x, y, z))`` of a volume (one voxel per z step).

    Fourier-slice projection by :func:`volume_projector`, transformed back to real space.
    The volume's centre is voxel ``D//2`` on each axis and the projection's centre is pixel
    ``(D//2, D//2)``.

    Args:
        volume: ``(D, D, D)`` real tensor indexed [z, y, x].
        rotations: ``(B, 3, 3)`` or ``(3, 3)`` RELION matrices ``A`` (see
            :mod:`difftm.geometry.euler`).

    Returns:
        ``(B, D, D)`` (or ``(D, D)`` for one matrix) projections, sums over voxels (multiply
        by the pixel size for a line integral), dtype and device of ``volume``.
    """
    single = rotations.dim() == 2
    d = volume.shape[0]
    projector = volume_projector(volume)
    spec = projector.project(rotations.reshape(-1, 3, 3).to(volume.device))
    out = torch.fft.irfft2(spec, s=(d, d)).to(volume.dtype)
    return out[0] if single else out


def template_diameter(template: torch.Tensor, threshold: float = 0.05) -> float:
    """Diameter (pixels) of the template's support: twice the largest distance from the box
    centre of a voxel above ``threshold`` times the maximum, plus one voxel.

    Args:
        template: ``(D, D, D)`` potential.
        threshold: fraction of the maximum that counts as "inside".

    Returns:
        Diameter in pixels, at most ``D``.
    """
    d = template.shape[0]
    t = template.detach().to(torch.float32)
    peak = float(t.max())
    if peak <= 0:
        return float(d)
    idx = torch.nonzero(t > threshold * peak).to(torch.float32) - float(d // 2)
    radius = float(idx.norm(dim=1).max()) if len(idx) else 0.0
    return min(float(d), 2.0 * radius + 1.0)


def prepare_background(background: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a background image to ``shape`` and normalise it to zero mean, unit variance.

    Larger images are centre-cropped; smaller ones are extended by mirror tiling (no seams).

    Args:
        background: 2D array (e.g. a real micrograph), [y, x].
        shape: target ``(H, W)``.

    Returns:
        float64 ``(H, W)`` array with mean 0 and standard deviation 1.
    """
    b = np.asarray(background, dtype=np.float64)
    if b.ndim != 2:
        raise ValueError(f"background must be a 2D image, got shape {b.shape}")
    if not np.isfinite(b).all():
        raise ValueError("background has NaN or infinite values")
    h, w = shape
    while b.shape[0] < h or b.shape[1] < w:
        pad_y = min(max(h - b.shape[0], 0), b.shape[0])
        pad_x = min(max(w - b.shape[1], 0), b.shape[1])
        b = np.pad(b, ((0, pad_y), (0, pad_x)), mode="symmetric")
    y0 = (b.shape[0] - h) // 2
    x0 = (b.shape[1] - w) // 2
    b = b[y0 : y0 + h, x0 : x0 + w]
    std = b.std()
    if not std > 0:
        raise ValueError("background is constant; it has no texture to add")
    return (b - b.mean()) / std


def _delocalisation_px(
    defocus_max: float, pixel_size: float, voltage_kv: float, cs_mm: float
) -> int:
    """CTF delocalisation distance at Nyquist, in pixels (see :func:`delocalisation_distance`)."""
    dist = delocalisation_distance(defocus_max, voltage_kv, cs_mm, 0.5 / pixel_size)
    return int(math.ceil(dist / pixel_size))


def _place_centres(
    n: int,
    shape: tuple[int, int],
    box: int,
    min_separation: float,
    rng: np.random.Generator,
    max_tries: int = 200,
) -> np.ndarray:
    """Random integer centres (x, y), box inside the image, pairwise >= min_separation.

    Requests that cannot fit (more discs of diameter ``min_separation`` than a hexagonal
    packing holds in the area of allowed centres) are refused before any placement; the
    others are drawn with a cell grid, so each draw checks a few neighbours, not all
    particles placed so far.
    """
    h, w = shape
    lo = box // 2
    hi_y, hi_x = h - box + box // 2, w - box + box // 2
    s = float(min_separation)
    if n > 0 and s > 0:
        # discs of radius s/2 centred in the allowed rectangle: area bound of hex packing
        capacity = (hi_x - lo + 1 + s) * (hi_y - lo + 1 + s) / (math.sqrt(3) / 2 * s * s)
        if n > capacity:
            raise ValueError(
                f"{n} particles {s:.0f} px apart cannot fit in a {h} x {w} image (at most "
                f"about {int(capacity)}); use fewer particles, a larger image or a smaller "
                "minimum separation"
            )
    cell = max(s, 1.0)
    grid: dict[tuple[int, int], list[tuple[int, int]]] = {}
    centres: list[tuple[int, int]] = []
    attempts = 0
    while len(centres) < n:
        attempts += 1
        if attempts > max_tries * max(n, 1):
            raise ValueError(
                f"could only place {len(centres)} of {n} particles {s:.0f} px apart "
                f"in a {h} x {w} image; use fewer particles, a larger image or a smaller "
                "minimum separation"
            )
        x = int(rng.integers(lo, hi_x + 1))
        y = int(rng.integers(lo, hi_y + 1))
        gx, gy = int(x // cell), int(y // cell)
        near = (p for dx in (-1, 0, 1) for dy in (-1, 0, 1)
                for p in grid.get((gx + dx, gy + dy), ()))
        if all((x - cx) ** 2 + (y - cy) ** 2 >= s**2 for cx, cy in near):
            centres.append((x, y))
            grid.setdefault((gx, gy), []).append((x, y))
    return np.asarray(centres, dtype=np.int64).reshape(-1, 2)


def _check_inputs(template, pixel_size, shape, n_particles, fluence, defocus_spread):
    if not isinstance(template, torch.Tensor):
        template = torch.as_tensor(np.asarray(template))
    if template.dim() != 3 or len(set(template.shape)) != 1:
        raise ValueError(f"template must be a cubic volume (D, D, D), got {tuple(template.shape)}")
    if not torch.isfinite(template).all():
        raise ValueError("template has NaN or infinite values")
    if not (math.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel size must be positive, got {pixel_size}")
    d = template.shape[0]
    h, w = (int(s) for s in shape)
    if h < d or w < d:
        raise ValueError(f"micrograph shape {h} x {w} is smaller than the template box {d}")
    if n_particles < 0:
        raise ValueError(f"number of particles must be >= 0, got {n_particles}")
    if not (math.isfinite(fluence) and fluence > 0):
        raise ValueError(f"fluence must be positive (e-/A^2), got {fluence}")
    if defocus_spread < 0:
        raise ValueError(f"defocus spread must be >= 0 A, got {defocus_spread}")
    return template, (h, w)


def simulate_micrograph(
    template: torch.Tensor,
    pixel_size: float,
    shape: tuple[int, int],
    n_particles: int,
    defocus: float,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    fluence: float = 40.0,
    defocus_spread: float = 0.0,
    astigmatism: float = 0.0,
    astigmatism_angle: float = 0.0,
    background: np.ndarray | None = None,
    background_scale: float = 1.0,
    seed: int = 0,
    min_separation: float | None = None,
    shot_noise: bool = True,
    device: torch.device | str | None = None,
    progress: Callable[[int, int], None] | None = None,
    atoms: Atoms | None = None,
    centre: np.ndarray | None = None,
    solvent_potential: float = WATER_POTENTIAL_V,
    exposure: str = "none",
) -> SimulatedMicrograph:
    """Simulate a micrograph holding ``n_particles`` copies of ``template`` (model above).

    Args:
        template: ``(D, D, D)`` scattering potential in Volts, centre at voxel ``D//2``.
        pixel_size: Angstrom per pixel (of both the template and the micrograph).
        shape: micrograph ``(H, W)`` in pixels (each at least ``D``).
        n_particles: number of particles to place.
        defocus: mean defocus in A (positive = underfocus).
        voltage_kv: accelerating voltage, kV.
        cs_mm: spherical aberration, mm.
        amplitude_contrast: amplitude contrast fraction.
        fluence: electrons per A^2 (total exposure).
        defocus_spread: standard deviation (A) of per-particle defocus offsets (particles at
            different heights in the ice).
        astigmatism: ``defocus_u - defocus_v`` in A (same for all particles).
        astigmatism_angle: direction of ``defocus_u``, degrees from x towards y.
        background: optional real image used as background texture (any size).
        background_scale: texture standard deviation in units of the shot noise
            ``sqrt(N0)``.
        seed: random seed; the same seed gives the same image and truth.
        min_separation: minimum distance between particle centres in pixels (default: the
            template diameter from :func:`template_diameter`).
        shot_noise: draw Poisson counts (False: ``image`` = expected counts + background).
        device: torch device for the computation (default: the template's).
        progress: called as ``progress(done, total)`` after each particle.
        atoms: the atomic model the template was made from: particles are then projected
            exactly from the atoms (module docstring), centred like the template.
        centre: model point (A) at the template's centre voxel (default: centre of mass, as
            :func:`difftm.simulate.template.simulate_template`); only with ``atoms``.
        solvent_potential: mean inner potential (V) of the solvent displaced by the
            molecule (0: vacuum); only with ``atoms``.
        exposure: ``"none"``, ``"summed"`` or ``"dose-weighted"`` radiation-damage envelope
            (module docstring); uses ``fluence`` and ``voltage_kv``.

    Returns:
        :class:`SimulatedMicrograph` (image in counts, truth table, parameters, noiseless).

    Raises:
        ValueError: impossible parameters (one line), e.g. an image smaller than the
            template, a non-positive pixel size, or too many particles to place.
    """
    template, (h, w) = _check_inputs(
        template, pixel_size, shape, n_particles, fluence, defocus_spread
    )
    device = torch.device(device) if device is not None else template.device
    vol = template.to(device=device, dtype=torch.float32)
    d = vol.shape[0]
    rng = np.random.default_rng(seed)

    diameter = template_diameter(vol)
    separation = float(diameter if min_separation is None else min_separation)
    centres = _place_centres(n_particles, (h, w), d, separation, rng)
    angles = random_orientations(n_particles, rng)
    offsets = rng.normal(0.0, defocus_spread, n_particles) if defocus_spread > 0 else np.zeros(
        n_particles
    )
    df = defocus + offsets
    truth = pd.DataFrame(
        {
            "x": centres[:, 0],
            "y": centres[:, 1],
            "rot": angles[:, 0],
            "tilt": angles[:, 1],
            "psi": angles[:, 2],
            "defocus_u": df + 0.5 * astigmatism,
            "defocus_v": df - 0.5 * astigmatism,
            "defocus_angle": np.full(n_particles, float(astigmatism_angle)),
        },
        columns=list(TRUTH_COLUMNS),
    )

    sigma_e = interaction_constant(voltage_kv)
    max_df = float(np.abs(truth[["defocus_u", "defocus_v"]].to_numpy()).max()) if n_particles else 0
    deloc = _delocalisation_px(max_df, pixel_size, voltage_kv, cs_mm)
    padded = next_fast_size(max(2 * d, d + 2 * deloc))
    contrast = torch.zeros((h, w), device=device, dtype=torch.float32)
    rotations = euler_to_matrix(torch.from_numpy(angles)).to(torch.float32)
    lo = padded // 2 - d // 2
    envelope = _exposure_envelope(exposure, (padded, padded), pixel_size, fluence, voltage_kv,
                                  device)
    project = _particle_projector(vol, atoms, pixel_size, centre, solvent_potential, device)
    for i in range(n_particles):
        phase = project(rotations[i]) * sigma_e
        box = torch.zeros((padded, padded), device=device, dtype=torch.float32)
        box[lo : lo + d, lo : lo + d] = phase  # centre D//2 -> padded//2
        ctf = ctf_2d(
            (padded, padded), pixel_size, float(truth.defocus_u[i]), float(truth.defocus_v[i]),
            float(truth.defocus_angle[i]), voltage_kv, cs_mm, amplitude_contrast, device=device,
        )
        if envelope is not None:
            ctf = ctf * envelope
        particle = 2.0 * torch.fft.irfft2(torch.fft.rfft2(box) * ctf, s=(padded, padded))
        _add_box(contrast, particle, int(truth.x[i]), int(truth.y[i]))
        if progress is not None:
            progress(i + 1, n_particles)

    mean_counts = fluence * pixel_size**2
    expected = mean_counts * (1.0 + contrast)
    if shot_noise:
        gen = torch.Generator(device=device).manual_seed(int(seed))
        image = torch.poisson(expected.clamp_min(0.0), generator=gen)
    else:
        image = expected.clone()
    image_np = image.cpu().numpy().astype(np.float32)
    if background is not None:
        texture = prepare_background(background, (h, w))
        image_np = (image_np + background_scale * math.sqrt(mean_counts) * texture).astype(
            np.float32
        )
    params = {
        "pixel_size": float(pixel_size),
        "shape": [h, w],
        "n_particles": int(n_particles),
        "defocus": float(defocus),
        "defocus_spread": float(defocus_spread),
        "astigmatism": float(astigmatism),
        "astigmatism_angle": float(astigmatism_angle),
        "voltage_kv": float(voltage_kv),
        "cs_mm": float(cs_mm),
        "amplitude_contrast": float(amplitude_contrast),
        "fluence": float(fluence),
        "mean_counts": float(mean_counts),
        "sigma_e": float(sigma_e),
        "template_box": int(d),
        "template_diameter_px": float(diameter),
        "min_separation_px": separation,
        "padded_box": int(padded),
        "shot_noise": bool(shot_noise),
        "background": background is not None,
        "background_scale": float(background_scale) if background is not None else 0.0,
        "seed": int(seed),
        "projection": "atoms" if atoms is not None else "fourier-slice",
        "solvent_potential": float(solvent_potential) if atoms is not None else 0.0,
        "exposure": exposure,
        "model": "weak-phase, exact projection, per-particle CTF in a padded box, Poisson "
                 "counts",
    }
    return SimulatedMicrograph(
        image=image_np,
        truth=truth,
        params=params,
        noiseless=expected.cpu().numpy().astype(np.float32),
    )


def _particle_projector(
    volume: torch.Tensor,
    atoms: Atoms | None,
    pixel_size: float,
    centre: np.ndarray | None,
    solvent_potential: float,
    device: torch.device,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function: rotation (3, 3) -> projected potential (D, D) in V*A, float32."""
    d = volume.shape[0]
    if atoms is not None:
        def from_atoms(rotation: torch.Tensor) -> torch.Tensor:
            proj = projected_potential(atoms, pixel_size, d, rotation, centre=centre,
                                       solvent_potential=solvent_potential, device=device)
            return proj.to(torch.float32)
        return from_atoms
    projector = volume_projector(volume, device)

    def from_volume(rotation: torch.Tensor) -> torch.Tensor:
        spec = projector.project(rotation.reshape(1, 3, 3).to(device))
        return torch.fft.irfft2(spec, s=(d, d))[0].to(torch.float32) * pixel_size
    return from_volume


#: Exposure envelopes of :func:`simulate_micrograph`.
EXPOSURE_MODES = ("none", "summed", "dose-weighted")


def _exposure_envelope(
    mode: str,
    shape: tuple[int, int],
    pixel_size: float,
    fluence: float,
    voltage_kv: float,
    device: torch.device,
) -> torch.Tensor | None:
    """Radiation-damage envelope on the rfft2 grid of ``shape`` (module docstring), or None."""
    if mode not in EXPOSURE_MODES:
        raise ValueError(f"exposure must be one of {', '.join(EXPOSURE_MODES)}, got {mode!r}")
    if mode == "none":
        return None
    from difftm.fourier.frequencies import radial_frequency_2d
    from difftm.physics.dose import critical_exposure, dose_filter

    k = radial_frequency_2d(shape, pixel_size, rfft=True, device=device, dtype=torch.float64)
    if mode == "summed":
        return dose_filter(k, fluence, voltage_kv).to(torch.float32)
    ne = critical_exposure(k, voltage_kv)  # inf at k = 0
    x = fluence / ne
    safe = torch.where(x > 0, x, torch.ones_like(x))
    mean_power = torch.where(x > 1e-12, -torch.expm1(-safe) / safe, 1.0 - 0.5 * x)
    return torch.sqrt(mean_power).to(torch.float32)


def _add_box(image: torch.Tensor, box: torch.Tensor, x: int, y: int) -> None:
    """Add ``box`` (centre at ``P//2``) into ``image`` with its centre at pixel (x, y)."""
    p = box.shape[0]
    h, w = image.shape
    y0, x0 = y - p // 2, x - p // 2
    iy0, ix0 = max(y0, 0), max(x0, 0)
    iy1, ix1 = min(y0 + p, h), min(x0 + p, w)
    if iy1 <= iy0 or ix1 <= ix0:
        return
    image[iy0:iy1, ix0:ix1] += box[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
