"""Device selection and batch planning from free memory."""

from __future__ import annotations

import os
from pathlib import Path

import torch


def resolve_device(spec: str) -> torch.device:
    """Turn ``auto``/``cpu``/``cuda``/``cuda:N`` into a device, checking that it exists."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {spec!r} requested but CUDA is not available here")
        dev = torch.device(spec)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {spec!r} does not exist ({torch.cuda.device_count()} GPUs)")
        return dev
    if spec == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")


def free_memory_bytes(device: torch.device) -> int:
    """Free memory on ``device`` in bytes (available system RAM for the CPU)."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


#: Fraction of a thread's share of the last-level cache that a CPU batch may fill.
CACHE_FRACTION = 0.35


def last_level_cache() -> tuple[int, int] | None:
    """``(bytes, CPUs sharing it)`` of CPU 0's last-level cache from sysfs (Linux), or None
    where the system does not say."""
    root = Path("/sys/devices/system/cpu/cpu0/cache")
    best: tuple[int, int, int] | None = None
    try:
        for index in root.glob("index*"):
            if (index / "type").read_text().strip() == "Instruction":
                continue
            level = int((index / "level").read_text())
            size = _parse_size((index / "size").read_text().strip())
            sharing = _count_cpus((index / "shared_cpu_list").read_text().strip())
            if best is None or level > best[0]:
                best = (level, size, sharing)
    except (OSError, ValueError):
        return None
    return None if best is None or best[1] <= 0 else (best[1], max(1, best[2]))


def _parse_size(text: str) -> int:
    units = {"K": 1024, "M": 1024**2, "G": 1024**3}
    if text and text[-1].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def _count_cpus(text: str) -> int:
    n = 0
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            n += int(b) - int(a) + 1
        elif part:
            n += 1
    return n


def plan_batch_size(
    shape: tuple[int, int], box: int, device: torch.device, fraction: float = 0.3,
    threads: int | None = None,
) -> int:
    """Correlations per batch: what fits in ``fraction`` of the free memory, and on the CPU
    what keeps the batch's working set in this search's share of the last-level cache.

    Per correlation in flight: the padded template spectrum and the product (complex64,
    H x (W/2+1) each), the correlation map and its square (float32, H x W each), plus the
    template at box size. GPUs: at most 256 by memory. CPUs are FFT and memory-bandwidth
    bound: a batch whose maps overflow the cache is slower per correlation, the more so when
    other searches share the cache (docs/SCALING.md: batch 16 of 384^2 maps gave 0.75
    scaling efficiency over two workers, batch 2 gave 1.00). The CPU batch is therefore
    ``CACHE_FRACTION x`` (the cache's bytes x ``threads`` / CPUs sharing it) divided by the
    per-correlation bytes, between 1 and 16; ``threads`` defaults to torch's.
    """
    h, w = shape
    per_corr = 2 * 8 * h * (w // 2 + 1) + 2 * 4 * h * w + 4 * 8 * box * box
    budget = free_memory_bytes(device) * fraction
    cap = 256 if device.type == "cuda" else 16
    if device.type == "cpu":
        cache = last_level_cache()
        if cache is not None:
            size, sharing = cache
            n = threads or torch.get_num_threads()
            share = size * min(n, sharing) / sharing
            cap = int(min(cap, max(1, CACHE_FRACTION * share // per_corr)))
    return int(max(1, min(cap, budget // per_corr)))
