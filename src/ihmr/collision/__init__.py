"""Inter-hand collision: the paper's voxel psi term (Eq. 6-7) and exact penetration depths."""

from ihmr.collision.closest_point import closest_point_on_triangle
from ihmr.collision.exact import penetration_depths
from ihmr.collision.grid import grid_bounds, psi_grid, sample_psi
from ihmr.collision.loss import CollisionLoss, collision_loss, per_vertex_penetration

__all__ = [
    "closest_point_on_triangle",
    "penetration_depths",
    "grid_bounds",
    "psi_grid",
    "sample_psi",
    "CollisionLoss",
    "collision_loss",
    "per_vertex_penetration",
]
