"""Search a whole dataset: one sub-folder per micrograph, a manifest, resumable, on Dask.

Layout of ``<output>/``::

    dataset.yaml            the manifest: template, shared settings, one row per micrograph
                            (name as in the input, file, sub-folder, CTF and where it came
                            from, status and times of the last run)
    <stem>/                 one single-micrograph search folder per micrograph (the layout
                            of ``difftm search MIC TPL``: maps, results.npz, config.yaml,
                            checkpoint.npz while running)
    .difftm.lock            while a dataset run works here

Every micrograph is an ordinary search (:func:`difftm.search.engine.run_search`) with its
own configuration: the shared settings plus the micrograph's CTF. Running the same command
again skips finished micrographs (their results carry the same fingerprint), resumes the
checkpoint of a partial one and starts the others. Work is spread as:

* in process (default): micrographs one after the other, each checkpointing its chunks;
* ``scheduler="local"`` (a Dask ``LocalCluster``: one worker per GPU, else one per two
  cores) or a scheduler address (e.g. from dask-jobqueue on SLURM): every micrograph is a
  task that runs the whole search of that micrograph on a worker (with its checkpoints, so a
  lost worker loses at most one chunk);
* with ``n_parts``: micrographs one after the other, each cut into orientation parts that
  are the tasks (for few, large micrographs; :mod:`difftm.search.distributed`).

Results do not depend on the split: each micrograph's maps are those of the single search
(bit-identical for the same CPU thread count, see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from pydantic import ValidationError

from difftm.dataset.inputs import MicrographEntry
from difftm.search.config import SearchConfig, validation_message

__all__ = ["MANIFEST_NAME", "DatasetJob", "build_dataset", "load_manifest", "run_dataset",
           "search_micrograph", "subfolder_names"]

MANIFEST_NAME = "dataset.yaml"
#: Settings that say how, not what, a dataset computes (not compared between runs).
_HOW = ("output", "device", "batch_size", "chunk_batches", "checkpoint_minutes",
        "overwrite", "scheduler",
        "n_workers", "n_parts", "threads")
#: Settings of each micrograph (its rows of the manifest), not shared.
_PER_MICROGRAPH = ("micrograph", "defocus_u", "defocus_v", "defocus_angle", "phase_shift",
                   "ctf_bfactor", "voltage", "cs", "amplitude_contrast", "pixel_size")


@dataclass
class DatasetJob:
    """A dataset ready to run: entries, their sub-folders and search configurations."""

    output: Path
    entries: list[MicrographEntry]
    folders: list[str]
    configs: list[SearchConfig]
    optics: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str = ""

    def manifest(self, status: dict[int, dict] | None = None) -> dict[str, Any]:
        """The manifest as a plain mapping (``status``: index -> summary of a run)."""
        shared = {k: v for k, v in self.configs[0].model_dump(mode="json").items()
                  if k not in _HOW and k not in _PER_MICROGRAPH}
        rows = []
        for i, (entry, folder) in enumerate(zip(self.entries, self.folders, strict=True)):
            row = {"name": entry.name, "file": str(entry.path), "folder": folder,
                   **entry.ctf_fields(), "optics_group": entry.optics_group,
                   "ctf_source": entry.ctf_source}
            if status and i in status:
                row.update(status[i])
            rows.append(row)
        optics = self.optics.to_dict(orient="records") if len(self.optics) else []
        return {"difftm_dataset": 1, "source": self.source, "template": str(
            self.configs[0].template), "settings": shared, "optics": optics,
            "micrographs": rows}


def subfolder_names(entries: list[MicrographEntry]) -> list[str]:
    """One sub-folder name per micrograph: its file stem, ``_2``, ``_3``... for repeats."""
    names: list[str] = []
    used: set[str] = set()
    for entry in entries:
        stem = Path(entry.path).stem or "micrograph"
        name, k = stem, 1
        while name in used or name == MANIFEST_NAME:
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        names.append(name)
    return names


def build_dataset(
    entries: list[MicrographEntry],
    settings: dict[str, Any],
    output: Path,
    optics: pd.DataFrame | None = None,
    source: str = "",
) -> DatasetJob:
    """Complete the shared ``settings`` with each micrograph's file, CTF and sub-folder.

    The micrograph's CTF (and voltage, Cs, amplitude contrast, pixel size where the input
    gives them) completes the shared settings; a shared setting that contradicts the input
    (e.g. ``--voltage 200`` for micrographs recorded at 300 kV) is refused.

    Raises:
        ValueError: a setting is invalid or contradicts the input (one line naming the
            micrograph and the field).
    """
    output = Path(output)
    folders = subfolder_names(entries)
    configs = []
    for entry, folder in zip(entries, folders, strict=True):
        for key, value in entry.ctf_fields().items():
            given = settings.get(key)
            if given is not None and abs(float(given) - value) > 1e-6 * max(1.0, abs(value)):
                raise ValueError(
                    f"{entry.name}: --{key.replace('_', '-')} {given:g} contradicts "
                    f"{entry.ctf_source or 'the input'} ({value:g}); drop the option")
        data = {**settings, **entry.ctf_fields(), "micrograph": entry.path,
                "output": output / folder}
        try:
            configs.append(SearchConfig(**data))
        except ValidationError as err:
            raise ValueError(f"{entry.name}: {validation_message(err)}") from err
    return DatasetJob(output, entries, folders, configs,
                      optics if optics is not None else pd.DataFrame(), source)


def load_manifest(folder: Path) -> dict[str, Any]:
    """The manifest of a dataset output folder.

    Raises:
        FileNotFoundError: no ``dataset.yaml`` there; ValueError: unreadable.
    """
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no dataset manifest here")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: unreadable manifest ({err.__class__.__name__})") from err
    if not isinstance(data, dict) or "micrographs" not in data:
        raise ValueError(f"{path}: not a difftm dataset manifest")
    return data


def _identity(manifest: dict[str, Any]) -> tuple:
    rows = tuple((r["name"], r["folder"], tuple(sorted(
        (k, v) for k, v in r.items() if k in ("defocus_u", "defocus_v", "defocus_angle",
                                            "phase_shift", "ctf_bfactor", "voltage", "cs",
                                            "amplitude_contrast", "pixel_size"))))
                 for r in manifest["micrographs"])
    return (manifest.get("template"), tuple(sorted(
        (k, str(v)) for k, v in manifest.get("settings", {}).items())), rows)


def _write_manifest(job: DatasetJob, status: dict[int, dict]) -> None:
    from difftm.io.atomic import atomic_output

    with atomic_output(job.output / MANIFEST_NAME, overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(job.manifest(status), sort_keys=False))


def _summary_of(out: Path, status: str) -> dict[str, Any]:
    """Status row of a finished search folder, from the bundle's metadata only."""
    import json

    import numpy as np

    from difftm.search.results import BUNDLE_NAME

    with np.load(Path(out) / BUNDLE_NAME) as data:
        md = json.loads(str(data["metadata"]))
        snr = float(np.max(data["map_snr"]))
    t = md.get("timings", {})
    return {"status": status, "seconds": round(float(t.get("seconds", 0.0)), 3),
            "seconds_this_run": round(float(t.get("seconds_this_run", 0.0)), 3)
            if status != "skipped" else 0.0,
            "resumed_from": int(t.get("resumed_from", 0) or 0), "max_snr": round(snr, 4),
            "pixel_size": md.get("pixel_size"), "threads": md.get("threads")}


