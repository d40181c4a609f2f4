"""Micrograph preparation for 2DTM: outlier clamp, whitening, unit-variance scaling.

After :func:`prepare_micrograph` the image spectrum ``I(k)`` (``torch.fft.rfft2`` layout) has
zero DC and ``E|I(k)|^2 = H*W`` at every other frequency: in real space the whitened image
has unit variance and no spectral colour. A template ``t`` with zero mean and unit L2 norm
then gives cross-correlations of unit variance under noise, so the 2DTM SNR is in units of
the noise standard deviation. The same whitening curve (a function of spatial frequency in
1/A) is applied to every template (:meth:`PreparedMicrograph.whitening_on_grid`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from difftm.fourier.frequencies import radial_frequency_2d


@dataclass
class PreparedMicrograph:
    """A micrograph ready for correlation.

    Attributes:
        spectrum: (H, W//2+1) complex64, whitened, unit-variance, DC zeroed.
        shape: (H, W) of the real-space image the spectrum describes: the micrograph padded
            to fast FFT sizes (see :func:`fast_shape`).
        image_shape: (H0, W0) of the micrograph itself (the top-left block of ``shape``).
        pixel_size: Angstrom per pixel.
        whitening_freq: (n_bins,) bin centres of the whitening curve in 1/A.
        whitening: (n_bins,) filter values 1/sqrt(radial power), normalised to the scaling
            actually applied to the image.
        n_clamped: number of outlier pixels replaced by the mean.
    """

    spectrum: torch.Tensor
    shape: tuple[int, int]
    pixel_size: float
    whitening_freq: torch.Tensor
    whitening: torch.Tensor
    n_clamped: int
    image_shape: tuple[int, int] | None = None

    def whitening_on_grid(self, k: torch.Tensor) -> torch.Tensor:
        """Evaluate the whitening curve at spatial frequencies ``k`` (1/A), any shape.

        Linear interpolation in ``|k|``; beyond the last bin the last value is held.
        """
        return _interp(k, self.whitening_freq.to(k.device), self.whitening.to(k.device))


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation like ``numpy.interp`` (xp increasing), in torch."""
    xf = x.reshape(-1).to(xp.dtype)
    idx = torch.searchsorted(xp, xf).clamp(1, xp.numel() - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    y0, y1 = fp[idx - 1], fp[idx]
    t = ((xf - x0) / (x1 - x0)).clamp(0.0, 1.0)
    return (y0 + t * (y1 - y0)).reshape(x.shape).to(x.dtype)


def clamp_outliers(image: torch.Tensor, n_sigma: float = 5.0) -> tuple[torch.Tensor, int]:
    """Replace pixels further than ``n_sigma`` standard deviations from the mean by the mean.

    Returns:
        The cleaned image (a new tensor) and the number of pixels replaced.
    """
    mean = image.mean(dtype=torch.float64)
    std = image.double().std()
    bad = (image.double() - mean).abs() > n_sigma * std
    out = torch.where(bad, mean.to(image.dtype), image)
    return out, int(bad.sum())


def radial_bins(shape: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """Integer radial bin (in Fourier pixels of the longer side) of each rfft2 element."""
    h, w = shape
    ky = torch.fft.fftfreq(h, device=device, dtype=torch.float64) * max(h, w)
    kx = torch.fft.rfftfreq(w, device=device, dtype=torch.float64) * max(h, w)
    r = torch.sqrt(ky[:, None] ** 2 + kx[None, :] ** 2)
    return torch.round(r).to(torch.int64)


#: Seed of the noise that fills the padding of micrographs with slow FFT sizes.
PAD_NOISE_SEED = 20141
#: Prime factors of fast FFT sizes for this purpose. Sizes like 4092 = 4 x 3 x 11 x 31 (K3)
#: are padded.
_FAST = (2, 3, 5, 7)


def fast_shape(shape: tuple[int, int]) -> tuple[int, int]:
    """The smallest (H, W) >= ``shape`` whose sizes have no prime factor above 7."""
    from difftm.fourier.padding import next_fast_size

    return next_fast_size(int(shape[0])), next_fast_size(int(shape[1]))


def edge_window(shape: tuple[int, int], width: int,
                device: torch.device | str | None = None) -> torch.Tensor:
    """Separable raised-cosine window (float64): 1 inside, falling to ~0 over ``width``
    pixels at every edge (capped at a quarter of each side)."""
    def ramp(n: int) -> torch.Tensor:
        r = torch.ones(n, dtype=torch.float64, device=device)
        m = min(int(width), n // 4)
        if m > 0:
            t = 0.5 - 0.5 * torch.cos(torch.pi * (torch.arange(m, dtype=torch.float64,
                                                                device=device) + 0.5) / m)
            r[:m] = t
            r[n - m:] = t.flip(0)
        return r

    return ramp(shape[0])[:, None] * ramp(shape[1])[None, :]


def prepare_micrograph(
    image: np.ndarray | torch.Tensor,
    pixel_size: float,
    device: torch.device | str = "cpu",
    outlier_sigma: float = 5.0,
    whiten: bool = True,
    pad_to_fast: bool = True,
    edge_taper: int = 0,
) -> PreparedMicrograph:
    """Clamp outliers, FFT, zero the DC term, whiten and scale a micrograph.

    Args:
        image: (H, W) real image.
        pixel_size: Angstrom per pixel.
        device: where the spectrum lives.
        outlier_sigma: clamp threshold in standard deviations.
        whiten: divide by the square root of the radially averaged power spectrum; if False
            only a global scale is applied (unit variance).
        pad_to_fast: pad sizes with prime factors above 7 (e.g. K3's 4092) to fast FFT
            sizes after whitening, filling the padding with seeded unit white noise; the
            search maps are cropped back to the micrograph.
        edge_taper: width (pixels) of a raised-cosine taper that brings the mean-subtracted
            micrograph to zero at its edges before the FFT (0: none). A real micrograph's
            opposite edges do not match, and the FFT's wrap-around turns that step into a
            line of strong whitened contrast that templates reaching across the edge
            correlate with (measured: every false positive on a real background at 1 A/px
            sat on the border). The power spectrum is divided by the mean squared taper,
            so the untapered interior still has unit variance.

    Returns:
        A :class:`PreparedMicrograph`.
    """
    img = torch.as_tensor(np.asarray(image, dtype=np.float32) if isinstance(image, np.ndarray)
                          else image, dtype=torch.float32, device=device)
    if img.ndim != 2:
        raise ValueError(f"micrograph must be 2D, got shape {tuple(img.shape)}")
    if not bool(torch.isfinite(img).all()):
        raise ValueError("micrograph contains NaN or infinite values")
    img, n_clamped = clamp_outliers(img, outlier_sigma)
    img = img - img.mean(dtype=torch.float64).to(torch.float32)
    h, w = img.shape
    n = h * w
    power_scale = 1.0
    if edge_taper > 0:
        window = edge_window((h, w), int(edge_taper), device=device)
        img = img * window.to(torch.float32)
        power_scale = float((window * window).mean())
    spec = torch.fft.rfft2(img.double())
    spec[0, 0] = 0
    power = spec.real**2 + spec.imag**2
    bins = radial_bins((h, w), device=device)
    n_bins = int(bins.max()) + 1
    # Hermitian weights: the columns 1..W/2-1 (rfft) stand for two frequencies each.
    weight = torch.full((h, w // 2 + 1), 2.0, dtype=torch.float64, device=device)
    weight[:, 0] = 1.0
    if w % 2 == 0:
        weight[:, -1] = 1.0
    weight[0, 0] = 0.0
    psum = torch.zeros(n_bins, dtype=torch.float64, device=device).index_add_(
        0, bins.reshape(-1), (power * weight).reshape(-1))
    wsum = torch.zeros(n_bins, dtype=torch.float64, device=device).index_add_(
        0, bins.reshape(-1), weight.reshape(-1))
    radial_power = psum / wsum.clamp_min(1.0) / power_scale  # the untapered interior's
    if whiten:
        # Expected |I(k)|^2 for unit-variance white noise is n; set each shell to that.
        valid = radial_power > 0
        filt = torch.zeros_like(radial_power)
        filt[valid] = torch.sqrt(n / radial_power[valid])
        # shells with no power (only the DC shell) borrow their neighbour's value
        if not bool(valid[0]) and n_bins > 1:
            filt[0] = filt[1]
    else:
        total = float((power * weight).sum()) / n / power_scale  # interior sum of squares
        filt = torch.full_like(radial_power, np.sqrt(n / max(total, 1e-300)))
    spec = spec * filt[bins]
    spec[0, 0] = 0
    freq = torch.arange(n_bins, dtype=torch.float64, device=device) / (max(h, w) * pixel_size)
    padded = fast_shape((h, w)) if pad_to_fast else (h, w)
    if padded != (h, w):
        # The whitened image has unit variance per pixel; unit white noise in the padding
        # keeps every correlation's statistics those of the unpadded image (a template that
        # overhangs the edge sees noise of the same spectrum instead of the image's other
        # side), so no searched pixel changes its noise distribution. Seeded: deterministic.
        white = torch.fft.irfft2(spec, s=(h, w))
        gen = torch.Generator(device="cpu").manual_seed(PAD_NOISE_SEED)
        fill = torch.randn(padded, generator=gen, dtype=torch.float64).to(device)
        fill[:h, :w] = white
        spec = torch.fft.rfft2(fill)
        spec[0, 0] = 0
    return PreparedMicrograph(
        spectrum=spec.to(torch.complex64),
        shape=padded,
        pixel_size=float(pixel_size),
        whitening_freq=freq,
        whitening=filt,
        n_clamped=n_clamped,
        image_shape=(h, w),
    )


def bandpass(
    k: torch.Tensor,
    highpass_angstrom: float | None = None,
    lowpass_angstrom: float | None = None,
    edge_width: float = 0.02,
) -> torch.Tensor:
    """Soft band-pass weights (raised-cosine edges) at spatial frequencies ``k`` in 1/A.

    Args:
        k: spatial frequency magnitudes (1/A).
        highpass_angstrom: remove structure larger than this (None: keep all low frequencies).
        lowpass_angstrom: remove detail finer than this resolution (None: no limit).
        edge_width: width of the cosine edges in 1/A.
    """
    out = torch.ones_like(k)
    if lowpass_angstrom is not None:
        k_lp = 1.0 / lowpass_angstrom
        t = ((k - k_lp) / edge_width).clamp(0.0, 1.0)
        out = out * 0.5 * (1 + torch.cos(torch.pi * t))
    if highpass_angstrom is not None:
        k_hp = 1.0 / highpass_angstrom
        t = ((k_hp - k) / edge_width).clamp(0.0, 1.0)
        out = out * 0.5 * (1 + torch.cos(torch.pi * t))
    return out


def template_filter(
    prepared: PreparedMicrograph,
    box: int,
    highpass_angstrom: float | None = None,
    lowpass_angstrom: float | None = None,
) -> torch.Tensor:
    """Whitening x band-pass on the (box, box//2+1) rfft grid of a template, float32."""
    k = radial_frequency_2d((box, box), prepared.pixel_size, rfft=True,
                            device=prepared.spectrum.device, dtype=torch.float64)
    filt = prepared.whitening_on_grid(k) * bandpass(k, highpass_angstrom, lowpass_angstrom)
    return filt.to(torch.float32)
