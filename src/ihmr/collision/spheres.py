"""A fast collision proxy: each hand as a union of inscribed spheres (our addition).

The exact penetration (:mod:`ihmr.collision.exact`) costs a few milliseconds per pair on a CPU,
which is too slow for the learned refiners (hundreds of samples per second, each verified after
every factor). The proxy represents the *other* hand by ``M`` spheres inscribed in its surface and
queries ``S`` of this hand's vertices against them, all as batched tensor arithmetic:

- Sphere ``j`` of a hand sits at ``c_j = v_j - r_j n_j`` (an anchor vertex ``v_j`` moved inwards
  along its vertex normal ``n_j``) with ``r_j`` the radius of the largest ball inside the rest
  surface that touches it at ``v_j`` (shrinking-ball construction on the template), scaled per
  sample with the hand's size. The balls lie inside the hand, so a vertex inside one of the other
  hand's balls is inside the other hand: the proxy depth ``max_j (r_j - |p - c_j|)+`` is a lower
  bound of the exact depth (up to skinning distortions) and equals it where a ball touches the
  surface at the point nearest to ``p``.
- :func:`sphere_penetration` returns per-query depths ``(B, 2, S)`` and is differentiable with
  respect to the vertices; :func:`proxy_collision` sums them into a per-sample collision error
  rescaled to all ``V`` vertices, comparable in size with Eq. 7 on exact depths.

The proxy misses penetrations shallower than the gap between a ball and the surface (thin
crevices between spheres), so it is used where speed matters (the MLP refiners' training loss and
verification); reported metrics (AVE-P / MAX-P) always use exact depths.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Literal, Optional

import numpy as np
import torch
from torch import Tensor

from ihmr.collision.exact import boxes_overlap
from ihmr.errors import InputError
from ihmr.geometry.mesh import vertex_normals
from ihmr.joint_order import MANO21_PARENTS

__all__ = ["SphereProxy", "build_sphere_proxy", "sphere_penetration", "sphere_gap", "proxy_collision"]

#: Radius bounds (m) of the inscribed balls: the lower one keeps thin parts (fingertips, nails)
#: represented, the upper one caps balls in flat regions where the estimate is unreliable.
MIN_RADIUS, MAX_RADIUS = 0.002, 0.015
#: Queries and spheres per group of the search in :func:`sphere_penetration`.
QUERY_LEAF, ANCHOR_LEAF = 8, 8
#: Slack (m) of the group test: far above float rounding, far below the groups' sizes.
_GROUP_SLACK = 1e-5


@dataclass
class SphereProxy:
    """Sphere and query sets of one two-hand model (the same vertex ids for both hands).

    Attributes:
        anchors: ``(M,)`` int64 vertex ids of the sphere anchors.
        radius: ``(2, M)`` radii (m) for the template hands (right, left).
        queries: ``(S,)`` int64 vertex ids tested against the other hand's spheres.
        ref_size: ``(2,)`` template hand sizes (m; summed bone lengths) the radii belong to.
        num_vertices: ``V`` of the model.
        query_leaves, anchor_leaves: ``(G, L)`` int64 positions into ``queries`` / ``anchors``:
            small groups that lie close together on the template (:func:`_leaves`), each padded to
            ``L`` by repeating its first member, for the search of :func:`sphere_penetration`.
        query_valid, anchor_valid: ``(G, L)`` bool, False at the padding.
    """

    anchors: Tensor
    radius: Tensor
    queries: Tensor
    ref_size: Tensor
    num_vertices: int
    query_leaves: Tensor
    query_valid: Tensor
    anchor_leaves: Tensor
    anchor_valid: Tensor

    def to(self, dtype: Optional[torch.dtype] = None, device: Optional[torch.device | str] = None) -> "SphereProxy":
        """The proxy with its float tensors (radii, reference sizes) in ``dtype`` and every tensor on ``device``."""
        moved = {f.name: getattr(self, f.name).to(device) for f in fields(self) if isinstance(getattr(self, f.name), Tensor)}
        if dtype is not None:
            moved["radius"], moved["ref_size"] = moved["radius"].to(dtype), moved["ref_size"].to(dtype)
        return replace(self, **moved)

    def remap(self, anchors: Tensor, queries: Tensor, num_vertices: Optional[int] = None) -> "SphereProxy":
        """The same proxy with other vertex ids (e.g. positions in a subset of the mesh's vertices)."""
        return replace(self, anchors=anchors, queries=queries, num_vertices=num_vertices or self.num_vertices)


def _farthest_points(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    """``k`` indices of ``x (N, 3)`` by farthest-point sampling (deterministic for a seed)."""
    k = min(k, len(x))
    rng = np.random.default_rng(seed)
    idx = np.empty(k, dtype=np.int64)
    idx[0] = rng.integers(len(x))
    d = np.linalg.norm(x - x[idx[0]], axis=1)
    for i in range(1, k):
        idx[i] = int(np.argmax(d))
        d = np.minimum(d, np.linalg.norm(x - x[idx[i]], axis=1))
    return np.sort(idx)


def _inscribed_radii(v: np.ndarray, faces: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Shrinking-ball radii at vertices ``ids`` of a closed outward surface ``(v, faces)``.

    The ball tangent at ``v_i`` with centre ``v_i - r n_i`` first meets another surface point ``p``
    at ``r = |v_i - p|^2 / (2 (v_i - p) . n_i)`` (only points with ``(v_i - p) . n_i > 0`` can be
    met). Face centroids and vertices stand for the surface.
    """
    n = vertex_normals(torch.as_tensor(v)[None], torch.as_tensor(faces))[0].numpy()
    pts = np.concatenate([v, v[faces].mean(1)])
    d = v[ids, None, :] - pts[None]  # (k, P, 3)
    proj = np.einsum("kpc,kc->kp", d, n[ids])
    dist2 = (d**2).sum(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where((proj > 1e-9) & (dist2 > 1e-12), dist2 / (2 * proj), np.inf)
    return np.clip(r.min(1), MIN_RADIUS, MAX_RADIUS)


def _leaves(x: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the points ``x (N, 3)`` into groups of at most ``size`` close points (halving along
    the longest side of the box, a kd-tree's leaves): ``(G, size)`` indices, each row padded with
    its first index, and the ``(G, size)`` mask of real entries."""
    todo, leaves = [np.arange(len(x))], []
    while todo:
        g = todo.pop()
        if len(g) <= size:
            leaves.append(g)
            continue
        axis = int(np.argmax(x[g].max(0) - x[g].min(0)))
        g = g[np.argsort(x[g, axis], kind="stable")]
        todo += [g[: len(g) // 2], g[len(g) // 2:]]
    idx = np.stack([np.concatenate([g, np.full(size - len(g), g[0])]) for g in leaves])
    valid = np.arange(size)[None] < np.array([len(g) for g in leaves])[:, None]
    return idx, valid


def _hand_size(joints: Tensor) -> Tensor:
    """Summed bone lengths ``(...)`` of ``(..., 21, 3)`` MANO-order joints (m)."""
    parents = torch.as_tensor(MANO21_PARENTS[1:], device=joints.device)
    return (joints[..., 1:, :] - joints[..., parents, :]).norm(dim=-1).sum(-1)


def build_sphere_proxy(hands, num_spheres: int = 256, num_queries: int = 256, seed: int = 0) -> SphereProxy:
    """Sphere anchors and radii for a :class:`~ihmr.handmodel.two_hands.TwoHands` model.

    Anchors and queries are farthest-point samples of the rest-pose template (so they cover the
    hand evenly); radii come from :func:`_inscribed_radii` on each template hand.
    """
    if num_spheres < 1 or num_queries < 1:
        raise InputError("num_spheres and num_queries must be positive")
    with torch.no_grad():
        z = torch.zeros(1, 2, dtype=hands.right.v_template.dtype)
        out = hands(torch.zeros(1, 2, hands.right.num_betas, dtype=z.dtype), torch.zeros(1, 2, 3, dtype=z.dtype),
                    torch.zeros(1, 2, 45, dtype=z.dtype), torch.zeros(1, 3, dtype=z.dtype))
    v = out.vertices[0].double().numpy()
    faces = hands.faces.numpy()
    anchors = _farthest_points(v[0], num_spheres, seed)
    queries = _farthest_points(v[0], num_queries, seed + 1)
    radius = np.stack([_inscribed_radii(v[h], faces[h], anchors) for h in range(2)])
    q_leaves, q_valid = _leaves(v[0, queries], QUERY_LEAF)
    a_leaves, a_valid = _leaves(v[0, anchors], ANCHOR_LEAF)
    return SphereProxy(
        anchors=torch.as_tensor(anchors), radius=torch.as_tensor(radius),
        queries=torch.as_tensor(queries), ref_size=_hand_size(out.joints[0]).double(),
        num_vertices=int(v.shape[1]),
        query_leaves=torch.as_tensor(q_leaves), query_valid=torch.as_tensor(q_valid),
        anchor_leaves=torch.as_tensor(a_leaves), anchor_valid=torch.as_tensor(a_valid),
    )


def _overlapping_pairs(qa: Tensor, ca: Tensor, q: Tensor, c: Tensor, r: Tensor, proxy: SphereProxy) -> tuple[Tensor, Tensor, Tensor]:
    """The ``(b, i, j)`` with ``qa[b, i] . ca[b, j] < 0`` (query ``i`` inside ball ``j``), in the
    order of ``torch.nonzero`` on the dense ``(P, S, M)`` test, found group by group: a group of
    queries and a group of balls can only hold such a pair when their bounding spheres overlap, so
    only those few group pairs (a few per cent of all) are tested member by member.

    ``qa (P, S, 5)``, ``ca (P, M, 5)``: the expanded test's rows; ``q (P, S, 3)``, ``c (P, M, 3)``,
    ``r (P, M)``: the queries, ball centres and radii they come from (m)."""
    dev = q.device
    ql, qv = proxy.query_leaves.to(dev), proxy.query_valid.to(dev)
    al, av = proxy.anchor_leaves.to(dev), proxy.anchor_valid.to(dev)
    qg = q[:, ql]  # (P, Gq, L, 3); the padding repeats a member: the bounds stay the members'
    q_mid = qg.mean(2)
    q_rad = (qg - q_mid[:, :, None]).norm(dim=-1).amax(2)  # (P, Gq)
    cg = c[:, al]
    c_mid = cg.mean(2)
    c_rad = ((cg - c_mid[:, :, None]).norm(dim=-1) + r[:, al]).amax(2)  # (P, Ga): the balls' bound
    d2 = ((q_mid[:, :, None] - c_mid[:, None]) ** 2).sum(-1)  # (P, Gq, Ga)
    lim = q_rad[:, :, None] + c_rad[:, None] + _GROUP_SLACK
    pb, gq, ga = torch.nonzero(d2 < lim * lim, as_tuple=True)
    qa_g = (qa[:, ql] * qv[..., None]).flatten(0, 1)  # (P Gq, L, 5); zero rows at the padding: their test is 0, never < 0
    ca_g = (ca[:, al] * av[..., None]).flatten(0, 1)
    test = torch.bmm(qa_g.index_select(0, pb * ql.shape[0] + gq),  # (n, Lq, La)
                     ca_g.index_select(0, pb * al.shape[0] + ga).transpose(1, 2))
    k, li, lj = torch.nonzero(test < 0, as_tuple=True)
    b, i, j = pb[k], ql[gq[k], li], al[ga[k], lj]
    order = torch.argsort((b * qa.shape[1] + i) * ca.shape[1] + j)
    return b[order], i[order], j[order]


def _balls(vertices: Tensor, joints: Tensor, faces: Tensor, proxy: SphereProxy) -> tuple[Tensor, Tensor]:
    """Ball centres ``(B, 2, M, 3)`` and radii ``(B, 2, M)`` (m) of both posed hands."""
    dt = vertices.dtype
    a = proxy.anchors.to(vertices.device)
    normals = torch.stack([vertex_normals(vertices[:, h], faces[h], a) for h in range(2)], 1)  # (B, 2, M, 3)
    scale = _hand_size(joints) / proxy.ref_size.to(dt)  # (B, 2)
    r = proxy.radius.to(dt)[None] * scale[..., None]  # (B, 2, M)
    return vertices.index_select(2, a) - r[..., None] * normals, r


@torch.no_grad()
def sphere_gap(vertices: Tensor, joints: Tensor, faces: Tensor, proxy: SphereProxy) -> Tensor:
    """Proxy gap ``(B,)`` (m): the smallest distance from a query vertex of one hand to a ball of
    the other, 0 when a query is inside a ball. The balls lie inside the hands, so this is an upper
    bound of the true gap between the surfaces (a proxy gap of 2 mm means the surfaces are at most
    2 mm apart). Arguments as :func:`sphere_penetration`; no gradient."""
    B = vertices.shape[0]
    if B == 0:
        return vertices.new_zeros(0)
    centres, r = _balls(vertices, joints, faces, proxy)
    q = vertices.index_select(2, proxy.queries.to(vertices.device))  # (B, 2, S, 3)
    d = torch.cdist(q.reshape(B * 2, -1, 3), centres.flip(1).reshape(B * 2, -1, 3)) - r.flip(1).reshape(B * 2, 1, -1)
    return d.reshape(B, -1).amin(1).clamp_min(0.0)


def sphere_penetration(
    vertices: Tensor, joints: Tensor, faces: Tensor, proxy: SphereProxy, return_push: bool = False,
    search: Literal["groups", "dense"] = "groups",
) -> Tensor | tuple[Tensor, Tensor]:
    """Proxy depth of each query vertex inside the other hand: ``(B, 2, S)`` metres.

    Args:
        vertices: ``(B, 2, V, 3)`` both hands (metres).
        joints: ``(B, 2, 21, 3)`` their joints (for the per-sample size of the balls).
        faces: ``(2, F, 3)`` closed outward triangles (for the vertex normals).
        proxy: from :func:`build_sphere_proxy` for the same model.

    Returns:
        ``[b, h, s]``: depth of query vertex ``s`` of hand ``h`` inside hand ``1 - h`` (0 outside).
        Differentiable with respect to ``vertices``. With ``return_push`` also ``(B, 2, 3)``: per
        hand the sum over overlapping (query, ball) pairs of depth times the unit direction out of
        the ball, i.e. where hand ``h`` would have to move to leave hand ``1 - h`` (no gradient).

    ``search``: how the overlapping (query, ball) pairs are found: ``"groups"`` (bounding spheres
    of small groups first, :func:`_overlapping_pairs`) or ``"dense"`` (all ``S x M`` pairs in one
    batched matmul: the reference, several times slower); both give the same pairs up to float
    rounding of the test at a ball's very surface (depth 0).
    """
    B = vertices.shape[0]
    centres, r = _balls(vertices, joints, faces, proxy)
    q = vertices.index_select(2, proxy.queries.to(vertices.device))  # (B, 2, S, 3)
    other_c = centres.flip(1).reshape(B * 2, -1, 3)  # hand h's queries against hand 1 - h's balls
    other_r = r.flip(1).reshape(B * 2, -1)
    q = q.reshape(B * 2, -1, 3)
    S = q.shape[1]
    with torch.no_grad():  # which (query, ball) pairs overlap: one batched matmul, no square roots
        qd, cd = q.detach(), other_c.detach()
        mid = cd.mean(1, keepdim=True)  # centre the pair for a well-conditioned expansion
        qd, cd = qd - mid, cd - mid
        # |q - c|^2 - r^2 = [q, |q|^2, 1] . [-2c, 1, |c|^2 - r^2]: one matmul with K = 5
        qa = torch.cat([qd, (qd * qd).sum(-1, keepdim=True), torch.ones_like(qd[..., :1])], -1)
        ca = torch.cat([-2.0 * cd, torch.ones_like(cd[..., :1]), (cd * cd).sum(-1, keepdim=True) - other_r.detach()[..., None] ** 2], -1)
        if search == "dense":
            b, i, j = torch.nonzero(torch.bmm(qa, ca.transpose(1, 2)) < 0, as_tuple=True)
        else:
            b, i, j = _overlapping_pairs(qa, ca, qd, cd, other_r.detach(), proxy)
    bi, bj = b * S + i, b * other_c.shape[1] + j  # flat rows: index_select is much faster than [b, i]
    q_bi, c_bj = q.flatten(0, 1).index_select(0, bi), other_c.flatten(0, 1).index_select(0, bj)
    depth = (other_r.flatten().index_select(0, bj) - (q_bi - c_bj).norm(dim=-1)).clamp_min(0.0)
    out = q.new_zeros(B * 2 * S).scatter_reduce(0, bi, depth, reduce="amax", include_self=True)
    if not return_push:
        return out.reshape(B, 2, S)
    with torch.no_grad():
        u = q_bi.detach() - c_bj.detach()
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        push = q.new_zeros(B * 2, 3).index_add(0, b, depth.detach()[:, None] * u)
    return out.reshape(B, 2, S), push.reshape(B, 2, 3)


def proxy_collision(
    vertices: Tensor, joints: Tensor, faces: Tensor, proxy: SphereProxy, return_parts: bool = False,
    search: Literal["groups", "dense"] = "groups", overlap: Optional[Tensor] = None,
) -> Tensor | tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample proxy collision error ``(B,)`` (m): the summed query depths times ``V / S`` (the
    scale of Eq. 7's sum over all vertices). Zero exactly when no query vertex is inside a ball;
    pairs whose bounding boxes do not overlap are skipped. With ``return_parts`` also the error per
    hand ``(B, 2)`` (of hand ``h``'s vertices inside hand ``1 - h``), the push directions
    ``(B, 2, 3)`` of :func:`sphere_penetration` and the deepest query ``(B,)`` (m, no gradient).

    ``search``: see :func:`sphere_penetration`. ``overlap``: ``(B,)`` bool, the pairs to measure;
    default the meshes' bounding boxes overlap (:func:`~ihmr.collision.exact.boxes_overlap`). Pass
    it when ``vertices`` holds only some of each mesh's vertices (those the proxy reads, with
    ``proxy`` and ``faces`` renumbered to them), whose boxes are not the meshes' boxes."""
    B = vertices.shape[0]
    per_hand = vertices.new_zeros(B, 2) + 0.0 * vertices.sum(dim=(2, 3))
    push = vertices.new_zeros(B, 2, 3)
    deepest = vertices.new_zeros(B)
    active = torch.nonzero(boxes_overlap(vertices.detach()) if overlap is None else overlap).flatten()
    if active.numel():
        d, pu = sphere_penetration(vertices[active], joints[active], faces, proxy, return_push=True, search=search)
        per_hand = per_hand.index_put((active,), d.sum(2) * (proxy.num_vertices / proxy.queries.numel()))
        push = push.index_put((active,), pu)
        deepest = deepest.index_put((active,), d.detach().flatten(1).amax(1))
    total = per_hand.sum(1)
    return (total, per_hand, push, deepest) if return_parts else total
