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
"""

from __future__ import annotations

import math

import torch

from difftm.geometry.symmetry import in_asymmetric_unit, parse_symmetry

__all__ = ["sphere_directions", "orientation_grid", "grid_size", "viewing_direction"]


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
    _check_steps(out_of_plane_step, in_plane_step)
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
    _check_steps(out_of_plane_step, in_plane_step)
    rt = sphere_directions(out_of_plane_step, symmetry)
    n_psi = _n_psi(in_plane_step)
    psi = torch.arange(n_psi, dtype=torch.float64) * (360.0 / n_psi)
    m = rt.shape[0]
    return torch.cat(
        [rt.repeat_interleave(n_psi, dim=0), psi.repeat(m).unsqueeze(-1)], dim=-1
    )
