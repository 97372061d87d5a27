"""Export hand meshes with trimesh: OBJ, PLY or GLB chosen by the file suffix, written atomically.

Formats (coordinates in metres, as inside ihmr; faces as given, so the left hand keeps its reversed
winding and both hands stay outward oriented):

- ``.obj``: geometry only (no colours, no material files). Two hands go into **one** file as two
  named objects, ``o right`` then ``o left``, with global 1-based vertex indices (the right hand's
  vertices first); most viewers show them as separate parts. Use PLY or GLB for colours.
- ``.ply`` (binary): one mesh, the right hand's vertices and faces first, with per-vertex RGBA
  colours and an extra ``uchar`` vertex property ``hand`` (0 = right, 1 = left).
- ``.glb`` (binary glTF): a scene with one named node and mesh per hand (``right``, ``left``),
  per-vertex colours (``COLOR_0``) and normals (``NORMAL``, for smooth shading); positions are
  stored as float32 (glTF).

Every file is written to a temporary file in the target folder and moved into place with
:func:`os.replace`, so readers never see a partial file and an interrupted write leaves none behind.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ihmr.errors import InputError
from ihmr.io.files import atomic_write

if TYPE_CHECKING:
    import trimesh

__all__ = ["HAND_COLORS", "MESH_FORMATS", "export_hand", "export_hand_obj", "export_hands"]

#: Default RGBA colours (uint8): index 0 = right hand (warm skin orange), 1 = left hand (blue).
HAND_COLORS = np.array([[235, 150, 100, 255], [90, 140, 230, 255]], dtype=np.uint8)
#: Supported file suffixes and the trimesh file type written for each.
#: GLB files carry vertex normals: viewers (three.js, Babylon.js, Blender) then shade the hands smooth, not faceted.
_GLB = {"include_normals": True}

MESH_FORMATS = {".obj": "obj", ".ply": "ply", ".glb": "glb"}


def _numpy(x: Any) -> np.ndarray:
    """numpy view of an array-like or a torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _rgba(color: Any, n: int, what: str) -> np.ndarray:
    """Colour(s) -> ``(n, 4)`` uint8 RGBA.

    ``color``: one colour ``(3,)`` / ``(4,)`` or ``n`` colours ``(n, 3)`` / ``(n, 4)``; integer
    values in 0-255, floating-point values in [0, 1].
    """
    c = _numpy(color)
    if c.ndim not in (1, 2) or c.shape[-1] not in (3, 4) or (c.ndim == 2 and c.shape[0] != n):
        raise InputError(f"{what}: expected an RGB(A) colour (3,)/(4,) or ({n}, 3|4) colours, got shape {c.shape}")
    if np.issubdtype(c.dtype, np.floating):
        if not np.isfinite(c).all() or c.min() < 0.0 or c.max() > 1.0:
            raise InputError(f"{what}: floating-point colours must lie in [0, 1] (use uint8 for 0-255)")
        c = np.rint(c * 255.0)
    elif np.issubdtype(c.dtype, np.integer) or c.dtype == bool:
        if c.size and (c.min() < 0 or c.max() > 255):
            raise InputError(f"{what}: integer colours must lie in 0-255")
    else:
        raise InputError(f"{what}: colours must be integers 0-255 or floats in [0, 1], got dtype {c.dtype}")
    c = c.astype(np.uint8)
    if c.shape[-1] == 3:
        c = np.concatenate([c, np.full(c.shape[:-1] + (1,), 255, np.uint8)], axis=-1)
    return np.ascontiguousarray(np.broadcast_to(c, (n, 4)))


