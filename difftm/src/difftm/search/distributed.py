"""Spread one search over processes, GPUs and machines with Dask distributed.

The flat search index range is cut into parts (whole batches each). Every part is an
independent task that rebuilds the correlator from the configuration, correlates its index
range and returns its accumulator; finished parts are saved atomically under
``<output>/parts/`` so a restarted run skips them. Parts are merged in index order, so the
result is deterministic; maxima and best poses are identical to a single-process run and
sums agree to float64 rounding.

Schedulers: ``None`` runs the parts in this process (no Dask needed), ``"local"`` starts a
``LocalCluster`` on this machine (one worker per GPU when CUDA is used, else per core
pair), any other string is the address of an existing scheduler (e.g. one started by
dask-jobqueue on SLURM: ``tcp://10.0.0.5:8786``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from difftm.search.accumulator import Accumulator, aligned_span
from difftm.search.checkpoint import atomic_save
from difftm.search.config import SearchConfig
from difftm.search.engine import resolve_pixel_size, run_metadata, write_config
from difftm.search.results import BUNDLE_NAME, SearchResult, load_results
from difftm.simulate.micrograph import template_diameter
from difftm.threads import available_cores

PARTS_DIR = "parts"


def search_part(config: dict, start: int, stop: int, batch: int, device: str,
                threads: int | None = None) -> dict:
    """Correlate search indices ``[start, stop)``; return the accumulator as numpy arrays.

    Runs anywhere the inputs are readable (a Dask worker, a subprocess, this process).
    ``threads`` sets torch's CPU threads first (None: leave them); the returned arrays also
    hold ``seconds``, the time the part took, and ``threads``, the CPU threads it ran with.
    """
    from difftm.search.device import resolve_device
    from difftm.search.engine import _load_inputs, build_correlator, correlate_range, search_grid

    t0 = time.perf_counter()
    if threads is not None:
        from difftm.threads import apply_threads

        apply_threads(threads)
    cfg = SearchConfig(**config)
    dev = resolve_device(device)
    image, volume = _load_inputs(cfg)
    angles, offsets = search_grid(cfg)
    corr = build_correlator(cfg, image, volume, angles, offsets, dev)
    acc = Accumulator.empty(corr.shape, dev)
    correlate_range(corr, acc, start, stop, batch)
    arrays = acc.to_numpy()
    arrays["seconds"] = np.array(time.perf_counter() - t0, dtype=np.float64)
    arrays["threads"] = np.array(torch.get_num_threads(), dtype=np.int64)
    return arrays


def _part_path(out: Path, k: int, fingerprint: str) -> Path:
    return out / PARTS_DIR / f"part_{k:05d}_{fingerprint}.npz"


def run_search_distributed(
    cfg: SearchConfig,
    scheduler: str | None = None,
    n_parts: int | None = None,
    n_workers: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> SearchResult:
    """Run the search of ``cfg`` as independent parts, optionally on a Dask cluster.

    Args:
        cfg: the configuration (``batch_size`` sets the batch inside each part).
        scheduler: None (in process), ``"local"`` (LocalCluster) or a scheduler address.
        n_parts: number of parts (default: 4 per worker, at least 1).
        n_workers: workers of a local cluster (default: number of GPUs, else physical
            cores // 2).
        progress: called as ``progress(parts_done, n_parts, seconds)``.

    Returns:
        The finished result, also written to ``cfg.output`` like :func:`run_search`.
    """
    from difftm.search.device import plan_batch_size, resolve_device
    from difftm.search.engine import (
        _load_inputs,
        finalize,
        prepare_output,
        search_grid,
        template_size,
    )

    cfg = resolve_pixel_size(cfg)
    fingerprint = cfg.fingerprint()
    prepare_output(cfg, fingerprint)
    out = Path(cfg.output)
    if (out / BUNDLE_NAME).exists():
        return load_results(out)
    image, volume = _load_inputs(cfg)  # validate inputs here, before any worker starts
    angles, offsets = search_grid(cfg)
    n_search = int(angles.shape[0]) * int(offsets.numel())
    box = int(volume.shape[0])
    device = resolve_device(cfg.device)
    padded = template_size(cfg, box, image.shape, offsets)
    batch = cfg.batch_size or plan_batch_size(image.shape, padded, device)
    n_gpu = torch.cuda.device_count() if device.type == "cuda" else 0
    if n_workers is None:
        n_workers = max(1, n_gpu or (available_cores() // 2) or 1)
    # torch threads per task: one per Dask worker (each worker is one process with one
    # task slot) unless --threads says otherwise; in process, whatever this process uses.
    threads = (cfg.threads or 1) if scheduler is not None else cfg.threads
    n_parts = n_parts or max(1, 4 * n_workers)
    # parts start on accumulator block boundaries: bit-identical to a single run
    per_part = aligned_span(batch, math.ceil(n_search / n_parts))
    ranges = [(s, min(n_search, s + per_part)) for s in range(0, n_search, per_part)]
    (out / PARTS_DIR).mkdir(exist_ok=True)
    write_config(out, cfg)
    config = cfg.model_dump(mode="json")

    def device_for(k: int) -> str:
        if device.type != "cuda":
            return "cpu"
        return f"cuda:{k % max(n_gpu, 1)}" if scheduler == "local" else str(device)

    todo = [k for k in range(len(ranges)) if not _part_path(out, k, fingerprint).exists()]
    if threads is None and len(todo) < len(ranges):  # in process, resuming: same threads as
        # the finished parts (CPU FFTs round differently for other thread counts)
        first = next(k for k in range(len(ranges)) if k not in todo)
        with np.load(_part_path(out, first, fingerprint)) as data:
            threads = int(data["threads"]) if "threads" in data.files else None
    t0 = time.perf_counter()
    done = len(ranges) - len(todo)

    def save(k: int, arrays: dict) -> None:
        nonlocal done
        atomic_save(_part_path(out, k, fingerprint), lambda fh: np.savez(fh, **arrays))
        done += 1
        if progress is not None:
            progress(done, len(ranges), time.perf_counter() - t0)

    if scheduler is None:
        for k in todo:
            save(k, search_part(config, *ranges[k], batch, device_for(k), threads))
    else:
        _run_on_dask(scheduler, n_workers, todo, ranges, config, batch, device_for, save,
                     threads)
    acc = Accumulator.empty(image.shape, "cpu")
    part_seconds = 0.0
    for k in range(len(ranges)):
        with np.load(_part_path(out, k, fingerprint)) as data:
            acc.merge(Accumulator.from_numpy({n: data[n] for n in data.files}))
            part_seconds += float(data["seconds"]) if "seconds" in data.files else 0.0
    result = finalize(acc, cfg, angles, offsets, box, fingerprint, template_size=padded,
                      template_diameter_px=template_diameter(torch.as_tensor(volume)),
                      timings={"seconds": part_seconds,
                               "seconds_this_run": time.perf_counter() - t0,
                               "parts": len(ranges), "parts_this_run": len(todo),
                               "scheduler": scheduler or "in-process", "batch_size": batch,
                               "threads_per_part": threads or torch.get_num_threads()})
    result.metadata.update(run_metadata(cfg, threads or torch.get_num_threads()))
    result.save(out)
    for k in range(len(ranges)):
        _part_path(out, k, fingerprint).unlink(missing_ok=True)
    return result


def _run_on_dask(scheduler, n_workers, todo, ranges, config, batch, device_for, save,
                 threads) -> None:
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ValueError("distributed search needs dask: pip install 'difftm[distributed]'"
                         ) from err
    cluster = None
    if scheduler == "local":
        cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                               dashboard_address=None)
        client = Client(cluster)
    else:
        client = Client(scheduler)
    try:
        futures = {client.submit(search_part, config, *ranges[k], batch, device_for(k), threads,
                                 pure=False): k for k in todo}
        for fut in as_completed(futures):
            save(futures[fut], fut.result())
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
