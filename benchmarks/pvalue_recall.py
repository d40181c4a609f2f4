"""Recall at a fixed false-positive rate: z-score vs SNR vs 2DTM p-value (regions q1, q3).

Planted-particle micrographs of a small target (default PDB 6MSM, CFTR, ~125 kDa) are
simulated at a realistic pixel size (1.5 A), fluence (30 e/A^2, counts drawn at fluence x
DQE 0.8), 300 kV and 1 um defocus on a real micrograph texture, binned by Fourier cropping
(default x2, as a fast search of a binned micrograph would), and searched with a coarse
orientation grid (15/15 deg) and an 8 A low-pass. Every candidate (local maximum of the
z-score map; of the SNR map for the SNR metric, as ``call_particles`` does) is matched greedily,
strongest first in each metric's own order, to the true particles within ``--match-radius``
pixels (of the searched, binned image). Unmatched candidates are false positives.

For each metric the pooled candidates of all seeds give a recall vs false-positives-per-
micrograph curve (FROC). Reported:

* recall at a fixed false-positive rate (``--fp-per-micrograph``, default 1): each metric's
  cutoff is the lowest score at which at most ``round(fp * n_seeds)`` pooled false positives
  score at or above it (-ln p = 0, outside the p-value's region, never counts as called);
* recall and false positives at each metric's default cutoff (erfc threshold with one
  expected false positive for z-score and SNR, ``-ln p >= 8`` for the p-values, and the GEV
  threshold on the z-score and the p-values fitted on all pixels for reference).

Example (the run recorded in docs/STATISTICS.md: 10-13 min on a shared 2-core CPU)::

    python benchmarks/pvalue_recall.py --figure docs/figures/pvalue_recall_froc.png

The last printed line is ``recall_zscore=... recall_snr=... recall_pvalue_q1=...
recall_pvalue_q3=... fp_per_micrograph=...``.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

METRIC_NAMES = ("zscore", "snr", "pvalue_q1", "pvalue_q3")
EXTRA_NAMES = ("gev", "pvalue_q1_allpix", "pvalue_q3_allpix")
LABELS = {"zscore": "z-score", "snr": "SNR", "pvalue_q1": "p-value q1",
          "pvalue_q3": "p-value q3", "gev": "GEV (z)", "pvalue_q1_allpix": "p q1 allpix",
          "pvalue_q3_allpix": "p q3 allpix"}


@dataclass
class Candidates:
    """Scored candidates of one metric on one micrograph, strongest first."""

    score: np.ndarray  # the metric's value, descending
    is_tp: np.ndarray  # bool: matched to a true particle (greedy, in this order)
    default_called: np.ndarray  # bool: called by the metric's default cutoff


def fourier_bin(image: np.ndarray, factor: int) -> np.ndarray:
    """Downsample ``image`` by an integer ``factor`` by cropping its Fourier transform.

    The sample grid keeps its origin: binned pixel ``i`` sits at original pixel
    ``factor * i``. The mean (counts per original pixel) is preserved.
    """
    if factor == 1:
        return image.astype(np.float32)
    h, w = image.shape
    if h % (2 * factor) or w % (2 * factor):
        raise ValueError(f"image {h}x{w} is not divisible by 2 x bin factor {factor}")
    hb, wb = h // factor, w // factor
    f = np.fft.rfft2(image.astype(np.float64))
    keep = np.concatenate([f[: hb // 2], f[h - hb // 2 :]], axis=0)[:, : wb // 2 + 1]
    keep[hb // 2] = 0.0  # drop the unpaired Nyquist row/column of the smaller grid
    keep[:, wb // 2] = 0.0
    out = np.fft.irfft2(keep, s=(hb, wb)) * (hb * wb) / (h * w)
    return out.astype(np.float32)


def match_in_order(xy: np.ndarray, truth_xy: np.ndarray, radius: float) -> np.ndarray:
    """Greedy matching in the given order; True where a candidate takes a true particle."""
    from difftm.evaluate import match_detections

    det = pd.DataFrame({"x": xy[:, 0], "y": xy[:, 1]})
    tru = pd.DataFrame({"x": truth_xy[:, 0], "y": truth_xy[:, 1]})
    is_tp = np.zeros(len(det), dtype=bool)
    for i, _, _ in match_detections(det, tru, radius):
        is_tp[i] = True
    return is_tp


def score_micrograph(result, truth_xy: np.ndarray, args) -> tuple[dict, dict]:
    """Candidates of every metric on one searched micrograph, plus default thresholds."""
    from difftm.search.particles import call_particles
    from difftm.stats.pvalue import neg_log_pvalue

    ztab, zsum = call_particles(result, metric="zscore", min_distance=args.min_distance,
                                pvalue_region="q1")
    stab, _ = call_particles(result, metric="snr", min_distance=args.min_distance)
    nlp_q3 = neg_log_pvalue(ztab["zscore"].to_numpy(), ztab["snr"].to_numpy(), region="q3")
    # the alternative in the paper: fit on every valid pixel, read -ln p at the candidates
    valid = result.valid_mask()
    zmap, smap = result.maps["zscore"], result.maps["snr"]
    y, x = ztab["y"].to_numpy(int), ztab["x"].to_numpy(int)
    allpix = {}
    for region in ("q1", "q3"):
        nlp_map = np.zeros(zmap.shape)
        nlp_map[valid] = neg_log_pvalue(zmap[valid], smap[valid], region=region)
        allpix[region] = nlp_map[y, x]
    sources = {
        "zscore": (ztab, ztab["zscore"].to_numpy(), ztab["called_zscore"].to_numpy()),
        "snr": (stab, stab["snr"].to_numpy(), stab["called_snr"].to_numpy()),
        "pvalue_q1": (ztab, ztab["neg_log_p"].to_numpy(), ztab["called_pvalue"].to_numpy()),
        "pvalue_q3": (ztab, nlp_q3, nlp_q3 >= args.pvalue_cutoff),
        "gev": (ztab, ztab["zscore"].to_numpy(), ztab["called_gev"].to_numpy()),
        "pvalue_q1_allpix": (ztab, allpix["q1"], allpix["q1"] >= args.pvalue_cutoff),
        "pvalue_q3_allpix": (ztab, allpix["q3"], allpix["q3"] >= args.pvalue_cutoff),
    }
    out = {}
    for name, (tab, score, called) in sources.items():
        order = np.argsort(-score, kind="stable")
        xy = tab[["x", "y"]].to_numpy(float)[order]
        out[name] = Candidates(score=score[order], is_tp=match_in_order(xy, truth_xy,
                                                                       args.match_radius),
                               default_called=np.asarray(called)[order])
    thresholds = dict(zsum.thresholds)
    thresholds["n_candidates_z"] = len(ztab)
    thresholds["n_candidates_snr"] = len(stab)
    return out, thresholds


def froc(cands: list[Candidates], n_true: int, n_mic: int) -> tuple[np.ndarray, np.ndarray,
                                                                       np.ndarray]:
    """Pooled FROC: (cutoffs, false positives per micrograph, recall) at every distinct score."""
    score = np.concatenate([c.score for c in cands])
    tp = np.concatenate([c.is_tp for c in cands])
    order = np.argsort(-score, kind="stable")
    score, tp = score[order], tp[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    last = np.append(score[1:] != score[:-1], True)  # a cutoff takes whole tie groups
    return score[last], cfp[last] / n_mic, ctp[last] / n_true


def recall_at_fp(cands: list[Candidates], n_true: int, n_fp: int) -> tuple[float, float, int]:
    """Recall when the cutoff admits at most ``n_fp`` pooled false positives.

    The cutoff is the lowest score at which no more than ``n_fp`` false positives score at or
    above it (ties are taken or left as a whole). Returns (recall, cutoff, false positives).
    """
    score = np.concatenate([c.score for c in cands])
    tp = np.concatenate([c.is_tp for c in cands])
    order = np.argsort(-score, kind="stable")
    score, tp = score[order], tp[order]
    ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
    last = np.append(score[1:] != score[:-1], True)
    ok = last & (cfp <= n_fp) & (score > 0)  # -ln p = 0 (outside the region) never calls
    if not ok.any():
        return 0.0, math.inf, 0
    i = int(np.flatnonzero(ok)[-1])
    return float(ctp[i] / n_true), float(score[i]), int(cfp[i])


def default_counts(cands: list[Candidates]) -> tuple[int, int]:
    """(true positives, false positives) called by the metric's default cutoff."""
    tp = sum(int((c.default_called & c.is_tp).sum()) for c in cands)
    fp = sum(int((c.default_called & ~c.is_tp).sum()) for c in cands)
    return tp, fp


