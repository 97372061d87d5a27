"""Write small files with exactly the structure of the official MANO pickles (for tests).

The official files are Python-2 pickles of a dict with numpy arrays, a ``scipy.sparse.csc_matrix``
joint regressor and chumpy ``Ch`` objects. Here a fake ``chumpy.ch`` module exists only while
pickling, so loading has to work without chumpy.
"""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import trimesh


def _fake_chumpy():
    ch_mod = types.ModuleType("chumpy.ch")
    pkg = types.ModuleType("chumpy")

    class Ch:  # pickled as chumpy.ch.Ch with its array in the state under 'x'
        def __init__(self, x):
            self.x = np.asarray(x)
            self._dirty_vars = set()

        def __getstate__(self):
            return {"x": self.x, "_dirty_vars": set()}

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    ch_mod.Ch = Ch
    pkg.ch = ch_mod
    return pkg, ch_mod, Ch


def hand_like_mesh():
    """A closed capsule opened at one end: ~200 vertices, one boundary loop (the 'wrist')."""
    m = trimesh.creation.capsule(height=0.12, radius=0.03, count=[16, 8])
    v = np.asarray(m.vertices)
    keep_faces = ~(v[m.faces][:, :, 2] < -0.075).any(1)  # remove the bottom cap
    f = m.faces[keep_faces]
    used = np.unique(f)
    remap = -np.ones(len(v), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return v[used], remap[f]


def mano_like_arrays(seed: int = 0, n_vertices_min: int = 745):
    """Arrays shaped like MANO's (the mesh is padded to >= 745 vertices so tip ids exist)."""
    rng = np.random.default_rng(seed)
    v, f = hand_like_mesh()
    if len(v) < n_vertices_min:  # extra isolated vertices inside (unused by faces)
        extra = rng.normal(scale=0.002, size=(n_vertices_min - len(v), 3))
        v = np.concatenate([v, extra])
    V = len(v)
    J = np.concatenate([[[0, 0, -0.06]], rng.normal(scale=0.02, size=(15, 3))])
    reg = np.zeros((16, V))
    for j in range(16):  # each joint = mean of its 4 nearest vertices
        nb = np.argsort(np.linalg.norm(v - J[j], axis=1), kind="stable")[:4]  # stable: the same ties on every CPU
        reg[j, nb] = 0.25
    w = rng.random((V, 16)) ** 4
    w /= w.sum(1, keepdims=True)
    kintree = np.array([[4294967295, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14], np.arange(16)], dtype=np.int64)
    comps = np.linalg.qr(rng.normal(size=(45, 45)))[0].T
    return dict(
        v_template=v,
        shapedirs=rng.normal(scale=0.002, size=(V, 3, 10)),
        posedirs=rng.normal(scale=0.001, size=(V, 3, 135)),
        J_regressor=sp.csc_matrix(reg),
        weights=w,
        kintree_table=kintree,
        f=f.astype(np.uint32),
        hands_components=comps,
        hands_mean=rng.normal(scale=0.1, size=45),
        hands_coeffs=rng.normal(size=(10, 45)),
        J=J,
        bs_style="lbs",
        bs_type="lrotmin",
        weights_prior=w.copy(),
    )


def write_mano_pkl(path: Path, arrays: dict | None = None, seed: int = 0) -> dict:
    """Write a fake official MANO pickle; returns the plain arrays that were written."""
    arrays = mano_like_arrays(seed) if arrays is None else arrays
    pkg, ch_mod, Ch = _fake_chumpy()
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, ch_mod
    try:
        out = dict(arrays)
        for k in ("v_template", "shapedirs", "J", "weights", "hands_components", "hands_mean"):
            out[k] = Ch(arrays[k])
        Path(path).write_bytes(pickle.dumps(out, protocol=2))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]
    return arrays