def search_micrograph(config: dict[str, Any], threads: int | None = None,
                      progress: Callable[[int, int, float], None] | None = None,
                      n_parts: int | None = None, scheduler: str | None = None
                      ) -> dict[str, Any]:
    """Search one micrograph of a dataset (a Dask task, or called in process).

    A folder that already holds this search's results is not searched again
    (``status: skipped``); a checkpoint is resumed. ``threads`` sets torch's CPU threads
    first (None: leave them, and a resumed search keeps its checkpoint's).

    Returns:
        The status row: status, seconds (whole search), seconds_this_run, resumed_from,
        max_snr, pixel_size, threads.
    """
    from difftm.search.engine import resolve_pixel_size, run_search
    from difftm.search.results import result_fingerprint

    if threads is not None:
        from difftm.threads import apply_threads

        apply_threads(threads)
    cfg = resolve_pixel_size(SearchConfig(**config))
    out = Path(cfg.output)
    if result_fingerprint(out) == cfg.fingerprint():
        return _summary_of(out, "skipped")
    if n_parts is not None or scheduler is not None:
        from difftm.search.distributed import run_search_distributed

        run_search_distributed(cfg, scheduler=scheduler, n_parts=n_parts)
    else:
        run_search(cfg, progress=progress)
    return _summary_of(out, "searched")


