"""Boxes, crops and 2D affine maps between image and crop pixels (pixel centres at integers)."""

from __future__ import annotations

from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ihmr.errors import InputError

__all__ = ["hand_boxes", "crop_affine", "apply_affine", "invert_affine", "pixels_to_normalised", "crop_image", "normalise_image"]


def hand_boxes(
    joints_2d: np.ndarray,
    valid: np.ndarray,
    bbox: Optional[np.ndarray] = None,
    padding: float = 1.2,
    use_bbox: bool = False,
    min_size: float = 8.0,
) -> np.ndarray:
    """Boxes around both hands, ``(N, 4)`` ``[x0, y0, x1, y1]`` pixels.

    Args:
        joints_2d: ``(N, J, 2)`` pixels; valid: ``(N, J)`` bool.
        bbox: ``(N, 4)`` annotation boxes ``[x, y, w, h]``; used (as is) for samples without a valid
            joint, and united with the joint box when ``use_bbox``.
        padding: the valid joints' extent is enlarged by this factor about its centre (1.2 = the
            annotation bbox's convention).
        min_size: smallest side in pixels (a single valid joint still gives a box).

    Raises:
        InputError: a sample has no valid joint and no bbox.
    """
    j = np.asarray(joints_2d, dtype=np.float64)
    m = np.asarray(valid, dtype=bool)
    any_valid = m.any(1)
    lo = np.where(m[..., None], j, np.inf).min(1)
    hi = np.where(m[..., None], j, -np.inf).max(1)
    lo, hi = np.where(any_valid[:, None], lo, 0.0), np.where(any_valid[:, None], hi, 0.0)
    c = 0.5 * (lo + hi)
    half = 0.5 * np.maximum((hi - lo) * padding, min_size)
    box = np.concatenate([c - half, c + half], 1)
    if bbox is not None:
        b = np.asarray(bbox, dtype=np.float64)
        bb = np.concatenate([b[:, :2], b[:, :2] + b[:, 2:]], 1)
        if use_bbox:
            union = np.concatenate([np.minimum(box[:, :2], bb[:, :2]), np.maximum(box[:, 2:], bb[:, 2:])], 1)
            box = np.where(any_valid[:, None], union, bb)
        else:
            box = np.where(any_valid[:, None], box, bb)
    elif not any_valid.all():
        raise InputError(f"{int((~any_valid).sum())} sample(s) have no valid joint and no bbox to crop")
    return box


def crop_affine(boxes: np.ndarray, size: int = 224) -> np.ndarray:
    """``(N, 2, 3)`` affine maps image pixels -> crop pixels for boxes ``(N, 4)`` ``[x0, y0, x1, y1]``.

    The box's longest side becomes ``size`` pixels and its centre the crop's centre
    ``((size - 1) / 2, (size - 1) / 2)`` (pixel centres at integers, as ``cv2.warpAffine``), so the box
    edges land on the crop's edges ``-0.5`` and ``size - 0.5``; the shorter side is padded.
    """
    b = np.asarray(boxes, dtype=np.float64)
    side = np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    s = size / side
    ctr = 0.5 * (b[:, :2] + b[:, 2:])
    A = np.zeros((b.shape[0], 2, 3))
    A[:, 0, 0] = A[:, 1, 1] = s
    A[:, :, 2] = (size - 1) / 2.0 - s[:, None] * ctr
    return A


def apply_affine(points: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Apply affine maps ``A (N, 2, 3)`` to points ``(N, J, 2)`` -> ``(N, J, 2)``."""
    p = np.asarray(points, dtype=np.float64)
    return np.einsum("nij,nkj->nki", A[:, :, :2], p) + A[:, None, :, 2]


def invert_affine(A: np.ndarray) -> np.ndarray:
    """Inverses ``(N, 2, 3)`` of affine maps ``(N, 2, 3)``."""
    M = np.linalg.inv(A[:, :, :2])
    return np.concatenate([M, -np.einsum("nij,nj->ni", M, A[:, :, 2])[..., None]], 2)


def pixels_to_normalised(points: np.ndarray, size: int = 224) -> np.ndarray:
    """Crop pixels -> ``[-1, 1]`` (crop edges ``-0.5`` and ``size - 0.5`` map to -1 and 1)."""
    return (2.0 * np.asarray(points, dtype=np.float64) + 1.0) / size - 1.0


def crop_image(image: np.ndarray, A: np.ndarray, size: int = 224, box: Optional[np.ndarray] = None) -> np.ndarray:
    """Warp ``image (H, W, 3)`` uint8 with one affine ``A (2, 3)`` (image -> crop pixels) to
    ``(size, size, 3)`` uint8, bilinear (``torch.nn.functional.grid_sample``).

    Crop pixel ``(x, y)`` samples the image at ``A^-1 (x, y)`` (pixel centres at integers, as
    ``cv2.warpAffine``); outside the image is zero. With ``box`` ``[x0, y0, x1, y1]`` (image pixels)
    everything outside the box is zero too (the paper's "crop, resize the longest side, zero-pad").
    """
    img = np.asarray(image)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputError(f"image must be (H, W, 3), got {img.shape}")
    H, W = img.shape[:2]
    Ai = invert_affine(np.asarray(A, dtype=np.float64).reshape(1, 2, 3))[0]
    idx = np.arange(size, dtype=np.float64)
    src = np.einsum("ij,yxj->yxi", Ai[:, :2], np.stack(np.meshgrid(idx, idx), -1)) + Ai[:, 2]  # (S, S, 2) x, y
    grid = np.stack([2.0 * src[..., 0] / max(W - 1, 1) - 1.0, 2.0 * src[..., 1] / max(H - 1, 1) - 1.0], -1)
    x = torch.from_numpy(np.array(img, dtype=np.float32)).permute(2, 0, 1)[None]
    out = torch.nn.functional.grid_sample(x, torch.from_numpy(grid)[None].to(torch.float32), mode="bilinear",
                                          padding_mode="zeros", align_corners=True)
    crop = out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
    if box is not None:
        corners = apply_affine(np.asarray(box, dtype=np.float64).reshape(1, 2, 2), np.asarray(A)[None])[0]
        keep_x = (idx >= corners[0, 0] - 1e-6) & (idx <= corners[1, 0] + 1e-6)
        keep_y = (idx >= corners[0, 1] - 1e-6) & (idx <= corners[1, 1] + 1e-6)
        crop = crop * (keep_y[:, None, None] & keep_x[None, :, None]).astype(crop.dtype)
    return crop


def normalise_image(image: np.ndarray) -> Tensor:
    """``(H, W, 3)`` uint8 -> ``(3, H, W)`` float32 with mean 0.5 / std 0.5, i.e. in ``[-1, 1]``."""
    x = torch.tensor(np.asarray(image), dtype=torch.float32).permute(2, 0, 1) / 255.0
    return (x - 0.5) / 0.5
