"""The search accumulator: merging order, tie-breaks, float64 statistics."""

import numpy as np
import torch

from difftm.search.accumulator import Accumulator


def _maps(n: int, shape=(6, 7), seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn((n, *shape), generator=g)


def test_update_matches_numpy_statistics():
    cc = _maps(20)
    acc = Accumulator.empty((6, 7))
    for s in range(0, 20, 6):
        acc.update(cc[s : s + 6], torch.arange(s, min(20, s + 6)))
    ref = cc.numpy().astype(np.float64)
    np.testing.assert_array_equal(acc.best.numpy(), cc.max(0).values.numpy())
    np.testing.assert_array_equal(acc.best_index.numpy(), cc.argmax(0).numpy())
    mean, sigma = acc.mean_sigma()
    np.testing.assert_allclose(mean.numpy(), ref.mean(0), atol=1e-6)
    np.testing.assert_allclose(sigma.numpy(), ref.std(0), atol=1e-6)
    assert acc.count == 20


def test_merge_is_order_independent_and_ties_take_smallest_index():
    cc = _maps(12)
    cc[7] = cc[3]  # exact tie between search positions 3 and 7
    cc[3] += 10.0
    cc[7] += 10.0
    parts = []
    for s in range(0, 12, 4):
        a = Accumulator.empty((6, 7))
        a.update(cc[s : s + 4], torch.arange(s, s + 4))
        parts.append(a)
    fwd = Accumulator.empty((6, 7))
    for p in parts:
        fwd.merge(p)
    rev = Accumulator.empty((6, 7))
    for p in reversed(parts):
        rev.merge(p)
    np.testing.assert_array_equal(fwd.best.numpy(), rev.best.numpy())
    np.testing.assert_array_equal(fwd.best_index.numpy(), rev.best_index.numpy())
    assert (fwd.best_index.numpy() == 3).all()
    np.testing.assert_allclose(fwd.total.numpy(), rev.total.numpy(), rtol=1e-12)


def test_sums_are_exact_and_independent_of_grouping():
    from difftm.search.accumulator import BLOCK

    n = 3 * BLOCK + 5
    cc = _maps(n) * 3.0
    a = Accumulator.empty((6, 7))
    a.update(cc, torch.arange(n))
    # any batching inside one accumulator
    b = Accumulator.empty((6, 7))
    bounds = [0, 1, 4, 11, 12, 29, 30, 70, n]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        b.update(cc[lo:hi], torch.arange(lo, hi))
    # block-aligned parts merged in any order
    c = Accumulator.empty((6, 7))
    parts = [0, BLOCK, 3 * BLOCK, n]
    for lo, hi in reversed(list(zip(parts[:-1], parts[1:], strict=True))):
        part = Accumulator.empty((6, 7))
        part.update(cc[lo:hi], torch.arange(lo, hi))
        c.merge(part)
    for other in (b, c):
        for name in ("total", "total_sq", "best", "best_index"):
            assert torch.equal(getattr(a, name), getattr(other, name)), name
    total, total_sq = a.sums()
    ref = cc.double()
    # float32 partial sums within a block: relative error ~ float32 precision of the sums
    np.testing.assert_allclose(total.numpy(), ref.sum(0).numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(total_sq.numpy(), (ref**2).sum(0).numpy(), rtol=1e-6, atol=1e-4)


def test_aligned_span_is_a_multiple_of_batch_and_block():
    from difftm.search.accumulator import BLOCK, aligned_span

    for batch in (1, 5, 16, 48, 256):
        for minimum in (1, 100, 1000):
            span = aligned_span(batch, minimum)
            assert span % batch == 0 and span % BLOCK == 0 and span >= minimum
            assert span - minimum < np.lcm(batch, BLOCK)


def test_numpy_round_trip():
    acc = Accumulator.empty((3, 4))
    acc.update(_maps(5, (3, 4)), torch.arange(5))
    back = Accumulator.from_numpy(acc.to_numpy())
    for name in ("best", "best_index", "total", "total_sq"):
        assert torch.equal(getattr(acc, name), getattr(back, name))
    assert back.count == 5
