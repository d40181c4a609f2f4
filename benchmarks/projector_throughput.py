"""Fourier-slice projector throughput: projections per second, and ratio to an inverse FFT.

Measures, in one run on one device, the time of ``FourierSliceProjector.project`` for a batch
of rotations (random ones, and consecutive ones from the search grid, which share a viewing
direction and differ in psi, as the search engine sends them), the one-off cost of building
the projector, and the time of ``torch.fft.irfft2`` of the same batch of D x D spectra (the
cheapest thing any template-matching step does per orientation), then prints the ratio.

    python benchmarks/projector_throughput.py --box 128 256 --batch 64 --threads 2
    python benchmarks/projector_throughput.py --box 256 512 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from difftm.fourier.projector import FourierSliceProjector
from difftm.geometry.euler import euler_to_matrix
from difftm.geometry.grids import orientation_grid


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _best_time(fn, device: torch.device, repeats: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def run(box: int, batch: int, oversampling: float, device: torch.device, repeats: int) -> dict:
    """Time one configuration; returns a dict of seconds and rates."""
    g = torch.Generator().manual_seed(0)
    volume = torch.randn(box, box, box, generator=g)
    t0 = time.perf_counter()
    projector = FourierSliceProjector(volume, oversampling=oversampling, device=device)
    _sync(device)
    build = time.perf_counter() - t0
    angles = torch.rand(batch, 3, generator=g, dtype=torch.float64) * 360.0
    random_r = euler_to_matrix(angles).float().to(device)
    grid = orientation_grid(2.5, 1.5)
    start = grid.shape[0] // 2
    grid_r = euler_to_matrix(grid[start : start + batch]).float().to(device)
    t_random = _best_time(lambda: projector.project(random_r), device, repeats)
    t_grid = _best_time(lambda: projector.project(grid_r), device, repeats)
    spectra = projector.project(grid_r)
    t_ifft = _best_time(lambda: torch.fft.irfft2(spectra, s=(box, box)), device, repeats)
    return {
        "box": box,
        "oversampling": projector.oversampling,
        "batch": batch,
        "build_s": build,
        "spectrum_MB": projector.memory_bytes / 1e6,
        "random_per_s": batch / t_random,
        "grid_per_s": batch / t_grid,
        "grid_over_irfft2": t_grid / t_ifft,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--box", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--oversampling", type=float, default=2.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch default)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", action="store_true", help="print JSON lines only")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if not args.json:
        print(f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
              f"device {device}, threads {torch.get_num_threads()}")
    for box in args.box:
        res = run(box, args.batch, args.oversampling, device, args.repeats)
        if args.json:
            print(json.dumps(res))
        else:
            print(
                f"D={res['box']:4d} os={res['oversampling']:.2f} batch={res['batch']}: "
                f"build {res['build_s']:.1f} s, spectrum {res['spectrum_MB']:.0f} MB, "
                f"{res['random_per_s']:.0f} proj/s (random), {res['grid_per_s']:.0f} proj/s "
                f"(grid order), projection / irfft2 time = {res['grid_over_irfft2']:.1f}"
            )


if __name__ == "__main__":
    main()
