"""The camera-frame pair format of ``ihmr refine``: two hands per sample as a single-hand estimator
(HaMeR / WiLoR style, run on both hands) gives them, in camera coordinates with a pinhole camera.
Reading with validation (:func:`read_camera_pairs` -> :class:`CameraPairs`), writing refined values
back in the file's own convention (:func:`write_camera_pairs`), and telling this format from the
internal pair format of :mod:`ihmr.io.npz` (:func:`input_convention`).

Per hand (metres, radians; camera frame: x right, y down, z forward, OpenCV):

- ``side``: ``"right"`` / ``"left"`` (JSON; in ``.npz`` the key prefix ``right_`` / ``left_``).
- ``global_orient``: axis-angle ``(3,)`` / ``(1, 3)`` or rotation matrix ``(3, 3)`` / ``(1, 3, 3)``.
- ``hand_pose``: axis-angle ``(45,)`` / ``(15, 3)`` or rotation matrices ``(15, 3, 3)``, relative to the
  flat hand or to MANO's mean pose (:data:`POSE_SPACES`, the file's ``hand_pose_space``).
- ``betas``: ``(K,)``, K = the model's shape count (10).
- ``transl``: ``(3,)`` in MANO's ``transl`` convention, ``vertices = MANO(betas, global_orient,
  hand_pose) + transl`` (the model's own wrist offset is not subtracted).
- optional ``keypoints_2d`` ``(21, 2)`` pixels (need ``intrinsics``), ``keypoints_3d`` ``(21, 3)``
  metres in the camera frame, both in the file's ``joint_order`` (:data:`JOINT_ORDERS`, default
  OpenPose / MediaPipe: wrist, thumb CMC..tip, index MCP..tip, middle, ring, pinky).
- optional ``intrinsics``: ``{"fx", "fy", "cx", "cy"}``, ``[fx, fy, cx, cy]`` or a ``3 x 3`` K without
  skew; per sample or per hand (then the same for both hands of a sample).

JSON: a list of samples ``{"hands": [hand, hand], "intrinsics": ...}``, or an object ``{"format":
"ihmr.camera_pairs", "hand_pose_space": "flat", "joint_order": "openpose", "samples": [...]}``; other
fields are kept as they are. ``.npz``: ``{side}_{field}`` arrays with a leading sample axis N
(``right_global_orient (N, 3)`` or ``(N, 3, 3)``, ...), sample-level ``intrinsics (N, 4)`` or
``(N, 3, 3)``, and 0-d strings ``format``, ``hand_pose_space``, ``joint_order``; other keys are kept.
"""

from __future__ import annotations

import copy
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ihmr.errors import InputError
from ihmr.io.files import write_text
from ihmr.io.npz import write_npz

__all__ = ["FORMAT", "SIDES", "POSE_SPACES", "JOINT_ORDERS", "HAND_FIELDS", "CameraPairs", "input_convention",
           "read_camera_pairs", "write_camera_pairs"]

#: The ``format`` value of a camera-frame pair file.
FORMAT = "ihmr.camera_pairs"
SIDES = ("right", "left")
#: ``hand_pose_space``: ``"flat"`` (default; relative to the flat hand: smplx ``flat_hand_mean=True``,
#: and what rotation matrices through smplx's ``MANOLayer`` mean, as HaMeR / WiLoR output) or
#: ``"mean"`` (relative to MANO's mean pose: smplx ``MANO(flat_hand_mean=False)``, smplx's default).
POSE_SPACES = ("flat", "mean")
#: ``joint_order`` of the keypoints (:mod:`ihmr.joint_order` names); default ``"openpose"``.
JOINT_ORDERS = ("openpose", "mediapipe", "mano", "interhand")
#: Per-hand fields: name -> accepted per-hand shapes (``K`` = any betas count).
HAND_FIELDS = {
    "global_orient": ((3,), (1, 3), (3, 3), (1, 3, 3)),
    "hand_pose": ((45,), (15, 3), (15, 3, 3)),
    "betas": (("K",),),
    "transl": ((3,),),
    "keypoints_2d": ((21, 2),),
    "keypoints_3d": ((21, 3),),
}
_REQUIRED = ("global_orient", "hand_pose", "betas", "transl")


