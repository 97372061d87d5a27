"""``ihmr demo``: reconstruct the hands in photos and write overlay, views, meshes and JSON."""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ihmr.collision.exact import penetration_depths
from ihmr.errors import IhmrError
from ihmr.io.files import atomic_write
from ihmr.io.images import load_image
from ihmr.pipeline import Reconstructor
from ihmr.version import __version__
from ihmr.viz.export import HAND_COLORS, export_hand, export_hands
from ihmr.viz.render import MeshSpec, render_meshes, render_views

__all__ = ["add_demo_parser", "collect_images", "write_outputs"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
OUTPUT_FILES = ("overlay.png", "views.png", "hands.glb", "result.json")


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="reconstruct two interacting hands from photos (MediaPipe + IK + OPT refinement)")
    p.add_argument("inputs", nargs="*", help="images, folders or glob patterns (default: the bundled examples)")
    p.add_argument("--out", default="out", help="output folder; one subfolder per image (default: out)")
    p.add_argument("--focal", type=float, default=None, help="focal length in pixels (default: from a sidecar JSON, else 1.2 x the longer side)")
    p.add_argument("--box", default=None, help="x,y,w,h region holding the hands (helps closely interacting hands)")
    p.add_argument("--refine", choices=["opt", "mlp", "none"], default="opt",
                   help="collision refinement: OPT (gradient optimisation, default), the learned MLP refiners, or none")
    p.add_argument("--refiner", default="default", help="MLP refiner checkpoint for --refine mlp (default: the shipped ones)")
    p.add_argument("--no-refine", action="store_true", help="same as --refine none")
    p.add_argument("--checkpoint", default=None,
                   help="stage-I network checkpoint (ihmr train stage1): the network replaces MediaPipe + IK as stage I "
                        "(MediaPipe, the sidecar or --box only give the crop around both hands; the checkpoint's hand model replaces --model)")
    p.add_argument("--resume", action="store_true", help="skip images whose results are complete")
    p.add_argument("--model", default="open", help="'open' or a folder with the MANO pickles")
    p.set_defaults(func=_cmd_demo)


def bundled_examples() -> list[Path]:
    root = Path(__file__).resolve().parents[1] / "examples"
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def collect_images(inputs: list[str]) -> tuple[list[Path], list[str]]:
    """Expand files, folders and globs; returns (images, problems). Missing paths are problems."""
    out, problems = [], []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES)
        elif any(ch in item for ch in "*?["):
            hits = sorted(Path(h) for h in glob.glob(item, recursive=True) if Path(h).is_file())
            if not hits:
                problems.append(f"{item}: no file matches")
            out += hits
        else:
            out.append(p)  # a missing file is reported when it is processed
    seen, unique = set(), []
    for p in out:
        if p.resolve() not in seen:
            seen.add(p.resolve())
            unique.append(p)
    return unique, problems


def _sidecar(image: Path) -> dict:
    """Optional ``<image>.json`` beside an image: {"boxes": [[x, y, w, h], ...], "focal": f}."""
    side = image.with_suffix(".json")
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def _is_complete(folder: Path) -> bool:
    try:
        return all((folder / f).is_file() for f in OUTPUT_FILES) and json.loads((folder / "result.json").read_text()).get("complete") is True
    except (OSError, json.JSONDecodeError):
        return False


