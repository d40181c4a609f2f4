"""3D templates for 2D template matching: potential of an atomic model, exposure-weighted and
filtered by the detector MTF.

The template is the electrostatic potential (Volts, mean per voxel) of the model with a chosen
model point at voxel ``box//2`` (:func:`resolve_centre`: the centre of mass by default, the
model's own frame for models aligned to a map, or any point), multiplied in 3D Fourier space
by radial filters:

* the average exposure (radiation-damage) attenuation over a total fluence
  (:func:`difftm.physics.dose.dose_filter`), when ``fluence`` is given;
* the detector MTF (:mod:`difftm.physics.mtf`) at the template's pixel size, when ``mtf`` is
  given.

Radial filters commute with projection (a central slice of a radial 3D filter is the same
radial 2D filter), so filtering the volume once equals filtering every projection.

Template frame: a search reports particle positions at the template's centre voxel
``box//2``, so the model point placed there is what a particle coordinate refers to.
:func:`write_template` records it in the MRC header as the origin (the model coordinate of
voxel 0, ``centre - box//2 * pixel_size``, the convention ChimeraX and most programs read,
so the template opens on top of the model) and in a header label; :func:`read_template_centre`
reads it back.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from difftm.fourier.frequencies import radial_frequency_3d
from difftm.io.models import Atoms, centre_of_mass, load_model
from difftm.physics.dose import dose_filter
from difftm.physics.mtf import DetectorMtf, get_mtf, mtf_at_frequencies
from difftm.physics.potential import simulate_potential

#: Header label prefix with which :func:`write_template` records the template centre.
CENTRE_LABEL = "difftm centre"


def parse_centre(text: str) -> str | tuple[float, float, float]:
    """Parse a ``--center`` value: ``com``, ``box`` or ``X,Y,Z`` (Angstrom, model frame).

    Raises:
        ValueError: anything else (one line).
    """
    value = text.strip().lower()
    if value in ("com", "box"):
        return value
    parts = value.replace(";", ",").split(",")
    try:
        xyz = tuple(float(p) for p in parts)
    except ValueError:
        xyz = ()
    if len(xyz) != 3 or not all(math.isfinite(v) for v in xyz):
        raise ValueError(f"--center must be com, box or X,Y,Z in Angstrom, got {text!r}")
    return xyz  # type: ignore[return-value]


def resolve_centre(
    atoms: Atoms,
    centre: str | Sequence[float] | None,
    pixel_size: float,
    box: int | None,
) -> np.ndarray:
    """The model point ``[x, y, z]`` (A) that goes to the template's centre voxel ``box//2``.

    Args:
        atoms: the model.
        centre: ``"com"``/None (centre of mass), ``"box"`` (keep the model's frame: model
            coordinate 0 at voxel 0, as for a model fitted into a map of this box and pixel
            size; needs ``box``) or three coordinates in A.
        pixel_size: voxel size, A.
        box: edge of the volume in voxels (None only for ``com`` and explicit points).

    Raises:
        ValueError: ``box`` mode without a box, or a malformed centre.
    """
    if centre is None or (isinstance(centre, str) and centre.lower() == "com"):
        return centre_of_mass(atoms)
    if isinstance(centre, str):
        if centre.lower() != "box":
            parsed = parse_centre(centre)
            return resolve_centre(atoms, parsed, pixel_size, box)
        if box is None:
            raise ValueError("--center box keeps the model's frame (model origin at voxel 0): "
                             "give --box, the box of the map the model is fitted into")
        voxels = atoms.positions_angstrom / float(pixel_size)  # model frame: voxel = r / px
        lo, hi = voxels.min(axis=0), voxels.max(axis=0)
        if lo.min() < -0.5 or hi.max() > box - 0.5:
            raise ValueError(
                f"--center box: the model spans voxels {np.floor(lo).astype(int).tolist()} to "
                f"{np.ceil(hi).astype(int).tolist()} (x, y, z) in its own frame, outside a box "
                f"of {box} at {pixel_size:g} A; give the --box and --pixel-size of the map it "
                "is fitted into, or use --center com")
        return np.full(3, (box // 2) * float(pixel_size))
    xyz = np.asarray(centre, dtype=np.float64).reshape(-1)
    if xyz.shape != (3,) or not np.all(np.isfinite(xyz)):
        raise ValueError(f"the template centre must be three finite coordinates, got {centre!r}")
    return xyz


def suggest_box(atoms: Atoms, pixel_size: float, margin: float = 0.15,
                centre: Sequence[float] | None = None) -> int:
    """Smallest even box (voxels) holding the model with a relative ``margin`` on each side.

    The box spans ``2 * max|r - centre| * (1 + margin)`` plus two voxels, rounded up to an
    even number; ``centre`` (A) defaults to the centre of mass.
    """
    if pixel_size <= 0:
        raise ValueError(f"pixel size must be positive (A), got {pixel_size}")
    c = centre_of_mass(atoms) if centre is None else np.asarray(centre, dtype=np.float64)
    radius = float(np.abs(atoms.positions_angstrom - c).max())
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
    centre: str | Sequence[float] | None = None,
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
        centre: model point placed at voxel ``box//2``: ``"com"``/None (centre of mass),
            ``"box"`` (the model's own frame) or ``[x, y, z]`` in A (:func:`resolve_centre`).

    Returns:
        ``(box, box, box)`` volume ``[z, y, x]`` in Volts, ``centre`` at voxel ``box//2``.
    """
    atoms = model if isinstance(model, Atoms) else load_model(model, keep_ligands=keep_ligands)
    point = resolve_centre(atoms, centre, pixel_size, box)
    if box is None:
        box = suggest_box(atoms, pixel_size, centre=point)
    # validate the cheap filter parameters before the expensive simulation
    curve = get_mtf(mtf)
    if fluence is not None:
        dose_filter(torch.zeros(1), fluence, voltage_kv=voltage_kv)
    volume = simulate_potential(
        atoms, pixel_size, box, b_factor_scale=b_factor_scale, b_factor_add=b_factor_add,
        device=device, dtype=dtype, progress=progress, centre=point,
    )
    filt = template_filter(box, pixel_size, fluence, curve, voltage_kv, volume.device, dtype)
    if filt is None:
        return volume
    spectrum = torch.fft.rfftn(volume)
    spectrum *= filt
    return torch.fft.irfftn(spectrum, s=volume.shape)


