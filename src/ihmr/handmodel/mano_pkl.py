"""Load the official MANO model files (``MANO_RIGHT.pkl`` / ``MANO_LEFT.pkl``) safely, without chumpy.

The files are Python-2 pickles of a dict holding numpy arrays, a ``scipy.sparse`` joint regressor
and chumpy ``Ch`` objects. They are read by a *restricted* unpickler (:func:`read_mano_pickle`)
whose ``find_class`` resolves only

- numpy's array reconstruction (``numpy.core.multiarray._reconstruct`` / ``scalar``,
  ``numpy.ndarray``, ``numpy.dtype``, also spelled ``numpy._core...``),
- ``scipy.sparse`` csc/csr matrix classes (any of the ``scipy.sparse``, ``scipy.sparse.csc``,
  ``scipy.sparse._csc``, ... spellings), replaced by an inert stand-in rebuilt as a real
  scipy matrix from its recorded arrays afterwards,
- chumpy classes (``chumpy.ch.Ch``, ``chumpy.ch_ops.*``, ``chumpy.reordering.*``, ...), replaced by
  an inert stand-in that records the pickled state; a plain ``Ch`` yields its stored array
  (state key ``'x'``), any other chumpy expression is refused with a clear error,
- ``copyreg._reconstructor`` (for the stand-ins only), ``builtins.set`` / ``frozenset`` /
  ``object`` and ``_codecs.encode`` restricted to latin-1 (how Python 3 writes bytes at protocol 2).

Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) is refused with
:class:`ihmr.errors.UnsafePickleError` naming it; nothing named by the file is ever imported or
called. chumpy itself is not needed (and not imported even where it is installed).

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

import io
import pickle
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ihmr.errors import InputError, ModelFileError, UnsafePickleError
from ihmr.geometry.mesh import cap_holes, signed_volume
from ihmr.geometry.rotations import axis_angle_to_matrix
from ihmr.handmodel.data import NUM_JOINTS, HandModelData

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
    "pose_to_mano_convention",
]

#: Fingertip vertices of MANO (thumb, index, middle, ring, pinky), as used by InterHand2.6M.
MANO_TIP_VERTEX_IDS = np.array([744, 320, 443, 554, 671], dtype=np.int64)
MANO_URL = "https://mano.is.tue.mpg.de"
_REQUIRED = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
_WHERE = f"Get the MANO model files (MANO_RIGHT.pkl, MANO_LEFT.pkl) from {MANO_URL} (registration and licence required)."


# --------------------------------------------------------------------------------------------
# Restricted unpickling
# --------------------------------------------------------------------------------------------


class _Stub:
    """Inert stand-in for a pickled object of an allowed foreign class: records its state only."""

    _origin = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "_Stub":
        obj = super().__new__(cls)
        obj._args = args
        obj._state = None
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # REDUCE calls cls(*args): keep inert
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2 and isinstance(state[0], (dict, type(None))):
            slots = state[1] if isinstance(state[1], dict) else {}
            state = {**(state[0] or {}), **slots}
        self._state = state

    def __reduce__(self):  # never re-pickled
        raise TypeError("stand-in objects cannot be pickled")

    def __repr__(self) -> str:
        return f"<stand-in for {self._origin}>"


_STUB_CLASSES: dict[tuple[str, str], type] = {}


class _ChStub(_Stub):
    _origin = "chumpy"


class _SparseStub(_Stub):
    _origin = "scipy.sparse"
    _format = "csc"


def _stub_class(base: type, module: str, name: str, **attrs: Any) -> type:
    key = (module, name)
    if key not in _STUB_CLASSES:
        _STUB_CLASSES[key] = type(f"_Stub_{name}", (base,), {"_origin": f"{module}.{name}", **attrs})
    return _STUB_CLASSES[key]


def _numpy_functions() -> dict[tuple[str, str], Any]:
    try:  # numpy >= 2
        from numpy._core import multiarray as ma
    except ImportError:  # pragma: no cover - numpy 1.x without the alias
        from numpy.core import multiarray as ma
    out: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = ma._reconstruct
        out[(mod, "scalar")] = ma.scalar
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # pragma: no cover
        from numpy.core.numeric import _frombuffer
    for mod in ("numpy.core.numeric", "numpy._core.numeric"):
        out[(mod, "_frombuffer")] = _frombuffer
    return out


_NUMPY_ALLOWED = _numpy_functions()
_SPARSE_MODULES = {
    "scipy.sparse", "scipy.sparse.csc", "scipy.sparse._csc", "scipy.sparse.csr", "scipy.sparse._csr",
    "scipy.sparse.compressed", "scipy.sparse._compressed", "scipy.sparse._arrays",
}
_SPARSE_CLASSES = {"csc_matrix", "csr_matrix", "csc_array", "csr_array"}
_SAFE_BUILTINS = {"object": object, "set": set, "frozenset": frozenset}
_LATIN1 = {"latin1", "latin_1", "latin-1", "iso8859_1", "iso-8859-1", "iso_8859_1", "l1"}


def _latin1_encode(obj: Any, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """``_codecs.encode`` as Python 3 uses it in protocol-2 pickles of bytes (latin-1 only)."""
    if not isinstance(obj, str) or str(encoding).lower() not in _LATIN1:
        raise UnsafePickleError(f"refusing _codecs.encode with encoding {encoding!r} in a MANO file")
    return obj.encode("latin1", errors)


def _stub_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copyreg._reconstructor`` (protocol 0/1 pickles of new-style objects), stand-ins only."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub) and base is object and state is None):
        raise UnsafePickleError(f"refusing copyreg._reconstructor({cls!r}, {base!r}, ...) in a MANO file")
    return cls.__new__(cls)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler resolving only the names listed in the module docstring; nothing is imported."""

    def find_class(self, module: str, name: str) -> Any:
        key = (module, name)
        if key in _NUMPY_ALLOWED:
            return _NUMPY_ALLOWED[key]
        if module in ("copyreg", "copy_reg") and name == "_reconstructor":
            return _stub_reconstructor
        if module in ("builtins", "__builtin__") and name in _SAFE_BUILTINS:
            return _SAFE_BUILTINS[name]
        if key == ("_codecs", "encode"):
            return _latin1_encode
        if (module == "chumpy" or module.startswith("chumpy.")) and name.isidentifier():
            return _stub_class(_ChStub, module, name)
        if module in _SPARSE_MODULES and name in _SPARSE_CLASSES:
            return _stub_class(_SparseStub, module, name, _format=name[:3])
        raise UnsafePickleError(
            f"refusing to load {module}.{name} from a MANO file: only numpy arrays, scipy.sparse matrices "
            "and chumpy arrays are allowed (nothing was imported or executed)"
        )


