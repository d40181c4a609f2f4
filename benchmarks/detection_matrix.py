"""Detection matrix: precision and recall of every picking metric, from easy to hard targets.

Each cell plants copies of one target into a micrograph crop with the faithful simulator
(exact projections of the atoms, solvent displaced, per-particle CTF in a padded box,
Poisson counts at the cell's fluence; optionally the real micrograph
``Ucsf_stack_1142_DW.mrc`` as background texture at the shot-noise level), searches it the
way ``difftm search --strategy accelerated`` does (by default with the product's coarse grid;
``--step`` sets another; ``--strategy exhaustive`` calls a low-passed coarse grid's maps
directly), and calls particles with every metric of ``difftm peaks`` at its default
threshold and suppression radius (one expected false positive per micrograph). Noise-only
crops (same settings, no particles) give each metric's false positives per micrograph.

Each planted particle is also scored at its exact pose through the search's own scorer (its
"true-pose SNR"): a particle whose true-pose SNR is below the erfc threshold is beyond what
any search of this configuration can call (column "detectable" counts the others), so a
miss below it is the detection limit and a miss above it is the search's.

Cells: targets (``--targets``, files in ../shared/data/pdb) x pixel sizes x fluences x
backgrounds. A detection matches a true particle within max(2 px, 0.1 template diameters).
The defaults' bar (issue 11): the default metric's precision >= 0.95 with recall within 0.05
of the best metric in every cell, and at most 1 false positive per noise-only micrograph on
average.

    python benchmarks/detection_matrix.py                       # the full matrix (~1 h)
    python benchmarks/detection_matrix.py --targets 3enl.pdb.gz 6msm.pdb.gz \\
        --pixel-sizes 1.5 --fluences 40 --noise 2 --json out.json

The last line is ``default=<metric> cells=N default_ok=K worst_precision=... worst_recall_gap=...
noise_fp_per_micrograph=...``.
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
import pandas as pd
import torch

#: Name of the product's default call (metric and specificity rule) in the tables.
DEFAULT_RULE = "default"
SHARED = Path(os.environ.get("DIFFTM_SHARED_DATA",
                             Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
TARGETS = ("1ubi.pdb.gz", "1ake.pdb.gz", "3enl.pdb.gz", "6msm.pdb.gz", "7pbl.pdb.gz",
           "6zu5.cif.gz")


def _crop_size(box: int, minimum: int) -> int:
    from difftm.fourier.padding import next_fast_size

    return next_fast_size(max(minimum, 3 * box))


def real_background(image: np.ndarray, size: int, seed: int) -> np.ndarray:
    """A seeded view of the real micrograph: one of its 8 rotations/flips and a random
    ``size`` x ``size`` window (the whole image where it is smaller), so that cells and
    noise-only crops see different parts of it rather than all the same centre crop."""
    rng = np.random.default_rng(10_000 + seed)
    k = int(rng.integers(8))
    b = np.rot90(np.asarray(image), k % 4)
    if k >= 4:
        b = b[:, ::-1]
    h, w = min(size, b.shape[0]), min(size, b.shape[1])
    y0 = int(rng.integers(b.shape[0] - h + 1))
    x0 = int(rng.integers(b.shape[1] - w + 1))
    return np.ascontiguousarray(b[y0:y0 + h, x0:x0 + w])


def run_cell(target: str, pixel_size: float, fluence: float, background: str, seed: int,
             step: float, n_particles: int | None, workdir: Path, min_crop: int,
             reuse: bool = False, strategy: str = "exhaustive",
             max_candidates: int | None = None,
             coarse_step: float | None = None) -> tuple[dict, pd.DataFrame]:
    """Simulate, search and score one cell.

    Returns a JSON-able dict and the cell's candidate table (every local maximum of the
    default metric's map with all its scores and ``true``: within the match distance of a
    planted particle). With ``reuse`` a search finished earlier in the same folder is
    reloaded instead of rerun (the simulation is deterministic in the seed).
    """
    from difftm.accelerate.search import grid_matched_lowpass
    from difftm.evaluate import match_detections, score_detections
    from difftm.io.models import load_model
    from difftm.io.mrc import read_mrc, write_mrc
    from difftm.search.config import SearchConfig
    from difftm.search.contamination import MAX_CONTAMINATION, contamination_map
    from difftm.search.engine import run_search
    from difftm.search.particles import METRICS, call_particles
    from difftm.simulate.micrograph import simulate_micrograph, template_diameter
    from difftm.simulate.template import simulate_template, suggest_box

    path = SHARED / "pdb" / target
    atoms = load_model(path)
    box = suggest_box(atoms, pixel_size)
    vol = simulate_template(path, pixel_size=pixel_size, box=box)
    diameter = template_diameter(vol)
    size = _crop_size(box, min_crop)
    if n_particles is None:
        n_particles = int(np.clip((size // (1.6 * diameter)) ** 2 * 0.5, 2, 8))
    bg = None
    if background == "real":
        bg = real_background(read_mrc(SHARED / "micrographs" / "Ucsf_stack_1142_DW.mrc").data,
                             size, seed)
    defocus = 8000.0 + 4000.0 * (seed % 3) / 2
    t0 = time.perf_counter()
    sim = simulate_micrograph(vol, pixel_size, (size, size), n_particles, defocus,
                              fluence=fluence, seed=seed, atoms=atoms, background=bg,
                              defocus_spread=100.0)
    t_sim = time.perf_counter() - t0
    folder = workdir / f"{target}_{pixel_size}_{fluence}_{background}_{seed}_{n_particles}"
    folder.mkdir(parents=True, exist_ok=True)
    mic, tpl = folder / "mic.mrc", folder / "tpl.mrc"
    if not (reuse and mic.exists() and tpl.exists()):
        write_mrc(mic, sim.image, pixel_size, overwrite=True)
        write_mrc(tpl, vol.numpy(), pixel_size, overwrite=True)
    lowpass = (grid_matched_lowpass(0.5 * diameter * pixel_size, step, pixel_size)
               if step else None)
    if strategy == "exhaustive":
        cfg = SearchConfig(micrograph=mic, template=tpl, output=folder / "search",
                           pixel_size=pixel_size, defocus_u=defocus, defocus_range=0.0,
                           out_of_plane_step=step, in_plane_step=step, lowpass=lowpass,
                           device="cpu", overwrite=not reuse)
    else:  # the coarse grid as the first pass, candidates refined at full resolution
        if step:  # the same step in and out of plane, low-pass matched to it
            coarse = {"coarse_out_of_plane_step": step, "coarse_in_plane_step": step,
                      "coarse_lowpass": lowpass}
            tag = ""
        elif coarse_step:  # the product's pass at another out-of-plane step (its in-plane
            # step and low-pass follow as in `difftm search --coarse-step`)
            coarse = {"coarse_out_of_plane_step": coarse_step}
            tag = f"_product_coarse{coarse_step:g}"
        else:  # the product's coarse grid and low-pass (difftm search defaults)
            coarse, tag = {}, "_product"
        name = "accelerated" + tag + (f"_max{max_candidates}" if max_candidates else "")
        cfg = SearchConfig(micrograph=mic, template=tpl, output=folder / name,
                           pixel_size=pixel_size, defocus_u=defocus, defocus_range=0.0,
                           strategy="accelerated", device="cpu", overwrite=not reuse,
                           **coarse,
                           **({"max_candidates": max_candidates} if max_candidates else {}))
    t0 = time.perf_counter()
    result = run_search(cfg)
    t_search = time.perf_counter() - t0
    if reuse:  # a reloaded search: the time it took when it ran
        t_search = result.metadata.get("timings", {}).get("seconds", t_search)
    match = max(2.0, 0.1 * diameter)
    acc = result.metadata.get("accelerated", {})
    out = {"target": target, "pixel_size": pixel_size, "fluence": fluence,
           "background": background, "seed": seed, "n_particles": n_particles,
           "crop": size, "box": box, "diameter_px": diameter,
           "lowpass": acc.get("coarse_lowpass", lowpass),
           "step": acc.get("coarse_out_of_plane_step", step), "strategy": strategy,
           "n_candidates": acc.get("n_candidates"),
           "n_orientations": result.metadata["n_orientations"],
           "seconds_simulate": t_sim, "seconds_search": t_search, "metrics": {}}
    # every metric on its own (no specificity rule), then the product's default call
    rules = {m: {"metric": m, "min_specificity": None, "max_contamination": None,
                 "max_excess_contrast": None} for m in METRICS}
    rules[DEFAULT_RULE] = {}
    # planted particles on contamination (the texture is added, so they keep their full
    # contrast there, unlike real particles in thick ice or on carbon) and the clean rest
    cmap = contamination_map(sim.image, diameter)
    on_dirt = np.array([cmap[int(t.y), int(t.x)] > MAX_CONTAMINATION
                        for t in sim.truth.itertuples()], dtype=bool)
    clean_truth = sim.truth[~on_dirt].reset_index(drop=True)
    out["n_clean"] = int((~on_dirt).sum())
    calls = {}
    for metric, options in rules.items():
        table, summary = call_particles(result, micrograph=sim.image, **options)
        calls[metric] = (table, summary)
        called = table[table["called"]].reset_index(drop=True)
        if n_particles:
            s = score_detections(called, sim.truth, max_distance=match)
            # on the clean area: calls at particles on contamination count neither way
            dirty = {i for i, j, _ in match_detections(called, sim.truth, match) if on_dirt[j]}
            kept = called.drop(index=list(dirty)).reset_index(drop=True)
            c = score_detections(kept, clean_truth, max_distance=match)
            out["metrics"][metric] = {"precision": s.precision, "recall": s.recall,
                                      "n_called": s.n_detected, "n_matched": s.n_matched,
                                      "cutoff": summary.cutoff,
                                      "clean_precision": c.precision if len(kept) else 1.0,
                                      "clean_recall": (c.recall if len(clean_truth)
                                                       else float("nan")),
                                      "clean_called": len(kept)}
        else:
            out["metrics"][metric] = {"false_positives": int(len(called)),
                                      "cutoff": summary.cutoff}
    # the best score within the match distance of each true centre (on an accelerated map:
    # the refined score where a candidate converged there, else the coarse pass's)
    snr_map = result.maps["snr"]
    yy, xx = np.mgrid[:snr_map.shape[0], :snr_map.shape[1]]
    truth_snr = [float(snr_map[np.hypot(yy - t.y, xx - t.x) <= match].max())
                 for t in sim.truth.itertuples()]
    out["median_snr_at_truth"] = float(np.median(truth_snr)) if truth_snr else None
    # what the search's statistics would give each particle at its exact pose and defocus:
    # whether a miss is the detection limit or the search
    pose_snr = true_pose_snr(result.folder, sim.truth, defocus, sim.image.shape)
    table, summary = calls[DEFAULT_RULE]
    out["threshold"] = float(summary.thresholds["snr"])
    out["median_snr_true_pose"] = float(np.median(pose_snr)) if len(pose_snr) else None
    out["n_detectable"] = int((pose_snr >= out["threshold"]).sum())
    # each planted particle's position, best score, contamination statistic, true-pose SNR
    out["truth"] = [[float(t.y), float(t.x), s, float(cmap[int(t.y), int(t.x)]), float(p)]
                    for t, s, p in zip(sim.truth.itertuples(), truth_snr, pose_snr,
                                       strict=True)]
    cand = table.drop(columns=[c for c in table.columns if c.startswith("called")])
    cand = cand.reset_index(drop=True)
    cand["true"] = False
    if n_particles:
        for i, _, _ in match_detections(cand, sim.truth, match):
            cand.loc[i, "true"] = True
    for key in ("target", "pixel_size", "fluence", "background", "seed", "n_particles"):
        cand[key] = out[key]
    cand["cell"] = folder.name
    cand["erfc_threshold"] = summary.thresholds["snr"]
    cand["n_search"] = result.metadata["n_search"]
    cand["valid_pixels"] = result.metadata["valid_pixels"]
    return out, cand


def true_pose_snr(folder: Path, truth: pd.DataFrame, defocus: float,
                  shape: tuple[int, int]) -> np.ndarray:
    """Each planted particle's score at its exact pose, centre pixel and mean defocus
    through the search's scorer (same preparation, filters and projector as the search; the
    exhaustive search's value at that pose): (n,) float64."""
    from difftm.geometry.euler import euler_to_matrix
    from difftm.search.contamination import searched_scorer

    if not len(truth):
        return np.zeros(0)
    scorer = searched_scorer(folder, shape, projector_oversampling=None)
    rot = euler_to_matrix(torch.tensor(truth[["rot", "tilt", "psi"]].to_numpy(float)))
    centres = torch.as_tensor(truth[["x", "y"]].to_numpy().astype(np.int64))
    dz = 0.5 * (truth["defocus_u"].to_numpy() + truth["defocus_v"].to_numpy()) - defocus
    with torch.no_grad():
        score = scorer.score(centres, rot.float(), None, torch.as_tensor(dz, dtype=torch.float32))
    return score.double().numpy()


