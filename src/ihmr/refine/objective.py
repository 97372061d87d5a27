"""The OPT objective (Eq. 8) and the verification errors, per sample.

Conventions: joints ``(B, 2, 21, 3)`` metres in the pair frame (right wrist at the origin), MANO
order; joint-head targets are converted to that layout once, in :class:`Targets`.

The 3D terms compare the two hands' joints after aligning their centroids (all 42 joints), and the
relative translation term compares the hands' joint centroids, not the wrists (the paper aligns at
the right wrist and takes the wrists' difference as the target of tau). A joint head's noise is
independent per joint, so one wrist carries all of it (10 mm per coordinate at sigma 10) while the
centroids of 21 joints carry a fifth of it; on the two-sided benchmark (Inter-Close, sigma 10 mm)
this alone took OPT's I-MPJPE from -24 % to -32 % and the contact gap from -36 % to -47 %.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ihmr.collision.closest_point import closest_point_on_triangle
from ihmr.collision.distance import ProximityQuery, proximity_distance
from ihmr.collision.exact import PenetrationQuery
from ihmr.geometry.camera import project_perspective, project_weak_perspective
from ihmr.joint_order import FINGER_CHAINS, to_two_hand

__all__ = [
    "Targets",
    "TERMS",
    "CONTACT_JOINT_DISTANCE",
    "contact_evidence",
    "joint_error",
    "centroid_offset",
    "centroid_tau_step",
    "finger_term",
    "cached_penetration",
    "contact_pairs",
    "contact_energy",
    "objective_terms",
]

#: Objective terms of Eq. 8.
TERMS = ("col", "2d", "3d", "tau", "reg", "finger")
#: Perspective 2D errors (pixels) are expressed as metres at the right wrist's depth times this, the
#: scale of the weak-perspective normalised coordinates (a pair spans about [-1, 1]).
PERSPECTIVE_UNIT = 5.0
#: Contact is evidenced when a joint of one hand comes within this distance (m) of a joint of the
#: other in the joint head. Joints sit inside the hands, so touching surfaces put joints 10-25 mm
#: apart (the synthetic benchmark: palms <= 24 mm, fingers <= 18 mm; with 10 mm joint-head noise
#: per coordinate the touching kinds stay below 28 mm).
CONTACT_JOINT_DISTANCE = 0.030


@dataclass
class Targets:
    """Joint-head targets of a batch.

    Attributes:
        j3d: ``(B, 2, 21, 3)`` 3D joints relative to the right wrist (m).
        j2d: ``(B, 2, 21, 2)`` 2D joints, normalised image coordinates.
        cam: ``(B, 3)`` weak-perspective camera ``(s, tx, ty)``.
        tau: ``(B, 3)`` the joint head's left-hand joint centroid minus its right-hand one (m).
        persp: optional ``(B, 6)`` perspective camera ``(f, cx, cy, Tx, Ty, Tz)`` (pixels; ``T`` = the
            right wrist in camera coordinates, metres). When given, ``j2d`` is in pixels and the 2D
            term projects with it instead of the weak-perspective ``cam``.
        contact: ``(B,)`` bool, the joint head evidences touching hands (:func:`contact_evidence`).
    """

    j3d: Tensor
    j2d: Tensor
    cam: Tensor
    tau: Tensor
    persp: Optional[Tensor] = None
    contact: Optional[Tensor] = None

    @staticmethod
    def from_joint_head(j3d42: Tensor, j2d42: Tensor, cam: Tensor, persp: Optional[Tensor] = None) -> "Targets":
        """From ``(B, 42, 3)`` / ``(B, 42, 2)`` joints in MANO order, right hand first."""
        j3 = to_two_hand(j3d42, "mano")
        j3 = j3 - j3[:, :1, :1]
        return Targets(j3d=j3, j2d=to_two_hand(j2d42, "mano"), cam=cam, tau=centroid_offset(j3), persp=persp,
                       contact=contact_evidence(j3))

    def index(self, idx: Tensor) -> "Targets":
        return Targets(self.j3d[idx], self.j2d[idx], self.cam[idx], self.tau[idx], None if self.persp is None else self.persp[idx],
                       None if self.contact is None else self.contact[idx])


def contact_evidence(j3d: Tensor, distance: float = CONTACT_JOINT_DISTANCE) -> Tensor:
    """``(B,)`` bool: some joint of one hand lies within ``distance`` (m) of a joint of the other in
    the joint head ``j3d (B, 2, 21, 3)``; the refiners then close a gap between the two surfaces."""
    return torch.cdist(j3d[:, 0], j3d[:, 1]).flatten(1).amin(1) < distance


def _centred(joints: Tensor) -> Tensor:
    """``(B, 2, 21, 3)`` joints less the centroid of all 42 of each sample."""
    return joints - joints.mean(dim=(1, 2), keepdim=True)


def joint_error(joints: Tensor, target: Tensor) -> Tensor:
    """Verification 3D-joint error ``E_3D``: squared distances summed over all 42 joints, after
    aligning the centroids of the two sets (``joints``, ``target``: ``(B, 2, 21, 3)``): ``(B,)`` m^2."""
    return ((_centred(joints) - _centred(target)) ** 2).sum(dim=(1, 2, 3))


def centroid_offset(joints: Tensor) -> Tensor:
    """``(B, 3)`` m: the left hand's joint centroid minus the right hand's (``joints (B, 2, 21, 3)``),
    what the tau term and :attr:`Targets.tau` compare."""
    c = joints.mean(2)
    return c[:, 1] - c[:, 0]


def centroid_tau_step(joints: Tensor, target: Tensor) -> Tensor:
    """``(B, 3)`` m: the change of tau that minimises :func:`joint_error` over tau alone, i.e. places
    the left hand's joint centroid relative to the right hand's as in the target (moving the left
    hand by ``d`` moves each centred left joint by ``d / 2`` and each right one by ``-d / 2``, so the
    error is a convex quadratic in ``d``); ``joints``, ``target``: ``(B, 2, 21, 3)``."""
    return centroid_offset(target) - centroid_offset(joints)


def finger_term(joints: Tensor) -> Tensor:
    """Finger regulariser (Eq. 9-10) per sample ``(B,)``.

    For each finger's joints ``p_a..p_d`` from tip to palm: ``C1 = (V_ab x V_bc) . V_cd`` should be
    0 (the finger bends in one plane) and ``C2 = (V_ab x V_bc) . (V_bc x V_cd)`` should be >= 0 (it
    bends one way). The penalty is ``|C1| + max(-C2, 0)`` (Eq. 10 as printed writes ``min(C2, 0)``,
    which would reward violations; the intent is to penalise them).
    """
    chains = torch.as_tensor(FINGER_CHAINS, device=joints.device)  # (5, 4)
    p = joints[:, :, chains]  # (B, 2, 5, 4, 3)
    vab, vbc, vcd = p[..., 1, :] - p[..., 0, :], p[..., 2, :] - p[..., 1, :], p[..., 3, :] - p[..., 2, :]
    n1 = torch.cross(vab, vbc, dim=-1)
    c1 = (n1 * vcd).sum(-1)
    c2 = (n1 * torch.cross(vbc, vcd, dim=-1)).sum(-1)
    return (c1.abs() + torch.relu(-c2)).sum(dim=(1, 2))


def cached_penetration(
    vertices: Tensor, faces: Tensor, query: PenetrationQuery, gate: bool = True, with_max: bool = False
) -> Tensor | tuple[Tensor, Tensor]:
    """Collision loss ``(B,)`` from penetrating pairs found at the last search (no new search).

    Each cached vertex keeps contributing its exact distance to its cached triangle while it stays
    behind that triangle's plane; the pairs are refreshed at every snapshot.

    Args:
        vertices: ``(B, 2, V, 3)``.
        faces: ``(2, F, 3)``.
        query: penetrating pairs found by :func:`ihmr.collision.exact.find_penetrations`.
        gate: drop pairs whose vertex has left the cached triangle's back side. Without gating, and
            right after the search, this is exactly the collision loss of the exact mode.
        with_max: also return ``(B,)`` the largest single depth (m) of each sample, from the same
            pairs in the same pass (right after the search and without gating: the exact MAX-P).
    """
    out = vertices.new_zeros(vertices.shape[0])
    if query.batch.numel() == 0:
        out = out + 0.0 * vertices.sum(dim=(1, 2, 3))
        return (out, out.detach().clone()) if with_max else out
    b, h = query.batch, query.hand
    p = vertices[b, h, query.vertex]
    tri = faces[1 - h, query.face]
    a, bb, c = (vertices[b, 1 - h, tri[:, k]] for k in range(3))
    q = closest_point_on_triangle(p, a, bb, c)
    n = torch.cross(bb - a, c - a, dim=-1)
    d = torch.sqrt(((p - q) ** 2).sum(-1).clamp_min(1e-24))
    if gate:
        d = d * (((q - p) * n).sum(-1) > 0)
    total = out.index_add(0, b, d)
    if not with_max:
        return total
    return total, out.detach().scatter_reduce(0, b, d.detach(), reduce="amax", include_self=True)


def contact_pairs(query: ProximityQuery, k: int, batch: int) -> tuple[ProximityQuery, Tensor]:
    """The ``k`` vertices of each sample closest to the other hand from outside, and the gap.

    Args:
        query: vertices near the other hand (:func:`ihmr.collision.distance.find_near`).
        k: vertices kept per sample (both hands together).
        batch: ``B``.

    Returns:
        the kept pairs (a :class:`ProximityQuery`) and ``(B,)`` the gap: the smallest distance
        between the two surfaces (m; ``0`` when a vertex is inside the other hand, ``inf`` when no
        vertex is within the query's band).
    """
    gap = torch.full((batch,), float("inf"), dtype=torch.float64).scatter_reduce(
        0, query.batch, query.distance, reduce="amin", include_self=True)
    out = torch.nonzero(~query.inside).flatten()
    d, b = query.distance[out], query.batch[out]
    order = torch.argsort(d, stable=True)
    order = order[torch.argsort(b[order], stable=True)]  # by sample, then by distance
    bs = b[order]
    rank = torch.arange(len(bs)) - torch.searchsorted(bs, bs)
    keep = out[order[rank < k]]
    sub = ProximityQuery(*(x[keep] for x in (query.batch, query.hand, query.vertex, query.face, query.distance, query.inside)))
    return sub, gap


def contact_energy(vertices: Tensor, faces: Tensor, pairs: ProximityQuery, margin: float) -> Tensor:
    """Contact term ``(B,)`` (m): the mean over a sample's cached contact pairs
    (:func:`contact_pairs`) of how much farther than ``margin`` each vertex is from its cached
    triangle of the other hand; zero for a sample without pairs. Pulls the nearest parts of the two
    surfaces to within ``margin`` of each other (the collision term keeps them from passing).
    (A signed spring, also pushing back vertices that pass behind their triangle, closed fewer
    gaps on the benchmark: 8.86 vs 8.70 mm, I-MPJPE 8.38 vs 8.21 mm.)"""
    out = vertices.new_zeros(vertices.shape[0])
    if pairs.batch.numel() == 0:
        return out + 0.0 * vertices.sum(dim=(1, 2, 3))
    d = torch.relu(proximity_distance(vertices, faces, pairs) - margin)
    count = torch.zeros_like(out).index_add(0, pairs.batch, torch.ones_like(d))
    return out.index_add(0, pairs.batch, d) / count.clamp_min(1.0)


def objective_terms(
    joints: Tensor,
    beta: Tensor,
    targets: Targets,
    collision: Optional[Tensor],
    enabled: tuple[str, ...] = TERMS,
    contact: Optional[Tensor] = None,
) -> dict[str, Tensor]:
    """Unweighted per-sample terms of Eq. 8 (each ``(B,)``).

    ``2d``: mean L1 between the projection (weak-perspective ``cam`` or, when given, the perspective
    camera ``persp``) and the joint-head 2D joints; ``3d``: mean squared error of the
    centroid-aligned 3D joints; ``tau``: mean squared error of the difference of the two hands'
    joint centroids to the joint head's (:attr:`Targets.tau`); ``reg``: mean squared difference of the two shapes; ``finger``:
    :func:`finger_term`; ``col``: the collision loss (sum of depths, m), given; ``contact``: the
    contact term (:func:`contact_energy`), given (our addition, switched by the refiner's config).
    """
    out: dict[str, Tensor] = {}
    if contact is not None:
        out["contact"] = contact
    if "col" in enabled and collision is not None:
        out["col"] = collision
    if "2d" in enabled:
        if targets.persp is not None:  # perspective: pixels, rescaled to the weak-perspective units
            P = targets.persp
            uv = project_perspective(joints + P[:, None, None, 3:6], P[:, 0], P[:, 1:3])
            scale = (PERSPECTIVE_UNIT * P[:, 5] / P[:, 0])[:, None, None, None]
            out["2d"] = ((uv - targets.j2d).abs() * scale).mean(dim=(1, 2, 3))
        else:
            out["2d"] = (project_weak_perspective(joints, targets.cam) - targets.j2d).abs().mean(dim=(1, 2, 3))
    if "3d" in enabled:
        out["3d"] = ((_centred(joints) - _centred(targets.j3d)) ** 2).mean(dim=(1, 2, 3))
    if "tau" in enabled:
        out["tau"] = ((centroid_offset(joints) - targets.tau) ** 2).mean(1)
    if "reg" in enabled:
        out["reg"] = ((beta[:, 0] - beta[:, 1]) ** 2).mean(1)
    if "finger" in enabled:
        out["finger"] = finger_term(joints)
    return out
