"""``.npz`` files: writing them atomically (:func:`write_npz`) and the refinement format of
``ihmr refine`` / ``ihmr bench refine`` (:data:`NPZ_KEYS`, read with validation by
:func:`read_refine_input`)."""

from __future__ import annotations

import logging
import zipfile
from pathlib import Path

import numpy as np

from ihmr.errors import InputError
from ihmr.io.files import atomic_write

log = logging.getLogger(__name__)

__all__ = ["NPZ_KEYS", "REQUIRED", "GT_KEYS", "OPTIONAL", "PLAUSIBLE", "write_npz", "read_refine_input"]

#: ``.npz`` keys and shapes (N samples). Parameters: metres / radians, hand 0 = right.
NPZ_KEYS = {
    "beta": "(N, 2, 10) predicted shapes (simulated stage I)",
    "phi": "(N, 2, 3) predicted global orientations, axis-angle",
    "theta": "(N, 2, 45) predicted finger poses, axis-angle relative to the flat hand",
    "tau": "(N, 3) predicted left wrist - right wrist (m)",
    "cam": "(N, 3) weak-perspective camera (s, tx, ty): uv = s * (xy + t)",
    "j3d": "(N, 42, 3) joint-head 3D joints (m), MANO order, right hand first, right wrist at the origin",
    "j2d": "(N, 42, 2) joint-head 2D joints in normalised image coordinates [-1, 1]",
    "gt_beta": "(N, 2, 10)", "gt_phi": "(N, 2, 3)", "gt_theta": "(N, 2, 45)", "gt_tau": "(N, 3)",
    "gt_j3d": "(N, 42, 3) ground-truth joints (m), same frame as j3d",
    "valid": "(N, 42) bool, joint validity",
    "contact": "(N,) int index into ihmr.data.synthetic.CONTACTS",
    "gt_sep": "(N, 3) unit direction along which the left hand was slid to first contact (optional)",
    "error_side": "(N,) int8: +1 the simulated stage I errs into the other hand, -1 away from it (optional)",
    "meta": "JSON string: seed, sigma_mm, model, CONTACTS",
}

#: Required arrays and their shapes (``None`` = the sample count N).
REQUIRED = {
    "beta": (None, 2, 10),
    "phi": (None, 2, 3),
    "theta": (None, 2, 45),
    "tau": (None, 3),
    "cam": (None, 3),
    "j3d": (None, 42, 3),
    "j2d": (None, 42, 2),
}
GT_KEYS = {"gt_beta": (None, 2, 10), "gt_phi": (None, 2, 3), "gt_theta": (None, 2, 45), "gt_tau": (None, 3), "gt_j3d": (None, 42, 3)}
OPTIONAL = {"valid": (None, 42), "contact": (None,), "gt_sep": (None, 3), "error_side": (None,)}


#: Plausible ranges of the refinement input: key -> (what is measured, warn above, refuse above).
#: Shape coefficients are in standard deviations of the model's shape space (|beta| beyond ~3 is a
#: rare hand, beyond 10 no hand); translations and joints in metres (two interacting hands and the
#: joints of a wrist-centred pair lie well within a metre); axis-angles in radians.
PLAUSIBLE = {
    "beta": ("|coefficient|", 5.0, 10.0),
    "gt_beta": ("|coefficient|", 5.0, 10.0),
    "tau": ("wrist distance (m)", 0.5, 1.0),
    "gt_tau": ("wrist distance (m)", 0.5, 1.0),
    "j3d": ("|coordinate| (m)", 0.5, 1.0),
    "gt_j3d": ("|coordinate| (m)", 0.5, 1.0),
    "phi": ("rotation angle (rad)", 2 * np.pi, 4 * np.pi),
    "theta": ("rotation angle (rad)", 2 * np.pi, 4 * np.pi),
}


