"""Writing one image's :class:`~ihmr.pipeline.results.Result` to a folder, as ``ihmr demo`` does:
overlay.png (the hands over the image, penetrating regions in red), views.png (each pair before /
after refinement from several sides), hands.glb (every hand, penetrating regions in red) and
hands_before.glb (the same before refinement), one OBJ per hand (right.obj, left.obj, right_2.obj,
...: :func:`mesh_names`) and result.json (written last; ``"complete": true`` marks a finished
folder, :func:`is_complete`).
"""

from __future__ import annotations

import json
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from PIL import Image

from ihmr.collision.exact import penetration_depths
from ihmr.io.files import atomic_write
from ihmr.pipeline.pairing import unpaired
from ihmr.pipeline.results import Result
from ihmr.version import __version__
from ihmr.viz.export import HAND_COLORS, export_hand, export_hands
from ihmr.viz.render import MeshSpec, render_meshes, render_views

__all__ = ["OUTPUT_FILES", "write_outputs", "is_complete", "foreign_files", "mesh_names", "penetration_colours"]

#: The files every finished output folder holds (and right.obj and/or left.obj).
OUTPUT_FILES = ("overlay.png", "views.png", "hands.glb", "hands_before.glb", "result.json")


def is_complete(folder: Path, identity: Optional[dict] = None) -> bool:
    """Whether ``folder`` holds a finished result: all :data:`OUTPUT_FILES` and the meshes that
    result.json names, ``"complete": true``, and (given ``identity``, e.g. ``{"input": ...,
    "options": ...}``) the same values under those keys of result.json."""
    try:
        doc = json.loads((folder / "result.json").read_text(encoding="utf-8"))
        files = list(OUTPUT_FILES) + [h["mesh"] for h in doc.get("hands", [])]
        same = identity is None or all(doc.get(k) == v for k, v in identity.items())
        return doc.get("complete") is True and same and all((folder / f).is_file() for f in files)
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return False


def foreign_files(folder: Path) -> list[str]:
    """The names in ``folder`` that :func:`write_outputs` never writes (besides :data:`OUTPUT_FILES`
    and :func:`mesh_names`' ``right*.obj`` / ``left*.obj``, only the ``.*.tmp`` of an interrupted
    write are its), sorted."""
    def ours(name: str) -> bool:
        stem, _, suffix = name.rpartition(".")
        return (name in OUTPUT_FILES or (suffix == "obj" and stem.split("_")[0] in ("right", "left"))
                or (name.startswith(".") and suffix == "tmp"))
    return sorted(p.name for p in folder.iterdir() if not ours(p.name))


def mesh_names(result: Result) -> list[str]:
    """The OBJ file of each hand of ``result`` (in :attr:`Result.hands` order): ``right.obj`` and
    ``left.obj`` for the first pair (else the first hand of each side), ``right_2.obj``, ... for
    the others."""
    order = [k for p in result.pairs for k in (p.right, p.left)] + unpaired(result.hands, result.pairs)
    names, count = {}, {}
    for k in order:
        side = result.hands[k].side
        count[side] = count.get(side, 0) + 1
        names[k] = f"{side}.obj" if count[side] == 1 else f"{side}_{count[side]}.obj"
    return [names[k] for k in range(len(result.hands))]


