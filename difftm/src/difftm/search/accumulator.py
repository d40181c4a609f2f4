"""Per-pixel running statistics of a 2DTM search, mergeable in any order.

For every pixel the accumulator keeps the maximum cross-correlation (MIP), the flat index of
the search position (orientation x defocus) that gave it, and the sum and sum of squares of
all correlations. The result is bit-identical however the search was batched, chunked,
resumed or distributed, provided every range handed to one accumulator starts on a block
boundary (a multiple of :data:`BLOCK` search indices; the engine and the distributed runner
align their chunks and parts so, see :func:`aligned_span`):

* the search indices are cut into fixed blocks of :data:`BLOCK`; within a block each map is
  folded into float32 partial sums in index order (one pass each for the sum and the sum of
  squares) and into a block maximum with a one-byte local argmax (ties keep the earlier
  index);
* when a block ends, its partial sums are rounded once to exact fixed-point integers (sum in
  units of 2^-24, squares in units of 2^-20) and added to int64 totals, and its maximum is
  merged into the running maximum (ties keep the smaller index). Integer addition is exact
  and associative, and a block's float64 partial sum depends only on its maps, so no
  batching, chunking, thread count or merge order changes a bit.

A block's partial sums carry float32 precision (relative ~1e-7 of the block's sum, well
below the statistical error of a mean over a search); float64 partial sums would cost 3-7x
more per map on the CPU (mixed-precision in-place adds are not vectorised). int64
holds the sums safely while the mean |CC| per pixel stays below ~ 9e18 / (2^24 N) (27 for
N = 2e7 search positions; noise-normalised CCs average ~ 1) and the mean CC^2 below
~ 9e18 / (2^20 N) (440). Per map the update costs five elementwise float32/byte passes
(compare, maximum, one-byte argmax, sum, fused square-add; measured 0.12-0.17 inverse-FFT
equivalents at 1024^2-2048^2 on one CPU thread, against 0.32-0.71 for rounding every map to
int64); the per-block fold is amortised over :data:`BLOCK` maps.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Fixed-point scales of the exact sums (see module docstring).
SUM_SCALE = float(2**24)
SQ_SCALE = float(2**20)
#: Search indices per block: partial sums are exact fixed-point once per block.
BLOCK = 32


def aligned_span(batch: int, minimum: int) -> int:
    """Smallest multiple of both ``batch`` and :data:`BLOCK` that is ``>= minimum``.

    Chunks and parts of a search are cut at multiples of this span, so that every range an
    accumulator sees starts on a block boundary (the condition for bit-identical results).
    """
    step = math.lcm(int(batch), BLOCK)
    return max(step, -(-int(minimum) // step) * step)


class Accumulator:
    """Running per-pixel statistics of correlation maps.

    Attributes (each read first folds the block in progress in, see :meth:`flush`):
        best: (H, W) float32, the maximum correlation seen (-inf before any update).
        best_index: (H, W) int64, flat search index of that maximum (-1 before any update).
        total: (H, W) int64, sum of correlations in units of 2^-24.
        total_sq: (H, W) int64, sum of squared correlations in units of 2^-20.
        count: number of correlation maps accumulated.
    """

    def __init__(self, best: torch.Tensor, best_index: torch.Tensor, total: torch.Tensor,
                 total_sq: torch.Tensor, count: int = 0) -> None:
        self._best = best
        self._best_index = best_index
        self._total = total
        self._total_sq = total_sq
        self.count = int(count)
        self._block = -1  # block in progress (-1: none)
        self._pending: dict[str, torch.Tensor] | None = None

    @property
    def best(self) -> torch.Tensor:
        """(H, W) float32 maximum correlation (-inf before any update)."""
        self.flush()
        return self._best

    @property
    def best_index(self) -> torch.Tensor:
        """(H, W) int64 flat search index of the maximum (-1 before any update)."""
        self.flush()
        return self._best_index

    @property
    def total(self) -> torch.Tensor:
        """(H, W) int64 sum of correlations in units of 2^-24."""
        self.flush()
        return self._total

    @property
    def total_sq(self) -> torch.Tensor:
        """(H, W) int64 sum of squared correlations in units of 2^-20."""
        self.flush()
        return self._total_sq

    @classmethod
    def empty(cls, shape: tuple[int, int], device: torch.device | str = "cpu") -> Accumulator:
        """Return an accumulator for maps of ``shape`` (H, W) that has seen nothing."""
        return cls(
            best=torch.full(shape, -torch.inf, dtype=torch.float32, device=device),
            best_index=torch.full(shape, -1, dtype=torch.int64, device=device),
            total=torch.zeros(shape, dtype=torch.int64, device=device),
            total_sq=torch.zeros(shape, dtype=torch.int64, device=device),
            count=0,
        )

    @property
    def shape(self) -> tuple[int, int]:
        """Map shape (H, W)."""
        return tuple(self._best.shape)  # type: ignore[return-value]

    def _buffers(self) -> dict[str, torch.Tensor]:
        if self._pending is None:
            kw = dict(device=self._best.device)
            shape = self.shape
            # normal tensors even when the first update runs under torch.inference_mode, so
            # that a flush outside it may update them in place
            with torch.inference_mode(False):
                self._pending = self._new_buffers(shape, kw)
        return self._pending

    @staticmethod
    def _new_buffers(shape: tuple[int, int], kw: dict) -> dict[str, torch.Tensor]:
        return {
            "max": torch.full(shape, -torch.inf, dtype=torch.float32, **kw),
            "arg": torch.zeros(shape, dtype=torch.uint8, **kw),
            "mask": torch.zeros(shape, dtype=torch.bool, **kw),
            "sum": torch.zeros(shape, dtype=torch.float32, **kw),
            "sq": torch.zeros(shape, dtype=torch.float32, **kw),
        }

    def update(self, cc: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold a batch of correlation maps in.

        Args:
            cc: (B, H, W) float32 correlation maps.
            indices: (B,) int64 flat search indices of the maps, strictly increasing and
                larger than any index folded in before (use :meth:`merge` to combine
                accumulators of other index ranges in any order).
        """
        if cc.ndim != 3 or cc.shape[1:] != self._best.shape:
            raise ValueError(f"cc batch has shape {tuple(cc.shape)}, expected (B, *{self.shape})")
        if indices.numel() > 1 and not bool((indices[1:] > indices[:-1]).all()):
            raise ValueError("search indices of a batch must be strictly increasing")
        buf = self._buffers()
        # One map at a time: torch's max/argmax over a batch axis is several times slower
        # than these elementwise passes and needs no (B, H, W) temporary.
        for m, i in zip(cc, indices.tolist(), strict=True):
            block, local = divmod(int(i), BLOCK)
            if block != self._block:
                self.flush()
                self._block = block
            # indices increase, so a strict '>' keeps the smallest index on ties
            torch.gt(m, buf["max"], out=buf["mask"])
            torch.maximum(buf["max"], m, out=buf["max"])
            buf["arg"].masked_fill_(buf["mask"], local)
            buf["sum"].add_(m)
            buf["sq"].addcmul_(m, m)
        self.count += int(cc.shape[0])

    def flush(self) -> None:
        """Fold the block in progress into the exact totals and the running maximum."""
        if self._block < 0 or self._pending is None:
            return
        buf = self._pending
        base = self._block * BLOCK
        better = buf["max"] > self._best  # earlier blocks win ties
        torch.maximum(self._best, buf["max"], out=self._best)
        torch.where(better, buf["arg"].to(torch.int64) + base, self._best_index,
                    out=self._best_index)
        self._total.add_(buf["sum"].double().mul_(SUM_SCALE).round_().to(torch.int64))
        self._total_sq.add_(buf["sq"].double().mul_(SQ_SCALE).round_().to(torch.int64))
        buf["max"].fill_(-torch.inf)
        buf["arg"].zero_()
        buf["sum"].zero_()
        buf["sq"].zero_()
        self._block = -1

    def _merge_max(self, value: torch.Tensor, index: torch.Tensor) -> None:
        better = (value > self._best) | ((value == self._best) & (index < self._best_index))
        better &= index >= 0
        self._best = torch.where(better, value, self._best)
        self._best_index = torch.where(better, index, self._best_index)

    def merge(self, other: Accumulator) -> None:
        """Merge ``other`` (same shape, disjoint search positions) into this accumulator."""
        if other.shape != self.shape:
            raise ValueError(f"cannot merge accumulators of shapes {other.shape} and {self.shape}")
        self.flush()
        other.flush()
        dev = self._best.device
        self._merge_max(other.best.to(dev), other.best_index.to(dev))
        self._total += other.total.to(dev)
        self._total_sq += other.total_sq.to(dev)
        self.count += other.count

    def to(self, device: torch.device | str) -> Accumulator:
        """Return a copy on ``device``."""
        self.flush()
        return Accumulator(
            self.best.to(device),
            self.best_index.to(device),
            self.total.to(device),
            self.total_sq.to(device),
            self.count,
        )

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Arrays for saving (see :meth:`from_numpy`)."""
        self.flush()
        return {
            "best": self.best.cpu().numpy(),
            "best_index": self.best_index.cpu().numpy(),
            "total": self.total.cpu().numpy(),
            "total_sq": self.total_sq.cpu().numpy(),
            "count": np.array(self.count, dtype=np.int64),
        }

    @classmethod
    def from_numpy(
        cls, arrays: dict[str, np.ndarray], device: torch.device | str = "cpu"
    ) -> Accumulator:
        """Rebuild an accumulator saved by :meth:`to_numpy`."""
        return cls(
            best=torch.as_tensor(arrays["best"], device=device),
            best_index=torch.as_tensor(arrays["best_index"], device=device),
            total=torch.as_tensor(arrays["total"], device=device),
            total_sq=torch.as_tensor(arrays["total_sq"], device=device),
            count=int(arrays["count"]),
        )

    def mean_sigma(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel mean and standard deviation (population) of all correlations, float64."""
        if self.count == 0:
            raise ValueError("no correlations accumulated")
        self.flush()
        mean = self._total.to(torch.float64) / (SUM_SCALE * self.count)
        mean_sq = self._total_sq.to(torch.float64) / (SQ_SCALE * self.count)
        var = (mean_sq - mean * mean).clamp_min(0.0)
        return mean, torch.sqrt(var)

    def sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum and sum of squares of all correlations per pixel, float64."""
        self.flush()
        return (self._total.to(torch.float64) / SUM_SCALE,
                self._total_sq.to(torch.float64) / SQ_SCALE)
