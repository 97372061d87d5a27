"""Linear blend skinning for MANO-style hand models: pure functions, batched, differentiable.

Shapes use ``B`` = batch, ``V`` = vertices, ``J`` = kinematic joints (16 for hands), ``K`` = shape
components. All positions are in metres. Rotations are axis-angle vectors expressed in the model's
rest-frame axes, relative to the parent joint (MANO / SMPL convention).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ihmr.geometry.rotations import axis_angle_to_matrix

__all__ = ["blend_shapes", "vertices2joints", "batch_rigid_transform", "lbs"]


def blend_shapes(betas: Tensor, shapedirs: Tensor) -> Tensor:
    """Per-vertex displacement of the shape blend shapes.

    Args:
        betas: ``(B, K)`` shape coefficients.
        shapedirs: ``(V, 3, K)`` blend shapes.

    Returns:
        ``(B, V, 3)`` displacements (metres).
    """
    return torch.einsum("bk,vck->bvc", betas, shapedirs)


def vertices2joints(J_regressor: Tensor, vertices: Tensor) -> Tensor:
    """Regress joint locations from vertices.

    Args:
        J_regressor: ``(J, V)`` regressor.
        vertices: ``(B, V, 3)``.

    Returns:
        ``(B, J, 3)``.
    """
    return torch.einsum("jv,bvc->bjc", J_regressor, vertices)


def batch_rigid_transform(rot_mats: Tensor, joints: Tensor, parents: Tensor) -> tuple[Tensor, Tensor]:
    """Pose a kinematic tree.

    Args:
        rot_mats: ``(B, J, 3, 3)`` local rotations (relative to the parent, rest-frame axes).
        joints: ``(B, J, 3)`` rest joint locations.
        parents: ``(J,)`` parent indices, ``parents[0] == -1`` and ``parents[j] < j``.

    Returns:
        posed_joints: ``(B, J, 3)`` posed joint locations.
        rel_transforms: ``(B, J, 4, 4)`` transforms mapping rest-pose points to posed points for
            each joint (the skinning transforms).
    """
    B, J = joints.shape[:2]
    rel_joints = joints.clone()
    rel_joints[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    # Local 4x4 transforms [R | t] with t = joint offset from the parent.
    top = torch.cat([rot_mats, rel_joints[..., None]], dim=-1)  # (B, J, 3, 4)
    bottom = torch.zeros(B, J, 1, 4, dtype=joints.dtype, device=joints.device)
    bottom[..., 0, 3] = 1.0
    local = torch.cat([top, bottom], dim=-2)  # (B, J, 4, 4)
    chain = [local[:, 0]]
    par = parents.tolist()
    for j in range(1, J):  # loop over the 16 joints of the tree, batched over B
        chain.append(chain[par[j]] @ local[:, j])
    world = torch.stack(chain, dim=1)  # (B, J, 4, 4)
    posed_joints = world[:, :, :3, 3]
    # Remove the rest joint location: T_rel = world @ [I | -j_rest].
    offset = (world[:, :, :3, :3] @ joints[..., None])[..., 0]
    rel = world.clone()
    rel[:, :, :3, 3] = posed_joints - offset
    return posed_joints, rel


def lbs(
    betas: Tensor,
    pose: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Optional[Tensor],
    J_regressor: Tensor,
    parents: Tensor,
    weights: Tensor,
    vertex_ids: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Shape, pose and skin a hand model.

    Args:
        betas: ``(B, K)`` shape coefficients.
        pose: ``(B, J, 3)`` axis-angle per joint (joint 0 = global orientation about the wrist).
        v_template: ``(V, 3)`` rest vertices.
        shapedirs: ``(V, 3, K)``.
        posedirs: ``(P, V * 3)`` pose correctives with ``P = (J - 1) * 9``, or ``None``.
        J_regressor: ``(J, V)``.
        parents: ``(J,)``.
        weights: ``(V, J)`` skinning weights.
        vertex_ids: ``(n,)`` int64: pose only these vertices (the joints are the same as without;
            each vertex as without, up to float rounding of the matrix products).

    Returns:
        vertices: ``(B, V, 3)`` posed vertices (``(B, n, 3)`` with ``vertex_ids``).
        joints: ``(B, J, 3)`` posed kinematic joints.
        rest_joints: ``(B, J, 3)`` joints of the shaped rest hand.

    The same sums as :func:`_lbs_einsum` (the previous implementation, kept as the reference of
    the tests and ``benchmarks/bench_refine_speed.py``) in a cheaper order, equal up to rounding:
    the rest joints regress the template and the blend shapes once (``(J, V)`` products, not one
    per sample), the skinning transforms are one matrix product and are applied to homogeneous
    rest vertices by an elementwise product (no batch of 3 x 3 products, no slices whose backward
    fills zeros).
    """
    B = pose.shape[0]
    V, _, K = shapedirs.shape
    J_shapedirs = (J_regressor @ shapedirs.reshape(V, 3 * K)).view(-1, 3, K)  # (J, 3, K)
    rest_joints = (J_regressor @ v_template) + (betas @ J_shapedirs.reshape(-1, K).T).view(B, -1, 3)
    if vertex_ids is not None:  # the joints come from the whole template (above); the rest only these
        v_template, shapedirs, weights = v_template[vertex_ids], shapedirs[vertex_ids], weights[vertex_ids]
        if posedirs is not None:
            posedirs = posedirs.unflatten(1, (-1, 3))[:, vertex_ids].flatten(1)
        V = v_template.shape[0]
    v_shaped = v_template + (betas @ shapedirs.reshape(V * 3, K).T).view(B, V, 3)
    rot_mats = axis_angle_to_matrix(pose)  # (B, J, 3, 3)
    if posedirs is not None:
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        pose_feature = (rot_mats[:, 1:] - eye).reshape(B, -1)
        v_posed = v_shaped + (pose_feature @ posedirs).view(B, V, 3)
    else:
        v_posed = v_shaped
    joints, rel = batch_rigid_transform(rot_mats, rest_joints, parents)
    J = rel.shape[1]
    T = torch.matmul(weights, rel[:, :, :3, :].reshape(B, J, 12)).view(B, V, 3, 4)
    v_homo = torch.cat([v_posed, v_posed.new_ones(B, V, 1)], dim=-1)  # (B, V, 4)
    vertices = (T * v_homo[:, :, None, :]).sum(-1)
    return vertices, joints, rest_joints


