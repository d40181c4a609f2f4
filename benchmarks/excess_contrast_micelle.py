"""What the excess-contrast rule costs a membrane protein in a detergent micelle.

The rule of ``difftm peaks`` (docs/STATISTICS.md section 6.3) rejects a candidate whose
particle-scale contrast is far beyond what its template explains. A membrane protein carries
density its template lacks: the micelle around its transmembrane domain. This plants 6MSM
(CFTR, 125 kDa) with a model micelle and measures the excess contrast of the particles the
default SNR threshold finds, for micelle potentials of ``f`` times the protein's mean.

The micelle: a uniform oblate ellipsoid (semi-axes 45 A in the membrane plane, 22 A along
the normal) centred on the transmembrane domain (the mean of the CA atoms of CFTR's twelve
TM helices), its normal the model's long axis, less the protein's own voxels. Detergents'
mean potential is close to the solvent's (hydrocarbon tails below it, head groups above),
so realistic ``f`` are small; 1 is a micelle as dense as protein. Particles are planted
from the template volume with the micelle (the simulator's volume path, the same for every
``f``), searched with the template alone the way the detection matrix searches (accelerated,
15 deg coarse grid), 2 A/px, 60 e/A^2, shot noise.

    python benchmarks/excess_contrast_micelle.py --fractions 0 0.25 0.5 1 2 --json m.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

SHARED = Path(os.environ.get("DIFFTM_SHARED_DATA",
                             Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
#: CFTR's transmembrane helices (residue ranges of 6MSM, both halves).
TM_HELICES = ((77, 98), (118, 145), (193, 216), (220, 242), (298, 320), (330, 352),
              (857, 880), (900, 930), (987, 1009), (1012, 1034), (1095, 1116), (1128, 1150))


def micelle_mask(path: Path, vol: np.ndarray, pixel_size: float) -> np.ndarray:
    """(D, D, D) bool: the model micelle's voxels (module docstring) on the template grid."""
    import gemmi

    from difftm.io.models import load_model

    pos = load_model(path).positions_angstrom
    centre = pos.mean(axis=0)
    st = gemmi.read_structure(str(path))
    ca = np.array([a.pos.tolist() for ch in st[0] for r in ch
                   if any(lo <= r.seqid.num <= hi for lo, hi in TM_HELICES)
                   for a in r if a.name == "CA"])
    normal = np.linalg.eigh(np.cov((pos - centre).T))[1][:, -1]
    d = vol.shape[0]
    zz, yy, xx = (np.mgrid[0:d, 0:d, 0:d] - d // 2) * pixel_size
    r = np.stack([xx, yy, zz], -1) - (ca.mean(axis=0) - centre)
    along = r @ normal
    inplane = np.linalg.norm(r - along[..., None] * normal, axis=-1)
    shell = (inplane / 45.0) ** 2 + (along / 22.0) ** 2 <= 1.0
    return shell & ~(vol > 0.05 * vol.max())


def run(fractions: list[float], work: Path, seed: int) -> dict:
    """Plant, search and call for every micelle fraction; the particles' excess contrast."""
    from difftm.accelerate.search import grid_matched_lowpass
    from difftm.evaluate import match_detections
    from difftm.io.models import load_model
    from difftm.io.mrc import write_mrc
    from difftm.search.config import SearchConfig
    from difftm.search.contamination import MAX_EXCESS_CONTRAST
    from difftm.search.engine import run_search
    from difftm.search.particles import call_particles
    from difftm.simulate.micrograph import simulate_micrograph, template_diameter
    from difftm.simulate.template import simulate_template, suggest_box

    px, fluence, defocus = 2.0, 60.0, 10000.0
    path = SHARED / "pdb" / "6msm.pdb.gz"
    vol = simulate_template(path, pixel_size=px,
                            box=suggest_box(load_model(path), px)).numpy()
    micelle = micelle_mask(path, vol, px)
    protein = vol > 0.05 * vol.max()
    mean_protein = float(vol[protein].mean())
    diameter = template_diameter(torch.as_tensor(vol))
    write_mrc(work / "t.mrc", vol, px, overwrite=True)
    out = {"micelle_voxels": int(micelle.sum()), "protein_voxels": int(protein.sum()),
           "limit": MAX_EXCESS_CONTRAST, "cells": []}
    for f in fractions:
        planted = torch.as_tensor(vol + f * mean_protein * micelle)
        sim = simulate_micrograph(planted, px, (512, 512), 8, defocus, fluence=fluence,
                                  seed=seed, defocus_spread=100.0)
        folder = work / f"f{f:g}"
        folder.mkdir(exist_ok=True)
        write_mrc(folder / "m.mrc", sim.image.astype(np.float32), px, overwrite=True)
        cfg = SearchConfig(micrograph=folder / "m.mrc", template=work / "t.mrc",
                           output=folder / "run", pixel_size=px, defocus_u=defocus,
                           defocus_range=0.0, strategy="accelerated",
                           coarse_out_of_plane_step=15.0, coarse_in_plane_step=15.0,
                           coarse_lowpass=grid_matched_lowpass(0.5 * diameter * px, 15.0, px),
                           device="cpu", overwrite=True)
        table, summary = call_particles(run_search(cfg))
        above = table[table["called_snr"]].reset_index(drop=True)
        found = match_detections(above, sim.truth, max(2.0, 0.1 * diameter))
        excess = [float(above.loc[i, "excess_contrast"]) for i, _, _ in found]
        cell = {"fraction": f, "found_above_threshold": len(found),
                "called_by_default": int(table["called"].sum()),
                "rejected_by_the_rule": summary.n_rejected_excess, "excess": excess}
        out["cells"].append(cell)
        extreme = max(excess, key=abs) if excess else float("nan")
        middle = float(np.median(excess)) if excess else float("nan")
        print(f"micelle {f:g} x protein potential: {len(found)} of 8 particles above the "
              f"threshold, excess contrast median {middle:.2f}, most extreme {extreme:.2f}; "
              f"calls rejected by the rule (|z| > {MAX_EXCESS_CONTRAST:g}): "
              f"{summary.n_rejected_excess}", flush=True)
    return out


def main() -> None:
    """Run the fractions and print one line per fraction."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fractions", nargs="+", type=float, default=[0.0, 0.25, 0.5, 1.0, 2.0])
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="micelle_") as tmp:
        out = run(args.fractions, Path(tmp), args.seed)
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
