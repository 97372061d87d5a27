"""Placing and pairing hands: the perspective root translation of one hand from its landmarks, the
translations of two interacting hands fitted together, and the pairing of right and left hands.

Pure numpy. Units: metres (3D), pixels (2D); ``K (3, 3)`` the camera intrinsics.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ihmr.detect import PARTNER_DIST
from ihmr.pipeline.results import HandResult, PairResult

__all__ = ["PAIR_DEPTH_SIGMA", "PIXEL_SIGMA", "root_translation", "pair_translations", "partner_distance",
           "pair_hands", "place_pair", "unpaired"]

#: Prior spread (m) of the depth difference of two interacting hands' wrists, against the
#: landmarks' reprojection (:data:`PIXEL_SIGMA` px): monocular depth from a hand's apparent size is
#: far less certain than the few centimetres two hands in contact can differ by.
PAIR_DEPTH_SIGMA = 0.05
PIXEL_SIGMA = 10.0


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
        d = T - h.landmarks_3d[0]  # new wrist - old wrist
        h.landmarks_3d = h.landmarks_3d + d
        h.joints_3d = h.joints_3d + d
        h.vertices = h.vertices + d
        h.params["wrist"] = h.params["wrist"] + d


def unpaired(hands: Sequence[HandResult], pairs: Sequence[PairResult]) -> list[int]:
    """Indices of the hands in no pair."""
    paired = {k for p in pairs for k in (p.right, p.left)}
    return [k for k in range(len(hands)) if k not in paired]
