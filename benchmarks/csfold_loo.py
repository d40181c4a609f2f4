"""Held-out benchmark of CS-Fold on the 108 RNAs of the published training table.

Protocol ``grouped80`` (default): the RNAs are grouped by sequence identity (>= 80 %, single
linkage over free-end-gap global alignments, identity over the mean length;
:mod:`csrna.grouping`, computed here from ``ss_table_0``) and each group is held out at once:
the six-network ensemble is retrained on the other groups (``ss_table_1``), the group's
measured shifts (``shifts_corrected/measured_shifts_<ID>.dat``) are imputed against the other
groups' rows of ``ss_table_0``, P(unpaired) is predicted and the calls (P > 0.5 = unpaired,
as a classifier) are scored against the table's class labels. Protocol ``loo`` holds out one
RNA at a time (the first version of this benchmark; near-identical RNAs then stay in
training). RNAs with a reference 3D structure (``reference_pdb/<ID>.pdb.gz``) are folded with
CS-Fold (all modes) and with plain ViennaRNA MFE (baseline); base pairs of the reference are
annotated with rnapolis (ADE/CYT/GUA/URA renamed to A/C/G/U; canonical cWW G-C, A-U and G-U
wobble pairs). Sensitivity = TP / reference pairs, PPV = TP / predicted pairs, exact pair
matches. RNAs whose reference covers only part of the sequence are scored on the covered
residues and reported separately.

Rules are chosen inside the training groups: for each held-out group the pruning thresholds
(grid :data:`PRUNE_GRID`, "no pruning" included) with the best mean PPV among those keeping
the published mode's mean sensitivity on the other groups' RNAs score that group (nested).
Gains over ViennaRNA come with a paired bootstrap over groups.

Usage::

    python benchmarks/csfold_loo.py [--protocol grouped80|loo] [--data DIR] [--epochs 40]
        [--workers 2] [--mode conservative] [--cache grouped.pkl] [--limit N]

The LAST line printed is ``sensitivity=X ppv=Y accuracy=Z baseline_sensitivity=A
baseline_ppv=B protocol=P``: means over the fully covered RNAs of the nested selection
(fixed-threshold figures of every mode are printed above it; with fewer than 10 folded RNAs,
``--mode`` with fixed thresholds); accuracy over all residues of all 108 RNAs.
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from csrna.fold.classifier import train_ensemble
from csrna.fold.features import read_ss_table_0, read_ss_table_1
from csrna.fold.folding import fold_candidates, mfe_structure
from csrna.fold.pipeline import (
    MODES,
    choose_structure,
    classify_residues,
    impute_residues,
    settings_for,
)
from csrna.grouping import group_of, identity_groups
from csrna.io import read_shifts
from csrna.io.nuclei import NUCLEI

CANONICAL = {("G", "C"), ("C", "G"), ("A", "U"), ("U", "A"), ("G", "U"), ("U", "G")}
_RENAME = {"ADE": "  A", "CYT": "  C", "GUA": "  G", "URA": "  U"}


def default_data() -> Path:
    """The shared data folder (``DIFFTM_SHARED_DATA`` or ``<repo>/../shared/data``)."""
    env = os.environ.get("DIFFTM_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "data"


def reference_structure(pdb_gz: Path) -> tuple[dict[int, str], list[tuple[int, int]]]:
    """Residue letters by number and canonical/wobble base pairs of a reference PDB.

    Args:
        pdb_gz: gzipped PDB with CHARMM residue names.

    Returns:
        ({residue number: letter}, sorted pairs by residue number).
    """
    from rnapolis.annotator import extract_base_interactions
    from rnapolis.parser import read_3d_structure

    lines = []
    for line in gzip.open(pdb_gz, "rt").read().splitlines():
        if line.startswith(("ATOM", "HETATM")):
            line = line[:17] + _RENAME.get(line[17:20], line[17:20]) + line[20:]
        lines.append(line)
    s3 = read_3d_structure(io.StringIO("\n".join(lines) + "\n"), 1)
    letters = {r.number: r.one_letter_name.upper() for r in s3.residues}
    interactions = extract_base_interactions(s3)
    used: set[int] = set()
    pairs = []
    for bp in interactions.base_pairs:
        if bp.lw.value != "cWW":
            continue
        i, j = sorted((bp.nt1.auth.number, bp.nt2.auth.number))
        if (letters.get(i), letters.get(j)) not in CANONICAL or i in used or j in used:
            continue
        used.update((i, j))
        pairs.append((i, j))
    return letters, sorted(set(pairs))


def align_reference(letters: dict[int, str], pairs: list[tuple[int, int]],
                    shift_seq: dict[int, str]) -> tuple[str, list[tuple[int, int]], set[int]]:
    """Express the reference in the numbering of the shift file.

    Args:
        letters: reference residue letters by number.
        pairs: reference pairs.
        shift_seq: residue letters of the shift file by residue number.

    Returns:
        (sequence to fold, reference pairs renumbered, covered residue numbers). The numbering
        offset is the one that makes the most residue names agree (0 preferred); the sequence
        is 1..max over both, taking letters from the reference, then from the shifts.
    """
    offsets = sorted({k - r for k in shift_seq for r in letters}, key=abs)
    best = max(offsets, key=lambda d: (sum(shift_seq.get(r + d) == v for r, v in letters.items()),
                                        -abs(d)))
    ref = {r + best: v for r, v in letters.items() if r + best >= 1}
    n = max(max(ref), max(shift_seq))
    seq = "".join(ref.get(k) or shift_seq.get(k) or "N" for k in range(1, n + 1))
    moved = [(i + best, j + best) for i, j in pairs if i + best >= 1 and j + best >= 1]
    return seq, moved, set(ref)


def score(pred: list[tuple[int, int]], ref: list[tuple[int, int]],
          covered: set[int]) -> tuple[float, float]:
    """Sensitivity and PPV of predicted pairs (restricted to the covered residues)."""
    pred_c = {p for p in pred if p[0] in covered and p[1] in covered}
    ref_s = set(ref)
    tp = len(pred_c & ref_s)
    sens = tp / len(ref_s) if ref_s else float("nan")
    ppv = tp / len(pred_c) if pred_c else float("nan")
    return sens, ppv


def loo_model(data: Path, rna: str | list[str], epochs: int):
    """Ensemble retrained without ``rna`` (one id or a group of ids) and the other RNAs' rows
    as imputation reference.

    Returns:
        (ensemble, (reference shifts (N, 19), reference residue names (N,)), ``ss_table_1``).
    """
    held = [rna] if isinstance(rna, str) else list(rna)
    cs2 = data / "rna" / "cs2bps"
    t0 = read_ss_table_0(cs2 / "ss_table_0.txt")
    t1 = read_ss_table_1(cs2 / "ss_table_1.txt")
    ens = train_ensemble(t1[~t1["id"].isin(held)], epochs=epochs, seed=0)
    ref_rows = t0[~t0["id"].isin(held)]
    reference = (ref_rows[list(NUCLEI)].to_numpy(np.float64), ref_rows["resname"].to_numpy())
    return ens, reference, t1


def measured_shifts(data: Path, rna: str) -> pd.DataFrame:
    """The measured (corrected) shifts of one RNA of the benchmark."""
    return read_shifts(data / "rna" / "cs2bps" / "shifts_corrected" /
                       f"measured_shifts_{rna}.dat")


def per_nucleotide(resid: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    """(n,) values by residue number 1..n, NaN where a residue has none (beyond n dropped)."""
    out = np.full(n, np.nan)
    keep = resid <= n
    out[resid[keep] - 1] = p[keep]
    return out


def run_one(task: tuple) -> dict:
    """One leave-one-out fold (runs in a worker process)."""
    rna, data, epochs, seed = task
    ens, reference, t1 = loo_model(data, rna, epochs)
    return score_rna(rna, data, ens, reference, t1, seed, epochs)


def run_group(task: tuple) -> list[dict]:
    """One leave-one-group-out fold: train without the whole group, score each member."""
    group, data, epochs, seed = task
    ens, reference, t1 = loo_model(data, list(group), epochs)
    return [score_rna(rna, data, ens, reference, t1, seed, epochs) for rna in group]


def score_rna(rna: str, data: Path, ens, reference, t1: pd.DataFrame, seed: int,
              epochs: int) -> dict:
    """Classifier calls, candidates and baseline of one held-out RNA."""
    shifts = measured_shifts(data, rna)
    complete, n_measured = impute_residues(shifts, reference, seed=seed)
    probs = classify_residues(complete, ens)
    truth = t1[t1["id"] == rna][["resid", "class"]]
    merged = truth.merge(probs[["resid", "p_unpaired"]], on="resid", how="left")
    calls = merged["p_unpaired"].to_numpy() > 0.5
    out = {"rna": rna, "n_res": len(truth), "n_correct": int((calls == merged["class"]).sum()),
           "p": probs[["resid", "p_unpaired"]].to_numpy(), "complete": complete,
           "n_measured": n_measured, "seed": seed, "epochs": epochs}
    pdb = data / "rna" / "cs2bps" / "reference_pdb" / f"{rna}.pdb.gz"
    if not pdb.is_file():
        return out
    letters, ref_pairs = reference_structure(pdb)
    shift_seq = dict(zip(shifts["resid"], shifts["resname"], strict=True))
    seq, ref_pairs, covered = align_reference(letters, ref_pairs, shift_seq)
    out.update(seq=seq, ref_pairs=ref_pairs, covered=sorted(covered),
               partial=not set(range(1, len(seq) + 1)) <= covered)
    if "N" in seq:
        return out
    p = per_nucleotide(probs["resid"].to_numpy(), probs["p_unpaired"].to_numpy(), len(seq))
    out["p_seq"] = p
    out["candidates"] = fold_candidates(seq, p)
    out["baseline"] = mfe_structure(seq)[0]
    return out


def evaluate(results: list[dict], mode: str) -> pd.DataFrame:
    """Per-RNA table for one selection mode."""
    settings = settings_for(mode)
    rows = []
    for r in results:
        row = {"rna": r["rna"], "n": r["n_res"], "acc": r["n_correct"] / r["n_res"]}
        if "candidates" in r:
            cands = r["candidates"]
            if settings.slope != 1.8 or settings.intercept != -0.6:
                cands = fold_candidates(r["seq"], r["p_seq"], settings.slope, settings.intercept)
            pairs, chosen, _ = choose_structure(cands, r["p_seq"], settings)
            cov = set(r["covered"])
            row["sens"], row["ppv"] = score(pairs, r["ref_pairs"], cov)
            row["base_sens"], row["base_ppv"] = score(r["baseline"], r["ref_pairs"], cov)
            row["pick"] = chosen.name
            row["partial"] = r["partial"]
            row["ref_pairs"] = len(r["ref_pairs"])
        rows.append(row)
    return pd.DataFrame(rows)


PRUNE_GRID = [(a, m) for a in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
              for m in (0.6, 0.8, 0.9, 0.95, 0.99)] + [(0.0, 1.0)]  # last: never prunes


def folded_full(results: list[dict]) -> list[dict]:
    """The fold results of RNAs whose reference covers the whole sequence."""
    return [r for r in results if "candidates" in r and not r["partial"]]


def grid_scores(res: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per-RNA (sensitivity, PPV) for every pruning threshold pair of :data:`PRUNE_GRID`.

    Returns:
        (scores (grid, RNAs, 2), baseline scores (RNAs, 2)).
    """
    from csrna.fold.pipeline import FoldSettings

    sp = np.array([[score(choose_structure(r["candidates"], r["p_seq"],
                                           FoldSettings(prune_max=m, prune_min=a))[0],
                          r["ref_pairs"], set(r["covered"])) for r in res]
                   for a, m in PRUNE_GRID])
    base = np.array([score(r["baseline"], r["ref_pairs"], set(r["covered"])) for r in res])
    return sp, base


