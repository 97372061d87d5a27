"""Appearance of an ``ihmr synth`` sample: skin colours (a light-to-dark palette, a slightly
different tone per hand), procedural backgrounds (gradients, value noise, colour blobs, shapes),
light poses and tints, and the camera's look (exposure, blur, noise, JPEG). Colours in [0, 1], sRGB
unless named linear; images ``(S, S, 3)`` uint8.

Pillow (the ``render`` extra, optional) is imported inside the functions that draw."""

from __future__ import annotations

import colorsys
import io
import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "SKIN_SRGB",
    "srgb_to_linear",
    "skin",
    "value_noise",
    "random_color",
    "random_background",
    "light_pose",
    "tint",
    "photograph",
]

#: Realistic skin tones (sRGB, light to dark), interpolated per sample.
SKIN_SRGB = np.array([
    [255, 226, 204], [243, 204, 178], [232, 186, 152], [214, 160, 124], [190, 133, 97],
    [160, 106, 74], [132, 86, 60], [104, 67, 47], [84, 54, 40],
], dtype=np.float64) / 255.0


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """Linear RGB of sRGB colours (any shape, values in [0, 1])."""
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


def skin(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Two per-hand linear base colours ``(2, 3)`` (slightly different) and the tone in [0, 1]."""
    t = rng.beta(1.1, 1.3)
    x = t * (len(SKIN_SRGB) - 1)
    i = min(int(x), len(SKIN_SRGB) - 2)
    base = SKIN_SRGB[i] * (1 - (x - i)) + SKIN_SRGB[i + 1] * (x - i)
    base = base * np.array([1.0 + rng.normal(0, 0.025), 1.0, 1.0 + rng.normal(0, 0.035)])  # red / yellow cast
    base = np.clip(base * rng.uniform(0.93, 1.05), 0.02, 1.0)
    per_hand = np.stack([base * (1 + rng.normal(0, 0.025, 3)) * rng.uniform(0.96, 1.04) for _ in range(2)])
    return srgb_to_linear(np.clip(per_hand, 0.0, 1.0)), float(t)


def value_noise(rng: np.random.Generator, S: int, octaves: int = 4) -> np.ndarray:
    """Fractal value noise ``(S, S)`` in [0, 1] from bicubically upsampled random grids."""
    acc = np.zeros((S, S))
    amp, total = 1.0, 0.0
    cells = int(rng.integers(2, 5))
    for _ in range(octaves):
        g = rng.random((cells, cells)).astype(np.float32)
        up = np.asarray(Image.fromarray(g, mode="F").resize((S, S), Image.BICUBIC), dtype=np.float64)
        acc += amp * up
        total += amp
        amp *= 0.5
        cells *= 2
    acc /= total
    lo, hi = acc.min(), acc.max()
    return (acc - lo) / max(hi - lo, 1e-9)


def random_color(rng: np.random.Generator) -> np.ndarray:
    """A random sRGB colour ``(3,)`` (any hue, moderate saturation and value)."""
    h, s, v = rng.random(), rng.uniform(0.05, 0.8), rng.uniform(0.15, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def random_background(rng: np.random.Generator, S: int, skin_srgb: np.ndarray) -> np.ndarray:
    """A procedural background ``(S, S, 3)`` uint8: gradient / noise texture / blobs, plus shapes."""
    yy, xx = np.mgrid[0:S, 0:S] / max(S - 1, 1)
    kind = rng.choice(["linear", "radial", "noise", "blobs"], p=[0.25, 0.15, 0.35, 0.25])
    c0, c1 = random_color(rng), random_color(rng)
    if kind == "linear":
        a = rng.uniform(0, 2 * math.pi)
        t = (xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a)
        t = (t - t.min()) / max(np.ptp(t), 1e-9)
    elif kind == "radial":
        cx, cy = rng.uniform(0.1, 0.9, 2)
        t = np.clip(np.hypot(xx - cx, yy - cy) / rng.uniform(0.5, 1.2), 0, 1)
    elif kind == "noise":
        t = value_noise(rng, S, octaves=int(rng.integers(2, 6)))
    else:
        t = np.zeros((S, S))
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    if kind == "blobs" or rng.random() < 0.3:
        for _ in range(int(rng.integers(2, 8))):
            cx, cy = rng.uniform(-0.1, 1.1, 2)
            sx, sy = rng.uniform(0.05, 0.35, 2)
            w = np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))[..., None] * rng.uniform(0.4, 1.0)
            img = img * (1 - w) + random_color(rng)[None, None] * w
    if rng.random() < 0.5:  # a texture modulation
        img = img * (0.8 + 0.4 * value_noise(rng, S, octaves=3)[..., None])
    im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    n_shapes = int(rng.integers(0, 9)) if rng.random() < 0.7 else 0
    if n_shapes:
        draw = ImageDraw.Draw(im, "RGBA")
        for _ in range(n_shapes):
            # Now and then a skin-coloured distractor, otherwise any colour.
            col = skin_srgb * rng.uniform(0.8, 1.1) if rng.random() < 0.12 else random_color(rng)
            rgba = tuple(int(v) for v in np.clip(col * 255, 0, 255)) + (int(rng.integers(90, 256)),)
            x0, y0 = rng.uniform(-0.2, 1.0, 2) * S
            w, h = rng.uniform(0.05, 0.6, 2) * S
            shape = rng.integers(0, 4)
            if shape == 0:
                draw.ellipse([x0, y0, x0 + w, y0 + h], fill=rgba)
            elif shape == 1:
                draw.rectangle([x0, y0, x0 + w, y0 + h], fill=rgba)
            elif shape == 2:
                pts = [(float(x0 + rng.uniform(0, w)), float(y0 + rng.uniform(0, h))) for _ in range(int(rng.integers(3, 7)))]
                draw.polygon(pts, fill=rgba)
            else:
                draw.line([(float(x0), float(y0)), (float(x0 + w), float(y0 + h))], fill=rgba, width=int(rng.integers(1, max(2, S // 25))))
        if rng.random() < 0.5:
            im = im.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 2.5)) * S / 256))
    return np.asarray(im, dtype=np.uint8).copy()


def light_pose(direction_cam: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
    """Pose (4, 4) of a pyrender directional light shining along ``direction_cam`` (OpenCV camera
    frame; ``cam_to_world`` = the inverse of the OpenCV extrinsics): pyrender lights shine along
    their local -z."""
    d = direction_cam / np.linalg.norm(direction_cam)
    z = -d
    a = np.array([0.0, 1.0, 0.0]) if abs(z[1]) < 0.9 else np.array([1.0, 0.0, 0.0])
    x = np.cross(a, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    P = np.eye(4)
    P[:3, :3] = cam_to_world[:3, :3] @ np.stack([x, y, z], 1)
    P[:3, 3] = cam_to_world[:3, 3]
    return P


def tint(rng: np.random.Generator, amount: float) -> np.ndarray:
    """A colour-temperature-like tint around white."""
    w = rng.normal(0.0, amount)
    c = np.array([1.0 + w, 1.0, 1.0 - w]) * (1 + rng.normal(0, amount / 3, 3))
    return np.clip(c / c.max(), 0.3, 1.0)


def photograph(rng: np.random.Generator, rgba: np.ndarray, background: np.ndarray, quality: int) -> tuple[np.ndarray, bytes]:
    """The rendered hands ``rgba (S, S, 4)`` uint8 (premultiplied alpha) over ``background (S, S, 3)``
    uint8, with random exposure and brightness, sometimes blur and noise: the image ``(S, S, 3)``
    uint8 and its JPEG bytes (``quality`` 1-100)."""
    S = rgba.shape[0]
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    # The MSAA resolve mixes the hands with the (black, transparent) clear colour: premultiplied.
    img = rgba[..., :3].astype(np.float32) + (1.0 - alpha) * background.astype(np.float32)
    img = img * rng.uniform(0.9, 1.1) + rng.uniform(-10, 10)  # exposure / brightness
    img = np.clip(img, 0, 255).astype(np.uint8)
    pil = Image.fromarray(img)
    if rng.random() < 0.3:
        pil = pil.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.1)) * S / 256))
    img = np.asarray(pil, dtype=np.float32)
    if rng.random() < 0.5:
        img = img + rng.normal(0.0, rng.uniform(1.0, 5.0), img.shape)
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return img, buf.getvalue()
