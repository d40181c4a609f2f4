"""Per-pixel running statistics of a 2DTM search, mergeable in any order.

For every pixel the accumulator keeps the maximum cross-correlation (MIP), the flat index of
the search position (orientation x defocus) that gave it, and the sum and sum of squares of
all correlations. Merging is associative and commutative and the result is bit-identical
however the search was batched, chunked, resumed or distributed:

* maxima tie-break on the smaller search index;
* sums are exact fixed-point integers: every correlation is rounded to a multiple of
  2^-24 (its square to 2^-20) and added as int64. Integer addition is exact and
  associative, so no summation order (threads, batches, GPUs) can change a bit. The
  rounding error (<= 3e-8 per value, zero-mean) is far below float32 precision of the
  correlations themselves; int64 holds the sums safely while the mean |CC| per pixel stays
  below ~ 9e18 / (2^24 N) (27 for N = 2e7 search positions; noise-normalised CCs average
  ~ 1) and the mean CC^2 below ~ 9e18 / (2^20 N) (440).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Fixed-point scales of the exact sums (see module docstring).
SUM_SCALE = float(2**24)
SQ_SCALE = float(2**20)


@dataclass
class Accumulator:
    """Running per-pixel statistics of correlation maps.

    Attributes:
        best: (H, W) float32, the maximum correlation seen (-inf before any update).
        best_index: (H, W) int64, flat search index of that maximum (-1 before any update).
        total: (H, W) int64, sum of correlations in units of 2^-24.
        total_sq: (H, W) int64, sum of squared correlations in units of 2^-20.
        count: number of correlation maps accumulated.
    """

    best: torch.Tensor
    best_index: torch.Tensor
    total: torch.Tensor
    total_sq: torch.Tensor
    count: int = 0

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
        return tuple(self.best.shape)  # type: ignore[return-value]

    def update(self, cc: torch.Tensor, indices: torch.Tensor) -> None:
        """Fold a batch of correlation maps in.

        Args:
            cc: (B, H, W) float32 correlation maps.
            indices: (B,) int64 flat search indices of the maps, strictly increasing and
                larger than any index folded in before (use :meth:`merge` to combine
                accumulators of other index ranges in any order).
        """
        if cc.ndim != 3 or cc.shape[1:] != self.best.shape:
            raise ValueError(f"cc batch has shape {tuple(cc.shape)}, expected (B, *{self.shape})")
        if indices.numel() > 1 and not bool((indices[1:] > indices[:-1]).all()):
            raise ValueError("search indices of a batch must be strictly increasing")
        idx = indices.tolist()
        # One map at a time: torch's max/argmax and int64 reductions over a batch axis are
        # several times slower than these elementwise passes, and need no (B, H, W) temporary.
        for m, i in zip(cc, idx, strict=True):
            # indices increase, so a strict '>' keeps the smallest index on ties
            better = m > self.best
            torch.maximum(self.best, m, out=self.best)
            self.best_index.masked_fill_(better, i)
            self.total.add_((m * SUM_SCALE).round_().to(torch.int64))
            self.total_sq.add_((m * m).mul_(SQ_SCALE).round_().to(torch.int64))
        self.count += int(cc.shape[0])

    def _merge_max(self, value: torch.Tensor, index: torch.Tensor) -> None:
        better = (value > self.best) | ((value == self.best) & (index < self.best_index))
        better &= index >= 0
        self.best = torch.where(better, value, self.best)
        self.best_index = torch.where(better, index, self.best_index)

    def merge(self, other: Accumulator) -> None:
        """Merge ``other`` (same shape, disjoint search positions) into this accumulator."""
        if other.shape != self.shape:
            raise ValueError(f"cannot merge accumulators of shapes {other.shape} and {self.shape}")
        self._merge_max(other.best.to(self.best.device), other.best_index.to(self.best.device))
        self.total += other.total.to(self.total.device)
        self.total_sq += other.total_sq.to(self.total.device)
        self.count += other.count

    def to(self, device: torch.device | str) -> Accumulator:
        """Return a copy on ``device``."""
        return Accumulator(
            self.best.to(device),
            self.best_index.to(device),
            self.total.to(device),
            self.total_sq.to(device),
            self.count,
        )

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Arrays for saving (see :meth:`from_numpy`)."""
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
        mean = self.total.to(torch.float64) / (SUM_SCALE * self.count)
        mean_sq = self.total_sq.to(torch.float64) / (SQ_SCALE * self.count)
        var = (mean_sq - mean * mean).clamp_min(0.0)
        return mean, torch.sqrt(var)

    def sums(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Sum and sum of squares of all correlations per pixel, float64."""
        return (self.total.to(torch.float64) / SUM_SCALE,
                self.total_sq.to(torch.float64) / SQ_SCALE)