def pick_thresholds(sp: np.ndarray, ref: np.ndarray, train: np.ndarray) -> int:
    """Grid index with the best mean PPV on ``train`` among those keeping ``ref``'s sensitivity.

    Args:
        sp: (grid, RNAs, 2) per-RNA (sensitivity, PPV) of each grid point; when no point keeps
            the sensitivity, the last one is taken (for :data:`PRUNE_GRID`: no pruning).
        ref: (RNAs, 2) scores whose mean sensitivity must be kept.
        train: indices of the RNAs the choice is made on.
    """
    ok = [g for g in range(sp.shape[0])
          if sp[g, train, 0].mean() >= ref[train, 0].mean() - 1e-9] or [sp.shape[0] - 1]
    return max(ok, key=lambda g: (sp[g, train, 1].mean(), sp[g, train, 0].mean()))


def nested_loo(sp: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Per-RNA scores with the grid point re-chosen on the other RNAs (leave-one-RNA-out)."""
    everyone = np.arange(sp.shape[1])
    return np.array([sp[pick_thresholds(sp, ref, everyone[everyone != k]), k]
                     for k in everyone])


def cross_validate_pruning(sp: np.ndarray, base: np.ndarray, keep: str = "baseline",
                           repeats: int = 50, seed: int = 0) -> str:
    """Honest estimate of the pruning thresholds: re-chosen by cross-validation over RNAs.

    On each training set the grid point (prune_max, prune_min) with the best mean PPV among
    those whose mean sensitivity is at least the reference's (``keep``: the ViennaRNA baseline,
    which the ``tuned`` thresholds were chosen against, or the ``published`` mode, i.e. no true
    pair of the published mode lost, which gives the ``conservative`` thresholds) is chosen and
    scored on the held-out RNAs: 2-fold (``repeats`` random halvings) and leave-one-RNA-out.

    Args:
        sp, base: :func:`grid_scores` of the fully covered RNAs.

    Returns:
        A one-line summary.
    """
    n = sp.shape[1]
    ref = base if keep == "baseline" else sp[-1]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(repeats):
        perm = rng.permutation(n)
        halves = (perm[: n // 2], perm[n // 2 :])
        for train, test in (halves, halves[::-1]):
            g = pick_thresholds(sp, ref, train)
            out.append((sp[g, test, 0].mean(), sp[g, test, 1].mean(),
                        base[test, 0].mean(), base[test, 1].mean()))
    out = np.array(out)
    s, p, bs, bp = out.mean(axis=0)
    ds, dp = (out[:, :2] - out[:, 2:]).std(axis=0)
    loo = nested_loo(sp, ref).mean(axis=0)
    return (f"# thresholds re-chosen keeping {keep} sensitivity: 2-fold CV over RNAs "
            f"(x{repeats}) sensitivity {s:.3f} ppv {p:.3f} (baseline {bs:.3f} / {bp:.3f}; "
            f"difference sd {ds:.3f} / {dp:.3f}); leave-one-RNA-out {loo[0]:.3f} / "
            f"{loo[1]:.3f} (baseline {base[:, 0].mean():.3f} / {base[:, 1].mean():.3f})")


def paired_gain(scores: np.ndarray, base: np.ndarray, label: str, n_boot: int = 10000,
                seed: int = 0) -> str:
    """Gain over the baseline with a paired bootstrap over RNAs.

    Args:
        scores, base: (RNAs, 2) per-RNA (sensitivity, PPV) of a method and of the baseline.
        label: name printed in the line.
        n_boot: bootstrap resamples of the RNAs.
        seed: bootstrap seed.

    Returns:
        One line: mean differences, 95 % percentile intervals, the fraction of resamples with
        no PPV gain, and how many RNAs got better / worse.
    """
    d = scores - base
    rng = np.random.default_rng(seed)
    boots = d[rng.integers(0, len(d), (n_boot, len(d)))].mean(axis=1)
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    up, down = (d > 1e-9).sum(axis=0), (d < -1e-9).sum(axis=0)
    return (f"# gain over baseline, {label}: sensitivity {d[:, 0].mean():+.4f} "
            f"[{lo[0]:+.4f}, {hi[0]:+.4f}] (RNAs better/worse {up[0]}/{down[0]}); PPV "
            f"{d[:, 1].mean():+.4f} [{lo[1]:+.4f}, {hi[1]:+.4f}] (better/worse "
            f"{up[1]}/{down[1]}; bootstrap P(PPV gain <= 0) = {(boots[:, 1] <= 0).mean():.4f})")


def gain_report(tables: dict[str, pd.DataFrame], sp: np.ndarray,
                base: np.ndarray) -> list[str]:
    """Paired-bootstrap gain lines for every mode and for held-out conservative thresholds.

    Args:
        tables: :func:`evaluate` table per mode.
        sp, base: :func:`grid_scores` of the fully covered RNAs (same order as the tables).
    """
    lines = [paired_gain(full_rows(t)[["sens", "ppv"]].to_numpy(np.float64), base, f"mode {m}")
             for m, t in tables.items()]
    lines.append(paired_gain(nested_loo(sp, sp[-1]), base,
                             "conservative rule, thresholds chosen leaving each RNA out"))
    return lines


def full_rows(table: pd.DataFrame) -> pd.DataFrame:
    """Rows of an :func:`evaluate` table for the folded, fully covered RNAs."""
    if "sens" not in table:
        return table.iloc[:0]
    folded = table.dropna(subset=["sens"])
    return folded[~folded["partial"].astype(bool)]


def rna_groups(data: Path, rnas: list[str], protocol: str,
               threshold: float = 0.8) -> list[list[str]]:
    """Held-out units: one RNA each (``loo``) or sequence-identity groups (``grouped80``).

    The groups are computed here from the sequences of ``ss_table_0`` (identity over the mean
    length of a free-end-gap global alignment, single linkage; :mod:`csrna.grouping`).
    """
    if protocol == "loo":
        return [[r] for r in rnas]
    t0 = read_ss_table_0(data / "rna" / "cs2bps" / "ss_table_0.txt")
    t0 = t0[t0["id"].isin(rnas)]
    seqs = {i: "".join(g.sort_values("resid")["resname"]) for i, g in t0.groupby("id")}
    return identity_groups(seqs, threshold)


def nested_groups(sp: np.ndarray, ref: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per-RNA scores with the grid point re-chosen on the RNAs of the other groups.

    Args:
        sp: (grid, RNAs, 2) :func:`grid_scores`.
        ref: (RNAs, 2) scores whose mean sensitivity the choice must keep.
        groups: (RNAs,) group index of each RNA; the RNAs of one group are scored with the
            grid point chosen on all other groups (leave-one-group-out).
    """
    out = np.empty((sp.shape[1], 2))
    for g in np.unique(groups):
        test = np.flatnonzero(groups == g)
        out[test] = sp[pick_thresholds(sp, ref, np.flatnonzero(groups != g)), test]
    return out


