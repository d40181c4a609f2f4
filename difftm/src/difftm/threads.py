"""CPU thread count of torch: one place that picks the default and applies it.

Every command that computes on the CPU (``search``, ``simulate template``, ``simulate
micrograph``; ``refine`` and ``datasets`` when they come) takes ``--threads N`` and calls
:func:`apply_threads` once before working; the value used goes into the command's metadata.

Why not torch's own default: torch starts one OpenMP thread per CPU it sees. On a machine
shared with other jobs (a workstation, a login node, a 2-core container) those threads wait
for cores that are busy elsewhere, and the same search ran 3.6-9x slower than with one
thread (13.4 vs 0.89 ms CPU per orientation; docs/BENCHMARKS.md). The default here is:

1. ``DIFFTM_THREADS`` or ``OMP_NUM_THREADS`` when set (batch systems often set the latter);
2. otherwise the *physical* cores this process may use (CPU affinity, e.g. from SLURM or
   ``taskset``, intersected with one logical CPU per physical core, and capped by a cgroup
   CPU quota such as ``docker --cpus``): hyper-threads do not speed up FFTs;

That default suits a machine the job has to itself (a workstation, a SLURM allocation, a
GPU node). On a machine shared with other busy processes, pass ``--threads 1`` (or the
cores that are really free): measured on a loaded 2-core container, one thread was several
times faster than two. The default does not guess from the load average, which would
starve the next job of a sequential batch (the previous job's load lingers for a minute).

Dask workers each get one thread per worker (see :mod:`difftm.search.distributed`), so a
local cluster of N workers uses N cores, not N x N.

Thread count never changes results: the search accumulates exact fixed-point sums, so maps
are bit-identical for any thread count (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

__all__ = ["apply_threads", "available_cores", "default_threads", "physical_cores"]

#: Environment variables read (in this order) for the default thread count.
ENV_VARS = ("DIFFTM_THREADS", "OMP_NUM_THREADS")


def _allowed_cpus() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int] | None = None, sysfs: Path = Path("/sys/devices/system/cpu")
                   ) -> int:
    """Number of distinct physical cores among the logical ``cpus`` (default: the ones this
    process may run on), from the sysfs topology; ``len(cpus)`` where it is unreadable."""
    cpus = _allowed_cpus() if cpus is None else cpus
    cores = set()
    for cpu in cpus:
        topo = sysfs / f"cpu{cpu}" / "topology"
        try:
            package = (topo / "physical_package_id").read_text().strip()
            core = (topo / "core_id").read_text().strip()
        except OSError:
            return max(1, len(cpus))
        cores.add((package, core))
    return max(1, len(cores))


def _cgroup_quota(root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """CPUs allowed by a cgroup CPU quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), or None."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max" and float(period) > 0:
            return float(quota) / float(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = float((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = float((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """Physical cores this process may use: affinity, one per physical core, cgroup quota."""
    n = physical_cores()
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota)))
    return max(1, n)


def _from_env() -> tuple[int, str] | None:
    for name in ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), name
    return None


def default_threads() -> tuple[int, str]:
    """The default thread count and where it came from (for messages and metadata).

    Returns:
        ``(threads, reason)``, e.g. ``(2, "physical cores")`` or ``(1, "OMP_NUM_THREADS")``.
    """
    env = _from_env()
    if env is not None:
        return env
    return available_cores(), "physical cores"


def apply_threads(threads: int | None) -> tuple[int, str]:
    """Set torch's intra-op CPU threads to ``threads`` (None: :func:`default_threads`).

    Call once per process before computing (CLI commands, Dask tasks).

    Returns:
        ``(threads, reason)``: the value now in effect and ``"--threads"`` or the default's
        reason.

    Raises:
        ValueError: ``threads`` is not a positive integer.
    """
    import torch

    if threads is None:
        threads, reason = default_threads()
    else:
        if isinstance(threads, bool) or int(threads) != threads or threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {threads!r}")
        threads, reason = int(threads), "--threads"
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return threads, reason
