"""Small triangle-mesh utilities: boundary loops, hole capping, closedness, volume (numpy), and
batched vertex normals (torch).

Faces are ``(F, 3)`` integer arrays of vertex indices, counter-clockwise seen from outside
(outward normals); vertices are ``(V, 3)`` float arrays (metres).
"""

from __future__ import annotations

import numpy as np
import torch

from ihmr.errors import InputError

__all__ = [
    "boundary_loops",
    "cap_holes",
    "min_area_triangulation",
    "is_watertight",
    "face_normals",
    "face_areas",
    "signed_volume",
    "vertex_normals",
]


def _check_faces(faces: np.ndarray) -> np.ndarray:
    faces = np.asarray(faces)
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise InputError(f"faces must be an integer (F, 3) array, got {faces.dtype} {faces.shape}")
    if faces.size and int(faces.min()) < 0:
        raise InputError("faces contain negative vertex indices")
    return faces.astype(np.int64, copy=False)


def _directed_edges(faces: np.ndarray) -> np.ndarray:
    """``(3F, 2)`` directed half-edges (a -> b) of the faces."""
    return np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])


def boundary_loops(faces: np.ndarray) -> list[np.ndarray]:
    """Ordered vertex loops of the boundary of a consistently oriented mesh.

    A boundary half-edge is a face edge ``a -> b`` whose twin ``b -> a`` belongs to no face.
    Each loop follows the direction of those half-edges (``loop[i] -> loop[(i + 1) % n]`` is an
    edge of some face); loops start at their smallest vertex index and are sorted by it.

    Args:
        faces: ``(F, 3)`` consistently oriented triangles.

    Returns:
        list of ``(n_loop,)`` int64 arrays (empty for a closed mesh).

    Raises:
        InputError: on a non-manifold boundary (a vertex with several outgoing boundary edges).
    """
    faces = _check_faces(faces)
    if faces.size == 0:
        return []
    he = _directed_edges(faces)
    V = int(faces.max()) + 1
    key = he[:, 0] * V + he[:, 1]
    twin = he[:, 1] * V + he[:, 0]
    boundary = he[~np.isin(key, twin)]
    if boundary.size == 0:
        return []
    nxt: dict[int, int] = {}
    for a, b in boundary.tolist():
        if a in nxt:
            raise InputError(f"non-manifold boundary at vertex {a} (several outgoing boundary edges)")
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
                raise InputError(f"open boundary chain at vertex {v} (inconsistent face orientation?)")
            v = nxt[v]
        if v != start:
            raise InputError(f"boundary chain from vertex {start} does not close (non-manifold boundary)")
        loops.append(np.array(loop, dtype=np.int64))
    return loops


def min_area_triangulation(points: np.ndarray, forbidden: np.ndarray | None = None) -> list[tuple[int, int, int]]:
    """Triangulate a closed polygon (``(n, 3)``, possibly non-planar) minimising the total area.

    Dynamic programming over sub-polygons (O(n^3) work, vectorised over the apex). ``forbidden``
    is an optional ``(n, n)`` boolean matrix of diagonals that must not be used (e.g. edges that
    already exist in the mesh, which would become non-manifold). Returns index triples
    ``(i, k, j)`` with ``i < k < j`` into ``points``.

    Raises:
        InputError: when every triangulation uses a forbidden diagonal.
    """
    n = len(points)
    P = np.asarray(points, dtype=np.float64)
    bad = np.zeros((n, n), dtype=bool) if forbidden is None else np.asarray(forbidden, dtype=bool)
    pen = np.where(bad | bad.T, np.inf, 0.0)
    idx = np.arange(n)
    pen[idx[:-1], idx[1:]] = 0.0  # polygon sides are never diagonals
    pen[0, n - 1] = 0.0
    cost = np.zeros((n, n))
    split = np.zeros((n, n), dtype=np.int64)
    for gap in range(2, n):
        for i in range(0, n - gap):
            j = i + gap
            k = np.arange(i + 1, j)
            area = 0.5 * np.linalg.norm(np.cross(P[k] - P[i], P[j] - P[i]), axis=1)
            c = cost[i, k] + cost[k, j] + area + pen[i, k] + pen[k, j]
            a = int(np.argmin(c))
            cost[i, j], split[i, j] = c[a], k[a]
    if not np.isfinite(cost[0, n - 1]):
        raise InputError("every triangulation of the hole uses an edge that already exists in the mesh")
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

    Each cap is the minimum-area triangulation of its loop (so for a planar loop it lies in the
    loop's plane), never reusing an edge that already exists in the mesh (which would make it
    non-manifold), and is oriented opposite to the loop's boundary half-edges, i.e. consistently
    with the surrounding faces: a consistently oriented open surface becomes a closed one with
    the same orientation (watertight; outward stays outward).

    Args:
        vertices: ``(V, 3)``.
        faces: ``(F, 3)`` consistently oriented.

    Returns:
        ``(F + sum(n_loop - 2), 3)`` int64 faces: the input faces followed by the caps.

    Raises:
        InputError: bad shapes, a non-manifold boundary, or a loop that cannot be capped.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    faces = _check_faces(faces)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise InputError(f"vertices must be (V, 3), got {vertices.shape}")
    if faces.size and int(faces.max()) >= len(vertices):
        raise InputError(f"faces index vertex {int(faces.max())} of only {len(vertices)}")
    loops = boundary_loops(faces)
    if not loops:
        return faces.copy()
    e = _directed_edges(faces)
    V = len(vertices)
    existing = np.unique(np.minimum(e[:, 0], e[:, 1]) * V + np.maximum(e[:, 0], e[:, 1]))
    caps = []
    for loop in loops:
        n = len(loop)
        if n < 3:
            raise InputError(f"boundary loop with {n} vertices cannot be capped")
        a, b = np.meshgrid(loop, loop, indexing="ij")
        forbidden = np.isin(np.minimum(a, b) * V + np.maximum(a, b), existing)
        for i, k, j in min_area_triangulation(vertices[loop], forbidden):
            # Boundary half-edges run loop[i] -> loop[i+1]; the cap's half-edges must run backwards.
            caps.append((loop[j], loop[k], loop[i]))
    return np.concatenate([faces, np.array(caps, dtype=np.int64)])