def run_dataset(
    job: DatasetJob,
    scheduler: str | None = None,
    n_workers: int | None = None,
    n_parts: int | None = None,
    threads: int | None = None,
    overwrite: bool = False,
    on_start: Callable[[int], None] | None = None,
    on_done: Callable[[int, dict], None] | None = None,
    on_progress: Callable[[int, int, int, float], None] | None = None,
    on_running: Callable[[list[tuple[int, float]]], None] | None = None,
    interval: float = 30.0,
) -> dict[int, dict]:
    """Search every micrograph of ``job`` (see the module docstring).

    Args:
        job: from :func:`build_dataset`.
        scheduler: None (this process), ``"local"`` or a Dask scheduler address.
        n_workers: workers of a local cluster (default: GPUs, else physical cores // 2).
        n_parts: cut each micrograph into this many orientation parts (the tasks), else
            every micrograph is one task.
        threads: torch CPU threads per Dask worker (default 1); in process, None leaves
            the thread count of this process (and of checkpoints being resumed).
        overwrite: replace another dataset's manifest (and other runs' results in the
            sub-folders).
        on_start: called with the index of a micrograph when its search starts (in process).
        on_done: called with the index and its status row when a micrograph is finished.
        on_progress: ``(index, done, total, seconds)`` within a micrograph (in process).
        on_running: with a scheduler, called every ``interval`` seconds with
            ``(index, fraction done)`` of the micrographs being searched on workers (read from
            their lock and checkpoint files).

    Returns:
        index -> status row (see :func:`search_micrograph`).

    Raises:
        FileExistsError: the folder holds another dataset (without ``overwrite``), or another
            dataset run is working there.
    """
    from difftm.search.lock import OutputLock, remove_stale_temporaries

    with OutputLock(job.output, "dataset"):
        remove_stale_temporaries(job.output, (MANIFEST_NAME,))
        if (job.output / MANIFEST_NAME).exists() and not overwrite:
            try:
                theirs = _identity(load_manifest(job.output))
            except (ValueError, KeyError, TypeError):
                theirs = None
            if theirs != _identity(job.manifest()):
                raise FileExistsError(
                    f"{job.output}: holds another dataset (other micrographs, CTF, template "
                    "or settings); choose another --output or pass --overwrite")
        status: dict[int, dict] = {}
        _write_manifest(job, status)
        configs = [c.model_copy(update={"overwrite": overwrite or c.overwrite})
                   .model_dump(mode="json") for c in job.configs]

        def finished(i: int, row: dict) -> None:
            status[i] = row
            _write_manifest(job, status)
            if on_done is not None:
                on_done(i, row)

        if scheduler is None:
            for i, config in enumerate(configs):
                if on_start is not None:
                    on_start(i)
                prog = None if on_progress is None else (
                    lambda d, t, s, i=i: on_progress(i, d, t, s))
                finished(i, search_micrograph(config, None, prog, n_parts))
        else:
            watch = None if on_running is None else (
                lambda pending: on_running(running_micrographs(job, pending)))
            _run_on_dask(scheduler, n_workers, n_parts, threads, configs, on_start, finished,
                         watch, interval)
        return status


def running_micrographs(job: DatasetJob, indices) -> list[tuple[int, float]]:
    """``(index, fraction done)`` of those ``indices`` whose search is running now: its
    folder is locked; the fraction is the checkpoint's next index over the search size."""
    from difftm.search.checkpoint import CHECKPOINT_NAME
    from difftm.search.engine import search_grid
    from difftm.search.lock import LOCK_NAME

    running = []
    for i in sorted(indices):
        folder = job.output / job.folders[i]
        if not (folder / LOCK_NAME).exists():
            continue
        fraction = 0.0
        try:
            import numpy as np

            with np.load(folder / CHECKPOINT_NAME) as data:
                done = int(data["next_index"])
            angles, offsets = search_grid(job.configs[i])
            fraction = done / max(1, int(angles.shape[0]) * int(offsets.numel()))
        except (OSError, KeyError, ValueError):
            pass  # no checkpoint yet, or being replaced right now
        running.append((i, min(fraction, 1.0)))
    return running


def _run_on_dask(scheduler, n_workers, n_parts, threads, configs, on_start, finished,
                 watch=None, interval=30.0) -> None:
    try:
        from distributed import Client, wait
    except ImportError as err:  # pragma: no cover - depends on the installation
        raise ValueError("--scheduler needs dask: pip install 'difftm[distributed]'") from err
    import torch

    from difftm.threads import available_cores

    n_gpu = torch.cuda.device_count()
    cluster = None
    if scheduler == "local":
        n_workers = n_workers or max(1, n_gpu or available_cores() // 2 or 1)
        from difftm.search.distributed import start_local_cluster

        cluster = start_local_cluster(n_workers)
        client = Client(cluster)
    else:
        from difftm.search.distributed import connect_scheduler

        client = connect_scheduler(scheduler)
    per_worker = threads or 1
    try:
        if n_parts is not None:  # micrographs in turn, their orientation parts as tasks
            address = cluster.scheduler_address if cluster is not None else scheduler
            for i, config in enumerate(configs):
                if on_start is not None:
                    on_start(i)
                finished(i, search_micrograph({**config, "threads": per_worker}, None, None,
                                              n_parts, address))
            return
        futures = {}
        for i, config in enumerate(configs):
            if config["device"] in ("auto", "cuda") and n_gpu > 1 and scheduler == "local":
                config = {**config, "device": f"cuda:{i % n_gpu}"}
            futures[client.submit(search_micrograph, config, per_worker, pure=False)] = i
        pending = set(futures)
        while pending:
            try:
                done, pending = wait(pending, timeout=interval, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for fut in sorted(done, key=lambda f: futures[f]):
                finished(futures[fut], fut.result())
            if watch is not None and pending and not done:
                watch({futures[f] for f in pending})
    finally:
        client.close()
        if cluster is not None:
            cluster.close()

