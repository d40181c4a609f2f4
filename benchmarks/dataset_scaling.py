"""Scaling of a dataset search over Dask workers: N micrographs on 1, 2, ... workers.

Writes N noise micrographs and a blob template into a temporary folder, then searches the
dataset (``difftm.dataset.run.run_dataset``: every micrograph one task) in this process and
on a ``LocalCluster`` with each worker count (one torch thread per worker). The cluster is
started and warmed up (difftm and torch imported, one small search per worker) before the
clock starts, so the times are the dataset's, not Dask's start-up. Prints wall times, the
parallel efficiency ``E(k) = T(1 worker) / (k * T(k workers))``, the load of the machine
before and after (other processes take cores away) and checks that every map is
bit-identical across the runs. Two more columns split the efficiency: ``task s``, the sum of
the micrographs' own search times (grows when workers slow each other down: shared cores,
memory bandwidth) and ``busy``, that sum over ``k x wall time`` (below 1: workers waiting
for tasks, scheduling, start-up and the tail of the last tasks). One JSON line at the end.

    python benchmarks/dataset_scaling.py --micrographs 8 --size 384 --box 32 --workers 1 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
from _synthetic import blob_volume


def _warm(config: dict) -> int:
    """Import the search stack and run one small search (first-call costs) in a worker."""
    from difftm.dataset.run import search_micrograph

    config = {**config, "output": f"{config['output']}_{os.getpid()}"}
    search_micrograph(config, threads=1)
    return os.getpid()


def main() -> None:
    """Parse arguments, run, print a table and a JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--micrographs", type=int, default=8, help="micrographs in the dataset")
    ap.add_argument("--size", type=int, default=384, help="square micrograph size (px)")
    ap.add_argument("--box", type=int, default=32, help="template box (px)")
    ap.add_argument("--steps", type=float, nargs=2, default=(15.0, 15.0),
                    help="out-of-plane and in-plane steps (degrees)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch-size", type=int, default=None,
                    help="correlations per batch in every search [planned from free memory]")
    args = ap.parse_args()

    from distributed import Client

    from difftm.dataset.inputs import MicrographEntry
    from difftm.dataset.run import build_dataset, run_dataset
    from difftm.io.mrc import write_mrc
    from difftm.search.distributed import start_local_cluster
    from difftm.search.results import load_results
    from difftm.threads import available_cores

    tmp = Path(tempfile.mkdtemp(prefix="difftm_scaling_"))
    rng = np.random.default_rng(0)
    entries = []
    for k in range(args.micrographs):
        path = tmp / f"mic_{k:03d}.mrc"
        write_mrc(path, rng.standard_normal((args.size, args.size)).astype(np.float32), 1.5)
        entries.append(MicrographEntry(name=path.name, path=path, defocus_u=9000.0 + 500 * k,
                                       defocus_v=8800.0 + 500 * k, defocus_angle=10.0 * k))
    write_mrc(tmp / "tpl.mrc", blob_volume(args.box), 1.5)
    settings = dict(template=tmp / "tpl.mrc", out_of_plane_step=args.steps[0],
                    in_plane_step=args.steps[1], defocus_range=0.0, whiten=True,
                    device="cpu", threads=1, batch_size=args.batch_size)
    write_mrc(tmp / "warm.mrc", rng.standard_normal((96, 96)).astype(np.float32), 1.5)
    warm = build_dataset([MicrographEntry(name="warm", path=tmp / "warm.mrc", defocus_u=9000.0,
                                          defocus_v=9000.0)], settings, tmp / "warm")
    warm_config = warm.configs[0].model_dump(mode="json")
    load_before = os.getloadavg()
    times: dict[str, float] = {}
    task_seconds: dict[str, float] = {}
    folders: dict[str, Path] = {}

    import torch

    torch.set_num_threads(1)
    _warm(warm_config)
    job = build_dataset(entries, settings, tmp / "in_process")
    t0 = time.perf_counter()
    status = run_dataset(job)
    times["in process"] = time.perf_counter() - t0
    task_seconds["in process"] = sum(r["seconds"] for r in status.values())
    folders["in process"] = job.output
    for k in args.workers:
        cluster = start_local_cluster(k)
        client = Client(cluster)
        try:
            client.run(_warm, warm_config)
            job = build_dataset(entries, settings, tmp / f"workers_{k}")
            t0 = time.perf_counter()
            status = run_dataset(job, scheduler=cluster.scheduler_address, threads=1)
            times[f"{k} workers"] = time.perf_counter() - t0
            task_seconds[f"{k} workers"] = sum(r["seconds"] for r in status.values())
            folders[f"{k} workers"] = job.output
        finally:
            client.close()
            cluster.close()
    load_after = os.getloadavg()

    identical = True
    ref = folders["in process"]
    for folder in folders.values():
        for sub in sorted(p.name for p in ref.iterdir() if p.is_dir()):
            a, b = load_results(ref / sub), load_results(folder / sub)
            identical &= all(np.array_equal(a.maps[m], b.maps[m]) for m in a.maps)
    t1 = times.get("1 workers")
    print(f"{args.micrographs} micrographs {args.size}x{args.size} px, template {args.box} px, "
          f"steps {args.steps[0]:g}/{args.steps[1]:g} deg; {platform.processor() or 'cpu'}, "
          f"{os.cpu_count()} CPUs, {available_cores()} idle physical cores at the start, "
          f"load {load_before[0]:.2f} before / {load_after[0]:.2f} after")
    print(f"{'run':>12} {'seconds':>9} {'mic/s':>7} {'efficiency':>11} {'task s':>8} "
          f"{'busy':>5}")
    rows = {}
    for name, sec in times.items():
        k = int(name.split()[0]) if name.endswith("workers") else None
        eff = t1 / (k * sec) if (t1 and k) else float("nan")
        busy = task_seconds[name] / ((k or 1) * sec)
        rows[name] = {"seconds": round(sec, 3),
                      "efficiency": round(eff, 3) if eff == eff else None,
                      "task_seconds": round(task_seconds[name], 3), "busy": round(busy, 3)}
        print(f"{name:>12} {sec:9.2f} {args.micrographs / sec:7.2f} {eff:11.2f} "
              f"{task_seconds[name]:8.1f} {busy:5.2f}")
    print(f"maps bit-identical across runs: {identical}")
    print(json.dumps({"benchmark": "dataset_scaling", "micrographs": args.micrographs,
                      "size": args.size, "box": args.box, "steps": list(args.steps),
                      "cpus": os.cpu_count(), "idle_cores": available_cores(),
                      "load_before": load_before[0], "load_after": load_after[0],
                      "runs": rows, "identical": bool(identical)}))


if __name__ == "__main__":
    main()
