"""The random pinhole camera of each ``ihmr synth`` sample (OpenCV convention, metres, pixels):
field of view 25-55 deg, distance so the pair fills 65-95 % of the frame, principal point jitter,
roll, every vertex inside the image."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np

from ihmr.geometry.camera import look_at
from ihmr.geometry.rotations import rotation_z

__all__ = ["random_camera"]


def _project(points_m: np.ndarray, R: np.ndarray, eye_m: np.ndarray, f: np.ndarray, c: np.ndarray):
    """Pixels ``(N, 2)`` and depths ``(N,)`` (metres) of ``points_m (N, 3)`` seen by the camera at
    ``eye_m (3,)`` with rotation ``R (3, 3)`` (world to camera), focal ``f (2,)`` and principal point
    ``c (2,)`` (pixels)."""
    X = (points_m - eye_m) @ R.T
    return X[:, :2] / X[:, 2:3] * f + c, X[:, 2]


def random_camera(rng: np.random.Generator, verts_m: np.ndarray, target_m: np.ndarray, size: int, away: Optional[np.ndarray] = None):
    """A random camera seeing every vertex of ``verts_m (N, 3)`` (world, metres), looking near
    ``target_m (3,)``, for a square image of side ``size``: ``(R (3, 3), eye_m (3,), focal (2,),
    princpt (2,))``, ``X_cam = R (X - eye_m)``.

    ``away``: a unit direction (the forearms' mean) the camera should look along rather than against,
    as when the arms come from a body facing the camera."""
    S = float(size)
    fov = math.radians(rng.uniform(25.0, 55.0))
    fx = 0.5 * S / math.tan(0.5 * fov)
    focal = np.array([fx, fx * (1.0 + rng.normal(0.0, 0.002))])
    princpt = 0.5 * S + rng.uniform(-0.05, 0.05, 2) * S
    for _ in range(30):
        az = rng.uniform(0.0, 2 * math.pi)
        el = math.radians(rng.uniform(-45.0, 65.0))
        view_from = np.array([math.cos(el) * math.sin(az), -math.sin(el), -math.cos(el) * math.cos(az)])
        if away is None or float(view_from @ away) <= -0.2:
            break
    look = target_m + rng.normal(0.0, 0.01, 3)
    frac = rng.uniform(0.65, 0.95)  # bounding radius as a fraction of half the image
    roll = rng.normal(0.0, math.radians(12.0))
    r = float(np.linalg.norm(verts_m - look, axis=1).max())
    dist = max(r * fx / (frac * 0.5 * S), r + 0.12)
    margin = 0.03 * S
    for _ in range(60):
        eye = look + dist * view_from
        E = look_at(eye, look, np.array([0.0, -1.0, 0.0]))
        R = rotation_z(roll) @ E[:3, :3]
        uv, z = _project(verts_m, R, eye, focal, princpt)
        if z.min() > 0.05 and uv.min() >= margin and uv.max() <= S - margin:
            return R, eye, focal, princpt
        dist *= 1.07
    raise RuntimeError("could not frame the hands (internal error)")  # pragma: no cover
