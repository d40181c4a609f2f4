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
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from difftm.search.accumulator import BLOCK, Accumulator, aligned_span
from difftm.search.checkpoint import atomic_save
from difftm.search.config import SearchConfig
from difftm.search.engine import (
    check_still_ours,
    resolve_pixel_size,
    run_metadata,
    write_config,
)
from difftm.search.preprocess import fast_shape
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


def search_part_to_file(config: dict, start: int, stop: int, batch: int, device: str,
                        threads: int | None, path: str) -> dict:
    """:func:`search_part`, saved by the worker itself (atomically) to ``path`` on the
    file system it shares with the client; returns only ``seconds`` and ``count``, so an
    accumulator (28 bytes per pixel) does not travel through Dask."""
    arrays = search_part(config, start, stop, batch, device, threads)
    atomic_save(Path(path), lambda fh: np.savez(fh, **arrays))
    return {"seconds": float(arrays["seconds"]), "count": int(arrays["count"])}


def _part_path(out: Path, start: int, stop: int, fingerprint: str) -> Path:
    """File of the finished part ``[start, stop)`` of the search ``fingerprint``: keyed by
    its index range, so that parts cut differently (another --n-parts or batch size) are
    never mistaken for each other."""
    return out / PARTS_DIR / f"part_{start:010d}_{stop:010d}_{fingerprint}.npz"


_PART_RE = re.compile(r"part_(\d{10})_(\d{10})_([0-9a-f]+)\.npz")


def finished_parts(out: Path, fingerprint: str, n_search: int) -> list[tuple[int, int]]:
    """Index ranges of the finished parts of search ``fingerprint`` saved under ``out``
    (only ranges that start on an accumulator block boundary and lie inside the search)."""
    found = []
    for path in (Path(out) / PARTS_DIR).glob("part_*.npz"):
        m = _PART_RE.fullmatch(path.name)
        if m is None or m.group(3) != fingerprint:
            continue
        start, stop = int(m.group(1)), int(m.group(2))
        if start % BLOCK == 0 and start < stop <= n_search:
            found.append((start, stop))
    return sorted(found)