@dataclass
class CameraPairs:
    """N samples of two hands as read from a camera-frame file; arrays ``[sample, hand]`` with hand
    0 = right, 1 = left (whatever the file's order), float64, metres / radians / pixels.

    Attributes:
        kind: ``"json"`` or ``"npz"``; ``path``: the file.
        pose_space: one of :data:`POSE_SPACES`; ``joint_order``: one of :data:`JOINT_ORDERS`.
        orient_aa ``(N, 2, 3)`` / orient_mat ``(N, 2, 3, 3)``: ``global_orient`` as given (the other
            is zeros / identity), ``orient_shape (N, 2)``: its per-hand shape (a tuple).
        pose_aa ``(N, 2, 45)`` / pose_mat ``(N, 2, 15, 3, 3)``, ``pose_shape (N, 2)``: ``hand_pose`` likewise.
        betas ``(N, 2, K)``, transl ``(N, 2, 3)``.
        kp2d ``(N, 2, 21, 2)`` / has_kp2d ``(N, 2)``, kp3d ``(N, 2, 21, 3)`` / has_kp3d ``(N, 2)``:
            keypoints in ``joint_order`` (zeros where absent).
        intrinsics ``(N, 4)`` ``(fx, fy, cx, cy)`` / has_intrinsics ``(N,)``.
        hand_pos ``(N, 2)``: position of the right / left hand in the sample's ``hands`` list (JSON).
        raw: the parsed JSON document or the ``.npz`` arrays (kept for writing back).
    """

    kind: str
    path: Path
    pose_space: str
    joint_order: str
    orient_aa: np.ndarray
    orient_mat: np.ndarray
    orient_shape: np.ndarray
    pose_aa: np.ndarray
    pose_mat: np.ndarray
    pose_shape: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    kp2d: np.ndarray
    has_kp2d: np.ndarray
    kp3d: np.ndarray
    has_kp3d: np.ndarray
    intrinsics: np.ndarray
    has_intrinsics: np.ndarray
    hand_pos: np.ndarray
    raw: Any

    def __len__(self) -> int:
        return len(self.transl)

    def field(self, n: int, hand: Optional[int], name: str) -> str:
        """How the file names ``name`` of sample ``n``, hand ``hand`` (0 right, 1 left; ``None``: the
        sample's own field), for error messages."""
        return _field_name(self.kind, self.path, self.hand_pos, n, hand, name)


def _field_name(kind: str, path: Path, hand_pos: np.ndarray, n: int, hand: Optional[int], name: str) -> str:
    if kind == "npz":
        return f"{path}: key '{name if hand is None else SIDES[hand] + '_' + name}' [sample {n}]"
    where = f"samples[{n}]" + ("" if hand is None else f".hands[{int(hand_pos[n, hand])}]")
    return f"{path}: {where}.{name}"


def input_convention(path: str | Path) -> str:
    """``"camera"`` for a camera-frame pair file (a ``.json``, or an ``.npz`` with ``format`` =
    :data:`FORMAT` or ``right_*`` / ``left_*`` keys), else ``"pair"`` (the format of
    :func:`ihmr.io.npz.read_refine_input`, which reports unreadable files)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return "camera"
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            fmt = str(z["format"]) if "format" in keys else None
    except (zipfile.BadZipFile, EOFError, OSError, ValueError):
        return "pair"
    if fmt is not None and fmt != FORMAT:
        raise InputError(f"{path}: key 'format' is {fmt!r}; ihmr reads {FORMAT!r} (or the pair format without 'format')")
    return "camera" if fmt == FORMAT or any(k.startswith(("right_", "left_")) for k in keys) else "pair"


def _numbers(value: Any, where: str, shapes: tuple) -> np.ndarray:
    """``value`` as a finite float64 array of one of ``shapes`` (``"K"``: any size >= 1)."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise InputError(f"{where} must be numbers, got {type(value).__name__} ({e})") from e
    ok = any(arr.ndim == len(s) and all(a == b or (b == "K" and a >= 1) for a, b in zip(arr.shape, s)) for s in shapes)
    if not ok:
        want = " or ".join("(" + ", ".join(str(d) for d in s) + ("," if len(s) == 1 else "") + ")" for s in shapes)
        raise InputError(f"{where} must have shape {want}, got {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{where} contains NaN or inf")
    return arr


