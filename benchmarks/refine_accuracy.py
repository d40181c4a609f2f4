"""Refinement accuracy and time: gradient vs grid on planted particles at 1-1.5 A/px.

Particles of each target (../shared/data/pdb) are planted with the faithful simulator (exact
atom projections with displaced solvent, per-particle defocus offsets of sd
``--defocus-spread``, continuous Haar-random orientations, Poisson counts), at integer
centres. Starts are what an exhaustive search gives: the nearest orientation of the search
grid (``--grid-step`` out of plane, 0.6 of it in plane, the default 2.5/1.5 deg), the
micrograph's nominal defocus (the search's plane nearest the particle's: offsets of 200 A
steps), and a centre 1 px off in x and y (a search peak of a blurred landscape). Both
methods then refine every particle; reported per target and method: median and 90th
percentile angular error (geodesic, degrees), shift error (px), |defocus error| (A) against
the truth, mean SNR gain, and wall time per particle.

The grid method uses cisTEM's local ranges (+-1.5 grid steps out of plane, +-0.9 in plane,
defocus +-200 A, shifts +-1 px at 0.1 px) with steps ``--grid-refine-step`` (default 0.5
deg, coarser than cisTEM's 0.2/0.1 deg, which would take ~25x longer per particle on a CPU).

    python benchmarks/refine_accuracy.py --targets 3enl.pdb.gz 6msm.pdb.gz --n 6

The last line is ``target=... gradient_median_deg=... grid_median_deg=...
gradient_s_per_particle=... grid_s_per_particle=...`` for the last target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch
from _outputs import add_output_options, redrawn

SHARED = Path(os.environ.get("DIFFTM_SHARED_DATA",
                             Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def _nearest_grid(rotations: torch.Tensor, step: float) -> torch.Tensor:
    from difftm.geometry.euler import euler_to_matrix
    from difftm.geometry.grids import orientation_grid

    grid = euler_to_matrix(orientation_grid(step, 0.6 * step)).float()
    out = []
    for r in rotations.float():
        trace = torch.einsum("ij,bij->b", r, grid)
        out.append(grid[int(trace.argmax())])
    return torch.stack(out)


def run_target(target: str, pixel_size: float, n: int, fluence: float, spread: float,
               grid_step: float, refine_step: float, seed: int) -> dict:
    """Simulate one micrograph of ``target``, refine its particles both ways, score."""
    from difftm.geometry.euler import euler_to_matrix, rotation_angle_deg
    from difftm.io.models import load_model
    from difftm.refine.optimize import refine_gradient, refine_grid
    from difftm.refine.scorer import ParticleScorer
    from difftm.search.config import SearchConfig
    from difftm.simulate.micrograph import simulate_micrograph
    from difftm.simulate.template import simulate_template, suggest_box

    path = SHARED / "pdb" / target
    atoms = load_model(path)
    box = suggest_box(atoms, pixel_size)
    vol = simulate_template(path, pixel_size=pixel_size, box=box)
    side = int(np.ceil(np.sqrt(n))) * int(1.3 * box) + box
    from difftm.fourier.padding import next_fast_size

    size = next_fast_size(side)
    defocus = 10000.0
    sim = simulate_micrograph(vol, pixel_size, (size, size), n, defocus, fluence=fluence,
                              seed=seed, atoms=atoms, defocus_spread=spread)
    cfg = SearchConfig(micrograph="m.mrc", template="t.mrc", output="o",
                       pixel_size=pixel_size, defocus_u=defocus)
    scorer = ParticleScorer.from_search(cfg, sim.image, vol.numpy())
    truth = sim.truth
    r_true = euler_to_matrix(torch.tensor(truth[["rot", "tilt", "psi"]].to_numpy()))
    r0 = _nearest_grid(r_true, grid_step)
    xy = truth[["x", "y"]].to_numpy().astype(float)
    centres = torch.tensor(np.rint(xy + 1.0).astype(np.int64))
    dz_true = truth["defocus_u"].to_numpy() - defocus
    dz0 = torch.tensor(np.round(dz_true / 200.0) * 200.0, dtype=torch.float32)
    out = {"target": target, "pixel_size": pixel_size, "n": n, "fluence": fluence,
           "box": box, "micrograph": size, "grid_step": grid_step, "methods": {}}
    r_step = refine_step
    for method in ("gradient", "grid"):
        t0 = time.perf_counter()
        if method == "gradient":
            res = refine_gradient(scorer, centres, r0, dz0)
        else:
            res = refine_grid(scorer, centres, r0, dz0,
                              out_of_plane_range=1.5 * grid_step, out_of_plane_step=r_step,
                              in_plane_range=0.9 * grid_step, in_plane_step=r_step,
                              defocus_range=200.0, defocus_step=20.0, shift_range=1.0,
                              shift_step=0.1)
        secs = time.perf_counter() - t0
        ang = np.array([float(rotation_angle_deg(res.rotations[i], r_true[i]))
                        for i in range(n)])
        pos = centres.numpy() + res.shifts.numpy()
        shift = np.hypot(*(pos - xy).T)
        ddz = np.abs(res.defocus_offsets.numpy() - dz_true)
        start_ang = np.array([float(rotation_angle_deg(r0[i].double(), r_true[i]))
                              for i in range(n)])
        out["methods"][method] = {
            "angle_median": float(np.median(ang)), "angle_p90": float(np.quantile(ang, 0.9)),
            "shift_median": float(np.median(shift)), "shift_p90": float(np.quantile(shift, 0.9)),
            "defocus_median": float(np.median(ddz)), "defocus_p90": float(np.quantile(ddz, 0.9)),
            "snr_gain": float((res.score - res.start_score).mean()),
            "snr_mean": float(res.score.mean()),
            "start_angle_median": float(np.median(start_ang)),
            "seconds_per_particle": secs / n,
        }
    return out


def plot(results: list[dict], path: Path) -> None:
    """Angular error (median and 90th percentile) and time per particle, per target and
    method."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 3.4))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    names = [r["target"].split(".")[0].upper() for r in results]
    x = np.arange(len(results))
    for k, method in enumerate(("gradient", "grid")):
        med = [r["methods"][method]["angle_median"] for r in results]
        p90 = [r["methods"][method]["angle_p90"] for r in results]
        secs = [r["methods"][method]["seconds_per_particle"] for r in results]
        ax1.bar(x + (k - 0.5) * 0.38, med, 0.36, label=f"{method} median")
        ax1.scatter(x + (k - 0.5) * 0.38, p90, marker="_", s=200, color="k")
        ax2.bar(x + (k - 0.5) * 0.38, secs, 0.36, label=method)
    for ax in (ax1, ax2):
        ax.set_xticks(x, names)
    ax1.set_ylabel("angular error (deg); bar: median, tick: p90")
    ax2.set_ylabel("seconds per particle")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Parse arguments, run every target, print a table and a summary line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=["3enl.pdb.gz", "6msm.pdb.gz",
                                                     "7pbl.pdb.gz"])
    ap.add_argument("--pixel-size", type=float, default=1.5)
    ap.add_argument("--n", type=int, default=6, help="particles per target")
    ap.add_argument("--fluence", type=float, default=50.0)
    ap.add_argument("--defocus-spread", type=float, default=150.0)
    ap.add_argument("--grid-step", type=float, default=2.5, help="search grid step, deg")
    ap.add_argument("--grid-refine-step", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    add_output_options(ap, threads=None)
    args = ap.parse_args()
    if redrawn(args, plot, "results"):
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    print(f"{'target':<12} {'method':<9} {'ang med':>8} {'ang p90':>8} {'shift med':>9} "
          f"{'|ddf| med':>9} {'SNR gain':>8} {'s/particle':>10}")
    for k, target in enumerate(args.targets):
        res = run_target(target, args.pixel_size, args.n, args.fluence, args.defocus_spread,
                         args.grid_step, args.grid_refine_step, args.seed + k)
        results.append(res)
        for method, m in res["methods"].items():
            print(f"{target:<12} {method:<9} {m['angle_median']:8.3f} {m['angle_p90']:8.3f} "
                  f"{m['shift_median']:9.3f} {m['defocus_median']:9.1f} {m['snr_gain']:8.2f} "
                  f"{m['seconds_per_particle']:10.2f}", flush=True)
    machine = f"{platform.machine()} x{torch.get_num_threads()} threads"
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "results": results}, indent=1))
    if args.figure is not None:
        plot(results, args.figure)
    last = results[-1]["methods"]
    print(f"target={results[-1]['target']} "
          f"gradient_median_deg={last['gradient']['angle_median']:.3f} "
          f"grid_median_deg={last['grid']['angle_median']:.3f} "
          f"gradient_s_per_particle={last['gradient']['seconds_per_particle']:.2f} "
          f"grid_s_per_particle={last['grid']['seconds_per_particle']:.2f}")


if __name__ == "__main__":
    main()
