"""Point-group symmetry: rotation matrices and asymmetric units of viewing directions.

Axis conventions follow the 3DEM standard of Heymann, Chagoyen & Belnap (2005, J. Struct. Biol.
151:196): ``Cn`` n-fold along z; ``Dn`` n-fold along z and a 2-fold along x; ``T`` 2-folds along
x, y, z (3-folds along the cube diagonals); ``O`` 4-folds along x, y, z; ``I`` 2-folds along
x, y, z with the front-most 5-fold axes in the yz plane (the crystallographic orientation;
RELION's ``I2``). Note RELION's own ``T`` puts a 3-fold on z; rotate the map to this
convention first if needed.

A volume with symmetry group ``G`` satisfies ``V(S r) = V(r)`` for ``S`` in ``G``, so the
projection matrices ``A`` and ``A S`` (RELION convention, see :mod:`difftm.geometry.euler`) give
the same image, and the viewing direction ``d = A^T e_z`` maps to ``S^T d``. A search therefore
needs viewing directions from one asymmetric unit of the sphere only (all in-plane angles
kept). We use the Dirichlet (Voronoi) cell of a reference direction ``p0`` with trivial
stabiliser: ``d`` belongs to the unit iff ``d`` is the member of its orbit ``{S d}`` closest to
``p0``; exact ties (orbit members on the cell boundary) go to the member closest to a second
generic direction, so each orbit is counted once.
"""

from __future__ import annotations

import math
import re

import torch

__all__ = [
    "symmetry_matrices",
    "group_order",
    "parse_symmetry",
    "in_asymmetric_unit",
]

_PHI = (1.0 + math.sqrt(5.0)) / 2.0


#: Largest n of C<n>/D<n> accepted (real assemblies stay far below; the group is built in
#: memory and closed by multiplication, so an absurd order would exhaust it).
MAX_SYMMETRY_ORDER = 1000


def parse_symmetry(symbol: str) -> tuple[str, int]:
    """Parse a point-group symbol (case-insensitive) into ``(family, n)``.

    Args:
        symbol: ``C<n>``, ``D<n>`` (n >= 1), ``T``, ``O`` or ``I``.

    Returns:
        ``(family, n)`` with family in ``{"C", "D", "T", "O", "I"}`` (n = 0 for T, O, I).

    Raises:
        ValueError: unknown or malformed symbol.
    """
    s = str(symbol).strip().upper()
    m = re.fullmatch(r"([CD])(\d+)", s)
    if m:
        if len(m.group(2)) > 6 or int(m.group(2)) > MAX_SYMMETRY_ORDER:
            raise ValueError(f"symmetry {symbol!r}: the order n of C<n>/D<n> must be at most "
                             f"{MAX_SYMMETRY_ORDER}")
        n = int(m.group(2))
        if n < 1:
            raise ValueError(f"symmetry {symbol!r}: the order n of C<n>/D<n> must be >= 1")
        return m.group(1), n
    if s in ("T", "O", "I"):
        return s, 0
    raise ValueError(
        f"unknown symmetry {symbol!r}: use C<n>, D<n> (e.g. C1, C4, D7), T, O or I"
    )


def group_order(symbol: str) -> int:
    """Number of elements of the point group ``symbol`` (C n, D 2n, T 12, O 24, I 60)."""
    family, n = parse_symmetry(symbol)
    return {"C": n, "D": 2 * n, "T": 12, "O": 24, "I": 60}[family]


def _axis_angle(axis, angle_deg: float) -> torch.Tensor:
    """Active rotation matrix (float64) by ``angle_deg`` about ``axis`` (right-hand rule)."""
    u = torch.as_tensor(axis, dtype=torch.float64)
    u = u / torch.linalg.norm(u)
    a = math.radians(angle_deg)
    k = torch.tensor(
        [[0.0, -u[2], u[1]], [u[2], 0.0, -u[0]], [-u[1], u[0], 0.0]], dtype=torch.float64
    )
    return torch.eye(3, dtype=torch.float64) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)


def _generators(family: str, n: int) -> list[torch.Tensor]:
    z = (0.0, 0.0, 1.0)
    if family == "C":
        return [_axis_angle(z, 360.0 / n)]
    if family == "D":
        return [_axis_angle(z, 360.0 / n), _axis_angle((1.0, 0.0, 0.0), 180.0)]
    if family == "T":
        return [_axis_angle(z, 180.0), _axis_angle((1.0, 1.0, 1.0), 120.0)]
    if family == "O":
        return [_axis_angle(z, 90.0), _axis_angle((1.0, 0.0, 0.0), 90.0)]
    # I: 2-folds on x, y, z; 5-fold through the vertex (0, 1, phi) in the yz plane.
    return [
        _axis_angle(z, 180.0),
        _axis_angle((1.0, 1.0, 1.0), 120.0),
        _axis_angle((0.0, 1.0, _PHI), 72.0),
    ]


