"""FFT-friendly sizes and centre-preserving padding/cropping.

Centre convention: an axis of length ``n`` has its centre at index ``n // 2`` (the fftshift
convention). :func:`pad_to` and :func:`crop_center` move that index onto the new centre, so
padding then cropping back is the identity and the centre pixel never moves.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = ["next_fast_size", "is_fast_size", "pad_to", "crop_center"]

_FAST_PRIMES = (2, 3, 5, 7)


def is_fast_size(n: int) -> bool:
    """True when ``n >= 1`` has no prime factor other than 2, 3, 5, 7."""
    if n < 1:
        return False
    for p in _FAST_PRIMES:
        while n % p == 0:
            n //= p
    return n == 1


def next_fast_size(n: int) -> int:
    """Smallest integer ``>= n`` whose prime factors are all in {2, 3, 5, 7}.

    Args:
        n: minimum size (>= 1).

    Returns:
        A size for which pocketfft / cuFFT transforms are fast.
    """
    n = int(n)
    if n < 1:
        raise ValueError(f"FFT size must be >= 1, got {n}")
    while not is_fast_size(n):
        n += 1
    return n


def _offsets(old: int, new: int) -> int:
    """Index in the new axis where old index 0 lands, so old n//2 maps onto new n//2."""
    return new // 2 - old // 2


def pad_to(image: torch.Tensor, shape: Sequence[int], value: float = 0.0) -> torch.Tensor:
    """Pad the trailing ``len(shape)`` axes of ``image`` to ``shape``, keeping centres aligned.

    Args:
        image: tensor ``(..., *old_shape)``.
        shape: target sizes of the trailing axes, each ``>=`` the current size.
        value: fill value.

    Returns:
        ``(..., *shape)`` tensor whose index ``new // 2`` holds the old index ``old // 2``.
    """
    shape = tuple(int(s) for s in shape)
    old = tuple(image.shape[-len(shape):])
    if any(s < o for s, o in zip(shape, old, strict=True)):
        raise ValueError(f"pad_to: target shape {shape} smaller than {old}; use crop_center")
    pads: list[int] = []
    for o, s in zip(reversed(old), reversed(shape), strict=True):
        before = _offsets(o, s)
        pads += [before, s - o - before]
    if not any(pads):
        return image
    return F.pad(image, pads, mode="constant", value=value)


def crop_center(image: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Crop the trailing ``len(shape)`` axes to ``shape``, keeping centres aligned.

    Args:
        image: tensor ``(..., *old_shape)``.
        shape: target sizes, each ``<=`` the current size.

    Returns:
        ``(..., *shape)`` view whose index ``new // 2`` is the old index ``old // 2``.
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    old = tuple(image.shape[-nd:])
    if any(s > o for s, o in zip(shape, old, strict=True)):
        raise ValueError(f"crop_center: target shape {shape} larger than {old}; use pad_to")
    index = [slice(None)] * (image.dim() - nd)
    for o, s in zip(old, shape, strict=True):
        start = o // 2 - s // 2
        index.append(slice(start, start + s))
    return image[tuple(index)]
