"""Export hand meshes with trimesh: OBJ, PLY or GLB chosen by the file suffix, written atomically."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import trimesh

from ihmr.errors import InputError

__all__ = ["HAND_COLORS", "atomic_write", "export_hand", "export_hands"]

#: Default RGBA colours: index 0 = right hand (warm skin orange), 1 = left hand (blue).
HAND_COLORS = np.array([[235, 150, 100, 255], [90, 140, 230, 255]], dtype=np.uint8)
_SUFFIXES = {".obj": "obj", ".ply": "ply", ".glb": "glb"}


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator:
    """Open a temporary file beside ``path``; on success it replaces ``path`` atomically.

    An interrupted write leaves no partial file at ``path`` (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _mesh(vertices: np.ndarray, faces: np.ndarray, color: Optional[np.ndarray]) -> trimesh.Trimesh:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3:
        raise InputError(f"vertices must be (V, 3), got {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3 or (f.size and (f.min() < 0 or f.max() >= len(v))):
        raise InputError(f"faces must be (F, 3) indices into {len(v)} vertices, got {f.shape}")
    if not np.isfinite(v).all():
        raise InputError("vertices contain NaN or inf values")
    m = trimesh.Trimesh(v, f, process=False)
    if color is not None:
        c = np.asarray(color, dtype=np.uint8)
        m.visual.vertex_colors = np.broadcast_to(c if c.shape[-1] == 4 else np.r_[c, 255], (len(v), 4)).copy() if c.ndim == 1 else c
    return m


def _file_type(path: Path) -> str:
    try:
        return _SUFFIXES[path.suffix.lower()]
    except KeyError:
        raise InputError(f"unsupported mesh format {path.suffix!r} for {path}; use .obj, .ply or .glb") from None


def export_hand(path: str | Path, vertices: np.ndarray, faces: np.ndarray, color: Optional[Sequence[int]] = None) -> Path:
    """Write one mesh ``(V, 3)`` / ``(F, 3)`` (metres) with an optional RGB(A) or per-vertex colour."""
    path = Path(path)
    kind = _file_type(path)
    data = _mesh(vertices, faces, None if color is None else np.asarray(color)).export(file_type=kind)
    with atomic_write(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())
    return path


def export_hands(
    path: str | Path,
    vertices: np.ndarray,
    faces: np.ndarray,
    colors: Optional[np.ndarray] = None,
    names: Sequence[str] = ("right", "left"),
) -> Path:
    """Write two hands into one file.

    Args:
        path: ``.obj`` (one file, two named objects ``o right`` / ``o left``), ``.ply`` (one mesh
            with per-vertex colours, right hand's vertices first) or ``.glb`` (a scene with two named
            nodes, per-vertex colours).
        vertices: ``(2, V, 3)`` metres (or ``(V, 3)`` for one hand).
        faces: ``(2, F, 3)`` or ``(F, 3)`` shared by both.
        colors: ``(2, 4)`` RGBA per hand (default :data:`HAND_COLORS`).
    """
    path = Path(path)
    kind = _file_type(path)
    v = np.asarray(vertices)
    if v.ndim == 2:
        return export_hand(path, v, faces, HAND_COLORS[0] if colors is None else colors)
    f = np.asarray(faces)
    f = np.broadcast_to(f, (v.shape[0],) + f.shape) if f.ndim == 2 else f
    cols = HAND_COLORS if colors is None else np.asarray(colors, dtype=np.uint8)
    if v.shape[0] != f.shape[0] or len(cols) < v.shape[0]:
        raise InputError(f"{v.shape[0]} hands need as many face arrays and colours, got {f.shape[0]} and {len(cols)}")
    meshes = [_mesh(v[h], f[h], cols[h]) for h in range(v.shape[0])]
    if kind == "glb":
        scene = trimesh.Scene()
        for name, m in zip(names, meshes):
            scene.add_geometry(m, node_name=name, geom_name=name)
        data = scene.export(file_type="glb")
    elif kind == "ply":
        data = trimesh.util.concatenate(meshes).export(file_type="ply")
    else:  # OBJ: named objects, no material files
        buf = io.StringIO()
        buf.write("# ihmr two-hand export (metres); objects: " + ", ".join(names[: len(meshes)]) + "\n")
        offset = 0
        for name, m in zip(names, meshes):
            buf.write(f"o {name}\n")
            np.savetxt(buf, m.vertices, fmt="v %.6f %.6f %.6f")
            np.savetxt(buf, m.faces + 1 + offset, fmt="f %d %d %d")
            offset += len(m.vertices)
        data = buf.getvalue().encode()
    with atomic_write(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())
    return path
