"""Many photos, one folder each: the batch behind ``ihmr demo`` (and ``torchrun ... -m ihmr demo``).

Every input gets a folder of its own under ``out`` (:func:`folder_names`: the file's stem, plus a
short hash of its resolved path where two inputs share a stem), written by
:func:`~ihmr.pipeline.outputs.write_outputs` into a hidden staging folder that replaces the old one
only when complete, so a folder never mixes two runs and an interrupted run leaves nothing half
written (its leftovers are removed when the item is next run). ``result.json`` records the input
(resolved path and SHA-256 of the image and of its sidecar JSON) and the options that shape the
result; ``resume`` skips a folder only when all of them match.

Each item is isolated: whatever goes wrong with one image becomes one line for it
(:func:`ihmr.errors.one_line`) and the others go on. Under ``torchrun`` each process takes a
disjoint share of the inputs (every ``world``-th, from its rank) and every process gets all rows.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from tqdm import tqdm

from ihmr.distributed import gather_objects, rank_world
from ihmr.errors import InputError, one_line
from ihmr.io.files import atomic_folder, remove_leftovers
from ihmr.io.images import load_image
from ihmr.pipeline.outputs import foreign_files, is_complete, write_outputs

__all__ = ["IMAGE_SUFFIXES", "BatchOptions", "ItemReport", "BatchReport", "collect_images", "folder_names",
           "read_sidecar", "check_box", "parse_box", "bundled_examples", "input_record", "run_batch"]

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"}


@dataclass(frozen=True)
class BatchOptions:
    """The options that shape a result (recorded in result.json; ``resume`` compares them).

    ``focal`` pixels (None: the sidecar's, else the default); ``box`` ``(x, y, w, h)`` pixels for
    every image (None: the sidecar's boxes); ``refine`` opt | mlp | none; ``refiner``, ``checkpoint``
    and ``model`` as named by the user (paths resolved by the caller); ``contact`` the OPT contact
    refinement."""

    focal: Optional[float] = None
    box: Optional[tuple[float, float, float, float]] = None
    refine: str = "opt"
    refiner: Optional[str] = None
    checkpoint: Optional[str] = None
    model: str = "open"
    contact: bool = True

    def record(self) -> dict:
        d = asdict(self)
        d["box"] = None if self.box is None else list(self.box)
        return d


@dataclass
class ItemReport:
    """One input's outcome: ``status`` ok | one hand only | no pair | skipped (complete) |
    FAILED: why | not run (interrupted); ``pen`` the pairs' AVE-P/MAX-P before -> after (mm)."""

    image: str
    folder: str
    status: str
    hands: Optional[int] = None
    pen: str = ""
    seconds: Optional[float] = None

    @property
    def failed(self) -> bool:
        return self.status.startswith("FAILED")


@dataclass
class BatchReport:
    """All items (in input order) and whether the run was interrupted."""

    items: list[ItemReport] = field(default_factory=list)
    interrupted: bool = False

    @property
    def failed(self) -> int:
        return sum(r.failed for r in self.items)


def _resolve(p: Path) -> Path:
    try:
        return p.resolve(strict=False)
    except (RuntimeError, OSError) as e:  # a symlink loop (RuntimeError before Python 3.13)
        raise InputError(f"{p}: cannot resolve the path ({one_line(e)})") from None


def collect_images(inputs: Sequence[str]) -> tuple[list[Path], list[str]]:
    """Expand files, folders and glob patterns into image paths, each once; returns
    ``(images, problems)``: one line per input that cannot be used (a pattern matching nothing, a
    symlink loop, a folder named like an image inside a folder). A missing file is kept: it fails as
    an item, with its own line."""
    found, problems = [], []
    for item in inputs:
        p = Path(item)
        try:
            if p.is_dir():
                for q in sorted(p.iterdir()):
                    if q.suffix.lower() in IMAGE_SUFFIXES:
                        (problems.append(f"{q}: a folder, not an image") if q.is_dir() else found.append(q))
            elif not p.exists() and any(ch in item for ch in "*?["):  # an existing file is taken literally
                hits = sorted(Path(h) for h in glob.glob(item, recursive=True))
                files = [h for h in hits if h.is_file()]
                problems += [f"{h}: a folder, not an image" for h in hits if h.is_dir() and h.suffix.lower() in IMAGE_SUFFIXES]
                if not hits:
                    problems.append(f"{item}: no file matches")
                found += files
            else:
                found.append(p)
        except OSError as e:  # a symlink loop in is_dir(), a folder that cannot be listed
            problems.append(f"{item}: {one_line(e)}")
    seen, unique = set(), []
    for p in found:
        try:
            key = _resolve(p)
        except InputError as e:
            problems.append(str(e))
            continue
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return unique, problems


def folder_names(images: Sequence[Path]) -> list[str]:
    """One output folder name per image, all different: the stem, or ``stem-<8 hex of the resolved
    path's SHA-256>`` for every image whose stem (compared case-insensitively) another image shares."""
    stems = [p.stem for p in images]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s.lower()] = counts.get(s.lower(), 0) + 1
    return [s if counts[s.lower()] == 1 else f"{s}-{_digest(str(_resolve(p)).encode())[:8]}" for s, p in zip(stems, images)]


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _positive_finite(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
        raise InputError(f"{what} must be a finite number > 0, got {v!r}")
    return float(v)


def check_box(box: Sequence[float], size: tuple[int, int], what: str = "--box") -> list[float]:
    """``(x, y, w, h)`` pixels, checked: four finite numbers, ``w, h > 0``, inside the ``(W, H)``
    image (to within one pixel). InputError (one line) otherwise."""
    try:
        b = [float(x) for x in box]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be [x, y, w, h] numbers, got {box!r}") from None
    if len(b) != 4 or not all(math.isfinite(x) for x in b) or b[2] <= 0 or b[3] <= 0:
        raise InputError(f"{what} must be x, y, w, h with positive w, h, got {box!r}")
    W, H = size
    x, y, w, h = b
    if x < -1 or y < -1 or x + w > W + 1 or y + h > H + 1:
        raise InputError(f"{what} {[round(v, 1) for v in b]} is not inside the {W}x{H} image")
    return b


def bundled_examples() -> list[Path]:
    """The example photos that ship with the package (``ihmr demo`` without inputs)."""
    root = Path(__file__).resolve().parents[1] / "examples"
    return sorted(p for p in root.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def parse_box(text: str) -> list[float]:
    """``"x,y,w,h"`` -> ``[x, y, w, h]`` (pixels); InputError unless four finite numbers with positive w, h."""
    try:
        box = [float(x) for x in text.split(",")]
    except ValueError:
        box = []
    if len(box) != 4 or not all(math.isfinite(x) for x in box) or not (box[2] > 0 and box[3] > 0):
        raise InputError(f"--box must be x,y,w,h with positive w, h, got {text!r}")
    return box


def read_sidecar(image: Path) -> tuple[dict, Optional[str]]:
    """The optional ``<image>.json`` beside an image, checked: ``{"boxes": [[x, y, w, h], ...],
    "focal": f}`` (both optional); returns ``(content, SHA-256 of the file or None)``.
    InputError (one line) for a file that is not such a JSON object."""
    side = image.with_suffix(".json")
    if not side.is_file():
        return {}, None
    data = side.read_bytes()
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"sidecar {side.name} is not valid JSON ({one_line(e)})") from None
    if not isinstance(doc, dict):
        raise InputError(f"sidecar {side.name} must hold a JSON object {{\"boxes\": [...], \"focal\": f}}, got {type(doc).__name__}")
    out = {}
    if doc.get("focal") is not None:
        out["focal"] = _positive_finite(doc["focal"], f"sidecar {side.name}: \"focal\"")
    boxes = doc.get("boxes")
    if boxes is not None:
        if not isinstance(boxes, list) or not all(isinstance(b, list) and len(b) == 4 for b in boxes):
            raise InputError(f"sidecar {side.name}: \"boxes\" must be a list of [x, y, w, h], got {boxes!r}"[:300])
        out["boxes"] = boxes
    return out, _digest(data)


def input_record(image: Path, sidecar_sha256: Optional[str]) -> dict:
    """What identifies an input in result.json: resolved path, SHA-256 of the file and the sidecar's."""
    return {"path": str(_resolve(image)), "sha256": _file_digest(image), "sidecar_sha256": sidecar_sha256}


def _check_replaceable(folder: Path) -> None:
    """InputError unless ``folder`` is absent or an ihmr result folder holding only ihmr's files
    (a user's file or folder of that name is never replaced)."""
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise InputError(f"{folder} exists and is not an ihmr result folder; not replaced (choose another --out)")
    others = foreign_files(folder)
    if others or not (folder / "result.json").is_file():
        raise InputError(f"{folder} exists and is not an ihmr result folder (holds {', '.join(others[:3]) or 'no result.json'}); "
                         "not replaced (choose another --out)")


def _run_one(rec: Callable, image_path: Path, out: Path, name: str, options: BatchOptions, resume: bool,
             hand_model: str) -> ItemReport:
    t0 = time.perf_counter()
    rep = ItemReport(str(image_path), name, "")
    remove_leftovers(out / name)
    if not image_path.is_file():
        raise InputError("no such file" if not image_path.exists() else "not a file")
    side, side_sha = read_sidecar(image_path)
    ident = {"input": input_record(image_path, side_sha), "options": options.record(), "folder": name}
    if resume and is_complete(out / name, ident):
        rep.status = "skipped (complete)"
        return rep
    image = load_image(image_path)
    H, W = image.shape[:2]
    if options.box is not None:
        boxes = [check_box(options.box, (W, H))]
    else:
        boxes = [check_box(b, (W, H), f"sidecar box {i}") for i, b in enumerate(side.get("boxes", []))]
    _check_replaceable(out / name)
    res = rec(image, focal=options.focal or side.get("focal"), boxes=boxes)
    with atomic_folder(out / name) as staging:
        doc = write_outputs(res, image, staging, image_name=str(image_path), hand_model=hand_model, extra=ident)
    rep.hands = len(res.hands)
    rep.pen = "; ".join(f"{p['ave_p_mm_before']:.2f}/{p['max_p_mm_before']:.1f} -> {p['ave_p_mm_after']:.2f}/{p['max_p_mm_after']:.1f}"
                        for p in doc["pairs"])
    rep.status = "ok" if res.pairs else ("one hand only" if len(res.hands) == 1 else "no pair")
    rep.seconds = round(time.perf_counter() - t0, 2)
    return rep


def run_batch(rec: Callable, images: Sequence[Path], out: Path, options: BatchOptions, *, resume: bool = False,
              hand_model: str = "open", progress: bool = True,
              echo: Optional[Callable[[str], None]] = None) -> BatchReport:
    """Reconstruct ``images`` with ``rec`` (a :class:`~ihmr.pipeline.Reconstructor` or any callable
    ``rec(image, focal=, boxes=) -> Result``) into one folder each under ``out`` (which must exist).

    Every failure is one line through ``echo`` (``path: what went wrong``, default: stderr above
    the progress bar; the traceback goes to this module's log at DEBUG level, which ``--debug``
    shows) and one FAILED row; the other items go on.
    Ctrl-C (KeyboardInterrupt) stops after the current item's temporaries are removed; the rows not
    run say so and ``interrupted`` is set. Under torchrun this process runs its share; the report
    holds every process's rows (all processes must call this)."""
    echo = echo or (lambda msg: tqdm.write(msg, file=sys.stderr))
    rank, world = rank_world()
    names = folder_names(images)
    share = list(range(rank, len(images), world))
    rows: dict[int, ItemReport] = {}
    interrupted = False
    desc = "ihmr demo" if world == 1 else f"ihmr demo [{rank}/{world}]"
    with tqdm(share, desc=desc, unit="image", disable=not progress) as bar:
        for i in bar:
            if interrupted:
                rows[i] = ItemReport(str(images[i]), names[i], "not run (interrupted)")
                continue
            try:
                rows[i] = _run_one(rec, images[i], out, names[i], options, resume, hand_model)
            except KeyboardInterrupt:
                interrupted = True
                rows[i] = ItemReport(str(images[i]), names[i], "not run (interrupted)")
            except Exception as e:  # noqa: BLE001 - per-item isolation: one line, the batch goes on
                msg = one_line(e, about=images[i])  # the line names the image already
                rows[i] = ItemReport(str(images[i]), names[i], f"FAILED: {msg}")
                log.debug("%s failed", images[i], exc_info=True)
                echo(f"ihmr demo: {images[i]}: {msg}")
                continue
            r = rows[i]
            if r.status in ("one hand only", "no pair"):
                echo(f"ihmr demo: {images[i]}: {'one hand only, reconstructed alone' if r.hands == 1 else 'hands found but none paired'}")
    gathered = gather_objects((rows, interrupted))
    report = BatchReport()
    for part_rows, part_int in gathered:
        rows.update(part_rows)
        report.interrupted |= part_int
    report.items = [rows[i] for i in range(len(images))]
    return report