def nested_choices(sp: np.ndarray, ref: np.ndarray, groups: np.ndarray) -> str:
    """How often each grid point was chosen across the held-out groups (one line)."""
    picks = [pick_thresholds(sp, ref, np.flatnonzero(groups != g)) for g in np.unique(groups)]
    counts = pd.Series([PRUNE_GRID[k] for k in picks]).value_counts()
    return ", ".join(f"(min {a}, max {m}) x{c}" for (a, m), c in counts.items())


def grouped_gain(scores: np.ndarray, base: np.ndarray, groups: np.ndarray, label: str,
                 n_boot: int = 10000, seed: int = 0) -> str:
    """Gain over the baseline with a paired bootstrap over identity groups (cluster
    bootstrap: whole groups are resampled, RNAs weighted equally)."""
    d = scores - base
    ids = np.unique(groups)
    members = [np.flatnonzero(groups == g) for g in ids]
    rng = np.random.default_rng(seed)
    boots = np.empty((n_boot, 2))
    for b in range(n_boot):
        pick = np.concatenate([members[k] for k in rng.integers(0, len(ids), len(ids))])
        boots[b] = d[pick].mean(axis=0)
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    up, down = (d > 1e-9).sum(axis=0), (d < -1e-9).sum(axis=0)
    return (f"# gain over baseline, {label}: sensitivity {d[:, 0].mean():+.4f} "
            f"[{lo[0]:+.4f}, {hi[0]:+.4f}] (RNAs better/worse {up[0]}/{down[0]}); PPV "
            f"{d[:, 1].mean():+.4f} [{lo[1]:+.4f}, {hi[1]:+.4f}] (better/worse "
            f"{up[1]}/{down[1]}; group bootstrap P(PPV gain <= 0) = "
            f"{(boots[:, 1] <= 0).mean():.4f})")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the per-RNA table and the summary line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--protocol", choices=("grouped80", "loo"), default="grouped80",
                    help="grouped80 (default): hold out groups of RNAs at >= 80 %% sequence "
                         "identity, thresholds chosen on the other groups; loo: the old "
                         "leave-one-RNA-out protocol")
    ap.add_argument("--seed", type=int, default=500,
                    help="seed of the shift imputation (published mice seed 500)")
    ap.add_argument("--epochs", type=int, default=40,
                    help="epochs per network and fold (shipped ensemble: 60)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", choices=MODES, default="conservative",
                    help="mode of the per-RNA table (all modes are summarised)")
    ap.add_argument("--cache", type=Path, default=None,
                    help="pickle of the fold results: reused if present, written otherwise")
    ap.add_argument("--limit", type=int, default=None, help="only the first N RNAs (testing)")
    args = ap.parse_args(argv)
    cs2 = args.data / "rna" / "cs2bps"
    if not (cs2 / "ss_table_0.txt").is_file():
        sys.exit(f"{cs2}: CS-Fold data not found (set DIFFTM_SHARED_DATA)")
    rnas = sorted(read_ss_table_0(cs2 / "ss_table_0.txt")["id"].unique())[: args.limit]
    groups = rna_groups(args.data, rnas, args.protocol)
    multi = [g for g in groups if len(g) > 1]
    print(f"# protocol={args.protocol}: {len(groups)} held-out units; {len(multi)} groups of "
          f">= 2 RNAs at >= 80 % identity hold {sum(map(len, multi))} RNAs: "
          + " ".join("=".join(g) for g in multi))
    start = time.time()
    if args.cache is not None and args.cache.is_file():
        results = pd.read_pickle(args.cache)
        cached = results[0].get("protocol", "loo")
        if cached != args.protocol:
            sys.exit(f"{args.cache}: cache of protocol {cached}, not {args.protocol}")
    else:
        tasks = [(g, args.data, args.epochs, args.seed) for g in groups]
        results = []
        with ProcessPoolExecutor(args.workers) as pool:
            for k, res in enumerate(pool.map(run_group, tasks), start=1):
                for r in res:
                    r["protocol"] = args.protocol
                results.extend(res)
                print(f"# [{k}/{len(tasks)}] {' '.join(r['rna'] for r in res)} "
                      f"{time.time() - start:.0f} s", file=sys.stderr, flush=True)
        results.sort(key=lambda r: r["rna"])
        if args.cache is not None:
            pd.to_pickle(results, args.cache)
    print(f"# {len(results)} RNAs, {time.time() - start:.0f} s, "
          f"epochs={results[0].get('epochs', 'unknown')}, "
          f"imputation seed={results[0].get('seed', 'unknown')}")
    accuracy = sum(r["n_correct"] for r in results) / sum(r["n_res"] for r in results)
    tables = {m: evaluate(results, m) for m in MODES}
    pd.set_option("display.width", 200)
    for m, t in tables.items():
        full = full_rows(t)
        part = (t.dropna(subset=["sens"]) if "sens" in t else full).drop(index=full.index)
        print(f"# mode={m} (fixed thresholds): full-coverage RNAs {len(full)}: sensitivity "
              f"{full['sens'].mean():.3f} ppv {full['ppv'].mean():.3f} | baseline "
              f"{full['base_sens'].mean():.3f} / {full['base_ppv'].mean():.3f}; partial RNAs "
              f"{len(part)}: {part['sens'].mean():.3f} / {part['ppv'].mean():.3f} (baseline "
              f"{part['base_sens'].mean():.3f} / {part['base_ppv'].mean():.3f})")
    res = folded_full(results)
    index = group_of(groups)
    gid = np.array([index[r["rna"]] for r in res])
    table = tables[args.mode]
    full = full_rows(table)
    headline = full[["sens", "ppv"]].to_numpy(np.float64)
    if len(res) < 10:
        print(f"# nested threshold selection and gain over baseline skipped ({len(res)} folded "
              "RNAs)")
        base = full[["base_sens", "base_ppv"]].to_numpy(np.float64)
    else:
        sp, base = grid_scores(res)
        print(cross_validate_pruning(sp, base, keep="baseline"))
        print(cross_validate_pruning(sp, base, keep="published"))
        nested = nested_groups(sp, sp[-1], gid)
        print(f"# nested selection (pruning thresholds, no pruning included, chosen on the "
              f"other groups keeping the published mode's sensitivity): sensitivity "
              f"{nested[:, 0].mean():.3f} ppv {nested[:, 1].mean():.3f}; choices: "
              + nested_choices(sp, sp[-1], gid))
        for m, t in tables.items():
            print(grouped_gain(full_rows(t)[["sens", "ppv"]].to_numpy(np.float64), base, gid,
                               f"mode {m} (fixed thresholds)"))
        print(grouped_gain(nested, base, gid, "nested selection (headline)"))
        headline = nested
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"sensitivity={headline[:, 0].mean():.3f} ppv={headline[:, 1].mean():.3f} "
          f"accuracy={accuracy:.3f} baseline_sensitivity={base[:, 0].mean():.3f} "
          f"baseline_ppv={base[:, 1].mean():.3f} protocol={args.protocol}")


if __name__ == "__main__":
    main()
