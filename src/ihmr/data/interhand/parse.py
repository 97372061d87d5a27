"""Parsing a split's JSON files into the arrays of :class:`~ihmr.data.interhand.annotations.InterHandAnnotations`.

Conventions (verified on the real sample frames): camera coordinates ``X_cam = R (X_world - c)``
with ``R = camrot`` and ``c = campos``; pixels ``u = fx X/Z + cx``, ``v = fy Y/Z + cy``, pixel centres
at integer coordinates. The annotation bbox is the box of the projected valid joints enlarged 1.2x
about its centre. Everything returned is in metres (the files hold mm).

Records that cannot be used (missing keys, wrong lengths, NaN, unknown camera or frame) are skipped
and listed as :class:`~ihmr.data.interhand.annotations.SkippedSample` with a reason; nothing is
silently dropped or misaligned.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ihmr.data.interhand.annotations import FIELDS, HAND_TYPES, N_JOINTS, STR_FIELDS, SkippedSample
from ihmr.data.interhand.files import InterHandFiles
from ihmr.errors import InputError, one_line
from ihmr.geometry.camera import project_points, world_to_camera

__all__ = ["read_json", "parse"]

#: Millimetres (the files) to metres.
_MM = 1e-3


def read_json(path: Path) -> Any:
    """Parse one JSON file; every failure is an :class:`InputError` naming the file."""
    try:
        with open(path, "rb") as fh:
            return json.load(fh)
    except FileNotFoundError as e:
        raise InputError(f"InterHand2.6M file {path} not found") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not valid JSON ({e})") from e
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({e})") from e


class _Corrupt(Exception):
    """A record that cannot be used (internal; becomes a :class:`SkippedSample`)."""


def _array(x: Any, shape: tuple[int, ...], what: str, dtype: Any = np.float64) -> np.ndarray:
    """``x`` as an array of ``shape`` (any layout with that many values), else :class:`_Corrupt`."""
    try:
        a = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise _Corrupt(f"{what} is not numeric ({e})") from e
    if a.size != math.prod(shape):
        raise _Corrupt(f"{what} has {a.size} values, expected {math.prod(shape)} {shape}")
    return a.reshape(shape)


def _key(d: Any, k: str, what: str) -> Any:
    """``d[k]``, else :class:`_Corrupt` naming ``what``."""
    if not isinstance(d, dict):
        raise _Corrupt(f"{what} is not an object")
    if k not in d:
        raise _Corrupt(f"{what} has no '{k}'")
    return d[k]


def _hand_type(x: Any, what: str) -> int:
    if x not in HAND_TYPES:
        raise _Corrupt(f"{what} hand_type {x!r} is not one of {HAND_TYPES}")
    return HAND_TYPES.index(x)


def parse(files: InterHandFiles) -> tuple[dict[str, np.ndarray], list[SkippedSample]]:
    """Read the JSON files once, index them and build the arrays (invalid records are skipped).

    Returns:
        the arrays (keys :data:`FIELDS` and :data:`STR_FIELDS`, ``N`` usable samples) and the skipped
        records.

    Raises:
        InputError: a missing or invalid JSON file, or a wrong top-level structure (naming the file).
    """
    data = read_json(files.data)
    cams = read_json(files.camera)
    j3d = read_json(files.joint_3d)
    mano = read_json(files.mano) if files.mano is not None else None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise InputError(f"{files.data}: expected an object with 'images' and 'annotations' lists")
    for path, obj in ((files.camera, cams), (files.joint_3d, j3d), (files.mano, mano)):
        if path is not None and not isinstance(obj, dict):
            raise InputError(f"{path}: expected an object keyed by capture id")

    skipped: list[SkippedSample] = []
    images: dict[int, dict] = {}
    for k, im in enumerate(data["images"]):
        iid = im.get("id") if isinstance(im, dict) else None
        if not isinstance(iid, int) or isinstance(iid, bool):
            skipped.append(SkippedSample(-1, str(im.get("file_name", "")) if isinstance(im, dict) else "", f"images[{k}] has no integer 'id'"))
        elif iid in images:
            skipped.append(SkippedSample(iid, str(im.get("file_name", "")), f"duplicate image id {iid}"))
        else:
            images[iid] = im

    cam_cache: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def camera(cap: str, cam: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if (cap, cam) not in cam_cache:
            c = cams.get(cap)
            if c is None:
                raise _Corrupt(f"capture {cap} not in the camera file")
            vals = {}
            for name, shape in (("campos", (3,)), ("camrot", (3, 3)), ("focal", (2,)), ("princpt", (2,))):
                per_cam = _key(c, name, f"camera capture {cap}")
                vals[name] = _array(_key(per_cam, cam, f"camera capture {cap} {name}"), shape, f"camera {cap}/{cam} {name}")
                if not np.isfinite(vals[name]).all():
                    raise _Corrupt(f"camera {cap}/{cam} {name} is not finite")
            R = vals["camrot"]
            if abs(np.linalg.det(R) - 1.0) > 1e-3 or np.abs(R @ R.T - np.eye(3)).max() > 1e-3:
                raise _Corrupt(f"camera {cap}/{cam} camrot is not a rotation")
            if (vals["focal"] <= 0).any():
                raise _Corrupt(f"camera {cap}/{cam} focal is not positive")
            K = np.array([[vals["focal"][0], 0.0, vals["princpt"][0]], [0.0, vals["focal"][1], vals["princpt"][1]], [0.0, 0.0, 1.0]])
            t = -R @ (vals["campos"] * _MM)
            cam_cache[(cap, cam)] = (K, R, t)
        return cam_cache[(cap, cam)]

    rows: dict[str, list] = {k: [] for k in (*FIELDS, *STR_FIELDS) if k not in ("joints_cam", "joints_2d")}
    seen: set[int] = set()
    for k, ann in enumerate(data["annotations"]):
        iid = ann.get("image_id", -1) if isinstance(ann, dict) else -1
        im = images.get(iid) if isinstance(iid, int) else None
        fname = str(im.get("file_name", "")) if im is not None else ""
        try:
            if not isinstance(ann, dict):
                raise _Corrupt(f"annotations[{k}] is not an object")
            if im is None:
                raise _Corrupt(f"annotations[{k}]: image_id {iid!r} has no entry in 'images'")
            if iid in seen:
                raise _Corrupt(f"second annotation for image id {iid}")
            fname = str(_key(im, "file_name", f"image {iid}"))
            cap = str(_key(im, "capture", f"image {iid}"))
            cam = str(_key(im, "camera", f"image {iid}"))
            frame = str(_key(im, "frame_idx", f"image {iid}"))
            w, h = int(_key(im, "width", f"image {iid}")), int(_key(im, "height", f"image {iid}"))
            cap_i, frame_i = int(cap), int(frame)
            bbox = _array(_key(ann, "bbox", f"annotation {iid}"), (4,), f"annotation {iid} bbox")
            if not np.isfinite(bbox).all() or (bbox[2:] <= 0).any():
                raise _Corrupt(f"annotation {iid} bbox {bbox.tolist()} is not a finite box of positive size")
            v_ann = _array(_key(ann, "joint_valid", f"annotation {iid}"), (N_JOINTS,), f"annotation {iid} joint_valid")
            ht = _hand_type(_key(ann, "hand_type", f"annotation {iid}"), f"annotation {iid}")
            htv = bool(_key(ann, "hand_type_valid", f"annotation {iid}"))
            K, R, t = camera(cap, cam)
            frames = j3d.get(cap)
            rec = frames.get(frame) if isinstance(frames, dict) else None
            if rec is None:
                raise _Corrupt(f"capture {cap} frame {frame} not in the joint_3d file")
            world = _array(_key(rec, "world_coord", f"joint_3d {cap}/{frame}"), (N_JOINTS, 3), f"joint_3d {cap}/{frame} world_coord")
            v_3d = _array(rec.get("joint_valid", np.ones(N_JOINTS)), (N_JOINTS,), f"joint_3d {cap}/{frame} joint_valid")
            if not (np.isfinite(v_ann).all() and np.isfinite(v_3d).all()):
                raise _Corrupt(f"joint_valid of image {iid} is not finite")
            valid = (v_ann > 0) & (v_3d > 0)
            finite = np.isfinite(world).all(1)
            if not finite[valid].all():
                raise _Corrupt(f"joint_3d {cap}/{frame} world_coord has NaN/inf at valid joints {np.flatnonzero(valid & ~finite).tolist()}")
            world = np.where(finite[:, None], world, 0.0) * _MM
            z = (R @ world[valid].T)[2] + t[2]
            if (z <= 1e-6).any():
                raise _Corrupt(f"valid joints of image {iid} are behind camera {cap}/{cam}")
            mp, ms, mt, mv = np.zeros((2, 48)), np.zeros((2, 10)), np.zeros((2, 3)), np.zeros(2, bool)
            if mano is not None:
                mrec = mano.get(cap, {}).get(frame) if isinstance(mano.get(cap), dict) else None
                if isinstance(mrec, dict):
                    for hand, side in enumerate(("right", "left")):
                        p = mrec.get(side)
                        if p is None:
                            continue
                        where = f"MANO {cap}/{frame} {side}"
                        mp[hand] = _array(_key(p, "pose", where), (48,), f"{where} pose")
                        ms[hand] = _array(_key(p, "shape", where), (10,), f"{where} shape")
                        mt[hand] = _array(_key(p, "trans", where), (3,), f"{where} trans")
                        if not (np.isfinite(mp[hand]).all() and np.isfinite(ms[hand]).all() and np.isfinite(mt[hand]).all()):
                            raise _Corrupt(f"{where} parameters are not finite")
                        mv[hand] = True
        except _Corrupt as e:
            skipped.append(SkippedSample(int(iid) if isinstance(iid, int) else -1, fname, str(e)))
            continue
        except Exception as e:  # noqa: BLE001 - odd types or values anywhere in the record (1e400 -> inf -> int): this record only
            skipped.append(SkippedSample(int(iid) if isinstance(iid, int) else -1, fname, f"malformed record ({one_line(e)})"))
            continue
        seen.add(iid)
        for name, val in (
            ("image_id", iid), ("width", w), ("height", h), ("capture", cap_i), ("frame_idx", frame_i),
            ("bbox", bbox), ("K", K), ("R", R), ("t", t), ("joints_world", world), ("valid", valid),
            ("hand_type", ht), ("hand_type_valid", htv), ("mano_pose", mp), ("mano_shape", ms),
            ("mano_trans", mt), ("mano_valid", mv), ("file_name", fname), ("camera", cam),
        ):
            rows[name].append(val)
    reported = {s.image_id for s in skipped}
    for iid, im in images.items():
        if iid not in seen and iid not in reported:
            skipped.append(SkippedSample(iid, str(im.get("file_name", "")), "image has no annotation"))

    dtypes = {"valid": bool, "hand_type_valid": bool, "mano_valid": bool}
    out: dict[str, np.ndarray] = {}
    for name, shape in FIELDS.items():
        if name in ("joints_cam", "joints_2d"):
            continue
        dt = dtypes.get(name, np.int64 if shape == () else np.float64)
        out[name] = np.array(rows[name], dtype=dt).reshape((len(rows[name]), *shape))
    for name in STR_FIELDS:
        out[name] = np.array(rows[name], dtype=str).reshape(-1)
    out["joints_cam"] = world_to_camera(out["joints_world"], out["R"], out["t"])
    out["joints_2d"] = project_points(out["joints_cam"], out["K"]) if len(out["K"]) else np.zeros((0, N_JOINTS, 2))
    return out, skipped
