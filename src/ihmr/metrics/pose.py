"""Pose errors as defined by the IHMR release (reference_notes.md), reported in millimetres.

- MPJPE: each hand aligned to its own ground-truth wrist, Euclidean error over valid joints,
  pooled mean over all valid joints of all samples.
- I-MPJPE: both hands' valid joints together; per axis the prediction is standardised (minus its
  mean, divided by its std) and mapped to the ground truth's mean and std (anisotropic scale +
  translation, no rotation); pooled mean.
- MPVPE / I-MPVPE: the same on mesh vertices (every vertex valid), wrists from the joints.
- MRRPE: the error of the left wrist's position relative to the right wrist (the relative root
  position error of InterHand2.6M's two-hand methods), per sample with both wrists valid.

Inputs are in metres: joints ``(B, 2, 21, 3)`` (MANO order, hand 0 = right) or ``(B, 42, 3)``
(right 0-20, left 21-41, MANO order); masks ``(B, 2, 21)`` / ``(B, 42)`` bool.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ihmr.errors import InputError

__all__ = ["PoseError", "as_two_hand", "mpjpe", "i_mpjpe", "mrrpe", "mpvpe", "i_mpvpe"]


@dataclass
class PoseError:
    """A pooled error and its per-sample breakdown (millimetres).

    Attributes:
        value: pooled mean over all valid points of the counted samples (NaN if none).
        per_sample: ``(B,)`` mean error per sample (NaN for skipped samples).
        count: ``(B,)`` number of valid points per sample (0 = skipped).
    """

    value: float
    per_sample: np.ndarray
    count: np.ndarray

    def subset(self, mask: np.ndarray) -> "PoseError":
        """The pooled error over the samples selected by ``mask (B,)``."""
        ps, c = self.per_sample[mask], self.count[mask]
        tot = c.sum()
        return PoseError(float(np.nansum(ps * c) / tot) if tot else float("nan"), ps, c)


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def as_two_hand(points, valid=None, n: int = 21) -> tuple[np.ndarray, np.ndarray]:
    """Normalise ``(B, 2n, 3)`` or ``(B, 2, n, 3)`` points and masks to ``(B, 2, n, 3)``, ``(B, 2, n)``."""
    p = _np(points).astype(np.float64)
    if p.ndim == 3 and p.shape[1] == 2 * n and p.shape[2] == 3:
        p = p.reshape(p.shape[0], 2, n, 3)
    if p.ndim != 4 or p.shape[1:] != (2, n, 3):
        raise InputError(f"expected points of shape (B, 2, {n}, 3) or (B, {2 * n}, 3), got {p.shape}")
    if p.shape[0] == 0:
        raise InputError("empty batch (B = 0)")
    if valid is None:
        m = np.ones(p.shape[:3], dtype=bool)
    else:
        m = _np(valid).astype(bool)
        if m.shape == (p.shape[0], 2 * n):
            m = m.reshape(p.shape[0], 2, n)
        if m.shape != p.shape[:3]:
            raise InputError(f"valid mask must be (B, 2, {n}) or (B, {2 * n}), got {m.shape}")
    finite = np.isfinite(p).all(-1)
    if not finite[m].all():
        raise InputError("points contain NaN or inf values where they are marked valid")
    return p, m


def _pool(err: np.ndarray, mask: np.ndarray, what: str) -> PoseError:
    """err, mask ``(B, K)`` -> pooled error in mm with per-sample breakdown."""
    count = mask.sum(1)
    skipped = int((count == 0).sum())
    if skipped:
        warnings.warn(f"{what}: {skipped} sample(s) without valid points were skipped", RuntimeWarning, stacklevel=3)
    s = np.where(mask, err, 0.0).sum(1)
    per = np.full(err.shape[0], np.nan)
    per[count > 0] = s[count > 0] / count[count > 0] * 1000.0
    tot = count.sum()
    return PoseError(float(s.sum() / tot * 1000.0) if tot else float("nan"), per, count)


def _wrist_aligned(pred: np.ndarray, gt: np.ndarray, pred_root: np.ndarray, gt_root: np.ndarray) -> np.ndarray:
    return np.linalg.norm(pred - pred_root[:, :, None] + gt_root[:, :, None] - gt, axis=-1)  # (B, 2, K)


def mpjpe(pred, gt, valid=None) -> PoseError:
    """MPJPE (mm) with per-hand wrist alignment; hands whose ground-truth wrist is invalid are skipped."""
    p, m = as_two_hand(pred, valid)
    g, _ = as_two_hand(gt, valid)
    m = m & m[:, :, :1]  # alignment needs the wrist
    err = _wrist_aligned(p, g, p[:, :, 0], g[:, :, 0])
    return _pool(err.reshape(len(p), -1), m.reshape(len(p), -1), "MPJPE")


def _standardise_to(p: np.ndarray, g: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Per sample and axis: map the prediction's mean/std over valid points onto the ground truth's."""
    w = m[..., None].astype(np.float64)  # (B, K, 1)
    n = np.maximum(w.sum(1, keepdims=True), 1.0)
    mp, mg = (p * w).sum(1, keepdims=True) / n, (g * w).sum(1, keepdims=True) / n
    sp = np.sqrt((((p - mp) ** 2) * w).sum(1, keepdims=True) / n)
    sg = np.sqrt((((g - mg) ** 2) * w).sum(1, keepdims=True) / n)
    return (p - mp) / np.maximum(sp, 1e-12) * sg + mg


