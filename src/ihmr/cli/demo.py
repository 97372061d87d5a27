"""``ihmr demo``: reconstruct the hands in photos and write overlay, views, meshes and JSON."""

from __future__ import annotations

import argparse
import glob
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from ihmr.errors import IhmrError, InputError
from ihmr.io.images import load_image
from ihmr.pipeline import Reconstructor
from ihmr.pipeline.outputs import is_complete, write_outputs

__all__ = ["add_demo_parser", "collect_images", "parse_box"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}


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


def parse_box(text: str) -> list[float]:
    """``"x,y,w,h"`` -> ``[x, y, w, h]`` (pixels); InputError unless four numbers with positive w, h."""
    try:
        box = [float(x) for x in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not (box[2] > 0 and box[3] > 0):
        raise InputError(f"--box must be x,y,w,h with positive w, h, got {text!r}")
    return box


def _cmd_demo(args: argparse.Namespace) -> int:
    images, problems = collect_images(args.inputs) if args.inputs else (bundled_examples(), [])
    for msg in problems:
        print(f"ihmr demo: {msg}", file=sys.stderr)
    if not images:
        print("ihmr demo: no images to process", file=sys.stderr)
        return 2
    box = parse_box(args.box) if args.box else None
    out = Path(args.out)
    rec = None
    if args.checkpoint:  # a missing or corrupt checkpoint is a usage error (exit 2), not a per-image failure
        rec = Reconstructor(args.model, refine="none" if args.no_refine else args.refine, refiner=args.refiner,
                            checkpoint=args.checkpoint)
    rows, failed = [], len(problems)
    for img_path in tqdm(images, desc="ihmr demo", unit="image"):
        folder = out / img_path.stem
        if args.resume and is_complete(folder):
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
            doc = write_outputs(res, image, folder, image_name=str(img_path),
                                hand_model=args.model if not args.checkpoint else rec.hands.model_name)
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
