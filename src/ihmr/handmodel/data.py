"""The arrays that define one hand model (open model or official MANO), independent of torch.

A :class:`HandModelData` is what every loader returns and what :class:`ihmr.handmodel.HandLayer`
consumes. Conventions (the same as MANO's):

- Units: metres. 16 kinematic joints in MANO order (0 wrist; 1-3 index; 4-6 middle; 7-9 pinky;
  10-12 ring; 13-15 thumb), each finger base -> tip.
- Pose: 16 axis-angle vectors (global orientation + 15 finger joints), each expressed in the
  model's rest frame axes (MANO convention), relative to the parent; zero pose = flat hand
  (``flat_hand_mean=True`` semantics). ``hands_mean`` is only used by the optional PCA pose space.
- ``faces`` is the *closed* surface (the wrist hole capped without adding vertices), outward
  oriented; ``faces_open`` is the model's own (possibly open) triangle list.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np

from ihmr.errors import ModelFileError

Side = Literal["right", "left"]

NUM_JOINTS = 16
NUM_POSE_FEATURES = 15 * 9

__all__ = ["HandModelData", "Side", "NUM_JOINTS", "NUM_POSE_FEATURES"]


@dataclass
class HandModelData:
    """Arrays of one hand model (all float arrays float64 or float32, metres).

    Attributes:
        name: "open" or "mano" (free text for other sources).
        side: "right" or "left".
        v_template: ``(V, 3)`` rest (flat hand, mean shape) vertices.
        shapedirs: ``(V, 3, K)`` shape blend shapes (K = 10 for MANO and the open model).
        posedirs: ``(V, 3, 135)`` pose-corrective blend shapes, or ``None`` (no correctives).
        J_regressor: ``(16, V)`` dense joint regressor (rows sum to 1).
        weights: ``(V, 16)`` skinning weights (rows sum to 1).
        parents: ``(16,)`` int64 parent index per joint, ``parents[0] == -1``.
        faces: ``(F, 3)`` int64, closed outward-oriented surface.
        faces_open: ``(F0, 3)`` int64, the source triangles before capping (may equal ``faces``).
        tip_vertex_ids: ``(5,)`` int64 vertex ids of the thumb, index, middle, ring, pinky tips.
        hands_components: ``(45, 45)`` PCA basis of finger pose (rows = components) or ``None``.
        hands_mean: ``(45,)`` mean finger pose of the PCA space or ``None``.
        joint_limits: ``(16, 3, 2)`` min/max (radians) of each joint's rotation vector expressed
            in ``limit_frames`` (axes: twist along the bone, spread, bend), or ``None``.
        limit_frames: ``(16, 3, 3)`` per joint, rows = the local (twist, spread, bend) axes in
            the rest frame, or ``None``.
        meta: free-form provenance (licence, source, build parameters).
    """

    name: str
    side: Side
    v_template: np.ndarray
    shapedirs: np.ndarray
    posedirs: Optional[np.ndarray]
    J_regressor: np.ndarray
    weights: np.ndarray
    parents: np.ndarray
    faces: np.ndarray
    faces_open: np.ndarray
    tip_vertex_ids: np.ndarray
    hands_components: Optional[np.ndarray] = None
    hands_mean: Optional[np.ndarray] = None
    joint_limits: Optional[np.ndarray] = None
    limit_frames: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.shapedirs.shape[-1])

    def validate(self) -> "HandModelData":
        """Check shapes and values; raise :class:`ihmr.errors.ModelFileError` naming the problem."""
        V = self.v_template.shape[0] if self.v_template.ndim == 2 else -1

        def need(cond: bool, what: str) -> None:
            if not cond:
                raise ModelFileError(f"hand model '{self.name}' ({self.side}): {what}")

        need(self.side in ("right", "left"), f"side must be 'right' or 'left', got {self.side!r}")
        need(self.v_template.ndim == 2 and self.v_template.shape[1] == 3, f"v_template must be (V, 3), got {self.v_template.shape}")
        need(self.shapedirs.ndim == 3 and self.shapedirs.shape[:2] == (V, 3), f"shapedirs must be (V, 3, K), got {self.shapedirs.shape}")
        if self.posedirs is not None:
            need(self.posedirs.shape == (V, 3, NUM_POSE_FEATURES), f"posedirs must be (V, 3, 135), got {self.posedirs.shape}")
        need(self.J_regressor.shape == (NUM_JOINTS, V), f"J_regressor must be (16, V), got {self.J_regressor.shape}")
        need(self.weights.shape == (V, NUM_JOINTS), f"weights must be (V, 16), got {self.weights.shape}")
        need(self.parents.shape == (NUM_JOINTS,) and int(self.parents[0]) == -1, "parents must be (16,) with parents[0] == -1")
        need(bool(np.all(self.parents[1:] < np.arange(1, NUM_JOINTS))), "parents must precede their children")
        for nm in ("faces", "faces_open"):
            f = getattr(self, nm)
            need(f.ndim == 2 and f.shape[1] == 3, f"{nm} must be (F, 3), got {f.shape}")
            need(f.size > 0 and int(f.min()) >= 0 and int(f.max()) < V, f"{nm} index out of range [0, {V})")
        need(self.tip_vertex_ids.shape == (5,) and int(self.tip_vertex_ids.max()) < V, "tip_vertex_ids must be 5 vertex ids")
        for nm in ("v_template", "shapedirs", "J_regressor", "weights"):
            need(bool(np.all(np.isfinite(getattr(self, nm)))), f"{nm} has NaN or inf values")
        if self.hands_components is not None:
            need(self.hands_components.shape == (45, 45), f"hands_components must be (45, 45), got {self.hands_components.shape}")
        if self.hands_mean is not None:
            need(self.hands_mean.shape == (45,), f"hands_mean must be (45,), got {self.hands_mean.shape}")
        if self.joint_limits is not None:
            need(self.joint_limits.shape == (NUM_JOINTS, 3, 2), f"joint_limits must be (16, 3, 2), got {self.joint_limits.shape}")
            need(self.limit_frames is not None and self.limit_frames.shape == (NUM_JOINTS, 3, 3), "limit_frames must be (16, 3, 3)")
        return self
