"""Does the denoiser earn its place? The accelerated search's coarse pass with and without it.

Held-out targets (models the denoiser was not trained on) are planted with the faithful
simulator (shot noise and the real background), and the accelerated search's coarse pass
(coarse grid, grid-matched low-pass, nominal defocus) runs on the raw micrograph and on the
denoised one. What matters to the accelerated search is how well the coarse map's local
maxima separate true particles from noise: the fewer noise maxima outrank the weakest true
particle, the fewer candidates are refined for the same recall. Reported per micrograph and
variant: the rank of the weakest true particle among the coarse local maxima (candidates
needed for full recall), the AUC (probability that a true particle's maximum outranks a
noise maximum), and the recall within the top ``2 x n`` maxima. Rank-based measures need
no calibration, which the denoised map's scores do not have.

    python benchmarks/denoiser_ablation.py --json ablation.json     # trains, then compares
    python benchmarks/denoiser_ablation.py --weights w.pt           # a denoiser trained before

Training (without ``--weights``): ``--train-models`` (default 1AKE, 1UBI, 4E43, 7PBL; the
targets are held out), 24 micrographs at 1-2 A/px, half on the real background, 800 Adam
steps (``difftm.denoise.train.TrainingSettings``).

The last line is ``raw_auc=... denoised_auc=... raw_rank=... denoised_rank=...``.
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
import torch

SHARED = Path(os.environ.get("DIFFTM_SHARED_DATA",
                             Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def _coarse_maxima(mic: Path, tpl: Path, out: Path, px: float, defocus: float, step: float,
                   diameter: float):
    from difftm.accelerate.run import coarse_config
    from difftm.accelerate.search import CANDIDATE_SUPPRESSION
    from difftm.search.config import SearchConfig
    from difftm.search.engine import run_search
    from difftm.stats.peaks import pick_peaks

    full = SearchConfig(micrograph=mic, template=tpl, output=out, pixel_size=px,
                        defocus_u=defocus, coarse_out_of_plane_step=step, device="cpu",
                        overwrite=True)
    cfg = coarse_config(full, diameter).model_copy(update={"strategy": "exhaustive"})
    t0 = time.perf_counter()
    res = run_search(cfg)
    secs = time.perf_counter() - t0
    snr = np.where(res.valid_mask(), res.maps["snr"], np.nan)
    yx = pick_peaks(snr, -np.inf, min_distance=CANDIDATE_SUPPRESSION * diameter,
                    border=int(res.metadata["border_low"]))
    return yx[:, ::-1].astype(float), snr[yx[:, 0], yx[:, 1]], secs


def _ranks(maxima_xy: np.ndarray, scores: np.ndarray, truth_xy: np.ndarray,
           radius: float) -> dict:
    n = len(truth_xy)
    true_rank = []
    is_true = np.zeros(len(maxima_xy), dtype=bool)
    for t in truth_xy:
        d = np.hypot(*(maxima_xy - t).T)
        hits = np.flatnonzero(d <= radius)
        if hits.size:
            k = int(hits.min())  # maxima are sorted by score: best hit first
            true_rank.append(k + 1)
            is_true[k] = True
        else:
            true_rank.append(len(maxima_xy) + 1)
    t_scores, n_scores = scores[is_true], scores[~is_true]
    auc = (float(np.mean(t_scores[:, None] > n_scores[None, :]))
           if t_scores.size and n_scores.size else float("nan"))
    return {"worst_rank": int(max(true_rank)), "auc": auc,
            "recall_top_2n": float(np.mean(np.array(true_rank) <= 2 * n)),
            "n_maxima": int(len(maxima_xy))}


def main() -> None:
    """Simulate held-out micrographs, run both coarse passes, print and save the ranks."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", type=Path, default=None,
                    help="a trained denoiser (default: train one first)")
    ap.add_argument("--train-models", nargs="+",
                    default=["1ake.pdb.gz", "1ubi.pdb.gz", "4e43.pdb.gz", "7pbl.pdb.gz"])
    ap.add_argument("--save-weights", type=Path, default=None)
    ap.add_argument("--targets", nargs="+", default=["3enl.pdb.gz", "6msm.pdb.gz"])
    ap.add_argument("--pixel-sizes", nargs="+", type=float, default=[1.5, 2.0])
    ap.add_argument("--backgrounds", nargs="+", default=["shot", "real"])
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--fluence", type=float, default=40.0)
    ap.add_argument("--coarse-step", type=float, default=12.0)
    ap.add_argument("--boxes", type=float, default=4.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from difftm.denoise.model import denoise, load_denoiser
    from difftm.fourier.padding import next_fast_size
    from difftm.io.models import load_model
    from difftm.io.mrc import read_mrc, write_mrc
    from difftm.simulate.micrograph import simulate_micrograph, template_diameter
    from difftm.simulate.template import simulate_template, suggest_box

    bg_image = read_mrc(SHARED / "micrographs" / "Ucsf_stack_1142_DW.mrc").data
    if args.weights is not None:
        model, info = load_denoiser(args.weights)
    else:
        from difftm.denoise.train import TrainingSettings, train_denoiser, training_pairs

        settings = TrainingSettings(models=[str(SHARED / "pdb" / m) for m in args.train_models])
        t0 = time.perf_counter()
        pairs = training_pairs([Path(m) for m in settings.models], settings, bg_image)
        model = train_denoiser(pairs, settings)
        info = dict(settings.__dict__)
        print(f"trained on {len(pairs)} micrographs in {time.perf_counter() - t0:.0f} s",
              flush=True)
        if args.save_weights is not None:
            from difftm.denoise.model import save_denoiser

            save_denoiser(model, args.save_weights, info)
    trained_on = [Path(m).name for m in info.get("models", [])]
    for t in args.targets:
        if t in trained_on:
            raise SystemExit(f"{t} was in the denoiser's training set: not a held-out target")
    rows = []
    with tempfile.TemporaryDirectory(prefix="denoise_") as tmp:
        work = Path(tmp)
        for k, target in enumerate(args.targets):
            px = args.pixel_sizes[min(k, len(args.pixel_sizes) - 1)]
            atoms = load_model(SHARED / "pdb" / target)
            box = suggest_box(atoms, px)
            vol = simulate_template(SHARED / "pdb" / target, pixel_size=px, box=box)
            diameter = template_diameter(vol)
            size = next_fast_size(int(args.boxes * box))
            for bg in args.backgrounds:
                for s in range(args.seeds):
                    defocus = 8000.0 + 2000.0 * s
                    sim = simulate_micrograph(vol, px, (size, size), args.n, defocus,
                                              fluence=args.fluence, seed=500 + 10 * k + s,
                                              atoms=atoms, defocus_spread=100.0,
                                              background=bg_image if bg == "real" else None)
                    folder = work / f"{target}_{bg}_{s}"
                    folder.mkdir()
                    tpl = folder / "tpl.mrc"
                    write_mrc(tpl, vol.numpy(), px)
                    t0 = time.perf_counter()
                    images = {"raw": sim.image, "denoised": denoise(sim.image, model)}
                    t_denoise = time.perf_counter() - t0
                    truth = sim.truth[["x", "y"]].to_numpy(dtype=float)
                    row = {"target": target, "pixel_size": px, "background": bg, "seed": s,
                           "crop": size, "denoise_seconds": t_denoise}
                    for name, img in images.items():
                        mic = folder / f"{name}.mrc"
                        write_mrc(mic, img, px)
                        xy, scores, secs = _coarse_maxima(mic, tpl, folder / name, px,
                                                          defocus, args.coarse_step, diameter)
                        row[name] = _ranks(xy, scores, truth, max(2.0, 0.1 * diameter))
                        row[name]["coarse_seconds"] = secs
                    rows.append(row)
                    print(f"{target:<12} {bg:<5} seed {s} | raw rank {row['raw']['worst_rank']}"
                          f" auc {row['raw']['auc']:.3f} | denoised rank "
                          f"{row['denoised']['worst_rank']} auc {row['denoised']['auc']:.3f} | "
                          f"denoise {t_denoise:.2f} s, coarse {row['raw']['coarse_seconds']:.0f}"
                          " s", flush=True)
    summary = {}
    for name in ("raw", "denoised"):
        summary[f"{name}_auc"] = float(np.nanmean([r[name]["auc"] for r in rows]))
        summary[f"{name}_rank"] = float(np.mean([r[name]["worst_rank"] for r in rows]))
        summary[f"{name}_recall_top_2n"] = float(np.mean([r[name]["recall_top_2n"]
                                                          for r in rows]))
    summary["machine"] = f"{platform.machine()} x{torch.get_num_threads()} threads"
    summary["trained_on"] = trained_on
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    print(" ".join(f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}"
                   for k, v in summary.items()))


if __name__ == "__main__":
    main()
