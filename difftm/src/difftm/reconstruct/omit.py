"""Template-bias (omit) test: does density the template lacked come back?

Poses found with a template that omits part of the structure (a chain or ligand removed
before simulating the template) are used to reconstruct; if the omitted part is real, its
density returns in the map; if the map only echoes the template (template bias, "Einstein
from noise"), the omitted region stays empty.

Regions (voxels of the map's grid, model placed with ``centre`` at voxel ``D // 2``, as
``difftm simulate template`` does):

* omitted region: voxels within ``radius`` (default 2.5 A) of an omitted atom and closer to
  an omitted atom than to any kept one;
* control regions (``n_control``, default 8): compact regions of equal voxel count inside the
  kept model's region (the ``V`` kept-region voxels nearest to a kept atom drawn with
  ``numpy.random.default_rng(seed)``): what density that the template *did* contain gives.

Statistic: the map-model correlation inside a region (mean-subtracted Pearson correlation of
the map with the full model's potential low-passed to the map's resolution, CC_mask of
Jiang & Brunger / phenix), for the omitted region ``CC_omit`` and the control regions.
Noise reference: the same statistic for ``n_random`` (default 200) phase-randomised copies of
the map (amplitudes kept, phases replaced by those of white noise drawn with the seed; beyond
no frequency are phases kept, so no structure survives), giving a null mean ``mu_0`` and
standard deviation ``sigma_0``. Reported: ``z = (CC_omit - mu_0) / sigma_0`` and the one-sided
p-value ``P(N(0,1) > z)`` (also the empirical ``(1 + #null >= CC_omit) / (1 + n_random)``);
density "returns" when ``z >= 3``. Two maps (e.g. from templates with and without the chain)
are compared by ``z_diff = (CC_a - CC_b) / sqrt(sigma_0a^2 + sigma_0b^2)``
(:func:`compare_omit`).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from difftm.io.models import Atoms

__all__ = [
    "OmitResult",
    "compare_omit",
    "concat_atoms",
    "omit_test",
    "region_masks",
    "split_atoms_by_mask",
    "split_model",
]


def split_model(path: str | Path, chain: str, keep_ligands: bool = False
                ) -> tuple[Atoms, Atoms]:
    """The atoms of a model without chain ``chain`` and of that chain alone.

    Args:
        path: PDB/mmCIF file (optionally gzip).
        chain: chain name (``auth`` chain id as in the PDB file).
        keep_ligands: keep non-polymer residues (a ligand chain needs this).

    Returns:
        ``(kept, omitted)`` :class:`Atoms` (model 1, first alternative conformer, no waters).

    Raises:
        ValueError: unknown chain (the message lists the chains), or nothing left.
    """
    from difftm.io import models

    path = Path(path)
    st, _ = models._read_structure(path)  # the reader difftm's load_model uses
    names = [c.name for c in st[0]]
    if chain not in names:
        raise ValueError(f"{path}: no chain {chain!r} (chains: {', '.join(dict.fromkeys(names))})")
    without, only = st.clone(), st.clone()
    for name in dict.fromkeys(names):
        if name == chain:
            without[0].remove_chain(name)
        else:
            only[0].remove_chain(name)
    if len(without[0]) == 0:
        raise ValueError(f"{path}: chain {chain!r} is the whole model; nothing would remain")
    kept = models._atoms_from_structure(without, path, keep_ligands)
    omitted = models._atoms_from_structure(only, path, keep_ligands)
    return kept, omitted


def concat_atoms(a: Atoms, b: Atoms) -> Atoms:
    """One :class:`Atoms` holding both sets (``a`` first)."""
    return Atoms(
        positions_angstrom=np.concatenate([a.positions_angstrom, b.positions_angstrom]),
        elements=np.concatenate([a.elements, b.elements]),
        b_factors=np.concatenate([a.b_factors, b.b_factors]),
        occupancies=np.concatenate([a.occupancies, b.occupancies]), source=a.source)


def split_atoms_by_mask(atoms: Atoms, mask: np.ndarray, centre: np.ndarray,
                        pixel_size: float) -> tuple[Atoms, Atoms]:
    """``(kept, omitted)``: atoms whose nearest voxel lies outside / inside ``mask``
    (``(D, D, D)`` bool, model ``centre`` at voxel ``D // 2``)."""
    box = mask.shape[0]
    zyx = np.rint(_voxel_coordinates(atoms, centre, pixel_size, box)).astype(np.int64)
    inside_box = np.all((zyx >= 0) & (zyx < box), axis=1)
    hit = np.zeros(len(atoms), dtype=bool)
    z, y, x = zyx[inside_box].T
    hit[inside_box] = mask[z, y, x]
    if not hit.any() or hit.all():
        raise ValueError("the omit mask must contain some but not all of the model's atoms")

    def take(sel: np.ndarray) -> Atoms:
        return Atoms(positions_angstrom=atoms.positions_angstrom[sel],
                     elements=atoms.elements[sel], b_factors=atoms.b_factors[sel],
                     occupancies=atoms.occupancies[sel], source=atoms.source)

    return take(~hit), take(hit)


def _voxel_coordinates(atoms: Atoms, centre: np.ndarray, pixel_size: float,
                       box: int) -> np.ndarray:
    """Atom positions in voxel units of the map, ``(n, 3)`` as (z, y, x)."""
    xyz = (atoms.positions_angstrom - centre) / pixel_size + box // 2
    return xyz[:, ::-1]


def region_masks(kept: Atoms, omitted: Atoms, centre: np.ndarray, pixel_size: float,
                 box: int, radius: float = 2.5, n_control: int = 8, seed: int = 0
                 ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Boolean ``(D, D, D)`` masks of the omitted region and of equal-size control regions.

    Args:
        kept, omitted: the atoms (A).
        centre: model point (A) at voxel ``D // 2`` (x, y, z).
        pixel_size: A per voxel.
        box: ``D``.
        radius: A around each atom.
        n_control: number of control regions.
        seed: picks the control regions' seed atoms.

    Returns:
        ``(omit_mask, control_masks)``.
    """
    from scipy.spatial import cKDTree

    grid = np.stack(np.meshgrid(*(np.arange(box),) * 3, indexing="ij"), -1).reshape(-1, 3)
    r_vox = radius / pixel_size
    d_kept, _ = cKDTree(_voxel_coordinates(kept, centre, pixel_size, box)).query(grid)
    d_omit, _ = cKDTree(_voxel_coordinates(omitted, centre, pixel_size, box)).query(grid)
    omit = (d_omit <= r_vox) & (d_omit < d_kept)
    kept_region = (d_kept <= r_vox) & (d_kept <= d_omit)
    size = int(omit.sum())
    if size == 0:
        raise ValueError("the omitted atoms cover no voxel of the map (check the centre and "
                         "the chain)")
    kept_idx = np.nonzero(kept_region)[0]
    controls = []
    if len(kept_idx) >= size:
        rng = np.random.default_rng(seed)
        kv = _voxel_coordinates(kept, centre, pixel_size, box)
        inside = np.all((kv >= 0) & (kv < box), axis=1)
        choices = rng.choice(np.nonzero(inside)[0], size=min(n_control, int(inside.sum())),
                             replace=False)
        for a in choices:
            dist = np.linalg.norm(grid[kept_idx] - kv[a], axis=1)
            pick = kept_idx[np.argsort(dist, kind="stable")[:size]]
            m = np.zeros(box**3, dtype=bool)
            m[pick] = True
            controls.append(m.reshape(box, box, box))
    return omit.reshape(box, box, box), controls


def _masked_cc(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    x, y = a[mask].astype(np.float64), b[mask].astype(np.float64)
    x, y = x - x.mean(), y - y.mean()
    den = math.sqrt(float((x * x).sum() * (y * y).sum()))
    return float((x * y).sum() / den) if den > 0 else 0.0


def lowpass(volume: np.ndarray, pixel_size: float, resolution: float) -> np.ndarray:
    """Sharp low-pass of a cubic volume at ``resolution`` A (``|k| <= 1 / resolution``)."""
    v = torch.as_tensor(np.asarray(volume), dtype=torch.float64)
    d = v.shape[0]
    k = torch.fft.fftfreq(d, d=pixel_size, dtype=torch.float64)
    kx = torch.fft.rfftfreq(d, d=pixel_size, dtype=torch.float64)
    r = torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)
    spec = torch.fft.rfftn(v)
    return torch.fft.irfftn(torch.where(r <= 1.0 / resolution, spec, 0), s=v.shape).numpy()


def phase_randomised(volume: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The volume with its Fourier amplitudes and random (Hermitian) phases."""
    v = torch.as_tensor(np.asarray(volume), dtype=torch.float64)
    noise = torch.as_tensor(rng.standard_normal(v.shape))
    spec, ns = torch.fft.rfftn(v), torch.fft.rfftn(noise)
    phase = ns / ns.abs().clamp_min(1e-300)
    return torch.fft.irfftn(spec.abs() * phase, s=v.shape).numpy()


@dataclass
class OmitResult:
    """Outcome of the omit test on one map (module docstring)."""

    cc_omit: float
    cc_control: list[float]
    null_mean: float
    null_sd: float
    z: float
    p_normal: float
    p_empirical: float
    region_voxels: int
    n_random: int
    resolution: float

    @property
    def returns(self) -> bool:
        """True when the omitted density is significant (z >= 3)."""
        return self.z >= 3.0

    def as_dict(self) -> dict:
        """JSON-serialisable fields plus ``returns``."""
        return {**asdict(self), "returns": self.returns}


def omit_test(volume: np.ndarray, model_map: np.ndarray, omit_mask: np.ndarray,
              control_masks: list[np.ndarray], pixel_size: float, resolution: float,
              n_random: int = 200, seed: int = 0) -> tuple[OmitResult, np.ndarray]:
    """Map-model correlation in the omitted region against controls and phase-randomised maps.

    Args:
        volume: the reconstruction ``(D, D, D)``.
        model_map: the full model's potential on the same grid.
        omit_mask, control_masks: from :func:`region_masks`.
        pixel_size: A per voxel.
        resolution: the map's resolution (A); the model map is low-passed to it.
        n_random: phase-randomised maps in the noise reference.
        seed: of the phase randomisation.

    Returns:
        ``(OmitResult, null)``: the result and the ``(n_random,)`` null correlations.
    """
    from scipy.stats import norm

    if n_random < 10:
        raise ValueError(f"the noise reference needs >= 10 phase-randomised maps, got {n_random}")
    ref = lowpass(model_map, pixel_size, resolution)
    cc = _masked_cc(volume, ref, omit_mask)
    controls = [_masked_cc(volume, ref, m) for m in control_masks]
    rng = np.random.default_rng(seed)
    null = np.array([_masked_cc(phase_randomised(volume, rng), ref, omit_mask)
                     for _ in range(n_random)])
    mu, sd = float(null.mean()), float(null.std(ddof=1))
    z = (cc - mu) / sd if sd > 0 else float("inf")
    res = OmitResult(
        cc_omit=cc, cc_control=controls, null_mean=mu, null_sd=sd, z=float(z),
        p_normal=float(norm.sf(z)), p_empirical=float((1 + (null >= cc).sum()) / (1 + n_random)),
        region_voxels=int(omit_mask.sum()), n_random=int(n_random), resolution=float(resolution))
    return res, null


def compare_omit(a: OmitResult, b: OmitResult) -> dict:
    """``z_diff = (CC_a - CC_b) / sqrt(sd_a^2 + sd_b^2)`` and its one-sided p-value."""
    from scipy.stats import norm

    sd = math.sqrt(a.null_sd**2 + b.null_sd**2)
    z = (a.cc_omit - b.cc_omit) / sd if sd > 0 else float("inf")
    return {"cc_a": a.cc_omit, "cc_b": b.cc_omit, "z_diff": float(z),
            "p_one_sided": float(norm.sf(z))}
