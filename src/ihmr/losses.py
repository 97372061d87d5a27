"""Loss terms shared by stage I and the learned refiners (paper Eq. 3-5, the joint head, hand types).

Every loss returns a scalar: the mean over the *valid* entries only (masked entries get exactly zero
gradient; with no valid entry the loss is 0, still attached to the graph). Masks are per hand
``(B, 2)`` for parameters and per joint ``(B, 2, 21)`` for joints; :class:`ihmr.stage1.loss.Stage1Loss`
combines the per-joint validity with per-hand presence.

Joints are ``(B, 2, 21, C)`` in MANO order (hand 0 = right); the flat joint-head layout ``(B, 42, C)``
(right hand first) is accepted wherever joints are (masks ``(B, 42)`` likewise). Units: metres,
normalised crop coordinates in ``[-1, 1]`` for 2D.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ihmr.errors import InputError
from ihmr.geometry.camera import project_weak_perspective
from ihmr.geometry.rotations import axis_angle_to_matrix
from ihmr.joint_order import to_two_hand

__all__ = [
    "two_hand_joints",
    "joint_mask",
    "batch_mask",
    "masked_mean",
    "align_to_right_wrist",
    "pose_loss",
    "shape_loss",
    "tau_loss",
    "joint3d_loss",
    "joint2d_loss",
    "shape_l2_loss",
    "shape_consistency_loss",
    "joint_head_2d_loss",
    "joint_head_3d_loss",
    "hand_type_loss",
]


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def two_hand_joints(x: Tensor, name: str) -> Tensor:
    """``(B, 42, C)`` or ``(B, 2, 21, C)`` -> ``(B, 2, 21, C)``."""
    if x.ndim == 3 and x.shape[1] == 42:
        return to_two_hand(x, "mano")
    if x.ndim == 4 and x.shape[1:3] == (2, 21):
        return x
    raise InputError(f"{name} must be (B, 42, C) or (B, 2, 21, C), got {tuple(x.shape)}")


def joint_mask(mask: Optional[Tensor], like: Tensor, name: str = "valid") -> Tensor:
    """Per-joint mask ``(B, 2, 21)`` (float) from ``None``, ``(B, 42)`` or ``(B, 2, 21)``."""
    B = like.shape[0]
    if mask is None:
        return like.new_ones(B, 2, 21)
    if mask.shape == (B, 42):
        mask = to_two_hand(mask, "mano", axis=-1)
    if mask.shape != (B, 2, 21):
        raise InputError(f"{name} must be (B, 42) or (B, 2, 21) = {(B, 2, 21)}, got {tuple(mask.shape)}")
    return mask.to(like.dtype)


def batch_mask(mask: Optional[Tensor], shape: tuple[int, ...], like: Tensor, name: str = "valid") -> Tensor:
    """Mask of ``shape`` (float, like ``like``) from ``None`` (all ones) or a tensor of that shape."""
    if mask is None:
        return like.new_ones(shape)
    if tuple(mask.shape) != shape:
        raise InputError(f"{name} must have shape {shape}, got {tuple(mask.shape)}")
    return mask.to(like.dtype)


def masked_mean(err: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``err`` over the entries where ``mask`` (broadcast to ``err``'s shape) is non-zero.

    Masked entries are replaced (not multiplied), so NaN/inf there cannot leak into the value or the
    gradient. Returns 0 (attached to the graph) when nothing is valid.
    """
    m = mask.to(err.dtype).expand_as(err)
    e = torch.where(m > 0, err, torch.zeros_like(err)) * m
    return e.sum() / m.sum().clamp_min(1.0)


