"""3D templates for 2D template matching: potential of an atomic model, exposure-weighted and
filtered by the detector MTF.

The template is the electrostatic potential (Volts, mean per voxel) of the model, centred on
its centre of mass at voxel ``box//2``, multiplied in 3D Fourier space by radial filters:

* the average exposure (radiation-damage) attenuation over a total fluence
  (:func:`difftm.physics.dose.dose_filter`), when ``fluence`` is given;
* the detector MTF (:mod:`difftm.physics.mtf`) at the template's pixel size, when ``mtf`` is
  given.

Radial filters commute with projection (a central slice of a radial 3D filter is the same
radial 2D filter), so filtering the volume once equals filtering every projection.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from difftm.fourier.frequencies import radial_frequency_3d
from difftm.io.models import Atoms, centre_of_mass, load_model
from difftm.physics.dose import dose_filter
from difftm.physics.mtf import DetectorMtf, get_mtf, mtf_at_frequencies
from difftm.physics.potential import simulate_potential


def suggest_box(atoms: Atoms, pixel_size: float, margin: float = 0.15) -> int:
    """Smallest even box (voxels) holding the model with a relative ``margin`` on each side.

    The box spans ``2 * max|r - centre of mass| * (1 + margin)`` plus two voxels, rounded up
    to an even number.
    """
    if pixel_size <= 0:
        raise ValueError(f"pixel size must be positive (A), got {pixel_size}")
    radius = float(np.abs(atoms.positions_angstrom - centre_of_mass(atoms)).max())
    n = math.ceil(2 * radius * (1 + margin) / pixel_size) + 2
    return n + (n % 2)


def template_filter(
    box: int,
    pixel_size: float,
    fluence: float | None = None,
    mtf: DetectorMtf | str | Path | None = None,
    voltage_kv: float = 300.0,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | None:
    """The product of the exposure and MTF filters on the ``rfftn`` grid of a cubic volume.

    Returns:
        ``(box, box, box//2+1)`` real tensor, or ``None`` when there is nothing to apply.
    """
    curve = get_mtf(mtf)
    if fluence is None and curve is None:
        return None
    k = radial_frequency_3d((box, box, box), pixel_size, rfft=True, device=device,
                            dtype=torch.float64)
    filt = torch.ones_like(k)
    if fluence is not None:
        filt = filt * dose_filter(k, fluence, voltage_kv=voltage_kv)
    if curve is not None:
        filt = filt * mtf_at_frequencies(curve, k, pixel_size)
    return filt.to(dtype)


def simulate_template(
    model: Atoms | str | Path,
    pixel_size: float,
    box: int | None,
    b_factor_scale: float = 1.0,
    fluence: float | None = None,
    mtf: DetectorMtf | str | Path | None = None,
    device: torch.device | str | None = None,
    *,
    b_factor_add: float = 0.0,
    voltage_kv: float = 300.0,
    keep_ligands: bool = False,
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Simulate a 3D template from an atomic model.

    Args:
        model: :class:`~difftm.io.models.Atoms` or a PDB/mmCIF path (optionally gzip).
        pixel_size: voxel size in A.
        box: edge of the cubic volume in voxels; ``None`` picks :func:`suggest_box`.
        b_factor_scale: multiplies the atoms' B-factors.
        fluence: total exposure in e-/A^2 for exposure weighting; ``None`` for none.
        mtf: detector MTF: ``None``/"none", "k3", "falcon4", "ideal", a file path, or a curve.
        device: torch device for the computation and the result.
        b_factor_add: added to the scaled B-factors (A^2).
        voltage_kv: accelerating voltage (200 or 300 kV) for exposure weighting.
        keep_ligands: when ``model`` is a path, keep ligands (waters are never kept).
        dtype: of the result.
        progress: ``progress(atoms_done, atoms_total)`` callback.

    Returns:
        ``(box, box, box)`` volume ``[z, y, x]`` in Volts, centre of mass at voxel ``box//2``.
    """
    atoms = model if isinstance(model, Atoms) else load_model(model, keep_ligands=keep_ligands)
    if box is None:
        box = suggest_box(atoms, pixel_size)
    # validate the cheap filter parameters before the expensive simulation
    curve = get_mtf(mtf)
    if fluence is not None:
        dose_filter(torch.zeros(1), fluence, voltage_kv=voltage_kv)
    volume = simulate_potential(
        atoms, pixel_size, box, b_factor_scale=b_factor_scale, b_factor_add=b_factor_add,
        device=device, dtype=dtype, progress=progress,
    )
    filt = template_filter(box, pixel_size, fluence, curve, voltage_kv, volume.device, dtype)
    if filt is None:
        return volume
    spectrum = torch.fft.rfftn(volume)
    spectrum *= filt
    return torch.fft.irfftn(spectrum, s=volume.shape)
