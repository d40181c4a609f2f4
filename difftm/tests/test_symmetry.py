"""Point groups and asymmetric units of viewing directions."""

import math

import pytest
import torch

from difftm.geometry.euler import euler_to_matrix
from difftm.geometry.grids import orientation_grid, sphere_directions
from difftm.geometry.symmetry import (
    group_order,
    in_asymmetric_unit,
    parse_symmetry,
    symmetry_matrices,
)

GROUPS = {"C1": 1, "C2": 2, "C5": 5, "D2": 4, "D7": 14, "T": 12, "O": 24, "I": 60}


def _axis_angle(axis, angle_deg):
    u = torch.tensor(axis, dtype=torch.float64)
    u = u / u.norm()
    a = math.radians(angle_deg)
    k = torch.tensor([[0, -u[2], u[1]], [u[2], 0, -u[0]], [-u[1], u[0], 0]], dtype=torch.float64)
    return torch.eye(3, dtype=torch.float64) + math.sin(a) * k + (1 - math.cos(a)) * k @ k


def _contains(S, M, tol=1e-10):
    return bool(((S - M).abs().amax(dim=(-2, -1)) < tol).any())


@pytest.mark.parametrize("symbol,order", GROUPS.items())
def test_group_order_closure_and_rotations(symbol, order):
    S = symmetry_matrices(symbol)
    assert S.shape == (order, 3, 3) and group_order(symbol) == order
    assert torch.equal(S[0], torch.eye(3, dtype=torch.float64))
    eye = torch.eye(3, dtype=torch.float64)
    assert torch.allclose(S @ S.transpose(-1, -2), eye.expand_as(S), atol=1e-12)
    assert torch.allclose(torch.linalg.det(S), torch.ones(order, dtype=torch.float64))
    # Closure: every product is an element, and elements are distinct.
    prod = (S[:, None] @ S[None, :]).reshape(-1, 1, 3, 3)
    dist = (prod - S[None]).abs().amax(dim=(-2, -1))  # (G*G, G)
    assert (dist.min(dim=1).values < 1e-10).all()
    pair = (S[:, None] - S[None]).abs().amax(dim=(-2, -1)) + 10 * torch.eye(order)
    assert pair.min() > 1e-3


def test_axis_conventions():
    assert _contains(symmetry_matrices("C4"), _axis_angle((0, 0, 1), 90))
    assert _contains(symmetry_matrices("D3"), _axis_angle((1, 0, 0), 180))
    assert _contains(symmetry_matrices("T"), _axis_angle((1, 0, 0), 180))
    assert _contains(symmetry_matrices("T"), _axis_angle((1, 1, 1), 120))
    assert not _contains(symmetry_matrices("T"), _axis_angle((0, 0, 1), 90))
    for axis in ((1, 0, 0), (0, 1, 0), (0, 0, 1)):
        assert _contains(symmetry_matrices("O"), _axis_angle(axis, 90))
        assert _contains(symmetry_matrices("I"), _axis_angle(axis, 180))
    phi = (1 + math.sqrt(5)) / 2
    # Icosahedral: front-most 5-folds in the yz plane (3DEM standard, RELION I2), not in xz.
    assert _contains(symmetry_matrices("I"), _axis_angle((0, 1, phi), 72))
    assert not _contains(symmetry_matrices("I"), _axis_angle((1, 0, phi), 72))


def test_parse_case_insensitive_and_errors():
    assert parse_symmetry("c4") == ("C", 4)
    assert parse_symmetry(" d7 ") == ("D", 7)
    assert parse_symmetry("o") == ("O", 0)
    assert symmetry_matrices("i").shape[0] == 60
    for bad in ("X3", "C0", "C", "D-2", "OO", ""):
        with pytest.raises(ValueError, match="symmetry"):
            symmetry_matrices(bad)


@pytest.mark.parametrize("symbol", ["C3", "D2", "D5", "T", "O", "I"])
def test_each_orbit_counted_once(symbol):
    g = torch.Generator().manual_seed(3)
    d = torch.randn(300, 3, generator=g, dtype=torch.float64)
    d = d / d.norm(dim=1, keepdim=True)
    S = symmetry_matrices(symbol)
    orbit = torch.einsum("gij,nj->ngi", S, d).reshape(-1, 3)
    inside = in_asymmetric_unit(orbit, symbol).reshape(300, -1)
    assert (inside.sum(dim=1) == 1).all()


@pytest.mark.parametrize("symbol", ["C4", "D2", "T", "O", "I"])
def test_reduced_grid_fraction(symbol):
    full = sphere_directions(2.5, "C1").shape[0]
    reduced = sphere_directions(2.5, symbol).shape[0]
    ratio = reduced * group_order(symbol) / full
    assert abs(ratio - 1.0) < 0.02, ratio
    n_full = orientation_grid(2.5, 30.0).shape[0]
    assert orientation_grid(2.5, 30.0, symbol).shape[0] == n_full // full * reduced


@pytest.mark.parametrize("symbol", ["C4", "D2", "O", "I"])
def test_reduced_grid_covers_so3(symbol):
    step = 15.0
    full = euler_to_matrix(orientation_grid(step, step, "C1"))
    reduced = euler_to_matrix(orientation_grid(step, step, symbol))
    best_trace = torch.full((full.shape[0],), -1.0, dtype=torch.float64)
    for S in symmetry_matrices(symbol):
        # A and A S give the same projection of a symmetric volume; trace(X^T Y) = 1 + 2 cos.
        trace = torch.einsum("nij,mij->nm", full @ S, reduced)
        best_trace = torch.maximum(best_trace, trace.max(dim=1).values)
    worst = math.degrees(math.acos((best_trace.min().item() - 1) / 2))
    assert worst <= step, worst

