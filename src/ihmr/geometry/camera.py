"""Camera geometry: projections, world -> camera, weak -> full perspective (the project's only
implementations)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ihmr.errors import InputError

__all__ = ["project_weak_perspective", "project_perspective", "world_to_camera", "project_points", "weak_to_perspective", "look_at", "intrinsics", "reprojection_error"]


def project_weak_perspective(points: Tensor, cam: Tensor) -> Tensor:
    """``uv = s * (xy + t)`` for points ``(B, ..., 3)`` and cameras ``(B, 3)`` = ``(s, tx, ty)``."""
    shape = (cam.shape[0],) + (1,) * (points.ndim - 2)
    c = cam.reshape(*shape, 3)
    return c[..., :1] * (points[..., :2] + c[..., 1:])


def project_perspective(points: Tensor, focal: Tensor, centre: Tensor, min_depth: float = 1e-3) -> Tensor:
    """Pinhole projection of camera-frame points ``(B, ..., 3)`` (metres) with ``focal (B,)`` and
    ``centre (B, 2)`` in pixels -> ``(B, ..., 2)`` pixels (depth clamped at ``min_depth``)."""
    shape = (focal.shape[0],) + (1,) * (points.ndim - 2)
    f = focal.reshape(*shape, 1)
    c = centre.reshape(*shape, 2)
    return f * points[..., :2] / points[..., 2:3].clamp_min(min_depth) + c


def world_to_camera(points_world: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """``X_cam = R X_world + t`` for points ``(N, J, 3)``, ``R (N, 3, 3)``, ``t (N, 3)`` (same units)."""
    return np.einsum("nij,nkj->nki", R, points_world) + t[:, None, :]


def project_points(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection of camera-frame points ``(N, J, 3)`` with intrinsics ``K (N, 3, 3)``
    (``fx`` may differ from ``fy``; no skew) -> ``(N, J, 2)`` pixels.

    Uses :func:`ihmr.geometry.camera.project_perspective` (one focal length) on points whose ``y`` is
    scaled by ``fy / fx``, which is exact.
    """
    p = torch.as_tensor(np.asarray(points_cam, dtype=np.float64))
    k = torch.as_tensor(np.asarray(K, dtype=np.float64))
    fx, fy = k[:, 0, 0], k[:, 1, 1]
    scaled = torch.cat([p[..., :1], p[..., 1:2] * (fy / fx)[:, None, None], p[..., 2:]], -1)
    return project_perspective(scaled, fx, k[:, :2, 2], min_depth=1e-9).numpy()


def weak_to_perspective(cam: np.ndarray, affine: np.ndarray, size: int, K: np.ndarray) -> np.ndarray:
    """The right wrist's camera-frame position ``T (3,)`` (m) equivalent to a weak-perspective camera.

    The network's camera ``cam = (s, tx, ty)`` maps right-wrist-relative points ``X`` to normalised
    crop coordinates ``uv_n = s (X_xy + t)``; the crop is ``u_crop = a u + b`` (``affine`` ``(2, 3)``,
    image -> crop pixels, no rotation) of ``size`` pixels and ``uv_n = (2 u_crop + 1) / size - 1``. A
    pinhole camera ``K`` sees ``u = f (X_x + T_x) / (X_z + T_z) + c_x``. Approximation: every point at
    the wrist's depth (``X_z << T_z``, weak perspective), so matching the two linear maps gives

        ``T_z = 2 a f / (size s)``,  ``T_xy = t - c0 / s``,  ``c0 = 2 a c / size + (2 b + 1) / size - 1``,

    i.e. depth from the camera scale and the focal length; the hand model's orientation is taken as
    camera-frame orientation (the crop does not rotate).
    """
    s = max(float(cam[0]), 1e-3)
    A = np.asarray(affine, dtype=np.float64)
    a = np.array([A[0, 0], A[1, 1]])
    b = A[:, 2]
    f = np.array([K[0, 0], K[1, 1]])
    c = np.array([K[0, 2], K[1, 2]])
    tz = float(np.mean(2.0 * a * f / (size * s)))
    c0 = 2.0 * a * c / size + (2.0 * b + 1.0) / size - 1.0
    txy = np.asarray(cam[1:3], dtype=np.float64) - c0 / s
    return np.array([txy[0], txy[1], tz])


def look_at(eye: np.ndarray, target: np.ndarray, up: np.ndarray = np.array([0.0, -1.0, 0.0])) -> np.ndarray:
    """World-to-camera ``(4, 4)`` (OpenCV convention) for a camera at ``eye`` looking at ``target``.

    ``up`` is the world direction that should point up in the image (OpenCV: image up = -y).
    """
    eye, target, up = (np.asarray(a, dtype=np.float64) for a in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise InputError("look_at: 'up' is parallel to the viewing direction")
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = np.stack([x, y, z])  # rows: camera axes in world coordinates
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = -R @ eye
    return T


def intrinsics(width: int, height: int, focal: float) -> np.ndarray:
    """Pinhole intrinsics ``K (3, 3)`` of a ``width x height`` image: focal length ``focal`` pixels,
    principal point at the image centre ``(width / 2, height / 2)``."""
    return np.array([[focal, 0, width / 2], [0, focal, height / 2], [0, 0, 1.0]])


def reprojection_error(points_cam: np.ndarray, uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Mean pixel distance of camera-frame points ``(..., J, 3)``, projected with ``K (3, 3)``, to
    ``uv (..., J, 2)``: ``(...)`` px (e.g. per hand for ``(2, 21, 3)`` joints)."""
    pts = np.asarray(points_cam, dtype=np.float64)
    proj = project_points(pts.reshape(1, -1, 3), np.asarray(K, dtype=np.float64)[None]).reshape(*pts.shape[:-1], 2)
    return np.linalg.norm(proj - uv, axis=-1).mean(-1)
