"""Load the official MANO model files (``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``) safely, without chumpy.

The files are Python-2 pickles of a dict holding numpy arrays, a ``scipy.sparse`` joint regressor
and chumpy ``Ch`` objects. :func:`read_mano_pickle` reads them through the *restricted* unpickler of
:mod:`ihmr.handmodel.safe_pickle` (numpy arrays, scipy.sparse matrices and plain chumpy arrays
only; anything else is refused with :class:`ihmr.errors.UnsafePickleError`, nothing named by the
file is ever imported or called). chumpy itself is not needed (and not imported even where it is
installed).

Conventions of the returned :class:`HandModelData` (see its docstring): pose relative to the flat
hand (``flat_hand_mean=True``), ``faces`` = MANO's triangles plus a cap of the wrist hole made of
existing vertices (778 vertices, 1538 + 14 faces), outward oriented.

Known bug of the official ``MANO_LEFT.pkl``: the x component of its shape blend shapes
(``shapedirs[:, 0, :]``) has the wrong sign: it equals the *right* model's instead of its negation,
so a left hand with betas ``b`` is not the mirror image of the right hand with the same ``b``.
:func:`load_mano_pkl` negates it for left models (``fix_left_shapedirs=True``, the default). When the
right model's shape blend shapes are available (``right_shapedirs``, or :func:`load_mano_dir` with
both files) the bug is *detected* instead (the community check: the left x component is closer to
the right one than to its negation) so that an already corrected file is not flipped back.

MANO is not redistributable; get it from https://mano.is.tue.mpg.de (registration and licence
required).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ihmr.errors import InputError, ModelFileError, UnsafePickleError
from ihmr.geometry.mesh import cap_holes, signed_volume
from ihmr.geometry.rotations import axis_angle_to_matrix
from ihmr.handmodel.data import NUM_JOINTS, HandModelData
from ihmr.handmodel.lbs import batch_rigid_transform
from ihmr.handmodel.safe_pickle import replace_stand_ins, restricted_loads

__all__ = [
    "MANO_TIP_VERTEX_IDS",
    "MANO_URL",
    "load_mano_pkl",
    "load_mano_dir",
    "read_mano_pickle",
    "infer_side",
    "pca_to_axis_angle",
    "axis_angle_to_pca",
    "pose_from_mano_convention",
]

#: Fingertip vertices of MANO (thumb, index, middle, ring, pinky), as used by InterHand2.6M.
MANO_TIP_VERTEX_IDS = np.array([744, 320, 443, 554, 671], dtype=np.int64)
MANO_URL = "https://mano.is.tue.mpg.de"
_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
_WHERE = f"Get the MANO model files (MANO_RIGHT.pkl, MANO_LEFT.pkl) from {MANO_URL} (registration and licence required)."


def read_mano_pickle(path: str | Path) -> dict:
    """Read a MANO ``.pkl`` through the restricted unpickler.

    Returns:
        the file's dict with chumpy arrays as numpy arrays and the joint regressor as a
        ``scipy.sparse`` matrix (other entries, e.g. ``bs_style``, as stored).

    Raises:
        ModelFileError: missing, truncated or corrupt file, not a dict, an unreadable chumpy entry.
        UnsafePickleError: the file names a class or function outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"MANO model file not found: {path}. {_WHERE}")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ModelFileError(f"cannot read MANO model file {path}: {e}") from e
    try:
        obj = restricted_loads(raw)
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:  # anything the pickle machinery raises on bad bytes
        raise ModelFileError(f"MANO model file {path} is truncated or corrupt ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ModelFileError(f"MANO model file {path} does not hold a dict (got {type(obj).__name__})")
    return {str(k): replace_stand_ins(v, str(k)) for k, v in obj.items()}


# --------------------------------------------------------------------------------------------
# Side inference and the left shapedirs fix
# --------------------------------------------------------------------------------------------


def _posed_joints(J: np.ndarray, parents: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Forward kinematics of the joints only (:func:`ihmr.handmodel.lbs.batch_rigid_transform`):
    ``J (16, 3)``, ``pose (16, 3)`` -> ``(16, 3)``."""
    R = axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float64))
    posed, _ = batch_rigid_transform(R[None], torch.as_tensor(J, dtype=torch.float64)[None], torch.as_tensor(parents))
    return posed[0].numpy()


def infer_side(v_template: np.ndarray, J_regressor: np.ndarray, parents: np.ndarray,
               hands_mean: Optional[np.ndarray]) -> Optional[str]:
    """Tell a right from a left MANO-style model by the chirality of its rest joints.

    ``hands_mean`` (MANO's mean, relaxed finger pose) curls the fingers towards the palm, which
    gives the palm normal ``n``; with ``u`` = wrist -> middle finger base and ``s`` = wrist ->
    thumb, a right hand has ``s . (u x n) > 0`` (palm towards the viewer, fingers up: the thumb is
    on the viewer's right), a left hand ``< 0``. MANO joint order is assumed.

    Returns:
        ``"right"``, ``"left"``, or ``None`` when the data cannot tell (no ``hands_mean``, a flat
        mean pose, or a thumb in the palm plane's middle).
    """
    if hands_mean is None or np.asarray(hands_mean).size != 45:
        return None
    J = np.asarray(J_regressor, dtype=np.float64) @ np.asarray(v_template, dtype=np.float64)
    pose = np.zeros((NUM_JOINTS, 3))
    pose[1:] = np.asarray(hands_mean, dtype=np.float64).reshape(15, 3)
    Jp = _posed_joints(J, np.asarray(parents), pose)
    distal, bases = [3, 6, 9, 12], [1, 4, 7, 10]
    d = (Jp[distal] - J[distal]).mean(0)
    u = J[4] - J[0]
    u = u / max(np.linalg.norm(u), 1e-12)
    n = d - (d @ u) * u
    s = J[13:16].mean(0) - J[bases].mean(0)
    denom = np.linalg.norm(n) * np.linalg.norm(s)
    if denom < 1e-12:
        return None
    score = float(s @ np.cross(u, n)) / denom
    if abs(score) < 0.1:
        return None
    return "right" if score > 0 else "left"


def _left_shapedirs_buggy(left_x: np.ndarray, right_x: np.ndarray) -> bool:
    """The community check: the left model's x shape component equals the right's (bug) rather
    than its negation (mirror)."""
    return float(np.linalg.norm(left_x - right_x)) < float(np.linalg.norm(left_x + right_x))


def _side_from_name(path: Path) -> Optional[str]:
    name = path.name.lower()
    left, right = "left" in name, "right" in name
    if left != right:
        return "left" if left else "right"
    return None


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def _parents_from_kintree(kintree: np.ndarray) -> np.ndarray:
    """``(2, J)`` kintree table (row 0 parent ids, row 1 joint ids; root parent = 2**32 - 1) ->
    ``(J,)`` parent column indices with ``-1`` for the root."""
    kintree = np.asarray(kintree).astype(np.int64)
    if kintree.ndim != 2 or kintree.shape[0] != 2:
        raise ModelFileError(f"kintree_table must be (2, J), got {kintree.shape}")
    col = {int(jid): i for i, jid in enumerate(kintree[1])}
    parents = np.array([col.get(int(p), -1) for p in kintree[0]], dtype=np.int64)
    parents[0] = -1
    return parents


def load_mano_pkl(
    path: str | Path,
    side: Optional[str] = None,
    flat_hand_mean: bool = True,
    fix_left_shapedirs: bool = True,
    right_shapedirs: Optional[np.ndarray] = None,
) -> HandModelData:
    """Load an official MANO file as :class:`HandModelData` (no chumpy needed).

    Args:
        path: ``MANO_RIGHT.pkl`` or ``MANO_LEFT.pkl``.
        side: ``"right"`` / ``"left"``; when ``None``, from the file name (``left`` / ``right`` in
            it), else from the data (:func:`infer_side`).
        flat_hand_mean: must be ``True``: ihmr's poses are relative to the flat hand (MANO's
            ``flat_hand_mean=True``); ``hands_mean`` is kept for the PCA space. Poses given in
            MANO's default convention (relative to the mean pose) convert with
            :func:`pose_from_mano_convention`.
        fix_left_shapedirs: for a left model, negate ``shapedirs[:, 0, :]`` (the official
            ``MANO_LEFT.pkl`` sign bug, see the module docstring); ``False`` keeps the file's values.
        right_shapedirs: ``(V, 3, K)`` shape blend shapes of the matching right model; when given,
            the left fix is applied only if the bug is detected.

    Returns:
        validated :class:`HandModelData` (float64). ``meta`` records the source, whether the left
        fix was applied and why, and whether the file's triangles were flipped to face outwards.

    Raises:
        ModelFileError: missing/truncated/corrupt file (with where to get MANO), missing entries
            (listed), wrong shapes, undecidable side.
        UnsafePickleError: the file references anything outside the allow-list.
        InputError: a bad ``side`` or ``flat_hand_mean=False``.
    """
    path = Path(path)
    if side is not None and side not in ("right", "left"):
        raise InputError(f"side must be 'right', 'left' or None, got {side!r}")
    if not flat_hand_mean:
        raise InputError(
            "ihmr's hand pose is relative to the flat hand (flat_hand_mean=True); convert poses given "
            "relative to MANO's mean pose with pose_from_mano_convention(theta, data.hands_mean)"
        )
    d = read_mano_pickle(path)
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ModelFileError(f"MANO model file {path} lacks entries: {', '.join(missing)}")
    meta: dict[str, Any] = dict(source=str(path), licence=f"MANO licence ({MANO_URL})")
    try:
        v_template = np.asarray(d["v_template"], dtype=np.float64)
        if v_template.ndim != 2 or v_template.shape[1] != 3:
            raise ModelFileError(f"v_template must be (V, 3), got {v_template.shape}")
        V = v_template.shape[0]
        shapedirs = np.array(d["shapedirs"], dtype=np.float64)
        posedirs = np.asarray(d["posedirs"], dtype=np.float64).reshape(V, 3, -1)
        J_reg = d["J_regressor"]
        J_reg = np.asarray(J_reg.toarray() if hasattr(J_reg, "toarray") else J_reg, dtype=np.float64)
        weights = np.asarray(d["weights"], dtype=np.float64)
        parents = _parents_from_kintree(d["kintree_table"])
        faces_open = np.asarray(d["f"]).astype(np.int64)
        comps = d.get("hands_components")
        comps = None if comps is None else np.asarray(comps, dtype=np.float64)
        mean = d.get("hands_mean")
        mean = None if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1)
        if faces_open.ndim != 2 or faces_open.shape[1] != 3 or faces_open.min() < 0 or faces_open.max() >= V:
            raise ModelFileError(f"f must be (F, 3) vertex indices below {V}, got {faces_open.shape}")

        if side is None:
            side = _side_from_name(path)
            meta["side_from"] = "file name"
        if side is None and J_reg.shape == (NUM_JOINTS, V) and parents.shape == (NUM_JOINTS,):
            side = infer_side(v_template, J_reg, parents, mean)
            meta["side_from"] = "data (chirality of the mean pose)"
        if side is None:
            raise ModelFileError(f"cannot tell the side of {path}; pass side='right' or 'left'")
        meta.setdefault("side_from", "argument")

        meta["fixed_left_shapedirs"] = False
        if side == "left":
            if not fix_left_shapedirs:
                meta["left_shapedirs"] = "kept as in the file (fix_left_shapedirs=False)"
            elif right_shapedirs is not None and np.shape(right_shapedirs) == shapedirs.shape:
                if _left_shapedirs_buggy(shapedirs[:, 0], np.asarray(right_shapedirs)[:, 0]):
                    shapedirs[:, 0, :] *= -1.0
                    meta["fixed_left_shapedirs"] = True
                    meta["left_shapedirs"] = "x component negated (sign bug detected against the right model)"
                else:
                    meta["left_shapedirs"] = "kept: already the mirror of the right model"
            else:
                shapedirs[:, 0, :] *= -1.0
                meta["fixed_left_shapedirs"] = True
                meta["left_shapedirs"] = "x component negated (official MANO_LEFT.pkl sign bug assumed)"

        try:
            faces = cap_holes(v_template, faces_open)
        except InputError as e:
            raise ModelFileError(f"MANO model file {path}: cannot close the mesh ({e})") from e
        meta["faces_flipped"] = bool(signed_volume(v_template, faces) < 0)
        if meta["faces_flipped"]:  # make the surface outward oriented (caps are consistent with f)
            faces, faces_open = faces[:, ::-1].copy(), faces_open[:, ::-1].copy()
        data = HandModelData(
            name="mano",
            side=side,
            v_template=v_template,
            shapedirs=shapedirs,
            posedirs=posedirs,
            J_regressor=J_reg,
            weights=weights,
            parents=parents,
            faces=faces,
            faces_open=faces_open,
            tip_vertex_ids=MANO_TIP_VERTEX_IDS.copy(),
            hands_components=comps,
            hands_mean=mean,
            meta=meta,
        )
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"MANO model file {path} has unexpected contents ({type(e).__name__}: {e})") from e
    return data.validate()


def _find_in_dir(mano_dir: Path, fname: str) -> Optional[Path]:
    for cand in (mano_dir / fname, mano_dir / "models" / fname, mano_dir / "mano" / fname,
                 mano_dir / "mano" / "models" / fname):
        if cand.is_file():
            return cand
    return None


def load_mano_dir(mano_dir: str | Path, side: str = "right", **kwargs: Any) -> HandModelData:
    """Find ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` in ``mano_dir`` (or its ``models/``, ``mano/``,
    ``mano/models/`` subfolders) and load it with :func:`load_mano_pkl`.

    For the left model, the right model found beside it (if any, and readable) is used to detect
    the left shapedirs sign bug instead of assuming it.
    """
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', got {side!r}")
    mano_dir = Path(mano_dir)
    fname = f"MANO_{side.upper()}.pkl"
    path = _find_in_dir(mano_dir, fname)
    if path is None:
        raise ModelFileError(f"no {fname} in {mano_dir} (also looked in models/, mano/, mano/models/). {_WHERE}")
    if side == "left" and kwargs.get("fix_left_shapedirs", True) and kwargs.get("right_shapedirs") is None:
        right = path.with_name("MANO_RIGHT.pkl")
        if right.is_file():
            try:
                kwargs["right_shapedirs"] = np.asarray(read_mano_pickle(right)["shapedirs"], dtype=np.float64)
            except (ModelFileError, KeyError):
                pass  # an unreadable right model: fall back to assuming the official left file
    return load_mano_pkl(path, side=side, **kwargs)


# --------------------------------------------------------------------------------------------
# Pose conventions and the PCA pose space
# --------------------------------------------------------------------------------------------


def _as_like(arr: Any, ref: Any) -> Any:
    """``arr`` as a torch tensor like ``ref`` when ``ref`` is one, else as a numpy array."""
    if type(ref).__module__.startswith("torch"):
        return torch.as_tensor(np.asarray(arr) if not isinstance(arr, torch.Tensor) else arr,
                               dtype=ref.dtype, device=ref.device)
    return np.asarray(arr)


def pca_to_axis_angle(coeffs: Any, hands_components: Any, hands_mean: Any = None) -> Any:
    """MANO PCA pose coefficients -> finger axis-angles relative to the flat hand.

    ``theta = coeffs @ hands_components[:n] (+ hands_mean)``, as MANO / smplx do; pass
    ``hands_mean`` for MANO's PCA space (it is centred on the mean pose).

    Args:
        coeffs: ``(*, n)`` with ``n <= 45`` (numpy array or torch tensor).
        hands_components: ``(45, 45)`` (rows = components).
        hands_mean: ``(45,)`` or ``None``.

    Returns:
        ``(*, 45)`` axis-angles (radians), same array type as ``coeffs``.
    """
    comps = _as_like(hands_components, coeffs)
    n = coeffs.shape[-1]
    if comps.ndim != 2 or comps.shape[-1] != 45 or not 1 <= n <= comps.shape[0]:
        raise InputError(f"coeffs (*, n) with 1 <= n <= {comps.shape[0]} and components (N, 45) expected, "
                         f"got {tuple(coeffs.shape)} and {tuple(comps.shape)}")
    theta = coeffs @ comps[:n]
    return theta if hands_mean is None else theta + _as_like(hands_mean, coeffs)


def axis_angle_to_pca(theta: np.ndarray, hands_components: np.ndarray, num_comps: int = 45,
                      hands_mean: Optional[np.ndarray] = None) -> np.ndarray:
    """Least-squares inverse of :func:`pca_to_axis_angle` (numpy).

    Args:
        theta: ``(*, 45)`` finger axis-angles relative to the flat hand.
        hands_components: ``(45, 45)``.
        num_comps: number of coefficients ``n``.
        hands_mean: ``(45,)`` or ``None`` (as given to :func:`pca_to_axis_angle`).

    Returns:
        ``(*, n)`` coefficients minimising ``|pca_to_axis_angle(c) - theta|``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    A = np.asarray(hands_components, dtype=np.float64)
    if theta.shape[-1:] != (45,) or A.ndim != 2 or A.shape[1] != 45 or not 1 <= num_comps <= A.shape[0]:
        raise InputError(f"theta (*, 45), components (N, 45) and 1 <= num_comps <= N expected, got "
                         f"{theta.shape}, {A.shape}, {num_comps}")
    t = theta if hands_mean is None else theta - np.asarray(hands_mean, dtype=np.float64)
    sol = np.linalg.lstsq(A[:num_comps].T, t.reshape(-1, 45).T, rcond=None)[0].T
    return sol.reshape(*theta.shape[:-1], num_comps)


def pose_from_mano_convention(theta: Any, hands_mean: Any) -> Any:
    """Finger pose ``(*, 45)`` relative to MANO's mean pose (``flat_hand_mean=False``, MANO's
    default) -> relative to the flat hand (ihmr): ``theta + hands_mean``."""
    return theta + _as_like(hands_mean, theta)

