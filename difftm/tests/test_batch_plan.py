"""The batch planner: free memory everywhere, the last-level cache on the CPU."""

from __future__ import annotations

import torch

from difftm.search import device as dev


def test_cache_sysfs_parsing(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    for i, (level, kind, size, cpus) in enumerate([(1, "Data", "32K", "0"),
                                                   (1, "Instruction", "32K", "0"),
                                                   (2, "Unified", "1024K", "0"),
                                                   (3, "Unified", "32768K", "0-3,8-11")]):
        d = root / f"index{i}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(kind + "\n")
        (d / "size").write_text(size + "\n")
        (d / "shared_cpu_list").write_text(cpus + "\n")
    monkeypatch.setattr(dev, "Path", lambda *_: root)
    assert dev.last_level_cache() == (32 * 1024**2, 8)


def test_cpu_batch_keeps_the_working_set_in_the_cache(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "free_memory_bytes", lambda d: 64 * 1024**3)
    monkeypatch.setattr(dev, "last_level_cache", lambda: (32 * 1024**2, 2))
    sizes = [dev.plan_batch_size((s, s), 32, cpu, threads=1) for s in (128, 256, 384, 512, 2048)]
    assert sizes == sorted(sizes, reverse=True)  # larger maps, smaller batches
    assert sizes[0] == 16 and sizes[-1] == 1
    per = 2 * 8 * 384 * 193 + 2 * 4 * 384 * 384 + 4 * 8 * 32 * 32
    assert sizes[2] == int(dev.CACHE_FRACTION * 16 * 1024**2 // per)  # of one thread's 16 MB
    # two threads own the whole cache: about twice the batch
    assert dev.plan_batch_size((384, 384), 32, cpu, threads=2) >= 2 * sizes[2]
    # no cache information: the memory cap alone
    monkeypatch.setattr(dev, "last_level_cache", lambda: None)
    assert dev.plan_batch_size((384, 384), 32, cpu, threads=1) == 16


def test_gpu_batch_ignores_the_cpu_cache(monkeypatch):
    monkeypatch.setattr(dev, "free_memory_bytes", lambda d: 80 * 1024**3)
    monkeypatch.setattr(dev, "last_level_cache", lambda: (1024, 1))
    assert dev.plan_batch_size((1024, 1024), 128, torch.device("cuda")) == 256