def _to_plain(value: Any, key: str, depth: int = 0) -> Any:
    """Replace stand-ins by numpy arrays / scipy matrices."""
    if isinstance(value, _ChStub):
        state = value._state
        x = state.get("x") if isinstance(state, dict) else None
        if isinstance(x, _ChStub) and depth < 8:
            x = _to_plain(x, key, depth + 1)
        if isinstance(x, np.ndarray):
            return np.asarray(x)
        if isinstance(x, (int, float)) and not isinstance(x, bool):
            return np.asarray(x, dtype=np.float64)
        raise ModelFileError(
            f"MANO entry '{key}' is a chumpy expression ({value._origin}) without a stored array value "
            "('x'); only plain chumpy.ch.Ch arrays can be read without chumpy - re-export the file "
            "with numpy arrays"
        )
    if isinstance(value, _SparseStub):
        import scipy.sparse as sp

        st = value._state if isinstance(value._state, dict) else {}
        try:
            shape = tuple(int(s) for s in st.get("_shape", st.get("shape")))
            cls = sp.csc_matrix if value._format == "csc" else sp.csr_matrix
            return cls((np.asarray(st["data"]), np.asarray(st["indices"]), np.asarray(st["indptr"])), shape=shape)
        except Exception as e:
            raise ModelFileError(f"MANO entry '{key}': malformed sparse matrix ({type(e).__name__}: {e})") from e
    if isinstance(value, _Stub):  # pragma: no cover - no other stand-in kinds
        raise ModelFileError(f"MANO entry '{key}': unsupported object {value!r}")
    return value


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
        obj = _RestrictedUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except UnsafePickleError as e:
        raise UnsafePickleError(f"{path}: {e}") from None
    except Exception as e:  # anything the pickle machinery raises on bad bytes
        raise ModelFileError(f"MANO model file {path} is truncated or corrupt ({type(e).__name__}: {e})") from e
    if not isinstance(obj, dict):
        raise ModelFileError(f"MANO model file {path} does not hold a dict (got {type(obj).__name__})")
    return {str(k): _to_plain(v, str(k)) for k, v in obj.items()}


# --------------------------------------------------------------------------------------------
# Side inference and the left shapedirs fix
# --------------------------------------------------------------------------------------------


def _posed_joints(J: np.ndarray, parents: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Forward kinematics of the joints only: ``J (16, 3)``, ``pose (16, 3)`` -> ``(16, 3)``."""
    import torch


    R = axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float64)).numpy()
    G_R, G_t = [None] * len(J), [None] * len(J)
    for j in range(len(J)):
        p = int(parents[j])
        if p < 0:
            G_R[j], G_t[j] = R[j], J[j]
        else:
            G_R[j] = G_R[p] @ R[j]
            G_t[j] = G_R[p] @ (J[j] - J[p]) + G_t[p]
    return np.array(G_t)


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
        import torch

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


def pose_to_mano_convention(theta: Any, hands_mean: Any) -> Any:
    """Inverse of :func:`pose_from_mano_convention`: ``theta - hands_mean``."""
    return theta - _as_like(hands_mean, theta)
