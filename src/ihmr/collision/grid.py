"""The paper's voxel collision term (Eq. 6-7): per-hand psi grids sampled by the other hand.

Grid convention (one convention for building and sampling, so there is no half-cell offset): a
hand's grid is the axis-aligned cube of centre ``c`` (its vertex bounding-box centre) and half-side
``h = 1.2 x half the largest bounding-box extent``; it stores psi at the ``N`` x ``N`` x ``N``
*nodes* ``c - h + 2 h i / (N - 1)``, ``i = 0..N-1`` per axis, and is sampled by trilinear
interpolation between nodes (``grid_sample(align_corners=True)``, zero outside the cube). Queries
of the other hand use the grid's own centre and scale (the release used the querying hand's scale).
"""

from __future__ import annotations

import igl
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ihmr.errors import InputError

__all__ = ["GRID_PADDING", "grid_bounds", "psi_grid", "sample_psi"]

#: Half-side of the grid cube relative to half the largest bounding-box extent (20 % padding).
GRID_PADDING = 1.2


def grid_bounds(vertices: Tensor) -> tuple[Tensor, Tensor]:
    """Cube bounds of each mesh: ``vertices (B, V, 3)`` -> centre ``(B, 3)``, half-side ``(B,)`` (metres)."""
    lo, hi = vertices.min(1).values, vertices.max(1).values
    return 0.5 * (lo + hi), GRID_PADDING * 0.5 * (hi - lo).max(-1).values


@torch.no_grad()
def psi_grid(vertices: Tensor, faces: Tensor, grid_size: int = 32) -> tuple[Tensor, Tensor, Tensor]:
    """psi = distance to the surface inside the closed mesh, 0 outside, on each mesh's grid nodes.

    Args:
        vertices: ``(B, V, 3)`` meshes sharing ``faces (F, 3)`` (closed, outward oriented).
        grid_size: nodes per axis ``N``.

    Returns:
        psi ``(B, N, N, N)`` indexed ``[z, y, x]`` (metres), centres ``(B, 3)``, half-sides ``(B,)``.
    """
    if grid_size < 2:
        raise InputError(f"grid_size must be >= 2, got {grid_size}")
    centre, half = grid_bounds(vertices.detach())
    t = torch.linspace(-1.0, 1.0, grid_size, dtype=torch.float64)
    zz, yy, xx = torch.meshgrid(t, t, t, indexing="ij")
    unit = torch.stack([xx, yy, zz], -1).reshape(-1, 3).numpy()  # node order [z, y, x], coords (x, y, z)
    v = vertices.detach().to(torch.float64).cpu().numpy()
    f = np.ascontiguousarray(torch.as_tensor(faces).cpu().numpy().astype(np.int64))
    c, h = centre.double().cpu().numpy(), half.double().cpu().numpy()
    psi = np.zeros((v.shape[0], unit.shape[0]))
    for b in range(v.shape[0]):  # libigl works one mesh at a time
        nodes = c[b] + h[b] * unit
        vb = np.ascontiguousarray(v[b])
        inside = igl.fast_winding_number(vb, f, nodes) > 0.5
        if inside.any():
            d2, _, _ = igl.point_mesh_squared_distance(np.ascontiguousarray(nodes[inside]), vb, f)
            psi[b, inside] = np.sqrt(d2)
    N = grid_size
    return (torch.as_tensor(psi, dtype=vertices.dtype, device=vertices.device).reshape(-1, N, N, N),
            centre, half)


def sample_psi(psi: Tensor, centre: Tensor, half: Tensor, points: Tensor) -> Tensor:
    """Trilinear samples of psi grids at query points (zero outside each cube), differentiable in ``points``.

    Args:
        psi: ``(B, N, N, N)`` grids indexed ``[z, y, x]``.
        centre, half: ``(B, 3)``, ``(B,)`` grid cubes.
        points: ``(B, P, 3)`` metres.

    Returns:
        ``(B, P)`` psi values (metres).
    """
    uvw = (points - centre[:, None]) / half[:, None, None]  # in [-1, 1] inside the cube
    grid = uvw[:, None, None]  # (B, 1, 1, P, 3) ordered (x, y, z) as grid_sample expects
    out = F.grid_sample(psi[:, None], grid.to(psi.dtype), mode="bilinear", padding_mode="zeros", align_corners=True)
    inside = (uvw.abs() <= 1.0).all(-1)
    return torch.where(inside, out[:, 0, 0, 0], torch.zeros_like(out[:, 0, 0, 0]))
