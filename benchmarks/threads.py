"""Search time per orientation against the number of torch CPU threads, idle and under load.

Runs the engine's correlate loop (projection, CTF, normalisation, FFTs, accumulation) on a
small planted problem for each thread count, alternating the counts over several rounds and
keeping the best round of each (the least disturbed by other processes), first on the
machine as it is and then with ``--busy`` CPU-bound background processes (a shared machine).
Prints a table and one JSON line; the result decides the default of ``--threads``
(:mod:`difftm.threads`).

    python benchmarks/threads.py --size 512 --box 64 --threads 1 2 --busy 1
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import time

import numpy as np
import torch
from _synthetic import blob_volume


def _spin(stop) -> None:  # a CPU-bound background process
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1




def _time_per_orientation(corr, n: int, batch: int) -> float:
    from difftm.search.accumulator import Accumulator
    from difftm.search.engine import correlate_range

    acc = Accumulator.empty(corr.shape, "cpu")
    correlate_range(corr, acc, 0, batch, batch)  # warm-up
    t0 = time.perf_counter()
    correlate_range(corr, acc, 0, n, batch)
    return (time.perf_counter() - t0) / n * 1e3


def main() -> None:
    """Parse arguments, measure, print a table and a JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512, help="square micrograph size (px)")
    ap.add_argument("--box", type=int, default=64, help="template box (px)")
    ap.add_argument("--n", type=int, default=256, help="orientations timed per round")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--busy", type=int, default=1,
                    help="CPU-bound background processes for the 'loaded' measurement")
    args = ap.parse_args()

    from difftm.search.config import SearchConfig
    from difftm.search.engine import build_correlator, search_grid
    from difftm.threads import available_cores, default_threads

    rng = np.random.default_rng(0)
    image = rng.standard_normal((args.size, args.size)).astype(np.float32)
    cfg = SearchConfig(micrograph="m.mrc", template="t.mrc", output="o", pixel_size=1.5,
                       defocus_u=10000, defocus_range=0, out_of_plane_step=10,
                       in_plane_step=10, device="cpu")
    angles, offsets = search_grid(cfg)
    corr = build_correlator(cfg, image, blob_volume(args.box), angles[: args.n], offsets,
                            torch.device("cpu"))
    rows = []
    for busy in (0, args.busy) if args.busy else (0,):
        stop = mp.Event()
        spinners = [mp.Process(target=_spin, args=(stop,), daemon=True) for _ in range(busy)]
        for p in spinners:
            p.start()
        try:
            best: dict[int, float] = {}
            for _ in range(args.rounds):
                for t in args.threads:
                    torch.set_num_threads(t)
                    ms = _time_per_orientation(corr, args.n, args.batch)
                    best[t] = min(best.get(t, float("inf")), ms)
        finally:
            stop.set()
            for p in spinners:
                p.join()
        for t in args.threads:
            rows.append({"busy_processes": busy, "threads": t, "ms_per_orientation": best[t],
                         "vs_1_thread": best[t] / best[args.threads[0]]})
    print(f"{'busy':>4} {'threads':>7} {'ms/orient':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['busy_processes']:>4} {r['threads']:>7} {r['ms_per_orientation']:>10.2f} "
              f"{r['vs_1_thread']:>6.2f}")
    print(json.dumps({
        "machine": platform.processor() or platform.machine(), "logical_cpus": os.cpu_count(),
        "available_cores": available_cores(), "default_threads": default_threads()[0],
        "size": args.size, "box": args.box, "torch": torch.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
