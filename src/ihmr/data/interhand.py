"""InterHand2.6M loader for the official annotation files (v1.0), subsets, hand crops, a torch Dataset.

Files of one split (``{prefix}`` is e.g. ``InterHand2.6M_test`` or ``test_interhand2.6m``):

- ``{prefix}_data.json``: COCO-style ``images`` (id, file_name, width, height, capture, camera,
  frame_idx, ...) and ``annotations`` (image_id, bbox ``[x, y, w, h]`` pixels, joint_valid
  ``(42, 1)``, hand_type ``"right"/"left"/"interacting"``, hand_type_valid). No 2D joints.
- ``{prefix}_camera.json``: ``{capture: {"campos"|"camrot"|"focal"|"princpt": {camera: value}}}``
  with campos ``(3,)`` mm (camera centre in world), camrot ``(3, 3)``, focal ``(2,)`` and princpt
  ``(2,)`` pixels.
- ``{prefix}_joint_3d.json``: ``{capture: {frame_idx: {world_coord (42, 3) mm, joint_valid (42, 1),
  hand_type, hand_type_valid}}}``.
- optional ``{prefix}_MANO_NeuralAnnot.json``: ``{capture: {frame_idx: {"right"|"left": null or
  {pose (48,), shape (10,), trans (3,)}}}}`` (axis-angle incl. global orientation, world frame;
  ``trans`` in metres as the MANO layer uses it; kept as stored).

Conventions (verified on the real sample frames): camera coordinates ``X_cam = R (X_world - c)``
with ``R = camrot`` and ``c = campos``; pixels ``u = fx X/Z + cx``, ``v = fy Y/Z + cy``, pixel centres
at integer coordinates. The annotation bbox is the box of the projected valid joints enlarged 1.2x
about its centre. Joints in the files: 42 per image, right hand 0-20, left 21-41, InterHand order;
ihmr's layout ``(2, 21, C)`` in MANO order comes from :func:`ihmr.joint_order.to_two_hand`.

Everything inside is in metres. :class:`InterHandAnnotations` holds all samples of a split as arrays
(``N`` samples); it is built once from the JSON files (indexed by capture / frame / camera) and stored
in an ``.npz`` cache (no pickle) keyed by the input files' paths, sizes and modification times.
Records that cannot be used (missing keys, wrong lengths, NaN, unknown camera or frame, a missing
image) are skipped and listed in :attr:`InterHandAnnotations.skipped` with a reason, and a warning
summarises them; nothing is silently dropped or misaligned.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ihmr.errors import InputError
from ihmr.geometry.camera import project_points, world_to_camera
from ihmr.geometry.crop import apply_affine, crop_affine, crop_image, hand_boxes, normalise_image, pixels_to_normalised
from ihmr.io.files import atomic_write
from ihmr.io.images import load_image
from ihmr.joint_order import to_two_hand
from ihmr.metrics import closely_interacting_mask, interacting_mask

__all__ = [
    "HAND_TYPES",
    "SUBSETS",
    "CACHE_VERSION",
    "InterHandFiles",
    "SkippedSample",
    "InterHandAnnotations",
    "find_split_files",
    "load_interhand",
    "InterHandDataset",
]

log = logging.getLogger(__name__)

#: Hand type codes: ``hand_type[i]`` indexes this tuple.
HAND_TYPES: tuple[str, ...] = ("right", "left", "interacting")
#: Subset names accepted by :meth:`InterHandAnnotations.subset_mask`.
SUBSETS: tuple[str, ...] = ("all", "inter", "inter_close")
#: Bumped whenever the cached arrays change meaning.
CACHE_VERSION = 1
_N_JOINTS = 42
_MM = 1e-3

PathLike = Union[str, os.PathLike]


# ----------------------------------------------------------------------------------------- files
@dataclass(frozen=True)
class InterHandFiles:
    """Annotation files of one split and the folder the images' ``file_name`` is relative to."""

    data: Path
    camera: Path
    joint_3d: Path
    mano: Optional[Path] = None
    image_root: Optional[Path] = None

    @property
    def prefix(self) -> str:
        """File-name prefix of the split (``data`` without ``_data.json``)."""
        return self.data.name[: -len("_data.json")] if self.data.name.endswith("_data.json") else self.data.stem

    def inputs(self) -> list[Path]:
        """The annotation files that exist and are read (cache key inputs)."""
        return [p for p in (self.data, self.camera, self.joint_3d, self.mano) if p is not None]