def penetration_colours(vertices: np.ndarray, faces: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per-vertex RGBA ``(2, V, 4)`` of a pair ``vertices (2, V, 3)``, ``faces (2, F, 3)``: the hand
    colours ``base (2, 4)``, penetrating vertices in red."""
    d = penetration_depths(torch.as_tensor(vertices[None]), torch.as_tensor(faces))[0].numpy()
    cols = np.repeat(base[:, None, :], vertices.shape[1], axis=1).copy()
    cols[d > 0] = [230, 30, 30, 255]
    return cols


def _hand_colours(vertices: np.ndarray, result: Result, sides: list[int]) -> np.ndarray:
    """Per-vertex RGBA ``(N, V, 4)`` of the hands ``vertices (N, V, 3)`` of ``result``: the hand
    colours, each pair's penetrating vertices in red."""
    cols = np.repeat(HAND_COLORS[sides][:, None, :], vertices.shape[1], axis=1).astype(np.uint8)
    for p in result.pairs:
        cols[[p.right, p.left]] = penetration_colours(vertices[[p.right, p.left]], result.faces, HAND_COLORS)
    return cols


def _package_version(name: str) -> Optional[str]:
    try:
        return version(name)
    except PackageNotFoundError:  # pragma: no cover
        return None


def write_outputs(result: Result, image: np.ndarray, folder: Path, *, image_name: str, hand_model: str = "open",
                  extra: Optional[dict] = None) -> dict:
    """Write overlay.png, views.png, hands.glb and hands_before.glb (every hand), one OBJ per hand (:func:`mesh_names`)
    and result.json (last) of ``result`` on the RGB ``image (H, W, 3)`` into ``folder``; returns
    result.json's content. ``image_name``, ``hand_model`` and the entries of ``extra`` are recorded
    in result.json."""
    res = result
    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    H, W = image.shape[:2]
    faces = res.faces
    side_idx = {"right": 0, "left": 1}
    sides = [side_idx[h.side] for h in res.hands]
    # Every hand after and before refinement, with its colours (each pair's penetrating regions red,
    # exact depths computed once per pair and state): the overlay, the views and the GLBs share them.
    after = np.stack([h.vertices for h in res.hands])
    before = after.copy()
    for p in res.pairs:
        before[[p.right, p.left]] = p.vertices_before
    col_after, col_before = _hand_colours(after, res, sides), _hand_colours(before, res, sides)

    def pair_specs(verts: np.ndarray, cols: np.ndarray, p) -> list[MeshSpec]:
        return [MeshSpec(verts[k], faces[sides[k]], cols[k]) for k in (p.right, p.left)]

    # Overlay with penetrating regions of each pair highlighted.
    specs = [s for p in res.pairs for s in pair_specs(after, col_after, p)]
    for k in unpaired(res.hands, res.pairs):
        specs.append(MeshSpec(after[k], faces[sides[k]], HAND_COLORS[sides[k]]))
    rgb, _, mask = render_meshes(specs, res.K, (W, H), background=image)
    blend = np.where(mask[..., None], (0.75 * rgb + 0.25 * image).astype(np.uint8), image)
    with atomic_write(folder / "overlay.png") as fh:
        Image.fromarray(blend).save(fh, format="PNG")
    # Views before / after.
    rows = []
    size = 256
    for p in res.pairs:
        pts = np.concatenate([before[[p.right, p.left]].reshape(-1, 3), after[[p.right, p.left]].reshape(-1, 3)])
        for verts, cols in ((before, col_before), (after, col_after)):
            rows.append(render_views(pair_specs(verts, cols, p), size=size, frame_points=pts))
    if not rows:
        rows.append(render_views(specs, size=size))
    with atomic_write(folder / "views.png") as fh:
        Image.fromarray(np.concatenate(rows, 0)).save(fh, format="PNG")
    # Meshes: every hand in one GLB (penetrating regions in red), after and before refinement; one OBJ each.
    names = mesh_names(res)
    for file, verts, cols in (("hands.glb", after, col_after), ("hands_before.glb", before, col_before)):
        export_hands(folder / file, verts, faces[sides], cols, names=[n[:-4] for n in names])
    for h, s, name in zip(res.hands, sides, names):
        export_hand(folder / name, h.vertices, faces[s], HAND_COLORS[s])
    t_write = time.perf_counter() - t0
    doc = {
        "complete": True,
        "image": image_name,
        **(extra or {}),
        "image_size": list(res.image_size),
        "camera": {"K": res.K.tolist(), "focal_px": float(res.K[0, 0])},
        "hands": [
            {
                "side": h.side, "score": h.score, "source": h.source, "mesh": name,
                "joints_3d": h.joints_3d.tolist(), "joints_2d": h.joints_2d.tolist(),
                "params": {k: np.asarray(v).tolist() for k, v in h.params.items()},
            }
            for h, name in zip(res.hands, names)
        ],
        "pairs": [
            {"right": p.right, "left": p.left, "ave_p_mm_before": p.ave_p_mm_before, "max_p_mm_before": p.max_p_mm_before,
             "ave_p_mm_after": p.ave_p_mm_after, "max_p_mm_after": p.max_p_mm_after, "accepted": p.accepted}
            for p in res.pairs
        ],
        "timings_s": {**{k: round(v, 4) for k, v in res.timings_s.items()}, "write": round(t_write, 4)},
        "notes": res.notes,
        "units": {"joints_3d": "metres, camera coordinates (x right, y down, z forward)", "joints_2d": "pixels", "joint_order": "MANO (21)"},
        "versions": {"ihmr": __version__, "torch": torch.__version__, "mediapipe": _package_version("mediapipe"),
                     "hand_model": hand_model},
    }
    with atomic_write(folder / "result.json", "w") as fh:
        json.dump(doc, fh, indent=1)
    return doc
