"""Analytic inverse kinematics: 21 hand joints -> MANO-style parameters (the paper's A.5 baseline).

For one hand (batched):

1. **Shape** from bone lengths: Gauss-Newton on ``beta`` (ridge-regularised) so that the rest
   skeleton's 20 bone lengths and the distances among its palm joints match the target's.
2. **Global orientation** by SVD (Kabsch) of the wrist and the five palm joints (index, middle,
   pinky, ring MCPs and the thumb CMC), which move rigidly with the wrist.
3. **Finger rotations** as swing rotations: down each chain, the minimal rotation (relative to the
   parent, in the rest-frame axes) that turns the rest bone onto the target bone. Twist about the
   bone cannot be seen from joints and stays zero.

Also returns the wrist position, so ``joints ~= FK(beta, phi, theta) + wrist``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ihmr.errors import InputError
from ihmr.geometry.rotations import matrix_to_axis_angle, swing_rotation
from ihmr.handmodel.layer import HandLayer
from ihmr.handmodel.two_hands import TwoHands

__all__ = ["IKResult", "kabsch_rotation", "fit_shape", "hand_ik", "pair_ik"]

#: Parent of each of the 21 MANO-order joints (tips hang from the finger's last joint).
_PARENT21 = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14, 15, 3, 6, 12, 9)
#: Child used to aim each of the 15 finger joints (MANO ids 1..15) -> next joint or the tip.
_CHILD = {1: 2, 2: 3, 3: 17, 4: 5, 5: 6, 6: 18, 7: 8, 8: 9, 9: 20, 10: 11, 11: 12, 12: 19, 13: 14, 14: 15, 15: 16}
_PALM = (0, 1, 4, 7, 10, 13)


@dataclass
class IKResult:
    """Parameters of one hand: ``beta (B, K)``, ``global_orient (B, 3)``, ``hand_pose (B, 45)``, and
    the wrist position ``wrist (B, 3)`` (metres) of the target joints."""

    beta: Tensor
    global_orient: Tensor
    hand_pose: Tensor
    wrist: Tensor


def kabsch_rotation(src: Tensor, dst: Tensor) -> Tensor:
    """Rotations ``(B, 3, 3)`` minimising ``sum ||R src_i - dst_i||^2`` for centred ``(B, N, 3)`` sets."""
    H = src.transpose(1, 2) @ dst  # (B, 3, 3)
    U, _, Vt = torch.linalg.svd(H)
    d = torch.sign(torch.linalg.det(Vt.transpose(1, 2) @ U.transpose(1, 2)))
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1))
    return Vt.transpose(1, 2) @ D @ U.transpose(1, 2)


def _rest_joints21(layer: HandLayer, beta: Tensor) -> Tensor:
    out = layer(betas=beta)
    return out.joints  # (B, 21, 3) flat hand, wrist not at origin


def _pairs() -> tuple[Tensor, Tensor]:
    """Index pairs of the rotation-invariant lengths: the 20 bones and the 15 palm-joint distances
    (the palm joints move rigidly together)."""
    a = list(range(1, 21))
    b = list(_PARENT21[1:])
    i, j = torch.triu_indices(len(_PALM), len(_PALM), 1)
    a += [_PALM[k] for k in i.tolist()]
    b += [_PALM[k] for k in j.tolist()]
    return torch.tensor(a), torch.tensor(b)


def _rest_skeleton_basis(layer: HandLayer) -> tuple[Tensor, Tensor]:
    """Rest joints are linear in the shape: ``J(beta) = J0 + D beta``; returns J0 ``(21, 3)``, D ``(21, 3, K)``."""
    d16 = torch.einsum("jv,vck->jck", layer.J_regressor, layer.shapedirs)
    D = torch.cat([d16, layer.shapedirs[layer.tip_ids]], 0)
    J0 = torch.cat([layer.J_regressor @ layer.v_template, layer.v_template[layer.tip_ids]], 0)
    return J0, D


def fit_shape(layer: HandLayer, joints: Tensor, iters: int = 10, ridge: float = 1e-6) -> Tensor:
    """Shape ``(B, K)`` whose rest skeleton best matches ``joints (B, 21, 3)``: Gauss-Newton on the
    bone lengths and palm distances; ``ridge`` (m^2 per unit beta^2) keeps directions that joints
    cannot see near the mean."""
    a, b = _pairs()
    J0, D = _rest_skeleton_basis(layer)
    dJ0, dD = J0[a] - J0[b], D[a] - D[b]  # (P, 3), (P, 3, K)
    target = (joints[:, a] - joints[:, b]).norm(dim=-1)  # (B, P)
    K = D.shape[-1]
    beta = torch.zeros(joints.shape[0], K, dtype=joints.dtype)
    eye = torch.eye(K, dtype=joints.dtype)
    for _ in range(iters):
        vec = dJ0 + torch.einsum("pck,bk->bpc", dD, beta)  # (B, P, 3)
        L = vec.norm(dim=-1)
        jac = torch.einsum("bpc,pck->bpk", vec / L[..., None].clamp_min(1e-12), dD)  # dL/dbeta
        A = jac.transpose(1, 2) @ jac + ridge * eye
        g = jac.transpose(1, 2) @ (L - target)[..., None] + ridge * beta[..., None]
        beta = beta - torch.linalg.solve(A, g)[..., 0]
    return beta


@torch.no_grad()
def hand_ik(layer: HandLayer, joints: Tensor, fit_beta: bool = True) -> IKResult:
    """Parameters of ``layer``'s hand reproducing ``joints (B, 21, 3)`` (MANO order, metres)."""
    if joints.ndim != 3 or joints.shape[1:] != (21, 3):
        raise InputError(f"joints must be (B, 21, 3) in MANO order, got {tuple(joints.shape)}")
    if not bool(torch.isfinite(joints).all()):
        raise InputError("joints contain NaN or inf values")
    dt = layer.v_template.dtype
    joints = joints.to(dt)
    B = joints.shape[0]
    beta = fit_shape(layer, joints) if fit_beta else torch.zeros(B, layer.num_betas, dtype=dt)
    rest = _rest_joints21(layer, beta)  # (B, 21, 3)
    palm = list(_PALM)
    src = rest[:, palm] - rest[:, :1]
    dst = joints[:, palm] - joints[:, :1]
    G = [None] * 16
    G[0] = kabsch_rotation(src, dst)
    local = torch.eye(3, dtype=dt).repeat(B, 16, 1, 1)
    local[:, 0] = G[0]
    for j in range(1, 16):  # parents come first in MANO order
        p = _PARENT21[j]
        c = _CHILD[j]
        d_rest = rest[:, c] - rest[:, j]
        d_tgt = G[p].transpose(1, 2) @ (joints[:, c] - joints[:, j])[..., None]
        R = swing_rotation(d_rest, d_tgt[..., 0])
        local[:, j] = R
        G[j] = G[p] @ R
    aa = matrix_to_axis_angle(local)  # (B, 16, 3)
    return IKResult(beta=beta, global_orient=aa[:, 0], hand_pose=aa[:, 1:].reshape(B, 45), wrist=joints[:, 0])


@torch.no_grad()
def pair_ik(hands: TwoHands, j3d: Tensor) -> dict[str, Tensor]:
    """Two-hand parameters reproducing joint-head joints (the stage I of the paper's starred rows,
    HybrIK-style: a joint head, then IK).

    Args:
        hands: the two-hand model.
        j3d: ``(B, 42, 3)`` joints, MANO order, right hand first (metres; any origin).

    Returns:
        ``beta (B, 2, K)``, ``phi (B, 2, 3)``, ``theta (B, 2, 45)``, ``tau (B, 3)`` (left wrist minus
        right wrist, as :class:`~ihmr.handmodel.two_hands.TwoHands` takes it), in the model's dtype.
    """
    if j3d.ndim != 3 or j3d.shape[1:] != (42, 3):
        raise InputError(f"j3d must be (B, 42, 3) in MANO order, right hand first, got {tuple(j3d.shape)}")
    r, l = hand_ik(hands.right, j3d[:, :21]), hand_ik(hands.left, j3d[:, 21:])
    return {"beta": torch.stack([r.beta, l.beta], 1), "phi": torch.stack([r.global_orient, l.global_orient], 1),
            "theta": torch.stack([r.hand_pose, l.hand_pose], 1), "tau": l.wrist - r.wrist}
