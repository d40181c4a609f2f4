"""The one scorer of difftm's local work: 2DTM scores of particles on centred crops.

For a batch of particles, each with a rotation ``R``, a sub-pixel shift ``s`` (pixels,
x then y) of its centre from an integer pixel ``p``, and a defocus offset ``dz`` (Angstrom,
added to the micrograph's U and V), the score is exactly the search's correlation

    CC(p + s) = sum_u t_{R, dz}(u - s) * i(p + u - c),   c = P // 2,

with ``i`` the whitened, unit-variance micrograph of the search (same preparation, same
whitening curve and band-pass) and ``t`` the search's template (central slice, padded to the
same P x P box, CTF x whitening x band-pass, edge mean removed, unit norm over the
micrograph's grid). The score is therefore in the search's SNR units: at ``s = 0`` and a
pose and defocus of the search's grid it equals the search's value at that pixel.

Only a P x P crop of the micrograph around each particle is touched (the correlation at one
position needs no full-size FFT), and every step is differentiable (the Fourier-slice
projector in ``R``, the CTF in ``dz``, the sub-pixel shift as a phase ramp), so autograd
gives d(score)/d(pose, shift, defocus) for all particles at once. ``lowpass`` adds a Gaussian
low-pass (1/A) for coarse-to-fine schedules; scores meant for reporting use none.

Refinement (:mod:`difftm.refine.optimize`), the accelerated search and classification all
score through this class.
"""

from __future__ import annotations

import numpy as np
import torch

from difftm.fourier.frequencies import radial_frequency_2d
from difftm.fourier.projector import FourierSliceProjector
from difftm.physics.ctf import ctf_2d
from difftm.search.correlate import normalise_templates, padded_slices
from difftm.search.preprocess import PreparedMicrograph, template_filter


def skew(v: torch.Tensor) -> torch.Tensor:
    """(B, 3) vectors -> (B, 3, 3) cross-product matrices."""
    z = torch.zeros_like(v[:, 0])
    return torch.stack([
        torch.stack([z, -v[:, 2], v[:, 1]], -1),
        torch.stack([v[:, 2], z, -v[:, 0]], -1),
        torch.stack([-v[:, 1], v[:, 0], z], -1),
    ], -2)


