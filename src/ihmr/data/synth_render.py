"""Rendered synthetic training data in the official InterHand2.6M format (``ihmr synth``).

Each sample is a pair of interacting hands from :func:`ihmr.data.synthetic.make_synthetic` (ground
truth in contact), placed in a fixed world frame (millimetres) and seen by its own random pinhole
camera (field of view 25-55 deg, distance so the pair fills 65-95 % of the frame, principal point
jitter, roll), rendered with skin-like shading (per-sample tone from a light-to-dark palette, a
slightly different tone per hand, lighter palms), forearms (random wrist bend and girth, half of
them in sleeves), random key/fill/ambient light, a procedural background (gradients, value noise,
colour blobs, shapes) and sometimes blur and noise. Files under ``out``::

    images/<split>/Capture0/synth/cam<camera>/image<idx:05d>.jpg
    annotations/<split>/InterHand2.6M_<split>_data.json          COCO-style images + annotations
    annotations/<split>/InterHand2.6M_<split>_camera.json        capture -> campos/camrot/focal/princpt -> camera
    annotations/<split>/InterHand2.6M_<split>_joint_3d.json      capture -> frame -> world_coord (42x3 mm), ...
    annotations/<split>/InterHand2.6M_<split>_MANO_NeuralAnnot.json  capture -> frame -> right/left pose/shape/trans
    annotations/<split>/ihmr_params.json                         capture -> frame -> exact ihmr parameters
    annotations/<split>/synth_manifest.json                      seed, size, counts, conventions
    annotations/<split>/.parts/<idx>.json                        per-sample records (for --resume)

Conventions (as InterHand2.6M): camera coordinates ``X_cam = camrot @ (X_world - campos)`` in mm,
pixels ``u = focal * X_cam[:2] / X_cam[2] + princpt``; 42 joints, right hand 0-20 and left 21-41, each
in InterHand order (tip to base, wrist last). One capture (``"0"``), one camera per image (camera id
``str(400000 + idx)``), ``frame_idx = idx``.

World frame: the hand model's frame (right wrist at the origin, metres) scaled to mm and translated by
``origin_mm`` (drawn per sample, so the pair's joint centroid lies within 100 mm of the world origin);
no rotation, so the global orientations ``phi`` hold in the world frame too.

``_MANO_NeuralAnnot.json`` shape: ``pose`` 48 = ``phi`` (3) + finger pose (45), ``shape`` = ``beta``,
``trans`` (metres) such that a MANO-style layer (which rotates about the rest wrist ``J0(beta)``)
puts the wrist at its world position: ``trans = wrist_world_m - J0(beta)``. The finger pose is
relative to the model's PCA mean pose when it has one (official MANO pickles: the
``flat_hand_mean=False`` convention of the real annotations) and to the flat hand otherwise (the
packaged ``open`` model). These parameters are exact for the hand model named in
``ihmr_params.json`` (``model``; the ``open`` model is not MANO: other vertices, same joints), which
also stores the exact ``beta, phi, theta, tau`` and ``origin_mm``:
``world_mm = 1000 * TwoHands(beta, phi, theta, tau).joints + origin_mm`` (before InterHand ordering).

Determinism: sample ``idx`` depends only on ``(seed, idx)``: its pose comes from pose chunk
``idx // chunk`` (``make_synthetic(chunk, seed=f(seed, idx // chunk))``), everything else (camera,
skin, light, background, blur, noise) from ``numpy.random.default_rng([seed, idx])``. So the output
is identical for any number of workers, and a run with a larger ``n`` extends a smaller one.
Meshes get distinct node poses so pyrender's draw order (and so every pixel where meshes intersect)
does not depend on memory addresses.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ihmr.data.synthetic import CONTACTS, make_synthetic
from ihmr.errors import InputError
from ihmr.geometry.rotations import axis_angle_to_matrix, rotation_z
from ihmr.handmodel.two_hands import TwoHands
from ihmr.io.files import atomic_write
from ihmr.joint_order import from_two_hand
from ihmr.viz.render import _CV_TO_GL, _pyrender, look_at

__all__ = [
    "SynthConfig",
    "SampleRenderer",
    "generate",
    "pose_chunk",
    "image_relpath",
    "annotation_paths",
    "IhmrParams",
    "read_ihmr_params",
    "POSE_CHUNK",
    "CAPTURE",
    "SEQ_NAME",
]

#: Samples per pose chunk (part of the determinism contract: changing it changes the poses).
POSE_CHUNK = 16
CAPTURE = 0
SEQ_NAME = "synth"
CAMERA_BASE = 400000
FORMAT_VERSION = 1

#: Realistic skin tones (sRGB, light to dark), interpolated per sample.
_SKIN_SRGB = np.array([
    [255, 226, 204], [243, 204, 178], [232, 186, 152], [214, 160, 124], [190, 133, 97],
    [160, 106, 74], [132, 86, 60], [104, 67, 47], [84, 54, 40],
], dtype=np.float64) / 255.0


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    c = np.asarray(c, dtype=np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


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


def image_relpath(idx: int) -> str:
    """``file_name`` of sample ``idx`` relative to ``images/<split>/`` (as in InterHand2.6M)."""
    return f"Capture{CAPTURE}/{SEQ_NAME}/cam{CAMERA_BASE + idx}/image{idx:05d}.jpg"


def annotation_paths(out: str | Path, split: str) -> dict[str, Path]:
    """The annotation files written for a split."""
    a = Path(out) / "annotations" / split
    stem = f"InterHand2.6M_{split}"
    return dict(
        data=a / f"{stem}_data.json", camera=a / f"{stem}_camera.json", joint_3d=a / f"{stem}_joint_3d.json",
        mano=a / f"{stem}_MANO_NeuralAnnot.json", ihmr=a / "ihmr_params.json", manifest=a / "synth_manifest.json",
        parts=a / ".parts",
    )


# --------------------------------------------------------------------------------------------------
# Poses


@dataclass
class IhmrParams:
    """Exact parameters of ``ihmr_params.json`` for ``N`` samples (zeros where ``valid`` is False).

    Attributes:
        beta ``(N, 2, 10)``, phi ``(N, 2, 3)``, theta ``(N, 2, 45)``, tau ``(N, 3)`` (metres),
        origin ``(N, 3)`` metres (``world = hand frame + origin``, no rotation), valid ``(N,)`` bool
        (a record exists), models: the hand-model names of the records found.
    """

    beta: np.ndarray
    phi: np.ndarray
    theta: np.ndarray
    tau: np.ndarray
    origin: np.ndarray
    valid: np.ndarray
    models: set


def read_ihmr_params(path, capture: np.ndarray, frame_idx: np.ndarray) -> IhmrParams:
    """The records of ``ihmr_params.json`` (capture -> frame -> record) for samples ``(capture,
    frame_idx)`` (``(N,)`` each); a missing record leaves its sample invalid.

    Raises:
        InputError: unreadable JSON or a malformed record (naming the file and the sample).
    """
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not readable JSON ({e})") from e
    N = len(capture)
    out = IhmrParams(np.zeros((N, 2, 10)), np.zeros((N, 2, 3)), np.zeros((N, 2, 45)), np.zeros((N, 3)),
                     np.zeros((N, 3)), np.zeros(N, bool), set())
    for i, (c, f) in enumerate(zip(capture, frame_idx)):
        rec = raw.get(str(int(c)), {}).get(str(int(f))) if isinstance(raw, dict) else None
        if not isinstance(rec, dict):
            continue
        out.models.add(str(rec.get("model")))
        try:
            for k, shape in (("beta", (2, 10)), ("phi", (2, 3)), ("theta", (2, 45)), ("tau", (3,))):
                getattr(out, k)[i] = np.asarray(rec[k], dtype=np.float64).reshape(shape)
            if "origin_mm" in rec:
                out.origin[i] = np.asarray(rec["origin_mm"], dtype=np.float64).reshape(3) * 1e-3
        except (KeyError, ValueError, TypeError) as e:
            raise InputError(f"{path}: bad record for capture {c} frame {f} ({e})") from e
        out.valid[i] = True
    return out


def _chunk_seed(seed: int, chunk: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(chunk), 0x5EED]).generate_state(1)[0])


def pose_chunk(seed: int, chunk: int, size: int, hands) -> dict[str, np.ndarray]:
    """Ground truth of pose chunk ``chunk``: ``beta (C, 2, 10), phi (C, 2, 3), theta (C, 2, 45),
    tau (C, 3)`` float64, ``contact (C,)`` names, and the posed model (model frame, metres):
    ``vertices (C, 2, V, 3)``, ``joints (C, 2, 21, 3)`` (MANO order) and ``rest_wrist (C, 2, 3)`` = the
    wrist ``J0(beta)`` of the unposed hand. Single-threaded torch, so bitwise reproducible."""
    import torch


    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        s = make_synthetic(size, seed=_chunk_seed(seed, chunk), hands=hands, progress=False)
        g = s.gt
        with torch.no_grad():
            out = hands(g["beta"], g["phi"], g["theta"], g["tau"])
            z = torch.zeros(size, 3, dtype=g["beta"].dtype)
            zp = torch.zeros(size, 45, dtype=g["beta"].dtype)
            rest = torch.stack([hands.right(g["beta"][:, 0], z, zp).joints[:, 0],
                                hands.left(g["beta"][:, 1], z, zp).joints[:, 0]], 1)
    finally:
        torch.set_num_threads(threads)
    gt = {k: v.numpy().copy() for k, v in g.items()}
    gt["contact"] = np.array([CONTACTS[int(k)] for k in s.contact])
    gt["vertices"] = out.vertices.numpy()
    gt["joints"] = out.joints.numpy()
    gt["rest_wrist"] = rest.numpy()
    return gt


# --------------------------------------------------------------------------------------------------
# Camera


def _project(points_m: np.ndarray, R: np.ndarray, eye_m: np.ndarray, f: np.ndarray, c: np.ndarray):
    X = (points_m - eye_m) @ R.T
    return X[:, :2] / X[:, 2:3] * f + c, X[:, 2]


def _camera(rng: np.random.Generator, verts_m: np.ndarray, target_m: np.ndarray, size: int, away: Optional[np.ndarray] = None):
    """A random camera seeing every vertex: ``(R (3, 3), eye_m (3,), focal (2,), princpt (2,))``.

    ``away``: a unit direction (the forearms' mean) the camera should look along rather than against,
    as when the arms come from a body facing the camera."""
    S = float(size)
    fov = math.radians(rng.uniform(25.0, 55.0))
    fx = 0.5 * S / math.tan(0.5 * fov)
    focal = np.array([fx, fx * (1.0 + rng.normal(0.0, 0.002))])
    princpt = 0.5 * S + rng.uniform(-0.05, 0.05, 2) * S
    for _ in range(30):
        az = rng.uniform(0.0, 2 * math.pi)
        el = math.radians(rng.uniform(-45.0, 65.0))
        view_from = np.array([math.cos(el) * math.sin(az), -math.sin(el), -math.cos(el) * math.cos(az)])
        if away is None or float(view_from @ away) <= -0.2:
            break
    look = target_m + rng.normal(0.0, 0.01, 3)
    frac = rng.uniform(0.65, 0.95)  # bounding radius as a fraction of half the image
    roll = rng.normal(0.0, math.radians(12.0))
    r = float(np.linalg.norm(verts_m - look, axis=1).max())
    dist = max(r * fx / (frac * 0.5 * S), r + 0.12)
    margin = 0.03 * S
    for _ in range(60):
        eye = look + dist * view_from
        E = look_at(eye, look, np.array([0.0, -1.0, 0.0]))
        R = rotation_z(roll) @ E[:3, :3]
        uv, z = _project(verts_m, R, eye, focal, princpt)
        if z.min() > 0.05 and uv.min() >= margin and uv.max() <= S - margin:
            return R, eye, focal, princpt
        dist *= 1.07
    raise RuntimeError("could not frame the hands (internal error)")  # pragma: no cover


# --------------------------------------------------------------------------------------------------
# Appearance


def _skin(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Two per-hand linear base colours ``(2, 3)`` (slightly different) and the tone in [0, 1]."""
    t = rng.beta(1.1, 1.3)
    x = t * (len(_SKIN_SRGB) - 1)
    i = min(int(x), len(_SKIN_SRGB) - 2)
    base = _SKIN_SRGB[i] * (1 - (x - i)) + _SKIN_SRGB[i + 1] * (x - i)
    base = base * np.array([1.0 + rng.normal(0, 0.025), 1.0, 1.0 + rng.normal(0, 0.035)])  # red / yellow cast
    base = np.clip(base * rng.uniform(0.93, 1.05), 0.02, 1.0)
    per_hand = np.stack([base * (1 + rng.normal(0, 0.025, 3)) * rng.uniform(0.96, 1.04) for _ in range(2)])
    return _srgb_to_linear(np.clip(per_hand, 0.0, 1.0)), float(t)


def _value_noise(rng: np.random.Generator, S: int, octaves: int = 4) -> np.ndarray:
    """Fractal value noise ``(S, S)`` in [0, 1] from bilinearly upsampled random grids."""
    from PIL import Image

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


def _random_color(rng: np.random.Generator) -> np.ndarray:
    import colorsys

    h, s, v = rng.random(), rng.uniform(0.05, 0.8), rng.uniform(0.15, 0.95)
    return np.array(colorsys.hsv_to_rgb(h, s, v))


def _background(rng: np.random.Generator, S: int, skin_srgb: np.ndarray) -> np.ndarray:
    """A procedural background ``(S, S, 3)`` uint8: gradient / noise texture / blobs, plus shapes."""
    from PIL import Image, ImageDraw, ImageFilter

    yy, xx = np.mgrid[0:S, 0:S] / max(S - 1, 1)
    kind = rng.choice(["linear", "radial", "noise", "blobs"], p=[0.25, 0.15, 0.35, 0.25])
    c0, c1 = _random_color(rng), _random_color(rng)
    if kind == "linear":
        a = rng.uniform(0, 2 * math.pi)
        t = (xx - 0.5) * math.cos(a) + (yy - 0.5) * math.sin(a)
        t = (t - t.min()) / max(np.ptp(t), 1e-9)
    elif kind == "radial":
        cx, cy = rng.uniform(0.1, 0.9, 2)
        t = np.clip(np.hypot(xx - cx, yy - cy) / rng.uniform(0.5, 1.2), 0, 1)
    elif kind == "noise":
        t = _value_noise(rng, S, octaves=int(rng.integers(2, 6)))
    else:
        t = np.zeros((S, S))
    img = c0[None, None] * (1 - t[..., None]) + c1[None, None] * t[..., None]
    if kind == "blobs" or rng.random() < 0.3:
        for _ in range(int(rng.integers(2, 8))):
            cx, cy = rng.uniform(-0.1, 1.1, 2)
            sx, sy = rng.uniform(0.05, 0.35, 2)
            w = np.exp(-0.5 * (((xx - cx) / sx) ** 2 + ((yy - cy) / sy) ** 2))[..., None] * rng.uniform(0.4, 1.0)
            img = img * (1 - w) + _random_color(rng)[None, None] * w
    if rng.random() < 0.5:  # a texture modulation
        img = img * (0.8 + 0.4 * _value_noise(rng, S, octaves=3)[..., None])
    im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
    n_shapes = int(rng.integers(0, 9)) if rng.random() < 0.7 else 0
    if n_shapes:
        draw = ImageDraw.Draw(im, "RGBA")
        for _ in range(n_shapes):
            # Now and then a skin-coloured distractor, otherwise any colour.
            col = skin_srgb * rng.uniform(0.8, 1.1) if rng.random() < 0.12 else _random_color(rng)
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


def _light_pose(direction_cam: np.ndarray, cam_to_world: np.ndarray) -> np.ndarray:
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


def _tint(rng: np.random.Generator, amount: float) -> np.ndarray:
    """A colour-temperature-like tint around white."""
    w = rng.normal(0.0, amount)
    c = np.array([1.0 + w, 1.0, 1.0 - w]) * (1 + rng.normal(0, amount / 3, 3))
    return np.clip(c / c.max(), 0.3, 1.0)


# --------------------------------------------------------------------------------------------------
# Forearms


#: Forearms thicken over this length from the wrist (m), then keep their girth.
_ARM_RAMP = 0.2


def _arm_radii(t: np.ndarray, r0: tuple[float, float], growth: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    f = np.clip(t / _ARM_RAMP, 0.0, 1.0)
    return r0[0] * (1 + growth[0] * f), r0[1] * (1 + growth[1] * f)


def _tube(start: np.ndarray, a: np.ndarray, u: np.ndarray, v: np.ndarray, length: float, r0: tuple[float, float],
          growth: tuple[float, float], segs: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """A closed elliptic tube along ``a`` from ``start``: semi-axes ``r0`` along ``u``, ``v`` growing by
    ``growth`` (relative) over the first :data:`_ARM_RAMP` metres. ``(vertices, faces)``, outward."""
    ang = np.linspace(0.0, 2 * np.pi, segs, endpoint=False)
    ts = np.unique(np.clip(np.array([0.0, 0.03, 0.07, 0.12, 0.17, _ARM_RAMP, length]), 0.0, length))
    ru, rv = _arm_radii(ts, r0, growth)
    ring = (start[None, None] + ts[:, None, None] * a
            + (ru[:, None, None] * np.cos(ang)[None, :, None]) * u + (rv[:, None, None] * np.sin(ang)[None, :, None]) * v)
    rings = len(ts) - 1
    verts = [ring.reshape(-1, 3)]
    faces = []
    for i in range(rings):
        for k in range(segs):
            a0, a1 = i * segs + k, i * segs + (k + 1) % segs
            b0, b1 = a0 + segs, a1 + segs
            faces += [[a0, b0, a1], [a1, b0, b1]]
    count = ring.shape[0] * segs
    for end, sign in ((0, -1), (rings, 1)):  # caps with their own vertices (flat normals)
        verts.append(np.concatenate([ring[end].mean(0, keepdims=True), ring[end]]))
        for k in range(segs):
            f = [count, count + 1 + k, count + 1 + (k + 1) % segs]
            faces.append(f if sign < 0 else f[::-1])
        count += segs + 1
    V = np.concatenate(verts)
    F = np.asarray(faces, dtype=np.int64)
    if np.dot(np.cross(u, v), a) > 0:  # the winding above is inward for a right-handed (u, v, a)
        F = F[:, ::-1]
    return V, F


def _inside_tube(points: np.ndarray, start: np.ndarray, a: np.ndarray, u: np.ndarray, v: np.ndarray, length: float,
                 r0: tuple[float, float], growth: tuple[float, float], pad: float) -> np.ndarray:
    d = points - start
    t = d @ a
    ru, rv = _arm_radii(t, r0, growth)
    return (t > -pad) & (t < length + pad) & (((d @ u) / (ru + pad)) ** 2 + ((d @ v) / (rv + pad)) ** 2 < 1.0)


def _forearms(rng: np.random.Generator, V: np.ndarray, J: np.ndarray, ring: np.ndarray) -> list[dict]:
    """Forearms continuing each wrist (random wrist bend, length, optional sleeve), dropped where they
    would pass through the other hand, the hand's own fingers or the other forearm. World metres;
    ``ring``: indices of the vertices around the wrist opening."""
    import torch


    arms: list[dict] = []
    for h in range(2):
        w = J[h, 0]
        a0 = w - J[h, 4]  # middle-finger base -> wrist
        a0 /= np.linalg.norm(a0)
        lat = J[h, 1] - J[h, 7]  # index base - pinky base
        lat -= (lat @ a0) * a0
        lat /= np.linalg.norm(lat)
        tries = 0
        while tries < 8:
            tries += 1
            nrm = np.cross(a0, lat)
            rot = axis_angle_to_matrix(torch.tensor(lat * rng.normal(0, 0.35) + nrm * rng.normal(0, 0.2))).numpy()
            a = rot @ a0
            u = lat - (lat @ a) * a
            u /= np.linalg.norm(u)
            v = np.cross(a, u)
            wr = V[h][ring]
            s_max = float(((wr - w) @ a).max())
            pu, pv = np.abs((wr - w) @ u), np.abs((wr - w) @ v)
            r0 = (max(float(pu.max()) * 0.93, 0.014), max(float(pv.max()) * 0.9, 0.009))
            growth = (rng.uniform(0.1, 0.3), rng.uniform(0.35, 0.75))
            start = w + (s_max - 0.014) * a
            length = rng.uniform(0.6, 0.85)
            # The other hand (with room for a sleeve), and this hand's fingers curled back past the wrist.
            if _inside_tube(V[1 - h], start, a, u, v, length, r0, growth, 0.006).any():
                continue
            own = V[h][(V[h] - start) @ a > 0.02]
            if own.size and _inside_tube(own, start, a, u, v, length, r0, growth, 0.002).any():
                continue
            ok = True
            for b in arms:  # the other forearm: sample its axis and surface roughly
                axis = b["start"][None] + np.linspace(0, b["length"], 24)[:, None] * b["a"]
                if _inside_tube(axis, start, a, u, v, length, r0, growth, max(b["r0"]) * 1.3).any():
                    ok = False
            if not ok:
                continue
            sleeve = rng.uniform(0.03, 0.12) if rng.random() < 0.5 else None
            arms.append(dict(hand=h, start=start, a=a, u=u, v=v, length=length, r0=r0, growth=growth, sleeve=sleeve))
            break
    return arms


def _arm_sees_camera(arm: dict, eye: np.ndarray, look: np.ndarray) -> bool:
    """Keep a forearm only if it does not point at the camera nor pass near it."""
    view = (look - eye) / np.linalg.norm(look - eye)
    if float(arm["a"] @ view) < -0.25:
        return False
    near = _inside_tube(eye[None], arm["start"], arm["a"], arm["u"], arm["v"], arm["length"] + 0.05, arm["r0"], arm["growth"], 0.05)
    return not bool(near.any())


def _arm_meshes(arm: dict, sleeve_pad: float = 1.12) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Skin part and (optional) sleeve part of a forearm: ``[(vertices, faces, "skin" | "sleeve")]``."""
    L, r0, g = arm["length"], arm["r0"], arm["growth"]
    if arm["sleeve"] is None:
        V, F = _tube(arm["start"], arm["a"], arm["u"], arm["v"], L, r0, g)
        return [(V, F, "skin")]
    cut = min(float(arm["sleeve"]) + 0.014, L * 0.8)
    Vs, Fs = _tube(arm["start"], arm["a"], arm["u"], arm["v"], cut + 0.01, r0, g)
    ru, rv = _arm_radii(np.array(cut), r0, g)
    # The sleeve: a little wider than the arm where it starts, then the arm's own growth.
    r1 = (float(ru) * sleeve_pad, float(rv) * sleeve_pad)
    f = min(cut / _ARM_RAMP, 1.0)
    g1 = ((1 + g[0]) / (1 + g[0] * f) - 1, (1 + g[1]) / (1 + g[1] * f) - 1)
    Vc, Fc = _tube(arm["start"] + cut * arm["a"], arm["a"], arm["u"], arm["v"], L - cut, r1, g1)
    return [(Vs, Fs, "skin"), (Vc, Fc, "sleeve")]


# --------------------------------------------------------------------------------------------------
# Rendering one sample


@dataclass
class RenderedSample:
    """One sample: ``image (S, S, 3)`` uint8, the JPEG bytes written, the per-sample ``record`` (what
    the annotation files hold for it) and, with ``buffers=True``, hands-only buffers (forearms left
    out): ``hand_label (S, S)`` int8 (-1 empty, 0 right, 1 left) and ``hand_depth (S, S)`` float32
    (metres along the camera z, 0 where empty)."""

    image: np.ndarray
    record: dict
    jpeg: bytes = b""
    hand_label: Optional[np.ndarray] = None
    hand_depth: Optional[np.ndarray] = None
    extra: dict = field(default_factory=dict)


def _flt(x: Any, nd: Optional[int] = None) -> Any:
    """Nested lists of Python floats (optionally rounded) from an array."""
    a = np.asarray(x, dtype=np.float64)
    if nd is not None:
        a = np.round(a, nd)
    return a.tolist()


class SampleRenderer:
    """Renders samples; one per process (it owns a hand model and an offscreen GL context)."""

    def __init__(self, size: int = 256, model: str = "open", quality: int = 92) -> None:
        import torch


        self.pyrender = _pyrender()  # loads torch's triton before Mesa (see ihmr.viz.render)
        self.size = int(size)
        self.quality = int(quality)
        self.hands = TwoHands(model, dtype=torch.float64)
        self.faces = self.hands.faces.numpy()
        self.model_name = self.hands.model_name
        self._palm, self._ring = self._rest_features()
        self._renderer = None
        self._chunk_cache: dict = {}

    def _rest_features(self) -> tuple[np.ndarray, np.ndarray]:
        """From the flat rest hand: per-vertex palm-side weight in [0, 1] (rest pose: back +y, palm
        -y) and the indices of the vertices around the wrist opening (the last 12 mm along the
        middle-finger-base -> wrist direction)."""
        import torch
        import trimesh

        z = torch.zeros
        out = self.hands.right(z(1, 10, dtype=torch.float64), z(1, 3, dtype=torch.float64), z(1, 45, dtype=torch.float64))
        v, j = out.vertices[0].numpy(), out.joints[0].numpy()
        tm = trimesh.Trimesh(v, self.faces[0], process=False)
        ny = np.asarray(tm.vertex_normals)[:, 1]
        palm = np.clip((-ny + 0.2) / 0.8, 0.0, 1.0) ** 1.5
        a = (j[0] - j[4]) / np.linalg.norm(j[0] - j[4])
        s = (v - j[0]) @ a
        return palm, np.nonzero(s > s.max() - 0.012)[0]

    def renderer(self):
        if self._renderer is None:
            self._renderer = self.pyrender.OffscreenRenderer(self.size, self.size)
        return self._renderer

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.delete()
            self._renderer = None

    def gt(self, seed: int, idx: int, chunk: int) -> dict[str, np.ndarray]:
        """Ground truth of sample ``idx`` (its pose chunk is cached)."""
        c = idx // chunk
        key = (seed, c, chunk)
        if key not in self._chunk_cache:
            self._chunk_cache.clear()
            self._chunk_cache[key] = pose_chunk(seed, c, chunk, self.hands)
        g = self._chunk_cache[key]
        j = idx % chunk
        return {k: v[j] for k, v in g.items()}

    def render(self, seed: int, idx: int, chunk: int = POSE_CHUNK, buffers: bool = False) -> RenderedSample:
        """Render sample ``idx`` of ``seed`` and build its annotation record (``buffers``: also the
        hands-only label and depth maps, one more render pass)."""
        import trimesh
        from PIL import Image, ImageFilter


        pyrender = self.pyrender
        S = self.size
        gt = self.gt(seed, idx, chunk)
        rng = np.random.default_rng([int(seed), int(idx)])
        V = gt["vertices"]  # (2, V, 3) model frame, metres
        J = gt["joints"]  # (2, 21, 3) MANO order
        centre = J.reshape(-1, 3).mean(0)
        target_m = rng.uniform(-0.1, 0.1, 3)
        origin_m = target_m - centre
        Vw = V + origin_m
        Jw = J + origin_m
        # Forearms (most samples) first: the camera then looks along them rather than against them.
        arms = _forearms(rng, Vw, Jw, self._ring) if rng.random() < 0.95 else []
        away = None
        if arms:
            m = np.mean([arm["a"] for arm in arms], 0)
            away = m / np.linalg.norm(m) if np.linalg.norm(m) > 0.3 else None
        R, eye, focal, princpt = _camera(rng, Vw.reshape(-1, 3), target_m, S, away)
        arms = [arm for arm in arms if _arm_sees_camera(arm, eye, target_m)]

        # Appearance.
        skin_lin, tone = _skin(rng)
        skin_srgb = np.clip(skin_lin.mean(0), 0, 1) ** (1 / 2.4)
        background = _background(rng, S, skin_srgb)
        E = np.eye(4)
        E[:3, :3] = R
        E[:3, 3] = -R @ eye
        cv_to_world = np.linalg.inv(E)
        cam_pose = cv_to_world @ _CV_TO_GL
        ambient = rng.uniform(0.1, 0.4) * _tint(rng, 0.05)
        scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=ambient)
        palm_gain = rng.uniform(1.03, 1.15)
        hand_nodes = []
        roughness = rng.uniform(0.45, 0.8, 2)
        view_dir = (target_m - eye) / np.linalg.norm(target_m - eye)
        count = [0]

        def add(vertices: np.ndarray, faces: np.ndarray, mat, colors: Optional[np.ndarray] = None):
            # pyrender draws opaque nodes sorted by the distance of their pose from the camera and
            # breaks ties by set order (memory addresses): meshes that intersect (hand and forearm)
            # then share depth values and the winner changes from run to run. Distinct poses (the
            # vertices compensate) make the draw order, and so the pixels, deterministic.
            t = eye + view_dir * (1.0 + 1e-3 * count[0])
            count[0] += 1
            tm = trimesh.Trimesh(vertices - t, faces, process=False)
            if colors is not None:
                tm.visual.vertex_colors = colors
            pose = np.eye(4)
            pose[:3, 3] = t
            return scene.add(pyrender.Mesh.from_trimesh(tm, material=mat, smooth=True), pose=pose)

        for h in range(2):
            w = self._palm[:, None]
            mult = (1 - w) * np.array([0.93, 0.93, 0.95]) + w * palm_gain * np.array([1.0, 0.97, 0.95])
            mult = mult / mult.max()
            colors = np.concatenate([np.round(mult * 255), np.full((len(mult), 1), 255)], 1).astype(np.uint8)
            mat = pyrender.MetallicRoughnessMaterial(
                baseColorFactor=[*skin_lin[h], 1.0], metallicFactor=0.0, roughnessFactor=float(roughness[h]),
            )
            hand_nodes.append(add(Vw[h], self.faces[h], mat, colors))
        # Forearm skin a touch darker than the back of the hand; sometimes sleeves.
        sleeve_lin = _srgb_to_linear(_random_color(rng))
        for arm in arms:
            for av, af, kind in _arm_meshes(arm):
                if kind == "skin":
                    mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=[*(skin_lin[arm["hand"]] * 0.93), 1.0],
                                                             metallicFactor=0.0, roughnessFactor=float(roughness[arm["hand"]]))
                else:
                    mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=[*sleeve_lin, 1.0], metallicFactor=0.0, roughnessFactor=0.95)
                add(av, af, mat)
        scene.add(pyrender.IntrinsicsCamera(fx=focal[0], fy=focal[1], cx=princpt[0], cy=princpt[1], znear=0.02, zfar=20.0), pose=cam_pose)
        # Key light from the camera side, random direction and strength; sometimes a fill light.
        key_dir = np.array([rng.normal(0, 0.6), rng.normal(0, 0.6), 1.0])
        key = rng.uniform(1.8, 4.5)
        scene.add(pyrender.DirectionalLight(color=_tint(rng, 0.08), intensity=key), pose=_light_pose(key_dir, cv_to_world))
        if rng.random() < 0.7:
            fill_dir = np.array([rng.normal(0, 1.0), rng.normal(0, 1.0), rng.uniform(-0.3, 1.0)])
            scene.add(pyrender.DirectionalLight(color=_tint(rng, 0.1), intensity=key * rng.uniform(0.15, 0.5)),
                      pose=_light_pose(fill_dir, cv_to_world))
        color, _ = self.renderer().render(scene, flags=pyrender.RenderFlags.RGBA)
        label = hdepth = None
        if buffers:
            seg, hdepth = self.renderer().render(scene, flags=pyrender.RenderFlags.SEG,
                                                 seg_node_map={hand_nodes[0]: (255, 0, 0), hand_nodes[1]: (0, 255, 0)})
            label = np.full((S, S), -1, dtype=np.int8)
            label[seg[..., 0] > 127] = 0
            label[seg[..., 1] > 127] = 1
            hdepth = np.where(label >= 0, hdepth, 0.0).astype(np.float32)
        alpha = color[..., 3:4].astype(np.float32) / 255.0
        # The MSAA resolve mixes the hands with the (black, transparent) clear colour: premultiplied.
        img = color[..., :3].astype(np.float32) + (1.0 - alpha) * background.astype(np.float32)
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
        Image.fromarray(img).save(buf, format="JPEG", quality=self.quality)

        record = self._record(idx, gt, Jw, origin_m, R, eye, focal, princpt, tone)
        return RenderedSample(image=img, record=record, jpeg=buf.getvalue(), hand_label=label, hand_depth=hdepth,
                              extra=dict(world_to_cam=E, vertices_world_m=Vw, forearms=len(arms)))

    def _record(self, idx, gt, Jw, origin_m, R, eye, focal, princpt, tone) -> dict:
        S = self.size
        world_mm = from_two_hand(Jw * 1000.0, "interhand")  # (42, 3)
        Xc = (world_mm - eye * 1000.0) @ R.T
        uv = Xc[:, :2] / Xc[:, 2:3] * focal + princpt
        lo, hi = uv.min(0), uv.max(0)
        c, wh = 0.5 * (lo + hi), 1.2 * (hi - lo)  # InterHand-like box: the joints' box enlarged 1.2x
        x0, y0 = np.maximum(c - wh / 2, 0.0)
        x1, y1 = np.minimum(c + wh / 2, S)
        bbox = [float(x0), float(y0), float(x1 - x0), float(y1 - y0)]
        cam_id = str(CAMERA_BASE + idx)
        # MANO-style parameters: trans = wrist_world - rest wrist J0(beta), metres.
        mano = {}
        for h, side in enumerate(("right", "left")):
            layer = self.hands.right if h == 0 else self.hands.left
            j0 = gt["rest_wrist"][h]
            mean = layer.data.hands_mean if layer.data.hands_mean is not None else np.zeros(45)
            pose = np.concatenate([gt["phi"][h], gt["theta"][h] - mean])
            mano[side] = {"pose": _flt(pose), "shape": _flt(gt["beta"][h]), "trans": _flt(Jw[h, 0] - j0)}
        return {
            "idx": int(idx),
            "image": {
                "id": int(idx), "file_name": image_relpath(idx), "width": S, "height": S, "capture": CAPTURE,
                "subject": 0, "seq_name": SEQ_NAME, "camera": cam_id, "frame_idx": int(idx),
            },
            "annotation": {
                "id": int(idx), "image_id": int(idx), "bbox": bbox, "joint_valid": [[1] for _ in range(42)],
                "hand_type": "interacting", "hand_type_valid": 1,
            },
            "camera": {
                "campos": _flt(eye * 1000.0, 6), "camrot": _flt(R, 10), "focal": _flt(focal, 6), "princpt": _flt(princpt, 6),
            },
            "joint_3d": {
                "world_coord": _flt(world_mm, 5), "joint_valid": [[True] for _ in range(42)],
                "hand_type": "interacting", "hand_type_valid": True,
            },
            "mano": mano,
            "ihmr": {
                "model": self.model_name, "beta": _flt(gt["beta"]), "phi": _flt(gt["phi"]), "theta": _flt(gt["theta"]),
                "tau": _flt(gt["tau"]), "origin_mm": _flt(origin_m * 1000.0), "contact": str(gt["contact"]),
                "skin_tone": round(tone, 4),
            },
        }


# --------------------------------------------------------------------------------------------------
# Writing


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


#: Mode of the written files: what ``open()`` would give (``atomic_write``'s temporary files are 0600).
_FILE_MODE = _umask_mode()


def _write_text(path: Path, text: str) -> None:
    with atomic_write(path, "w") as fh:
        fh.write(text)
    os.chmod(path, _FILE_MODE)


def _write_bytes(path: Path, data: bytes) -> None:
    with atomic_write(path) as fh:
        fh.write(data)
    os.chmod(path, _FILE_MODE)


def _part_path(parts: Path, idx: int) -> Path:
    return parts / f"{idx:07d}.json"


def _is_done(parts: Path, images: Path, idx: int) -> bool:
    """A finished sample: its image and its record are both present (both are written atomically)."""
    return _part_path(parts, idx).is_file() and (images / image_relpath(idx)).is_file()


def _read_part(parts: Path, idx: int) -> dict:
    p = _part_path(parts, idx)
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the sample record {p}: {e}; rerun without --resume") from e
    if not isinstance(rec, dict) or rec.get("idx") != idx:
        raise InputError(f"{p} is not the record of sample {idx}; rerun without --resume")
    return rec


_WORKER: dict = {}


def _worker_init(size: int, model: str, quality: int) -> None:
    import torch

    torch.set_num_threads(1)
    _WORKER["renderer"] = SampleRenderer(size, model, quality)


def _work(task: tuple, on_done: Optional[Callable[[], None]] = None) -> list[int]:
    """Render the samples ``idxs`` (all of one pose chunk); write image + part file each."""
    seed, chunk, idxs, images, parts = task
    r: SampleRenderer = _WORKER["renderer"]
    for idx in idxs:
        s = r.render(seed, idx, chunk)
        _write_bytes(Path(images) / image_relpath(idx), s.jpeg)
        _write_text(_part_path(Path(parts), idx), _dumps(s.record))
        if on_done is not None:
            on_done()
    return list(idxs)


_CAMERA_KEYS = ("campos", "camrot", "focal", "princpt")


def _assemble(paths: dict[str, Path], n: int) -> None:
    """Write the five annotation files from the per-sample records, streaming (memory stays flat for
    any ``n``). The bytes equal ``json.dumps(whole, separators=(",", ":"))`` of the nested dicts."""
    import shutil
    import tempfile


    parts = paths["parts"]
    sections = ("images", "annotations", *_CAMERA_KEYS, "joint_3d", "mano", "ihmr")
    with tempfile.TemporaryDirectory(dir=parts, prefix=".assemble.") as tmp:
        fhs = {k: open(Path(tmp) / k, "w", encoding="utf-8") for k in sections}
        try:
            for idx in range(n):
                rec = _read_part(parts, idx)
                sep = "," if idx else ""
                cid, fr = json.dumps(rec["image"]["camera"]), json.dumps(str(rec["image"]["frame_idx"]))
                fhs["images"].write(sep + _dumps(rec["image"]))
                fhs["annotations"].write(sep + _dumps(rec["annotation"]))
                for k in _CAMERA_KEYS:
                    fhs[k].write(f"{sep}{cid}:{_dumps(rec['camera'][k])}")
                fhs["joint_3d"].write(f"{sep}{fr}:{_dumps(rec['joint_3d'])}")
                fhs["mano"].write(f"{sep}{fr}:{_dumps(rec['mano'])}")
                fhs["ihmr"].write(f"{sep}{fr}:{_dumps(rec['ihmr'])}")
        finally:
            for fh in fhs.values():
                fh.close()
        cap = json.dumps(str(CAPTURE))

        def write(key: str, pieces: list) -> None:
            with atomic_write(paths[key], "w") as out:
                for piece in pieces:
                    if piece in sections:
                        with open(Path(tmp) / piece, encoding="utf-8") as src:
                            shutil.copyfileobj(src, out, 1 << 20)
                    else:
                        out.write(piece)
            os.chmod(paths[key], _FILE_MODE)

        write("data", ['{"images":[', "images", '],"annotations":[', "annotations", "]}"])
        cam = ["{" + cap + ":{"]
        for i, k in enumerate(_CAMERA_KEYS):
            cam += [("," if i else "") + json.dumps(k) + ":{", k, "}"]
        write("camera", cam + ["}}"])
        for key in ("joint_3d", "mano", "ihmr"):
            write(key, ["{" + cap + ":{", key, "}}"])


def _check_writable(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output folder {str(out)!r}: {e.strerror or e}") from e
    if not out.is_dir():
        raise InputError(f"output path {str(out)!r} is not a folder")
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"output folder {str(out)!r} is not writable")
    try:
        import tempfile

        with tempfile.NamedTemporaryFile(dir=out, prefix=".synth-probe."):
            pass
    except OSError as e:
        raise InputError(f"output folder {str(out)!r} is not writable: {e.strerror or e}") from e


def generate(cfg: SynthConfig) -> dict:
    """Render ``cfg.n`` samples and write the InterHand2.6M-format files; returns the manifest.

    Raises:
        InputError: bad options or an unwritable output folder.
    """
    from tqdm import tqdm

    cfg.check()
    out = Path(cfg.out)
    _check_writable(out)
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
    _write_text(stamp, _dumps(manifest_key))

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
            import torch

            threads = torch.get_num_threads()
            _worker_init(cfg.size, cfg.model, cfg.quality)
            try:
                for task in tasks:
                    _work(task, on_done=lambda: bar.update(1))
            finally:
                _WORKER.pop("renderer").close()
                torch.set_num_threads(threads)
        elif tasks:
            import multiprocessing as mp

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

    _assemble(paths, cfg.n)
    manifest = dict(
        manifest_key, n=int(cfg.n), split=cfg.split,
        capture=CAPTURE, seq_name=SEQ_NAME, camera_ids=f"str({CAMERA_BASE} + idx)",
        images=f"images/{cfg.split}/Capture{CAPTURE}/{SEQ_NAME}/cam<{CAMERA_BASE}+idx>/image<idx:05d>.jpg",
        conventions="X_cam = camrot @ (world_mm - campos); uv = focal * X_cam[:2] / X_cam[2] + princpt; "
                    "joints: InterHand order, right 0-20, left 21-41",
    )
    _write_text(paths["manifest"], json.dumps(manifest, indent=2))
    manifest.update(rendered=len(todo), reused=cfg.n - len(todo), seconds=round(elapsed, 3))
    manifest["images_per_s"] = round(len(todo) / elapsed, 3) if todo and elapsed > 0 else None
    return manifest
