"""Load the official MANO model files (``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``) safely, without chumpy.

The files are Python-2 pickles holding numpy arrays, a ``scipy.sparse`` joint regressor and chumpy
``Ch`` objects. They are read by a *restricted* unpickler: only numpy's array reconstruction, the
sparse-matrix classes and chumpy's ``Ch`` are allowed, the latter two replaced by inert stand-ins that
only record their pickled state. Any other class or function named in the file is refused with
:class:`ihmr.errors.UnsafePickleError` before anything is imported or called.

MANO is not redistributable; get it from https://mano.is.tue.mpg.de (licence required).
"""

from __future__ import annotations

import copyreg
import io
import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ihmr.errors import ModelFileError, UnsafePickleError
from ihmr.geometry.mesh import cap_holes, signed_volume
from ihmr.handmodel.data import HandModelData

__all__ = [
    "MANO_TIP_VERTEX_IDS",
    "load_mano_pkl",
    "load_mano_dir",
    "read_mano_pickle",
    "pca_to_axis_angle",
    "axis_angle_to_pca",
    "pose_from_mano_convention",
]

#: Fingertip vertices of MANO (thumb, index, middle, ring, pinky), as used by InterHand2.6M.
MANO_TIP_VERTEX_IDS = np.array([744, 320, 443, 554, 671], dtype=np.int64)
_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
_WHERE = "Get the MANO model files from https://mano.is.tue.mpg.de (registration and licence required)."


class _Stub:
    """Inert stand-in for a pickled object of an allowed foreign class: keeps its state only."""

    _origin = "?"

    def __init__(self, *args: Any) -> None:  # called by copyreg._reconstructor with a state of None
        self._args = args

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __reduce__(self):  # never re-pickled
        raise TypeError("stand-in objects cannot be pickled")


class _ChStub(_Stub):
    _origin = "chumpy"


class _SparseStub(_Stub):
    _origin = "scipy.sparse"


_NUMPY_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}
_SAFE_BUILTINS = {"object": object, "set": set, "frozenset": frozenset}
_SPARSE_MODULES = {"scipy.sparse", "scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr",
                   "scipy.sparse.compressed", "scipy.sparse._compressed"}
_SPARSE_CLASSES = {"csc_matrix", "csr_matrix"}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY_ALLOWED:
            return super().find_class(module, name)
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":
            return copyreg._reconstructor
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[name]
        if (module, name) == ("_codecs", "encode"):  # how protocol-2 pickles spell bytes
            import codecs

            return codecs.encode
        if module.startswith("chumpy"):
            return _ChStub
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            return type(name, (_SparseStub,), {"_format": name[:3]})
        raise UnsafePickleError(
            f"refusing to load {module}.{name} from a MANO file: only numpy arrays, scipy.sparse matrices "
            "and chumpy arrays are allowed (nothing was imported or executed)"
        )


def _to_numpy(value: Any, key: str) -> Any:
    """Replace stand-ins by numpy / scipy values."""
    if isinstance(value, _ChStub):
        state = getattr(value, "_state", None)
        if isinstance(state, dict):
            for k in ("x", "a"):
                if isinstance(state.get(k), np.ndarray):
                    return np.asarray(state[k])
        raise ModelFileError(f"MANO entry '{key}' is a chumpy expression without a stored array value; "
                             "re-export the file with plain arrays")
    if isinstance(value, _SparseStub):
        import scipy.sparse as sp

        st = getattr(value, "_state", None) or {}
        try:
            shape = tuple(st.get("_shape", st.get("shape")))
            cls = sp.csc_matrix if value._format == "csc" else sp.csr_matrix
            return cls((np.asarray(st["data"]), np.asarray(st["indices"]), np.asarray(st["indptr"])), shape=shape)
        except Exception as e:
            raise ModelFileError(f"MANO entry '{key}': malformed sparse matrix ({e})") from e
    return value


