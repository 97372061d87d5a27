"""Training augmentation of stage-I samples (reference_notes.md, "Stage-I network as released"):
horizontal flip that swaps the hands, scale 0.6-1.0, in-plane rotation, colour jitter, motion blur;
left-only images are mirrored to right hands.

A sample is a dict of numpy arrays for one crop (hand index 0 = right, MANO joint order, metres):

- ``image``: ``(S, S, 3)`` uint8 crop;
- ``j2d``: ``(2, 21, 2)`` crop pixels (pixel centres at integers, as :mod:`ihmr.data.interhand`);
- ``j3d``: ``(2, 21, 3)`` camera frame (x right, y down, z forward), metres;
- ``valid``: ``(2, 21)`` bool; ``present``: ``(2,)`` float (right present, left present);
- optional parameters ``beta (2, 10)``, ``phi (2, 3)``, ``theta (2, 45)``, ``tau (3,)``, ``param_valid
  (2,)``, with ``phi`` / ``tau`` in the camera frame.

Geometry is applied consistently to image, joints and parameters:

- flip: ``x -> S - 1 - x`` in the crop, ``X -> -X`` in 3D, the hands swap; a mirrored left hand is a
  right hand with :func:`~ihmr.geometry.rotations.mirror_axis_angle` parameters (and vice versa),
  ``tau -> (tau_x, -tau_y, -tau_z)`` (new left wrist - new right wrist = ``-M tau``).
- rotation by ``a`` and scale ``s`` about the crop centre: ``p' = c + s Rot(a) (p - c)`` in pixels; in
  3D the camera rolls about its optical axis, ``X' = Rz(a) X``, so ``phi' = log(Rz(a) R(phi))`` and
  ``tau' = Rz(a) tau`` (exact for the weak-perspective model ``uv = s (xy + t)``; the scale only
  changes the camera scale).

Randomness comes only from the ``numpy.random.Generator`` passed in (the trainer seeds one per
``(seed, epoch, index)``), so a run is reproducible for any number of workers or processes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ihmr.errors import InputError
from ihmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, mirror_axis_angle, rotation_z

__all__ = [
    "AugmentConfig",
    "flip_sample",
    "rotate_scale_sample",
    "color_jitter",
    "motion_blur",
    "augment_sample",
]


@dataclass
class AugmentConfig:
    """Augmentation switches (defaults: the release's recipe).

    Attributes:
        flip: probability of the hand-swapping horizontal flip for two-hand images.
        mirror_left_only: left-only images are always mirrored to right hands; right-only images
            are never flipped (single hands are always right hands, as the release).
        scale: range of the zoom factor (< 1 = the hands get smaller in the crop).
        rotation: in-plane rotation drawn uniformly from ``[-rotation, rotation]`` degrees.
        color: strength of the colour jitter (brightness, contrast, saturation, per-channel gain).
        blur: probability of a linear motion blur.
        blur_max: longest blur kernel, as a fraction of the crop side (0.03 = 7 px at 224).
    """

    flip: float = 0.5
    mirror_left_only: bool = True
    scale: tuple[float, float] = (0.6, 1.0)
    rotation: float = 30.0
    color: float = 0.2
    blur: float = 0.3
    blur_max: float = 0.03

    def check(self) -> "AugmentConfig":
        lo, hi = self.scale
        if not (0 < lo <= hi):
            raise InputError(f"augmentation scale range must satisfy 0 < lo <= hi, got {self.scale}")
        for name in ("flip", "blur"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise InputError(f"augmentation {name} probability must be in [0, 1], got {v}")
        if self.rotation < 0 or self.color < 0 or self.blur_max < 0:
            raise InputError("augmentation rotation, color and blur_max must be >= 0")
        return self


def _copy(sample: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in sample.items()}


def flip_sample(sample: dict[str, Any]) -> dict[str, Any]:
    """Mirror a sample horizontally and swap the hands (an involution: applying it twice gives the
    sample back)."""
    s = _copy(sample)
    S = s["image"].shape[1]
    s["image"] = np.ascontiguousarray(s["image"][:, ::-1])
    j2d = s["j2d"][::-1].copy()
    j2d[..., 0] = (S - 1) - j2d[..., 0]
    s["j2d"] = j2d
    j3d = s["j3d"][::-1].copy()
    j3d[..., 0] = -j3d[..., 0]
    s["j3d"] = j3d
    for k in ("valid", "present", "beta", "param_valid"):
        if k in s:
            s[k] = s[k][::-1].copy()
    for k in ("phi", "theta"):
        if k in s:
            s[k] = mirror_axis_angle(torch.from_numpy(np.ascontiguousarray(s[k][::-1]))).numpy()
    if "tau" in s:
        s["tau"] = s["tau"] * np.array([1.0, -1.0, -1.0], dtype=s["tau"].dtype)
    return s


def _warp(image: np.ndarray, M: np.ndarray) -> np.ndarray:
    """Warp ``(S, S, 3)`` uint8 with the pixel map ``p' = M[:, :2] p + M[:, 2]`` (bilinear, zeros
    outside)."""
    S_h, S_w = image.shape[:2]
    A = np.vstack([M, [0.0, 0.0, 1.0]])
    Ai = np.linalg.inv(A)[:2]
    ys, xs = np.meshgrid(np.arange(S_h, dtype=np.float64), np.arange(S_w, dtype=np.float64), indexing="ij")
    src = np.stack([xs, ys], -1) @ Ai[:, :2].T + Ai[:, 2]
    grid = np.stack([2.0 * src[..., 0] / max(S_w - 1, 1) - 1.0, 2.0 * src[..., 1] / max(S_h - 1, 1) - 1.0], -1)
    x = torch.from_numpy(np.asarray(image, dtype=np.float32)).permute(2, 0, 1)[None]
    out = F.grid_sample(x, torch.from_numpy(grid).to(torch.float32)[None], mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def rotate_scale_sample(sample: dict[str, Any], angle_deg: float, scale: float) -> dict[str, Any]:
    """Rotate the crop by ``angle_deg`` (positive = clockwise on screen, i.e. from +x towards +y) and
    zoom by ``scale`` about its centre; joints and parameters follow (see the module docstring)."""
    if not scale > 0:
        raise InputError(f"scale must be > 0, got {scale}")
    s = _copy(sample)
    S = s["image"].shape[0]
    a = math.radians(angle_deg)
    Rz = rotation_z(a)
    c = np.full(2, (S - 1) / 2.0)
    L = scale * Rz[:2, :2]
    M = np.concatenate([L, (c - L @ c)[:, None]], 1)  # (2, 3) crop pixels -> crop pixels
    if angle_deg != 0.0 or scale != 1.0:
        s["image"] = _warp(s["image"], M)
    s["j2d"] = s["j2d"] @ L.T + M[:, 2]
    s["j3d"] = s["j3d"] @ Rz.T
    if "phi" in s:
        R = axis_angle_to_matrix(torch.from_numpy(np.asarray(s["phi"], dtype=np.float64)))
        s["phi"] = matrix_to_axis_angle(torch.from_numpy(Rz) @ R).numpy().astype(sample["phi"].dtype)
    if "tau" in s:
        s["tau"] = (Rz @ s["tau"].astype(np.float64)).astype(sample["tau"].dtype)
    return s


def color_jitter(image: np.ndarray, rng: np.random.Generator, strength: float = 0.2) -> np.ndarray:
    """Random brightness, contrast, saturation and per-channel gain (each ``1 +- strength``) of an
    ``(S, S, 3)`` uint8 image; black padding stays black under brightness/gain."""
    if strength <= 0:
        return image
    x = image.astype(np.float32) / 255.0
    u = lambda: 1.0 + rng.uniform(-strength, strength)  # noqa: E731
    b, c, sat = u(), u(), u()
    gain = 1.0 + rng.uniform(-strength / 2, strength / 2, size=3)
    x = x * b * gain
    m = x.mean()
    x = (x - m) * c + m
    grey = x.mean(-1, keepdims=True)
    x = (x - grey) * sat + grey
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def motion_blur(image: np.ndarray, length: int, angle_deg: float) -> np.ndarray:
    """Linear motion blur: average along a line of ``length`` pixels at ``angle_deg`` (``(S, S, 3)``
    uint8 in and out; ``length <= 1`` returns the image)."""
    if length <= 1:
        return image
    k = length if length % 2 else length + 1
    ker = np.zeros((k, k), dtype=np.float32)
    a = math.radians(angle_deg)
    c = (k - 1) / 2.0
    for t in np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, 4 * length):
        ker[int(round(c + t * math.sin(a))), int(round(c + t * math.cos(a)))] = 1.0
    ker /= ker.sum()
    x = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1)[:, None]  # (3, 1, S, S)
    xp = F.pad(x, (k // 2,) * 4, mode="replicate")
    y = F.conv2d(xp, torch.from_numpy(ker)[None, None])
    return y[:, 0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()


def augment_sample(sample: dict[str, Any], rng: np.random.Generator, cfg: Optional[AugmentConfig] = None) -> dict[str, Any]:
    """The training recipe: flip (forced for left-only images), rotation + scale, colour jitter,
    motion blur. Draws a fixed number of random values in a fixed order."""
    cfg = cfg or AugmentConfig()
    present = np.asarray(sample["present"]) > 0
    u_flip, u_blur = rng.uniform(), rng.uniform()
    scale = rng.uniform(*cfg.scale)
    angle = rng.uniform(-cfg.rotation, cfg.rotation)
    blur_len = rng.uniform(0.0, 1.0)
    blur_angle = rng.uniform(0.0, 180.0)
    jitter_seed = rng.integers(0, 2**31 - 1)
    if present[0] and present[1]:
        flip = u_flip < cfg.flip
    else:
        flip = bool(cfg.mirror_left_only and present[1] and not present[0])
        if not cfg.mirror_left_only:
            flip = u_flip < cfg.flip
    s = flip_sample(sample) if flip else _copy(sample)
    s = rotate_scale_sample(s, angle, scale)
    s["image"] = color_jitter(s["image"], np.random.default_rng(int(jitter_seed)), cfg.color)
    if u_blur < cfg.blur:
        S = s["image"].shape[0]
        s["image"] = motion_blur(s["image"], int(round(blur_len * cfg.blur_max * S)), blur_angle)
    s["flipped"] = bool(flip)
    return s
