"""Differentiable closest points on triangles (batched, torch)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["closest_point_on_triangle"]


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
    """``num / den`` with a harmless denominator where ``den == 0`` (such entries are never selected)."""
    return num / torch.where(den.abs() < 1e-30, torch.ones_like(den), den)


def closest_point_on_triangle(p: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """Closest point to ``p`` on triangle ``(a, b, c)``, differentiable in all four.

    Voronoi-region classification (vertex, edge or face region) after Ericson, *Real-Time
    Collision Detection*, Sec. 5.1.5, evaluated for all regions at once and selected per point.

    Args:
        p, a, b, c: ``(*, 3)`` points and triangle corners.

    Returns:
        ``(*, 3)`` closest points.
    """
    ab, ac, ap = b - a, c - a, p - a
    bp, cp = p - b, p - c

    def dot(x: Tensor, y: Tensor) -> Tensor:
        return (x * y).sum(-1, keepdim=True)

    d1, d2 = dot(ab, ap), dot(ac, ap)
    d3, d4 = dot(ab, bp), dot(ac, bp)
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    # Face region (default).
    den = va + vb + vc
    q = a + ab * _safe_div(vb, den) + ac * _safe_div(vc, den)
    # Ericson tests A, B, AB, C, AC, BC, face in this order and the first match wins; assigning in
    # reverse order lets the earlier tests override the later ones.
    in_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
    q = torch.where(in_bc, b + (c - b) * _safe_div(d4 - d3, (d4 - d3) + (d5 - d6)), q)
    in_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
    q = torch.where(in_ac, a + ac * _safe_div(d2, d2 - d6), q)
    q = torch.where((d6 >= 0) & (d5 <= d6), c, q)
    in_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
    q = torch.where(in_ab, a + ab * _safe_div(d1, d1 - d3), q)
    q = torch.where((d3 >= 0) & (d4 <= d3), b, q)
    q = torch.where((d1 <= 0) & (d2 <= 0), a, q)
    return q
