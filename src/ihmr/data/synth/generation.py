"""``ihmr synth``: render ``n`` samples with a pool of worker processes (one renderer each), write
each image and its record as it is done (``--resume`` keeps finished samples), then assemble the
annotation files and the manifest (:mod:`ihmr.data.synth.format`).

Deterministic for a seed whatever the number of workers (see :mod:`ihmr.data.synth.renderer`), and
a run with a larger ``n`` extends a smaller one.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from tqdm import tqdm

from ihmr.data.synth.format import (
    CAMERA_BASE,
    CAPTURE,
    FORMAT_VERSION,
    POSE_CHUNK,
    SEQ_NAME,
    annotation_paths,
    assemble,
    dumps,
    image_relpath,
    part_path,
)
from ihmr.data.synth.renderer import SampleRenderer
from ihmr.errors import InputError
from ihmr.io.files import ensure_writable_folder, write_bytes, write_text

__all__ = ["SynthConfig", "generate"]


@dataclass
class SynthConfig:
    """Options of :func:`generate` (see ``ihmr synth --help``)."""

    out: str | Path
    n: int
    seed: int = 0
    size: int = 256
    workers: int = 1
    split: str = "train"
    resume: bool = False
    chunk: int = POSE_CHUNK
    model: str = "open"
    quality: int = 92
    progress: bool = True

    def check(self) -> "SynthConfig":
        """Validate the options; returns ``self``.

        Raises:
            InputError: a value out of range, or a split that is not a plain folder name.
        """
        def whole(name: str, v: Any, lo: int) -> None:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
                raise InputError(f"{name} must be an integer >= {lo}, got {v!r}")

        whole("n", self.n, 1)
        whole("seed", self.seed, 0)
        whole("size", self.size, 32)
        whole("workers", self.workers, 1)
        whole("chunk", self.chunk, 1)
        if self.size > 4096:
            raise InputError(f"size must be <= 4096, got {self.size}")
        if not 1 <= int(self.quality) <= 100:
            raise InputError(f"quality must be in 1..100, got {self.quality}")
        if not self.split or any(c in self.split for c in "/\\") or self.split.startswith("."):
            raise InputError(f"split must be a plain folder name, got {self.split!r}")
        return self


def _is_done(parts: Path, images: Path, idx: int) -> bool:
    """A finished sample: its image and its record are both present (both are written atomically)."""
    return part_path(parts, idx).is_file() and (images / image_relpath(idx)).is_file()


_WORKER: dict = {}


def _worker_init(size: int, model: str, quality: int) -> None:
    torch.set_num_threads(1)
    _WORKER["renderer"] = SampleRenderer(size, model, quality)


def _work(task: tuple, on_done: Optional[Callable[[], None]] = None) -> list[int]:
    """Render the samples ``idxs`` (all of one pose chunk); write image + part file each."""
    seed, chunk, idxs, images, parts = task
    r: SampleRenderer = _WORKER["renderer"]
    for idx in idxs:
        s = r.render(seed, idx, chunk)
        write_bytes(Path(images) / image_relpath(idx), s.jpeg)
        write_text(part_path(Path(parts), idx), dumps(s.record))
        if on_done is not None:
            on_done()
    return list(idxs)


def generate(cfg: SynthConfig) -> dict:
    """Render ``cfg.n`` samples and write the InterHand2.6M-format files; returns the manifest.

    Raises:
        InputError: bad options or an unwritable output folder.
    """
    cfg.check()
    out = Path(cfg.out)
    ensure_writable_folder(out)
    paths = annotation_paths(out, cfg.split)
    images = out / "images" / cfg.split
    parts = paths["parts"]
    manifest_key = dict(format=FORMAT_VERSION, seed=int(cfg.seed), size=int(cfg.size), chunk=int(cfg.chunk), model=str(cfg.model),
                        quality=int(cfg.quality))
    stamp = parts / "settings.json"
    if cfg.resume and stamp.is_file():
        try:
            old = json.loads(stamp.read_text(encoding="utf-8"))
        except ValueError:
            old = None
        if old != manifest_key:
            raise InputError(f"--resume: {out} was made with other settings {old}; now {manifest_key}")
    parts.mkdir(parents=True, exist_ok=True)
    write_text(stamp, dumps(manifest_key))

    done = {i for i in range(cfg.n) if _is_done(parts, images, i)} if cfg.resume else set()
    todo = [i for i in range(cfg.n) if i not in done]
    by_chunk: dict[int, list[int]] = {}
    for i in todo:
        by_chunk.setdefault(i // cfg.chunk, []).append(i)
    tasks = [(int(cfg.seed), int(cfg.chunk), idxs, str(images), str(parts)) for _, idxs in sorted(by_chunk.items())]
    workers = max(1, min(int(cfg.workers), len(tasks)))
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    t0 = time.perf_counter()
    bar = tqdm(total=cfg.n, initial=len(done), desc="ihmr synth", unit="img", disable=not cfg.progress)
    try:
        if tasks and workers == 1:
            threads = torch.get_num_threads()
            _worker_init(cfg.size, cfg.model, cfg.quality)
            try:
                for task in tasks:
                    _work(task, on_done=lambda: bar.update(1))
            finally:
                _WORKER.pop("renderer").close()
                torch.set_num_threads(threads)
        elif tasks:
            # spawn: every worker starts clean and opens its own EGL context (no forked GL state).
            pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(cfg.size, cfg.model, cfg.quality))
            try:
                for idxs in pool.imap_unordered(_work, tasks):
                    bar.update(len(idxs))
                pool.close()
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()
    finally:
        bar.close()
    elapsed = time.perf_counter() - t0

    assemble(paths, cfg.n)
    manifest = dict(
        manifest_key, n=int(cfg.n), split=cfg.split,
        capture=CAPTURE, seq_name=SEQ_NAME, camera_ids=f"str({CAMERA_BASE} + idx)",
        images=f"images/{cfg.split}/Capture{CAPTURE}/{SEQ_NAME}/cam<{CAMERA_BASE}+idx>/image<idx:05d>.jpg",
        conventions="X_cam = camrot @ (world_mm - campos); uv = focal * X_cam[:2] / X_cam[2] + princpt; "
                    "joints: InterHand order, right 0-20, left 21-41",
    )
    write_text(paths["manifest"], json.dumps(manifest, indent=2))
    manifest.update(rendered=len(todo), reused=cfg.n - len(todo), seconds=round(elapsed, 3))
    manifest["images_per_s"] = round(len(todo) / elapsed, 3) if todo and elapsed > 0 else None
    return manifest
