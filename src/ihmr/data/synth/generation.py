"""``ihmr synth``: render ``n`` samples with a pool of worker processes (one renderer each), write
each image and its record as it is done (``--resume`` keeps finished samples), then assemble the
annotation files and the manifest (:mod:`ihmr.data.synth.format`). Each sample is isolated: one that
fails is one line and one entry of the manifest's ``failed``; Ctrl-C stops with the counts so far.

Deterministic for a seed whatever the number of workers (see :mod:`ihmr.data.synth.renderer`), and
a run with a larger ``n`` extends a smaller one.
"""

from __future__ import annotations

import json
import logging
import multiprocessing as mp
import os
import shutil
import signal
import sys
import time
import traceback
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
from ihmr.errors import InputError, one_line
from ihmr.io.files import ensure_writable_folder, remove_leftovers, write_bytes, write_text

__all__ = ["SynthConfig", "generate"]

log = logging.getLogger(__name__)


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


def _remove_temporaries(images: Path, annotations: Path) -> None:
    """Remove what a killed run left in this split's folders: the ``.*.tmp`` files of
    :func:`~ihmr.io.files.atomic_write` (images, records, annotation files) and the staging folders
    of :func:`~ihmr.data.synth.format.assemble`."""
    for root in (images, annotations):
        remove_leftovers(root, recursive=True)
    parts = annotations / ".parts"
    if parts.is_dir():
        for p in parts.glob(".assemble.*"):
            shutil.rmtree(p, ignore_errors=True)


#: One finished sample: ``(idx, None)`` when written, ``(idx, (one-line error, traceback))`` when it failed.
Outcome = tuple[int, Optional[tuple[str, str]]]

_WORKER: dict = {}


def _exit_on_sigterm(signum: int, frame) -> None:
    """A pool worker told to stop (``Pool.terminate``) unwinds: its write in progress removes its
    temporary file and its resources are released."""
    raise SystemExit(128 + signum)


