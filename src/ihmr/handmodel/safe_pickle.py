"""A restricted unpickler for the official MANO files (Python-2 pickles of numpy arrays,
``scipy.sparse`` matrices and chumpy ``Ch`` objects), without chumpy.

:func:`restricted_loads`'s ``find_class`` resolves only

- numpy's array reconstruction (``numpy.core.multiarray._reconstruct`` / ``scalar``,
  ``numpy.ndarray``, ``numpy.dtype``, also spelled ``numpy._core...``),
- ``scipy.sparse`` csc/csr matrix classes (any of the ``scipy.sparse``, ``scipy.sparse.csc``,
  ``scipy.sparse._csc``, ... spellings), replaced by an inert stand-in,
- chumpy classes (``chumpy.ch.Ch``, ``chumpy.ch_ops.*``, ``chumpy.reordering.*``, ...), replaced by
  an inert stand-in that records the pickled state,
- ``copyreg._reconstructor`` (for the stand-ins only), ``builtins.set`` / ``frozenset`` /
  ``object`` and ``_codecs.encode`` restricted to latin-1 (how Python 3 writes bytes at protocol 2).

Anything else (``os.system``, ``builtins.eval``, ``subprocess.Popen``, ...) is refused with
:class:`ihmr.errors.UnsafePickleError` naming it; nothing named by the file is ever imported or
called. :func:`replace_stand_ins` then turns the stand-ins into plain values: a plain ``Ch`` yields
its stored array (state key ``'x'``; any other chumpy expression is refused with a clear error), a
sparse stand-in is rebuilt as a real scipy matrix from its recorded arrays.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np
import scipy.sparse as sp

from ihmr.errors import ModelFileError, UnsafePickleError

__all__ = ["restricted_loads", "replace_stand_ins"]




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


def replace_stand_ins(value: Any, key: str, depth: int = 0) -> Any:
    """A value of :func:`restricted_loads` with its stand-ins replaced by numpy arrays / scipy
    matrices (``key``: the entry's name, for error messages).

    Raises:
        ModelFileError: a chumpy expression without a stored array, a malformed sparse matrix.
    """
    if isinstance(value, _ChStub):
        state = value._state
        x = state.get("x") if isinstance(state, dict) else None
        if isinstance(x, _ChStub) and depth < 8:
            x = replace_stand_ins(x, key, depth + 1)
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


def restricted_loads(data: bytes) -> Any:
    """Unpickle ``data`` (latin-1 for Python-2 strings) resolving only the allow-list above; foreign
    objects come back as stand-ins (see :func:`replace_stand_ins`).

    Raises:
        UnsafePickleError: the pickle names a class or function outside the allow-list.
        Exception: whatever the pickle machinery raises on truncated or corrupt bytes.
    """
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
