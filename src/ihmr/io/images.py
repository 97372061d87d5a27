"""Images from files or arrays: RGB ``(H, W, 3)`` uint8, with one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ihmr.errors import InputError

__all__ = ["MIN_SIDE", "MAX_SIDE", "load_image"]


#: Smallest and largest supported image side (pixels).
MIN_SIDE, MAX_SIDE = 32, 8192


def load_image(path_or_array: Union[str, Path, np.ndarray]) -> np.ndarray:
    """RGB ``(H, W, 3)`` uint8 from a file (EXIF orientation applied; grey, RGBA, 16-bit and palette
    images converted) or an array; raises :class:`InputError` with a one-line reason."""
    if isinstance(path_or_array, np.ndarray):
        a = path_or_array
        if a.ndim == 2:
            a = np.repeat(a[..., None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] not in (3, 4):
            raise InputError(f"image array must be (H, W, 3) or (H, W, 4), got {a.shape}")
        if a.dtype != np.uint8:
            a = np.clip(a / (257.0 if a.max() > 255 else 1.0), 0, 255).astype(np.uint8)
        img = a[..., :3]
    else:
        p = Path(path_or_array)
        if not p.is_file():
            raise InputError(f"{p}: no such file")
        try:
            Image.MAX_IMAGE_PIXELS = MAX_SIDE * MAX_SIDE * 4
            with Image.open(p) as im:
                w, h = im.size
                if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
                    raise InputError(f"{p}: image of {w}x{h} pixels is outside the supported {MIN_SIDE}..{MAX_SIDE} pixels per side")
                im = ImageOps.exif_transpose(im)
                if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im, dtype=np.float64)
                    img8 = np.clip(arr / (257.0 if arr.max() > 255 else 1.0), 0, 255).astype(np.uint8)
                    img = np.repeat(img8[..., None], 3, axis=2)
                else:
                    img = np.asarray(im.convert("RGB"))
        except InputError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
            raise InputError(f"{p}: not a readable image ({type(e).__name__}: {e})") from e
        except Image.DecompressionBombError as e:  # pragma: no cover
            raise InputError(f"{p}: image too large ({e})") from e
    h, w = img.shape[:2]
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE:
        raise InputError(f"image of {w}x{h} pixels is outside the supported {MIN_SIDE}..{MAX_SIDE} pixels per side")
    return np.ascontiguousarray(img)