def _mesh(vertices: Any, faces: Any, color: Any = None) -> trimesh.Trimesh:
    """Validated :class:`trimesh.Trimesh` (no processing: vertex order and count are kept)."""
    import trimesh  # lazy: heavy (0.4 s), needed only to write or render meshes

    v = _numpy(vertices)
    f = _numpy(faces)
    if v.ndim != 2 or v.shape[1] != 3 or len(v) == 0:
        raise InputError(f"vertices must be (V, 3) with V > 0, got {v.shape}")
    if not np.issubdtype(v.dtype, np.number):
        raise InputError(f"vertices must be numeric, got dtype {v.dtype}")
    if not np.isfinite(v).all():
        raise InputError("vertices contain NaN or inf values")
    if f.ndim != 2 or f.shape[1] != 3 or not (np.issubdtype(f.dtype, np.integer) or f.size == 0):
        raise InputError(f"faces must be (F, 3) integer indices, got {f.shape} {f.dtype}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise InputError(f"faces index vertices {f.min()}..{f.max()}, but there are only {len(v)} vertices")
    m = trimesh.Trimesh(v.astype(np.float64), f.astype(np.int64), process=False, validate=False)
    if color is not None:
        m.visual.vertex_colors = _rgba(color, len(v), "colour")
    return m


def _file_type(path: Path) -> str:
    try:
        return MESH_FORMATS[path.suffix.lower()]
    except KeyError:
        raise InputError(f"unsupported mesh format {path.suffix!r} for {path}; use .obj, .ply or .glb") from None


def _obj_text(meshes: Sequence[trimesh.Trimesh], names: Sequence[str]) -> bytes:
    """OBJ with one named object per mesh, global 1-based indices, ``%.9g`` coordinates (metres)."""
    buf = io.StringIO()
    buf.write(f"# ihmr export (metres); objects: {', '.join(names)}\n")
    offset = 1
    for name, m in zip(names, meshes):
        buf.write(f"o {name}\n")
        np.savetxt(buf, m.vertices, fmt="v %.9g %.9g %.9g")
        if len(m.faces):
            np.savetxt(buf, m.faces + offset, fmt="f %d %d %d")
        offset += len(m.vertices)
    return buf.getvalue().encode()


def _write(path: Path, data: bytes | str) -> Path:
    with atomic_write(path, "wb") as fh:
        fh.write(data if isinstance(data, bytes) else data.encode())
    return path


def export_hand(path: str | os.PathLike, vertices: Any, faces: Any, color: Any = None) -> Path:
    """Write one mesh to ``.obj`` / ``.ply`` / ``.glb`` (by suffix), atomically.

    Args:
        path: output file.
        vertices: ``(V, 3)`` metres (numpy or torch).
        faces: ``(F, 3)`` vertex indices.
        color: optional RGB(A) ``(3,)``/``(4,)`` or per-vertex ``(V, 3|4)`` colours (uint8 0-255 or
            floats in [0, 1]); stored in PLY / GLB, ignored by OBJ.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    kind = _file_type(path)
    m = _mesh(vertices, faces, color)
    if kind == "obj":
        return _write(path, _obj_text([m], [path.stem or "hand"]))
    return _write(path, m.export(file_type=kind, **_GLB if kind == "glb" else {}))


def export_hand_obj(path: str | os.PathLike, vertices: Any, faces: Any) -> Path:
    """Write one mesh ``vertices (V, 3)`` metres, ``faces (F, 3)`` as a Wavefront OBJ, atomically.

    The suffix of ``path`` must be ``.obj``. Same writer as :func:`export_hands` uses for OBJ (one
    object named after the file stem).
    """
    path = Path(path)
    if path.suffix.lower() != ".obj":
        raise InputError(f"export_hand_obj writes OBJ files; got {path}")
    return export_hand(path, vertices, faces)


def export_hands(
    path: str | os.PathLike,
    vertices: Any,
    faces: Any,
    colors: Any = None,
    names: Sequence[str] = ("right", "left"),
) -> Path:
    """Write two hands (or one) into one ``.obj`` / ``.ply`` / ``.glb`` file, atomically.

    Args:
        path: output file; the suffix picks the format (see the module docstring for the layout).
        vertices: ``(2, V, 3)`` metres, hand 0 = right, 1 = left (numpy or torch); a single hand
            ``(V, 3)`` is written like :func:`export_hand` with the right hand's colour.
        faces: ``(2, F, 3)`` per hand (the left hand's winding is reversed in ihmr) or ``(F, 3)``
            used for every hand.
        colors: per hand RGB(A) ``(2, 3|4)`` or per vertex ``(2, V, 3|4)``; uint8 0-255 or floats
            in [0, 1]. Default :data:`HAND_COLORS` (right: skin orange, left: blue).
        names: object / node names per hand.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    import trimesh  # lazy: heavy (0.4 s), needed only to write or render meshes

    path = Path(path)
    kind = _file_type(path)
    v = _numpy(vertices)
    if v.ndim == 2:
        c = HAND_COLORS[0] if colors is None else _numpy(colors)
        if colors is not None and c.ndim >= 2 and c.shape[0] == 1:  # (1, 3|4) or (1, V, 3|4)
            c = c[0]
        return export_hand(path, v, faces, c)
    if v.ndim != 3 or v.shape[-1] != 3:
        raise InputError(f"vertices must be (H, V, 3) or (V, 3), got {v.shape}")
    n = v.shape[0]
    f = _numpy(faces)
    if f.ndim == 2:
        f = np.broadcast_to(f, (n,) + f.shape)
    if f.ndim != 3 or f.shape[0] != n:
        raise InputError(f"faces must be (F, 3) or ({n}, F, 3) for {n} hands, got {f.shape}")
    cols = HAND_COLORS if colors is None else _numpy(colors)
    if cols.ndim not in (2, 3) or cols.shape[0] < n:
        raise InputError(f"colors must be ({n}, 3|4) per hand or ({n}, V, 3|4) per vertex, got {cols.shape}")
    if len(names) < n:
        raise InputError(f"{n} hands need {n} names, got {list(names)}")
    names = [str(s) for s in names[:n]]
    meshes = [_mesh(v[h], f[h], cols[h]) for h in range(n)]
    if kind == "obj":
        data: bytes | str = _obj_text(meshes, names)
    elif kind == "ply":
        merged = trimesh.util.concatenate(meshes)
        merged.vertex_attributes["hand"] = np.repeat(np.arange(n, dtype=np.uint8), [len(m.vertices) for m in meshes])
        data = merged.export(file_type="ply")
    else:
        scene = trimesh.Scene()
        for name, m in zip(names, meshes):
            scene.add_geometry(m, node_name=name, geom_name=name)
        data = scene.export(file_type="glb", **_GLB)
    return _write(path, data)
