"""The stage-I network's training loss: the weighted sum of the loss terms of :mod:`ihmr.losses`
(paper Eq. 3-5, plus the joint head and hand types) over a batch's targets."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor, nn

from ihmr.collision.spheres import SphereProxy, build_sphere_proxy, proxy_collision
from ihmr.errors import InputError
from ihmr.handmodel.two_hands import TwoHands
from ihmr.losses import (
    batch_mask,
    hand_type_loss,
    joint2d_loss,
    joint3d_loss,
    joint_head_2d_loss,
    joint_head_3d_loss,
    joint_mask,
    pose_loss,
    shape_consistency_loss,
    shape_l2_loss,
    shape_loss,
    tau_loss,
    two_hand_joints,
)
from ihmr.stage1.network import Stage1Output

__all__ = ["LOSS_WEIGHTS", "Stage1Targets", "Stage1Loss"]


#: Loss weights as released: all 10 except the shape regularisers (0.1) and the hand-type BCE (1).
#: ``reg`` is Eq. 3's ``L_reg = |beta_l - beta_r|^2`` (lambda_4 = 0.1); ``beta_l2`` the L2 prior on
#: both shapes, also 0.1. ``collision`` (off as released; the paper's Fig. 6 studies it): the
#: sphere-proxy collision error of the predicted meshes (:func:`~ihmr.collision.spheres.proxy_collision`,
#: m, the summed depths of one hand's vertices inside the other), on samples with both hands.
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
    "collision": 0.0,
}


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
        hands: the network's two-hand model; needed by the collision term (its faces and sphere proxy).

    Forward: ``(out: Stage1Output, targets: Stage1Targets)`` -> ``(total, terms)``: the weighted total
    (scalar) and the unweighted terms by name (only the terms whose targets were given). The
    hand-model terms (``j3d``, ``j2d``) need ``out.joints``, i.e. a network built with a hand model.
    """

    def __init__(self, weights: Optional[dict[str, float]] = None, hands: Optional[TwoHands] = None) -> None:
        super().__init__()
        w = dict(LOSS_WEIGHTS)
        for k, v in (weights or {}).items():
            if k not in w:
                raise InputError(f"unknown loss term {k!r}; known: {sorted(w)}")
            w[k] = float(v)
        if w["collision"] < 0:
            raise InputError(f"the collision weight must be >= 0, got {w['collision']}")
        if w["collision"] and hands is None:
            raise InputError("the collision loss needs the hand model: Stage1Loss(weights, hands=TwoHands(...))")
        self.weights = w
        self._hands = [hands]  # a list: not a submodule of the loss
        self._proxy: Optional[SphereProxy] = None

    def forward(self, out: Stage1Output, targets: Stage1Targets) -> tuple[Tensor, dict[str, Tensor]]:
        t = targets
        ref = out.vector
        B = ref.shape[0]
        present = batch_mask(t.hand_present, (B, 2), ref, "hand_present")
        both = present[:, 0] * present[:, 1]
        jv = None
        if t.j2d is not None or t.j3d is not None:
            jv = joint_mask(t.joint_valid, ref.new_zeros(B, 1), "joint_valid") * present[:, :, None]
        w = self.weights
        p = out.params
        terms: dict[str, Tensor] = {}

        def want(name: str) -> bool:
            return w[name] != 0.0

        if t.beta is not None or t.theta is not None:
            mv = batch_mask(t.mano_valid, (B, 2), ref, "mano_valid") * present
            if want("pose") and t.theta is not None and t.phi is not None:
                terms["pose"] = pose_loss(p["phi"], p["theta"], t.phi, t.theta, mv)
            if want("shape") and t.beta is not None:
                terms["shape"] = shape_loss(p["beta"], t.beta, mv)
        tau, tau_valid = t.tau, t.tau_valid
        if tau is None and t.j3d is not None:
            g = two_hand_joints(t.j3d, "targets.j3d")
            tau = g[:, 1, 0] - g[:, 0, 0]
            if tau_valid is None:
                tau_valid = jv[:, 0, 0] * jv[:, 1, 0]
        if want("tau") and tau is not None:
            tv = both if tau_valid is None else batch_mask(tau_valid, (B,), ref, "tau_valid") * both
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
        if want("collision"):
            if out.vertices is None:
                raise InputError("the collision loss needs the hand-model meshes: build Stage1Net(hand_model=TwoHands())")
            hands = self._hands[0]
            if self._proxy is None:
                self._proxy = build_sphere_proxy(hands).to(out.vertices.dtype, out.vertices.device)
            col = proxy_collision(out.vertices, out.joints, hands.faces.to(out.vertices.device), self._proxy)
            terms["collision"] = (col * both).sum() / both.sum().clamp_min(1.0)
        if want("hand_type") and t.hand_present is not None:
            terms["hand_type"] = hand_type_loss(out.hand_type_logits, t.hand_present, t.hand_type_valid)
        total = sum((w[k] * v for k, v in terms.items()), ref.new_zeros(()))
        return total, terms
