"""Euler ZYZ (RELION) <-> rotation matrices."""

import math

import numpy as np
import pytest
import torch

from difftm.geometry.euler import euler_to_matrix, matrix_to_euler, rotation_angle_deg


def relion_matrix(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION's Euler_angles2matrix, transcribed element by element (independent of our code)."""
    a, b, g = np.deg2rad([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ]
    )


def random_angles(n: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    lo = torch.tensor([-180.0, 0.0, -180.0], dtype=dtype)
    span = torch.tensor([360.0, 180.0, 360.0], dtype=dtype)
    return lo + span * torch.rand(n, 3, generator=g, dtype=dtype)


def test_matches_relion_formula_and_pinned_matrices():
    for rot, tilt, psi in [(12.0, 34.0, 56.0), (-170.0, 135.0, 80.0), (300.0, 5.0, -45.0)]:
        ours = euler_to_matrix(torch.tensor([rot, tilt, psi], dtype=torch.float64)).numpy()
        np.testing.assert_allclose(ours, relion_matrix(rot, tilt, psi), atol=1e-14)
    # rot = 90 alone and psi = 90 alone are both the passive z rotation by 90 degrees.
    rz90 = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(euler_to_matrix((90.0, 0.0, 0.0)).numpy(), rz90, atol=1e-15)
    np.testing.assert_allclose(euler_to_matrix((0.0, 0.0, 90.0)).numpy(), rz90, atol=1e-15)
    # tilt = 90: A = [[0,0,-1],[0,1,0],[1,0,0]]; the beam direction A^T e_z is +x (in xy-plane).
    ry90 = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(euler_to_matrix((0.0, 90.0, 0.0)).numpy(), ry90, atol=1e-15)
    # A generic case pinned numerically: (rot, tilt, psi) = (30, 60, 45).
    # (checked by hand: e.g. A[2] = (sin60 cos30, sin60 sin30, cos60) = (0.75, 0.433, 0.5)).
    pinned = np.array(
        [
            [-0.047367172745376274, 0.7891491309924313, -0.6123724356957946],
            [-0.6597396084411711, 0.4355957403991577, 0.6123724356957945],
            [0.75, 0.43301270189221924, 0.5],
        ]
    )
    np.testing.assert_allclose(euler_to_matrix((30.0, 60.0, 45.0)).numpy(), pinned, atol=1e-12)


def test_viewing_direction_of_tilt_90_lies_in_xy_plane():
    for rot in (0.0, 37.0, 123.0, -80.0):
        A = euler_to_matrix((rot, 90.0, 17.0))
        d = A[2]  # A^T e_z
        assert abs(d[2].item()) < 1e-15
        np.testing.assert_allclose(
            d[:2].numpy(), [math.cos(math.radians(rot)), math.sin(math.radians(rot))], atol=1e-14
        )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_orthonormal_and_proper(dtype):
    R = euler_to_matrix(random_angles(500, dtype=dtype))
    assert R.dtype == dtype and R.shape == (500, 3, 3)
    eye = torch.eye(3, dtype=dtype).expand(500, 3, 3)
    tol = 1e-5 if dtype == torch.float32 else 1e-13
    assert torch.allclose(R @ R.transpose(-1, -2), eye, atol=tol)
    assert torch.allclose(torch.linalg.det(R), torch.ones(500, dtype=dtype), atol=tol)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip(dtype):
    angles = random_angles(2000, seed=1, dtype=dtype)
    R = euler_to_matrix(angles)
    back = matrix_to_euler(R)
    tol = 2e-5 if dtype == torch.float32 else 1e-12
    assert torch.allclose(euler_to_matrix(back), R, atol=tol)
    # Away from gimbal lock the angles themselves come back.
    regular = (angles[:, 1] > 1.0) & (angles[:, 1] < 179.0)
    assert torch.allclose(back[regular], angles[regular], atol=100 * tol)
    assert (back[:, 0] > -180).all() and (back[:, 0] <= 180).all()
    assert (back[:, 2] > -180).all() and (back[:, 2] <= 180).all()
    assert (back[:, 1] >= 0).all() and (back[:, 1] <= 180).all()


def test_batch_shapes_and_numpy_input():
    angles = random_angles(12).reshape(3, 4, 3)
    R = euler_to_matrix(angles)
    assert R.shape == (3, 4, 3, 3)
    assert matrix_to_euler(R).shape == (3, 4, 3)
    assert euler_to_matrix(np.array([10.0, 20.0, 30.0])).dtype == torch.float64
    with pytest.raises(ValueError, match="last axis of size 3"):
        euler_to_matrix(torch.zeros(4, 2))
    with pytest.raises(ValueError, match=r"\(\.\.\., 3, 3\)"):
        matrix_to_euler(torch.zeros(4, 3, 2))


def test_gimbal_lock_is_consistent():
    # tilt = 0: only rot + psi is defined; RELION puts it all in psi.
    out = matrix_to_euler(euler_to_matrix((30.0, 0.0, 20.0)))
    np.testing.assert_allclose(out.numpy(), [0.0, 0.0, 50.0], atol=1e-12)
    # tilt = 180: only psi - rot is defined.
    out = matrix_to_euler(euler_to_matrix((30.0, 180.0, 20.0)))
    np.testing.assert_allclose(out.numpy(), [0.0, 180.0, -10.0], atol=1e-12)
    # float32 near lock: still a valid decomposition of the same matrix.
    R = euler_to_matrix(torch.tensor([[40.0, 1e-4, 10.0], [40.0, 179.9999, 10.0]]))
    assert torch.allclose(euler_to_matrix(matrix_to_euler(R)), R, atol=1e-5)


def test_range_boundaries():
    out = matrix_to_euler(euler_to_matrix((180.0, 90.0, -180.0)))
    np.testing.assert_allclose(out.numpy(), [180.0, 90.0, 180.0], atol=1e-12)
    out = matrix_to_euler(euler_to_matrix((-90.0, 45.0, 270.0)))
    np.testing.assert_allclose(out.numpy(), [-90.0, 45.0, -90.0], atol=1e-12)


def test_differentiable():
    angles = random_angles(3, seed=2).requires_grad_(True)
    assert torch.autograd.gradcheck(euler_to_matrix, (angles,))


def test_rotation_angle():
    R1 = euler_to_matrix((10.0, 20.0, 30.0))
    R2 = euler_to_matrix((10.0, 20.0, 37.0))  # differs by an in-plane rotation of 7 degrees
    assert abs(rotation_angle_deg(R1, R2).item() - 7.0) < 1e-9
    assert rotation_angle_deg(R1, R1).item() < 1e-5
