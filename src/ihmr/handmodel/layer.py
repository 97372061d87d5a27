"""``nn.Module`` wrapper of one hand model (open model or MANO), in the style of ``smplx.MANO``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import Tensor, nn

from ihmr.errors import InputError
from ihmr.handmodel.data import NUM_JOINTS, HandModelData
from ihmr.handmodel.lbs import lbs

__all__ = ["HandOutput", "HandLayer", "check_param"]


@dataclass
class HandOutput:
    """Output of :class:`HandLayer` (metres).

    Attributes:
        vertices: ``(B, V, 3)``.
        joints: ``(B, 21, 3)`` MANO order: 16 kinematic joints, then thumb/index/middle/ring/pinky tips.
        full_pose: ``(B, 16, 3)`` axis-angle of all joints (global orientation first).
        rest_joints: ``(B, 16, 3)`` joints of the shaped flat hand before posing.
    """

    vertices: Tensor
    joints: Tensor
    full_pose: Tensor
    rest_joints: Tensor


def check_param(name: str, x: Tensor, shape: tuple[Optional[int], ...]) -> None:
    """Raise :class:`InputError` unless ``x`` is a finite floating tensor of ``shape``.

    ``None`` entries in ``shape`` match any size.
    """
    if not isinstance(x, Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if not x.is_floating_point():
        raise InputError(f"{name} must be a floating-point tensor, got dtype {x.dtype}")
    if x.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, x.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise InputError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise InputError(f"{name} contains NaN or inf values")


class HandLayer(nn.Module):
    """Differentiable single-hand model.

    Args:
        data: the model's arrays (see :class:`HandModelData`).
        use_pca: interpret ``hand_pose`` as PCA coefficients of MANO's pose space.
        num_pca_comps: number of PCA coefficients when ``use_pca``.
        dtype: parameter/buffer dtype.
    """

    def __init__(
        self,
        data: HandModelData,
        use_pca: bool = False,
        num_pca_comps: int = 6,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        data.validate()
        self.data = data
        self.side = data.side
        self.use_pca = use_pca
        self.num_pca_comps = num_pca_comps
        if use_pca and data.hands_components is None:
            raise InputError(f"model '{data.name}' has no PCA pose space (hands_components); use use_pca=False")
        if use_pca and not 1 <= num_pca_comps <= 45:
            raise InputError(f"num_pca_comps must be in [1, 45], got {num_pca_comps}")

        def buf(name: str, arr: np.ndarray, dt: torch.dtype = dtype) -> None:
            self.register_buffer(name, torch.as_tensor(np.ascontiguousarray(arr), dtype=dt), persistent=False)

        V = data.num_vertices
        buf("v_template", data.v_template)
        buf("shapedirs", data.shapedirs)
        if data.posedirs is not None:
            buf("posedirs", data.posedirs.reshape(V * 3, -1).T)  # (135, V*3)
        else:
            self.posedirs = None
        buf("J_regressor", data.J_regressor)
        buf("lbs_weights", data.weights)
        buf("parents", data.parents, torch.long)
        buf("faces", data.faces, torch.long)
        buf("tip_ids", data.tip_vertex_ids, torch.long)
        if use_pca:
            buf("hands_components", data.hands_components[:num_pca_comps])  # (n, 45)
            mean = data.hands_mean if data.hands_mean is not None else np.zeros(45)
            buf("hands_mean", mean)

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[-1])

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    def forward(
        self,
        betas: Optional[Tensor] = None,
        global_orient: Optional[Tensor] = None,
        hand_pose: Optional[Tensor] = None,
        transl: Optional[Tensor] = None,
        vertex_ids: Optional[Tensor] = None,
    ) -> HandOutput:
        """Pose the hand.

        Args:
            betas: ``(B, K)`` shape, default zeros.
            global_orient: ``(B, 3)`` axis-angle about the wrist, default zeros.
            hand_pose: ``(B, 45)`` finger axis-angles relative to the flat hand (or
                ``(B, num_pca_comps)`` PCA coefficients when ``use_pca``), default zeros.
            transl: ``(B, 3)`` translation added to everything (metres), default zeros.
            vertex_ids: ``(n,)`` int64 vertex ids: pose only these (``vertices (B, n, 3)``, the
                joints unchanged; faster when only some vertices are needed).

        Returns:
            :class:`HandOutput`.
        """
        given = [t for t in (betas, global_orient, hand_pose, transl) if t is not None]
        B = given[0].shape[0] if given else 1
        dev, dt = self.v_template.device, self.v_template.dtype
        if B == 0:
            raise InputError("empty batch (B = 0)")
        n_pose = self.num_pca_comps if self.use_pca else 45
        betas = torch.zeros(B, self.num_betas, device=dev, dtype=dt) if betas is None else betas
        global_orient = torch.zeros(B, 3, device=dev, dtype=dt) if global_orient is None else global_orient
        hand_pose = torch.zeros(B, n_pose, device=dev, dtype=dt) if hand_pose is None else hand_pose
        check_param("betas", betas, (B, self.num_betas))
        check_param("global_orient", global_orient, (B, 3))
        check_param("hand_pose", hand_pose, (B, n_pose))
        if transl is not None:
            check_param("transl", transl, (B, 3))
        if self.use_pca:
            hand_pose = hand_pose @ self.hands_components + self.hands_mean
        full_pose = torch.cat([global_orient, hand_pose], dim=1).reshape(B, NUM_JOINTS, 3)
        ids = None
        if vertex_ids is not None:  # the fingertip joints are vertices too: pose them with the others
            ids = torch.cat([torch.as_tensor(vertex_ids, device=dev).long(), self.tip_ids])
        verts, joints, rest_joints = lbs(
            betas.to(dt), full_pose.to(dt), self.v_template, self.shapedirs, self.posedirs,
            self.J_regressor, self.parents, self.lbs_weights, ids,
        )
        if ids is None:
            joints = torch.cat([joints, verts[:, self.tip_ids]], dim=1)
        else:
            n = len(ids) - len(self.tip_ids)
            joints, verts = torch.cat([joints, verts[:, n:]], dim=1), verts[:, :n]
        if transl is not None:
            verts = verts + transl[:, None].to(dt)
            joints = joints + transl[:, None].to(dt)
        return HandOutput(vertices=verts, joints=joints, full_pose=full_pose, rest_joints=rest_joints)
