"""Exact inter-mesh penetration depths (our improvement over the voxel grid of the paper).

For every vertex of one hand that lies inside the other hand's closed surface, the depth is its
exact distance to that surface. The inside test and the
search for the closest triangle run in libigl without gradient; the distance to the found triangle
is then recomputed in torch, so gradients reach both the query vertex and the three vertices of
the other hand's triangle.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import igl
import numpy as np
import torch
from torch import Tensor

from ihmr.collision.closest_point import closest_point_on_triangle
from ihmr.collision.trees import RigidTrees, igl_faces
from ihmr.errors import InputError
from ihmr.geometry.mesh import face_normals

__all__ = ["check_pair_input", "boxes_overlap", "pseudo_normal_inside", "penetration_depths", "PenetrationQuery", "find_penetrations"]

#: Faces with an area below this (m^2) are degenerate.
MIN_FACE_AREA = 1e-16


def check_pair_input(vertices: Tensor, faces: Tensor) -> None:
    """Validate ``vertices (B, 2, V, 3)`` and ``faces (2, F, 3)``; raise :class:`InputError`."""
    if not isinstance(vertices, Tensor) or not vertices.is_floating_point():
        raise InputError("vertices must be a floating-point torch.Tensor of shape (B, 2, V, 3)")
    if vertices.ndim != 4 or vertices.shape[1] != 2 or vertices.shape[3] != 3:
        raise InputError(f"vertices must have shape (B, 2, V, 3), got {tuple(vertices.shape)}")
    if vertices.shape[0] == 0:
        raise InputError("empty batch (B = 0)")
    faces = torch.as_tensor(faces)
    if faces.ndim != 3 or faces.shape[0] != 2 or faces.shape[2] != 3 or faces.dtype.is_floating_point:
        raise InputError(f"faces must be an integer tensor of shape (2, F, 3), got {tuple(faces.shape)} {faces.dtype}")
    V = vertices.shape[2]
    if faces.numel() == 0 or int(faces.min()) < 0 or int(faces.max()) >= V:
        raise InputError(f"faces index outside [0, {V})")
    if not bool(torch.isfinite(vertices).all()):
        raise InputError("vertices contain NaN or inf values")
    with torch.no_grad():
        t = vertices.detach()[:, torch.arange(2)[:, None, None], faces.long()]  # (B, 2, F, 3, 3)
        area2 = torch.linalg.cross(t[..., 1, :] - t[..., 0, :], t[..., 2, :] - t[..., 0, :]).norm(dim=-1)
        bad = area2 < 2 * MIN_FACE_AREA
    if bool(bad.any()):
        b, h, f = (int(i) for i in torch.nonzero(bad)[0])
        raise InputError(f"degenerate mesh: face {f} of hand {h} in sample {b} has (near) zero area")


@dataclass
class PenetrationQuery:
    """Penetrating vertices found without gradient (flat lists over the batch).

    Attributes:
        batch, hand, vertex: ``(N,)`` indices of each penetrating vertex (``hand`` = the hand the
            vertex belongs to; it penetrates hand ``1 - hand``).
        face: ``(N,)`` index of the closest triangle of the other hand.
    """

    batch: Tensor
    hand: Tensor
    vertex: Tensor
    face: Tensor


#: Margin (m) around the overlap of the two bounding boxes within which the other hand's faces are
#: searched first; vertices farther than this from every searched face are queried against the
#: whole mesh (so the result is exact either way).
SEARCH_MARGIN = 0.02
#: Search the near faces first only when they are fewer than this fraction of all faces.
NEAR_FRACTION = 0.6
#: Diagonal directions of the k-DOP pre-filter (with the box axes and each mesh's principal axes).
_DOP_DIAGONALS = np.array([[1, 1, 0], [1, -1, 0], [1, 0, 1], [1, 0, -1], [0, 1, 1], [0, 1, -1],
                           [1, 1, 1], [1, 1, -1], [1, -1, 1], [1, -1, -1]], dtype=np.float64).T
#: Slack (m) of the k-DOP test, far above the rounding of a projection: the filter stays conservative.
_DOP_SLACK = 1e-12


def _inside_dop(points: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """``(A, P)`` bool: False where ``points (A, P, 3)`` lie outside the k-DOP of ``mesh (A, V, 3)``
    (slabs along 10 diagonals and the mesh's 3 principal axes), so outside its convex hull and hence
    outside the closed surface; dropping those points before the search changes no result."""
    x = mesh - mesh.mean(1, keepdims=True)
    axes = np.linalg.eigh(x.transpose(0, 2, 1) @ x)[1]  # (A, 3, 3)
    dirs = np.concatenate([np.broadcast_to(_DOP_DIAGONALS, (len(mesh), 3, 10)), axes], 2)
    pm, pp = mesh @ dirs, points @ dirs  # (A, V, 13), (A, P, 13)
    return np.all((pp >= pm.min(1)[:, None] - _DOP_SLACK) & (pp <= pm.max(1)[:, None] + _DOP_SLACK), axis=2)


def boxes_overlap(vertices: Tensor) -> Tensor:
    """``(B,)`` bool: the two meshes' axis-aligned bounding boxes overlap (``vertices (B, 2, V, 3)``)."""
    lo, hi = vertices.min(2).values, vertices.max(2).values  # (B, 2, 3)
    return ((hi[:, 0] >= lo[:, 1]) & (hi[:, 1] >= lo[:, 0])).all(-1)


@functools.lru_cache(maxsize=8)
def _edge_neighbours(faces_bytes: bytes, n_faces: int) -> np.ndarray:
    """``(F, 3)``: the face across edge ``(f[i], f[i+1])`` of each face (closed manifold mesh)."""
    f = np.frombuffer(faces_bytes, dtype=np.int64).reshape(n_faces, 3)
    a, b = f.reshape(-1), np.roll(f, -1, axis=1).reshape(-1)
    key = np.minimum(a, b) * (int(f.max()) + 1) + np.maximum(a, b)
    order = np.argsort(key, kind="stable")
    ks = key[order]
    if ks.size % 2 or not np.all(ks[0::2] == ks[1::2]):
        raise InputError("mesh is not closed and manifold: every edge must be shared by exactly two faces")
    nb = np.empty(key.size, dtype=np.int64)
    nb[order[0::2]] = order[1::2] // 3
    nb[order[1::2]] = order[0::2] // 3
    return nb.reshape(n_faces, 3)


def pseudo_normal_inside(
    p: np.ndarray, c: np.ndarray, fi: np.ndarray, v: np.ndarray, f: np.ndarray, mesh: np.ndarray | None = None
) -> np.ndarray:
    """Inside test from the closest point ``c`` on face ``fi`` (``(n,)`` indices into ``f``) using the
    pseudo-normal of the closest feature: the face normal in the interior, the sum of the two face
    normals on an edge, the angle-weighted vertex normal at a corner (Baerentzen & Aanaes, 2005).
    ``p`` is inside when ``(p - c) . n < 0``.

    Args:
        p: ``(n, 3)`` query points; c: ``(n, 3)`` their closest points on the closed, outward-oriented
            mesh ``v (V, 3)``, ``f (F, 3)``; fi: ``(n,)`` the faces of ``c``.
        mesh: for many meshes sharing ``f`` at once: ``v`` is ``(M, V, 3)`` and ``mesh (n,)`` names the
            mesh of each point (the same arithmetic per point as one mesh at a time).

    Returns:
        ``(n,)`` bool, True inside.
    """
    if mesh is None:
        v, mesh = np.asarray(v)[None], np.zeros(len(fi), dtype=np.int64)
    tri = v[mesh[:, None], f[fi]]  # (n, 3, 3)
    bary, zero = _barycentrics(tri, c)
    n = _corner_normals(tri)
    at_vertex = zero.sum(1) >= 2
    on_edge = (zero.sum(1) == 1)
    if on_edge.any():  # edge i joins corners i and i + 1, i.e. corner i + 2 has zero weight
        nb = _edge_neighbours(np.ascontiguousarray(f).tobytes(), len(f))
        e = (np.argmax(zero[on_edge], axis=1) + 1) % 3
        n[on_edge] += _corner_normals(v[mesh[on_edge][:, None], f[nb[fi[on_edge], e]]])
    if at_vertex.any():
        corner = f[fi[at_vertex], np.argmax(bary[at_vertex], axis=1)]
        n[at_vertex] = _vertex_pseudo_normals(v, f, corner, mesh[at_vertex])
    return ((p - c) * n).sum(1) < 0


def _barycentrics(tri: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric weights ``(n, 3)`` of the points ``c (n, 3)`` on the triangles ``tri (n, 3, 3)``
    and which of them are (numerically) zero: the closest feature is an edge or a corner."""
    a, b, cc = tri[:, 0], tri[:, 1], tri[:, 2]
    v0, v1, v2 = b - a, cc - a, c - a
    d00, d01, d11 = (v0 * v0).sum(1), (v0 * v1).sum(1), (v1 * v1).sum(1)
    d20, d21 = (v2 * v0).sum(1), (v2 * v1).sum(1)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-300)
    w1 = (d11 * d20 - d01 * d21) / den
    w2 = (d00 * d21 - d01 * d20) / den
    bary = np.stack([1.0 - w1 - w2, w1, w2], 1)
    return bary, bary < 1e-9


def _corner_normals(t: np.ndarray) -> np.ndarray:
    """Unit normals ``(n, 3)`` of triangles given by their corners ``t (n, 3, 3)`` (the arithmetic of
    :func:`ihmr.geometry.mesh.face_normals`)."""
    n = np.cross(t[..., 1, :] - t[..., 0, :], t[..., 2, :] - t[..., 0, :])
    return n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-30)


@functools.lru_cache(maxsize=8)
def _incident_faces(faces_bytes: bytes, n_faces: int) -> tuple[np.ndarray, np.ndarray]:
    """Faces around each vertex in ascending order, padded with -1: ``(V, D)`` face ids and ``(V, D)``
    the vertex's corner in each."""
    f = np.frombuffer(faces_bytes, dtype=np.int64).reshape(n_faces, 3)
    rows, corner = np.nonzero(np.ones_like(f, dtype=bool))
    vid = f[rows, corner]
    order = np.argsort(vid, kind="stable")  # by vertex, then ascending face (row-major nonzero)
    vid, rows, corner = vid[order], rows[order], corner[order]
    counts = np.bincount(vid, minlength=int(f.max()) + 1)
    slot = np.arange(len(vid)) - np.repeat(np.cumsum(counts) - counts, counts)
    inc = np.full((len(counts), int(counts.max())), -1, dtype=np.int64)
    cor = np.zeros_like(inc)
    inc[vid, slot], cor[vid, slot] = rows, corner
    return inc, cor


def _vertex_pseudo_normals(v: np.ndarray, f: np.ndarray, ids: np.ndarray, mesh: np.ndarray) -> np.ndarray:
    """Angle-weighted normals ``(len(ids), 3)`` of vertices ``ids`` of meshes ``v[mesh]`` (``v (M, V, 3)``),
    summed over the incident faces in ascending order."""
    inc, cor = _incident_faces(np.ascontiguousarray(f).tobytes(), len(f))
    out = np.zeros((len(ids), 3))
    for k in range(inc.shape[1]):
        rows, corner = inc[ids, k], cor[ids, k]
        ok = rows >= 0
        if not ok.any():
            break
        t = v[mesh[ok][:, None], f[rows[ok]]]  # (m, 3, 3)
        i = np.arange(len(t))
        e1 = t[i, (corner[ok] + 1) % 3] - t[i, corner[ok]]
        e2 = t[i, (corner[ok] + 2) % 3] - t[i, corner[ok]]
        cosang = (e1 * e2).sum(-1) / np.maximum(np.linalg.norm(e1, axis=-1) * np.linalg.norm(e2, axis=-1), 1e-300)
        out[ok] += np.arccos(np.clip(cosang, -1.0, 1.0))[:, None] * _corner_normals(t)
    return out


@functools.lru_cache(maxsize=8)
def _unique_edges(faces_bytes: bytes, n_faces: int) -> Tensor:
    """``(E, 2)`` the distinct edges of the ``(F, 3)`` int64 faces given as bytes."""
    f = torch.as_tensor(np.frombuffer(faces_bytes, dtype=np.int64).reshape(n_faces, 3).copy())
    e = torch.stack([f, f.roll(1, dims=1)], -1).reshape(-1, 2)
    return torch.unique(torch.sort(e, dim=1).values, dim=0)


def find_penetrations(vertices: Tensor, faces: Tensor, trees: Optional[RigidTrees] = None) -> PenetrationQuery:
    """Locate, without gradient, every vertex inside the other hand and its closest triangle.

    Only vertices inside the overlap of the two bounding boxes can penetrate. Their closest points
    on the other surface come from libigl's AABB queries (first against the faces near the overlap,
    :data:`SEARCH_MARGIN`, when that is a small part of the mesh; otherwise, or for vertices farther
    than the margin, against the whole mesh), and they are classified inside/outside by the
    pseudo-normal of their closest feature, which is exact on closed manifold meshes.

    Vertices outside the other hand's k-DOP (outside its convex hull) are dropped before the
    queries (each query point's answer does not depend on the others). Only the libigl queries
    run one mesh at a time; the filters and the inside test run on the whole batch at once. The result is identical, pair for pair and in the same order, to the
    previous per-sample loop (``_find_penetrations_loop``, kept for the tests and the benchmark).

    Args:
        vertices: ``(B, 2, V, 3)``.
        faces: ``(2, F, 3)`` closed, outward oriented.
        trees: optional :class:`~ihmr.collision.trees.RigidTrees` of the same hands in their current
            pose: the closest points then come from its trees (built once) instead of new ones.
    """
    f = igl_faces(faces)
    vt = vertices.detach()
    active = torch.nonzero(boxes_overlap(vt)).flatten()
    if active.numel() == 0:
        return PenetrationQuery(*(torch.zeros(0, dtype=torch.long) for _ in range(4)))
    with torch.no_grad():  # longest edge per mesh, (A, 2): the same norms as over the faces' edges
        edge_len = torch.stack([
            (lambda e: (vt[active, h][:, e[:, 0]] - vt[active, h][:, e[:, 1]]).norm(dim=-1).max(1).values)(
                _unique_edges(f[h].tobytes(), len(f[h]))) for h in range(2)], 1).double().cpu().numpy()
    act = active.numpy()
    v = vt[active].to(torch.float64).cpu().numpy()  # (A, 2, V, 3)
    lo = np.maximum(v[:, 0].min(1), v[:, 1].min(1))  # (A, 3)
    hi = np.minimum(v[:, 0].max(1), v[:, 1].max(1))
    parts = []  # (key = 2 * sample + hand, mesh row, vertex ids, closest points, faces, query points)
    for h in range(2):
        fo = f[1 - h]
        inbox = np.all((v[:, h] >= lo[:, None]) & (v[:, h] <= hi[:, None]), axis=2)  # (A, V)
        inbox &= _inside_dop(v[:, h], v[:, 1 - h])
        reach = SEARCH_MARGIN + edge_len[:, 1 - h]
        vnear = np.all((v[:, 1 - h] >= (lo - reach[:, None])[:, None]) & (v[:, 1 - h] <= (hi + reach[:, None])[:, None]), axis=2)
        near_mask = vnear[:, fo].any(2)  # (A, F)
        n_near = near_mask.sum(1)
        for i in np.flatnonzero(inbox.any(1)):
            cand = np.flatnonzero(inbox[i])
            other = np.ascontiguousarray(v[i, 1 - h])
            q = np.ascontiguousarray(v[i, h, cand])
            c = np.zeros((cand.size, 3))
            face_idx = np.zeros(cand.size, np.int64)
            far = np.ones(cand.size, bool)
            if trees is not None:
                _, face_idx, c = trees.query(int(act[i]), 1 - h, q)
                far[:] = False
            elif 0 < n_near[i] < NEAR_FRACTION * len(fo):
                near = np.flatnonzero(near_mask[i])
                d2, i_sub, c_sub = igl.point_mesh_squared_distance(q, other, np.ascontiguousarray(fo[near]))
                far = np.asarray(d2).reshape(-1) > SEARCH_MARGIN**2
                face_idx[~far] = near[np.asarray(i_sub).reshape(-1)[~far]]
                c[~far] = np.asarray(c_sub)[~far]
            if far.any():  # the whole mesh: exact for every point
                _, fi2, c2 = igl.point_mesh_squared_distance(np.ascontiguousarray(q[far]), other, fo)
                face_idx[far] = np.asarray(fi2).reshape(-1)
                c[far] = np.asarray(c2)
            parts.append((2 * int(act[i]) + h, i, cand, c, face_idx, q))
    if not parts:
        return PenetrationQuery(*(torch.zeros(0, dtype=torch.long) for _ in range(4)))
    hand = np.concatenate([np.full(len(x[2]), x[0] % 2) for x in parts])
    row = np.concatenate([np.full(len(x[2]), x[1]) for x in parts])
    cand, c, face_idx, q = (np.concatenate([x[k] for x in parts]) for k in (2, 3, 4, 5))
    inside = np.zeros(len(cand), bool)
    for h in range(2):  # hand h's vertices against hand 1 - h, all samples at once
        m = hand == h
        if m.any():
            inside[m] = pseudo_normal_inside(q[m], c[m], face_idx[m], v[:, 1 - h], f[1 - h], mesh=row[m])
    key = np.concatenate([np.full(len(x[2]), x[0]) for x in parts])[inside]
    order = np.argsort(key, kind="stable")  # sample, then hand: the previous loop's order
    return PenetrationQuery(
        batch=torch.as_tensor(act[row[inside]][order], dtype=torch.long),
        hand=torch.as_tensor(hand[inside][order], dtype=torch.long),
        vertex=torch.as_tensor(cand[inside][order], dtype=torch.long),
        face=torch.as_tensor(face_idx[inside][order], dtype=torch.long),
    )


def _pseudo_normal_inside_loop(p: np.ndarray, c: np.ndarray, fi: np.ndarray, v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """The previous :func:`pseudo_normal_inside` (one mesh), used by ``_find_penetrations_loop``.

    Inside test from the closest point ``c`` on face ``fi`` (``(n,)`` indices into ``f``) using the
    pseudo-normal of the closest feature: the face normal in the interior, the sum of the two face
    normals on an edge, the angle-weighted vertex normal at a corner (Baerentzen & Aanaes, 2005).
    ``p`` is inside when ``(p - c) . n < 0``.

    Args:
        p: ``(n, 3)`` query points; c: ``(n, 3)`` their closest points on the closed, outward-oriented
            mesh ``v (V, 3)``, ``f (F, 3)``; fi: ``(n,)`` the faces of ``c``.

    Returns:
        ``(n,)`` bool, True inside.
    """
    tri = v[f[fi]]  # (n, 3, 3)
    bary, zero = _barycentrics(tri, c)
    n = face_normals(v, f[fi])
    at_vertex = zero.sum(1) >= 2
    on_edge = (zero.sum(1) == 1)
    if on_edge.any():  # edge i joins corners i and i + 1, i.e. corner i + 2 has zero weight
        nb = _edge_neighbours(np.ascontiguousarray(f).tobytes(), len(f))
        e = (np.argmax(zero[on_edge], axis=1) + 1) % 3
        n[on_edge] += face_normals(v, f[nb[fi[on_edge], e]])
    if at_vertex.any():
        corner = f[fi[at_vertex], np.argmax(bary[at_vertex], axis=1)]
        n[at_vertex] = _vertex_pseudo_normals_loop(v, f, corner)
    return ((p - c) * n).sum(1) < 0


def _vertex_pseudo_normals_loop(v: np.ndarray, f: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Angle-weighted normals ``(len(ids), 3)`` of vertices ``ids`` (repeats allowed)."""
    uid, inv = np.unique(ids, return_inverse=True)
    rows, corner = np.nonzero(np.isin(f, uid))
    t = v[f[rows]]
    k = np.arange(len(rows))
    e1 = t[k, (corner + 1) % 3] - t[k, corner]
    e2 = t[k, (corner + 2) % 3] - t[k, corner]
    cosang = (e1 * e2).sum(-1) / np.maximum(np.linalg.norm(e1, axis=-1) * np.linalg.norm(e2, axis=-1), 1e-300)
    w = np.arccos(np.clip(cosang, -1.0, 1.0))[:, None] * face_normals(v, f[rows])
    out = np.zeros((len(uid), 3))
    np.add.at(out, np.searchsorted(uid, f[rows, corner]), w)
    return out[inv]


def _find_penetrations_loop(vertices: Tensor, faces: Tensor) -> PenetrationQuery:
    """The previous :func:`find_penetrations` (one sample at a time throughout), the reference of
    the tests and of ``benchmarks/bench_refine_speed.py``.

    Locate, without gradient, every vertex inside the other hand and its closest triangle.

    Only vertices inside the overlap of the two bounding boxes can penetrate. Their closest points
    on the other surface come from libigl's AABB queries (first against the faces near the overlap,
    :data:`SEARCH_MARGIN`, when that is a small part of the mesh; otherwise, or for vertices farther
    than the margin, against the whole mesh), and they are classified inside/outside by the
    pseudo-normal of their closest feature, which is exact on closed manifold meshes.

    Args:
        vertices: ``(B, 2, V, 3)``.
        faces: ``(2, F, 3)`` closed, outward oriented.
    """
    v = vertices.detach().to(torch.float64).cpu().numpy()
    f = igl_faces(faces)
    out = {k: [] for k in ("batch", "hand", "vertex", "face")}
    active = torch.nonzero(boxes_overlap(vertices.detach())).flatten()
    if active.numel() == 0:
        return PenetrationQuery(*(torch.zeros(0, dtype=torch.long) for _ in range(4)))
    with torch.no_grad():  # longest edge per mesh, (B, 2)
        vt = vertices.detach()
        edge_len = torch.zeros(vt.shape[:2], dtype=torch.float64)
        for h in range(2):
            fh = torch.as_tensor(f[h])
            e = vt[active, h][:, fh] - vt[active, h][:, fh.roll(1, dims=1)]
            edge_len[active, h] = e.norm(dim=-1).flatten(1).max(1).values.double().cpu()
    edge_len = edge_len.numpy()
    for b in active.tolist():  # libigl works one mesh at a time
        lo = np.maximum(v[b, 0].min(0), v[b, 1].min(0))
        hi = np.minimum(v[b, 0].max(0), v[b, 1].max(0))
        for h in range(2):
            other = np.ascontiguousarray(v[b, 1 - h])
            fo = f[1 - h]
            cand = np.flatnonzero(np.all((v[b, h] >= lo) & (v[b, h] <= hi), axis=1))
            if cand.size == 0:
                continue
            q = np.ascontiguousarray(v[b, h, cand])
            # Faces near the overlap: all their corners lie within the margin plus one edge length.
            reach = SEARCH_MARGIN + edge_len[b, 1 - h]
            vnear = np.all((other >= lo - reach) & (other <= hi + reach), axis=1)
            near = np.flatnonzero(vnear[fo].any(1))
            c = np.zeros((cand.size, 3))
            face_idx = np.zeros(cand.size, np.int64)
            far = np.ones(cand.size, bool)
            if 0 < near.size < NEAR_FRACTION * len(fo):
                d2, i_sub, c_sub = igl.point_mesh_squared_distance(q, other, np.ascontiguousarray(fo[near]))
                far = np.asarray(d2).reshape(-1) > SEARCH_MARGIN**2
                face_idx[~far] = near[np.asarray(i_sub).reshape(-1)[~far]]
                c[~far] = np.asarray(c_sub)[~far]
            if far.any():  # the whole mesh: exact for every point
                _, fi2, c2 = igl.point_mesh_squared_distance(np.ascontiguousarray(q[far]), other, fo)
                face_idx[far] = np.asarray(fi2).reshape(-1)
                c[far] = np.asarray(c2)
            inside = _pseudo_normal_inside_loop(q, c, face_idx, other, fo)
            if not inside.any():
                continue
            n = int(inside.sum())
            out["batch"].append(np.full(n, b))
            out["hand"].append(np.full(n, h))
            out["vertex"].append(cand[inside])
            out["face"].append(face_idx[inside])
    return PenetrationQuery(**{
        k: torch.as_tensor(np.concatenate(x) if x else np.zeros(0), dtype=torch.long) for k, x in out.items()
    })


def penetration_depths(vertices: Tensor, faces: Tensor, check: bool = True) -> Tensor:
    """Exact penetration depth of every vertex into the other hand.

    Args:
        vertices: ``(B, 2, V, 3)`` metres (hand 0 = right, 1 = left; any closed meshes work).
        faces: ``(2, F, 3)`` closed, outward-oriented triangles of each mesh.
        check: validate the input (shapes, finite values, degenerate faces).

    Returns:
        ``(B, 2, V)`` depths in metres: entry ``[b, h, v]`` is how deep vertex ``v`` of hand ``h`` is
        inside hand ``1 - h`` (0 outside). Differentiable with respect to ``vertices`` (both the
        penetrating vertex and the other hand's closest triangle receive gradients).
    """
    if check:
        check_pair_input(vertices, faces)
    faces = torch.as_tensor(faces, device=vertices.device).long()
    q = find_penetrations(vertices, faces)
    depth = vertices.new_zeros(vertices.shape[:3])
    if q.batch.numel() == 0:
        return depth + 0.0 * vertices.sum(-1)  # keep the graph: exactly zero gradient
    p = vertices[q.batch, q.hand, q.vertex]  # (N, 3)
    tri = faces[1 - q.hand, q.face]  # (N, 3) vertex ids in the other hand
    other = 1 - q.hand
    a = vertices[q.batch, other, tri[:, 0]]
    b = vertices[q.batch, other, tri[:, 1]]
    c = vertices[q.batch, other, tri[:, 2]]
    closest = closest_point_on_triangle(p, a, b, c)
    d2 = ((p - closest) ** 2).sum(-1)
    d = torch.sqrt(d2.clamp_min(1e-24))
    return depth.index_put((q.batch, q.hand, q.vertex), d)
