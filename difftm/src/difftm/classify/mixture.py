"""Template pairs that differ by a chain or a domain, and planted mixtures to validate them.

:func:`write_model_without` deletes chains or residue ranges from an atomic model with
gemmi and writes the rest as mmCIF (so states of one complex share the model frame: a
template made from each with the same centre puts every state's atoms where the full
model has them). :func:`simulate_mixture` plants particles of several atomic models in one
micrograph with the same image formation as :func:`difftm.simulate.micrograph.simulate_micrograph`
(exact atom projections with the displaced solvent, per-particle CTF in a box padded by the
CTF delocalisation, Poisson counts), each particle drawn from the model of its class.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import gemmi
import numpy as np
import pandas as pd
import torch

from difftm.fourier.padding import next_fast_size
from difftm.geometry.euler import euler_to_matrix
from difftm.io.models import Atoms
from difftm.physics.ctf import ctf_2d, delocalisation_distance
from difftm.physics.electron import interaction_constant
from difftm.physics.potential import WATER_POTENTIAL_V, projected_potential
from difftm.simulate.micrograph import SimulatedMicrograph, random_orientations


def write_model_without(source: str | Path, output: str | Path,
                        chains: Sequence[str] = (),
                        residues: Sequence[tuple[str, int, int]] = (),
                        overwrite: bool = False) -> Path:
    """Write ``source`` without some chains and residue ranges (mmCIF, atomically).

    Args:
        source: PDB/mmCIF model (optionally gzip).
        output: the mmCIF file to write.
        chains: chain names to delete.
        residues: ``(chain, first, last)`` residue-number ranges (inclusive) to delete.
        overwrite: replace an existing ``output``.

    Returns:
        ``output``.

    Raises:
        ValueError: a named chain is not in model 1, a range deletes nothing, or nothing
            is left.
    """
    from difftm.io.atomic import atomic_output

    st = gemmi.read_structure(str(source))
    st.setup_entities()
    model = st[0]
    names = [ch.name for ch in model]
    for name in chains:
        if name not in names:
            raise ValueError(f"{source}: no chain {name!r} in model 1 (chains: "
                             f"{', '.join(dict.fromkeys(names))})")
        while name in [ch.name for ch in model]:
            model.remove_chain(name)
    for chain_name, first, last in residues:
        removed = 0
        for ch in model:
            if ch.name != chain_name:
                continue
            for i in reversed(range(len(ch))):
                if first <= ch[i].seqid.num <= last:
                    del ch[i]
                    removed += 1
        if removed == 0:
            raise ValueError(f"{source}: no residues {first}-{last} in chain {chain_name!r}")
    if model.count_atom_sites() == 0:
        raise ValueError(f"{source}: nothing left after the deletions")
    doc = st.make_mmcif_document()
    with atomic_output(output, overwrite=overwrite) as tmp:
        doc.write_file(str(tmp))
    return Path(output)


def _lattice_centres(n: int, shape: tuple[int, int], box: int, separation: float,
                     rng: np.random.Generator) -> np.ndarray:
    """``n`` integer centres (x, y) on a jittered square lattice, pairwise >= separation
    apart and with the whole box inside the image, in a random order."""
    h, w = shape
    spacing = int(math.ceil(separation)) + 2
    jitter = 1
    xs = np.arange(box // 2 + jitter, w - box + box // 2 - jitter + 1, spacing)
    ys = np.arange(box // 2 + jitter, h - box + box // 2 - jitter + 1, spacing)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    if n > len(grid):
        raise ValueError(f"{n} particles {spacing} px apart do not fit in a {h} x {w} image "
                         f"(at most {len(grid)}); use a larger image or fewer particles")
    pick = rng.permutation(len(grid))[:n]
    return grid[pick] + rng.integers(-jitter, jitter + 1, (n, 2))


def simulate_mixture(
    models: Sequence[Atoms],
    classes: np.ndarray,
    pixel_size: float,
    shape: tuple[int, int],
    box: int,
    defocus: float,
    centre: np.ndarray,
    fluence: float = 40.0,
    defocus_spread: float = 0.0,
    separation: float | None = None,
    voltage_kv: float = 300.0,
    cs_mm: float = 2.7,
    amplitude_contrast: float = 0.07,
    seed: int = 0,
    solvent_potential: float = WATER_POTENTIAL_V,
) -> SimulatedMicrograph:
    """A micrograph holding one particle per entry of ``classes``, particle ``i`` projected
    from ``models[classes[i]]`` (module docstring).

    Args:
        models: atomic models of the states, in one model frame.
        classes: (n,) 0-based class of each particle.
        pixel_size: A per pixel.
        shape: micrograph (H, W).
        box: edge (px) of the box each particle is projected into (the templates' box).
        defocus: mean defocus, A.
        centre: model point (A) at each particle's centre (the templates' centre).
        fluence: e-/A^2.
        defocus_spread: standard deviation of per-particle defocus offsets, A.
        separation: minimum distance between centres, px (default: ``box``).
        voltage_kv, cs_mm, amplitude_contrast: microscope.
        seed: random seed (positions, orientations, defocus, counts).
        solvent_potential: mean inner potential of the displaced solvent, V.

    Returns:
        :class:`SimulatedMicrograph` whose truth has a ``class`` column (0-based).
    """
    classes = np.asarray(classes, dtype=int)
    if classes.ndim != 1 or (len(classes) and (classes.min() < 0
                                               or classes.max() >= len(models))):
        raise ValueError(f"classes must be 0..{len(models) - 1}")
    if not (math.isfinite(fluence) and fluence > 0):
        raise ValueError(f"fluence must be positive, got {fluence}")
    n = len(classes)
    h, w = (int(v) for v in shape)
    rng = np.random.default_rng(seed)
    centres = _lattice_centres(n, (h, w), box, float(separation or box), rng)
    angles = random_orientations(n, rng)
    df = defocus + (rng.normal(0.0, defocus_spread, n) if defocus_spread > 0 else np.zeros(n))
    truth = pd.DataFrame({"x": centres[:, 0], "y": centres[:, 1], "rot": angles[:, 0],
                          "tilt": angles[:, 1], "psi": angles[:, 2], "defocus_u": df,
                          "defocus_v": df, "defocus_angle": np.zeros(n), "class": classes})
    sigma_e = interaction_constant(voltage_kv)
    max_df = float(np.abs(df).max()) if n else float(defocus)
    deloc = int(math.ceil(delocalisation_distance(max_df, voltage_kv, cs_mm,
                                                  0.5 / pixel_size) / pixel_size))
    padded = next_fast_size(max(2 * box, box + 2 * deloc))
    lo = padded // 2 - box // 2
    rotations = euler_to_matrix(torch.from_numpy(angles)).to(torch.float32)
    contrast = torch.zeros((h, w), dtype=torch.float32)
    for i in range(n):
        proj = projected_potential(models[classes[i]], pixel_size, box, rotations[i],
                                   centre=np.asarray(centre, dtype=np.float64),
                                   solvent_potential=solvent_potential).to(torch.float32)
        boxed = torch.zeros((padded, padded), dtype=torch.float32)
        boxed[lo : lo + box, lo : lo + box] = proj * sigma_e
        ctf = ctf_2d((padded, padded), pixel_size, float(df[i]), float(df[i]), 0.0,
                     voltage_kv, cs_mm, amplitude_contrast)
        particle = 2.0 * torch.fft.irfft2(torch.fft.rfft2(boxed) * ctf, s=(padded, padded))
        y0, x0 = int(centres[i, 1]) - padded // 2, int(centres[i, 0]) - padded // 2
        iy0, ix0 = max(y0, 0), max(x0, 0)
        iy1, ix1 = min(y0 + padded, h), min(x0 + padded, w)
        contrast[iy0:iy1, ix0:ix1] += particle[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
    mean_counts = fluence * pixel_size**2
    expected = mean_counts * (1.0 + contrast)
    gen = torch.Generator().manual_seed(int(seed))
    image = torch.poisson(expected.clamp_min(0.0), generator=gen).numpy().astype(np.float32)
    params = {"pixel_size": float(pixel_size), "shape": [h, w], "n_particles": n,
              "defocus": float(defocus), "defocus_spread": float(defocus_spread),
              "fluence": float(fluence), "mean_counts": float(mean_counts),
              "template_box": int(box), "padded_box": int(padded), "seed": int(seed),
              "classes": np.bincount(classes, minlength=len(models)).tolist(),
              "model": "mixture: exact atom projections per class, per-particle CTF, Poisson"}
    return SimulatedMicrograph(image=image, truth=truth, params=params,
                               noiseless=expected.numpy().astype(np.float32))