def align_to_right_wrist(joints: Tensor, valid: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Subtract the right wrist from both hands' joints.

    Args:
        joints: ``(B, 2, 21, C)`` (or flat ``(B, 42, C)``).
        valid: ``(B, 2, 21)`` (or ``(B, 42)``) joint validity, default all valid.

    Returns:
        ``(aligned (B, 2, 21, C), valid (B, 2, 21))``. Where the right wrist is invalid the right hand
        becomes invalid and the left hand is aligned to its own wrist instead (valid only if that
        wrist is).
    """
    j = two_hand_joints(joints, "joints")
    v = joint_mask(valid, j)
    rw_ok = v[:, 0, 0] > 0  # (B,)
    ref_l = torch.where(rw_ok[:, None], j[:, 0, 0], j[:, 1, 0])
    ref = torch.stack([j[:, 0, 0], ref_l], dim=1)[:, :, None]  # (B, 2, 1, C)
    keep = torch.stack([rw_ok, rw_ok | (v[:, 1, 0] > 0)], dim=1).to(v.dtype)  # (B, 2)
    return j - ref, v * keep[:, :, None]


# --------------------------------------------------------------------------------------------------
# Parameter losses (Eq. 3)
# --------------------------------------------------------------------------------------------------


def pose_loss(phi: Tensor, theta: Tensor, gt_phi: Tensor, gt_theta: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Eq. 3 pose term on rotation matrices: mean squared difference of ``R(.)`` over the 16 joint
    rotations (global orientation and 15 finger joints) of the valid hands.

    Args:
        phi, gt_phi: ``(B, 2, 3)`` axis-angle global orientations.
        theta, gt_theta: ``(B, 2, 45)`` axis-angle finger poses.
        valid: ``(B, 2)`` hands with ground-truth parameters.
    """
    B = phi.shape[0]
    pose = torch.cat([phi, theta], dim=-1).reshape(B, 2, 16, 3)
    gt = torch.cat([gt_phi, gt_theta], dim=-1).reshape(B, 2, 16, 3).to(pose.dtype)
    err = (axis_angle_to_matrix(pose) - axis_angle_to_matrix(gt)) ** 2  # (B, 2, 16, 3, 3)
    return masked_mean(err, batch_mask(valid, (B, 2), pose)[:, :, None, None, None])


def shape_loss(beta: Tensor, gt_beta: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """L1 between shapes ``(B, 2, K)`` of the valid hands ``valid (B, 2)`` (as released)."""
    return masked_mean((beta - gt_beta.to(beta.dtype)).abs(), batch_mask(valid, tuple(beta.shape[:2]), beta)[..., None])


def tau_loss(tau: Tensor, gt_tau: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Eq. 3 ``L_tau``: mean squared error of ``tau (B, 3)`` (left wrist - right wrist, m) over the
    samples ``valid (B,)`` (both hands present with known wrists)."""
    return masked_mean((tau - gt_tau.to(tau.dtype)) ** 2, batch_mask(valid, (tau.shape[0],), tau)[:, None])


def shape_l2_loss(beta: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Shape prior: mean of ``beta ** 2`` over the present hands ``valid (B, 2)``; ``beta (B, 2, K)``."""
    return masked_mean(beta**2, batch_mask(valid, tuple(beta.shape[:2]), beta)[..., None])


def shape_consistency_loss(beta: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Eq. 3 ``L_reg = |beta_l - beta_r|^2`` (mean over the ``K`` components) over the samples
    ``valid (B,)`` where both hands are present; ``beta (B, 2, K)``."""
    return masked_mean((beta[:, 1] - beta[:, 0]) ** 2, batch_mask(valid, (beta.shape[0],), beta)[:, None])


# --------------------------------------------------------------------------------------------------
# Joint losses
# --------------------------------------------------------------------------------------------------


def joint3d_loss(joints: Tensor, gt_joints: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Eq. 3 ``L_J3D``: mean squared error (per coordinate, m^2) of the hand-model joints against the
    ground truth, both aligned with :func:`align_to_right_wrist`.

    Args:
        joints: ``(B, 2, 21, 3)`` hand-model joints.
        gt_joints: ``(B, 2, 21, 3)`` ground truth, any origin.
        valid: ``(B, 2, 21)`` ground-truth validity (hand presence folded in).
    """
    p, _ = align_to_right_wrist(joints, valid)
    g, v = align_to_right_wrist(gt_joints.to(p.dtype), valid)
    return masked_mean((p - g) ** 2, v[..., None])


def joint2d_loss(joints: Tensor, cam: Tensor, gt_2d: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Eq. 4 ``L_J2D``: mean L1 between the weak-perspective projection ``s * (xy + t)`` of the
    hand-model joints ``(B, 2, 21, 3)`` with ``cam (B, 3)`` and the normalised ground-truth 2D joints
    ``(B, 2, 21, 2)``, over the visible joints ``valid (B, 2, 21)``."""
    j = two_hand_joints(joints, "joints")
    g = two_hand_joints(gt_2d, "gt_2d").to(j.dtype)
    return masked_mean((project_weak_perspective(j, cam) - g).abs(), joint_mask(valid, j)[..., None])


def joint_head_2d_loss(j2d: Tensor, gt_2d: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Joint head, 2D: mean L1 between soft-argmax joints and normalised ground truth.

    Args:
        j2d: ``(B, 42, 2)`` (or ``(B, 2, 21, 2)``).
        gt_2d: same layout.
        valid: ``(B, 42)`` or ``(B, 2, 21)``.
    """
    p = two_hand_joints(j2d, "j2d")
    return masked_mean((p - two_hand_joints(gt_2d, "gt_2d").to(p.dtype)).abs(), joint_mask(valid, p)[..., None])


def joint_head_3d_loss(j3d: Tensor, gt_3d: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Joint head, 3D: mean L1 (m) between the joint head's joints and the ground truth, both aligned
    with :func:`align_to_right_wrist`. Shapes as :func:`joint_head_2d_loss` with 3 coordinates."""
    p, _ = align_to_right_wrist(j3d, valid)
    g, v = align_to_right_wrist(two_hand_joints(gt_3d, "gt_3d").to(p.dtype), valid)
    return masked_mean((p - g).abs(), v[..., None])


def hand_type_loss(logits: Tensor, target: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Binary cross-entropy of hand-type logits ``(B, 2)`` (right present, left present) against
    ``target (B, 2)`` in ``{0, 1}``, over the samples ``valid (B,)``."""
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return masked_mean(bce, batch_mask(valid, (logits.shape[0],), logits)[:, None])





