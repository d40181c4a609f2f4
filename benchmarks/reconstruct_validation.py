"""Reconstruction from planted particles (resolution vs the truth) and the omit test.

Part 1 (``resolution``): ``--n`` particles of a small protein (default 1UBI, 8.5 kDa) are
planted with the faithful simulator (exact atom projections with displaced solvent,
per-particle CTF with defocus spread, Poisson counts; ``simulate_micrograph``) at
``--pixel-size`` (1.5 A/px), in micrographs of ``--per-micrograph`` particles each, and
reconstructed from their true poses through the STAR + MRC path of ``difftm reconstruct``
(``read_particle_set`` + ``reconstruct``). Reported: the half-map FSC resolution at 0.143,
the FSC of the final map against the true map (the atoms' potential minus the displaced
solvent, the quantity the simulator projects; resolution at 0.5), the ratio to the
simulation's band limit (Nyquist, ``2 x pixel size``), and the independence of the halves:
the same poses on pure-noise micrographs (same fluence) give half-map FSC z-scores
(FSC / sigma_noise per shell) that must stay within noise.

Part 2 (``omit``): template-bias test on 4E43 (HIV-1 protease dimer, chains A and B, plus
the 6-residue peptide chain C as the "ligand" a template may omit). Poses come from an
alignment against a template, as a 2DTM search would give them: each particle box is
correlated (CTF-filtered templates, fixed centre) with projections of the template over
``--orientations`` random orientations and takes the best. Four reconstructions:

* ``real, template without C`` (and ``with C``): planted particles *with* chain C, poses
  from the template lacking C (containing C) -> C's density should return either way;
* ``noise, template with C`` and ``noise, template without C``: pure-noise "particles" at
  random positions, poses from each template (Einstein-from-noise): the map echoes the
  template, so C's region is filled only when the template had C.

Statistic (:mod:`difftm.reconstruct.omit`): map-model correlation in C's region, z against
phase-randomised maps, and ``z_diff`` between two maps.

    python benchmarks/reconstruct_validation.py --n 2000 --json out.json

The last line is ``resolution_0143=... band_limit=... ratio=... omit_z_real=...
omit_zdiff_noise=...``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

SHARED = Path(os.environ.get("DIFFTM_SHARED_DATA",
                             Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def true_map(atoms, pixel_size: float, box: int, centre=None) -> torch.Tensor:
    """The atoms' potential minus the solvent they displace, as the simulator models it
    (:func:`difftm.physics.potential.projected_potential`): per atom a Gaussian of integral
    ``V_w v_i`` and standard deviation 2 A, deposited trilinearly and blurred in Fourier
    space."""
    from difftm.io.models import atomic_weights, centre_of_mass
    from difftm.physics.potential import (
        SOLVENT_BLUR_A,
        VOLUME_PER_DALTON,
        WATER_POTENTIAL_V,
        simulate_potential,
    )

    c = centre_of_mass(atoms) if centre is None else np.asarray(centre)
    pot = simulate_potential(atoms, pixel_size, box, centre=c, dtype=torch.float64)
    vol = VOLUME_PER_DALTON * atomic_weights(atoms.elements) * atoms.occupancies
    xyz = (atoms.positions_angstrom - c) / pixel_size + box // 2
    dens = torch.zeros(box, box, box, dtype=torch.float64)
    base = np.floor(xyz).astype(int)
    frac = xyz - base
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                w = (np.where(dx, frac[:, 0], 1 - frac[:, 0]) * np.where(dy, frac[:, 1],
                     1 - frac[:, 1]) * np.where(dz, frac[:, 2], 1 - frac[:, 2]))
                ix, iy, iz = base[:, 0] + dx, base[:, 1] + dy, base[:, 2] + dz
                ok = (ix >= 0) & (ix < box) & (iy >= 0) & (iy < box) & (iz >= 0) & (iz < box)
                dens.index_put_((torch.as_tensor(iz[ok]), torch.as_tensor(iy[ok]),
                                 torch.as_tensor(ix[ok])), torch.as_tensor(w[ok] * vol[ok]),
                                accumulate=True)
    k = torch.fft.fftfreq(box, d=pixel_size, dtype=torch.float64)
    kx = torch.fft.rfftfreq(box, d=pixel_size, dtype=torch.float64)
    k2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2
    blur = torch.exp(-2 * math.pi**2 * SOLVENT_BLUR_A**2 * k2)
    solvent = torch.fft.irfftn(torch.fft.rfftn(dens) * blur, s=dens.shape)
    return pot - WATER_POTENTIAL_V * solvent / pixel_size**3


def _simulate_set(atoms, template, pixel_size, n, per_mic, defocus, spread, fluence, seed,
                  centre=None, shape=None, empty=False, separation=None):
    """Micrographs (list of arrays) and one truth table with a ``micrograph`` column;
    particles at least ``separation`` px apart (the extraction box: no box overlaps
    another particle's centre)."""
    import pandas as pd

    from difftm.simulate.micrograph import simulate_micrograph

    images, tables = [], []
    k = 0
    while sum(len(t) for t in tables) < n:
        m = min(per_mic, n - sum(len(t) for t in tables))
        sim = simulate_micrograph(template, pixel_size, shape, m, defocus, fluence=fluence,
                                  defocus_spread=spread, seed=seed + k, atoms=atoms,
                                  centre=centre, min_separation=separation)
        t = sim.truth.copy()
        t["micrograph"] = f"mic{k:03d}"
        if empty:  # the same geometry, Poisson counts only
            noise = simulate_micrograph(template, pixel_size, shape, 0, defocus,
                                        fluence=fluence, seed=seed + 1000 + k)
            images.append(noise.image)
        else:
            images.append(sim.image)
        tables.append(t)
        k += 1
    return images, pd.concat(tables, ignore_index=True)


def _particle_set(table, pixel_size):
    from difftm.reconstruct.run import ParticleSet

    n = len(table)
    return ParticleSet(
        micrograph=table["micrograph"].to_numpy().astype(str),
        xy=table[["x", "y"]].to_numpy(float), angles=table[["rot", "tilt", "psi"]].to_numpy(),
        defocus=table[["defocus_u", "defocus_v", "defocus_angle"]].to_numpy(),
        phase_shift=np.zeros(n), ctf_bfactor=np.zeros(n), voltage=np.full(n, 300.0),
        cs=np.full(n, 2.7), amplitude_contrast=np.full(n, 0.07), pixel_size=pixel_size)


def _via_star(folder: Path, images, table, pixel_size):
    """Write MRC micrographs and a RELION STAR, read them back as ``difftm reconstruct``
    does; returns the particle set and the loader."""
    from difftm.cli.reconstruct import _micrograph_loader
    from difftm.io.mrc import write_mrc
    from difftm.io.star import make_optics_table, make_particles_table, write_particles_star
    from difftm.reconstruct.run import read_particle_set

    folder.mkdir(parents=True, exist_ok=True)
    for k, img in enumerate(images):
        write_mrc(folder / f"mic{k:03d}.mrc", img, pixel_size, overwrite=True)
    cols = {c: table[c].to_numpy() for c in ("x", "y", "rot", "tilt", "psi", "defocus_u",
                                              "defocus_v", "defocus_angle")}
    cols["micrograph"] = np.array([f"{m}.mrc" for m in table["micrograph"]], dtype=object)
    star = folder / "particles.star"
    write_particles_star(star, make_particles_table(cols), make_optics_table(pixel_size),
                         overwrite=True)
    load, _ = _micrograph_loader(star)
    return read_particle_set(star), load


def part_resolution(args) -> dict:
    """Part 1 (module docstring)."""
    from difftm.fourier.padding import pad_to
    from difftm.io.models import load_model
    from difftm.reconstruct.fsc import fourier_shell_correlation, fsc_noise_sigma
    from difftm.reconstruct.run import reconstruct
    from difftm.simulate.template import simulate_template

    path = SHARED / "pdb" / args.model
    atoms = load_model(path)
    ps = args.pixel_size
    template = simulate_template(atoms, pixel_size=ps, box=None)
    d = template.shape[0]
    shape = (args.micrograph, args.micrograph)
    t0 = time.perf_counter()
    images, table = _simulate_set(atoms, template, ps, args.n, args.per_micrograph,
                                  args.defocus, args.defocus_spread, args.fluence, args.seed,
                                  shape=shape, separation=args.box)
    t_sim = time.perf_counter() - t0
    pset, load = _via_star(args.workdir / "planted", images, table, ps)
    del images
    t0 = time.perf_counter()
    mask_d = args.mask_diameter or d * ps
    res = reconstruct(pset, load, args.box, seed=args.seed, mask_diameter=mask_d)
    t_rec = time.perf_counter() - t0
    unmasked = fourier_shell_correlation(res.half1, res.half2, ps)
    truth = pad_to(true_map(atoms, ps, d), (args.box,) * 3)
    vs_truth = fourier_shell_correlation(res.final, truth, ps)
    half_truth = fourier_shell_correlation(res.half1, truth, ps)
    band_limit = 2.0 * ps
    out = {
        "model": args.model, "pixel_size": ps, "n": args.n, "box": args.box,
        "template_box": d, "fluence": args.fluence, "defocus": args.defocus,
        "defocus_spread": args.defocus_spread, "micrographs": int(table.micrograph.nunique()),
        "mask_diameter_A": mask_d, "unmasked_resolution_0143": unmasked.resolution(0.143),
        "resolution_0143": res.resolution, "resolution_05": res.fsc.resolution(0.5),
        "truth_resolution_05": vs_truth.resolution(0.5),
        "truth_resolution_0143": vs_truth.resolution(0.143),
        "band_limit": band_limit, "ratio": res.resolution / band_limit,
        "fsc_half": res.fsc.fsc.tolist(), "fsc_final_vs_truth": vs_truth.fsc.tolist(),
        "fsc_half1_vs_truth": half_truth.fsc.tolist(),
        "frequency": res.fsc.frequency.tolist(), "half1": res.params["half1"],
        "half2": res.params["half2"], "simulate_s": t_sim, "reconstruct_s": t_rec,
    }
    # Independence: the same poses and boxes on pure-noise micrographs.
    noise_images, _ = _simulate_set(atoms, template, ps, args.n, args.per_micrograph,
                                    args.defocus, args.defocus_spread, args.fluence,
                                    args.seed, shape=shape, empty=True, separation=args.box)
    npset, nload = _via_star(args.workdir / "noise", noise_images, table, ps)
    del noise_images
    nres = reconstruct(npset, nload, args.box, seed=args.seed, mask_diameter=mask_d)
    z = nres.fsc.fsc / fsc_noise_sigma(nres.fsc.count)
    out["noise_fsc_z"] = z.tolist()
    out["noise_fsc_max_abs_z"] = float(np.max(np.abs(z[1:])))
    out["noise_fsc_mean_z"] = float(np.mean(z[1:]))
    if args.figure_dir is not None:
        from difftm.report.reconstruct_report import fsc_figure, slices_figure

        args.figure_dir.mkdir(parents=True, exist_ok=True)
        fsc_figure(args.figure_dir / "reconstruct_fsc.png", res.fsc.frequency,
                   {"half-maps": res.fsc.fsc, "final vs true map": vs_truth.fsc,
                    "noise-only half-maps": nres.fsc.fsc}, res.resolution,
                   fsc_noise_sigma(res.fsc.count))
        slices_figure(args.figure_dir / "reconstruct_slices.png", res.final,
                      f"{args.model.split('.')[0].upper()} from {args.n} planted particles")
    return out


def _align(boxes_fn, pset, template, ps, n_orient, seed):
    """Best of ``n_orient`` random orientations per particle by normalised correlation of
    the particle box with the CTF-filtered template projection (fixed centre)."""
    from difftm.fourier.projector import FourierSliceProjector
    from difftm.geometry.euler import euler_to_matrix
    from difftm.physics.ctf import ctf_2d
    from difftm.simulate.micrograph import random_orientations

    d = template.shape[0]
    angles = random_orientations(n_orient, np.random.default_rng(seed))
    proj = FourierSliceProjector(template, oversampling=2.0)
    rot = euler_to_matrix(torch.as_tensor(angles)).float()
    spec = torch.cat([proj.project(rot[i:i + 256]) for i in range(0, n_orient, 256)])
    df = pset.defocus[0]
    ctf = ctf_2d((d, d), ps, float(df[0]), float(df[1]), float(df[2]), 300.0, 2.7, 0.07)
    refs = torch.fft.irfft2(spec * ctf, s=(d, d)).reshape(n_orient, -1).double()
    refs = refs - refs.mean(1, keepdim=True)
    refs = refs / refs.norm(dim=1, keepdim=True)
    boxes = boxes_fn(d).reshape(len(pset), -1)
    boxes = boxes - boxes.mean(1, keepdim=True)
    best = torch.cat([(boxes[i:i + 256] @ refs.T).argmax(1) for i in range(0, len(boxes), 256)])
    return angles[best.numpy()]


def part_omit(args) -> dict:
    """Part 2 (module docstring)."""
    import pandas as pd

    from difftm.fourier.padding import pad_to
    from difftm.io.models import centre_of_mass
    from difftm.physics.potential import simulate_potential
    from difftm.reconstruct.extract import extract_boxes, normalise_micrograph, split_centres
    from difftm.reconstruct.omit import (
        compare_omit,
        concat_atoms,
        omit_test,
        region_masks,
        split_model,
    )
    from difftm.reconstruct.run import reconstruct

    ps = args.pixel_size
    kept, omitted = split_model(SHARED / "pdb" / args.omit_model, args.omit_chain)
    full = concat_atoms(kept, omitted)
    centre = centre_of_mass(kept)
    d = args.omit_template_box
    t_with = simulate_potential(full, ps, d, centre=centre)
    t_without = simulate_potential(kept, ps, d, centre=centre)
    shape = (args.micrograph, args.micrograph)
    box = args.omit_box

    def boxes_from(images, pset):
        def fn(size):
            out = []
            for k, img in enumerate(images):
                rows = np.nonzero(pset.micrograph == f"mic{k:03d}")[0]
                norm = normalise_micrograph(img)
                pix, _ = split_centres(pset.xy[rows])
                out.append(extract_boxes(norm, pix, size))
            return torch.cat(out)
        return fn

    results = {}
    omask, controls = region_masks(kept, omitted, centre, ps, box, args.omit_radius,
                                   seed=args.seed)
    model_map = pad_to(simulate_potential(full, ps, d, centre=centre, dtype=torch.float64),
                       (box,) * 3).numpy()
    for scenario in ("real", "noise"):
        images, table = _simulate_set(full, t_with, ps, args.omit_n, args.per_micrograph,
                                      args.defocus, 0.0, args.fluence, args.seed + 77,
                                      centre=centre, shape=shape, empty=scenario == "noise",
                                      separation=box)
        table = pd.DataFrame(table)
        from difftm.reconstruct.run import ParticleSet  # noqa: F401 (documented type)

        pset = _particle_set(table, ps)
        templates = {"with": t_with, "without": t_without}
        for name, tpl in templates.items():
            angles = _align(boxes_from(images, pset), pset, tpl, ps, args.orientations,
                            args.seed)
            aligned = _particle_set(table.assign(rot=angles[:, 0], tilt=angles[:, 1],
                                                 psi=angles[:, 2]), ps)
            res = reconstruct(aligned, lambda m, imgs=images: imgs[int(m[3:])], box,
                              seed=args.seed, mask_diameter=d * ps)
            om, null = omit_test(res.final, model_map, omask, controls, ps,
                                 args.omit_resolution, n_random=args.omit_random,
                                 seed=args.seed)
            if scenario == "real":
                from difftm.geometry.euler import euler_to_matrix, rotation_angle_deg

                err = rotation_angle_deg(euler_to_matrix(torch.as_tensor(angles)),
                                         euler_to_matrix(torch.as_tensor(
                                             table[["rot", "tilt", "psi"]].to_numpy())))
                extra = {"median_pose_error_deg": float(err.median())}
            else:
                extra = {}
            results[f"{scenario}_{name}"] = {**om.as_dict(), "resolution_0143": res.resolution,
                                             **extra, "_result": om, "_null": null}
    out = {k: {kk: vv for kk, vv in v.items() if not kk.startswith("_")}
           for k, v in results.items()}
    for scenario in ("real", "noise"):
        out[f"{scenario}_with_vs_without"] = compare_omit(
            results[f"{scenario}_with"]["_result"], results[f"{scenario}_without"]["_result"])
    out["settings"] = {"model": args.omit_model, "chain": args.omit_chain, "n": args.omit_n,
                       "box": box, "template_box": d, "orientations": args.orientations,
                       "radius_A": args.omit_radius, "region_voxels": int(omask.sum())}
    if args.figure_dir is not None:
        from difftm.report.reconstruct_report import omit_figure

        chain = args.omit_chain
        for key in ("real_with", "real_without", "noise_with", "noise_without"):
            r = results[key]
            omit_figure(args.figure_dir / f"omit_{chain}_{key}.png", r["cc_omit"], r["cc_control"],
                        r["_null"], r["z"])
    return out


def main() -> None:
    """Parse arguments, run the parts, print a summary."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=["resolution", "omit"],
                    choices=["resolution", "omit"])
    ap.add_argument("--model", default="1ubi.pdb.gz")
    ap.add_argument("--pixel-size", type=float, default=1.5)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--per-micrograph", type=int, default=50)
    ap.add_argument("--micrograph", type=int, default=800, help="micrograph edge, px")
    ap.add_argument("--box", type=int, default=64, help="extraction box, px")
    ap.add_argument("--fluence", type=float, default=50.0)
    ap.add_argument("--defocus", type=float, default=5000.0)
    ap.add_argument("--defocus-spread", type=float, default=300.0)
    ap.add_argument("--omit-model", default="4e43.pdb.gz")
    ap.add_argument("--omit-chain", default="C")
    ap.add_argument("--omit-n", type=int, default=1000)
    ap.add_argument("--omit-box", type=int, default=64)
    ap.add_argument("--omit-template-box", type=int, default=48)
    ap.add_argument("--omit-radius", type=float, default=2.5)
    ap.add_argument("--omit-resolution", type=float, default=6.0,
                    help="low-pass (A) of the model map in the omit statistic, the same for "
                         "every map so they compare")
    ap.add_argument("--mask-diameter", type=float, default=None,
                    help="FSC mask diameter, A [template box x pixel size]")
    ap.add_argument("--omit-random", type=int, default=200)
    ap.add_argument("--orientations", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workdir", type=Path, default=Path("reconstruct_validation_work"))
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--figure-dir", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {"machine": f"{platform.machine()} {platform.processor() or ''} "
                      f"x{torch.get_num_threads()} threads".strip()}
    summary = []
    if "resolution" in args.parts:
        r = part_resolution(args)
        out["resolution"] = r
        print(f"{r['model']}: {r['n']} particles, box {r['box']}, {r['pixel_size']} A/px: "
              f"masked FSC0.143 {r['resolution_0143']:.2f} A (unmasked "
              f"{r['unmasked_resolution_0143']:.2f} A; band limit {r['band_limit']:.2f} A, "
              f"ratio {r['ratio']:.2f}); vs truth FSC0.5 {r['truth_resolution_05']:.2f} A; "
              f"noise-only half-map FSC max |z| {r['noise_fsc_max_abs_z']:.2f}; "
              f"simulate {r['simulate_s']:.0f} s, reconstruct {r['reconstruct_s']:.0f} s",
              flush=True)
        summary += [f"resolution_0143={r['resolution_0143']:.3f}",
                    f"band_limit={r['band_limit']:.2f}", f"ratio={r['ratio']:.3f}"]
    if "omit" in args.parts:
        o = part_omit(args)
        out["omit"] = o
        for key in ("real_with", "real_without", "noise_with", "noise_without"):
            v = o[key]
            print(f"omit {key}: CC {v['cc_omit']:.3f} controls {np.mean(v['cc_control']):.3f} "
                  f"null {v['null_mean']:.3f}+-{v['null_sd']:.3f} z {v['z']:.2f} "
                  f"res {v['resolution_0143']:.2f} A", flush=True)
        summary += [f"omit_z_real={o['real_without']['z']:.2f}",
                    f"omit_zdiff_real={o['real_with_vs_without']['z_diff']:.2f}",
                    f"omit_zdiff_noise={o['noise_with_vs_without']['z_diff']:.2f}"]
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1))
    print(" ".join(summary))


if __name__ == "__main__":
    main()
