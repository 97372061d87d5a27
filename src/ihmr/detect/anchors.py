"""The palm detector's input and output (MediaPipe's SSD palm model, 192 x 192): letter-boxing an
image into the model's square input, the SSD anchors and the decoding of its regressors into hand
crops.

Pure numpy (and PIL for the resize); the model itself runs in :mod:`ihmr.detect.models`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ihmr.geometry.rotations import rotation_2d

__all__ = ["PALM_INPUT", "palm_anchors", "letterbox", "decode_palms"]

#: Side (pixels) of the palm detector's square input.
PALM_INPUT = 192


def palm_anchors() -> np.ndarray:
    """Centres ``(2016, 2)`` (normalised) of the palm detector's SSD anchors: 192 x 192 input, strides
    8 (2 anchors per cell) and 16 (3 layers merged: 6 anchors per cell), fixed unit anchor size."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        g = PALM_INPUT // stride
        yy, xx = np.meshgrid((np.arange(g) + 0.5) / g, (np.arange(g) + 0.5) / g, indexing="ij")
        out.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], 1), per_cell, axis=0))
    return np.concatenate(out)


def letterbox(image: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """An RGB ``(H, W, 3)`` uint8 image centred on a black square of side ``S = max(H, W)`` and resized
    to the model's input: ``(x (1, 192, 192, 3) float32 in [0, 1], S, pad (2,))``, with ``pad`` the
    image's offset ``(x, y)`` in the square (pixels)."""
    H, W = image.shape[:2]
    S = max(H, W)
    ox, oy = (S - W) // 2, (S - H) // 2
    pad = np.zeros((S, S, 3), np.uint8)
    pad[oy:oy + H, ox:ox + W] = image
    x = np.asarray(Image.fromarray(pad).resize((PALM_INPUT, PALM_INPUT), Image.BILINEAR), np.float32)[None] / 255.0
    return x, S, np.array([ox, oy], np.float64)


def decode_palms(reg: np.ndarray, logit: np.ndarray, anchors: np.ndarray, S: int, off: np.ndarray,
                 min_score: float) -> list[tuple[float, np.ndarray, tuple[float, np.ndarray, float, float]]]:
    """Palms of one model run whose score is at least ``min_score``: ``(score, box (2, 2), crop)``.

    ``reg (2016, 18)``: box centre and size, then 7 keypoints, in input pixels relative to the
    anchors; ``logit (2016,)``; ``S``: side of the letter-boxed square; ``off (2,)``: the square's
    pad minus the image's origin (pixels: a point ``p`` of the square is ``p - off`` in the image).
    ``box``: the palm box's corners (image pixels); ``crop``: MediaPipe's hand crop ``(score,
    centre (2,), size, angle)``, turned so that wrist -> middle finger base is upright, shifted by
    half the palm box towards the fingers, 2.6 x the palm box.
    """
    score = 1.0 / (1.0 + np.exp(-np.clip(logit, -100, 100)))
    out = []
    for k in np.flatnonzero(score >= min_score):
        c = (reg[k, :2] / 192.0 + anchors[k]) * S - off
        wh = np.abs(reg[k, 2:4]) / 192.0 * S
        wrist = (reg[k, 4:6] / 192.0 + anchors[k]) * S - off
        middle = (reg[k, 8:10] / 192.0 + anchors[k]) * S - off
        d = middle - wrist
        a = float(np.arctan2(d[0], -d[1]))
        side = float(wh.max())
        crop = (float(score[k]), c + rotation_2d(a) @ np.array([0.0, -0.5 * side]), 2.6 * side, a)
        out.append((float(score[k]), np.stack([c - wh / 2, c + wh / 2]), crop))
    return out
