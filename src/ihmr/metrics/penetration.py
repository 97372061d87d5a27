"""Penetration metrics AVE-P / MAX-P (mm), computed with exact depths, and subset selection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ihmr.collision.exact import penetration_depths
from ihmr.metrics.pose import as_two_hand

__all__ = [
    "PenetrationStats",
    "penetration_depths",
    "penetration_stats",
    "inter_distance",
    "interacting_mask",
    "closely_interacting_mask",
    "INTERACTING_MIN_VALID",
    "CLOSE_MAX_INTER_DISTANCE",
]

#: A sample is interacting when more than this many of its 42 joints are valid.
INTERACTING_MIN_VALID = 30
#: Closely interacting: mean inter-distance below this (metres).
CLOSE_MAX_INTER_DISTANCE = 0.040


@dataclass
class PenetrationStats:
    """Per-sample penetration (mm): ``ave_p (B,)`` mean depth over all 2V vertices (zeros included),
    ``max_p (B,)`` the largest; ``value()`` averages them over (selected) samples."""

    ave_p: np.ndarray
    max_p: np.ndarray

    def value(self, mask: np.ndarray | None = None) -> tuple[float, float]:
        a, m = (self.ave_p, self.max_p) if mask is None else (self.ave_p[mask], self.max_p[mask])
        return (float(a.mean()), float(m.mean())) if a.size else (float("nan"), float("nan"))


@torch.no_grad()
def penetration_stats(vertices, faces) -> PenetrationStats:
    """AVE-P and MAX-P per sample from exact depths: vertices ``(B, 2, V, 3)`` m, faces ``(2, F, 3)``."""
    v = torch.as_tensor(vertices)
    if not v.is_floating_point():
        v = v.double()
    d = penetration_depths(v, torch.as_tensor(faces)).flatten(1).double().cpu().numpy() * 1000.0
    return PenetrationStats(ave_p=d.mean(1), max_p=d.max(1))


def inter_distance(joints, valid=None) -> np.ndarray:
    """Mean "inter-distance" per sample (metres): for each valid joint, the distance to the nearest
    valid joint of the other hand, averaged over the valid joints of both hands (NaN if a hand has
    no valid joint)."""
    p, m = as_two_hand(joints, valid)
    d = np.linalg.norm(p[:, 0, :, None] - p[:, 1, None, :], axis=-1)  # (B, 21, 21) right x left
    big = np.where(m[:, 0, :, None] & m[:, 1, None, :], d, np.inf)
    r = big.min(2)  # nearest left joint for each right joint
    l = big.min(1)
    tot = np.where(m[:, 0], r, 0).sum(1) + np.where(m[:, 1], l, 0).sum(1)
    cnt = m.sum((1, 2))
    ok = m[:, 0].any(1) & m[:, 1].any(1)
    out = np.full(len(p), np.nan)
    out[ok] = tot[ok] / cnt[ok]
    return out


def interacting_mask(valid) -> np.ndarray:
    """``(B,)``: more than 30 of the 42 joints valid (masks ``(B, 42)`` or ``(B, 2, 21)``)."""
    m = np.asarray(valid.detach().cpu() if hasattr(valid, "detach") else valid).astype(bool)
    return m.reshape(m.shape[0], -1).sum(1) > INTERACTING_MIN_VALID


def closely_interacting_mask(joints, valid=None) -> np.ndarray:
    """``(B,)``: interacting and mean inter-distance below 40 mm."""
    p, m = as_two_hand(joints, valid)
    d = inter_distance(p, m)
    return interacting_mask(m) & (np.nan_to_num(d, nan=np.inf) < CLOSE_MAX_INTER_DISTANCE)