def _run_spec(spec: tuple) -> tuple[dict, pd.DataFrame]:
    return run_cell(*spec)


def _init_worker(threads: int | None) -> None:
    torch.set_num_threads(threads or 1)


def _run_specs(specs: list[tuple], jobs: int, threads: int | None,
               candidates: Path | None) -> tuple[list[dict], list[pd.DataFrame]]:
    """Run the cells (in ``jobs`` processes of ``threads`` threads each, the largest targets
    first); results in the order of ``specs`` whatever the order they finish in."""
    results: dict[int, tuple[dict, pd.DataFrame]] = {}

    def done(i: int, out: tuple[dict, pd.DataFrame]) -> None:
        results[i] = out
        _save_candidates(candidates, [results[j][1] for j in sorted(results)])
        print(_cell_line(out[0]), flush=True)

    if jobs <= 1:
        for i, spec in enumerate(specs):
            done(i, run_cell(*spec))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        order = sorted(range(len(specs)), key=lambda i: -TARGETS.index(specs[i][0])
                       if specs[i][0] in TARGETS else 0)
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_init_worker, initargs=(threads,)) as pool:
            futures = {pool.submit(_run_spec, specs[i]): i for i in order}
            for fut in as_completed(futures):
                done(futures[fut], fut.result())
    ordered = [results[i] for i in range(len(specs))]
    return [c for c, _ in ordered], [t for _, t in ordered]


