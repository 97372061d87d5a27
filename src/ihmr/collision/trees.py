"""libigl AABB trees of hands that only move rigidly, built once and queried in the current pose.

In the refinement's rigid stages (tau, phi) each hand only turns and moves: ``world = R @ local +
t``. Building a libigl AABB tree costs ~2 ms per hand mesh, about as much as a few thousand
closest-point queries, and the searches of :mod:`ihmr.collision.exact` and
:mod:`ihmr.collision.distance` rebuilt one per sample, hand and call. :class:`RigidTrees` builds
each hand's tree once, in the hand's own frame, takes query points into that frame and the closest
points back out (distances and closest triangles do not change under a rigid motion).
:func:`igl_faces` is the one conversion of the hands' faces to libigl's layout.
"""

from __future__ import annotations

import igl
import numpy as np
import torch
from torch import Tensor

__all__ = ["RigidTrees", "igl_faces"]


def igl_faces(faces: Tensor) -> list[np.ndarray]:
    """The two hands' faces ``(2, F, 3)`` as libigl takes them: one contiguous int64 array per hand."""
    return [np.ascontiguousarray(torch.as_tensor(faces[h]).cpu().numpy().astype(np.int64)) for h in range(2)]


class RigidTrees:
    """Closest-point queries on ``(B, 2)`` hand meshes that move rigidly.

    Args:
        local: ``(B, 2, V, 3)`` the hands' vertices in their own frames.
        faces: ``(2, F, 3)``.
    """

    def __init__(self, local: Tensor, faces: Tensor) -> None:
        self._local = local.detach().double().cpu().numpy()
        self._faces = igl_faces(faces)
        self._trees: dict[tuple[int, int], igl.AABB] = {}
        self._index = np.arange(self._local.shape[0])
        self._R = self._t = None

    def pose(self, R: Tensor, t: Tensor) -> "RigidTrees":
        """Set the current pose: ``R (B, 2, 3, 3)``, ``t (B, 2, 3)`` (world = R @ local + t)."""
        self._R, self._t = R.detach().double().cpu().numpy(), t.detach().double().cpu().numpy()
        return self

    def rows(self, rows: Tensor) -> "RigidTrees":
        """The same trees (shared, built once) for the samples ``rows``: sample ``i`` of the result
        is sample ``rows[i]`` of this one."""
        out = object.__new__(RigidTrees)
        out.__dict__.update(self.__dict__)
        out._index = self._index[rows.cpu().numpy()]
        return out

    def query(self, b: int, h: int, points: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Squared distances ``(n,)``, closest triangles ``(n,)`` and closest points ``(n, 3)`` (world
        frame) of ``points (n, 3)`` (world frame) on hand ``h`` of sample ``b``."""
        if self._R is None:
            raise RuntimeError("RigidTrees.pose must be called before query")
        g = int(self._index[b])
        v = self._local[g, h]
        tree = self._trees.get((g, h))
        if tree is None:
            tree = igl.AABB()
            tree.init(v, self._faces[h])
            self._trees[(g, h)] = tree
        R, t = self._R[g, h], self._t[g, h]
        d2, fi, c = tree.squared_distance(v, self._faces[h], np.ascontiguousarray((points - t) @ R))
        return np.asarray(d2).reshape(-1), np.asarray(fi).reshape(-1).astype(np.int64), np.asarray(c) @ R.T + t
