"""Training losses of the stage-I network (paper Eq. 3-5, plus the joint head and hand types).

Every loss returns a scalar: the mean over the *valid* entries only (masked entries get exactly zero
gradient; with no valid entry the loss is 0, still attached to the graph). Masks are per hand
``(B, 2)`` for parameters and per joint ``(B, 2, 21)`` for joints; :class:`Stage1Loss` combines the
per-joint validity with per-hand presence.

Joints are ``(B, 2, 21, C)`` in MANO order (hand 0 = right); the flat joint-head layout ``(B, 42, C)``
(right hand first) is accepted wherever joints are (masks ``(B, 42)`` likewise). Units: metres,
normalised crop coordinates in ``[-1, 1]`` for 2D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ihmr.errors import InputError
from ihmr.geometry.camera import project_weak_perspective
from ihmr.geometry.rotations import axis_angle_to_matrix
from ihmr.joint_order import to_two_hand
from ihmr.stage1.network import Stage1Output

__all__ = [
    "LOSS_WEIGHTS",
    "Stage1Targets",
    "Stage1Loss",
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

#: Loss weights as released: all 10 except the shape regularisers (0.1) and the hand-type BCE (1).
#: ``reg`` is Eq. 3's ``L_reg = |beta_l - beta_r|^2`` (lambda_4 = 0.1); ``beta_l2`` the L2 prior on
#: both shapes, also 0.1.
LOSS_WEIGHTS: dict[str, float] = {
    "pose": 10.0,
    "shape": 10.0,
    "tau": 10.0,
    "j3d": 10.0,
    "j2d": 10.0,
    "reg": 0.1,
    "beta_l2": 0.1,
    "head_j2d": 10.0,
    "head_j3d": 10.0,
    "hand_type": 1.0,
}


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _joints(x: Tensor, name: str) -> Tensor:
    """``(B, 42, C)`` or ``(B, 2, 21, C)`` -> ``(B, 2, 21, C)``."""
    if x.ndim == 3 and x.shape[1] == 42:
        return to_two_hand(x, "mano")
    if x.ndim == 4 and x.shape[1:3] == (2, 21):
        return x
    raise InputError(f"{name} must be (B, 42, C) or (B, 2, 21, C), got {tuple(x.shape)}")


def _joint_mask(mask: Optional[Tensor], like: Tensor, name: str = "valid") -> Tensor:
    """Per-joint mask ``(B, 2, 21)`` (float) from ``None``, ``(B, 42)`` or ``(B, 2, 21)``."""
    B = like.shape[0]
    if mask is None:
        return like.new_ones(B, 2, 21)
    if mask.shape == (B, 42):
        mask = to_two_hand(mask, "mano", axis=-1)
    if mask.shape != (B, 2, 21):
        raise InputError(f"{name} must be (B, 42) or (B, 2, 21) = {(B, 2, 21)}, got {tuple(mask.shape)}")
    return mask.to(like.dtype)


def _mask(mask: Optional[Tensor], shape: tuple[int, ...], like: Tensor, name: str = "valid") -> Tensor:
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
    j = _joints(joints, "joints")
    v = _joint_mask(valid, j)
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
    return masked_mean(err, _mask(valid, (B, 2), pose)[:, :, None, None, None])


def shape_loss(beta: Tensor, gt_beta: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """L1 between shapes ``(B, 2, K)`` of the valid hands ``valid (B, 2)`` (as released)."""
    return masked_mean((beta - gt_beta.to(beta.dtype)).abs(), _mask(valid, tuple(beta.shape[:2]), beta)[..., None])


def tau_loss(tau: Tensor, gt_tau: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Eq. 3 ``L_tau``: mean squared error of ``tau (B, 3)`` (left wrist - right wrist, m) over the
    samples ``valid (B,)`` (both hands present with known wrists)."""
    return masked_mean((tau - gt_tau.to(tau.dtype)) ** 2, _mask(valid, (tau.shape[0],), tau)[:, None])


