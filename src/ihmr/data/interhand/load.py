"""Loading a split's annotations: from the ``.npz`` cache when the input files are unchanged, else
parsed from the JSON files (and cached); samples without an image file are skipped and reported."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal, Optional, Union

import numpy as np

from ihmr.data.interhand.annotations import InterHandAnnotations, SkippedSample
from ihmr.data.interhand.cache import cache_key, cache_path, default_cache_dir, load_cache, save_cache
from ihmr.data.interhand.files import InterHandFiles, PathLike, find_split_files
from ihmr.data.interhand.parse import parse
from ihmr.errors import InputError

__all__ = ["load_interhand"]

log = logging.getLogger(__name__)


def load_interhand(
    source: Union[PathLike, InterHandFiles],
    split: str = "test",
    prefix: Optional[str] = None,
    image_root: Optional[PathLike] = None,
    cache_dir: Union[PathLike, None, Literal[False]] = None,
    check_images: bool = True,
    mano: bool = True,
    warn: bool = True,
) -> InterHandAnnotations:
    """Load a split's annotations (from the cache when the input files are unchanged).

    Args:
        source: the annotation folder (see :func:`find_split_files`), a ``*_data.json`` file (the
            other files beside it with the same prefix), or explicit :class:`InterHandFiles`.
        split, prefix, image_root, mano: passed to :func:`find_split_files` when ``source`` is a folder.
        cache_dir: where the ``.npz`` cache lives: None = ``$IHMR_CACHE`` or ``~/.cache/ihmr/interhand``
            (never beside the annotations, which are often shared or read-only), ``False`` = no cache.
        check_images: skip (and report) samples whose image file does not exist.
        warn: emit a :class:`UserWarning` summarising the skipped samples.

    Returns:
        :class:`InterHandAnnotations`.

    Raises:
        InputError: a missing annotation file, invalid JSON or a wrong top-level structure (the
            message names the file).
    """
    if isinstance(source, InterHandFiles):
        files = source
    elif Path(source).is_file() and Path(source).name.endswith("_data.json"):
        src = Path(source)
        files = find_split_files(src.parent, split, src.name[: -len("_data.json")], image_root, mano)
    else:
        files = find_split_files(source, split, prefix, image_root, mano)
    for p in files.inputs():
        if not p.is_file():
            raise InputError(f"InterHand2.6M file {p} not found")
    key = cache_key(files)
    cdir: Optional[Path] = None
    if cache_dir is not False:
        cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    loaded = load_cache(cache_path(files, cdir, key), key) if cdir is not None and cache_path(files, cdir, key).is_file() else None
    from_cache = loaded is not None
    if loaded is not None:
        arrays, skipped, has_mano = loaded
    else:
        arrays, skipped = parse(files)
        has_mano = files.mano is not None
        if cdir is not None:
            try:
                save_cache(cache_path(files, cdir, key), key, arrays, skipped, has_mano)
            except OSError as e:
                log.info("could not write the InterHand2.6M cache in %s (%s)", cdir, e)
    ann = InterHandAnnotations(**arrays, image_root=files.image_root or files.data.parent, skipped=list(skipped),
                               from_cache=from_cache, has_mano=has_mano)
    if check_images and len(ann):
        exists = np.array([p.is_file() for p in ann.image_paths], dtype=bool)
        if not exists.all():
            ann.skipped.extend(SkippedSample(int(i), str(f), "image file not found")
                               for i, f in zip(ann.image_id[~exists], ann.file_name[~exists]))
            ann = ann.select(exists)
    if warn and ann.skipped:
        head = "; ".join(f"{s.image_id} {s.file_name}: {s.reason}" for s in ann.skipped[:5])
        more = f" (and {len(ann.skipped) - 5} more)" if len(ann.skipped) > 5 else ""
        warnings.warn(f"InterHand2.6M {files.prefix}: skipped {len(ann.skipped)} sample(s): {head}{more}", stacklevel=2)
    return ann
