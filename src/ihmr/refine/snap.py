"""Contact snap (ours): the last step of both refiners, closing the gap of hands evidenced to touch.

After the factor stages most pairs whose joint head evidences contact
(:func:`~ihmr.refine.objective.contact_evidence`) touch, but some are left a few millimetres apart:
each stage keeps only candidates that lower the 3D-joint error against the stage's start, and the
last millimetres of a gap cost a little of the error the earlier stages gained. The snap moves the
left hand rigidly along the line of the pair's two nearest surface points until they are
:data:`SNAP_MARGIN` apart (or a fraction of that way, :data:`SNAP_FRACTIONS`, the longest that
passes) and keeps the move only where

- the exact test finds no penetration (touching never comes at the price of penetration), and
- the 3D-joint error stays at or below ``limit``: the refiners pass the error of their *input*
  (plus their ``e3d_slack``), so the refinement as a whole still never raises it.

Any fraction of the move brings the nearest (vertex, triangle) pair closer, and the gap (the
smallest vertex-to-surface distance of either hand, as :func:`~ihmr.collision.distance.surface_gap`
measures it) is at most that pair's distance, so the gap never widens; the full move leaves it at
most the margin. Measured on the two-sided benchmark (Inter-Close, n = 134, sigma 10 mm), after OPT: 51 of
the 134 evidenced pairs had a gap above 0.3 mm, 47 were snapped; contact gap on the separated part
8.36 -> 7.94 mm, I-MPJPE 7.272 -> 7.24 mm (docs/bench_refine.md). With the stricter limit of the
refined error (no use of the earlier stages' gain) fewer pairs moved and the gap stayed near 8.1 mm.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ihmr.collision.closest_point import closest_point_on_triangle
from ihmr.collision.distance import find_near
from ihmr.collision.exact import find_penetrations
from ihmr.refine.objective import CONTACT_JOINT_DISTANCE, contact_pairs, joint_error

__all__ = ["SNAP_MARGIN", "SNAP_FRACTIONS", "close_gaps"]

#: Distance (m) the snap leaves between the two nearest points (well inside the contact metric's
#: 2 mm; snapping to 0.5 mm instead gave a contact gap of 8.00 mm instead of 7.89 on the benchmark).
SNAP_MARGIN = 2e-4
#: Fractions of the full move tried, longest first; the first that passes is kept.
SNAP_FRACTIONS = (1.0, 0.75, 0.5, 0.25)


@torch.no_grad()
def close_gaps(vertices: Tensor, joints: Tensor, faces: Tensor, target: Tensor, limit: Tensor, rows: Tensor,
               margin: float = SNAP_MARGIN, band: float = CONTACT_JOINT_DISTANCE,
               fractions: tuple[float, ...] = SNAP_FRACTIONS) -> tuple[Tensor, Tensor, Tensor]:
    """Translations of the left hand that close the gaps of the samples ``rows`` (see the module).

    Args:
        vertices: ``(B, 2, V, 3)`` m, the refined pairs (right hand first; CPU tensors).
        joints: ``(B, 2, 21, 3)`` m, their joints.
        faces: ``(2, F, 3)`` closed, outward oriented.
        target: ``(B, 2, 21, 3)`` the joint head's joints (:func:`~ihmr.refine.objective.joint_error`).
        limit: ``(B,)`` m^2, the largest 3D-joint error a snapped pair may have.
        rows: ``(B,)`` bool, the samples to snap (contact evidenced); others are never moved.
        margin: distance (m) left between the nearest points.
        band: gaps wider than this (m) are not closed.
        fractions: of the full move, tried longest first.

    Returns:
        ``delta (B, 3)`` m, the translation to add to tau (zero where nothing was kept), ``moved
        (B,)`` bool, and ``e3d (B,)`` m^2, the 3D-joint error of the moved pairs (NaN elsewhere).
    """
    B = vertices.shape[0]
    delta = vertices.new_zeros(B, 3)
    moved = torch.zeros(B, dtype=torch.bool)
    e3d = torch.full((B,), float("nan"), dtype=vertices.dtype)
    cand = torch.nonzero(rows).flatten()
    if cand.numel() == 0:
        return delta, moved, e3d
    v = vertices[cand].detach()
    # The nearest (vertex, triangle) pair of each sample, from both hands' vertices (the gap as
    # surface_gap measures it), without the inside test (``inside`` given as none): a pair that
    # penetrates after all (the MLP verifies on a proxy) finds a near pair like any other, and the
    # exact check of the moved pair keeps it unmoved.
    near = find_near(v, faces, band, inside=torch.zeros(v.shape[:3], dtype=torch.bool))
    nearest, gap = contact_pairs(near, 1, len(cand))
    keep = (gap[nearest.batch] > margin) & torch.isfinite(gap[nearest.batch])  # touching pairs are left alone
    local, h, vid, fid = (x[keep] for x in (nearest.batch, nearest.hand, nearest.vertex, nearest.face))
    if local.numel() == 0:
        return delta, moved, e3d
    p = v[local, h, vid]
    tri = faces.long()[1 - h, fid]  # (n, 3)
    a, b, c = (v[local, 1 - h, tri[:, k]] for k in range(3))
    towards = closest_point_on_triangle(p, a, b, c) - p  # from hand h to the other
    d = towards.norm(dim=-1, keepdim=True)
    sign = torch.where(h == 1, 1.0, -1.0).to(v.dtype)[:, None]  # the left hand moves towards the right
    full = sign * towards / d * (d - margin)
    left = torch.stack([torch.zeros_like(full), full], 1)[:, :, None]  # (n, 2, 1, 3): only the left hand moves
    todo = torch.ones(len(local), dtype=torch.bool)
    for frac in fractions:
        i = torch.nonzero(todo).flatten()
        if i.numel() == 0:
            break
        g = cand[local[i]]
        err = joint_error(joints[g].detach() + frac * left[i], target[g])
        i, g, err = i[err <= limit[g]], g[err <= limit[g]], err[err <= limit[g]]
        if i.numel() == 0:
            continue
        hit = torch.zeros(len(i), dtype=torch.bool)
        hit[torch.unique(find_penetrations(v[local[i]] + frac * left[i], faces).batch)] = True
        i, g, err = i[~hit], g[~hit], err[~hit]
        delta[g], moved[g], e3d[g] = frac * full[i], True, err
        todo[i] = False
    return delta, moved, e3d