def _cell_line(cell: dict) -> str:
    m = cell["metrics"]
    parts = []
    for name, v in m.items():
        if "precision" in v:
            parts.append(f"{name} {v['precision']:.2f}/{v['recall']:.2f}")
        else:
            parts.append(f"{name} fp {v['false_positives']}")
    snr = cell.get("median_snr_at_truth")
    pose = cell.get("median_snr_true_pose")
    snr_txt = (f"snr true pose {pose:.1f} ({cell['n_detectable']} detectable), found {snr:.1f} "
               if snr is not None else "")
    return (f"{cell['target']:<12} {cell['pixel_size']:.1f} A/px {cell['fluence']:>3.0f} e/A2 "
            f"{cell['background']:<5} n={cell['n_particles']} {snr_txt}| " + ", ".join(parts)
            + f" | {cell['seconds_search']:.0f} s")


def markdown_tables(cells: list[dict]) -> str:
    """The planted cells and the noise-only false positives as Markdown tables (the metrics
    on their own; the default call is the ``snr`` column unless a specificity rule is on)."""
    from difftm.search.particles import METRICS

    names = [*METRICS, DEFAULT_RULE]
    head = ("| target | A/px | e/A^2 | background | n (clean) | SNR at true pose | "
            "detectable | SNR found | "
            + " | ".join(f"{m} P/R" for m in names) + " | default P/R, clean area | s |")
    lines = [head, "|" + "---|" * (len(names) + 10)]
    for c in cells:
        if not c["n_particles"]:
            continue
        parts = []
        for m in names:
            v = c["metrics"][m]
            parts.append(f"{v['precision']:.2f}/{v['recall']:.2f}"
                         + (" (none)" if not v["n_called"] else ""))
        d = c["metrics"][DEFAULT_RULE]
        clean = (f"{d['clean_precision']:.2f}/{d['clean_recall']:.2f}"
                 if c.get("n_clean") else "-")
        pose = c.get("median_snr_true_pose")
        found = c.get("median_snr_at_truth")
        lines.append(f"| {c['target'].split('.')[0]} | {c['pixel_size']:.1f} | "
                     f"{c['fluence']:.0f} | {c['background']} | {c['n_particles']} "
                     f"({c.get('n_clean', '-')}) | "
                     + (f"{pose:.1f} | {c['n_detectable']} | " if pose is not None
                        else "- | - | ")
                     + f"{found:.1f} | " + " | ".join(parts)
                     + f" | {clean} | {c['seconds_search']:.0f} |")
    noise = [c for c in cells if not c["n_particles"]]
    if noise:
        lines += ["", "| noise-only crops | n | " + " | ".join(names) + " |",
                  "|" + "---|" * (len(names) + 2)]
        for bg in ("shot", "real"):
            sub = [c for c in noise if c["background"] == bg]
            if sub:
                fp = [np.mean([c["metrics"][m]["false_positives"] for c in sub])
                      for m in names]
                lines.append(f"| {bg}: false positives per micrograph | {len(sub)} | "
                             + " | ".join(f"{v:.2f}" for v in fp) + " |")
    return "\n".join(lines)


