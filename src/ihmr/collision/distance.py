"""Distances between the two hands' surfaces: how far each vertex is from the other hand.

The counterpart of :mod:`ihmr.collision.exact` for hands that do not (or not only) penetrate:
for every vertex, the unsigned distance to the other hand's closed surface, ``0`` for a vertex
inside it. The closest triangles come from libigl's AABB queries without gradient; the distance to
a found triangle is recomputed in torch where gradients are needed
(:func:`proximity_distance`), as for the penetration pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import igl
import numpy as np
import torch
from torch import Tensor

from ihmr.collision.closest_point import closest_point_on_triangle
from ihmr.collision.exact import pseudo_normal_inside
from ihmr.collision.trees import RigidTrees, igl_faces

__all__ = ["ProximityQuery", "find_near", "surface_gap", "surface_distances", "proximity_distance"]


@dataclass
class ProximityQuery:
    """Vertices near the other hand, found without gradient (flat lists over the batch).

    Attributes:
        batch, hand, vertex: ``(N,)`` indices of each vertex (``hand`` = the hand it belongs to).
        face: ``(N,)`` its closest triangle of hand ``1 - hand``.
        distance: ``(N,)`` its distance to that triangle (m; float64), ``0`` when inside.
        inside: ``(N,)`` bool, the vertex is inside the other hand.
    """

    batch: Tensor
    hand: Tensor
    vertex: Tensor
    face: Tensor
    distance: Tensor
    inside: Tensor

    @staticmethod
    def empty() -> "ProximityQuery":
        z = torch.zeros(0, dtype=torch.long)
        return ProximityQuery(z, z, z, z, torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.bool))


def find_near(vertices: Tensor, faces: Tensor, band: float = math.inf, inside: Optional[Tensor] = None,
              trees: Optional[RigidTrees] = None) -> ProximityQuery:
    """Every vertex within ``band`` (m) of the other hand (inside included), with its closest triangle.

    Only vertices inside the other hand's bounding box grown by ``band`` are queried.

    Args:
        vertices: ``(B, 2, V, 3)``.
        faces: ``(2, F, 3)`` closed, outward oriented.
        band: largest distance kept (m); ``inf`` keeps every vertex.
        inside: optional ``(B, 2, V)`` bool, exactly the vertices inside the other hand (as
            :func:`ihmr.collision.exact.find_penetrations` finds them). When given, those vertices
            are left out and no inside test runs: the result is the outside part of the full one.
        trees: optional :class:`~ihmr.collision.trees.RigidTrees` of the same hands in their current
            pose (its trees are queried instead of new ones built).
    """
    vt = vertices.detach().to(torch.float64).cpu()
    v = vt.numpy()
    f = igl_faces(faces)
    may = _may_be_near(vt, band)  # (B, 2, V) bool
    if inside is not None:
        may &= ~inside.cpu().numpy()
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("batch", "hand", "vertex", "face", "distance", "inside")}
    for b in range(v.shape[0]):  # libigl works one mesh at a time
        for h in range(2):
            other = np.ascontiguousarray(v[b, 1 - h])
            cand = np.flatnonzero(may[b, h])
            if cand.size == 0:
                continue
            q = np.ascontiguousarray(v[b, h, cand])
            d2, fi, c = trees.query(b, 1 - h, q) if trees is not None else igl.point_mesh_squared_distance(q, other, f[1 - h])
            d = np.sqrt(np.asarray(d2).reshape(-1))
            fi = np.asarray(fi).reshape(-1).astype(np.int64)
            ins = np.zeros(len(cand), dtype=bool) if inside is not None else pseudo_normal_inside(q, np.asarray(c), fi, other, f[1 - h])
            d = np.where(ins, 0.0, d)
            keep = d <= band
            n = int(keep.sum())
            for k, x in (("batch", np.full(n, b)), ("hand", np.full(n, h)), ("vertex", cand[keep]), ("face", fi[keep]),
                         ("distance", d[keep]), ("inside", ins[keep])):
                out[k].append(x)
    if not out["batch"]:
        return ProximityQuery.empty()
    cat = {k: np.concatenate(x) for k, x in out.items()}
    return ProximityQuery(
        **{k: torch.as_tensor(cat[k], dtype=torch.long) for k in ("batch", "hand", "vertex", "face")},
        distance=torch.as_tensor(cat["distance"], dtype=torch.float64), inside=torch.as_tensor(cat["inside"], dtype=torch.bool),
    )


def _may_be_near(v: Tensor, band: float) -> np.ndarray:
    """``(B, 2, V)`` bool: the vertex lies inside the other hand's bounding box grown by ``band``."""
    lo, hi = v.amin(2) - band, v.amax(2) + band  # (B, 2, 3)
    return torch.stack([((v[:, h] >= lo[:, 1 - h, None]) & (v[:, h] <= hi[:, 1 - h, None])).all(-1) for h in range(2)], 1).numpy()