def rotation_update(delta: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """``exp([delta]_x) @ R``: a rotation-vector update (radians) of matrices (B, 3, 3).

    No gimbal lock: ``delta`` is a small rotation about any axis, applied on the left, and
    the exponential is smooth (and differentiable) at ``delta = 0``.
    """
    return torch.linalg.matrix_exp(skew(delta)) @ rotations


class ParticleScorer:
    """Scores particles of one micrograph under one template (module docstring).

    Args:
        prepared: the micrograph prepared exactly as for the search.
        projector: Fourier-slice projector of the template volume (box D).
        template_size: the search's padded template box P.
        ctf_params: ``defocus_angle``, ``voltage_kv``, ``cs_mm``, ``amplitude_contrast``,
            ``phase_shift_deg`` (and optionally ``b_factor``) of :func:`ctf_2d`.
        defocus_u, defocus_v: the micrograph's defocus, Angstrom.
        highpass, lowpass: the search's band-pass (Angstrom).
    """

    def __init__(self, prepared: PreparedMicrograph, projector: FourierSliceProjector,
                 template_size: int, ctf_params: dict, defocus_u: float, defocus_v: float,
                 highpass: float | None = None, lowpass: float | None = None) -> None:
        self.device = prepared.spectrum.device
        self.projector = projector
        self.box = int(projector.size)
        self.size = int(template_size)
        self.ctf_params = dict(ctf_params)
        self.defocus_u = float(defocus_u)
        self.defocus_v = float(defocus_v)
        self.pixel_size = float(prepared.pixel_size)
        h, w = prepared.shape
        self.n_pixels = h * w
        # whitened, unit-variance micrograph (on the search's FFT grid), real space
        self.image = torch.fft.irfft2(prepared.spectrum.to(torch.complex64), s=(h, w))
        self.image_shape = tuple(prepared.image_shape or prepared.shape)
        self.filter = template_filter(prepared, self.size, highpass, lowpass)
        p = self.size
        self.k = radial_frequency_2d((p, p), self.pixel_size, rfft=True, device=self.device,
                                     dtype=torch.float32)
        self._lowpass_cache: dict[float, torch.Tensor] = {}

    # -- building blocks -------------------------------------------------------------------
    def templates(self, rotations: torch.Tensor, defocus_offsets: torch.Tensor,
                  shifts: torch.Tensor | None = None,
                  lowpass: float | None = None,
                  magnification: torch.Tensor | None = None) -> torch.Tensor:
        """Normalised templates (B, P, P), shifted by ``shifts`` (B, 2) pixels (x, y).

        Args:
            rotations: (B, 3, 3) RELION matrices.
            defocus_offsets: (B,) Angstrom, added to defocus U and V.
            shifts: (B, 2) sub-pixel shifts of the template (x, y), or None.
            lowpass: extra Gaussian low-pass: frequencies are weighted by
                ``exp(-(k / lowpass)^2 / 2)`` (1/A); None for none.
            magnification: (B,) template voxel size over the micrograph's pixel size: the
                slice is read at ``m k`` (the template scaled by ``m`` in real space);
                None for 1.
        """
        p = self.size
        if magnification is not None:
            rotations = rotations * magnification.to(rotations)[:, None, None]
        slices = padded_slices(self.projector.project(rotations), self.box, p, shifts)
        dz = defocus_offsets.to(self.device, torch.float32)
        ctf = ctf_2d((p, p), self.pixel_size, self.defocus_u + dz, self.defocus_v + dz,
                     device=self.device, dtype=torch.float32, **self.ctf_params)
        weight = ctf * self.filter  # real: applied to the real and imaginary parts alike,
        if lowpass is not None:  # without promoting it to a complex array
            weight = weight * self._lowpass(float(lowpass))
        spec = torch.view_as_complex(torch.view_as_real(slices) * weight[..., None])
        return normalise_templates(torch.fft.irfft2(spec, s=(p, p)), self.n_pixels)

    def _lowpass(self, lowpass: float) -> torch.Tensor:
        """The Gaussian low-pass ``exp(-(k / lowpass)^2 / 2)`` on the template grid (cached:
        a refinement schedule uses a few values many times)."""
        if lowpass not in self._lowpass_cache:
            self._lowpass_cache[lowpass] = torch.exp(-0.5 * (self.k / lowpass) ** 2)
        return self._lowpass_cache[lowpass]

    def crops(self, centres: torch.Tensor) -> torch.Tensor:
        """Micrograph patches (B, P, P): ``patch[u] = i(p + u - c)`` for integer centres
        ``p`` (B, 2) as (x, y); indices wrap around the FFT grid as the search's do."""
        h, w = self.image.shape
        p = self.size
        c = p // 2
        off = torch.arange(p, device=self.device) - c
        cx = centres[:, 0].to(self.device, torch.int64)
        cy = centres[:, 1].to(self.device, torch.int64)
        rows = (cy[:, None] + off[None, :]) % h
        cols = (cx[:, None] + off[None, :]) % w
        return self.image[rows[:, :, None], cols[:, None, :]]

    def score(self, centres: torch.Tensor, rotations: torch.Tensor,
              shifts: torch.Tensor | None = None, defocus_offsets: torch.Tensor | None = None,
              lowpass: float | None = None, patches: torch.Tensor | None = None,
              magnification: torch.Tensor | None = None) -> torch.Tensor:
        """Scores (B,) in the search's SNR units (module docstring); differentiable in
        ``rotations``, ``shifts``, ``defocus_offsets`` and ``magnification``."""
        n = rotations.shape[0]
        if defocus_offsets is None:
            defocus_offsets = torch.zeros(n, device=self.device)
        t = self.templates(rotations, defocus_offsets, shifts, lowpass, magnification)
        if patches is None:
            patches = self.crops(centres)
        return (t * patches).sum(dim=(1, 2))

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_search(cls, cfg, image: np.ndarray, volume: np.ndarray,
                    device: torch.device | str = "cpu") -> ParticleScorer:
        """The scorer of a search configuration (:class:`difftm.search.config.SearchConfig`)
        with its micrograph and template arrays: the same preparation, projector, padded
        box, CTF and band-pass as the search (:func:`difftm.search.engine.search_setup`)."""
        from difftm.search.engine import search_setup

        offsets = torch.tensor(cfg.defocus_offsets(), dtype=torch.float64)
        setup = search_setup(cfg, image, volume, offsets, torch.device(device))
        return cls(setup.prepared, setup.projector, setup.template_size, setup.ctf_params,
                   cfg.defocus_u, cfg.defocus_v_resolved, cfg.highpass, cfg.lowpass)
