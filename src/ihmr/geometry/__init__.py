"""Geometry utilities shared by the whole pipeline (rotations, alignment)."""

from ihmr.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    mirror_axis_angle,
    rot6d_to_matrix,
    swing_rotation,
)

__all__ = [
    "axis_angle_to_matrix",
    "matrix_to_axis_angle",
    "matrix_to_rot6d",
    "rot6d_to_matrix",
    "mirror_axis_angle",
    "swing_rotation",
]
