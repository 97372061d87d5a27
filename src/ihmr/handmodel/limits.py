"""Joint limits of a hand model, expressed in per-joint anatomical frames.

Every hand model may carry ``limit_frames`` ``(16, 3, 3)`` (rows: the twist, spread and bend axes of
the joint in the rest frame) and ``joint_limits`` ``(16, 3, 2)`` (min, max radians of the rotation
vector's components along those axes). Finger pose ``theta`` (axis-angle in the rest frame, MANO's
convention) and local components ``q`` are related by ``theta_j = frames_j^T q_j`` and
``q_j = frames_j theta_j``. Bend > 0 curls a finger towards the palm.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ihmr.errors import InputError
from ihmr.handmodel.data import HandModelData

__all__ = ["JointLimits"]


class JointLimits:
    """Convert, clamp and sample finger poses within a model's joint limits.

    Args:
        data: a model with ``joint_limits`` and ``limit_frames``.
        dtype, device: of the returned tensors.
    """

    def __init__(self, data: HandModelData, dtype: torch.dtype = torch.float32, device: Optional[torch.device] = None) -> None:
        if data.joint_limits is None or data.limit_frames is None:
            raise InputError(f"model '{data.name}' ({data.side}) has no joint-limit table")
        self.frames = torch.as_tensor(data.limit_frames[1:], dtype=dtype, device=device)  # (15, 3, 3)
        lim = torch.as_tensor(data.joint_limits[1:], dtype=dtype, device=device)  # (15, 3, 2)
        self.lower, self.upper = lim[..., 0], lim[..., 1]  # (15, 3)

    def to_local(self, theta: Tensor) -> Tensor:
        """Finger pose ``(B, 45)`` -> local components ``(B, 15, 3)`` (twist, spread, bend)."""
        return torch.einsum("jab,njb->nja", self.frames, theta.reshape(-1, 15, 3))

    def from_local(self, q: Tensor) -> Tensor:
        """Local components ``(B, 15, 3)`` -> finger pose ``(B, 45)``."""
        return torch.einsum("jba,njb->nja", self.frames, q).reshape(q.shape[0], 45)

    def within(self, theta: Tensor, tol: float = 1e-4) -> Tensor:
        """``(B,)`` bool: every joint of each pose lies within its limits (``tol`` radians)."""
        q = self.to_local(theta)
        return ((q >= self.lower - tol) & (q <= self.upper + tol)).flatten(1).all(1)

    def clamp(self, theta: Tensor) -> Tensor:
        """Project each joint's local components into the box of its limits: ``(B, 45)``."""
        q = self.to_local(theta)
        return self.from_local(torch.maximum(torch.minimum(q, self.upper), self.lower))

    def sample(self, n: int, generator: Optional[torch.Generator] = None, extreme: bool = False) -> Tensor:
        """``(n, 45)`` finger poses drawn uniformly in the limit box (``extreme``: at its corners)."""
        u = torch.rand(n, 15, 3, generator=generator, dtype=self.lower.dtype)
        if extreme:
            u = (u > 0.5).to(u.dtype)
        return self.from_local(self.lower + u * (self.upper - self.lower))

    def extreme_pose(self, bend: float = 1.0) -> Tensor:
        """``(1, 45)``: every joint at ``bend`` x its maximal flexion, no twist or spread (a fist)."""
        q = torch.zeros(1, 15, 3, dtype=self.lower.dtype)
        q[..., 2] = self.upper[:, 2] * bend if bend >= 0 else self.lower[:, 2] * -bend
        return self.from_local(q)
