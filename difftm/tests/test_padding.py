"""FFT-friendly sizes and centre-preserving pad/crop."""

import pytest
import torch

from difftm.fourier.padding import crop_center, is_fast_size, next_fast_size, pad_to


def _factors_ok(n: int) -> bool:
    for p in (2, 3, 5, 7):
        while n % p == 0:
            n //= p
    return n == 1


def test_next_fast_size_examples():
    assert [next_fast_size(n) for n in (1, 11, 13, 17, 97, 121, 127, 509, 1000)] == [
        1, 12, 14, 18, 98, 125, 128, 512, 1000
    ]


def test_next_fast_size_is_smallest():
    for n in range(1, 400):
        m = next_fast_size(n)
        assert m >= n and _factors_ok(m) and is_fast_size(m)
        assert not any(_factors_ok(k) for k in range(n, m))


def test_next_fast_size_rejects_nonpositive():
    with pytest.raises(ValueError, match=">= 1"):
        next_fast_size(0)


@pytest.mark.parametrize("old,new", [(4, 8), (5, 8), (4, 7), (5, 9), (6, 6)])
def test_pad_keeps_centre_and_crop_inverts(old, new):
    img = torch.arange(old * old, dtype=torch.float64).reshape(old, old) + 1
    padded = pad_to(img, (new, new))
    assert padded.shape == (new, new)
    assert padded[new // 2, new // 2] == img[old // 2, old // 2]
    assert padded.sum() == img.sum()
    assert torch.equal(crop_center(padded, (old, old)), img)


def test_pad_trailing_axes_of_batches_and_volumes():
    vol = torch.randn(2, 5, 6, 7)
    out = pad_to(vol, (8, 9, 10), value=0.0)
    assert out.shape == (2, 8, 9, 10)
    assert torch.equal(out[:, 4, 4, 5], vol[:, 2, 3, 3])
    assert torch.equal(crop_center(out, (5, 6, 7)), vol)


def test_crop_centre():
    img = torch.zeros(9, 10)
    img[4, 5] = 1.0
    out = crop_center(img, (4, 5))
    assert out[2, 2] == 1.0


def test_shape_errors():
    with pytest.raises(ValueError, match="crop_center"):
        pad_to(torch.zeros(8, 8), (6, 8))
    with pytest.raises(ValueError, match="pad_to"):
        crop_center(torch.zeros(8, 8), (10, 8))
