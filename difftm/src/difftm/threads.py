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
   CPU quota such as ``docker --cpus``): hyper-threads share one core's floating-point
   units;
3. minus the cores that other processes keep busy right now: the idle time of those CPUs
   is sampled from ``/proc/stat`` over 0.2 s when the command starts (at least one thread).

Why the third step: on a 2-core container where other jobs ran, two threads took 3.6-5.6x
longer per orientation than one, while on the idle machine two threads gained only 1.37x
(``benchmarks/threads.py``, docs/BENCHMARKS.md): oversubscribing costs far more than an
idle core. The sample is instantaneous, not the load average, which would still count the
previous job of a sequential batch for a minute. A busy machine can of course get busier
after the start; pass ``--threads`` to fix the number.

Dask workers each get one thread per worker (see :mod:`difftm.search.distributed`), so a
local cluster of N workers uses N cores, not N x N.

The thread count changes results only by float32 rounding (torch's multi-threaded CPU FFTs
round differently), so it is recorded with every result, and a resumed search keeps the
thread count of its checkpoint for bit-identical maps (docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["apply_threads", "available_cores", "default_threads", "idle_cpus",
           "physical_cores"]

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


def _cpu_times(cpus: list[int], stat: Path) -> dict[int, tuple[int, int]]:
    """``cpu -> (idle, total)`` jiffies of the logical ``cpus`` from ``/proc/stat``."""
    wanted = {f"cpu{c}": c for c in cpus}
    times = {}
    for line in stat.read_text().splitlines():
        fields = line.split()
        if fields and fields[0] in wanted:
            values = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
            times[wanted[fields[0]]] = (values[3] + values[4], sum(values))
    return times


def idle_cpus(
    cpus: list[int] | None = None,
    interval: float = 0.2,
    stat: Path = Path("/proc/stat"),
    sleep: Callable[[float], None] = time.sleep,
) -> float | None:
    """Idle logical CPUs among ``cpus`` (default: this process's), sampled over ``interval``
    seconds from ``/proc/stat``; None where it cannot be read (not Linux)."""
    cpus = _allowed_cpus() if cpus is None else cpus
    try:
        before = _cpu_times(cpus, stat)
        sleep(interval)
        after = _cpu_times(cpus, stat)
    except (OSError, ValueError, IndexError):
        return None
    idle = 0.0
    for cpu, (idle1, total1) in after.items():
        if cpu not in before:
            return None
        d_total = total1 - before[cpu][1]
        idle += (idle1 - before[cpu][0]) / d_total if d_total > 0 else 1.0
    return idle if after else None


def _from_env() -> tuple[int, str] | None:
    for name in ENV_VARS:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value), name
    return None


def default_threads(idle: float | None | bool = True) -> tuple[int, str]:
    """The default thread count and where it came from (for messages and metadata).

    Args:
        idle: idle logical CPUs of this process's set (None: unknown), True to sample them
            now (:func:`idle_cpus`), False to ignore other processes.

    Returns:
        ``(threads, reason)``, e.g. ``(2, "physical cores")``, ``(1, "2 physical cores, 1
        busy")`` or ``(1, "OMP_NUM_THREADS")``.
    """
    env = _from_env()
    if env is not None:
        return env
    cores = available_cores()
    if idle is True:
        idle = idle_cpus() if cores > 1 else None
    if idle is None or idle is False:
        return cores, "physical cores"
    # idle logical CPUs -> idle physical cores (hyper-thread siblings count once); a cgroup
    # quota smaller than the CPU set is met as long as that many cores are idle
    per_core = physical_cores() / max(1, len(_allowed_cpus()))
    free = max(1, min(cores, int(math.floor(float(idle) * per_core + 0.5))))
    if free < cores:
        return free, f"{cores} physical cores, {cores - free} busy with other processes"
    return cores, "physical cores"


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
