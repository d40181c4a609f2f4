"""Euler angles (ZYZ, RELION convention) <-> rotation matrices, in torch.

Convention (RELION's ``Euler_angles2matrix``; angles in degrees, named rot = phi, tilt = theta,
psi)::

    A = Rz(psi) @ Ry(tilt) @ Rz(rot)

with the *passive* elementary matrices RELION uses::

    Rz(a) = [[ cos a, sin a, 0],      Ry(a) = [[cos a, 0, -sin a],
             [-sin a, cos a, 0],               [    0, 1,      0],
             [     0,     0, 1]]               [sin a, 0,  cos a]]

Coordinates are ``(x, y, z)``. The projection of a volume ``V`` for ``A`` is
``P(x, y) = integral dz V(A^T (x, y, z))``; the beam direction expressed in volume coordinates is
``A^T e_z`` (the third row of ``A``) ``= (sin tilt cos rot, sin tilt sin rot, cos tilt)``, so
``rot``/``tilt`` are the longitude/colatitude of the viewing direction and ``psi`` is the in-plane
rotation applied last.
"""

from __future__ import annotations

import math

import torch

__all__ = ["euler_to_matrix", "matrix_to_euler", "rotation_angle_deg"]


def _as_float_tensor(x, device=None, dtype=None) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        # Python numbers and numpy arrays: float64 unless told otherwise.
        x = torch.as_tensor(x, dtype=dtype or torch.float64, device=device)
    t = x.to(device=device) if device is not None else x
    if dtype is not None:
        return t.to(dtype)
    if not t.is_floating_point():
        t = t.to(torch.float64)
    return t


def euler_to_matrix(
    angles_deg,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Rotation matrices from RELION ZYZ Euler angles.

    Args:
        angles_deg: ``(..., 3)`` tensor or array-like of ``(rot, tilt, psi)`` in degrees.
            Differentiable when a tensor with ``requires_grad``.
        device, dtype: of the result; default: those of a tensor ``angles_deg``, float64 for
            Python numbers, numpy arrays and integer tensors.

    Returns:
        ``(..., 3, 3)`` tensor ``A = Rz(psi) Ry(tilt) Rz(rot)`` (see module docstring).
    """
    a = _as_float_tensor(angles_deg, device, dtype)
    if a.shape[-1] != 3:
        raise ValueError(f"Euler angles need a last axis of size 3, got shape {tuple(a.shape)}")
    rad = torch.deg2rad(a)
    ca, cb, cg = torch.cos(rad).unbind(-1)
    sa, sb, sg = torch.sin(rad).unbind(-1)
    cc = cb * ca
    cs = cb * sa
    rows = [
        torch.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], -1),
        torch.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], -1),
        torch.stack([sb * ca, sb * sa, cb], -1),
    ]
    return torch.stack(rows, -2)


def _wrap_deg(angle: torch.Tensor) -> torch.Tensor:
    """Map degrees to (-180, 180]."""
    wrapped = torch.remainder(angle + 180.0, 360.0) - 180.0
    return torch.where(wrapped <= -180.0, wrapped + 360.0, wrapped)


def matrix_to_euler(R: torch.Tensor) -> torch.Tensor:
    """RELION ZYZ Euler angles of rotation matrices (inverse of :func:`euler_to_matrix`).

    Args:
        R: ``(..., 3, 3)`` rotation matrices (float32 or float64).

    Returns:
        ``(..., 3)`` ``(rot, tilt, psi)`` in degrees with ``rot, psi`` in (-180, 180] and
        ``tilt`` in [0, 180]. At gimbal lock (tilt 0 or 180, where only ``psi + rot`` resp.
        ``psi - rot`` is defined) ``rot = 0`` and the whole in-plane angle goes to ``psi``,
        as RELION does. The lock is detected when ``sin(tilt)`` is below ``16 * eps`` of the
        dtype (float32: ~2e-6).
    """
    R = _as_float_tensor(R)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"rotation matrices need shape (..., 3, 3), got {tuple(R.shape)}")
    eps = 16.0 * torch.finfo(R.dtype).eps
    r02, r12, r22 = R[..., 0, 2], R[..., 1, 2], R[..., 2, 2]
    r20, r21 = R[..., 2, 0], R[..., 2, 1]
    r00, r10 = R[..., 0, 0], R[..., 1, 0]
    abs_sb = torch.sqrt(r02 * r02 + r12 * r12)
    regular = abs_sb > eps
    # tilt in [0, pi] so sin(tilt) >= 0: psi and rot follow directly from row 2 / column 2.
    psi_reg = torch.atan2(r12, -r02)
    rot_reg = torch.atan2(r21, r20)
    tilt_reg = torch.atan2(abs_sb, r22)
    up = r22 > 0
    psi_lock = torch.where(up, torch.atan2(-r10, r00), torch.atan2(r10, -r00))
    tilt_lock = torch.where(up, torch.zeros_like(r22), torch.full_like(r22, math.pi))
    rot = torch.where(regular, rot_reg, torch.zeros_like(rot_reg))
    tilt = torch.where(regular, tilt_reg, tilt_lock)
    psi = torch.where(regular, psi_reg, psi_lock)
    out = torch.rad2deg(torch.stack([rot, tilt, psi], -1))
    rot_d, tilt_d, psi_d = out.unbind(-1)
    return torch.stack([_wrap_deg(rot_d), tilt_d, _wrap_deg(psi_d)], -1)


def rotation_angle_deg(R1: torch.Tensor, R2: torch.Tensor) -> torch.Tensor:
    """Geodesic distance between rotations: the angle of ``R1^T R2`` in degrees.

    Args:
        R1, R2: broadcastable ``(..., 3, 3)`` rotation matrices.

    Returns:
        ``(...)`` angles in [0, 180] degrees.
    """
    trace = (R1 * R2).sum(dim=(-2, -1))
    cos = ((trace - 1.0) / 2.0).clamp(-1.0, 1.0)
    return torch.rad2deg(torch.acos(cos))
