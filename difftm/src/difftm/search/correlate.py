"""The inner loop of 2DTM: template spectra for a batch of poses, and their correlations.

For a flat search index ``p = orientation * n_defocus + defocus_plane`` the template is
``t = irfft2(P(R) * CTF(defocus) * whitening * bandpass)`` at box size D (P is the central
slice of the template volume's Fourier transform), minus the mean of its edge pixels, scaled
so that zero-padded to the micrograph it has zero mean and unit L2 norm. The correlation map
``CC = irfft2(conj(T_pad) * I)`` has unit variance under (whitened) noise and is indexed by
the pixel of the template centre.

Template padding: the CTF delocalises a projection's signal by up to
``lambda |df| k_max + Cs lambda^3 k_max^3`` (:func:`difftm.physics.ctf.delocalisation_distance`;
~170 px at 1 A/px and 15,000 A). Filtering by the CTF inside the D x D box would wrap those
fringes around and lose matched-filter SNR, so the projection is first zero-padded to a fast
FFT size ``P >= D + 2 x delocalisation`` (:func:`padded_template_size`) and the CTF, whitening
and band-pass are applied there; the edge mean and the unit norm are taken over the P x P
template. With ``P == D`` (``padding="none"``) the slice is filtered directly, as before.

The padded forward FFT is pruned: ``rfft`` along x runs on the D non-zero rows only, then a
length-H FFT along y on W//2+1 columns; the wrap that puts the template centre at the origin
is a phase ramp folded once into the image spectrum instead of into every template.
"""

from __future__ import annotations

import math

import torch

from difftm.fourier.padding import is_fast_size, next_fast_size
from difftm.fourier.projector import FourierSliceProjector
from difftm.physics.ctf import ctf_2d, delocalisation_distance
from difftm.search.preprocess import PreparedMicrograph


def padded_template_size(
    padding: str | int,
    box: int,
    shape: tuple[int, int],
    pixel_size: float,
    max_defocus: float,
    voltage_kv: float,
    cs_mm: float,
    lowpass_angstrom: float | None = None,
) -> int:
    """Edge P (pixels) of the box in which templates are CTF-filtered.

    Args:
        padding: ``"auto"`` (``D + 2 x`` the CTF delocalisation of the highest frequency
            searched, rounded up to a fast FFT size), ``"none"`` (``P = D``, the peers'
            behaviour) or an explicit edge in pixels (``>= D``).
        box: template box D.
        shape: micrograph (H, W); P never exceeds ``min(H, W)`` (beyond that the correlation
            wraps around the micrograph anyway).
        pixel_size: Angstrom per pixel.
        max_defocus: largest |defocus| searched, Angstrom (micrograph defocus plus range).
        voltage_kv, cs_mm: microscope.
        lowpass_angstrom: search low-pass (limits the frequencies, hence the delocalisation).

    Returns:
        P with ``D <= P <= min(H, W)``.

    Raises:
        ValueError: an unknown mode or an explicit size smaller than the box.
    """
    limit = min(int(shape[0]), int(shape[1]))
    if isinstance(padding, str):
        mode = padding.strip().lower()
        if mode == "none":
            return box
        if mode.isdigit():
            padding = int(mode)
        elif mode != "auto":
            raise ValueError(f"template padding must be auto, none or a size in pixels, "
                             f"got {padding!r}")
    if not isinstance(padding, str):
        size = int(padding)
        if size < box:
            raise ValueError(f"template padding {size} px is smaller than the template box "
                             f"{box} px")
        return max(box, min(size, limit))
    k_max = 0.5 / pixel_size
    if lowpass_angstrom is not None:
        k_max = min(k_max, 1.0 / lowpass_angstrom)
    margin = delocalisation_distance(max_defocus, voltage_kv, cs_mm, k_max) / pixel_size
    want = next_fast_size(box + 2 * int(math.ceil(margin)))
    if want <= limit:
        return want
    fits = limit
    while fits > box and not is_fast_size(fits):
        fits -= 1
    return max(box, fits)


