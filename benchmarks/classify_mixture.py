"""Classification of planted two-state mixtures: EM posteriors vs "highest SNR wins".

States: yeast enolase (3ENL, 43 kDa) and the same model without its N-terminal domain
(residues 1-126 of chain A deleted with gemmi: 28 % of the mass), templates simulated at
1.5 A/px in one box with the full model's centre of mass at the centre voxel. Particles of
both states are planted with exact atom projections (displaced solvent, per-particle defocus
of sd 100 A, Poisson counts; :func:`difftm.classify.mixture.simulate_mixture`) in exact
proportions (50/50, 80/20 of ``--n``) at each fluence. Starts are what a search gives: the
true orientation turned by 0.5-2 deg about a random axis, the centre 1 px off in x and y,
the nominal defocus. Every particle is refined under both templates
(:func:`difftm.classify.run.score_under_templates`, the default gradient schedule) and
classified (:func:`difftm.classify.model.fit_mixture`, noise ``unit`` and ``fitted``).
``--pair 7pbl-chainA`` uses 7PBL with and without chain A (one RuvB subunit, 15.6 % of the
mass) instead (with ``--pixel-size 2`` its box is 76).

Reported per condition: mean SNR under the true template, accuracy of the MAP class and of
the naive rule, estimated population of state 1 (EM) and its bootstrap 95 % interval, the
naive population (fraction whose higher SNR is template 1), their errors against the
planted fraction, and the calibration of the posteriors: expected calibration error (ECE,
10 bins, weighted by counts) and the largest |observed - predicted| over bins holding >= 10
particles (pooled over the conditions in the figure).

    python benchmarks/classify_mixture.py --n 64 --fluences 10 20 --json out.json \
        --figure docs/figures/classify_mixture.png

The last line is ``min_accuracy=... max_population_error=... max_reliability_gap=...``.
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
from _outputs import add_output_options, redrawn

SHARED = Path(os.environ.get("DIFFTM_SHARED_DATA",
                             Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def reliability(p: np.ndarray, truth: np.ndarray, bins: int = 10, min_count: int = 10):
    """``(bin mean predicted, observed frequency, counts, ECE, max gap over bins with >=
    min_count)`` of posterior ``p`` of an event against its 0/1 ``truth``."""
    from difftm.report.classify_report import reliability_bins

    pred, obs, cnt = reliability_bins(p, truth, bins)
    ok = cnt > 0
    ece = float(np.sum(cnt[ok] * np.abs(pred[ok] - obs[ok])) / max(cnt.sum(), 1))
    big = cnt >= min_count
    gap = float(np.abs(pred[big] - obs[big]).max()) if big.any() else float("nan")
    return pred, obs, cnt, ece, gap


#: State pairs: name -> (model file, chains to delete, residue ranges to delete, label).
PAIRS = {
    "3enl-ndomain": ("3enl.pdb.gz", (), (("A", 1, 126),),
                     "3ENL vs 3ENL without residues 1-126 (N-terminal domain)"),
    "7pbl-chainA": ("7pbl.pdb.gz", ("A",), (),
                    "7PBL vs 7PBL without chain A (one RuvB subunit)"),
}


def make_pair(folder: Path, pixel_size: float, pair: str = "3enl-ndomain"):
    """The two states' atoms, their templates (one box, one centre), the removed mass
    fraction and a label."""
    from difftm.classify.mixture import write_model_without
    from difftm.io.models import centre_of_mass, load_model, molecular_mass_da
    from difftm.simulate.template import simulate_template, suggest_box

    name, chains, residues, label = PAIRS[pair]
    src = SHARED / "pdb" / name
    part = write_model_without(src, folder / f"{pair}.cif", chains=chains,
                               residues=residues, overwrite=True)
    full, cut = load_model(src), load_model(part)
    centre = centre_of_mass(full)
    box = suggest_box(full, pixel_size)
    vols = [simulate_template(m, pixel_size, box, centre=centre).numpy() for m in (full, cut)]
    removed = 1 - molecular_mass_da(cut) / molecular_mass_da(full)
    return (full, cut), vols, centre, box, removed, label


def run_condition(models, vols, centre, box, pixel_size, n, fraction, fluence, seed):
    """Simulate one mixture, refine under both templates, classify; return the metrics."""
    from difftm.classify.mixture import simulate_mixture
    from difftm.classify.model import fit_mixture, naive_classes
    from difftm.classify.run import score_under_templates
    from difftm.fourier.padding import next_fast_size
    from difftm.geometry.euler import euler_to_matrix
    from difftm.refine.scorer import ParticleScorer, rotation_update
    from difftm.search.config import SearchConfig

    n1 = int(round(fraction * n))
    rng = np.random.default_rng(seed)
    classes = rng.permutation(np.array([0] * n1 + [1] * (n - n1)))
    side = int(np.ceil(np.sqrt(n))) * (box + 2) + box + 4
    size = next_fast_size(side)
    defocus = 10000.0
    sim = simulate_mixture(models, classes, pixel_size, (size, size), box, defocus, centre,
                           fluence=fluence, defocus_spread=100.0, seed=seed)
    cfg = SearchConfig(micrograph="m.mrc", template="t.mrc", output="o",
                       pixel_size=pixel_size, defocus_u=defocus)
    scorers = [ParticleScorer.from_search(cfg, sim.image, v) for v in vols]
    truth = sim.truth
    r_true = euler_to_matrix(torch.tensor(truth[["rot", "tilt", "psi"]].to_numpy())).float()
    axis = rng.standard_normal((n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    off = np.deg2rad(rng.uniform(0.5, 2.0, n))[:, None] * axis
    r0 = rotation_update(torch.tensor(off, dtype=torch.float32), r_true)
    centres = torch.tensor(truth[["x", "y"]].to_numpy().astype(np.int64) + 1)
    t0 = time.perf_counter()
    snr, gram, _ = score_under_templates(scorers, centres, r0, torch.zeros(n))
    secs = time.perf_counter() - t0
    naive = naive_classes(snr)
    out = {"fraction": fraction, "fluence": fluence, "n": n, "micrograph": size,
           "snr_true_template": float(snr[np.arange(n), classes].mean()),
           "template_correlation": float(np.median(gram[:, 0, 1])),
           "accuracy_naive": float((naive == classes).mean()),
           "population_naive": float((naive == 0).mean()),
           "seconds_per_particle_template": secs / (2 * n), "models": {}}
    out["population_error_naive"] = abs(out["population_naive"] - n1 / n)
    for noise in ("unit", "fitted"):
        fit = fit_mixture(snr, gram, noise=noise, bootstrap=500, seed=seed)
        p1 = fit.posteriors[:, 0]
        _, _, _, ece, gap = reliability(p1, (classes == 0).astype(float))
        out["models"][noise] = {
            "accuracy": float((fit.classes == classes).mean()),
            "population": float(fit.weights[0]),
            "population_error": abs(float(fit.weights[0]) - n1 / n),
            "interval": [float(v) for v in fit.weights_interval[0]],
            "fisher_se": float(fit.weights_se[0]),
            "sigma": fit.sigma, "ece": ece, "reliability_gap": gap,
            "posterior_1": p1.tolist(),
        }
    out["truth_is_1"] = (classes == 0).astype(int).tolist()
    return out


def plot(results: list[dict], path: Path) -> None:
    """Reliability diagram (pooled) and population estimates with intervals."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.6))
    ax1, ax2 = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    truth = np.concatenate([r["truth_is_1"] for r in results]).astype(float)
    for noise, marker in (("unit", "o"), ("fitted", "s")):
        p = np.concatenate([r["models"][noise]["posterior_1"] for r in results])
        pred, obs, cnt, ece, _ = reliability(p, truth)
        ok = cnt > 0
        ax1.plot(pred[ok], obs[ok], marker=marker, label=f"{noise} noise (ECE {ece:.3f})")
        for x, y, c in zip(pred[ok], obs[ok], cnt[ok], strict=True):
            ax1.annotate(str(c), (x, y), fontsize=6, xytext=(3, -8),
                         textcoords="offset points")
    ax1.plot([0, 1], [0, 1], color="0.6", lw=1)
    ax1.set_xlabel("posterior of state 1 (bin mean)")
    ax1.set_ylabel("fraction truly state 1")
    ax1.set_title("reliability (all conditions; counts)")
    ax1.legend(fontsize=7)
    labels = []
    for i, r in enumerate(results):
        m = r["models"]["unit"]
        lo, hi = m["interval"]
        ax2.errorbar(i, m["population"], yerr=[[m["population"] - lo], [hi - m["population"]]],
                     fmt="o", color="C0", capsize=3, label="EM (95 % bootstrap)" if i == 0
                     else None)
        ax2.plot(i + 0.15, r["population_naive"], "x", color="C3",
                 label="highest SNR wins" if i == 0 else None)
        ax2.plot([i - 0.3, i + 0.3], [r["fraction"]] * 2, color="k", lw=1,
                 label="planted" if i == 0 else None)
        labels.append(f"{r['fraction']:.0%}\n{r['fluence']:g} e/A2")
    ax2.set_xticks(range(len(results)), labels, fontsize=7)
    ax2.set_ylabel("population of state 1")
    ax2.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    """Parse arguments, run every condition, print a table and a summary line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pair", choices=sorted(PAIRS), default="3enl-ndomain")
    ap.add_argument("--n", type=int, default=64, help="particles per condition")
    ap.add_argument("--fractions", type=float, nargs="+", default=[0.5, 0.8])
    ap.add_argument("--fluences", type=float, nargs="+", default=[10.0, 20.0])
    ap.add_argument("--pixel-size", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=0)
    add_output_options(ap, threads=1)
    args = ap.parse_args()
    if redrawn(args, plot, "results"):
        return
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        models, vols, centre, box, cut, label = make_pair(Path(tmp), args.pixel_size,
                                                          args.pair)
    print(f"{label}: {cut:.1%} of the mass removed, {args.pixel_size:g} A/px, box {box}")
    print(f"{'frac':>5} {'fluence':>7} {'SNR':>5} {'rho':>5} {'acc EM':>6} {'acc naive':>9} "
          f"{'pop EM [95%]':>20} {'pop naive':>9} {'err EM':>6} {'err naive':>9} "
          f"{'ECE':>5} {'gap':>5} {'sigma fit':>9} {'acc/err/ECE fitted':>18}")
    results = []
    for k, fluence in enumerate(args.fluences):
        for j, fraction in enumerate(args.fractions):
            r = run_condition(models, vols, centre, box, args.pixel_size, args.n, fraction,
                              fluence, args.seed + 10 * k + j)
            results.append(r)
            u, f = r["models"]["unit"], r["models"]["fitted"]
            print(f"{fraction:5.2f} {fluence:7.1f} {r['snr_true_template']:5.1f} "
                  f"{r['template_correlation']:5.3f} {u['accuracy']:6.3f} "
                  f"{r['accuracy_naive']:9.3f} {u['population']:6.3f} "
                  f"[{u['interval'][0]:.3f},{u['interval'][1]:.3f}] "
                  f"{r['population_naive']:9.3f} {u['population_error']:6.3f} "
                  f"{r['population_error_naive']:9.3f} {u['ece']:5.3f} "
                  f"{u['reliability_gap']:5.2f} {f['sigma']:9.2f} "
                  f"{f['accuracy']:6.3f}/{f['population_error']:.3f}/{f['ece']:.3f}",
                  flush=True)
    truth = np.concatenate([r["truth_is_1"] for r in results]).astype(float)
    pooled = np.concatenate([r["models"]["unit"]["posterior_1"] for r in results])
    _, _, _, ece, gap = reliability(pooled, truth)
    machine = (f"{platform.machine()} {os.cpu_count()} cores, torch "
               f"{torch.__version__}, {torch.get_num_threads()} thread(s)")
    print(f"pooled reliability (unit noise): ECE {ece:.3f}, largest gap over bins with >= 10 "
          f"particles {gap:.3f}; {machine}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine, "mass_removed": cut,
                                         "pair": args.pair, "pixel_size": args.pixel_size,
                                         "results": results}, indent=1))
    if args.figure is not None:
        plot(results, args.figure)
    print(f"min_accuracy={min(r['models']['unit']['accuracy'] for r in results):.3f} "
          f"max_population_error="
          f"{max(r['models']['unit']['population_error'] for r in results):.3f} "
          f"max_reliability_gap={gap:.3f}")


if __name__ == "__main__":
    main()