def _lbs_einsum(
    betas: Tensor,
    pose: Tensor,
    v_template: Tensor,
    shapedirs: Tensor,
    posedirs: Optional[Tensor],
    J_regressor: Tensor,
    parents: Tensor,
    weights: Tensor,
    vertex_ids: Optional[Tensor] = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """The previous :func:`lbs` (per-sample joint regression, einsum skinning, batched 3 x 3
    products): the reference of the tests and of the speed benchmark (``vertex_ids`` selects
    vertices after posing them all)."""
    B = pose.shape[0]
    v_shaped = v_template[None] + blend_shapes(betas, shapedirs)
    rest_joints = vertices2joints(J_regressor, v_shaped)
    rot_mats = axis_angle_to_matrix(pose)  # (B, J, 3, 3)
    if posedirs is not None:
        eye = torch.eye(3, dtype=pose.dtype, device=pose.device)
        pose_feature = (rot_mats[:, 1:] - eye).reshape(B, -1)
        v_posed = v_shaped + (pose_feature @ posedirs).reshape(B, -1, 3)
    else:
        v_posed = v_shaped
    joints, rel = batch_rigid_transform(rot_mats, rest_joints, parents)
    T = torch.einsum("vj,bjmn->bvmn", weights, rel[:, :, :3, :])  # (B, V, 3, 4)
    vertices = (T[..., :3] @ v_posed[..., None])[..., 0] + T[..., 3]
    return (vertices if vertex_ids is None else vertices[:, vertex_ids]), joints, rest_joints
