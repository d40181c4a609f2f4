"""Device selection and batch planning from free memory."""

from __future__ import annotations

import os

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


def plan_batch_size(
    shape: tuple[int, int], box: int, device: torch.device, fraction: float = 0.3
) -> int:
    """Correlations per batch that fit in ``fraction`` of the free memory.

    Per correlation in flight: the padded template spectrum and the product (complex64,
    H x (W/2+1) each), the correlation map and its square (float32, H x W each), plus the
    template at box size. The CPU gains little from large batches (it is FFT bound), so
    the CPU batch is capped at 16; GPUs at 256.
    """
    h, w = shape
    per_corr = 2 * 8 * h * (w // 2 + 1) + 2 * 4 * h * w + 4 * 8 * box * box
    budget = free_memory_bytes(device) * fraction
    cap = 256 if device.type == "cuda" else 16
    return int(max(1, min(cap, budget // per_corr)))