def _intrinsics(value: Any, where: str) -> np.ndarray:
    """``(fx, fy, cx, cy)`` from a dict, a 4-list or a 3 x 3 K; focal lengths must be positive."""
    if isinstance(value, dict):
        missing = [k for k in ("fx", "fy", "cx", "cy") if k not in value]
        if missing:
            raise InputError(f"{where} lacks {', '.join(missing)} (need fx, fy, cx, cy in pixels)")
        value = [value[k] for k in ("fx", "fy", "cx", "cy")]
    a = _numbers(value, where, ((4,), (3, 3)))
    if a.shape == (3, 3):
        if abs(a[0, 1]) > 1e-9 or abs(a[1, 0]) > 1e-9 or not np.allclose(a[2], [0, 0, 1], atol=1e-9):
            raise InputError(f"{where}: a 3 x 3 K must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew), got {a.tolist()}")
        a = np.array([a[0, 0], a[1, 1], a[0, 2], a[1, 2]])
    if a[0] <= 0 or a[1] <= 0:
        raise InputError(f"{where}: focal lengths fx, fy must be positive, got fx={a[0]:g}, fy={a[1]:g}")
    return a


class _Builder:
    """Collects per-hand arrays into the :class:`CameraPairs` arrays."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.cols: dict[str, list] = {k: [[None, None] for _ in range(n)] for k in HAND_FIELDS}
        self.intr: list[Optional[np.ndarray]] = [None] * n
        self.intr_where: list[str] = [""] * n

    def put_intrinsics(self, n: int, value: np.ndarray, where: str) -> None:
        if self.intr[n] is not None and not np.allclose(self.intr[n], value, rtol=1e-9, atol=1e-9):
            raise InputError(f"{where} {value.tolist()} differs from {self.intr_where[n]} {self.intr[n].tolist()} "
                             "(one image, one camera per sample)")
        if self.intr[n] is None:
            self.intr[n], self.intr_where[n] = value, where

    def build(self, kind: str, path: Path, pose_space: str, joint_order: str, hand_pos: np.ndarray, raw: Any) -> CameraPairs:
        n = self.n
        k = {self.cols["betas"][i][h].shape[0] for i in range(n) for h in (0, 1)}
        if len(k) > 1:
            raise InputError(f"{path}: all hands must have the same number of betas, got {sorted(k)}")
        o_aa, o_mat = np.zeros((n, 2, 3)), np.tile(np.eye(3), (n, 2, 1, 1))
        p_aa, p_mat = np.zeros((n, 2, 45)), np.tile(np.eye(3), (n, 2, 15, 1, 1))
        o_shape, p_shape = np.empty((n, 2), dtype=object), np.empty((n, 2), dtype=object)
        kp = {f: (np.zeros((n, 2, 21, d)), np.zeros((n, 2), dtype=bool)) for f, d in (("keypoints_2d", 2), ("keypoints_3d", 3))}
        for i in range(n):
            for h in (0, 1):
                o, p = self.cols["global_orient"][i][h], self.cols["hand_pose"][i][h]
                o_shape[i, h], p_shape[i, h] = o.shape, p.shape
                if o.shape[-2:] == (3, 3):
                    o_mat[i, h] = o.reshape(3, 3)
                else:
                    o_aa[i, h] = o.reshape(3)
                if p.ndim == 3:
                    p_mat[i, h] = p
                else:
                    p_aa[i, h] = p.reshape(45)
                for f, (arr, has) in kp.items():
                    if self.cols[f][i][h] is not None:
                        arr[i, h], has[i, h] = self.cols[f][i][h], True
        for i in range(n):
            for h in (0, 1):
                if self.cols["keypoints_2d"][i][h] is not None and self.intr[i] is None:
                    raise InputError(f"{_field_name(kind, path, hand_pos, i, h, 'keypoints_2d')} given without intrinsics (fx, fy, cx, cy) of the image")
        stack = lambda f: np.stack([np.stack(c) for c in self.cols[f]])  # noqa: E731
        return CameraPairs(
            kind=kind, path=path, pose_space=pose_space, joint_order=joint_order,
            orient_aa=o_aa, orient_mat=o_mat, orient_shape=o_shape, pose_aa=p_aa, pose_mat=p_mat, pose_shape=p_shape,
            betas=stack("betas"), transl=stack("transl"), kp2d=kp["keypoints_2d"][0], has_kp2d=kp["keypoints_2d"][1],
            kp3d=kp["keypoints_3d"][0], has_kp3d=kp["keypoints_3d"][1],
            intrinsics=np.stack([np.zeros(4) if a is None else a for a in self.intr]),
            has_intrinsics=np.array([a is not None for a in self.intr]), hand_pos=hand_pos, raw=raw,
        )


def _choice(value: Any, where: str, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    v = str(value.item() if isinstance(value, np.ndarray) else value)
    if v not in choices:
        raise InputError(f"{where} must be one of {', '.join(choices)}, got {v!r}")
    return v


def _read_json(path: Path) -> CameraPairs:
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{path} is not a readable JSON file ({type(e).__name__}: {e})") from e
    top = doc if isinstance(doc, dict) else {}
    samples = doc.get("samples") if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and doc.get("format", FORMAT) != FORMAT:
        raise InputError(f"{path}: format is {doc.get('format')!r}, expected {FORMAT!r}")
    if not isinstance(samples, list) or not samples:
        raise InputError(f"{path}: samples must be a non-empty list of samples, each {{\"hands\": [right, left]}}")
    pose_space = _choice(top.get("hand_pose_space"), f"{path}: hand_pose_space", POSE_SPACES, "flat")
    joint_order = _choice(top.get("joint_order"), f"{path}: joint_order", JOINT_ORDERS, "openpose")
    n = len(samples)
    b = _Builder(n)
    hand_pos = np.zeros((n, 2), dtype=np.int64)
    for i, s in enumerate(samples):
        where = f"{path}: samples[{i}]"
        hands = s.get("hands") if isinstance(s, dict) else None
        if not isinstance(hands, list) or len(hands) != 2 or not all(isinstance(h, dict) for h in hands):
            got = "missing" if not isinstance(hands, list) else f"{len(hands)} entries"
            raise InputError(f"{where}.hands must be a list of two hands (a right and a left one), got {got}")
        sides = []
        for j, h in enumerate(hands):
            if "side" not in h:
                raise InputError(f"{where}.hands[{j}].side is missing ('right' or 'left')")
            if h["side"] not in SIDES:
                raise InputError(f"{where}.hands[{j}].side must be 'right' or 'left', got {h['side']!r}")
            sides.append(h["side"])
        if sides[0] == sides[1]:
            raise InputError(f"{where}.hands[1].side: both hands are {sides[0]!r}; a sample needs one right and one left hand")
        if s.get("intrinsics") is not None:
            b.put_intrinsics(i, _intrinsics(s["intrinsics"], f"{where}.intrinsics"), f"{where}.intrinsics")
        for j, h in enumerate(hands):
            side = SIDES.index(h["side"])
            hand_pos[i, side] = j
            hw = f"{where}.hands[{j}]"
            for f, shapes in HAND_FIELDS.items():
                if h.get(f) is None:
                    if f in _REQUIRED:
                        raise InputError(f"{hw}.{f} is missing")
                    continue
                b.cols[f][i][side] = _numbers(h[f], f"{hw}.{f}", shapes)
            if h.get("intrinsics") is not None:
                b.put_intrinsics(i, _intrinsics(h["intrinsics"], f"{hw}.intrinsics"), f"{hw}.intrinsics")
    return b.build("json", path, pose_space, joint_order, hand_pos, doc)


def _read_npz(path: Path) -> CameraPairs:
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise InputError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from e
    for side in SIDES:
        missing = [f"{side}_{f}" for f in _REQUIRED if f"{side}_{f}" not in d]
        if missing:
            raise InputError(f"{path}: missing key(s) {', '.join(missing)} (the {side} hand)")
    n = d["right_transl"].shape[0] if d["right_transl"].ndim else 0
    if n <= 0:
        raise InputError(f"{path}: key 'right_transl' must hold at least one sample, got shape {d['right_transl'].shape}")
    b = _Builder(n)
    for h, side in enumerate(SIDES):
        for f, shapes in HAND_FIELDS.items():
            key = f"{side}_{f}"
            if key not in d:
                continue
            arr = _numbers(d[key], f"{path}: key '{key}'", tuple((n,) + s for s in shapes))
            for i in range(n):
                b.cols[f][i][h] = arr[i]
    for key in ("intrinsics", "right_intrinsics", "left_intrinsics"):
        if key in d:
            arr = _numbers(d[key], f"{path}: key '{key}'", ((n, 4), (n, 3, 3)))
            for i in range(n):
                b.put_intrinsics(i, _intrinsics(arr[i], f"{path}: key '{key}' [sample {i}]"), f"{path}: key '{key}' [sample {i}]")
    pose_space = _choice(d.get("hand_pose_space"), f"{path}: key 'hand_pose_space'", POSE_SPACES, "flat")
    joint_order = _choice(d.get("joint_order"), f"{path}: key 'joint_order'", JOINT_ORDERS, "openpose")
    return b.build("npz", path, pose_space, joint_order, np.tile([0, 1], (n, 1)), d)


def read_camera_pairs(path: str | Path) -> CameraPairs:
    """Read and validate a camera-frame pair file (``.json`` or ``.npz``, see the module docstring).

    Raises :class:`InputError` naming the field: unreadable file, missing hand / side / required
    field, both hands of one side, wrong shapes, NaN/inf, betas counts that differ, intrinsics with
    a non-positive focal length or skew, differing between the hands of a sample, or missing where
    ``keypoints_2d`` are given, an unknown ``hand_pose_space`` / ``joint_order`` / ``format``.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    return _read_json(path) if path.suffix.lower() == ".json" else _read_npz(path)


