"""Near-uniform SO(3) orientation grids."""

import math

import pytest
import torch

from difftm.geometry.euler import euler_to_matrix
from difftm.geometry.grids import grid_size, orientation_grid, sphere_directions, viewing_direction


def test_c1_standard_grid_size():
    grid = orientation_grid(2.5, 1.5)
    # cisTEM's default 2DTM search (2.5 out of plane, 1.5 in plane) has 1,584,480 orientations.
    assert abs(grid.shape[0] - 1_584_480) / 1_584_480 < 0.01
    assert grid.shape == (grid_size(2.5, 1.5), 3)
    assert grid.dtype == torch.float64


def test_ranges_order_and_determinism():
    grid = orientation_grid(10.0, 30.0)
    assert torch.equal(grid, orientation_grid(10.0, 30.0))
    rot, tilt, psi = grid.unbind(-1)
    assert (rot >= 0).all() and (rot < 360).all()
    assert (psi >= 0).all() and (psi < 360).all()
    assert (tilt >= 0).all() and (tilt <= 180).all()
    # psi varies fastest: 12 in-plane angles per viewing direction, 0, 30, ..., 330.
    assert torch.equal(psi[:12], torch.arange(12, dtype=torch.float64) * 30.0)
    assert torch.equal(grid[:12, :2], grid[:1, :2].expand(12, 2))
    # directions sorted by tilt (then rot).
    dirs = grid[::12, :2]
    assert (dirs[1:, 1] >= dirs[:-1, 1]).all()


def test_directions_near_uniform_on_sphere():
    step = 5.0
    rt = sphere_directions(step)
    d = viewing_direction(rt[:, 0], rt[:, 1])
    # Area per direction ~ step^2 (steradians in rad^2).
    assert abs(4 * math.pi / d.shape[0] / math.radians(step) ** 2 - 1) < 0.01
    # Every point of the sphere lies within ~step of a grid direction (covering radius) and
    # no two grid directions are much closer than the step.
    g = torch.Generator().manual_seed(0)
    probe = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    probe = probe / probe.norm(dim=1, keepdim=True)
    nearest = torch.rad2deg(torch.acos((probe @ d.T).max(dim=1).values.clamp(-1, 1)))
    assert nearest.max() < 0.75 * step
    cos = d @ d.T - 2 * torch.eye(d.shape[0], dtype=torch.float64)
    nn = torch.rad2deg(torch.acos(cos.max(dim=1).values.clamp(-1, 1)))
    assert nn.min() > 0.8 * step and nn.max() < 1.2 * step


def test_grid_matches_viewing_direction_of_matrices():
    grid = orientation_grid(20.0, 90.0)
    A = euler_to_matrix(grid)
    d = viewing_direction(grid[:, 0], grid[:, 1])
    assert torch.allclose(A[:, 2, :], d, atol=1e-12)


def test_in_plane_fraction():
    assert grid_size(10.0, 1.5) == sphere_directions(10.0).shape[0] * 240
    assert grid_size(10.0, 7.0) == sphere_directions(10.0).shape[0] * 51  # round(360 / 7)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), 200.0])
def test_bad_steps(bad):
    with pytest.raises(ValueError, match="step"):
        orientation_grid(bad, 1.0)
    with pytest.raises(ValueError, match="step"):
        grid_size(2.5, bad)


def test_unknown_symmetry():
    with pytest.raises(ValueError, match="unknown symmetry"):
        orientation_grid(10.0, 10.0, "Q2")
