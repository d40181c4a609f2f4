"""Limit BLAS threads around many small matrix operations.

L-BFGS-B iterations and small-network training do thousands of tiny BLAS calls; with a
multi-threaded BLAS on a busy machine these become tens of times slower. ``threadpoolctl``
is used when installed (results are identical either way, only the speed differs).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover - optional
    threadpool_limits = None


def single_thread() -> AbstractContextManager:
    """Context manager limiting BLAS/OpenMP pools to one thread (no-op without threadpoolctl)."""
    return threadpool_limits(1) if threadpool_limits is not None else nullcontext()