def _worker_init(size: int, model: str, quality: int) -> None:
    """A pool worker: Ctrl-C is the parent's (it terminates the pool: SIGTERM, on which the worker
    exits cleanly); one thread; its own renderer
    (the model was loaded once in the parent already, so this fails only in odd environments; an
    initializer that raises would make the pool respawn workers forever, so the error is kept and
    every sample of this worker reports it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    torch.set_num_threads(1)
    try:
        _WORKER["renderer"] = SampleRenderer(size, model, quality)
    except Exception as e:  # noqa: BLE001 - reported per sample, see above
        _WORKER["error"] = (f"worker could not start: {one_line(e)}", traceback.format_exc())


def _work(task: tuple, on_done: Optional[Callable[[int, Optional[tuple[str, str]]], None]] = None) -> list[Outcome]:
    """Render the samples ``idxs`` (all of one pose chunk); write image + part file each. A sample
    that fails (any exception) is reported and the others go on; ``on_done(idx, failure)`` is
    called after each sample (failure: None or ``(one line, traceback)``)."""
    seed, chunk, idxs, images, parts = task
    r: Optional[SampleRenderer] = _WORKER.get("renderer")
    out: list[Outcome] = []
    for idx in idxs:
        fail = _WORKER.get("error")
        if r is not None:
            try:
                s = r.render(seed, idx, chunk)
                write_bytes(Path(images) / image_relpath(idx), s.jpeg)
                write_text(part_path(Path(parts), idx), dumps(s.record))
            except Exception as e:  # noqa: BLE001 - per-sample isolation: one line, the others go on
                fail = (one_line(e), traceback.format_exc())
        out.append((int(idx), fail))
        if on_done is not None:
            on_done(int(idx), fail)
    return out


def generate(cfg: SynthConfig) -> dict:
    """Render ``cfg.n`` samples and write the InterHand2.6M-format files; returns the manifest plus
    this run's counts: ``rendered``, ``reused``, ``failed`` (``[{"sample", "image", "error"}]``),
    ``interrupted``, ``seconds``, ``images_per_s``.

    A sample that fails (any exception) is one line on stderr (``ihmr synth: sample <idx>: <what
    went wrong>``; its traceback goes to this module's log at DEBUG level) and one entry of
    ``failed``; the others go on, and the annotation files then hold the samples that were written
    (``--resume`` renders the failed ones again). Ctrl-C (KeyboardInterrupt, also with a worker
    pool) stops the run: the pool is terminated, temporaries are removed, nothing is assembled, and
    the counts so far come back with ``interrupted`` True (with a pool, of the pose chunks finished:
    samples of an unfinished chunk may be on disk, and are kept); ``--resume`` then completes the run with
    exactly the files of an uninterrupted one. Leftover temporaries of a killed run are removed at
    start.

    Raises:
        InputError: bad options or an unwritable output folder.
        ModelFileError: a bad ``model`` (loaded once, here, before any work or worker process).
    """
    cfg.check()
    out = Path(cfg.out)
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    renderer = SampleRenderer(cfg.size, cfg.model, cfg.quality)  # whole-run errors (--model, pyrender) once, up front
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
    _remove_temporaries(images, paths["data"].parent)
    parts.mkdir(parents=True, exist_ok=True)
    write_text(stamp, dumps(manifest_key))

    done = {i for i in range(cfg.n) if _is_done(parts, images, i)} if cfg.resume else set()
    todo = [i for i in range(cfg.n) if i not in done]
    by_chunk: dict[int, list[int]] = {}
    for i in todo:
        by_chunk.setdefault(i // cfg.chunk, []).append(i)
    tasks = [(int(cfg.seed), int(cfg.chunk), idxs, str(images), str(parts)) for _, idxs in sorted(by_chunk.items())]
    workers = max(1, min(int(cfg.workers), len(tasks)))
    rendered: list[int] = []
    failed: dict[int, str] = {}

    def on_done(idx: int, fail: Optional[tuple[str, str]]) -> None:
        bar.update(1)
        if fail is None:
            rendered.append(idx)
            return
        failed[idx] = fail[0]
        log.debug("sample %d failed:\n%s", idx, fail[1])
        tqdm.write(f"ihmr synth: sample {idx}: {fail[0]}", file=sys.stderr)

    t0 = time.perf_counter()
    bar = tqdm(total=cfg.n, initial=len(done), desc="ihmr synth", unit="img", disable=not cfg.progress)
    interrupted = False
    try:
        if tasks and workers == 1:
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            _WORKER["renderer"] = renderer
            try:
                for task in tasks:
                    _work(task, on_done)
            finally:
                _WORKER.pop("renderer").close()
                torch.set_num_threads(threads)
        elif tasks:
            del renderer  # the workers make their own
            # spawn: every worker starts clean and opens its own EGL context (no forked GL state).
            pool = mp.get_context("spawn").Pool(workers, initializer=_worker_init, initargs=(cfg.size, cfg.model, cfg.quality))
            try:
                for outcomes in pool.imap_unordered(_work, tasks):
                    for idx, fail in outcomes:
                        on_done(idx, fail)
                pool.close()
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()
                _remove_temporaries(images, paths["data"].parent)  # what terminated workers were writing
        elapsed = time.perf_counter() - t0
        assemble(paths, sorted(done.union(rendered)))
    except KeyboardInterrupt:
        interrupted = True
        elapsed = time.perf_counter() - t0
    finally:
        bar.close()

    manifest = dict(
        manifest_key, n=int(cfg.n), split=cfg.split,
        capture=CAPTURE, seq_name=SEQ_NAME, camera_ids=f"str({CAMERA_BASE} + idx)",
        images=f"images/{cfg.split}/Capture{CAPTURE}/{SEQ_NAME}/cam<{CAMERA_BASE}+idx>/image<idx:05d>.jpg",
        conventions="X_cam = camrot @ (world_mm - campos); uv = focal * X_cam[:2] / X_cam[2] + princpt; "
                    "joints: InterHand order, right 0-20, left 21-41",
    )
    failures = [{"sample": i, "image": f"images/{cfg.split}/{image_relpath(i)}", "error": failed[i]} for i in sorted(failed)]
    if not interrupted:
        # Only a run with failures records them (an uninterrupted, complete run's file never changes).
        write_text(paths["manifest"], json.dumps(dict(manifest, failed=failures) if failures else manifest, indent=2))
    manifest.update(rendered=len(rendered), reused=len(done), failed=failures, interrupted=interrupted,
                    not_run=cfg.n - len(done) - len(rendered) - len(failed), seconds=round(elapsed, 3))
    manifest["images_per_s"] = round(len(rendered) / elapsed, 3) if rendered and elapsed > 0 else None
    return manifest
