"""Correlation core: position convention, normalisation, noise statistics."""

import numpy as np
import pytest
import torch

from difftm.search.config import SearchConfig
from difftm.search.engine import build_correlator

from search_helpers import blob_volume, white_noise


def _correlator(image, volume, tmp_path, steps=(30.0, 30.0), offsets=(0.0,), whiten=True,
                padding="auto"):
    from difftm.geometry.grids import orientation_grid

    cfg = SearchConfig(micrograph=tmp_path / "m.mrc", template=tmp_path / "t.mrc",
                       output=tmp_path / "out", pixel_size=2.0, defocus_u=8000.0,
                       whiten=whiten, template_padding=padding)
    angles = orientation_grid(*steps)
    return build_correlator(cfg, image, volume, angles,
                            torch.tensor(offsets, dtype=torch.float64), torch.device("cpu"))


@pytest.mark.parametrize("padding", ["none", "auto"])
def test_cc_matches_brute_force_correlation_with_centre_convention(tmp_path, padding):
    h, w = 40, 42  # fast FFT sizes: the prepared image is not padded
    image = white_noise((h, w), seed=3)
    vol = blob_volume(12, seed=1)
    corr = _correlator(image, vol, tmp_path, whiten=False, padding=padding)
    d = corr.template_size  # the correlated (padded) template box
    assert d == (12 if padding == "none" else 40)  # auto: capped by the 40 px micrograph
    t = torch.as_tensor(np.random.default_rng(5).standard_normal((1, d, d)), dtype=torch.float32)
    cc = corr.correlate_templates(t)[0].double().numpy()  # default (CPU: transposed) layout
    corr.set_layout("standard")
    np.testing.assert_allclose(corr.correlate_templates(t)[0].double().numpy(), cc, atol=1e-4)
    # the image as the correlator sees it (prepared, unit variance), undoing the phase ramp
    prepared = np.fft.irfft2(
        (corr.image.to(torch.complex128).numpy()
         * np.exp(2j * np.pi * (np.fft.fftfreq(h)[:, None] * (d // 2)
                                + np.fft.rfftfreq(w)[None, :] * (d // 2)))), s=(h, w))
    c = d // 2
    tt = t[0].double().numpy()
    ref = np.zeros((h, w))
    for py in range(h):
        for px in range(w):
            rows = (py + np.arange(d) - c) % h
            cols = (px + np.arange(d) - c) % w
            ref[py, px] = (tt * prepared[np.ix_(rows, cols)]).sum()
    np.testing.assert_allclose(cc, ref, atol=1e-3)


def test_template_is_normalised_and_found_at_its_centre(tmp_path):
    h, w = 96, 110
    vol = blob_volume(24, seed=2)
    corr = _correlator(white_noise((h, w), seed=4), vol, tmp_path)
    idx = torch.tensor([5])
    t = corr.templates(idx)[0].double().numpy()
    d = corr.template_size
    assert d > 24  # CTF-filtered in a padded box
    assert corr.shape == (96, 112) and corr.image_shape == (96, 110)  # 110 = 2 x 5 x 11
    n = corr.shape[0] * corr.shape[1]  # unit norm over the (FFT-padded) correlation grid
    assert abs((t**2).sum() - t.sum() ** 2 / n - 1.0) < 1e-5
    # plant the template into an otherwise empty image: the peak sits at the centre pixel
    image = np.zeros((h, w), dtype=np.float32)
    y0, x0 = 48, 55
    image[y0 - d // 2 : y0 - d // 2 + d, x0 - d // 2 : x0 - d // 2 + d] = t
    corr2 = _correlator(image, vol, tmp_path, whiten=False)
    cc = corr2.correlate(idx)[0].numpy()
    assert np.unravel_index(np.argmax(cc), cc.shape) == (y0, x0)


@pytest.mark.parametrize("seed", [0, 1])
def test_noise_only_correlations_have_zero_mean_unit_sd(tmp_path, seed):
    rng = np.random.default_rng(seed)
    h, w, d = 256, 256, 32
    # coloured noise: whitening must still give unit-variance correlations
    white = rng.standard_normal((h, w))
    k = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2)
    image = np.fft.irfft2(np.fft.rfft2(white) / (0.05 + k), s=(h, w)).astype(np.float32)
    corr = _correlator(image, blob_volume(d, seed=seed), tmp_path, steps=(20.0, 20.0))
    # the interior: templates that reach into the tapered edges (d/2 wide) see less variance
    m = corr.template_size // 2 + d // 2
    cc = corr.correlate(torch.arange(0, 40)).double().numpy()[:, m:-m, m:-m]
    assert abs(cc.mean()) < 0.02
    assert abs(cc.std() - 1.0) < 0.02


def test_transposed_and_standard_layouts_agree(tmp_path):
    h, w, d = 96, 130, 24  # non-square, so a transposed result could not pass
    corr = _correlator(white_noise((h, w), seed=7), blob_volume(d, seed=3), tmp_path)
    idx = torch.arange(0, 12)
    corr.set_layout("transposed")
    a = corr.correlate(idx)
    corr.set_layout("standard")
    b = corr.correlate(idx)
    assert a.shape == b.shape == (12, *corr.shape)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-5)


def test_edge_taper_removes_the_wrap_around_step_of_a_real_micrograph(tmp_path):
    """A micrograph whose left and right edges differ (a ramp under the noise, as ice
    thickness or illumination gradients give): without the taper the FFT's wrap-around step
    gives the strongest correlations along the border; with it (the default) the border
    looks like the interior."""
    rng = np.random.default_rng(4)
    h, w, d = 192, 192, 24
    image = rng.standard_normal((h, w)) + np.linspace(-6.0, 6.0, w)[None, :]
    vol = blob_volume(d, seed=5)
    lo, hi = d // 2, d - 1 - d // 2
    stats = {}
    for taper in (0, None):
        cfg = SearchConfig(micrograph=tmp_path / "m.mrc", template=tmp_path / "t.mrc",
                           output=tmp_path / "o", pixel_size=2.0, defocus_u=8000.0,
                           edge_taper=taper)
        from difftm.geometry.grids import orientation_grid

        corr = build_correlator(cfg, image.astype(np.float32), vol, orientation_grid(30.0, 30.0),
                                torch.zeros(1, dtype=torch.float64), torch.device("cpu"))
        cc = corr.correlate(torch.arange(0, 60)).abs().amax(0).numpy()[lo : h - hi, lo : w - hi]
        border = np.concatenate([cc[:, :8].ravel(), cc[:, -8:].ravel()])
        interior = cc[:, 40:-40].ravel()
        stats[taper] = (border.max(), interior.max())
    assert stats[0][0] > 1.5 * stats[0][1], stats  # the step dominates without the taper
    assert stats[None][0] < 1.15 * stats[None][1], stats  # and is gone with it


@pytest.mark.parametrize(("box", "size"), [(56, 350), (57, 351), (56, 351), (57, 350), (40, 40)])
def test_padded_slices_equal_a_real_space_pad_and_an_explicit_shift(box, size):
    """The padded spectra (two 1-D transforms, phase ramps) against the definition: the
    projection zero-padded in real space with index P // 2 holding D // 2 (pad_to), its
    rfft2, and a sub-pixel shift as the 2-D phase ramp exp(-2 pi i (kx sx + ky sy))."""
    import math

    from difftm.fourier.padding import pad_to
    from difftm.search.correlate import padded_slices

    gen = torch.Generator().manual_seed(box + size)
    proj = torch.randn(3, box, box, generator=gen)
    slices = torch.fft.rfft2(proj)
    shifts = torch.tensor([[0.0, 0.0], [0.3, -1.7], [-2.5, 0.45]])
    ref = torch.fft.rfft2(pad_to(proj, (size, size)))
    kx = torch.fft.rfftfreq(size)[None, None, :]
    ky = torch.fft.fftfreq(size)[None, :, None]
    ref_shifted = ref * torch.exp(-2j * math.pi * (kx * shifts[:, 0, None, None]
                                                   + ky * shifts[:, 1, None, None]))
    scale = float(ref.abs().max())
    assert float((padded_slices(slices, box, size) - ref).abs().max()) < 1e-5 * scale
    got = padded_slices(slices, box, size, shifts)
    assert float((got - ref_shifted).abs().max()) < 1e-5 * scale