def _magnitude(key: str, arr: np.ndarray) -> np.ndarray:
    """Per-sample largest magnitude of ``arr`` in the sense of :data:`PLAUSIBLE`."""
    a = np.asarray(arr, dtype=np.float64)
    if key.endswith("tau"):
        return np.linalg.norm(a, axis=-1)
    if key in ("phi", "theta"):
        return np.linalg.norm(a.reshape(len(a), -1, 3), axis=-1).max(1)
    return np.abs(a).reshape(len(a), -1).max(1)


def _check_plausible(path: Path, d: dict[str, np.ndarray]) -> None:
    for k, (what, warn, refuse) in PLAUSIBLE.items():
        if k not in d:
            continue
        m = _magnitude(k, d[k])
        bad = np.nonzero(m > refuse)[0]
        if bad.size:
            raise InputError(f"{path}: key '{k}' is implausible: {what} up to {m.max():.3g} in {bad.size} sample(s) "
                             f"(first: {int(bad[0])}; above {refuse:g} is refused)")
        odd = np.nonzero(m > warn)[0]
        if odd.size:
            log.warning("%s: key '%s': %s above %g in %d sample(s) (up to %.3g; first: %d); refined anyway",
                        path, k, what, warn, odd.size, m.max(), int(odd[0]))


def read_refine_input(path: str | Path, require_gt: bool = False) -> dict[str, np.ndarray]:
    """Load and validate a refinement input ``.npz``; raise :class:`InputError` naming the bad key:
    missing keys, wrong shapes, NaN/inf in any array (optional ones included), a ``valid`` array
    that is not 0/1, values outside :data:`PLAUSIBLE` (a warning in its grey zone)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as e:
        raise InputError(f"{path} is not a readable .npz file ({type(e).__name__}: {e})") from e
    want = dict(REQUIRED)
    if require_gt:
        want.update(GT_KEYS)
    missing = [k for k in want if k not in d]
    if missing:
        raise InputError(f"{path}: missing key(s) {', '.join(missing)} (need {', '.join(want)})")
    n = d["beta"].shape[0] if d["beta"].ndim else -1
    if n <= 0:
        raise InputError(f"{path}: key 'beta' must hold at least one sample, got shape {d['beta'].shape}")
    for k, shape in {**want, **{k: s for k, s in OPTIONAL.items() if k in d}, **{k: s for k, s in GT_KEYS.items() if k in d}}.items():
        arr = d[k]
        exp = tuple(n if s is None else s for s in shape)
        if arr.shape != exp:
            raise InputError(f"{path}: key '{k}' must have shape {exp}, got {arr.shape}")
        if arr.dtype.kind not in "fiub" or not np.isfinite(arr).all():
            raise InputError(f"{path}: key '{k}' must be finite numbers (found NaN/inf or dtype {arr.dtype})")
    if "valid" in d:
        if not np.isin(d["valid"], (0, 1)).all():
            raise InputError(f"{path}: key 'valid' must be 0/1 or bool, got values {np.unique(d['valid'])[:5].tolist()}")
        d["valid"] = d["valid"].astype(bool)
    if "contact" in d and (d["contact"].dtype.kind not in "iu" or (d["contact"] < 0).any()):
        raise InputError(f"{path}: key 'contact' must be non-negative integers, got dtype {d['contact'].dtype}")
    if "error_side" in d and not np.isin(d["error_side"], (-1, 1)).all():
        raise InputError(f"{path}: key 'error_side' must be +1 or -1, got values {np.unique(d['error_side'])[:5].tolist()}")
    _check_plausible(path, d)
    return d


def write_npz(path: str | Path, arrays: dict[str, np.ndarray], compressed: bool = True) -> Path:
    """Write ``arrays`` to ``path`` as ``.npz`` (zip-deflated unless ``compressed`` is False),
    atomically (:func:`ihmr.io.files.atomic_write`)."""
    path = Path(path)
    with atomic_write(path) as fh:
        (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return path