def find_split_files(
    root: PathLike,
    split: str = "test",
    prefix: Optional[str] = None,
    image_root: Optional[PathLike] = None,
    mano: bool = True,
) -> InterHandFiles:
    """Locate a split's annotation files in ``root``.

    Args:
        root: the data set's root in the official layout (``root/annotations/<split>/*_data.json``,
            images in ``root/images/<split>/``; also what ``ihmr synth`` writes), or the folder
            holding the ``*_data.json``, ``*_camera.json``, ``*_joint_3d.json`` files.
        split: ``"train"``, ``"val"`` or ``"test"``; used when ``prefix`` is None: the unique
            ``*_data.json`` whose name contains ``split`` (case-insensitive) gives the prefix
            (``InterHand2.6M_test_data.json`` and ``test_interhand2.6m_data.json`` both work).
        prefix: explicit file-name prefix (``{prefix}_data.json`` ...).
        image_root: folder the images' ``file_name`` is relative to (default: ``images/<split>`` of
            the official layout when it exists, else the annotation folder).
        mano: look for ``{prefix}_MANO_NeuralAnnot.json`` (used when present).

    Raises:
        InputError: no or several matching files, or a required file is missing.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"InterHand2.6M annotation folder {root} does not exist")
    images: Optional[Path] = None
    if (root / "annotations" / split).is_dir():  # the data set's root, official layout
        root, images = root / "annotations" / split, root / "images" / split
    elif (root / "annotations").is_dir() and any((root / "annotations").glob("*_data.json")):
        root, images = root / "annotations", root / "images" / split
    else:  # the annotation folder itself: images in ../../images/<split> when that exists
        images = root.parent.parent / "images" / split
    if image_root is None and images is not None and images.is_dir():
        image_root = images
    if prefix is None:
        pat = re.compile(rf".*{re.escape(split.lower())}.*_data\.json$")
        cands = sorted(p for p in root.iterdir() if pat.match(p.name.lower()))
        if len(cands) != 1:
            found = ", ".join(p.name for p in cands) or "none"
            raise InputError(f"expected one *{split}*_data.json in {root}, found {found}; pass prefix=")
        prefix = cands[0].name[: -len("_data.json")]
    files = {k: root / f"{prefix}_{k}.json" for k in ("data", "camera", "joint_3d")}
    for k, p in files.items():
        if not p.is_file():
            raise InputError(f"InterHand2.6M {k} file {p} not found")
    mano_path = root / f"{prefix}_MANO_NeuralAnnot.json"
    return InterHandFiles(
        data=files["data"], camera=files["camera"], joint_3d=files["joint_3d"],
        mano=mano_path if mano and mano_path.is_file() else None,
        image_root=Path(image_root) if image_root is not None else root,
    )


def _read_json(path: Path) -> Any:
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


# --------------------------------------------------------------------------------------- records
@dataclass(frozen=True)
class SkippedSample:
    """A record that was not loaded: its image id (-1 if unknown), file name and why."""

    image_id: int
    file_name: str
    reason: str


class _Corrupt(Exception):
    """A record that cannot be used (internal; becomes a :class:`SkippedSample`)."""


def _array(x: Any, shape: tuple[int, ...], what: str, dtype: Any = np.float64) -> np.ndarray:
    try:
        a = np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as e:
        raise _Corrupt(f"{what} is not numeric ({e})") from e
    if a.size != math.prod(shape):
        raise _Corrupt(f"{what} has {a.size} values, expected {math.prod(shape)} {shape}")
    return a.reshape(shape)


def _key(d: Any, k: str, what: str) -> Any:
    if not isinstance(d, dict):
        raise _Corrupt(f"{what} is not an object")
    if k not in d:
        raise _Corrupt(f"{what} has no '{k}'")
    return d[k]


def _hand_type(x: Any, what: str) -> int:
    if x not in HAND_TYPES:
        raise _Corrupt(f"{what} hand_type {x!r} is not one of {HAND_TYPES}")
    return HAND_TYPES.index(x)


# Array fields of InterHandAnnotations (name -> per-sample trailing shape); order = cache order.
_FIELDS: dict[str, tuple[int, ...]] = {
    "image_id": (), "width": (), "height": (), "capture": (), "frame_idx": (),
    "bbox": (4,), "K": (3, 3), "R": (3, 3), "t": (3,),
    "joints_world": (_N_JOINTS, 3), "joints_cam": (_N_JOINTS, 3), "joints_2d": (_N_JOINTS, 2),
    "valid": (_N_JOINTS,), "hand_type": (), "hand_type_valid": (),
    "mano_pose": (2, 48), "mano_shape": (2, 10), "mano_trans": (2, 3), "mano_valid": (2,),
}
_STR_FIELDS = ("file_name", "camera")


@dataclass
class InterHandAnnotations:
    """All usable samples of a split, as arrays over ``N`` samples (metres, pixels).

    Attributes:
        image_id, width, height, capture, frame_idx: ``(N,)`` int64.
        file_name, camera: ``(N,)`` str arrays (``file_name`` relative to ``image_root``).
        bbox: ``(N, 4)`` float64 annotation box ``[x, y, w, h]`` in pixels.
        K: ``(N, 3, 3)`` intrinsics ``[[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (pixels).
        R, t: ``(N, 3, 3)``, ``(N, 3)`` extrinsics, ``X_cam = R X_world + t`` (metres;
            ``t = -R campos``).
        joints_world, joints_cam: ``(N, 42, 3)`` metres, InterHand order (right 0-20, left 21-41);
            invalid joints hold whatever the file has (finite; non-finite values are set to 0).
        joints_2d: ``(N, 42, 2)`` projections of ``joints_cam`` in image pixels.
        valid: ``(N, 42)`` bool = joint_valid of the data file AND of the joint_3d file.
        hand_type: ``(N,)`` int64 index into :data:`HAND_TYPES`; hand_type_valid ``(N,)`` bool.
        mano_pose, mano_shape, mano_trans: ``(N, 2, 48)``, ``(N, 2, 10)``, ``(N, 2, 3)`` NeuralAnnot
            parameters, hand 0 = right (zeros where absent); mano_valid ``(N, 2)`` bool.
        image_root: folder the file names are relative to.
        skipped: records not loaded, with reasons.
        from_cache: True when the arrays came from the ``.npz`` cache (no JSON was parsed).
        has_mano: a NeuralAnnot file was read.
    """

    image_id: np.ndarray
    width: np.ndarray
    height: np.ndarray
    capture: np.ndarray
    frame_idx: np.ndarray
    bbox: np.ndarray
    K: np.ndarray
    R: np.ndarray
    t: np.ndarray
    joints_world: np.ndarray
    joints_cam: np.ndarray
    joints_2d: np.ndarray
    valid: np.ndarray
    hand_type: np.ndarray
    hand_type_valid: np.ndarray
    mano_pose: np.ndarray
    mano_shape: np.ndarray
    mano_trans: np.ndarray
    mano_valid: np.ndarray
    file_name: np.ndarray
    camera: np.ndarray
    image_root: Path = Path(".")
    skipped: list[SkippedSample] = field(default_factory=list)
    from_cache: bool = False
    has_mano: bool = False

    def __len__(self) -> int:
        return int(self.image_id.shape[0])

    # -- views
    @property
    def image_paths(self) -> list[Path]:
        """Absolute-or-relative paths of the images, ``image_root / file_name``."""
        return [self.image_root / str(f) for f in self.file_name]

    @property
    def hand_type_names(self) -> np.ndarray:
        """``(N,)`` str: ``"right"``, ``"left"`` or ``"interacting"``."""
        return np.asarray(HAND_TYPES, dtype=str)[self.hand_type]

    @property
    def campos(self) -> np.ndarray:
        """``(N, 3)`` camera centres in world coordinates (metres), ``-R^T t``."""
        return -np.einsum("nji,nj->ni", self.R, self.t)

    @property
    def joints(self) -> np.ndarray:
        """``(N, 2, 21, 3)`` camera-frame joints in metres, ihmr layout (hand 0 = right, MANO order)."""
        return to_two_hand(self.joints_cam, "interhand")

    @property
    def joints_2d_two_hand(self) -> np.ndarray:
        """``(N, 2, 21, 2)`` image pixels, ihmr layout."""
        return to_two_hand(self.joints_2d, "interhand")

    @property
    def valid_two_hand(self) -> np.ndarray:
        """``(N, 2, 21)`` bool, ihmr layout."""
        return to_two_hand(self.valid, "interhand", axis=-1)

    # -- subsets
    def subset_mask(self, subset: str = "all") -> np.ndarray:
        """``(N,)`` bool membership of a paper subset (Sec. 4.1), via :mod:`ihmr.metrics`:

        - ``"all"``: every sample;
        - ``"inter"``: more than 30 valid 3D joints (:func:`ihmr.metrics.interacting_mask`);
        - ``"inter_close"``: interacting and mean inter-distance < 40 mm
          (:func:`ihmr.metrics.closely_interacting_mask` on camera-frame joints).
        """
        n = len(self)
        if subset not in SUBSETS:
            raise InputError(f"unknown subset {subset!r}; known: {', '.join(SUBSETS)}")
        if subset == "all" or n == 0:
            return np.ones(n, dtype=bool)
        if subset == "inter":
            return interacting_mask(self.valid)
        return closely_interacting_mask(self.joints, self.valid_two_hand)

    def select(self, index: Union[np.ndarray, Sequence[int]]) -> "InterHandAnnotations":
        """A new object with the samples ``index`` (bool mask ``(N,)`` or integer indices)."""
        idx = np.asarray(index)
        if idx.dtype == bool and idx.shape != (len(self),):
            raise InputError(f"mask must be ({len(self)},), got {idx.shape}")
        arrays = {k: getattr(self, k)[idx] for k in (*_FIELDS, *_STR_FIELDS)}
        return replace(self, **arrays, skipped=list(self.skipped))

    def subset(self, subset: str) -> "InterHandAnnotations":
        """The samples of a subset (see :meth:`subset_mask`)."""
        return self.select(self.subset_mask(subset))


# --------------------------------------------------------------------------------------- geometry


# ------------------------------------------------------------------------------------------ parse
def _parse(files: InterHandFiles) -> tuple[dict[str, np.ndarray], list[SkippedSample]]:
    """Read the JSON files once, index them and build the arrays (invalid records are skipped)."""
    data = _read_json(files.data)
    cams = _read_json(files.camera)
    j3d = _read_json(files.joint_3d)
    mano = _read_json(files.mano) if files.mano is not None else None
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

    rows: dict[str, list] = {k: [] for k in (*_FIELDS, *_STR_FIELDS) if k not in ("joints_cam", "joints_2d")}
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
            v_ann = _array(_key(ann, "joint_valid", f"annotation {iid}"), (_N_JOINTS,), f"annotation {iid} joint_valid")
            ht = _hand_type(_key(ann, "hand_type", f"annotation {iid}"), f"annotation {iid}")
            htv = bool(_key(ann, "hand_type_valid", f"annotation {iid}"))
            K, R, t = camera(cap, cam)
            frames = j3d.get(cap)
            rec = frames.get(frame) if isinstance(frames, dict) else None
            if rec is None:
                raise _Corrupt(f"capture {cap} frame {frame} not in the joint_3d file")
            world = _array(_key(rec, "world_coord", f"joint_3d {cap}/{frame}"), (_N_JOINTS, 3), f"joint_3d {cap}/{frame} world_coord")
            v_3d = _array(rec.get("joint_valid", np.ones(_N_JOINTS)), (_N_JOINTS,), f"joint_3d {cap}/{frame} joint_valid")
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
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as e:  # odd types anywhere in the record
            skipped.append(SkippedSample(int(iid) if isinstance(iid, int) else -1, fname, f"malformed record ({e})"))
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
    for name, shape in _FIELDS.items():
        if name in ("joints_cam", "joints_2d"):
            continue
        dt = dtypes.get(name, np.int64 if shape == () else np.float64)
        out[name] = np.array(rows[name], dtype=dt).reshape((len(rows[name]), *shape))
    for name in _STR_FIELDS:
        out[name] = np.array(rows[name], dtype=str).reshape(-1)
    out["joints_cam"] = world_to_camera(out["joints_world"], out["R"], out["t"])
    out["joints_2d"] = project_points(out["joints_cam"], out["K"]) if len(out["K"]) else np.zeros((0, _N_JOINTS, 2))
    return out, skipped


# ------------------------------------------------------------------------------------------ cache
def _cache_key(files: InterHandFiles) -> str:
    h = hashlib.sha256()
    h.update(f"ihmr-interhand-v{CACHE_VERSION}".encode())
    for p in files.inputs():
        st = p.stat()
        h.update(json.dumps([str(p.resolve()), st.st_size, st.st_mtime_ns]).encode())
    return h.hexdigest()


def _cache_path(files: InterHandFiles, cache_dir: Path, key: str) -> Path:
    return cache_dir / f"{files.prefix}.ihmr-cache.{key[:20]}.npz"


def _save_cache(path: Path, key: str, arrays: dict[str, np.ndarray], skipped: list[SkippedSample], has_mano: bool) -> None:
    meta = json.dumps({"key": key, "version": CACHE_VERSION, "has_mano": has_mano,
                       "skipped": [[s.image_id, s.file_name, s.reason] for s in skipped]})
    with atomic_write(path) as fh:
        np.savez(fh, __meta__=np.array(meta), **arrays)
    for old in path.parent.glob(path.name.split(".ihmr-cache.")[0] + ".ihmr-cache.*.npz"):
        if old != path:
            try:
                old.unlink()
            except OSError:
                pass


def _load_cache(path: Path, key: str) -> Optional[tuple[dict[str, np.ndarray], list[SkippedSample], bool]]:
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["__meta__"]))
            if meta.get("key") != key or meta.get("version") != CACHE_VERSION:
                return None
            arrays = {k: z[k] for k in (*_FIELDS, *_STR_FIELDS)}
    except Exception as e:  # unreadable / truncated / old cache: parse again
        log.info("ignoring InterHand2.6M cache %s (%s)", path, e)
        return None
    skipped = [SkippedSample(int(a), str(b), str(c)) for a, b, c in meta["skipped"]]
    return arrays, skipped, bool(meta["has_mano"])


# ------------------------------------------------------------------------------------------- load
def default_cache_dir() -> Path:
    """``$IHMR_CACHE/interhand`` or ``~/.cache/ihmr/interhand``."""
    import os

    root = os.environ.get("IHMR_CACHE") or (Path.home() / ".cache" / "ihmr")
    return Path(root) / "interhand"


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
    key = _cache_key(files)
    cdir: Optional[Path] = None
    if cache_dir is not False:
        cdir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    loaded = _load_cache(_cache_path(files, cdir, key), key) if cdir is not None and _cache_path(files, cdir, key).is_file() else None
    from_cache = loaded is not None
    if loaded is not None:
        arrays, skipped, has_mano = loaded
    else:
        arrays, skipped = _parse(files)
        has_mano = files.mano is not None
        if cdir is not None:
            try:
                _save_cache(_cache_path(files, cdir, key), key, arrays, skipped, has_mano)
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


# ---------------------------------------------------------------------------------------- dataset
class InterHandDataset(torch.utils.data.Dataset):
    """InterHand2.6M samples as tensors, cropped around both hands (deterministic, no augmentation).

    Each item is a dict:

    - ``image``: ``(3, S, S)`` float32 normalised (mean 0.5 / std 0.5) or, with ``normalise=False``,
      ``(S, S, 3)`` uint8;
    - ``j2d``: ``(2, 21, 2)`` crop pixels; ``j2d_norm``: ``(2, 21, 2)`` in ``[-1, 1]``;
      ``j2d_image``: ``(2, 21, 2)`` original image pixels;
    - ``j3d``: ``(2, 21, 3)`` camera frame, metres (each hand minus its own wrist with
      ``root_relative``); ``root``: ``(2, 3)`` the wrists (metres, camera frame); ``root_valid`` ``(2,)``;
    - ``valid``: ``(2, 21)`` bool (with ``root_relative`` a hand without a valid wrist is all invalid);
    - ``hand_type``: int64 index into :data:`HAND_TYPES`; ``hand_type_vec``: ``(2,)`` float32 (right
      present, left present); ``hand_type_valid``: bool;
    - ``K``: ``(3, 3)`` image intrinsics; ``K_crop``: ``(3, 3)`` intrinsics of the crop;
      ``affine``: ``(2, 3)`` image pixels -> crop pixels; ``R`` ``(3, 3)``, ``t`` ``(3,)`` metres;
    - ``mano_pose`` ``(2, 48)``, ``mano_shape`` ``(2, 10)``, ``mano_trans`` ``(2, 3)``, ``mano_valid``
      ``(2,)`` when the split has NeuralAnnot parameters;
    - ``index``, ``image_id``.

    Joints are in ihmr's layout (hand 0 = right, MANO order, via :mod:`ihmr.joint_order`).

    Args:
        annotations: an :class:`InterHandAnnotations` or anything :func:`load_interhand` accepts.
        subset: ``"all"``, ``"inter"`` or ``"inter_close"``.
        size: crop size ``S`` (pixels).
        padding: enlargement of the valid joints' box (see :func:`hand_boxes`).
        use_bbox: unite the joint box with the annotation bbox.
        context: keep the image around the hand box inside the square crop (default: zero-pad
            outside the box, as the paper).
        normalise: return the float image normalised, else uint8.
        root_relative: subtract each hand's wrist from its joints.
        **load_kwargs: passed to :func:`load_interhand` when ``annotations`` is not loaded yet.
    """

    def __init__(
        self,
        annotations: Union[InterHandAnnotations, PathLike, InterHandFiles],
        subset: str = "all",
        size: int = 224,
        padding: float = 1.2,
        use_bbox: bool = False,
        context: bool = False,
        normalise: bool = True,
        root_relative: bool = False,
        **load_kwargs: Any,
    ) -> None:
        ann = annotations if isinstance(annotations, InterHandAnnotations) else load_interhand(annotations, **load_kwargs)
        if size <= 0:
            raise InputError(f"size must be positive, got {size}")
        self.annotations = ann.subset(subset)
        self.subset, self.size, self.context, self.normalise, self.root_relative = subset, size, context, normalise, root_relative
        a = self.annotations
        self.boxes = hand_boxes(a.joints_2d, a.valid, a.bbox, padding=padding, use_bbox=use_bbox)  # (N, 4)
        self.affine = crop_affine(self.boxes, size)  # (N, 2, 3)
        self._j2d_crop = apply_affine(a.joints_2d, self.affine)  # (N, 42, 2)

    def __len__(self) -> int:
        return len(self.annotations)

    def load_image(self, i: int) -> np.ndarray:
        """The full RGB image ``(H, W, 3)`` uint8 of sample ``i`` (via :func:`ihmr.io.images.load_image`).

        Raises:
            InputError: the file is missing or unreadable, or its size differs from the annotation's.
        """
        a = self.annotations
        path = a.image_paths[i]
        img = load_image(path)
        if img.shape[:2] != (int(a.height[i]), int(a.width[i])):
            raise InputError(f"{path}: image is {img.shape[1]}x{img.shape[0]} pixels, the annotation says "
                             f"{int(a.width[i])}x{int(a.height[i])}")
        return img

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        if not -len(self) <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} samples")
        i = i % len(self)
        a, S = self.annotations, self.size
        A = self.affine[i]
        crop = crop_image(self.load_image(i), A, S, box=None if self.context else self.boxes[i])
        f32 = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
        valid = to_two_hand(a.valid[i], "interhand", axis=-1)
        j3d = to_two_hand(a.joints_cam[i], "interhand")
        root, root_valid = j3d[:, 0].copy(), valid[:, 0].copy()
        if self.root_relative:
            j3d = j3d - root[:, None]
            valid = valid & root_valid[:, None]
        A3 = np.vstack([A, [0.0, 0.0, 1.0]])
        ht = int(a.hand_type[i])
        item: dict[str, Tensor] = {
            "image": normalise_image(crop) if self.normalise else torch.from_numpy(crop),
            "j2d": f32(to_two_hand(self._j2d_crop[i], "interhand")),
            "j2d_norm": f32(to_two_hand(pixels_to_normalised(self._j2d_crop[i], S), "interhand")),
            "j2d_image": f32(to_two_hand(a.joints_2d[i], "interhand")),
            "j3d": f32(j3d), "root": f32(root), "root_valid": torch.as_tensor(root_valid),
            "valid": torch.as_tensor(valid),
            "hand_type": torch.tensor(ht, dtype=torch.long),
            "hand_type_vec": torch.tensor([ht != 1, ht != 0], dtype=torch.float32),
            "hand_type_valid": torch.tensor(bool(a.hand_type_valid[i])),
            "K": f32(a.K[i]), "K_crop": f32(A3 @ a.K[i]), "affine": f32(A), "R": f32(a.R[i]), "t": f32(a.t[i]),
            "index": torch.tensor(i, dtype=torch.long), "image_id": torch.tensor(int(a.image_id[i]), dtype=torch.long),
        }
        if a.has_mano:
            item.update(mano_pose=f32(a.mano_pose[i]), mano_shape=f32(a.mano_shape[i]),
                        mano_trans=f32(a.mano_trans[i]), mano_valid=torch.as_tensor(a.mano_valid[i]))
        return item