def _save_candidates(path: Path | None, tables: list) -> None:
    """Write the candidates of the cells run so far (after each cell: a partial run is
    usable)."""
    if path is not None and tables:
        tmp = path.with_name(f".{path.name}.tmp")
        pd.concat(tables, ignore_index=True).to_csv(tmp, index=False)
        tmp.replace(path)


def meets_bar(precision: float, recall: float, best_recall: float) -> bool:
    """The defaults' bar in one cell: precision >= 0.95 and recall within 0.05 of the best."""
    return bool(precision >= 0.95 and best_recall - recall <= 0.05 + 1e-9)


def summarise(cells: list[dict], default: str) -> dict:
    """The defaults' bar over the planted cells and the noise-only false-positive rate.

    The bar: the default's precision >= 0.95 and recall within 0.05 of the best metric
    (every metric on its own, and the default); once on all planted particles, once on the
    clean area (planted particles on contamination, and calls at them, left out: the
    simulator adds the texture, so such particles keep a contrast real ones would not have).
    """
    planted = [c for c in cells if c["n_particles"]]
    noise = [c for c in cells if not c["n_particles"]]
    ok, ok_clean, worst_p, worst_gap = 0, 0, 1.0, 0.0
    for c in planted:
        m = c["metrics"]
        best = max(v["recall"] for v in m.values())
        d = m[default]
        prec = d["precision"] if d["n_called"] else 1.0
        gap = best - d["recall"]
        worst_p = min(worst_p, prec)
        worst_gap = max(worst_gap, gap)
        ok += int(meets_bar(prec, d["recall"], best))
        if "clean_recall" in d and c.get("n_clean"):
            best_c = max(v["clean_recall"] for v in m.values())
            ok_clean += int(meets_bar(d["clean_precision"], d["clean_recall"], best_c))
        else:
            ok_clean += int(prec >= 0.95)
    fp = {name: (float(np.mean([c["metrics"][name]["false_positives"] for c in noise]))
                 if noise else float("nan")) for name in (cells[0]["metrics"] if cells else [])}
    return {"cells": len(planted), "default_ok": ok, "default_ok_clean": ok_clean,
            "worst_precision": worst_p, "worst_recall_gap": worst_gap,
            "noise_fp_per_micrograph": fp}


