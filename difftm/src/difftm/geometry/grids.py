"""Near-uniform SO(3) orientation grids for exhaustive searches (Hopf-fibration style).

SO(3) is sampled as (viewing direction on the sphere) x (in-plane angle psi): directions on
latitude rings ``tilt = i * dt`` (``dt`` = 180 / round(180 / step)) carrying
``round(360 sin(tilt) / dt)`` equally spaced ``rot`` values starting half a spacing after 0
(one point, rot = 0, at each pole), so that every direction covers about ``step^2``
steradians (``4 pi / step^2`` directions in all: 6,600 for 2.5 degrees); each direction is
combined with ``psi = j * 360 / round(360 / in_plane_step)``. A latitude-ring scheme like
cisTEM's (whose 2.5/1.5 degree C1 search has 1,584,480 orientations; this one 1,584,000).
With symmetry, only directions in one asymmetric unit
(:func:`difftm.geometry.symmetry.in_asymmetric_unit`) are kept, about ``1/|G|`` of them.

Order: directions by increasing tilt, then increasing rot; psi varies fastest.

Construction in detail (the numbers a comparison with another program needs):

* ``n_rings = round(180 / out_of_plane_step)`` and ``dt = 180 / n_rings``: ring ``i`` sits at
  ``tilt = i * dt`` for ``i = 0 .. n_rings`` (both poles included).
* ring ``i`` carries ``n_rot = max(1, round(360 sin(tilt) / dt))`` directions at
  ``rot = (j + 1/2) * 360 / n_rot``, ``j = 0 .. n_rot - 1``: the half-step start keeps every
  ring off the ``rot = 0`` meridian, a boundary of the Cn/Dn asymmetric units; a ring of one
  point (the poles) has ``rot = 0``.
* ``n_psi = round(360 / in_plane_step)`` in-plane angles ``psi = k * 360 / n_psi`` (starting
  at 0), for every direction.

An explicit list of orientations (a peer's grid, a previous run's, a refinement's) can
replace the grid: :func:`read_orientations` reads ``rot tilt psi`` in degrees from a text or
CSV file or a RELION STAR file (``rlnAngleRot``, ``rlnAngleTilt``, ``rlnAnglePsi``), and
:func:`write_orientations` writes the text form exactly (shortest round-trip decimals), so
searching a written grid reproduces the grid search bit for bit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from difftm.geometry.symmetry import in_asymmetric_unit, parse_symmetry

__all__ = ["sphere_directions", "orientation_grid", "grid_size", "viewing_direction",
           "read_orientations", "write_orientations"]

_STAR_LABELS = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")


#: Largest grid built (about 1.2 GB of float64 angles); finer steps are refused up front.
MAX_ORIENTATIONS = 50_000_000


def check_grid_bound(out_of_plane_step: float, in_plane_step: float,
                     limit: int = MAX_ORIENTATIONS) -> None:
    """Refuse steps whose C1 grid would exceed ``limit`` orientations, before building it.

    The estimate is the full sphere (41,253 square degrees) over ``out_of_plane_step^2``
    times ``360 / in_plane_step``; symmetry can only shrink the grid.
    """
    _check_steps(out_of_plane_step, in_plane_step)
    estimate = (41253.0 / out_of_plane_step**2 + 2) * max(1.0, 360.0 / in_plane_step)
    if estimate > limit:
        raise ValueError(
            f"out-of-plane step {out_of_plane_step:g} and in-plane step {in_plane_step:g} "
            f"degrees give about {estimate:.3g} orientations, more than {limit:,}; use "
            "larger steps")


def _check_steps(out_of_plane_step: float, in_plane_step: float) -> None:
    for name, v in (("out_of_plane_step", out_of_plane_step), ("in_plane_step", in_plane_step)):
        if not (isinstance(v, int | float) and math.isfinite(v) and 0 < v <= 180):
            raise ValueError(f"{name} must be a number of degrees in (0, 180], got {v!r}")


def viewing_direction(rot_deg: torch.Tensor, tilt_deg: torch.Tensor) -> torch.Tensor:
    """Unit viewing direction ``A^T e_z`` (volume frame) for rot/tilt in degrees -> ``(..., 3)``."""
    r, t = torch.deg2rad(rot_deg), torch.deg2rad(tilt_deg)
    return torch.stack([torch.sin(t) * torch.cos(r), torch.sin(t) * torch.sin(r), torch.cos(t)], -1)


def sphere_directions(out_of_plane_step: float, symmetry: str = "C1") -> torch.Tensor:
    """Viewing directions of the grid as ``(M, 2)`` float64 ``(rot, tilt)`` in degrees.

    Args:
        out_of_plane_step: angular spacing in degrees between neighbouring directions.
        symmetry: point group; only directions in its asymmetric unit are returned.
    """
    _check_steps(out_of_plane_step, 1.0)
    parse_symmetry(symmetry)
    n_rings = max(1, round(180.0 / out_of_plane_step))
    dt = 180.0 / n_rings
    rots, tilts = [], []
    for i in range(n_rings + 1):
        tilt = i * dt
        n_rot = max(1, round(360.0 * math.sin(math.radians(tilt)) / dt))
        # Half-spacing offset: no ring starts on the rot = 0 meridian, which is a boundary of
        # the Cn/Dn asymmetric units (a point there would bias their counts upwards).
        offset = 0.5 if n_rot > 1 else 0.0
        rot = (torch.arange(n_rot, dtype=torch.float64) + offset) * (360.0 / n_rot)
        rots.append(rot)
        tilts.append(torch.full((n_rot,), tilt, dtype=torch.float64))
    rt = torch.stack([torch.cat(rots), torch.cat(tilts)], -1)
    keep = in_asymmetric_unit(viewing_direction(rt[:, 0], rt[:, 1]), symmetry)
    return rt[keep]


def _n_psi(in_plane_step: float) -> int:
    return max(1, round(360.0 / in_plane_step))


def grid_size(out_of_plane_step: float, in_plane_step: float, symmetry: str = "C1") -> int:
    """Number of orientations :func:`orientation_grid` returns (without building it)."""
    check_grid_bound(out_of_plane_step, in_plane_step)
    return sphere_directions(out_of_plane_step, symmetry).shape[0] * _n_psi(in_plane_step)


def orientation_grid(
    out_of_plane_step: float, in_plane_step: float, symmetry: str = "C1"
) -> torch.Tensor:
    """Near-uniform grid of orientations over SO(3) (or its asymmetric unit).

    Args:
        out_of_plane_step: spacing of viewing directions in degrees (e.g. 2.5).
        in_plane_step: spacing of psi in degrees (e.g. 1.5).
        symmetry: point group symbol (``C1``, ``C4``, ``D2``, ``T``, ``O``, ``I``...).

    Returns:
        ``(N, 3)`` float64 ``(rot, tilt, psi)`` in degrees, RELION convention; rot and psi in
        [0, 360), tilt in [0, 180]; deterministic order (module docstring). C1 at 2.5/1.5
        degrees gives 6,600 directions x 240 psi = 1,584,000 orientations.
    """
    check_grid_bound(out_of_plane_step, in_plane_step)
    rt = sphere_directions(out_of_plane_step, symmetry)
    n_psi = _n_psi(in_plane_step)
    psi = torch.arange(n_psi, dtype=torch.float64) * (360.0 / n_psi)
    m = rt.shape[0]
    return torch.cat(
        [rt.repeat_interleave(n_psi, dim=0), psi.repeat(m).unsqueeze(-1)], dim=-1
    )


def _read_star_orientations(path: Path) -> torch.Tensor:
    import pandas as pd

    from difftm.io.star import read_star_blocks

    tables = [t for t in read_star_blocks(path).values() if isinstance(t, pd.DataFrame)]
    tables = [t for t in tables if set(_STAR_LABELS) <= set(t.columns)]
    if not tables:
        raise ValueError(f"{path}: no table with {', '.join(_STAR_LABELS)} columns")
    table = tables[0]
    try:
        values = table[list(_STAR_LABELS)].to_numpy(dtype="float64")
    except (TypeError, ValueError):
        raise ValueError(f"{path}: Euler angle columns are not all numbers") from None
    return torch.as_tensor(values, dtype=torch.float64).reshape(-1, 3)


def _read_text_orientations(path: Path) -> torch.Tensor:
    rows: list[tuple[float, float, float]] = []
    header_allowed = True
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.split("#", 1)[0].strip()
            if not text:
                continue
            fields = text.replace(",", " ").replace(";", " ").split()
            try:
                values = [float(f) for f in fields]
            except ValueError:
                if header_allowed:  # one column-name line, e.g. "rot,tilt,psi"
                    header_allowed = False
                    continue
                raise ValueError(
                    f"{path}: line {number} is not three numbers rot tilt psi: {text[:60]!r}"
                ) from None
            header_allowed = False
            if len(values) != 3:
                raise ValueError(
                    f"{path}: line {number} has {len(values)} numbers, expected rot tilt psi")
            rows.append((values[0], values[1], values[2]))
    return torch.tensor(rows, dtype=torch.float64).reshape(-1, 3)


def read_orientations(path: str | os.PathLike) -> torch.Tensor:
    """Read an explicit list of orientations.

    Args:
        path: a text or CSV file with one orientation per line, ``rot tilt psi`` in degrees
            (RELION ZYZ; separated by spaces, tabs, commas or semicolons; ``#`` starts a
            comment; one line of column names is allowed), or a STAR file (suffix ``.star``
            or starting with ``data_``) with ``rlnAngleRot``, ``rlnAngleTilt`` and
            ``rlnAnglePsi`` columns (the first table that has them).

    Returns:
        ``(N, 3)`` float64 ``(rot, tilt, psi)`` in degrees, in file order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable, empty, or non-finite angles (one line naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: orientation file not found")
    with open(path, "rb") as fh:
        head = fh.read(4096).decode("utf-8", errors="replace")
    first = next((ln.strip() for ln in head.splitlines()
                  if ln.strip() and not ln.lstrip().startswith("#")), "")
    if path.suffix.lower() == ".star" or first.startswith("data_"):
        angles = _read_star_orientations(path)
    else:
        angles = _read_text_orientations(path)
    if angles.shape[0] == 0:
        raise ValueError(f"{path}: no orientations in the file")
    if not torch.isfinite(angles).all():
        raise ValueError(f"{path}: orientations contain NaN or infinite angles")
    return angles


def write_orientations(path: str | os.PathLike, angles: torch.Tensor,
                       overwrite: bool = False) -> Path:
    """Write orientations as text, one ``rot tilt psi`` line each (exact decimals), atomically.

    Args:
        path: output file.
        angles: ``(N, 3)`` degrees.
        overwrite: replace an existing file.

    Returns:
        The path written.
    """
    from difftm.io.atomic import atomic_output

    arr = torch.as_tensor(angles, dtype=torch.float64).reshape(-1, 3).tolist()
    lines = ["# rot tilt psi (degrees, RELION ZYZ)"]
    lines += [f"{r!r} {t!r} {p!r}" for r, t, p in arr]
    with atomic_output(path, overwrite=overwrite) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")
    return Path(path)