def read_mano_pickle(path: str | Path) -> dict:
    """Read a MANO ``.pkl`` through the restricted unpickler; values are numpy / scipy objects."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"MANO model file not found: {path}. {_WHERE}")
    raw = path.read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise ModelFileError(f"MANO model file {path} is truncated or corrupt ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ModelFileError(f"MANO model file {path} does not hold a dict (got {type(obj).__name__})")
    return {str(k): _to_numpy(v, str(k)) for k, v in obj.items()}


def load_mano_pkl(
    path: str | Path, side: Optional[str] = None, fix_left_shapedirs: bool = True
) -> HandModelData:
    """Load an official MANO file as :class:`HandModelData`.

    Args:
        path: ``MANO_RIGHT.pkl`` or ``MANO_LEFT.pkl``.
        side: ``"right"`` / ``"left"``; inferred from the file name when ``None``.
        fix_left_shapedirs: negate the x component of the left model's shape blend shapes, fixing the
            known sign bug of the official ``MANO_LEFT.pkl`` (so that a left shape is the mirror of
            the right one with the same betas).

    The pose convention is relative to the flat hand (``flat_hand_mean=True``); MANO's
    ``hands_mean`` is kept for the PCA space and :func:`pose_from_mano_convention`.
    """
    path = Path(path)
    if side is None:
        name = path.name.lower()
        side = "left" if "left" in name else "right" if "right" in name else None
        if side is None:
            raise ModelFileError(f"cannot tell the side of {path}; pass side='right' or 'left'")
    if side not in ("right", "left"):
        raise ModelFileError(f"side must be 'right' or 'left', got {side!r}")
    d = read_mano_pickle(path)
    missing = [k for k in _REQUIRED if k not in d]
    if missing:
        raise ModelFileError(f"MANO model file {path} lacks entries: {', '.join(missing)}")
    try:
        v_template = np.asarray(d["v_template"], dtype=np.float64)
        V = v_template.shape[0]
        shapedirs = np.asarray(d["shapedirs"], dtype=np.float64)
        if side == "left" and fix_left_shapedirs:
            shapedirs = shapedirs.copy()
            shapedirs[:, 0, :] *= -1.0
        posedirs = np.asarray(d["posedirs"], dtype=np.float64)
        J_reg = d["J_regressor"]
        J_reg = np.asarray(J_reg.toarray() if hasattr(J_reg, "toarray") else J_reg, dtype=np.float64)
        kintree = np.asarray(d["kintree_table"]).astype(np.int64)
        parents = kintree[0].copy()
        parents[0] = -1
        faces_open = np.asarray(d["f"]).astype(np.int64)
        faces = cap_holes(v_template, faces_open)
        if signed_volume(v_template, faces) < 0:  # make the closed surface outward oriented
            faces, faces_open = faces[:, ::-1].copy(), faces_open[:, ::-1].copy()
        comps = d.get("hands_components")
        mean = d.get("hands_mean")
        data = HandModelData(
            name="mano",
            side=side,
            v_template=v_template,
            shapedirs=shapedirs,
            posedirs=posedirs.reshape(V, 3, -1),
            J_regressor=J_reg,
            weights=np.asarray(d["weights"], dtype=np.float64),
            parents=parents,
            faces=faces,
            faces_open=faces_open,
            tip_vertex_ids=MANO_TIP_VERTEX_IDS.copy(),
            hands_components=None if comps is None else np.asarray(comps, dtype=np.float64),
            hands_mean=None if mean is None else np.asarray(mean, dtype=np.float64).reshape(-1),
            meta=dict(source=str(path), fixed_left_shapedirs=bool(side == "left" and fix_left_shapedirs)),
        )
    except ModelFileError:
        raise
    except Exception as e:
        raise ModelFileError(f"MANO model file {path} has unexpected contents ({type(e).__name__}: {e})") from e
    return data.validate()


def load_mano_dir(mano_dir: str | Path, side: str = "right", **kwargs: Any) -> HandModelData:
    """Find ``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl`` in ``mano_dir`` (or its ``models/`` subfolder) and load it."""
    mano_dir = Path(mano_dir)
    fname = f"MANO_{side.upper()}.pkl"
    for cand in (mano_dir / fname, mano_dir / "models" / fname, mano_dir / "mano" / fname):
        if cand.is_file():
            return load_mano_pkl(cand, side=side, **kwargs)
    raise ModelFileError(f"no {fname} in {mano_dir} (also looked in models/ and mano/). {_WHERE}")


def pca_to_axis_angle(coeffs: np.ndarray, hands_components: np.ndarray, hands_mean: Optional[np.ndarray] = None) -> np.ndarray:
    """MANO PCA pose coefficients ``(*, n)`` -> finger axis-angles ``(*, 45)`` (plus ``hands_mean`` if given)."""
    n = coeffs.shape[-1]
    theta = coeffs @ hands_components[:n]
    return theta if hands_mean is None else theta + hands_mean


def axis_angle_to_pca(theta: np.ndarray, hands_components: np.ndarray, n: int, hands_mean: Optional[np.ndarray] = None) -> np.ndarray:
    """Least-squares inverse of :func:`pca_to_axis_angle`: ``(*, 45)`` -> ``(*, n)``."""
    t = theta if hands_mean is None else theta - hands_mean
    A = hands_components[:n]  # (n, 45)
    return np.linalg.lstsq(A.T, t.reshape(-1, 45).T, rcond=None)[0].T.reshape(*theta.shape[:-1], n)


def pose_from_mano_convention(theta: np.ndarray, hands_mean: np.ndarray) -> np.ndarray:
    """Finger pose given in MANO's ``flat_hand_mean=False`` convention -> ihmr's (relative to the flat hand)."""
    return theta + hands_mean
