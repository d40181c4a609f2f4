"""Micrograph whitening and unit-variance scaling."""

import numpy as np
import torch

from difftm.search.preprocess import bandpass, clamp_outliers, prepare_micrograph


def _coloured_noise(shape=(256, 300), seed=1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    white = rng.standard_normal(shape)
    ky = np.fft.fftfreq(shape[0])[:, None]
    kx = np.fft.rfftfreq(shape[1])[None, :]
    k = np.sqrt(ky**2 + kx**2)
    colour = 1.0 / (0.02 + k)  # strongly coloured, like a CTF-free micrograph envelope
    return np.fft.irfft2(np.fft.rfft2(white) * colour, s=shape) * 7.0 + 100.0


def test_whitened_image_is_white_with_unit_variance():
    prep = prepare_micrograph(_coloured_noise(), pixel_size=1.5)
    img = torch.fft.irfft2(prep.spectrum.to(torch.complex128), s=prep.shape).numpy()
    assert abs(img.mean()) < 1e-6
    assert abs(img.std() - 1.0) < 0.02
    # flat spectrum: low and high frequency shells carry the same power
    p = np.abs(prep.spectrum.numpy()) ** 2 / img.size
    k = np.sqrt(np.fft.fftfreq(256)[:, None] ** 2 + np.fft.rfftfreq(300)[None, :] ** 2)
    low = p[(k > 0.02) & (k < 0.08)].mean()
    high = p[(k > 0.35) & (k < 0.45)].mean()
    assert abs(low / high - 1.0) < 0.1


def test_clamp_outliers_replaces_hot_pixels_by_mean():
    rng = np.random.default_rng(0)
    img = torch.as_tensor(rng.standard_normal((64, 64)), dtype=torch.float32)
    img[10, 10] = 1e4
    out, n = clamp_outliers(img, 5.0)
    assert n == 1
    assert abs(float(out[10, 10]) - float(img.double().mean())) < 1e-3


def test_nan_micrograph_is_rejected():
    img = np.zeros((32, 32), dtype=np.float32)
    img[3, 4] = np.nan
    try:
        prepare_micrograph(img, 1.0)
    except ValueError as err:
        assert "NaN" in str(err)
    else:
        raise AssertionError("NaN image accepted")


def test_bandpass_edges():
    k = torch.tensor([0.0, 0.05, 0.1, 0.3, 0.5])
    b = bandpass(k, highpass_angstrom=50.0, lowpass_angstrom=4.0, edge_width=0.01)
    assert float(b[0]) == 0.0 and float(b[2]) == 1.0 and float(b[4]) == 0.0