def plan_parts(n_search: int, per_part: int, finished: list[tuple[int, int]]
               ) -> tuple[list[tuple[int, int]], set[tuple[int, int]]]:
    """Cut ``[0, n_search)`` into parts, reusing finished ones.

    Finished ranges that do not overlap an earlier chosen one are kept (earliest start
    first, longest first); the gaps are cut into parts of ``per_part`` indices from the
    gap's start (a block boundary, so maps stay bit-identical).

    Returns:
        ``(ranges, reused)``: all parts in index order, and the subset already finished.
    """
    reused: list[tuple[int, int]] = []
    end = 0
    for start, stop in sorted(finished, key=lambda r: (r[0], -r[1])):
        if start >= end:
            reused.append((start, stop))
            end = stop
    ranges: list[tuple[int, int]] = []
    pos = 0
    for start, stop in [*reused, (n_search, n_search)]:
        while pos < start:
            ranges.append((pos, min(start, pos + per_part)))
            pos = ranges[-1][1]
        if stop > start:
            ranges.append((start, stop))
        pos = max(pos, stop)
    return ranges, set(reused)


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

    Raises:
        FileExistsError: another search holds the output folder (its lock), or the folder
            holds another run's results.
    """
    from difftm.search.lock import OutputLock

    with OutputLock(cfg.output, "search"):
        return _run_locked(cfg, scheduler, n_parts, n_workers, progress)


def _run_locked(cfg, scheduler, n_parts, n_workers, progress) -> SearchResult:
    from difftm.search.device import plan_batch_size, resolve_device
    from difftm.search.engine import (
        _load_inputs,
        correlation_counts,
        finalize,
        prepare_output,
        projections_computed,
        search_grid,
        template_size,
        write_summary,
    )

    if cfg.strategy != "exhaustive":
        raise ValueError(f"--strategy {cfg.strategy} runs in one process: drop --scheduler "
                         "and --n-parts (the coarse pass is small)")
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
    padded = template_size(cfg, box, fast_shape(image.shape), offsets)
    batch = cfg.batch_size or plan_batch_size(fast_shape(image.shape), padded, device)
    n_gpu = torch.cuda.device_count() if device.type == "cuda" else 0
    if n_workers is None:
        n_workers = max(1, n_gpu or (available_cores() // 2) or 1)
    # torch threads per task: one per Dask worker (each worker is one process with one
    # task slot) unless --threads says otherwise; in process, whatever this process uses.
    threads = (cfg.threads or 1) if scheduler is not None else cfg.threads
    n_parts = n_parts or max(1, 4 * n_workers)
    # parts start on accumulator block boundaries: bit-identical to a single run
    per_part = aligned_span(batch, math.ceil(n_search / n_parts))
    # finished parts of an earlier run are reused whatever --n-parts or batch cut them
    ranges, reused = plan_parts(n_search, per_part, finished_parts(out, fingerprint, n_search))
    (out / PARTS_DIR).mkdir(exist_ok=True)
    write_config(out, cfg)
    config = cfg.model_dump(mode="json")

    def device_for(k: int) -> str:
        if device.type != "cuda":
            return "cpu"
        return f"cuda:{k % max(n_gpu, 1)}" if scheduler == "local" else str(device)

    todo = [k for k in range(len(ranges)) if ranges[k] not in reused]
    if threads is None and len(todo) < len(ranges):  # in process, resuming: same threads as
        # the finished parts (CPU FFTs round differently for other thread counts)
        first = next(k for k in range(len(ranges)) if k not in todo)
        with np.load(_part_path(out, *ranges[first], fingerprint)) as data:
            threads = int(data["threads"]) if "threads" in data.files else None
    t0 = time.perf_counter()
    done = len(ranges) - len(todo)

    def save(k: int, arrays: dict | None) -> None:
        nonlocal done
        if arrays is not None:  # None: the worker saved it
            atomic_save(_part_path(out, *ranges[k], fingerprint),
                        lambda fh: np.savez(fh, **arrays))
        done += 1
        if progress is not None:
            progress(done, len(ranges), time.perf_counter() - t0)

    if scheduler is None:
        for k in todo:
            save(k, search_part(config, *ranges[k], batch, device_for(k), threads))
    else:
        paths = {k: str(_part_path(out, *ranges[k], fingerprint).absolute()) for k in todo}
        _run_on_dask(scheduler, n_workers, todo, ranges, config, batch, device_for, save,
                     threads, paths)
    acc = Accumulator.empty(fast_shape(image.shape), "cpu")
    part_seconds = 0.0
    for k in range(len(ranges)):
        with np.load(_part_path(out, *ranges[k], fingerprint)) as data:
            part = Accumulator.from_numpy({n: data[n] for n in data.files})
            if part.count != ranges[k][1] - ranges[k][0]:
                raise ValueError(f"{_part_path(out, *ranges[k], fingerprint)}: holds "
                                 f"{part.count} search positions, expected "
                                 f"{ranges[k][1] - ranges[k][0]}; remove it and run again")
            acc.merge(part)
            part_seconds += float(data["seconds"]) if "seconds" in data.files else 0.0
    if acc.count != n_search:  # never report a search done that is not
        raise ValueError(f"{out}: parts cover {acc.count} of {n_search} search positions")
    result = finalize(acc, cfg, angles, offsets, box, fingerprint, template_size=padded,
                      template_diameter_px=template_diameter(torch.as_tensor(volume)),
                      image_shape=tuple(image.shape),
                      timings={"seconds": part_seconds,
                               "seconds_this_run": time.perf_counter() - t0,
                               "parts": len(ranges), "parts_this_run": len(todo),
                               "scheduler": scheduler or "in-process", "batch_size": batch,
                               "threads_per_part": threads or torch.get_num_threads()})
    result.metadata.update(run_metadata(cfg, threads or torch.get_num_threads()))
    result.metadata.update(correlation_counts(
        n_search, projections_computed(n_search, int(offsets.numel()), batch)))
    check_still_ours(out, fingerprint)
    result.save(out)
    write_summary(out, result.metadata)
    for part in (out / PARTS_DIR).glob(f"part_*_{fingerprint}.npz"):
        part.unlink(missing_ok=True)  # also parts of other cuts that were not used
    return result


def start_local_cluster(n_workers: int):
    """A Dask ``LocalCluster`` of ``n_workers`` processes with one thread each, for searches.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``, which also switches
    off glibc's adaptive mmap threshold: every large FFT buffer is then mmap-ed and faulted
    in afresh, and a search ran 1.7x slower in a worker than in the client process
    (measured, docs/SCALING.md). The workers started here keep glibc's defaults (Dask's
    other settings, one BLAS/OpenMP thread, stay).
    """
    import dask.config
    from distributed import LocalCluster

    environ = {k: v for k, v in dask.config.get(
        "distributed.nanny.pre-spawn-environ", {}).items() if k != "MALLOC_TRIM_THRESHOLD_"}
    with dask.config.set({"distributed.nanny.pre-spawn-environ": environ}):
        return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                            dashboard_address=None)


def connect_scheduler(address: str, timeout: float | None = None):
    """A Dask client of the scheduler at ``address``, or one line saying why not.

    Args:
        address: scheduler address (``tcp://host:8786``).
        timeout: seconds to keep trying [``$DIFFTM_SCHEDULER_TIMEOUT``, else 30].

    Raises:
        ValueError: unreachable or refused within ``timeout`` (one line naming the address).
    """
    import os

    from distributed import Client

    if timeout is None:
        timeout = float(os.environ.get("DIFFTM_SCHEDULER_TIMEOUT", "30"))
    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise ValueError(f"--scheduler {address}: cannot connect within {timeout:g} s "
                         f"({reason[:200]})") from None


def _run_on_dask(scheduler, n_workers, todo, ranges, config, batch, device_for, save,
                 threads, paths) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ValueError("distributed search needs dask: pip install 'difftm[distributed]'"
                         ) from err
    cluster = None
    if scheduler == "local":
        cluster = start_local_cluster(n_workers)
        client = Client(cluster)
    else:
        client = connect_scheduler(scheduler)
    try:
        futures = {client.submit(search_part_to_file, config, *ranges[k], batch, device_for(k),
                                 threads, paths[k], pure=False): k for k in todo}
        for fut in as_completed(futures):
            fut.result()  # raises the worker's error
            save(futures[fut], None)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