@torch.no_grad()
def surface_gap(vertices: Tensor, faces: Tensor, penetrating: Tensor, band: float = math.inf,
                trees: Optional[RigidTrees] = None) -> Tensor:
    """``(B,)`` float64: the smallest distance (m) of a vertex of either hand to the other hand's
    surface; ``0`` for the samples marked ``penetrating``, ``inf`` when no vertex is within ``band``.

    The same gap as the minimum of :func:`find_near`'s distances, cheaper: a pair known not to
    penetrate (by :func:`ihmr.collision.exact.find_penetrations`, exact on closed meshes) has no
    vertex inside the other hand, so no inside test is needed, and only the closest distance is kept.

    Args:
        vertices: ``(B, 2, V, 3)``.
        faces: ``(2, F, 3)`` closed, outward oriented.
        penetrating: ``(B,)`` bool, the pair penetrates (its gap is 0; not searched).
        band: largest distance searched (m).
        trees: optional :class:`~ihmr.collision.trees.RigidTrees` of the same hands in their current
            pose (its trees are queried instead of new ones built).
    """
    gap = torch.where(penetrating.cpu(), 0.0, math.inf).to(torch.float64)
    rows = torch.nonzero(~penetrating.cpu()).flatten()
    if rows.numel() == 0:
        return gap
    vt = vertices[rows].detach().to(torch.float64).cpu()
    v = vt.numpy()
    f = igl_faces(faces)
    may = _may_be_near(vt, band)
    for i, b in enumerate(rows.tolist()):  # libigl works one mesh at a time
        for h in range(2):
            cand = np.flatnonzero(may[i, h])
            if cand.size:
                q = np.ascontiguousarray(v[i, h, cand])
                d2 = trees.query(b, 1 - h, q)[0] if trees is not None else \
                    igl.point_mesh_squared_distance(q, np.ascontiguousarray(v[i, 1 - h]), f[1 - h])[0]
                d = math.sqrt(float(np.min(d2)))
                if d <= band:
                    gap[b] = min(float(gap[b]), d)
    return gap


@torch.no_grad()
def surface_distances(vertices: Tensor, faces: Tensor) -> Tensor:
    """``(B, 2, V)`` float64: entry ``[b, h, v]`` is the distance (m) of vertex ``v`` of hand ``h`` to
    the surface of hand ``1 - h``, ``0`` inside it (``vertices (B, 2, V, 3)``, ``faces (2, F, 3)``)."""
    q = find_near(vertices, faces)
    out = torch.zeros(vertices.shape[:3], dtype=torch.float64)
    return out.index_put((q.batch, q.hand, q.vertex), q.distance)


def proximity_distance(vertices: Tensor, faces: Tensor, query: ProximityQuery) -> Tensor:
    """``(N,)`` differentiable distances of the query's vertices to their cached triangles (m).

    Gradients reach the vertex and the three corners of the other hand's triangle. The cached
    triangle stays the closest one only near the configuration it was found in; refresh the query
    as the hands move (see :mod:`ihmr.refine.factorized`).
    """
    if query.batch.numel() == 0:
        return vertices.new_zeros(0)
    b, h = query.batch, query.hand
    p = vertices[b, h, query.vertex]
    tri = torch.as_tensor(faces, device=vertices.device).long()[1 - h, query.face]
    a, bb, c = (vertices[b, 1 - h, tri[:, k]] for k in range(3))
    q = closest_point_on_triangle(p, a, bb, c)
    return torch.sqrt(((p - q) ** 2).sum(-1).clamp_min(1e-24))