def i_mpjpe(pred, gt, valid=None) -> PoseError:
    """I-MPJPE (mm): both hands together, per-axis scale + translation alignment, no rotation."""
    p, m = as_two_hand(pred, valid)
    g, _ = as_two_hand(gt, valid)
    B = len(p)
    p, g, m = p.reshape(B, -1, 3), g.reshape(B, -1, 3), m.reshape(B, -1)
    m = m & (m.sum(1, keepdims=True) >= 2)  # a std needs two points
    err = np.linalg.norm(_standardise_to(p, g, m) - g, axis=-1)
    return _pool(err, m, "I-MPJPE")


def mrrpe(pred, gt, valid=None) -> PoseError:
    """MRRPE (mm): ``|(left wrist - right wrist) - the same of the ground truth|`` per sample, over
    the samples whose two ground-truth wrists are valid (one point each)."""
    p, m = as_two_hand(pred, valid)
    g, _ = as_two_hand(gt, valid)
    err = np.linalg.norm((p[:, 1, 0] - p[:, 0, 0]) - (g[:, 1, 0] - g[:, 0, 0]), axis=-1)  # (B,)
    return _pool(err[:, None], (m[:, 0, 0] & m[:, 1, 0])[:, None], "MRRPE")


def mpvpe(pred_vertices, gt_vertices, pred_joints, gt_joints) -> PoseError:
    """MPVPE (mm): vertices ``(B, 2, V, 3)``, each hand aligned by its wrist joint (joint 0)."""
    pv, gv = _np(pred_vertices).astype(np.float64), _np(gt_vertices).astype(np.float64)
    if pv.shape != gv.shape or pv.ndim != 4 or pv.shape[1] != 2:
        raise InputError(f"vertices must both be (B, 2, V, 3), got {pv.shape} and {gv.shape}")
    pj, _ = as_two_hand(pred_joints)
    gj, _ = as_two_hand(gt_joints)
    err = _wrist_aligned(pv, gv, pj[:, :, 0], gj[:, :, 0])
    return _pool(err.reshape(len(pv), -1), np.ones(err.shape, bool).reshape(len(pv), -1), "MPVPE")


def i_mpvpe(pred_vertices, gt_vertices) -> PoseError:
    """I-MPVPE (mm): both hands' vertices together, per-axis scale + translation alignment."""
    pv, gv = _np(pred_vertices).astype(np.float64), _np(gt_vertices).astype(np.float64)
    if pv.shape != gv.shape or pv.ndim != 4 or pv.shape[1] != 2:
        raise InputError(f"vertices must both be (B, 2, V, 3), got {pv.shape} and {gv.shape}")
    B = len(pv)
    p, g = pv.reshape(B, -1, 3), gv.reshape(B, -1, 3)
    m = np.ones(p.shape[:2], bool)
    return _pool(np.linalg.norm(_standardise_to(p, g, m) - g, axis=-1), m, "I-MPVPE")
