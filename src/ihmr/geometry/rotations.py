"""Batched rotation conversions: axis-angle <-> rotation matrix <-> 6D.

All functions take tensors with arbitrary leading batch dimensions ``(*, ...)`` and are
differentiable. Axis-angle vectors are ``(*, 3)``: direction = axis, norm = angle in radians.
Rotation matrices are ``(*, 3, 3)`` and act on column vectors. The 6D representation
(Zhou et al., CVPR 2019) is the first two *columns* of the matrix, ``(*, 6)`` = ``[c0, c1]``.

This module is the project's only implementation of these conversions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ihmr.errors import InputError

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "rotation_matrix_error",
    "matrix_to_rot6d",
    "rot6d_to_matrix",
    "mirror_axis_angle",
    "swing_rotation",
    "skew",
    "rotation_z",
    "axis_rotation",
    "rotation_2d",
]

_SMALL = 1e-6


def skew(v: Tensor) -> Tensor:
    """Cross-product matrices.

    Args:
        v: ``(*, 3)`` vectors.

    Returns:
        ``(*, 3, 3)`` matrices ``K`` with ``K @ x == cross(v, x)``.
    """
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix(aa: Tensor) -> Tensor:
    """Rodrigues' formula, exact and with finite gradients at zero angle.

    Args:
        aa: ``(*, 3)`` axis-angle vectors (radians).

    Returns:
        ``(*, 3, 3)`` rotation matrices.
    """
    if aa.shape[-1] != 3:
        raise InputError(f"axis-angle must have last dimension 3, got shape {tuple(aa.shape)}")
    theta2 = (aa * aa).sum(-1, keepdim=True)  # (*, 1)
    small = theta2 < _SMALL**2
    # Safe angle: avoid sqrt(0) in the backward pass.
    theta = torch.sqrt(torch.where(small, torch.ones_like(theta2), theta2))
    # sin(t)/t and (1-cos(t))/t^2 with Taylor expansions near zero.
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / (theta * theta))
    k = skew(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand(k.shape)
    return eye + a[..., None] * k + b[..., None] * (k @ k)


def matrix_to_axis_angle(rot: Tensor) -> Tensor:
    """Inverse of :func:`axis_angle_to_matrix`, angle in ``[0, pi]``.

    Uses the quaternion route (numerically stable for all angles, including pi).

    Args:
        rot: ``(*, 3, 3)`` rotation matrices.

    Returns:
        ``(*, 3)`` axis-angle vectors.
    """
    if rot.shape[-2:] != (3, 3):
        raise InputError(f"rotation matrices must be (*, 3, 3), got shape {tuple(rot.shape)}")
    q = _matrix_to_quaternion(rot)  # (*, 4) w, x, y, z with w >= 0
    w = q[..., :1]
    xyz = q[..., 1:]
    s2 = (xyz * xyz).sum(-1, keepdim=True)
    small = s2 < _SMALL**2
    s = torch.sqrt(torch.where(small, torch.ones_like(s2), s2))
    angle = 2.0 * torch.atan2(s, w)
    scale = torch.where(small, 2.0 / w.clamp_min(_SMALL) * (1.0 - s2 / (3.0 * w.clamp_min(_SMALL) ** 2)), angle / s)
    return xyz * scale


def rotation_matrix_error(rot: Tensor) -> Tensor:
    """How far matrices ``(*, 3, 3)`` are from rotations: ``(*,)`` the larger of
    ``max |R^T R - I|`` (orthonormality) and ``|det R - 1|`` (a reflection has ``det = -1``: error 2).
    0 for an exact rotation; float32 network outputs are typically below 1e-5."""
    if rot.shape[-2:] != (3, 3):
        raise InputError(f"rotation matrices must be (*, 3, 3), got shape {tuple(rot.shape)}")
    eye = torch.eye(3, dtype=rot.dtype, device=rot.device)
    ortho = (rot.transpose(-1, -2) @ rot - eye).abs().amax(dim=(-1, -2))
    return torch.maximum(ortho, (torch.linalg.det(rot) - 1.0).abs())


def _matrix_to_quaternion(rot: Tensor) -> Tensor:
    """Rotation matrices ``(*, 3, 3)`` to unit quaternions ``(*, 4)`` (w, x, y, z), ``w >= 0``."""
    m = rot
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    # Four candidate (unnormalised) quaternions; pick the best-conditioned per element.
    qw = torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0], m[..., 1, 0] - m[..., 0, 1]], -1)
    qx = torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0], m[..., 0, 2] + m[..., 2, 0]], -1)
    qy = torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22, m[..., 1, 2] + m[..., 2, 1]], -1)
    qz = torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1], 1 - m00 - m11 + m22], -1)
    cands = torch.stack([qw, qx, qy, qz], -2)  # (*, 4, 4)
    diag = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = diag.argmax(-1)  # (*,)
    q = torch.gather(cands, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return torch.where(q[..., :1] < 0, -q, q)


def rot6d_to_matrix(d6: Tensor) -> Tensor:
    """6D representation ``(*, 6)`` to rotation matrices ``(*, 3, 3)`` by Gram-Schmidt."""
    if d6.shape[-1] != 6:
        raise InputError(f"6D rotations must have last dimension 6, got shape {tuple(d6.shape)}")
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = torch.nn.functional.normalize(a1, dim=-1)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(rot: Tensor) -> Tensor:
    """Rotation matrices ``(*, 3, 3)`` to the 6D representation ``(*, 6)`` (first two columns)."""
    if rot.shape[-2:] != (3, 3):
        raise InputError(f"rotation matrices must be (*, 3, 3), got shape {tuple(rot.shape)}")
    return torch.cat([rot[..., :, 0], rot[..., :, 1]], dim=-1)


def mirror_axis_angle(aa: Tensor) -> Tensor:
    """Mirror rotations through the x = 0 plane (right hand <-> left hand, MANO convention).

    With ``M = diag(-1, 1, 1)``, ``M R(aa) M == R(mirror_axis_angle(aa))``, i.e. the y and z
    components of each axis-angle vector are negated.

    Args:
        aa: ``(*, 3)`` axis-angle vectors (also accepts ``(*, 3k)`` stacks of them).
    """
    if aa.shape[-1] % 3 != 0:
        raise InputError(f"axis-angle stacks must have a last dimension divisible by 3, got {tuple(aa.shape)}")
    sign = torch.tensor([1.0, -1.0, -1.0], dtype=aa.dtype, device=aa.device)
    return (aa.reshape(*aa.shape[:-1], -1, 3) * sign).reshape(aa.shape)


def swing_rotation(a: Tensor, b: Tensor) -> Tensor:
    """Minimal rotations turning directions ``a`` onto ``b``.

    Args:
        a, b: ``(*, 3)`` directions (any length).

    Returns:
        ``(*, 3, 3)``; for opposite directions, a half turn about an axis orthogonal to ``a``.
    """
    a = a / a.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    b = b / b.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    axis = torch.cross(a, b, dim=-1)
    s = axis.norm(dim=-1, keepdim=True)
    angle = torch.atan2(s, (a * b).sum(-1, keepdim=True))
    ex = torch.tensor([1.0, 0.0, 0.0], dtype=a.dtype, device=a.device)
    ey = torch.tensor([0.0, 1.0, 0.0], dtype=a.dtype, device=a.device)
    ortho = torch.cross(a, torch.where(a[..., :1].abs() < 0.9, ex, ey).expand_as(a), dim=-1)
    axis = torch.where(s < 1e-9, ortho / ortho.norm(dim=-1, keepdim=True).clamp_min(1e-12), axis / s.clamp_min(1e-12))
    return axis_angle_to_matrix(axis * angle)


def rotation_z(angle_rad: float):
    """``(3, 3)`` numpy rotation by ``angle_rad`` about the z axis (the camera's optical axis in
    ihmr's OpenCV convention: in image pixels, x right and y down, its top-left 2x2 block rotates
    offsets from the principal point the same way)."""
    return axis_angle_to_matrix(torch.tensor([0.0, 0.0, float(angle_rad)], dtype=torch.float64)).numpy()


def axis_rotation(axis: str, angle: Tensor) -> Tensor:
    """Rotation matrices ``(B, 3, 3)`` by ``angle (B,)`` (radians) about the coordinate axis ``axis``
    (``"x"``, ``"y"`` or ``"z"``)."""
    aa = torch.zeros(angle.shape[0], 3, dtype=angle.dtype)
    aa[:, "xyz".index(axis)] = angle
    return axis_angle_to_matrix(aa)


def rotation_2d(a: float) -> np.ndarray:
    """The 2D rotation matrix ``(2, 2)`` of angle ``a`` (radians)."""
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s], [s, c]])
