"""Stage I: initial two-hand parameters (analytic IK from 3D joints; the CNN comes later)."""

from ihmr.stage1.ik import IKResult, hand_ik, kabsch_rotation

__all__ = ["IKResult", "hand_ik", "kabsch_rotation"]
