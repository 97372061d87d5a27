"""Placing and pairing hands: the perspective root translation of one hand from its landmarks, the
translations of two interacting hands fitted together, the pairing of right and left hands, and
bringing the hands of a pair that overlap in the image into contact in depth (:func:`touch_pair`),
and moving apart in depth the hands that the refinement left penetrating (:func:`separate_pair`).

Units: metres (3D), pixels (2D); ``K (3, 3)`` the camera intrinsics. Pure numpy but for
:func:`touch_pair` and :func:`separate_pair`, which measure the meshes with :mod:`ihmr.collision`.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ihmr.collision.distance import surface_gap
from ihmr.collision.exact import penetration_depths
from ihmr.detect import PARTNER_DIST
from ihmr.geometry.camera import project_points, reprojection_error
from ihmr.metrics.contact import CONTACT_THRESHOLD
from ihmr.pipeline.results import HandResult, PairResult

__all__ = ["PAIR_DEPTH_SIGMA", "PIXEL_SIGMA", "TOUCH_MAX_SHIFT", "root_translation", "pair_translations", "partner_distance",
           "pair_hands", "place_pair", "touch_pair", "separate_pair", "unpaired"]

#: Prior spread (m) of the depth difference of two interacting hands' wrists, against the
#: landmarks' reprojection (:data:`PIXEL_SIGMA` px): monocular depth from a hand's apparent size is
#: far less certain than the few centimetres two hands in contact can differ by.
PAIR_DEPTH_SIGMA = 0.05
PIXEL_SIGMA = 10.0
#: The most (m) :func:`touch_pair` changes the depth difference of a pair's wrists by.
TOUCH_MAX_SHIFT = 0.05
#: Depth shifts tried by :func:`touch_pair`: a coarse grid over ``[0, TOUCH_MAX_SHIFT]``, then a fine
#: one inside the coarse step where the gap closes.
_COARSE, _FINE = 26, 9


def root_translation(world: np.ndarray, uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Translation ``T (3,)`` so that ``project(K, world + T) ~ uv`` (linear least squares), for
    one hand's metric landmarks ``world (21, 3)`` and their pixels ``uv (21, 2)``."""
    f, cx, cy = K[0, 0], K[0, 2], K[1, 2]
    du, dv = uv[:, 0] - cx, uv[:, 1] - cy
    A = np.concatenate([
        np.stack([np.full_like(du, f), np.zeros_like(du), -du], 1),
        np.stack([np.zeros_like(dv), np.full_like(dv, f), -dv], 1),
    ])
    b = np.concatenate([du * world[:, 2] - f * world[:, 0], dv * world[:, 2] - f * world[:, 1]])
    T, *_ = np.linalg.lstsq(A, b, rcond=None)
    return T


