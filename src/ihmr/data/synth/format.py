"""The files ``ihmr synth`` writes: paths, constants, the per-sample record, the annotation files
assembled from the records, and the reader of ``ihmr_params.json``.

Files under ``out``::

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
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ihmr.errors import InputError
from ihmr.io.files import atomic_write
from ihmr.joint_order import from_two_hand

__all__ = [
    "POSE_CHUNK",
    "CAPTURE",
    "SEQ_NAME",
    "CAMERA_BASE",
    "FORMAT_VERSION",
    "PARAMS_FILE",
    "image_relpath",
    "annotation_paths",
    "IhmrParams",
    "read_ihmr_params",
    "dumps",
    "sample_record",
    "part_path",
    "assemble",
]

#: Samples per pose chunk (part of the determinism contract: changing it changes the poses).
POSE_CHUNK = 16
CAPTURE = 0
SEQ_NAME = "synth"
CAMERA_BASE = 400000
FORMAT_VERSION = 1


def image_relpath(idx: int) -> str:
    """``file_name`` of sample ``idx`` relative to ``images/<split>/`` (as in InterHand2.6M)."""
    return f"Capture{CAPTURE}/{SEQ_NAME}/cam{CAMERA_BASE + idx}/image{idx:05d}.jpg"


#: The exact parameters file beside a split's annotation files.
PARAMS_FILE = "ihmr_params.json"


def annotation_paths(out: str | Path, split: str) -> dict[str, Path]:
    """The annotation files written for a split."""
    a = Path(out) / "annotations" / split
    stem = f"InterHand2.6M_{split}"
    return dict(
        data=a / f"{stem}_data.json", camera=a / f"{stem}_camera.json", joint_3d=a / f"{stem}_joint_3d.json",
        mano=a / f"{stem}_MANO_NeuralAnnot.json", ihmr=a / PARAMS_FILE, manifest=a / "synth_manifest.json",
        parts=a / ".parts",
    )


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


# --------------------------------------------------------------------------------------------------
# Per-sample records


def dumps(obj: Any) -> str:
    """Compact JSON (no spaces, no NaN): the bytes of every record and annotation file."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _flt(x: Any, nd: Optional[int] = None) -> Any:
    """Nested lists of Python floats (optionally rounded) from an array."""
    a = np.asarray(x, dtype=np.float64)
    if nd is not None:
        a = np.round(a, nd)
    return a.tolist()


def sample_record(
    idx: int, size: int, gt: dict[str, np.ndarray], Jw: np.ndarray, origin_m: np.ndarray, R: np.ndarray, eye: np.ndarray,
    focal: np.ndarray, princpt: np.ndarray, tone: float, hands_mean: Sequence[np.ndarray], model_name: str,
) -> dict:
    """What the annotation files hold for sample ``idx`` (one entry of each file, see the module
    docstring), as written to ``.parts/<idx>.json``.

    Args:
        idx: sample index; size: image side ``S`` (pixels).
        gt: the sample's ground truth (one sample of :func:`ihmr.data.synth.poses.pose_chunk`).
        Jw: ``(2, 21, 3)`` world joints (metres, MANO order); origin_m: ``(3,)`` world origin of the
            model frame (metres).
        R, eye, focal, princpt: the camera (``(3, 3)``, ``(3,)`` metres, ``(2,)``, ``(2,)`` pixels).
        tone: skin tone in [0, 1]; hands_mean: per hand (right, left) the ``(45,)`` mean finger pose
            the MANO-style pose is relative to; model_name: the hand model's name.
    """
    S = size
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
        j0 = gt["rest_wrist"][h]
        pose = np.concatenate([gt["phi"][h], gt["theta"][h] - hands_mean[h]])
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
            "model": model_name, "beta": _flt(gt["beta"]), "phi": _flt(gt["phi"]), "theta": _flt(gt["theta"]),
            "tau": _flt(gt["tau"]), "origin_mm": _flt(origin_m * 1000.0), "contact": str(gt["contact"]),
            "skin_tone": round(tone, 4),
        },
    }


def part_path(parts: Path, idx: int) -> Path:
    """The record file of sample ``idx`` in the ``.parts`` folder."""
    return parts / f"{idx:07d}.json"


def _read_part(parts: Path, idx: int) -> dict:
    """The record of sample ``idx`` (written by a finished sample).

    Raises:
        InputError: unreadable, or not the record of sample ``idx``.
    """
    p = part_path(parts, idx)
    try:
        rec = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the sample record {p}: {e}; rerun without --resume") from e
    if not isinstance(rec, dict) or rec.get("idx") != idx:
        raise InputError(f"{p} is not the record of sample {idx}; rerun without --resume")
    return rec


#: The per-camera fields of the camera file, in the order written.
_CAMERA_KEYS = ("campos", "camrot", "focal", "princpt")


def assemble(paths: dict[str, Path], idxs: Sequence[int]) -> None:
    """Write the five annotation files from the per-sample records of the samples ``idxs`` (in that
    order), streaming (memory stays flat for any number). The bytes equal
    ``json.dumps(whole, separators=(",", ":"))`` of the nested dicts."""
    parts = paths["parts"]
    sections = ("images", "annotations", *_CAMERA_KEYS, "joint_3d", "mano", "ihmr")
    with tempfile.TemporaryDirectory(dir=parts, prefix=".assemble.") as tmp:
        fhs = {k: open(Path(tmp) / k, "w", encoding="utf-8") for k in sections}
        try:
            for pos, idx in enumerate(idxs):
                rec = _read_part(parts, int(idx))
                sep = "," if pos else ""
                cid, fr = json.dumps(rec["image"]["camera"]), json.dumps(str(rec["image"]["frame_idx"]))
                fhs["images"].write(sep + dumps(rec["image"]))
                fhs["annotations"].write(sep + dumps(rec["annotation"]))
                for k in _CAMERA_KEYS:
                    fhs[k].write(f"{sep}{cid}:{dumps(rec['camera'][k])}")
                fhs["joint_3d"].write(f"{sep}{fr}:{dumps(rec['joint_3d'])}")
                fhs["mano"].write(f"{sep}{fr}:{dumps(rec['mano'])}")
                fhs["ihmr"].write(f"{sep}{fr}:{dumps(rec['ihmr'])}")
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

        write("data", ['{"images":[', "images", '],"annotations":[', "annotations", "]}"])
        cam = ["{" + cap + ":{"]
        for i, k in enumerate(_CAMERA_KEYS):
            cam += [("," if i else "") + json.dumps(k) + ":{", k, "}"]
        write("camera", cam + ["}}"])
        for key in ("joint_3d", "mano", "ihmr"):
            write(key, ["{" + cap + ":{", key, "}}"])
