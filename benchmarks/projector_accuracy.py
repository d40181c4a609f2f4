"""How the projector settings change the 2DTM score: oversampling and gridding correction.

A particle image is the exact projection of the model's potential; the search correlates it
with the projector's template for the same pose. With both normalised, the expected SNR is
the particle's SNR times the normalised cross-correlation (NCC) of the two, so ``1 - NCC``
is the fraction of the score lost to projection error. The exact projection is computed
from the atoms (the voxel-averaged potential of the rotated model, summed along z), the
template from the voxel-averaged potential of the unrotated model by
:class:`~difftm.fourier.projector.FourierSliceProjector` with each setting; poses are random
(uniform on SO(3)). Prints a table and one JSON line.

    python benchmarks/projector_accuracy.py --model ../shared/data/pdb/1ubi.pdb.gz
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch


def _random_rotations(n: int, seed: int) -> torch.Tensor:
    q = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    q = q / q.norm(dim=1, keepdim=True)
    w, x, y, z = q.unbind(1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w),
        2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w),
        2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1).reshape(n, 3, 3)


def _ncc(a: torch.Tensor, b: torch.Tensor) -> float:
    a = a - a.mean()
    b = b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()))


def main() -> None:
    """Parse arguments, measure, print a table and a JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="PDB/mmCIF file")
    ap.add_argument("--pixel-size", type=float, default=1.0)
    ap.add_argument("--box", type=int, default=None)
    ap.add_argument("--n", type=int, default=50, help="random poses")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from difftm.fourier.projector import FourierSliceProjector
    from difftm.io.models import Atoms, centre_of_mass, load_model
    from difftm.physics.potential import simulate_potential

    atoms = load_model(args.model)
    com = centre_of_mass(atoms)
    radius = float(np.linalg.norm(atoms.positions_angstrom - com, axis=1).max())
    box = args.box or 2 * int(np.ceil(radius * 1.15 / args.pixel_size + 1))  # any pose fits
    volume = simulate_potential(atoms, args.pixel_size, box, dtype=torch.float64)
    rotations = _random_rotations(args.n, args.seed)
    exact = []
    for R in rotations:
        pos = (atoms.positions_angstrom - com) @ R.numpy().T + com
        moved = Atoms(pos, atoms.elements, atoms.b_factors, atoms.occupancies)
        exact.append(simulate_potential(moved, args.pixel_size, box, dtype=torch.float64,
                                        centre=com).sum(0))
    rows = []
    for oversampling in (1, 2, 4):
        for gridding in (True, False):
            proj = FourierSliceProjector(volume, oversampling=oversampling,
                                         gridding_correction=gridding, dtype=torch.float64)
            images = proj.project_real(rotations)
            ncc = np.array([_ncc(images[i], exact[i]) for i in range(args.n)])
            rows.append({"oversampling": oversampling, "gridding_correction": gridding,
                         "mean_ncc": float(ncc.mean()), "min_ncc": float(ncc.min()),
                         "score_loss_percent": float(100 * (1 - ncc.mean()))})
    print(f"model {args.model}, box {box}, {args.pixel_size} A/px, {args.n} random poses")
    print(f"{'os':>3} {'gridding':>8} {'mean NCC':>9} {'min NCC':>8} {'score loss %':>12}")
    for r in rows:
        print(f"{r['oversampling']:>3} {str(r['gridding_correction']):>8} {r['mean_ncc']:>9.5f} "
              f"{r['min_ncc']:>8.5f} {r['score_loss_percent']:>12.3f}")
    print(json.dumps({"model": str(args.model), "box": box, "pixel_size": args.pixel_size,
                      "n": args.n, "rows": rows}))


if __name__ == "__main__":
    main()
