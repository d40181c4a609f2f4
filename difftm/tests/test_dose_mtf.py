"""Exposure (dose) weighting and detector MTF curves."""

import math

import numpy as np
import pytest
import torch

from difftm.physics.dose import critical_exposure, dose_filter
from difftm.physics.mtf import (
    DETECTORS,
    ParametricMtf,
    TabulatedMtf,
    get_mtf,
    mtf_at_frequencies,
    read_mtf_file,
)

K = torch.tensor([0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.5], dtype=torch.float64)


def test_critical_exposure_formula():
    ne = critical_exposure(torch.tensor([0.1, 0.25], dtype=torch.float64))
    expected = [0.245 * 0.1**-1.665 + 2.81, 0.245 * 0.25**-1.665 + 2.81]
    np.testing.assert_allclose(ne.numpy(), expected)
    assert critical_exposure(torch.tensor([0.0])).isinf().all()
    ne200 = critical_exposure(torch.tensor([0.1], dtype=torch.float64), voltage_kv=200)
    assert ne200.item() == pytest.approx(0.8 * expected[0])


@pytest.mark.parametrize("fluence", [5.0, 30.0, 60.0])
def test_dose_filter_is_average_attenuation(fluence):
    got = dose_filter(K, fluence)
    n = torch.linspace(0, fluence, 20001, dtype=torch.float64)
    ne = critical_exposure(K[1:])
    amp = torch.exp(-n[None, :] / (2 * ne[:, None]))
    numeric = torch.trapezoid(amp, n, dim=1) / fluence
    torch.testing.assert_close(got[1:], numeric, rtol=1e-7, atol=1e-9)
    assert got[0].item() == 1.0
    assert torch.all(got[1:] < got[:-1])  # decreasing with k
    # closed form from the docstring
    closed = 2 * ne / fluence * (1 - torch.exp(-fluence / (2 * ne)))
    torch.testing.assert_close(got[1:], closed)


def test_dose_filter_splits_over_exposure():
    f1, f2 = 12.0, 28.0
    whole = dose_filter(K, f1 + f2)
    parts = (f1 * dose_filter(K, f1) + f2 * dose_filter(K, f2, pre_exposure=f1)) / (f1 + f2)
    torch.testing.assert_close(whole, parts)
    assert torch.all(dose_filter(K, 60.0) <= dose_filter(K, 20.0))
    assert torch.all(dose_filter(K, 40.0, voltage_kv=200) <= dose_filter(K, 40.0))


def test_dose_filter_bad_input():
    with pytest.raises(ValueError, match="fluence"):
        dose_filter(K, 0.0)
    with pytest.raises(ValueError, match="200 and 300 kV"):
        dose_filter(K, 30.0, voltage_kv=120)


# points from the vendors' published 300 kV curves (frequency as fraction of Nyquist)
PUBLISHED = {
    "k3": [(0.3175, 0.9475), (0.5079, 0.8859), (0.7937, 0.7481), (0.9524, 0.6620)],
    "falcon4": [(0.3125, 0.7745), (0.625, 0.3830), (0.7812, 0.2332), (0.9375, 0.1176)],
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_named_detectors_follow_published_curves(name):
    mtf = get_mtf(name)
    f = torch.tensor([p[0] for p in PUBLISHED[name]], dtype=torch.float64)
    expected = torch.tensor([p[1] for p in PUBLISHED[name]], dtype=torch.float64)
    torch.testing.assert_close(mtf(f), expected, atol=0.015, rtol=0)
    assert mtf(torch.tensor([0.0])).item() == pytest.approx(1.0)
    grid = torch.linspace(0, math.sqrt(3), 200)
    values = mtf(grid)
    assert torch.all(values[1:] <= values[:-1] + 1e-7) and torch.all(values > 0)


def test_ideal_detector_is_pixel_aperture():
    ideal = get_mtf("IDEAL")
    assert ideal(torch.tensor([1.0])).item() == pytest.approx(2 / math.pi)
    # frequency in 1/A -> fraction of Nyquist with the pixel size
    k = torch.tensor([0.25])
    assert mtf_at_frequencies(ideal, k, 2.0).item() == pytest.approx(2 / math.pi)


def test_two_column_file_and_star_file(tmp_path):
    f = np.linspace(0, 1, 41)
    vals = DETECTORS["falcon4"](torch.tensor(f)).numpy()
    text = tmp_path / "det.txt"
    rows = list(zip(f, vals, strict=True))
    text.write_text("# freq/Nyquist  MTF\n" + "\n".join(f"{a} {b}" for a, b in rows))
    star = tmp_path / "det.star"
    star.write_text("data_mtf\nloop_\n_rlnResolutionInversePixel\n_rlnMtfValue\n"
                    + "\n".join(f"{a / 2} {b}" for a, b in rows) + "\n")
    query = torch.tensor([0.0, 0.1, 0.333, 0.5, 0.9, 1.0, 1.5])
    exact = DETECTORS["falcon4"](query)
    for path in (text, star):
        mtf = get_mtf(path)
        assert isinstance(mtf, TabulatedMtf)
        got = mtf(query)
        torch.testing.assert_close(got[:-1], exact[:-1], atol=2e-3, rtol=0)
        assert got[-1].item() == pytest.approx(float(vals[-1]), abs=1e-6)  # held beyond


def test_mtf_spec_errors(tmp_path):
    assert get_mtf("none") is None and get_mtf(None) is None
    assert isinstance(get_mtf("k3"), ParametricMtf)
    with pytest.raises(ValueError, match="unknown MTF 'k9'"):
        get_mtf("k9")
    bad = tmp_path / "bad.txt"
    bad.write_text("0 1\n0.5 oops\n")
    with pytest.raises(ValueError, match=r"bad\.txt: line 2"):
        read_mtf_file(bad)
    unsorted = tmp_path / "unsorted.txt"
    unsorted.write_text("0 1\n0.5 0.8\n0.4 0.7\n")
    with pytest.raises(ValueError, match="increasing"):
        get_mtf(unsorted)
    with pytest.raises(FileNotFoundError):
        read_mtf_file(tmp_path / "missing.txt")
