"""Per-pixel running statistics of a 2DTM search, mergeable in any order.

For every pixel the accumulator keeps the maximum cross-correlation (MIP), the flat index of
the search position (orientation x defocus) that gave it, and the sum and sum of squares of
all correlations in float64. Merging is associative and commutative: maxima tie-break on the
smaller search index, so the result never depends on how the search was split or on thread
timing; sums are float64 (partial sums of one batch are formed in float32 over at most a few
dozen values, well within float32 accuracy, then added in float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Accumulator:
    """Running per-pixel statistics of correlation maps.

    Attributes:
        best: (H, W) float32, the maximum correlation seen (-inf before any update).
        best_index: (H, W) int64, flat search index of that maximum (-1 before any update).
        total: (H, W) float64, sum of correlations.
        total_sq: (H, W) float64, sum of squared correlations.
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
            total=torch.zeros(shape, dtype=torch.float64, device=device),
            total_sq=torch.zeros(shape, dtype=torch.float64, device=device),
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
            indices: (B,) int64 flat search indices of the maps, strictly increasing.
        """
        if cc.ndim != 3 or cc.shape[1:] != self.best.shape:
            raise ValueError(f"cc batch has shape {tuple(cc.shape)}, expected (B, *{self.shape})")
        batch_max, arg = torch.max(cc, dim=0)  # first maximum wins: smallest index on ties
        batch_index = indices.to(self.best_index.device)[arg]
        self._merge_max(batch_max, batch_index)
        self.total += cc.sum(dim=0, dtype=torch.float32).to(torch.float64)
        self.total_sq += (cc * cc).sum(dim=0, dtype=torch.float32).to(torch.float64)
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
        mean = self.total / self.count
        var = (self.total_sq / self.count - mean * mean).clamp_min(0.0)
        return mean, torch.sqrt(var)
