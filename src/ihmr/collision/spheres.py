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

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ihmr.collision.exact import boxes_overlap
from ihmr.errors import InputError
from ihmr.geometry.mesh import vertex_normals
from ihmr.joint_order import MANO21_PARENTS

__all__ = ["SphereProxy", "build_sphere_proxy", "sphere_penetration", "proxy_collision"]

#: Radius bounds (m) of the inscribed balls: the lower one keeps thin parts (fingertips, nails)
#: represented, the upper one caps balls in flat regions where the estimate is unreliable.
MIN_RADIUS, MAX_RADIUS = 0.002, 0.015


@dataclass
class SphereProxy:
    """Sphere and query sets of one two-hand model (the same vertex ids for both hands).

    Attributes:
        anchors: ``(M,)`` int64 vertex ids of the sphere anchors.
        radius: ``(2, M)`` radii (m) for the template hands (right, left).
        queries: ``(S,)`` int64 vertex ids tested against the other hand's spheres.
        ref_size: ``(2,)`` template hand sizes (m; summed bone lengths) the radii belong to.
        num_vertices: ``V`` of the model.
    """

    anchors: Tensor
    radius: Tensor
    queries: Tensor
    ref_size: Tensor
    num_vertices: int

    def to(self, dtype: torch.dtype) -> "SphereProxy":
        return SphereProxy(self.anchors, self.radius.to(dtype), self.queries, self.ref_size.to(dtype), self.num_vertices)


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
    return SphereProxy(
        anchors=torch.as_tensor(anchors), radius=torch.as_tensor(radius),
        queries=torch.as_tensor(queries), ref_size=_hand_size(out.joints[0]).double(),
        num_vertices=int(v.shape[1]),
    )


def sphere_penetration(
    vertices: Tensor, joints: Tensor, faces: Tensor, proxy: SphereProxy, return_push: bool = False
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
    """
    B = vertices.shape[0]
    dt = vertices.dtype
    a = proxy.anchors.to(vertices.device)
    normals = torch.stack([vertex_normals(vertices[:, h], faces[h], a) for h in range(2)], 1)  # (B, 2, M, 3)
    scale = _hand_size(joints) / proxy.ref_size.to(dt)  # (B, 2)
    r = proxy.radius.to(dt)[None] * scale[..., None]  # (B, 2, M)
    centres = vertices[:, :, a] - r[..., None] * normals  # (B, 2, M, 3)
    q = vertices[:, :, proxy.queries.to(vertices.device)]  # (B, 2, S, 3)
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
        b, i, j = torch.nonzero(torch.bmm(qa, ca.transpose(1, 2)) < 0, as_tuple=True)
    depth = (other_r[b, j] - (q[b, i] - other_c[b, j]).norm(dim=-1)).clamp_min(0.0)
    out = q.new_zeros(B * 2 * S).scatter_reduce(0, b * S + i, depth, reduce="amax", include_self=True)
    if not return_push:
        return out.reshape(B, 2, S)
    with torch.no_grad():
        u = q.detach()[b, i] - other_c.detach()[b, j]
        u = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-9)
        push = q.new_zeros(B * 2, 3).index_add(0, b, depth.detach()[:, None] * u)
    return out.reshape(B, 2, S), push.reshape(B, 2, 3)


def proxy_collision(
    vertices: Tensor, joints: Tensor, faces: Tensor, proxy: SphereProxy, return_parts: bool = False
) -> Tensor | tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per-sample proxy collision error ``(B,)`` (m): the summed query depths times ``V / S`` (the
    scale of Eq. 7's sum over all vertices). Zero exactly when no query vertex is inside a ball;
    pairs whose bounding boxes do not overlap are skipped. With ``return_parts`` also the error per
    hand ``(B, 2)`` (of hand ``h``'s vertices inside hand ``1 - h``), the push directions
    ``(B, 2, 3)`` of :func:`sphere_penetration` and the deepest query ``(B,)`` (m, no gradient)."""
    B = vertices.shape[0]
    per_hand = vertices.new_zeros(B, 2) + 0.0 * vertices.sum(dim=(2, 3))
    push = vertices.new_zeros(B, 2, 3)
    deepest = vertices.new_zeros(B)
    active = torch.nonzero(boxes_overlap(vertices.detach())).flatten()
    if active.numel():
        d, pu = sphere_penetration(vertices[active], joints[active], faces, proxy, return_push=True)
        per_hand = per_hand.index_put((active,), d.sum(2) * (proxy.num_vertices / proxy.queries.numel()))
        push = push.index_put((active,), pu)
        deepest = deepest.index_put((active,), d.detach().flatten(1).amax(1))
    total = per_hand.sum(1)
    return (total, per_hand, push, deepest) if return_parts else total