def is_watertight(faces: np.ndarray) -> bool:
    """Closed, edge-manifold and consistently oriented.

    True iff every directed half-edge occurs once and its twin occurs too (so each undirected edge
    is shared by exactly two faces that traverse it in opposite directions). False for no faces.
    """
    faces = _check_faces(faces)
    if faces.size == 0:
        return False
    he = _directed_edges(faces)
    V = int(faces.max()) + 1
    key = he[:, 0] * V + he[:, 1]
    if np.unique(key).size != key.size:  # a half-edge used twice: inconsistent or non-manifold
        return False
    twin = he[:, 1] * V + he[:, 0]
    return bool(np.isin(twin, key).all())


def face_normals(vertices: np.ndarray, faces: np.ndarray, normalize: bool = True) -> np.ndarray:
    """``(..., F, 3)`` face normals of ``(..., V, 3)`` vertices (unit, or twice-area-weighted when
    ``normalize=False``); degenerate faces get a zero normal."""
    t = np.asarray(vertices)[..., np.asarray(faces), :]
    n = np.cross(t[..., 1, :] - t[..., 0, :], t[..., 2, :] - t[..., 0, :])
    if normalize:
        n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-30)
    return n


def face_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(..., F)`` triangle areas (m^2)."""
    return 0.5 * np.linalg.norm(face_normals(vertices, faces, normalize=False), axis=-1)


def signed_volume(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """``(...)`` enclosed volume (m^3) of a closed mesh: positive when outward oriented, negative
    when inward (independent of the origin only for closed meshes)."""
    t = np.asarray(vertices)[..., np.asarray(faces), :]
    return np.einsum("...i,...i->...", t[..., 0, :], np.cross(t[..., 1, :], t[..., 2, :])).sum(-1) / 6.0


_INCIDENT: dict = {}


def _incident_faces(faces: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The faces around the vertices ``ids`` (cached per mesh and vertex set): ``(U, 3)`` the
    distinct ones (with a degenerate ``[0, 0, 0]`` for the padding when some vertex has fewer
    than the most), and ``(len(ids), K)`` for each vertex its faces as rows of that array in
    increasing face order."""
    f = faces.cpu().long()
    key = (f.numpy().tobytes(), ids.cpu().long().numpy().tobytes())
    if key in _INCIDENT:
        return _INCIDENT[key]
    fid = torch.arange(f.shape[0]).repeat_interleave(3)
    vid = f.reshape(-1)
    pos = torch.full((int(vid.max()) + 1,), -1, dtype=torch.long)
    pos[ids.cpu()] = torch.arange(len(ids))
    keep = pos[vid] >= 0
    row, col_face = pos[vid[keep]], fid[keep]
    order = torch.argsort(row, stable=True)
    row, col_face = row[order], col_face[order]
    counts = torch.bincount(row, minlength=len(ids))
    start = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(row)) - start[row]
    out = torch.full((len(ids), max(int(counts.max()), 1)), f.shape[0], dtype=torch.long)
    out[row, slot] = col_face
    used, inc = torch.unique(out, return_inverse=True)
    res = (torch.cat([f, f.new_zeros(1, 3)])[used], inc)
    if len(_INCIDENT) > 16:
        _INCIDENT.clear()
    _INCIDENT[key] = res
    return res


def vertex_normals(vertices: torch.Tensor, faces: torch.Tensor, ids: torch.Tensor | None = None) -> torch.Tensor:
    """Area-weighted unit vertex normals of ``vertices (B, V, 3)`` with ``faces (F, 3)`` (torch,
    differentiable): ``(B, V, 3)``, or ``(B, len(ids), 3)`` for the vertices ``ids`` only (only
    their faces are visited, each once). Vertices in no face get a zero normal."""
    f = torch.as_tensor(faces, device=vertices.device).long()
    inc = None
    if ids is not None:
        f, inc = (x.to(vertices.device) for x in _incident_faces(f, torch.as_tensor(ids)))
    t = vertices.index_select(-2, f.reshape(-1)).unflatten(-2, (f.shape[0], 3))  # (B, F, 3, 3)
    fn = torch.linalg.cross(t[..., 1, :] - t[..., 0, :], t[..., 2, :] - t[..., 0, :])  # |fn| = 2 area
    if inc is not None:
        n = fn.index_select(-2, inc.reshape(-1)).unflatten(-2, inc.shape).sum(-2)
    else:
        n = vertices.new_zeros(vertices.shape)
        for k in range(3):  # three corners: a fixed, tiny loop
            n = n.index_add(1, f[:, k], fn)
    return n / n.norm(dim=-1, keepdim=True).clamp_min(1e-12)