def main() -> None:
    """Parse arguments, run every cell, print a table and a summary line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--targets", nargs="+", default=list(TARGETS))
    ap.add_argument("--pixel-sizes", nargs="+", type=float, default=[1.0, 2.0])
    ap.add_argument("--fluences", nargs="+", type=float, default=[30.0, 60.0])
    ap.add_argument("--backgrounds", nargs="+", default=["shot", "real"],
                    choices=["shot", "real"])
    ap.add_argument("--only", nargs="+", default=None, choices=["shot", "real"],
                    help="run only the cells of these backgrounds, with the seeds they have "
                         "in the full matrix (to rerun part of it)")
    ap.add_argument("--only-pixel-sizes", nargs="+", type=float, default=None,
                    help="run only the cells at these pixel sizes, with the seeds they have in "
                         "the full matrix")
    ap.add_argument("--max-candidates", type=int, default=None,
                    help="accelerated: refine at most this many candidates per crop (the "
                         "strongest coarse maxima; default: the product's)")
    ap.add_argument("--step", type=float, default=None,
                    help="grid step, degrees: of the coarse pass with --strategy accelerated "
                         "(default: the product's coarse grid and low-pass, `difftm search "
                         "--strategy accelerated`), of the low-passed grid with exhaustive "
                         "(default 15)")
    ap.add_argument("--coarse-step", type=float, default=None,
                    help="accelerated: the product's coarse pass with this out-of-plane step "
                         "(as `difftm search --coarse-step`; ignored with --step)")
    ap.add_argument("--strategy", choices=["accelerated", "exhaustive"], default="accelerated",
                    help="accelerated (default): the coarse grid is the first pass and every "
                         "candidate is refined at full resolution, so the calls see the scores "
                         "a fine search would give at the particle's pose; exhaustive: the "
                         "coarse low-passed grid's maps are called directly")
    ap.add_argument("--noise", type=int, default=6,
                    help="noise-only crops per pixel size and background (searched with the "
                         "targets in turn)")
    ap.add_argument("--min-crop", type=int, default=512, help="smallest crop edge, px")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads (per process with --jobs; default there: 1)")
    ap.add_argument("--jobs", type=int, default=1,
                    help="cells searched at a time, each in its own process (e.g. 2 on a "
                         "2-core machine); results do not depend on it")
    ap.add_argument("--json", type=Path, default=None, help="write every cell here")
    ap.add_argument("--candidates", type=Path, default=None,
                    help="write every cell's candidates (all scores, truth label) to this CSV")
    ap.add_argument("--workdir", type=Path, default=None,
                    help="keep the cells' micrographs and searches here and reuse finished "
                         "searches (default: a temporary folder)")
    ap.add_argument("--from-json", nargs="+", type=Path, default=None,
                    help="run nothing: print the Markdown tables and the summary of cells "
                         "saved earlier with --json (several files are merged)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from difftm.search.particles import DEFAULT_METRIC, MIN_SPECIFICITY

    if args.from_json:
        cells = [c for path in args.from_json for c in json.loads(path.read_text())["cells"]]
        print(markdown_tables(cells))
        summary = summarise(cells, DEFAULT_RULE)
        print(f"\ncells={summary['cells']} default_ok={summary['default_ok']} "
              f"default_ok_clean={summary['default_ok_clean']} "
              f"worst_precision={summary['worst_precision']:.3f} "
              f"worst_recall_gap={summary['worst_recall_gap']:.3f} noise_fp_per_micrograph="
              f"{summary['noise_fp_per_micrograph'].get(DEFAULT_RULE, float('nan')):.2f}")
        return

    if args.strategy == "exhaustive" and args.step is None:
        args.step = 15.0
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="detmatrix_") as tmp:
        work = args.workdir or Path(tmp)
        reuse = args.workdir is not None
        specs = []
        k = 0
        for target in args.targets:
            for px in args.pixel_sizes:
                for fl in args.fluences:
                    for bg in args.backgrounds:
                        k += 1
                        if args.only and bg not in args.only:
                            continue
                        if args.only_pixel_sizes and px not in args.only_pixel_sizes:
                            continue
                        specs.append((target, px, fl, bg, args.seed + k - 1, args.step, None,
                                      work, args.min_crop, reuse, args.strategy,
                                      args.max_candidates, args.coarse_step))
        for px in args.only_pixel_sizes or args.pixel_sizes:
            for bg in args.only or args.backgrounds:
                for j in range(args.noise):
                    specs.append((args.targets[j % len(args.targets)], px, 40.0, bg,
                                  1000 + args.seed + j, args.step, 0, work, args.min_crop,
                                  reuse, args.strategy, args.max_candidates,
                                  args.coarse_step))
        cells, tables = _run_specs(specs, args.jobs, args.threads, args.candidates)
    summary = summarise(cells, DEFAULT_RULE)
    summary["seconds"] = time.perf_counter() - t_all
    summary["machine"] = f"{platform.machine()} x{torch.get_num_threads()} threads"
    if args.json is not None:
        args.json.write_text(json.dumps({"cells": cells, "summary": summary}, indent=1))
    fp = summary["noise_fp_per_micrograph"]
    print("noise-only false positives per micrograph: "
          + ", ".join(f"{k} {v:.2f}" for k, v in fp.items()))
    rule = DEFAULT_METRIC + (f"+specificity>={MIN_SPECIFICITY:g}" if MIN_SPECIFICITY else "")
    print(f"default={rule} cells={summary['cells']} "
          f"default_ok={summary['default_ok']} default_ok_clean={summary['default_ok_clean']} "
          f"worst_precision={summary['worst_precision']:.3f} "
          f"worst_recall_gap={summary['worst_recall_gap']:.3f} "
          f"noise_fp_per_micrograph={fp.get(DEFAULT_RULE, float('nan')):.2f} "
          f"seconds={summary['seconds']:.0f}")


if __name__ == "__main__":
    main()