def plot_froc(curves: dict, defaults: dict, fp_rate: float, path: Path, title: str) -> None:
    """Recall vs false positives per micrograph for the four metrics (Agg, small PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    colours = {"zscore": "C0", "snr": "C1", "pvalue_q1": "C2", "pvalue_q3": "C3"}
    for name in METRIC_NAMES:
        _, fpm, rec = curves[name]
        ax.step(np.concatenate([[0.0], fpm]), np.concatenate([[0.0], rec]), where="post",
                color=colours[name], label=LABELS[name])
        dfp, drec = defaults[name]
        ax.plot([dfp], [drec], marker="o", color=colours[name], markersize=6,
                markeredgecolor="k")
    if "pvalue_q1_allpix" in curves:
        _, fpm, rec = curves["pvalue_q1_allpix"]
        ax.step(np.concatenate([[0.0], fpm]), np.concatenate([[0.0], rec]), where="post",
                color="C2", linestyle=":", label="p-value q1, fitted on all pixels")
    ax.axvline(fp_rate, color="0.5", linestyle="--", linewidth=0.8)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(0, max(50.0, fp_rate * 10))
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positives per micrograph (pooled over seeds)")
    ax.set_ylabel("recall of planted particles")
    ax.set_title(title, fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=8, title="dots: default cutoffs", title_fontsize=7)
    fig.savefig(path, dpi=90, bbox_inches="tight")


def main() -> None:
    """Parse arguments, simulate and search every seed, print tables and the summary line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="PDB/mmCIF (default: shared 6msm.pdb.gz)")
    ap.add_argument("--seeds", type=int, default=8, help="number of micrographs (seeds)")
    ap.add_argument("--first-seed", type=int, default=0)
    ap.add_argument("--pixel-size", type=float, default=1.5, help="acquisition pixel, A")
    ap.add_argument("--bin", type=int, default=2, help="Fourier-crop binning for the search")
    ap.add_argument("--size", type=int, default=640, help="micrograph edge, acquisition px")
    ap.add_argument("--n-particles", type=int, default=12)
    ap.add_argument("--fluence", type=float, default=30.0, help="e-/A^2")
    ap.add_argument("--dqe", type=float, default=0.8,
                    help="detector DQE (frequency-independent): counts are drawn at "
                         "fluence x DQE; exposure weighting uses the full fluence")
    ap.add_argument("--background", type=Path, default=None,
                    help="real micrograph added as texture (default: shared Ucsf_stack_1142_DW"
                         ".mrc when present; 'none' for pure shot noise)")
    ap.add_argument("--background-scale", type=float, default=0.75,
                    help="texture sd in units of the shot-noise sd")
    ap.add_argument("--defocus", type=float, default=10000.0, help="A, underfocus")
    ap.add_argument("--voltage", type=float, default=300.0)
    ap.add_argument("--out-of-plane-step", type=float, default=15.0)
    ap.add_argument("--in-plane-step", type=float, default=15.0)
    ap.add_argument("--lowpass", type=float, default=8.0, help="search low-pass, A")
    ap.add_argument("--min-distance", type=float, default=20.0,
                    help="peak suppression, px (searched pixels)")
    ap.add_argument("--match-radius", type=float, default=2.0, help="match radius, px")
    ap.add_argument("--fp-per-micrograph", type=float, default=1.0)
    ap.add_argument("--pvalue-cutoff", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None, help="keep files here (default tmp)")
    ap.add_argument("--figure", type=Path, default=None, help="write the FROC PNG here")
    ap.add_argument("--reuse", action="store_true",
                    help="load finished searches from --workdir instead of searching again "
                         "(for re-scoring with other matching/suppression settings; the "
                         "simulation settings must be those of the earlier run)")
    ap.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = ap.parse_args()

    from difftm.io.mrc import write_mrc
    from difftm.search.config import SearchConfig
    from difftm.search.engine import run_search
    from difftm.search.results import BUNDLE_NAME, load_results
    from difftm.simulate.micrograph import simulate_micrograph
    from difftm.simulate.template import simulate_template

    torch.set_num_threads(args.threads)
    t_start = time.perf_counter()
    model = args.model or str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
                              / "pdb" / "6msm.pdb.gz")
    px_search = args.pixel_size * args.bin
    size_search = args.size // args.bin
    work = args.workdir or Path(tempfile.mkdtemp(prefix="pvalue_recall_"))
    work.mkdir(parents=True, exist_ok=True)
    from difftm.io.models import load_model, molecular_mass_da
    from difftm.io.mrc import read_mrc
    from difftm.simulate.template import suggest_box

    background = None
    bg_path = args.background or (Path(model).parents[1] / "micrographs"
                                  / "Ucsf_stack_1142_DW.mrc")
    if str(bg_path) != "none" and bg_path.is_file():
        background = read_mrc(bg_path).data
    atoms = load_model(model)
    box_sim = suggest_box(atoms, args.pixel_size)
    box_search = suggest_box(atoms, px_search)
    vol_sim = simulate_template(atoms, args.pixel_size, box_sim, fluence=args.fluence,
                                voltage_kv=args.voltage)
    vol_search = simulate_template(atoms, px_search, box_search, fluence=args.fluence,
                                   voltage_kv=args.voltage)
    tpl_path = work / "template.mrc"
    write_mrc(tpl_path, vol_search.numpy(), px_search, overwrite=True)
    print(f"model {Path(model).name}: {molecular_mass_da(atoms) / 1000:.1f} kDa; simulate at "
          f"{args.pixel_size} A/px (box {box_sim}), search at {px_search} A/px (box "
          f"{box_search}), micrograph {args.size}^2 -> {size_search}^2 px, "
          f"{args.n_particles} particles, {args.fluence} e/A^2 (DQE {args.dqe}), "
          f"{args.voltage} kV, defocus "
          f"{args.defocus} A; background "
          f"{bg_path.name + f' x {args.background_scale}' if background is not None else 'none'}"
          f"; grid {args.out_of_plane_step}/{args.in_plane_step} deg, low-pass "
          f"{args.lowpass} A, match radius {args.match_radius} px, min distance "
          f"{args.min_distance} px; {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads")

    per_metric: dict[str, list[Candidates]] = {m: [] for m in (*METRIC_NAMES, *EXTRA_NAMES)}
    rows = []
    n_true_total = 0
    for k in range(args.seeds):
        seed = args.first_seed + k
        t0 = time.perf_counter()
        sim = simulate_micrograph(vol_sim, args.pixel_size, (args.size, args.size),
                                  args.n_particles, args.defocus, voltage_kv=args.voltage,
                                  fluence=args.fluence * args.dqe, background=background,
                                  background_scale=args.background_scale, seed=seed)
        image = fourier_bin(sim.image, args.bin)
        mic_path = work / f"micrograph_{seed}.mrc"
        if not (args.reuse and mic_path.exists()):
            write_mrc(mic_path, image, px_search, overwrite=True)
        truth_xy = sim.truth[["x", "y"]].to_numpy(float) / args.bin
        t_sim = time.perf_counter() - t0
        cfg = SearchConfig(
            micrograph=mic_path, template=tpl_path, output=work / f"search_{seed}",
            pixel_size=px_search, voltage=args.voltage, defocus_u=args.defocus,
            defocus_range=0.0, out_of_plane_step=args.out_of_plane_step,
            in_plane_step=args.in_plane_step, lowpass=args.lowpass, device="cpu",
            overwrite=True)
        bundle = work / f"search_{seed}"
        if args.reuse and (bundle / BUNDLE_NAME).exists():
            result = load_results(bundle)  # same seed and settings: the searched maps
        else:
            result = run_search(cfg)
        t_search = time.perf_counter() - t0 - t_sim
        cands, thr = score_micrograph(result, truth_xy, args)
        n_true = len(truth_xy)
        n_true_total += n_true
        row = {"seed": seed, "n_true": n_true, "n_cand": thr["n_candidates_z"],
               "erfc_t": thr["zscore"], "gev_t": thr["gev"], "sim_s": t_sim,
               "search_s": t_search, "n_search": int(result.metadata["n_search"])}
        for name, c in cands.items():
            per_metric[name].append(c)
            tp = int((c.default_called & c.is_tp).sum())
            fp = int((c.default_called & ~c.is_tp).sum())
            row[f"{name}_tp"], row[f"{name}_fp"] = tp, fp
        rows.append(row)
        print(f"seed {seed}: {n_true} true, {row['n_cand']} candidates, erfc t = "
              f"{row['erfc_t']:.3f}, GEV t = {row['gev_t']:.3f}; simulate {t_sim:.0f} s, "
              f"search {t_search:.0f} s ({row['n_search']} positions)")
        print("  default cutoffs (TP/FP): " + ", ".join(
            f"{LABELS[m]} {row[f'{m}_tp']}/{row[f'{m}_fp']}"
            for m in (*METRIC_NAMES, *EXTRA_NAMES)))
        for m in METRIC_NAMES:  # the strongest false positive of each metric, for context
            c = cands[m]
            top_fp = c.score[~c.is_tp][0] if (~c.is_tp).any() else float("nan")
            top_tp = c.score[c.is_tp][0] if c.is_tp.any() else float("nan")
            print(f"    {LABELS[m]:>11}: best TP {top_tp:8.3f}, best FP {top_fp:8.3f}, "
                  f"TP above best FP {int(np.sum(c.score[c.is_tp] > top_fp))}; TP scores "
                  + " ".join(f"{v:.1f}" for v in c.score[c.is_tp]))

    n_mic = args.seeds
    n_fp = int(round(args.fp_per_micrograph * n_mic))
    summary = {}
    curves = {}
    defaults = {}
    print()
    print(f"Summary over {n_mic} micrographs, {n_true_total} planted particles "
          f"(fixed rate: {n_fp} pooled false positives = "
          f"{n_fp / n_mic:.2f} per micrograph)")
    print(f"{'metric':>12} | {'recall@FP':>9} {'cutoff':>8} {'FP':>4} | "
          f"{'default':>8} {'recall':>7} {'FP/mic':>7} | per-seed recall @ pooled cutoff")
    for name in (*METRIC_NAMES, *EXTRA_NAMES):
        cands = per_metric[name]
        rec, cut, fp_used = recall_at_fp(cands, n_true_total, n_fp)
        tp_d, fp_d = default_counts(cands)
        per_seed = [int((c.is_tp & (c.score >= cut)).sum()) / max(1, r["n_true"])
                    for c, r in zip(cands, rows, strict=True)]
        summary[name] = {"recall_at_fixed_fp": rec, "cutoff": cut, "fp_pooled": fp_used,
                         "default_recall": tp_d / n_true_total, "default_fp": fp_d,
                         "default_fp_per_micrograph": fp_d / n_mic,
                         "per_seed_recall": per_seed}
        if name in (*METRIC_NAMES, "pvalue_q1_allpix"):
            curves[name] = froc(cands, n_true_total, n_mic)
        if name in METRIC_NAMES:
            defaults[name] = (fp_d / n_mic, tp_d / n_true_total)
        dflt = {"zscore": "erfc", "snr": "erfc", "gev": "GEV"}.get(
            name, f">={args.pvalue_cutoff:g}")
        print(f"{LABELS[name]:>12} | {rec:9.3f} {cut:8.3f} {fp_used:4d} | "
              f"{dflt:>8} {tp_d / n_true_total:7.3f} {fp_d / n_mic:7.2f} | "
              + " ".join(f"{v:.2f}" for v in per_seed))
    elapsed = time.perf_counter() - t_start
    print(f"total time {elapsed:.0f} s")
    if args.figure is not None:
        title = (f"{Path(model).name.split('.')[0].upper()} "
                 f"({molecular_mass_da(atoms) / 1000:.0f} kDa), {args.fluence:g} e/A^2, "
                 f"{px_search:g} A/px search, {n_mic} micrographs, {n_true_total} particles")
        args.figure.parent.mkdir(parents=True, exist_ok=True)
        plot_froc(curves, defaults, n_fp / n_mic, args.figure, title)
        print(f"figure: {args.figure}")
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "per_seed": rows, "summary": summary,
                                         "seconds": elapsed}, indent=1))
    print(" ".join(f"recall_{m}={summary[m]['recall_at_fixed_fp']:.3f}" for m in METRIC_NAMES)
          + f" fp_per_micrograph={n_fp / n_mic:.2f}")


if __name__ == "__main__":
    main()