def _close_group(gens: list[torch.Tensor], expected: int) -> torch.Tensor:
    elems = [torch.eye(3, dtype=torch.float64)]
    frontier = list(elems)
    while frontier:
        new = []
        for g in frontier:
            for h in gens:
                p = h @ g
                if all(torch.max(torch.abs(p - e)) > 1e-8 for e in elems):
                    elems.append(p)
                    new.append(p)
        frontier = new
        if len(elems) > expected:
            raise RuntimeError("symmetry group generation did not close")  # pragma: no cover
    return torch.stack(elems)


def symmetry_matrices(
    symbol: str,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float64,
) -> torch.Tensor:
    """All rotation matrices of a point group (identity first).

    Args:
        symbol: ``C<n>``, ``D<n>``, ``T``, ``O`` or ``I`` (case-insensitive); axes as in the
            module docstring.
        device, dtype: of the result.

    Returns:
        ``(G, 3, 3)`` active rotation matrices ``S`` with ``V(S r) = V(r)`` for a symmetric
        volume; ``G`` = n, 2n, 12, 24, 60.
    """
    family, n = parse_symmetry(symbol)
    mats = _close_group(_generators(family, n), group_order(symbol))
    # Snap to exact values where rounding noise sits (e.g. 6e-17 -> 0) for reproducibility.
    mats = torch.where(mats.abs() < 1e-12, torch.zeros_like(mats), mats)
    return mats.to(device=device, dtype=dtype)


def _reference_directions(family: str, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(p0, p1): Dirichlet-cell centre with trivial stabiliser, and a generic tie-breaker."""
    if family in ("C", "D"):
        # Centre of the wedge 0 <= rot < 360/n, tilt < 90 (D) or anywhere (C):
        # the cell for C is exactly the wedge; for D it is the wedge in the upper half.
        phi = math.pi / n
        theta = math.radians(90.0 if family == "C" else 45.0)
    else:
        phi, theta = 0.4, 0.3  # generic, off every symmetry axis of T, O, I
    p0 = torch.tensor(
        [math.sin(theta) * math.cos(phi), math.sin(theta) * math.sin(phi), math.cos(theta)],
        dtype=torch.float64,
    )
    p1 = torch.tensor([0.3129, -0.5441, 0.7786], dtype=torch.float64)
    return p0, p1 / torch.linalg.norm(p1)


def in_asymmetric_unit(directions: torch.Tensor, symbol: str) -> torch.Tensor:
    """Which unit viewing directions lie in the asymmetric unit of ``symbol``.

    Args:
        directions: ``(N, 3)`` unit vectors (volume frame), e.g. ``A^T e_z``.
        symbol: point group.

    Returns:
        ``(N,)`` bool; exactly one member of every generic orbit ``{S d}`` is selected
        (all members of a degenerate orbit on a symmetry axis coincide and are selected).
    """
    family, n = parse_symmetry(symbol)
    d = directions.to(torch.float64)
    if family == "C" and n == 1:
        return torch.ones(d.shape[0], dtype=torch.bool, device=d.device)
    S = symmetry_matrices(symbol, device=d.device)
    p0, p1 = (p.to(d.device) for p in _reference_directions(family, n))
    chunks = [_select(c, S, p0, p1) for c in d.split(16384)]  # bounded (chunk, G, 3) memory
    return torch.cat(chunks) if chunks else torch.zeros(0, dtype=torch.bool, device=d.device)


def _select(d: torch.Tensor, S: torch.Tensor, p0: torch.Tensor, p1: torch.Tensor) -> torch.Tensor:
    orbit = torch.einsum("gij,nj->ngi", S, d)  # (N, G, 3)
    s0 = orbit @ p0
    s1 = orbit @ p1
    tol = 1e-9
    best0 = s0.max(dim=1, keepdim=True).values
    tied = s0 >= best0 - tol
    s1_masked = torch.where(tied, s1, torch.full_like(s1, -math.inf))
    winner = orbit[torch.arange(d.shape[0], device=d.device), s1_masked.argmax(dim=1)]
    return torch.linalg.norm(winner - d, dim=-1) < 1e-6
