"""The ``.npz`` cache of parsed annotations (no pickle), keyed by the input files' paths, sizes and
modification times; kept in ``$IHMR_CACHE/interhand`` or ``~/.cache/ihmr/interhand`` by default."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ihmr.data.interhand.annotations import FIELDS, STR_FIELDS, SkippedSample
from ihmr.data.interhand.files import InterHandFiles
from ihmr.io.npz import write_npz

__all__ = ["CACHE_VERSION", "cache_key", "cache_path", "save_cache", "load_cache", "default_cache_dir"]

log = logging.getLogger(__name__)

#: Bumped whenever the cached arrays change meaning.
CACHE_VERSION = 1


def cache_key(files: InterHandFiles) -> str:
    """Hex digest of the cache version and each input file's resolved path, size and mtime."""
    h = hashlib.sha256()
    h.update(f"ihmr-interhand-v{CACHE_VERSION}".encode())
    for p in files.inputs():
        st = p.stat()
        h.update(json.dumps([str(p.resolve()), st.st_size, st.st_mtime_ns]).encode())
    return h.hexdigest()


def cache_path(files: InterHandFiles, cache_dir: Path, key: str) -> Path:
    """The cache file of ``files`` under ``key`` in ``cache_dir``."""
    return cache_dir / f"{files.prefix}.ihmr-cache.{key[:20]}.npz"


def save_cache(path: Path, key: str, arrays: dict[str, np.ndarray], skipped: list[SkippedSample], has_mano: bool) -> None:
    """Write the parsed arrays and the skipped records atomically; remove older caches of the split."""
    meta = json.dumps({"key": key, "version": CACHE_VERSION, "has_mano": has_mano,
                       "skipped": [[s.image_id, s.file_name, s.reason] for s in skipped]})
    write_npz(path, {"__meta__": np.array(meta), **arrays}, compressed=False)
    for old in path.parent.glob(path.name.split(".ihmr-cache.")[0] + ".ihmr-cache.*.npz"):
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass


def load_cache(path: Path, key: str) -> Optional[tuple[dict[str, np.ndarray], list[SkippedSample], bool]]:
    """``(arrays, skipped, has_mano)`` from the cache, or None when it is stale, another version or
    unreadable (then the JSON is parsed again)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            if meta.get("key") != key or meta.get("version") != CACHE_VERSION:
                return None
            arrays = {k: z[k] for k in (*FIELDS, *STR_FIELDS)}
    except Exception as e:  # unreadable / truncated / old cache: parse again
        log.info("ignoring InterHand2.6M cache %s (%s)", path, e)
        return None
    skipped = [SkippedSample(int(a), str(b), str(c)) for a, b, c in meta["skipped"]]
    return arrays, skipped, bool(meta["has_mano"])


def default_cache_dir() -> Path:
    """``$IHMR_CACHE/interhand`` or ``~/.cache/ihmr/interhand``."""
    root = os.environ.get("IHMR_CACHE") or (Path.home() / ".cache" / "ihmr")
    return Path(root) / "interhand"