def padded_slices(slices: torch.Tensor, box: int, size: int,
                  shifts: torch.Tensor | None = None) -> torch.Tensor:
    """Central slices (B, D, D//2+1) as spectra (B, P, P//2+1) of the projections centred in a
    P x P box (zero-padded in real space; unchanged when P == D and no shifts).

    Args:
        slices: the central slices.
        box: D.
        size: P >= D.
        shifts: (B, 2) shifts (x, y) in pixels of the projections in the P x P box, applied
            as phase ramps (sub-pixel shifts, differentiable), or None.
    """
    if size == box and shifts is None:
        return slices
    # the rfft2 of the projection zero-padded to P x P (index P // 2 holding D // 2, as
    # pad_to places it) as two 1-D transforms, of the D rows and then of the P // 2 + 1
    # columns: the padding is implicit (n=P), the placement and the shifts are one phase
    # ramp per axis (the x ramp on the D rows, before the second transform)
    proj = torch.fft.irfft2(slices, s=(box, box))
    # placement: exp(-2 pi i k o / P), o = P // 2 - D // 2, phases reduced exactly (float64)
    idx = torch.arange(size, device=slices.device, dtype=torch.float64)
    turns = torch.remainder(idx * (size // 2 - box // 2), size) / size
    place = torch.polar(torch.ones_like(turns), -2.0 * math.pi * turns).to(torch.complex64)
    ramp_x, ramp_y = place[: size // 2 + 1], place[:, None]
    if shifts is not None:
        k = torch.fft.fftfreq(size, device=slices.device, dtype=torch.float32)
        kx = k[: size // 2 + 1].abs()  # rfft frequencies (an even P's Nyquist term: +0.5)
        sx = shifts[:, 0].to(torch.float32)[:, None, None]
        sy = shifts[:, 1].to(torch.float32)[:, None, None]
        ramp_x = ramp_x * torch.exp(-2j * math.pi * kx * sx)
        ramp_y = ramp_y * torch.exp(-2j * math.pi * k[:, None] * sy)
    rows = torch.fft.rfft(proj, n=size, dim=-1) * ramp_x
    return torch.fft.fft(rows, n=size, dim=-2) * ramp_y


def normalise_templates(t: torch.Tensor, n_pixels: int) -> torch.Tensor:
    """Subtract each template's edge mean, then scale it to unit norm as if zero-padded to
    ``n_pixels`` (zero mean over the padded image): correlations with the whitened
    micrograph then have unit variance under noise. Differentiable.

    Args:
        t: (B, P, P) real templates.
        n_pixels: pixels of the (FFT-padded) micrograph grid.
    """
    d = t.shape[-1]
    edge_sum = (t[:, 0, :].sum(1) + t[:, -1, :].sum(1) + t[:, 1:-1, 0].sum(1)
                + t[:, 1:-1, -1].sum(1))
    t = t - (edge_sum / (4 * d - 4))[:, None, None]
    s1 = t.sum(dim=(1, 2), dtype=torch.float64)
    s2 = (t * t).sum(dim=(1, 2), dtype=torch.float64)
    norm = torch.sqrt((s2 - s1 * s1 / float(n_pixels)).clamp_min(1e-30)).to(t.dtype)
    return t / norm[:, None, None]


class Correlator:
    """Computes correlation maps of one prepared micrograph with projections of a template.

    Args:
        prepared: the whitened micrograph.
        projector: Fourier-slice projector of the template volume (box D).
        rotations: (N_orient, 3, 3) rotation matrices of the search grid.
        defocus_offsets: (N_def,) defocus offsets in Angstrom added to U and V.
        template_filter: (P, P//2+1) real filter (whitening x band-pass) on the grid of the
            padded template box P >= D (:func:`padded_template_size`; P = D: no padding).
        ctf_params: keyword arguments of :func:`difftm.physics.ctf.ctf_2d` other than the
            shape, pixel size and defocus U/V (voltage_kv, cs_mm, amplitude_contrast,
            defocus_angle, phase_shift_deg).
        defocus_u, defocus_v: micrograph defocus in Angstrom.
    """

    def __init__(
        self,
        prepared: PreparedMicrograph,
        projector: FourierSliceProjector,
        rotations: torch.Tensor,
        defocus_offsets: torch.Tensor,
        template_filter: torch.Tensor,
        ctf_params: dict,
        defocus_u: float,
        defocus_v: float,
    ) -> None:
        self.device = prepared.spectrum.device
        self.projector = projector
        self.rotations = rotations.to(self.device, torch.float32)
        self.n_defocus = int(defocus_offsets.numel())
        #: box D of the projections (the particle's extent; sets the excluded border)
        self.box = int(projector.size)
        #: box P in which templates are CTF-filtered and correlated (P >= D)
        self.template_size = int(template_filter.shape[0])
        h, w = prepared.shape
        #: shape of the correlation maps (the micrograph padded to fast FFT sizes)
        self.shape = (h, w)
        #: shape of the micrograph itself (the top-left block of the maps)
        self.image_shape = tuple(prepared.image_shape or prepared.shape)
        d = self.template_size
        if self.box > h or self.box > w:
            raise ValueError(
                f"micrograph {h}x{w} px is smaller than the template box {self.box} px")
        if d < self.box or d > max(min(h, w), self.box):
            raise ValueError(f"padded template box {d} px must lie between the template box "
                             f"{self.box} px and the micrograph size {min(h, w)} px")
        offsets = defocus_offsets.to(self.device, torch.float32)
        ctf = ctf_2d(
            (d, d), prepared.pixel_size, defocus_u + offsets, defocus_v + offsets,
            device=self.device, dtype=torch.float32, **ctf_params,
        )
        # (N_def, P, P//2+1): everything that multiplies the projection
        self.filters = (ctf * template_filter.to(self.device)).to(torch.float32)
        # Image spectrum with the centre wrap folded in: template placed at the top-left
        # corner gives CC at the template origin; multiplying I by exp(-2 pi i k c) moves it
        # to the template centre c = (P//2, P//2).
        c = d // 2
        ky = torch.fft.fftfreq(h, device=self.device, dtype=torch.float64)
        kx = torch.fft.rfftfreq(w, device=self.device, dtype=torch.float64)
        phase = torch.exp(-2j * torch.pi * (ky[:, None] * c + kx[None, :] * c))
        # CC(p) = sum_u t(u) i(p + u - c) = CC_corner(p - c): a shift by c in real space.
        image = prepared.spectrum.to(torch.complex128) * phase
        self.n_pixels_total = h * w
        # Layout: CUDA keeps torch.fft's natural (H, W//2+1) layout; on the CPU, FFTs along a
        # strided axis are slow (irfft2 of a 1024^2 batch: 16 ms/map vs 11 ms for the same
        # transforms on contiguous rows plus one transpose), so the spectrum is kept
        # transposed (W//2+1, H) and the template is flipped in its box instead of
        # conjugating its spectrum: for real t, flip_box(t) has FFT conj(T) times
        # exp(-2 pi i k (P-1)), a phase folded into the image once (saves a full pass).
        self.layout = "standard" if self.device.type == "cuda" else "transposed"
        if self.layout == "standard":
            self.image = image.to(torch.complex64)
        else:
            self.image = (image * self._flip_phase()).to(torch.complex64).T.contiguous()

    @property
    def n_search(self) -> int:
        """Number of search positions (orientations x defocus planes)."""
        return int(self.rotations.shape[0]) * self.n_defocus

    def templates(self, indices: torch.Tensor) -> torch.Tensor:
        """Real-space normalised templates (B, P, P) for flat search indices (B,)."""
        idx = indices.to(self.device)
        orient = torch.div(idx, self.n_defocus, rounding_mode="floor")
        plane = idx - orient * self.n_defocus
        uniq, inverse = torch.unique(orient, sorted=True, return_inverse=True)
        slices = self.projector.project(self.rotations[uniq])  # (U, D, D//2+1)
        return self.filter_slices(slices, inverse, plane)

    def filter_slices(
        self, slices: torch.Tensor, inverse: torch.Tensor, plane: torch.Tensor
    ) -> torch.Tensor:
        """Normalised templates (B, P, P) from central slices (U, D, D//2+1).

        ``inverse`` (B,) picks each template's slice and ``plane`` (B,) its defocus plane.
        """
        d = self.template_size
        spec = padded_slices(slices, self.box, d)[inverse] * self.filters[plane]
        return normalise_templates(torch.fft.irfft2(spec, s=(d, d)), self.n_pixels_total)

    def _flip_phase(self) -> torch.Tensor:
        """exp(2 pi i k (P-1)) on the (H, W//2+1) grid: turns the spectrum of a box-flipped
        template into the conjugate spectrum of the template (transposed layout)."""
        h, w = self.shape
        d = self.template_size
        ky = torch.fft.fftfreq(h, device=self.device, dtype=torch.float64)
        kx = torch.fft.rfftfreq(w, device=self.device, dtype=torch.float64)
        return torch.exp(2j * torch.pi * (ky[:, None] * (d - 1) + kx[None, :] * (d - 1)))

    def set_layout(self, layout: str) -> None:
        """Switch between the ``standard`` and ``transposed`` spectrum layouts (tests)."""
        if layout == self.layout:
            return
        flip = self._flip_phase()
        img = self.image.to(torch.complex128)
        if layout == "transposed":
            self.image = (img * flip).to(torch.complex64).T.contiguous()
        elif layout == "standard":
            self.image = (img.T / flip).to(torch.complex64).contiguous()
        else:
            raise ValueError(f"unknown layout {layout!r}")
        self.layout = layout

    def correlate_templates(self, t: torch.Tensor) -> torch.Tensor:
        """Correlation maps (B, H, W) of real templates (B, P, P) with the micrograph."""
        return self.inverse(self.product_spectrum(t))

    def product_spectrum(self, t: torch.Tensor) -> torch.Tensor:
        """Pruned padded forward FFT of templates (B, P, P) times the image spectrum.

        Returns the spectrum in the correlator's layout, ready for :meth:`inverse`.
        """
        h, w = self.shape
        if self.layout == "standard":
            rows = torch.fft.rfft(t, n=w, dim=-1)  # pruned: P rows only
            spec = torch.fft.fft(rows, n=h, dim=-2)  # zero rows P..H-1 implied
            return torch.conj_physical(spec).mul_(self.image)
        rows = torch.fft.rfft(t.flip(-1, -2), n=w, dim=-1)  # pruned: P rows, (B, P, W/2+1)
        cols = rows.transpose(-1, -2).contiguous()  # (B, W/2+1, P), small
        return torch.fft.fft(cols, n=h, dim=-1).mul_(self.image)  # (B, W/2+1, H)

    def inverse(self, spec: torch.Tensor) -> torch.Tensor:
        """The full-size inverse FFT of :meth:`product_spectrum`: CC maps (B, H, W)."""
        h, w = self.shape
        if self.layout == "standard":
            return torch.fft.irfft2(spec, s=(h, w))
        spec = torch.fft.ifft(spec, dim=-1).transpose(-1, -2).contiguous()  # (B, H, W/2+1)
        return torch.fft.irfft(spec, n=w, dim=-1)

    def correlate(self, indices: torch.Tensor) -> torch.Tensor:
        """Correlation maps (B, H, W) for flat search indices (B,)."""
        return self.correlate_templates(self.templates(indices))