def write_template(
    path: str | Path,
    volume,
    pixel_size: float,
    centre: Sequence[float],
    overwrite: bool = False,
    note: str = "",
) -> Path:
    """Write a template MRC that records its centre (atomically).

    The header origin is the model coordinate of voxel 0, ``centre - box//2 * pixel_size``
    (A, x y z), and a label reads ``difftm centre X Y Z A at voxel N`` (plus ``note``).

    Args:
        path: output file.
        volume: ``(D, D, D)`` volume.
        pixel_size: voxel size, A.
        centre: model point ``[x, y, z]`` (A) at voxel ``D//2``.
        overwrite: replace an existing file.
        note: appended to the label (e.g. ``com``).

    Returns:
        The path written.
    """
    import mrcfile

    from difftm.io.atomic import atomic_output
    from difftm.io.mrc import write_mrc

    box = int(volume.shape[0])
    c = np.asarray(centre, dtype=np.float64).reshape(3)
    origin = c - (box // 2) * float(pixel_size)
    with atomic_output(path, overwrite=overwrite) as tmp:
        write_mrc(tmp, volume, pixel_size, overwrite=True)
        with mrcfile.open(tmp, mode="r+") as mrc:
            mrc.header.origin = tuple(float(v) for v in origin)
            label = f"{CENTRE_LABEL} {c[0]:.3f} {c[1]:.3f} {c[2]:.3f} A at voxel {box // 2}"
            mrc.add_label((label + (f" ({note})" if note else ""))[:80])
    return Path(path)


def read_template_centre(path: str | Path) -> np.ndarray:
    """The model point ``[x, y, z]`` (A) at the centre voxel of a template, from its header
    origin (``origin + box//2 * pixel_size``; see :func:`write_template`)."""
    import mrcfile

    with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
        h = mrc.header
        origin = np.array([float(h.origin.x), float(h.origin.y), float(h.origin.z)])
        box = int(h.nx)
        px = float(mrc.voxel_size.x)
    return origin + (box // 2) * px


def template_centre_label(path: str | Path) -> str | None:
    """The ``difftm centre ...`` label of a template written by :func:`write_template`, or
    None when the file has none."""
    import mrcfile

    with mrcfile.open(path, mode="r", permissive=True, header_only=True) as mrc:
        h = mrc.header
        for raw in h.label[: int(h.nlabl)]:
            text = bytes(raw).decode("ascii", errors="replace").strip()
            if text.startswith(CENTRE_LABEL):
                return text
    return None


def recorded_template_centre(path: str | Path) -> list[float] | None:
    """The centre recorded by :func:`write_template` (``[x, y, z]`` in A), or None when the
    template was not written by difftm (no centre label)."""
    if template_centre_label(path) is None:
        return None
    return [float(v) for v in read_template_centre(path)]