def shape_l2_loss(beta: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Shape prior: mean of ``beta ** 2`` over the present hands ``valid (B, 2)``; ``beta (B, 2, K)``."""
    return masked_mean(beta**2, _mask(valid, tuple(beta.shape[:2]), beta)[..., None])


def shape_consistency_loss(beta: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Eq. 3 ``L_reg = |beta_l - beta_r|^2`` (mean over the ``K`` components) over the samples
    ``valid (B,)`` where both hands are present; ``beta (B, 2, K)``."""
    return masked_mean((beta[:, 1] - beta[:, 0]) ** 2, _mask(valid, (beta.shape[0],), beta)[:, None])


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
    j = _joints(joints, "joints")
    g = _joints(gt_2d, "gt_2d").to(j.dtype)
    return masked_mean((project_weak_perspective(j, cam) - g).abs(), _joint_mask(valid, j)[..., None])


def joint_head_2d_loss(j2d: Tensor, gt_2d: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Joint head, 2D: mean L1 between soft-argmax joints and normalised ground truth.

    Args:
        j2d: ``(B, 42, 2)`` (or ``(B, 2, 21, 2)``).
        gt_2d: same layout.
        valid: ``(B, 42)`` or ``(B, 2, 21)``.
    """
    p = _joints(j2d, "j2d")
    return masked_mean((p - _joints(gt_2d, "gt_2d").to(p.dtype)).abs(), _joint_mask(valid, p)[..., None])


def joint_head_3d_loss(j3d: Tensor, gt_3d: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Joint head, 3D: mean L1 (m) between the joint head's joints and the ground truth, both aligned
    with :func:`align_to_right_wrist`. Shapes as :func:`joint_head_2d_loss` with 3 coordinates."""
    p, _ = align_to_right_wrist(j3d, valid)
    g, v = align_to_right_wrist(_joints(gt_3d, "gt_3d").to(p.dtype), valid)
    return masked_mean((p - g).abs(), v[..., None])


def hand_type_loss(logits: Tensor, target: Tensor, valid: Optional[Tensor] = None) -> Tensor:
    """Binary cross-entropy of hand-type logits ``(B, 2)`` (right present, left present) against
    ``target (B, 2)`` in ``{0, 1}``, over the samples ``valid (B,)``."""
    bce = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    return masked_mean(bce, _mask(valid, (logits.shape[0],), logits)[:, None])


# --------------------------------------------------------------------------------------------------
# Combined
# --------------------------------------------------------------------------------------------------


@dataclass
class Stage1Targets:
    """Ground truth of a batch; every field is optional, terms without their targets are skipped.

    Attributes:
        j2d: ``(B, 2, 21, 2)`` (or ``(B, 42, 2)``) 2D joints, normalised crop coordinates.
        j3d: ``(B, 2, 21, 3)`` (or ``(B, 42, 3)``) 3D joints, metres, any origin.
        joint_valid: ``(B, 2, 21)`` (or ``(B, 42)``) joint validity / visibility; default all valid.
        hand_present: ``(B, 2)`` right/left hand present (also the hand-type target); default both.
        hand_type_valid: ``(B,)`` samples whose hand type is known; default all.
        beta: ``(B, 2, 10)``, phi ``(B, 2, 3)``, theta ``(B, 2, 45)``: ground-truth parameters.
        mano_valid: ``(B, 2)`` hands with ground-truth parameters; default all (present) hands.
        tau: ``(B, 3)`` left wrist - right wrist (m); default from ``j3d``'s wrists.
        tau_valid: ``(B,)``; default: both hands present (and both wrists valid when derived).
    """

    j2d: Optional[Tensor] = None
    j3d: Optional[Tensor] = None
    joint_valid: Optional[Tensor] = None
    hand_present: Optional[Tensor] = None
    hand_type_valid: Optional[Tensor] = None
    beta: Optional[Tensor] = None
    phi: Optional[Tensor] = None
    theta: Optional[Tensor] = None
    mano_valid: Optional[Tensor] = None
    tau: Optional[Tensor] = None
    tau_valid: Optional[Tensor] = None


class Stage1Loss(nn.Module):
    """Weighted sum of the stage-I losses (Eq. 5 plus joint-head and hand-type terms).

    Args:
        weights: overrides of :data:`LOSS_WEIGHTS` (a weight of 0 skips the term).

    Forward: ``(out: Stage1Output, targets: Stage1Targets)`` -> ``(total, terms)``: the weighted total
    (scalar) and the unweighted terms by name (only the terms whose targets were given). The
    hand-model terms (``j3d``, ``j2d``) need ``out.joints``, i.e. a network built with a hand model.
    """

    def __init__(self, weights: Optional[dict[str, float]] = None) -> None:
        super().__init__()
        w = dict(LOSS_WEIGHTS)
        for k, v in (weights or {}).items():
            if k not in w:
                raise InputError(f"unknown loss term {k!r}; known: {sorted(w)}")
            w[k] = float(v)
        self.weights = w

    def forward(self, out: Stage1Output, targets: Stage1Targets) -> tuple[Tensor, dict[str, Tensor]]:
        t = targets
        ref = out.vector
        B = ref.shape[0]
        present = _mask(t.hand_present, (B, 2), ref, "hand_present")
        both = present[:, 0] * present[:, 1]
        jv = None
        if t.j2d is not None or t.j3d is not None:
            jv = _joint_mask(t.joint_valid, ref.new_zeros(B, 1), "joint_valid") * present[:, :, None]
        w = self.weights
        p = out.params
        terms: dict[str, Tensor] = {}

        def want(name: str) -> bool:
            return w[name] != 0.0

        if t.beta is not None or t.theta is not None:
            mv = _mask(t.mano_valid, (B, 2), ref, "mano_valid") * present
            if want("pose") and t.theta is not None and t.phi is not None:
                terms["pose"] = pose_loss(p["phi"], p["theta"], t.phi, t.theta, mv)
            if want("shape") and t.beta is not None:
                terms["shape"] = shape_loss(p["beta"], t.beta, mv)
        tau, tau_valid = t.tau, t.tau_valid
        if tau is None and t.j3d is not None:
            g = _joints(t.j3d, "targets.j3d")
            tau = g[:, 1, 0] - g[:, 0, 0]
            if tau_valid is None:
                tau_valid = jv[:, 0, 0] * jv[:, 1, 0]
        if want("tau") and tau is not None:
            tv = both if tau_valid is None else _mask(tau_valid, (B,), ref, "tau_valid") * both
            terms["tau"] = tau_loss(p["tau"], tau, tv)
        if t.j3d is not None or t.j2d is not None:
            if (want("j3d") and t.j3d is not None) or (want("j2d") and t.j2d is not None):
                if out.joints is None:
                    raise InputError("the j3d / j2d losses need the hand-model joints: build Stage1Net(hand_model=TwoHands())")
            if want("j3d") and t.j3d is not None:
                terms["j3d"] = joint3d_loss(out.joints, t.j3d, jv)
            if want("j2d") and t.j2d is not None:
                terms["j2d"] = joint2d_loss(out.joints, p["cam"], t.j2d, jv)
            if want("head_j3d") and t.j3d is not None:
                terms["head_j3d"] = joint_head_3d_loss(out.j3d, t.j3d, jv)
            if want("head_j2d") and t.j2d is not None:
                terms["head_j2d"] = joint_head_2d_loss(out.j2d, t.j2d, jv)
        if want("reg"):
            terms["reg"] = shape_consistency_loss(p["beta"], both)
        if want("beta_l2"):
            terms["beta_l2"] = shape_l2_loss(p["beta"], present)
        if want("hand_type") and t.hand_present is not None:
            terms["hand_type"] = hand_type_loss(out.hand_type_logits, t.hand_present, t.hand_type_valid)
        total = sum((w[k] * v for k, v in terms.items()), ref.new_zeros(()))
        return total, terms
