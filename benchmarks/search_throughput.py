"""Search throughput: correlations per second and cost relative to the inverse-FFT floor.

Every correlation needs one full-size inverse real FFT of the image; nothing can be faster.
This benchmark measures, in one run on one device, (a) the engine's time per correlation
(template projection, CTF/whitening/padding/normalisation, pruned padded forward FFT and
product, inverse FFT, accumulation of max/argmax/sum/sum of squares), (b) the same five
stages timed one by one, and (c) the time of the inverse real FFT alone at the same batch
size, and prints every time as inverse-FFT equivalents per correlation.

    python benchmarks/search_throughput.py --size 4096 --box 512 --device cuda
    python benchmarks/search_throughput.py --size 1024 --box 128 --device cpu
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _blob_volume(box: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    c = box // 2
    ax = torch.arange(box, dtype=torch.float32) - c
    zz, yy, xx = torch.meshgrid(ax, ax, ax, indexing="ij")
    vol = torch.zeros((box, box, box))
    for _ in range(40):
        p = (torch.rand(3, generator=g) - 0.5) * box * 0.5
        s = float(torch.rand(1, generator=g)) * box * 0.03 + box * 0.02
        vol += torch.exp(-((zz - p[2]) ** 2 + (yy - p[1]) ** 2 + (xx - p[0]) ** 2) / (2 * s * s))
    return vol


def main() -> None:
    """Parse arguments, run the measurement, print a table and a JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=1024, help="square image size (px)")
    ap.add_argument("--box", type=int, default=128, help="template box (px)")
    ap.add_argument("--batch", type=int, default=None, help="correlations per batch")
    ap.add_argument("--n", type=int, default=None, help="correlations to time")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--oversampling", type=int, default=2)
    ap.add_argument("--defocus-planes", type=int, default=1,
                    help="defocus planes per orientation (share one projection)")
    ap.add_argument("--template-padding", default="auto",
                    help="auto, none or an edge in pixels (see difftm search --help)")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = ap.parse_args()

    from difftm.geometry.grids import orientation_grid
    from difftm.search.accumulator import Accumulator
    from difftm.search.config import SearchConfig
    from difftm.search.device import plan_batch_size, resolve_device
    from difftm.search.engine import build_correlator

    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    h = w = args.size
    rng = np.random.default_rng(0)
    image = rng.standard_normal((h, w)).astype(np.float32)
    volume = _blob_volume(args.box).numpy()
    cfg = SearchConfig(micrograph="m.mrc", template="t.mrc", output="o", pixel_size=1.0,
                       defocus_u=10000.0, projector_oversampling=args.oversampling,
                       template_padding=args.template_padding)
    angles = orientation_grid(2.5, 1.5)
    offsets = torch.arange(args.defocus_planes, dtype=torch.float64) * 200.0
    corr = build_correlator(cfg, image, volume, angles, offsets - offsets.mean(), device)
    batch = args.batch or plan_batch_size((h, w), corr.template_size, device)
    n = args.n or (batch * (20 if device.type == "cuda" else 4))
    n = max(batch, n - n % batch)
    acc = Accumulator.empty((h, w), device)
    idx_all = torch.arange(n + batch, dtype=torch.int64, device=device)
    stages = {"projection": 0.0, "filter": 0.0, "forward_fft": 0.0, "inverse_fft": 0.0,
              "update": 0.0}

    def timed(name, fn, *a):
        _sync(device)
        t = time.perf_counter()
        out = fn(*a)
        _sync(device)
        stages[name] += time.perf_counter() - t
        return out

    with torch.inference_mode():
        acc.update(corr.correlate(idx_all[:batch]), idx_all[:batch])  # warm-up
        _sync(device)
        t0 = time.perf_counter()
        for s in range(batch, batch + n, batch):
            idx = idx_all[s : s + batch]
            acc.update(corr.correlate(idx), idx)
        _sync(device)
        t_corr = (time.perf_counter() - t0) / n
        # the same work stage by stage (synchronised between stages)
        for s in range(batch, batch + n, batch):
            idx = idx_all[s : s + batch].cpu()
            orient = torch.div(idx, corr.n_defocus, rounding_mode="floor")
            plane = idx - orient * corr.n_defocus
            uniq, inverse = torch.unique(orient, sorted=True, return_inverse=True)
            slices = timed("projection", corr.projector.project, corr.rotations[uniq])
            t = timed("filter", corr.filter_slices, slices, inverse.to(device), plane.to(device))
            spec = timed("forward_fft", corr.product_spectrum, t)
            cc = timed("inverse_fft", corr.inverse, spec)
            timed("update", acc.update, cc, idx + n + batch)
        spec = torch.randn((batch, h, w // 2 + 1), dtype=torch.complex64, device=device)
        torch.fft.irfft2(spec, s=(h, w))
        _sync(device)
        reps = max(1, n // batch)
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.fft.irfft2(spec, s=(h, w))
        _sync(device)
        t_ifft = (time.perf_counter() - t0) / (reps * batch)
    breakdown = {k: v / n / t_ifft for k, v in stages.items()}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads")
    res = {
        "device": name, "image": f"{h}x{w}", "box": args.box, "batch": batch, "n": n,
        "defocus_planes": args.defocus_planes,
        "seconds_per_correlation": t_corr, "correlations_per_second": 1.0 / t_corr,
        "seconds_per_irfft2": t_ifft, "ifft_equivalents_per_correlation": t_corr / t_ifft,
        "template_size": corr.template_size, "breakdown_ifft_equivalents": breakdown,
        "torch": torch.__version__,
    }
    print(f"device                 {name}")
    print(f"image / box / batch    {h}x{w} / {args.box} / {batch}, "
          f"{args.defocus_planes} defocus plane(s)")
    print(f"correlations/s         {1.0 / t_corr:,.1f}")
    print(f"irfft2/s (floor)       {1.0 / t_ifft:,.1f}")
    print(f"template box / padded  {args.box} / {corr.template_size}")
    print(f"iFFT-equivalents/corr  {t_corr / t_ifft:.2f}")
    for stage, value in breakdown.items():
        print(f"  {stage:<20} {value:.3f}")
    print(f"  {'sum of stages':<20} {sum(breakdown.values()):.3f}")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
