"""Camera projections (the project's only implementations)."""

from __future__ import annotations

from torch import Tensor

__all__ = ["project_weak_perspective", "project_perspective"]


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