def _penetration_colours(vertices: np.ndarray, faces: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per-vertex RGBA ``(2, V, 4)``: the hand colours, penetrating vertices in red."""
    import torch


    d = penetration_depths(torch.as_tensor(vertices[None]), torch.as_tensor(faces))[0].numpy()
    cols = np.repeat(base[:, None, :], vertices.shape[1], axis=1).copy()
    cols[d > 0] = [230, 30, 30, 255]
    return cols


def write_outputs(folder: Path, image: np.ndarray, res, meta: dict) -> dict:
    """Write overlay.png, views.png, hands.glb, right.obj / left.obj and result.json (last)."""
    from PIL import Image


    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    H, W = image.shape[:2]
    faces = res.faces
    meshes, all_v = [], []
    side_idx = {"right": 0, "left": 1}
    paired = {k for p in res.pairs for k in (p.right, p.left)}
    for k, h in enumerate(res.hands):
        s = side_idx[h.side]
        meshes.append((h, s))
        all_v.append(h.vertices)
    # Overlay with penetrating regions of each pair highlighted.
    specs = []
    for p in res.pairs:
        v = np.stack([res.hands[p.right].vertices, res.hands[p.left].vertices])
        cols = _penetration_colours(v, faces, HAND_COLORS)
        specs += [MeshSpec(v[0], faces[0], cols[0]), MeshSpec(v[1], faces[1], cols[1])]
    for k, h in enumerate(res.hands):
        if k not in paired:
            specs.append(MeshSpec(h.vertices, faces[side_idx[h.side]], HAND_COLORS[side_idx[h.side]]))
    rgb, _, mask = render_meshes(specs, res.K, (W, H), background=image)
    blend = np.where(mask[..., None], (0.75 * rgb + 0.25 * image).astype(np.uint8), image)
    with atomic_write(folder / "overlay.png") as fh:
        Image.fromarray(blend).save(fh, format="PNG")
    # Views before / after.
    rows = []
    size = 256
    for p in res.pairs:
        vb = p.vertices_before
        va = np.stack([res.hands[p.right].vertices, res.hands[p.left].vertices])
        pts = np.concatenate([vb.reshape(-1, 3), va.reshape(-1, 3)])
        for v in (vb, va):
            cols = _penetration_colours(v, faces, HAND_COLORS)
            rows.append(render_views([MeshSpec(v[0], faces[0], cols[0]), MeshSpec(v[1], faces[1], cols[1])], size=size, frame_points=pts))
    if not rows:
        rows.append(render_views(specs, size=size))
    with atomic_write(folder / "views.png") as fh:
        Image.fromarray(np.concatenate(rows, 0)).save(fh, format="PNG")
    # Meshes.
    if res.pairs:
        p = res.pairs[0]
        v = np.stack([res.hands[p.right].vertices, res.hands[p.left].vertices])
        export_hands(folder / "hands.glb", v, faces)
        export_hand(folder / "right.obj", v[0], faces[0], HAND_COLORS[0])
        export_hand(folder / "left.obj", v[1], faces[1], HAND_COLORS[1])
    else:
        h = res.hands[0]
        s = side_idx[h.side]
        export_hand(folder / "hands.glb", h.vertices, faces[s], HAND_COLORS[s])
        export_hand(folder / f"{h.side}.obj", h.vertices, faces[s], HAND_COLORS[s])
    t_write = time.perf_counter() - t0
    import torch

    doc = {
        "complete": True,
        "image": meta["image"],
        "image_size": list(res.image_size),
        "camera": {"K": res.K.tolist(), "focal_px": float(res.K[0, 0])},
        "hands": [
            {
                "side": h.side, "score": h.score, "source": h.source,
                "joints_3d": h.joints_3d.tolist(), "joints_2d": h.joints_2d.tolist(),
                "params": {k: np.asarray(v).tolist() for k, v in h.params.items()},
            }
            for h in res.hands
        ],
        "pairs": [
            {"right": p.right, "left": p.left, "ave_p_mm_before": p.ave_p_mm_before, "max_p_mm_before": p.max_p_mm_before,
             "ave_p_mm_after": p.ave_p_mm_after, "max_p_mm_after": p.max_p_mm_after, "accepted": p.accepted}
            for p in res.pairs
        ],
        "timings_s": {**{k: round(v, 4) for k, v in res.timings_s.items()}, "write": round(t_write, 4)},
        "notes": res.notes,
        "units": {"joints_3d": "metres, camera coordinates (x right, y down, z forward)", "joints_2d": "pixels", "joint_order": "MANO (21)"},
        "versions": {"ihmr": __version__, "torch": torch.__version__, "mediapipe": _version("mediapipe"), "hand_model": meta.get("model", "open")},
    }
    with atomic_write(folder / "result.json", "w") as fh:
        json.dump(doc, fh, indent=1)
    return doc


def _version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # pragma: no cover
        return None


def _cmd_demo(args: argparse.Namespace) -> int:
    from tqdm import tqdm


    images, problems = collect_images(args.inputs) if args.inputs else (bundled_examples(), [])
    for msg in problems:
        print(f"ihmr demo: {msg}", file=sys.stderr)
    if not images:
        print("ihmr demo: no images to process", file=sys.stderr)
        return 2
    box = None
    if args.box:
        try:
            box = [float(x) for x in args.box.split(",")]
            assert len(box) == 4 and box[2] > 0 and box[3] > 0
        except (ValueError, AssertionError):
            print(f"ihmr demo: --box must be x,y,w,h with positive w, h, got {args.box!r}", file=sys.stderr)
            return 2
    out = Path(args.out)
    rec = None
    if args.checkpoint:  # a missing or corrupt checkpoint is a usage error (exit 2), not a per-image failure
        rec = Reconstructor(args.model, refine="none" if args.no_refine else args.refine, refiner=args.refiner,
                            checkpoint=args.checkpoint)
    rows, failed = [], len(problems)
    for img_path in tqdm(images, desc="ihmr demo", unit="image"):
        folder = out / img_path.stem
        if args.resume and _is_complete(folder):
            rows.append((img_path.name, "skipped (complete)", "", "", ""))
            continue
        t0 = time.perf_counter()
        try:
            image = load_image(img_path)
            side = _sidecar(img_path)
            boxes = [box] if box else side.get("boxes", [])
            focal = args.focal or side.get("focal")
            if rec is None:
                rec = Reconstructor(args.model, refine="none" if args.no_refine else args.refine, refiner=args.refiner,
                                    checkpoint=args.checkpoint)
            res = rec(image, focal=focal, boxes=boxes)
            doc = write_outputs(folder, image, res, {"image": str(img_path), "model": args.model if not args.checkpoint else rec.hands.model_name,
                                                     "refine": "none" if args.no_refine else args.refine})
            n = len(res.hands)
            pen = "; ".join(f"{p['ave_p_mm_before']:.2f}/{p['max_p_mm_before']:.1f} -> {p['ave_p_mm_after']:.2f}/{p['max_p_mm_after']:.1f}" for p in doc["pairs"])
            status = "ok" if res.pairs else ("one hand only" if n == 1 else "no pair")
            rows.append((img_path.name, status, str(n), pen or "-", f"{time.perf_counter() - t0:.2f}"))
            if not res.pairs:
                tqdm.write(f"ihmr demo: {img_path}: {'one hand only, reconstructed alone' if n == 1 else 'hands found but none paired'}", file=sys.stderr)
        except IhmrError as e:
            failed += 1
            rows.append((img_path.name, f"FAILED: {e}".split(" (tried")[0], "", "", f"{time.perf_counter() - t0:.2f}"))
            tqdm.write(f"ihmr demo: {img_path}: {e}", file=sys.stderr)
    print("\n| image | status | hands | AVE-P/MAX-P mm before -> after | seconds |")
    print("|---|---|---|---|---|")
    for r in rows:
        print("| " + " | ".join(r) + " |")
    print(f"\nresults in {out}/")
    return 0 if failed == 0 else 1
