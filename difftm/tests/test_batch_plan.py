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


def test_recorded_projection_count_is_what_the_projector_did(tmp_path, monkeypatch):
    """n_projections in the metadata equals the projector's work for batches that split an
    orientation's defocus planes (batch 3, 5 planes) and that hold several orientations."""
    import json

    from difftm.fourier.projector import FourierSliceProjector
    from difftm.search.config import SearchConfig
    from difftm.search.engine import SUMMARY_NAME, projections_computed, run_search

    from search_helpers import blob_volume, white_noise, write_inputs

    mic, tpl = write_inputs(tmp_path, white_noise((64, 64), 0), blob_volume(16), 4.0)
    calls: list[int] = []
    original = FourierSliceProjector.project

    def counting(self, rotations, *args, **kwargs):
        calls.append(int(rotations.shape[0]))
        return original(self, rotations, *args, **kwargs)

    monkeypatch.setattr(FourierSliceProjector, "project", counting)
    for batch in (3, 16):
        calls.clear()
        cfg = SearchConfig(micrograph=mic, template=tpl, output=tmp_path / f"o{batch}",
                           pixel_size=4.0, defocus_u=10000.0, defocus_range=400.0,
                           out_of_plane_step=40.0, in_plane_step=40.0, batch_size=batch,
                           device="cpu")
        md = run_search(cfg).metadata
        assert md["n_projections"] == sum(calls) == projections_computed(
            md["n_search"], 5, batch)
        assert md["n_correlations"] == md["n_search"]
        assert json.loads((cfg.output / SUMMARY_NAME).read_text())["n_projections"] == sum(calls)
    assert projections_computed(10, 5, 3) == 5  # [0,3) [3,6) [6,9) [9,10): 1+2+1+1
