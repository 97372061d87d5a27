"""The collision loss of Eq. 7 in two modes: ``grid`` (the paper's voxel psi) and ``exact`` (ours)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ihmr.collision.exact import boxes_overlap, check_pair_input, penetration_depths
from ihmr.collision.grid import psi_grid, sample_psi
from ihmr.errors import InputError

__all__ = ["CollisionMode", "per_vertex_penetration", "collision_loss", "CollisionLoss"]

CollisionMode = Literal["grid", "exact"]


def per_vertex_penetration(
    vertices: Tensor, faces: Tensor, mode: CollisionMode = "grid", grid_size: int = 32, check: bool = True
) -> Tensor:
    """psi of every vertex in the other hand: ``(B, 2, V)`` metres (``[b, h, v]``: vertex ``v`` of
    hand ``h`` inside hand ``1 - h``).

    ``grid``: trilinear samples of the other hand's voxel psi (paper, Eq. 6); ``exact``: exact
    distance to the other surface for vertices inside it. Pairs whose bounding boxes do not overlap
    are skipped and give exactly zero (and zero gradient).
    """
    if check:
        check_pair_input(vertices, faces)
    if mode == "exact":
        return penetration_depths(vertices, faces, check=False)
    if mode != "grid":
        raise InputError(f"mode must be 'grid' or 'exact', got {mode!r}")
    faces = torch.as_tensor(faces).long()
    out = vertices.new_zeros(vertices.shape[:3]) + 0.0 * vertices.sum(-1)
    active = torch.nonzero(boxes_overlap(vertices.detach())).flatten()
    if active.numel() == 0:
        return out
    va = vertices[active]  # (A, 2, V, 3)
    cols = []
    for h in range(2):  # psi of hand 1 - h, sampled by the vertices of hand h
        psi, centre, half = psi_grid(va[:, 1 - h], faces[1 - h], grid_size)
        cols.append(sample_psi(psi, centre, half, va[:, h]))
    return out.index_put((active,), torch.stack(cols, 1))


def collision_loss(
    vertices: Tensor, faces: Tensor, mode: CollisionMode = "grid", grid_size: int = 32, check: bool = True
) -> Tensor:
    """Eq. 7: sum over both directions and all vertices of psi, per sample: ``(B,)`` (metres).

    Args:
        vertices: ``(B, 2, V, 3)`` both hands (metres).
        faces: ``(2, F, 3)`` closed outward-oriented triangles (as ``TwoHands.faces``).
        mode: ``"grid"`` (the paper) or ``"exact"``.
        grid_size: ``N_p`` for the grid mode.
    """
    return per_vertex_penetration(vertices, faces, mode, grid_size, check).sum(dim=(1, 2))


class CollisionLoss(nn.Module):
    """Module form of :func:`collision_loss` holding the faces."""

    def __init__(self, faces: Tensor, mode: CollisionMode = "grid", grid_size: int = 32) -> None:
        super().__init__()
        self.register_buffer("faces", torch.as_tensor(faces).long(), persistent=False)
        self.mode = mode
        self.grid_size = grid_size

    def forward(self, vertices: Tensor) -> Tensor:
        return collision_loss(vertices, self.faces, self.mode, self.grid_size)
