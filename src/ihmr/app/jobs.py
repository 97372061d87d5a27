"""The work behind ``ihmr serve``, free of any web framework: checking uploads, running them through
``ihmr demo``'s own batch (:func:`ihmr.pipeline.batch.run_batch`, so a photo gives the same files
as ``ihmr demo`` with the same options) in a job folder of a private workspace, and removing old
jobs.

A job is ``<workspace>/job-<id>/in/`` (the uploads, under sanitised names; a ``.json`` upload is
the sidecar of the image with its stem, as beside a photo for ``ihmr demo``) and ``.../out/<image>/``
(the demo's folders). The workspace keeps the last :attr:`Workspace.keep` jobs and is removed by
:meth:`Workspace.close`.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from PIL import Image, UnidentifiedImageError

from ihmr.errors import InputError, one_line
from ihmr.pipeline.batch import IMAGE_SUFFIXES, BatchOptions, run_batch

__all__ = ["Limits", "ImageResult", "JobResult", "Workspace", "check_upload", "safe_name", "pair_rows"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limits:
    """What one upload may be: ``max_bytes`` per file, ``max_pixels`` per image, ``max_files`` per job."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_files: int = 16


def safe_name(name: str) -> str:
    """A file name that stays inside its folder: the last path component, characters other than
    letters, digits, ``.-_`` replaced by ``_``, no leading dot."""
    base = re.sub(r"[^A-Za-z0-9._-]", "_", Path(name.replace("\\", "/")).name).lstrip(".")
    return base[:120] or "upload"


def check_upload(path: Path, limits: Limits, name: Optional[str] = None) -> None:
    """InputError (one line naming the upload) unless ``path`` is an image within ``limits`` (or a
    small JSON sidecar)."""
    name = name or path.name
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{name}: the file is empty")
    if size > limits.max_bytes:
        raise InputError(f"{name}: {size / 2**20:.1f} MB is over the upload limit of {limits.max_bytes / 2**20:.0f} MB")
    if Path(name).suffix.lower() == ".json":
        try:
            json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as e:
            raise InputError(f"{name}: not a valid JSON sidecar ({one_line(e)})") from None
        return
    try:
        with Image.open(path) as im:
            w, h = im.size
            if w * h > limits.max_pixels:
                raise InputError(f"{name}: {w}x{h} pixels is over the limit of {limits.max_pixels / 1e6:.0f} megapixels")
            im.load()  # a truncated file fails here
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise InputError(f"{name}: not a readable image ({one_line(e)})") from None


@dataclass
class ImageResult:
    """One photo of a job: its output ``folder`` (None if it failed), ``status`` as in ``ihmr demo``'s
    summary, and result.json's content ``doc``."""

    name: str
    status: str
    folder: Optional[Path] = None
    doc: dict = field(default_factory=dict)

    def downloads(self) -> list[Path]:
        """result.json, the GLBs, the OBJs and the pictures, as ``ihmr demo`` wrote them."""
        if self.folder is None:
            return []
        first = ["result.json", "hands.glb", "hands_before.glb"]
        rest = sorted(p.name for p in self.folder.iterdir() if p.is_file() and p.name not in first and not p.name.startswith("."))
        return [self.folder / n for n in first + rest if (self.folder / n).is_file()]


@dataclass
class JobResult:
    """A job's photos in upload order and its problems (one line each)."""

    folder: Path
    images: list[ImageResult]
    problems: list[str]


def pair_rows(doc: dict) -> list[list]:
    """The per-pair table of a result.json: pair, AVE-P / MAX-P (mm) before and after, accepted factors."""
    rows = []
    for k, p in enumerate(doc.get("pairs", [])):
        acc = ", ".join(f for f, ok in p.get("accepted", {}).items() if ok) or "-"
        rows.append([f"{k + 1} (hands {p['right']}, {p['left']})", round(p["ave_p_mm_before"], 2), round(p["max_p_mm_before"], 1),
                     round(p["ave_p_mm_after"], 2), round(p["max_p_mm_after"], 1), acc])
    return rows


class Workspace:
    """A private temporary folder of jobs; the last ``keep`` jobs are kept, older ones removed."""

    def __init__(self, root: Optional[Path] = None, keep: int = 8, limits: Limits = Limits()) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="ihmr-serve-", dir=root))
        self.keep = keep
        self.limits = limits

    def close(self) -> None:
        """Remove the workspace and everything in it."""
        shutil.rmtree(self.root, ignore_errors=True)

    def _prune(self) -> None:
        jobs = sorted((p for p in self.root.glob("job-*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
        for old in jobs[:-self.keep] if len(jobs) > self.keep else []:
            shutil.rmtree(old, ignore_errors=True)

    def run(self, rec: Callable, uploads: Sequence[tuple[Path, str]], options: BatchOptions, *,
            hand_model: str = "open", progress: bool = True) -> JobResult:
        """Check and copy ``uploads`` (``(path, original name)``), then reconstruct every image with
        ``rec`` as ``ihmr demo`` does. InputError when no upload is usable (the message names why)."""
        if not uploads:
            raise InputError("no photo uploaded")
        if len(uploads) > self.limits.max_files:
            raise InputError(f"{len(uploads)} files is over the limit of {self.limits.max_files} per upload")
        self._prune()
        job = self.root / f"job-{uuid.uuid4().hex[:12]}"
        (job / "in").mkdir(parents=True)
        (job / "out").mkdir()
        images, problems, taken = [], [], set()
        for path, original in uploads:
            name = safe_name(original)
            try:
                check_upload(Path(path), self.limits, name)
            except InputError as e:
                problems.append(str(e))
                continue
            stem, suffix = Path(name).stem, Path(name).suffix.lower()
            if suffix != ".json" and suffix not in IMAGE_SUFFIXES:
                suffix = ".png" if suffix in ("", ".") else suffix  # an image whatever its name: load_image reads the content
                name = stem + suffix
            while name.lower() in taken:
                stem += "_"
                name = stem + suffix
            taken.add(name.lower())
            shutil.copyfile(path, job / "in" / name)
            if suffix != ".json":
                images.append(job / "in" / name)
        if not images:
            raise InputError("; ".join(problems) or "no image among the uploads")
        report = run_batch(rec, images, job / "out", options, hand_model=hand_model, progress=progress, echo=log.info)
        results = []
        for item in report.items:
            folder = job / "out" / item.folder
            doc = json.loads((folder / "result.json").read_text(encoding="utf-8")) if not item.failed else {}
            results.append(ImageResult(Path(item.image).name, item.status, None if item.failed else folder, doc))
            if item.failed:  # the image's name, never the job folder's path
                problems.append(f"{Path(item.image).name}: {item.status.removeprefix('FAILED: ').replace(str(job / 'in') + '/', '')}")
        return JobResult(job, results, problems)
