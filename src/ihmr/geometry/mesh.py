"""Small triangle-mesh utilities (numpy): boundary loops, hole capping, closedness, volume.

Faces are ``(F, 3)`` integer arrays of vertex indices, counter-clockwise seen from outside
(outward normals); vertices are ``(V, 3)`` float arrays (metres).
"""

from __future__ import annotations

import numpy as np

from ihmr.errors import InputError

__all__ = [
    "boundary_loops",
    "cap_holes",
    "is_watertight",
    "face_normals",
    "face_areas",
    "signed_volume",
]


def _directed_edges(faces: np.ndarray) -> np.ndarray:
    """``(3F, 2)`` directed half-edges (a -> b) of the faces."""
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered vertex loops of the boundary of a consistently oriented mesh.

    Each loop follows the direction of the boundary half-edges of the existing faces
    (``loop[i] -> loop[i + 1]`` is an edge of some face).

    Raises:
        InputError: on a non-manifold boundary (a vertex with several outgoing boundary edges).
    """
    faces = np.asarray(faces)
    he = _directed_edges(faces)
    V = int(faces.max()) + 1
    key = he[:, 0].astype(np.int64) * V + he[:, 1]
    twin = he[:, 1].astype(np.int64) * V + he[:, 0]
    boundary = he[~np.isin(key, twin)]
    if boundary.size == 0:
        return []
    nxt = {}
    for a, b in boundary.tolist():
        if a in nxt:
            raise InputError(f"non-manifold boundary at vertex {a}")
        nxt[a] = b
    loops, seen = [], set()
    for start in sorted(nxt):
        if start in seen:
            continue
        loop, v = [], start
        while v not in seen:
            seen.add(v)
            loop.append(v)
            if v not in nxt:
                raise InputError(f"open boundary chain at vertex {v}")
            v = nxt[v]
        loops.append(np.array(loop, dtype=np.int64))
    return loops


def _min_area_triangulation(points: np.ndarray) -> list[tuple[int, int, int]]:
    """Triangulate a closed polygon (``(n, 3)``, possibly non-planar) minimising total area.

    Dynamic programming over sub-polygons (O(n^3), n = loop length). Returns index triples
    ``(i, k, j)`` with ``i < k < j`` into ``points``.
    """
    n = len(points)
    cost = np.zeros((n, n))
    split = np.zeros((n, n), dtype=np.int64)

    def area(i: int, k: int, j: int) -> float:
        return 0.5 * float(np.linalg.norm(np.cross(points[k] - points[i], points[j] - points[i])))

    for gap in range(2, n):
        for i in range(0, n - gap):
            j = i + gap
            best, arg = np.inf, -1
            for k in range(i + 1, j):
                c = cost[i, k] + cost[k, j] + area(i, k, j)
                if c < best:
                    best, arg = c, k
            cost[i, j], split[i, j] = best, arg
    tris: list[tuple[int, int, int]] = []
    stack = [(0, n - 1)]
    while stack:
        i, j = stack.pop()
        if j - i < 2:
            continue
        k = int(split[i, j])
        tris.append((i, k, j))
        stack += [(i, k), (k, j)]
    return tris


def cap_holes(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Close every boundary loop with triangles over existing vertices (no vertex is added).

    The caps are minimum-area triangulations of the loops, oriented consistently with the
    surrounding faces, so a consistently oriented open surface becomes a closed one.

    Args:
        vertices: ``(V, 3)``.
        faces: ``(F, 3)`` consistently oriented.

    Returns:
        ``(F + sum(n_loop - 2), 3)`` faces: the input faces followed by the caps.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    caps = []
    for loop in boundary_loops(faces):
        if len(loop) < 3:
            raise InputError(f"boundary loop with {len(loop)} vertices cannot be capped")
        for i, k, j in _min_area_triangulation(vertices[loop]):
            # Boundary half-edges run loop[i] -> loop[i+1]; caps must use the opposite direction.
            caps.append((loop[j], loop[k], loop[i]))
    if not caps:
        return faces.copy()
    return np.concatenate([faces, np.array(caps, dtype=np.int64)])


def is_watertight(faces: np.ndarray) -> bool:
    """Every undirected edge is shared by exactly two faces, with opposite directions."""
    faces = np.asarray(faces, dtype=np.int64)
    he = _directed_edges(faces)
    V = int(faces.max()) + 1
    key = he[:, 0] * V + he[:, 1]
    if np.unique(key).size != key.size:  # a half-edge used twice: inconsistent or non-manifold
        return False
    twin = he[:, 1] * V + he[:, 0]
    return bool(np.isin(twin, key).all())


def face_normals(vertices: np.ndarray, faces: np.ndarray, normalize: bool = True) -> np.ndarray:
    """``(..., F, 3)`` face normals (unit, or area-weighted x2 when ``normalize=False``)."""
    t = np.asarray(vertices)[..., np.asarray(faces), :]
    n = np.cross(t[..., 1, :] - t[..., 0, :], t[..., 2, :] - t[..., 0, :])
    if normalize:
        n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-30)
    return n


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(..., F)`` triangle areas."""
    return 0.5 * np.linalg.norm(face_normals(vertices, faces, normalize=False), axis=-1)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(...)`` enclosed volume of a closed mesh (positive when outward oriented)."""
    t = np.asarray(vertices)[..., np.asarray(faces), :]
    return np.einsum("...i,...i->...", t[..., 0, :], np.cross(t[..., 1, :], t[..., 2, :])).sum(-1) / 6.0