def pair_translations(world: Sequence[np.ndarray], uv: Sequence[np.ndarray], K: np.ndarray,
                      depth_sigma: float = PAIR_DEPTH_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Translations ``(T_r, T_l)`` of two interacting hands fitted together: each hand's landmarks
    ``world (21, 3)`` reproject onto ``uv (21, 2)`` (as in :func:`root_translation`), and their
    wrists (joint 0) lie at about the same depth (``depth_sigma``). The reprojection rows have
    residuals of about depth x pixel error, so the prior row is weighted by ``PIXEL_SIGMA * Z /
    depth_sigma`` with ``Z`` the mean of the separate estimates."""
    f, cx, cy = K[0, 0], K[0, 2], K[1, 2]
    rows, rhs = [], []
    Ts = [root_translation(w, p, K) for w, p in zip(world, uv)]
    for h, (w, p) in enumerate(zip(world, uv)):
        du, dv = p[:, 0] - cx, p[:, 1] - cy
        n = len(du)
        A = np.zeros((2 * n, 6))
        A[:n, 3 * h + 0], A[:n, 3 * h + 2] = f, -du
        A[n:, 3 * h + 1], A[n:, 3 * h + 2] = f, -dv
        rows.append(A)
        rhs.append(np.concatenate([du * w[:, 2] - f * w[:, 0], dv * w[:, 2] - f * w[:, 1]]))
    z = 0.5 * (Ts[0][2] + world[0][0, 2] + Ts[1][2] + world[1][0, 2])
    wgt = PIXEL_SIGMA * max(z, 0.1) / depth_sigma
    prior = np.zeros((1, 6))
    prior[0, 2], prior[0, 5] = wgt, -wgt
    A = np.concatenate(rows + [prior])
    b = np.concatenate(rhs + [np.array([wgt * (world[1][0, 2] - world[0][0, 2])])])
    T, *_ = np.linalg.lstsq(A, b, rcond=None)
    return T[:3], T[3:]


def partner_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Distance of the mean 2D landmarks ``(21, 2)`` of two hands over the larger hand's extent (pixels
    / pixels, at least 1 px)."""
    size = max(np.ptp(a, 0).max(), np.ptp(b, 0).max())
    return np.linalg.norm(a.mean(0) - b.mean(0)) / max(size, 1.0)


def pair_hands(hands: Sequence[HandResult], max_dist: float = PARTNER_DIST) -> list[tuple[int, int]]:
    """Pairs ``(right, left)`` of indices into ``hands``: each right hand, in order, with the nearest
    unused left hand (:func:`partner_distance`) if it is closer than ``max_dist`` hand sizes."""
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for i, hr in enumerate(hands):
        if hr.side != "right":
            continue
        best, dist = None, np.inf
        for j, hl in enumerate(hands):
            if hl.side == "left" and j not in used:
                dd = partner_distance(hr.joints_2d, hl.joints_2d)
                if dd < max_dist and dd < dist:
                    best, dist = j, dd
        if best is None:
            continue
        used.add(best)
        pairs.append((i, best))
    return pairs


def place_pair(hr: HandResult, hl: HandResult, K: np.ndarray) -> None:
    """Re-place the two hands of a pair (in place) with :func:`pair_translations` (both wrists at
    about the same depth), moving everything each hand holds in camera coordinates."""
    world = [h.landmarks_3d - h.landmarks_3d[0] for h in (hr, hl)]  # wrist-relative metric landmarks
    T_r, T_l = pair_translations(world, [hr.joints_2d, hl.joints_2d], K)
    for h, T in ((hr, T_r), (hl, T_l)):
        _moved(h, T - h.landmarks_3d[0])  # new wrist - old wrist


def _moved(h: HandResult, d: np.ndarray) -> None:
    """Move everything hand ``h`` holds in camera coordinates by ``d (3,)`` m."""
    h.landmarks_3d = h.landmarks_3d + d
    h.joints_3d = h.joints_3d + d
    h.vertices = h.vertices + d
    h.params["wrist"] = h.params["wrist"] + d


def _reprojection(hr: HandResult, hl: HandResult, K: np.ndarray, d_r: np.ndarray, d_l: np.ndarray) -> np.ndarray:
    """``(2,)`` mean pixel distance of each hand's joints, moved by ``d_r`` / ``d_l (3,)`` m, to its landmarks."""
    return np.array([reprojection_error(h.joints_3d + d, h.joints_2d, K) for h, d in ((hr, d_r), (hl, d_l))])


def _farther_left(hr: HandResult, hl: HandResult) -> float:
    """+1 when the left hand is the farther from the camera (by its vertices' mean depth), else -1."""
    return 1.0 if hl.vertices[:, 2].mean() > hr.vertices[:, 2].mean() else -1.0


def _along_rays(hr: HandResult, hl: HandResult, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Moves ``(n, 3)`` of the right and the left hand along their wrists' viewing rays that change
    the right wrist's depth by ``dz / 2`` and the left one's by ``-dz / 2`` (``dz (n,)`` m)."""
    rays = [h.joints_3d[0] / h.joints_3d[0][2] for h in (hr, hl)]
    return (dz / 2)[:, None] * rays[0], (-dz / 2)[:, None] * rays[1]


def _measure(v0: np.ndarray, f: torch.Tensor, d_r: np.ndarray, d_l: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deepest exact penetration ``(n,)`` m and surface gap ``(n,)`` m (0 where penetrating) of the
    pair ``v0 (2, V, 3)`` with its hands moved by ``d_r, d_l (n, 3)``."""
    verts = torch.as_tensor(np.stack([v0[0][None] + d_r[:, None], v0[1][None] + d_l[:, None]], 1))
    depth = penetration_depths(verts, f).flatten(1).amax(1).numpy()
    return depth, surface_gap(verts, f, torch.as_tensor(depth > 0)).numpy()


def touch_pair(hr: HandResult, hl: HandResult, faces: np.ndarray, K: np.ndarray, max_shift: float = TOUCH_MAX_SHIFT,
               touch: float = CONTACT_THRESHOLD, max_reprojection_px: float = 2.0) -> float:
    """Bring two hands that overlap in the image, but lie apart in depth, into contact (in place).

    A monocular fit places each hand in depth from its apparent size, centimetres off, so two hands
    that overlap in the image (clasped, interlaced, one over the other) often float apart, and the
    refinement, which keeps the fitted joints, has nothing to close. Two surfaces can touch only
    where their images overlap; this moves both hands along their wrists' viewing rays (the right
    one by half the shift, the left one by the other half, towards each other in depth), which
    keeps each wrist on its landmark, to the smallest shift (up to ``max_shift``) at which the
    meshes come within ``touch`` of each other without penetrating (exact test). The move is
    kept only when neither hand's joints reproject more than ``max_reprojection_px`` farther from
    its landmarks. Pairs that already touch or penetrate, or whose images do not overlap, are left.

    Args:
        hr, hl: the right and the left hand (camera coordinates; moved in place).
        faces: ``(2, F, 3)`` the hand model's faces (right, left).
        K: ``(3, 3)`` intrinsics.

    Returns:
        the applied change (m) of the wrists' depth difference, 0 when nothing moved.
    """
    f = torch.as_tensor(np.asarray(faces)).long()
    v0 = np.stack([hr.vertices, hl.vertices])
    box = [(lambda uv: (uv.min(0), uv.max(0)))(project_points(v[None], K[None])[0]) for v in v0]
    if np.any(box[0][1] < box[1][0]) or np.any(box[1][1] < box[0][0]):
        return 0.0  # the images do not overlap: no depth can make the surfaces touch
    v = torch.as_tensor(v0[None])
    if float(penetration_depths(v, f).max()) > 0 or float(surface_gap(v, f, torch.tensor([False]))[0]) <= touch:
        return 0.0
    sign = _farther_left(hr, hl)

    def shifted(shifts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d_r, d_l = _along_rays(hr, hl, sign * shifts)
        depth, gap = _measure(v0, f, d_r, d_l)
        return d_r, d_l, np.where(depth > 0, -1.0, gap)  # -1: penetrating

    coarse = np.linspace(0.0, max_shift, _COARSE)
    _, _, g = shifted(coarse)
    hit = np.flatnonzero(g <= touch)  # touching or penetrating
    if hit.size == 0 or hit[0] == 0:
        return 0.0
    lo, hi = coarse[hit[0] - 1], coarse[hit[0]]
    fine = np.linspace(lo, hi, _FINE)
    d_r, d_l, g = shifted(fine)
    ok = np.flatnonzero((g >= 0) & (g <= touch))  # touching, not penetrating
    if ok.size == 0:
        ok = np.flatnonzero(g >= 0)[-1:]  # the closest shift that does not penetrate
    k = int(ok[0])
    still = np.zeros(3)
    if np.any(_reprojection(hr, hl, K, d_r[k], d_l[k]) > _reprojection(hr, hl, K, still, still) + max_reprojection_px):
        return 0.0
    _moved(hr, d_r[k])
    _moved(hl, d_l[k])
    return float(fine[k])


def separate_pair(hr: HandResult, hl: HandResult, faces: np.ndarray, K: np.ndarray, max_shift: float = TOUCH_MAX_SHIFT,
                  max_reprojection_px: float = 2.0, max_p: float = 0.002,
                  reference: Optional[np.ndarray] = None) -> tuple[float, np.ndarray]:
    """Move the hands of a pair that still penetrate apart in depth until they do not (in place).

    The refinement keeps the fitted 3D joints, and where those collide themselves (per-hand metric
    landmarks of overlapping hands) it can leave millimetres of penetration. Depth is what a single
    image tells least, so the price is paid there: both hands move along their wrists' viewing rays
    (apart: the farther one away from the camera by half the shift, the nearer one towards it; and
    the other way, as the depth order of interlaced hands is ambiguous), which keeps each wrist on
    its landmark, to the smallest shift (up to ``max_shift``, on a grid of about 0.25 mm) without
    exact penetration, else to the smallest (2 mm grid) with at most ``max_p`` m of it, else to the
    one with the shallowest (hands interlocked: no depth frees them); of the two directions, the
    collision-free one, then the shallower, then the smaller shift. A move is kept only when it
    lowers the deepest penetration and neither hand's joints reproject more than
    ``max_reprojection_px`` farther from its landmarks than ``reference (2, 21, 3)`` (camera
    coordinates; e.g. the joints as placed, before contact and refinement, so that all steps
    together keep the bound; default: the hands' joints as they are).

    Returns:
        the applied change (m) of the wrists' depth difference (0 when nothing moved) and the exact
        penetration depths ``(2, V)`` m of the pair as it is left.
    """
    f = torch.as_tensor(np.asarray(faces)).long()
    v0 = np.stack([hr.vertices, hl.vertices])
    d0 = penetration_depths(torch.as_tensor(v0[None]), f)[0].numpy()
    if float(d0.max()) <= 0:
        return 0.0, d0
    ref = np.stack([hr.joints_3d, hl.joints_3d]) if reference is None else np.asarray(reference)
    limit = np.array([reprojection_error(r, h.joints_2d, K) for h, r in zip((hr, hl), ref)]) + max_reprojection_px
    best = None  # (key, shift, d_r, d_l) of the better direction: collision-free, then shallower, then smaller
    coarse = np.linspace(0.0, max_shift, _COARSE)
    for sign in (-_farther_left(hr, hl), _farther_left(hr, hl)):  # apart first: the farther hand farther
        depth, _ = _measure(v0, f, *_along_rays(hr, hl, sign * coarse))
        free = np.flatnonzero(depth <= 0)
        if free.size:  # the smallest collision-free shift, on the fine grid below the first coarse one
            grid = np.linspace(coarse[free[0] - 1], coarse[free[0]], _FINE)
            fine, _ = _measure(v0, f, *_along_rays(hr, hl, sign * grid))
            k = int(np.flatnonzero(fine <= 0)[0])
            shift, deepest = grid[k], 0.0
        else:
            within = np.flatnonzero(depth <= max_p)
            k = int(within[0] if within.size else np.argmin(depth))
            shift, deepest = coarse[k], float(depth[k])
        d_r, d_l = _along_rays(hr, hl, np.array([sign * shift]))
        if shift <= 0 or deepest >= float(d0.max()) or np.any(_reprojection(hr, hl, K, d_r[0], d_l[0]) > limit):
            continue
        key = (deepest > 0, deepest, shift)
        if best is None or key < best[0]:
            best = (key, shift, d_r, d_l)
    if best is None:
        return 0.0, d0
    _, shift, d_r, d_l = best
    d1 = penetration_depths(torch.as_tensor((v0 + np.stack([d_r[0], d_l[0]])[:, None])[None]), f)[0].numpy()
    _moved(hr, d_r[0])
    _moved(hl, d_l[0])
    return float(shift), d1


def unpaired(hands: Sequence[HandResult], pairs: Sequence[PairResult]) -> list[int]:
    """Indices of the hands in no pair."""
    paired = {k for p in pairs for k in (p.right, p.left)}
    return [k for k in range(len(hands)) if k not in paired]