def write_camera_pairs(path: str | Path, pairs: CameraPairs, values: dict[str, np.ndarray],
                       figures: dict[str, np.ndarray]) -> Path:
    """Write ``pairs`` with new ``values`` in the input's own convention (same format, field shapes,
    rotation representation and hand order; other fields kept), atomically.

    Args:
        values: ``orient_aa``, ``orient_mat``, ``pose_aa``, ``pose_mat``, ``betas``, ``transl`` shaped
            like the :class:`CameraPairs` arrays (each hand's given representation is taken).
        figures: per-sample ``(N,)`` arrays (floats or bools): JSON ``samples[i].refinement``, ``.npz``
            keys of their own.
    """
    path = Path(path)
    N = len(pairs)

    def hand_values(i: int, h: int) -> dict[str, np.ndarray]:
        o_shape, p_shape = pairs.orient_shape[i, h], pairs.pose_shape[i, h]
        o = values["orient_mat"][i, h] if o_shape[-2:] == (3, 3) else values["orient_aa"][i, h]
        p = values["pose_mat"][i, h] if len(p_shape) == 3 else values["pose_aa"][i, h]
        return dict(global_orient=o.reshape(o_shape), hand_pose=p.reshape(p_shape), betas=values["betas"][i, h],
                    transl=values["transl"][i, h])

    if pairs.kind == "json":
        doc = copy.deepcopy(pairs.raw)
        samples = doc["samples"] if isinstance(doc, dict) else doc
        for i in range(N):
            for h in (0, 1):
                samples[i]["hands"][int(pairs.hand_pos[i, h])].update({k: v.tolist() for k, v in hand_values(i, h).items()})
            samples[i]["refinement"] = {k: (bool(v[i]) if v.dtype == bool else float(v[i])) for k, v in figures.items()}
        write_text(path, json.dumps(doc, indent=1) + "\n")
        return path
    out = dict(pairs.raw)
    for h, side in enumerate(SIDES):
        per = [hand_values(i, h) for i in range(N)]
        for f in _REQUIRED:
            key = f"{side}_{f}"
            out[key] = np.stack([p[f] for p in per]).astype(pairs.raw[key].dtype if pairs.raw[key].dtype.kind == "f" else np.float64)
    out.update(figures)
    return write_npz(path, out)
