"""Joint orders: the project's only place that converts between them.

Internal order (per hand, 21 joints) = MANO's 16 kinematic joints followed by the five fingertips::

    0 wrist; 1-3 index MCP, PIP, DIP; 4-6 middle; 7-9 pinky; 10-12 ring; 13-15 thumb CMC, MCP, IP;
    16-20 tips of thumb, index, middle, ring, pinky.

Other orders (per hand, 21 joints):

- ``"interhand"`` (InterHand2.6M): tip to base, thumb 0-3, index 4-7, middle 8-11, ring 12-15,
  pinky 16-19, wrist 20. Two hands: right 0-20, left 21-41.
- ``"mediapipe"`` (= ``"openpose"``): 0 wrist; thumb 1-4 (CMC, MCP, IP, tip); index 5-8; middle
  9-12; ring 13-16; pinky 17-20 (base to tip).
- ``"mano"``: the internal order (identity).

Order names are case-insensitive; ``"interhand2.6m"`` is accepted for ``"interhand"``.

Two-hand arrays inside ihmr are ``(*, 2, 21, C)`` with index 0 = right, 1 = left; flat two-hand
arrays ``(*, 42, C)`` (as InterHand2.6M stores them) hold the right hand's 21 joints first, then the
left hand's, each in the per-hand order named by ``src`` / ``dst``.

All functions accept numpy arrays (any dtype, also ``bool`` masks and ``object`` arrays) and torch
tensors (result on the same device, differentiable), with any number of leading batch dimensions.
Index arrays are ``int64`` numpy arrays (constants: do not modify them in place); ``x_dst = x_src[..., P, :]`` for the permutation
``P`` (e.g. ``mano = interhand[..., MANO_FROM_INTERHAND, :]``).
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np
import torch

from ihmr.errors import InputError

__all__ = [
    "ORDERS",
    "MANO_JOINT_NAMES",
    "INTERHAND_JOINT_NAMES",
    "MEDIAPIPE_JOINT_NAMES",
    "MANO21_PARENTS",
    "FINGER_CHAINS",
    "FINGER_NAMES",
    "MANO_FROM",
    "FROM_MANO",
    "MANO_FROM_INTERHAND",
    "INTERHAND_FROM_MANO",
    "MANO_FROM_MEDIAPIPE",
    "MEDIAPIPE_FROM_MANO",
    "permutation",
    "convert",
    "convert_mask",
    "to_two_hand",
    "from_two_hand",
]

ArrayT = TypeVar("ArrayT")


def _const(values: Any) -> np.ndarray:
    # Left writable on purpose: ``torch.as_tensor`` warns on read-only numpy arrays. Do not modify.
    return np.array(values, dtype=np.int64)


#: Names of the 21 joints in MANO order (smplx naming; joint 1 of a finger is the one nearest the palm).
MANO_JOINT_NAMES: list[str] = [
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
    "thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip",
]  # fmt: skip

#: Finger order of :data:`FINGER_CHAINS` (rows).
FINGER_NAMES: tuple[str, ...] = ("thumb", "index", "middle", "ring", "pinky")

#: Parent of each of the 21 MANO-order joints, ``(21,)`` int64; ``-1`` for the wrist. Tips hang from
#: their finger's last joint (thumb tip <- thumb3 = 15, index tip <- index3 = 3, ...).
MANO21_PARENTS = _const([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14, 15, 3, 6, 12, 9])

#: ``(5, 4)`` int64: per finger (thumb, index, middle, ring, pinky) its four MANO-order joints from
#: tip to palm, i.e. ``FINGER_CHAINS[f, k + 1] == MANO21_PARENTS[FINGER_CHAINS[f, k]]``; the wrist
#: (0) is the parent of ``FINGER_CHAINS[:, 3]``.
FINGER_CHAINS = _const([[16, 15, 14, 13], [17, 3, 2, 1], [18, 6, 5, 4], [19, 12, 11, 10], [20, 9, 8, 7]])

#: ``(21,)``: ``mano = interhand[..., MANO_FROM_INTERHAND, :]`` (reference_notes.md: 0<-20; 1,2,3<-7,6,5; ...).
MANO_FROM_INTERHAND = _const([20, 7, 6, 5, 11, 10, 9, 19, 18, 17, 15, 14, 13, 3, 2, 1, 0, 4, 8, 12, 16])
#: ``(21,)``: ``mano = mediapipe[..., MANO_FROM_MEDIAPIPE, :]`` (also OpenPose's hand order).
MANO_FROM_MEDIAPIPE = _const([0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20])
#: ``(21,)``: ``interhand = mano[..., INTERHAND_FROM_MANO, :]``.
INTERHAND_FROM_MANO = _const(np.argsort(MANO_FROM_INTERHAND))
#: ``(21,)``: ``mediapipe = mano[..., MEDIAPIPE_FROM_MANO, :]``.
MEDIAPIPE_FROM_MANO = _const(np.argsort(MANO_FROM_MEDIAPIPE))

#: ``MANO_FROM[order][i]`` = index in ``order`` of MANO-order joint ``i``.
MANO_FROM: dict[str, np.ndarray] = {
    "mano": _const(np.arange(21)),
    "interhand": MANO_FROM_INTERHAND,
    "mediapipe": MANO_FROM_MEDIAPIPE,
    "openpose": MANO_FROM_MEDIAPIPE,
}
#: ``FROM_MANO[order][j]`` = index in MANO order of ``order``'s joint ``j`` (inverse of :data:`MANO_FROM`).
FROM_MANO: dict[str, np.ndarray] = {k: _const(np.argsort(v)) for k, v in MANO_FROM.items()}
#: Canonical order names.
ORDERS: tuple[str, ...] = tuple(MANO_FROM)
_ALIASES = {"interhand2.6m": "interhand"}

#: Joint names in InterHand2.6M order (names as in :data:`MANO_JOINT_NAMES`).
INTERHAND_JOINT_NAMES: list[str] = [MANO_JOINT_NAMES[i] for i in INTERHAND_FROM_MANO]
#: Joint names in MediaPipe / OpenPose order (names as in :data:`MANO_JOINT_NAMES`).
MEDIAPIPE_JOINT_NAMES: list[str] = [MANO_JOINT_NAMES[i] for i in MEDIAPIPE_FROM_MANO]


def _order(name: str) -> str:
    key = name.lower() if isinstance(name, str) else name
    key = _ALIASES.get(key, key)
    if key not in MANO_FROM:
        raise InputError(f"unknown joint order {name!r}; known: {', '.join(ORDERS)} (and 'interhand2.6m')")
    return key


def permutation(src: str, dst: str) -> np.ndarray:
    """Per-hand index array ``P (21,)`` int64 with ``x_dst = x_src[..., P, :]``.

    Args:
        src, dst: joint order names (see :data:`ORDERS`).
    """
    s, d = _order(src), _order(dst)
    return MANO_FROM[s][FROM_MANO[d]]  # x_dst[j] = x_mano[FROM_MANO[d][j]] = x_src[MANO_FROM[s][...]]


def _two_hand_permutation(src: str, dst: str) -> np.ndarray:
    """``(42,)`` index array for flat two-hand arrays (right 0-20, left 21-41 in both)."""
    p = permutation(src, dst)
    return np.concatenate([p, p + 21])


def _as_array(x: Any) -> Any:
    """Torch tensors pass through; anything else becomes a numpy array."""
    if hasattr(x, "index_select") and hasattr(x, "device"):
        return x
    return np.asarray(x)


def _take(x: Any, idx: np.ndarray, axis: int) -> Any:
    """Gather ``idx`` along ``axis`` (numpy: a copy; torch: ``index_select``, differentiable)."""
    if hasattr(x, "index_select") and hasattr(x, "device"):
        return x.index_select(axis, torch.as_tensor(idx, dtype=torch.long, device=x.device))
    return np.take(x, idx, axis=axis)


def _check_axis(x: Any, axis: int, n: int, what: str) -> int:
    shape = tuple(x.shape)
    if not shape:
        raise InputError(f"{what}: expected an array with a joint axis of {n} joints, got a scalar")
    ax = axis + len(shape) if axis < 0 else axis
    if not 0 <= ax < len(shape):
        raise InputError(f"{what}: axis {axis} out of range for shape {shape} (expected {n} joints on it)")
    if shape[ax] != n:
        raise InputError(f"{what}: expected {n} joints on axis {axis}, got shape {shape}")
    return ax


def convert(joints: ArrayT, src: str, dst: str, axis: int = -2) -> ArrayT:
    """Reorder per-hand joints from ``src`` to ``dst`` order.

    Args:
        joints: ``(*, 21, C)`` array or tensor (any ``C``: 2D pixels, 3D metres, confidences, ...),
            or any array with 21 joints on ``axis``; use ``axis=-1`` (or :func:`convert_mask`) for
            per-joint masks / scores ``(*, 21)``.
        src, dst: joint order names, one of :data:`ORDERS`.
        axis: the joint axis.

    Returns:
        same shape, type, dtype and device as ``joints`` (a new array), joints in ``dst`` order.

    Raises:
        InputError: unknown order name or no 21-joint axis.
    """
    x = _as_array(joints)
    ax = _check_axis(x, axis, 21, "convert")
    return _take(x, permutation(src, dst), ax)


def convert_mask(mask: ArrayT, src: str, dst: str) -> ArrayT:
    """Reorder a per-joint mask / score array ``(*, 21)`` from ``src`` to ``dst`` order."""
    return convert(mask, src, dst, axis=-1)


def to_two_hand(joints42: ArrayT, src: str = "interhand", axis: int = -2) -> ArrayT:
    """Flat two-hand joints -> ihmr's two-hand layout in MANO order.

    Args:
        joints42: ``(*, 42, C)``: right hand 0-20, left hand 21-41, each in ``src`` order.
            With ``axis=-1`` masks ``(*, 42)``.
        src: per-hand joint order of the input (``"interhand"``, ``"mediapipe"``, ``"mano"``, ...).
        axis: the 42-joint axis.

    Returns:
        ``(*, 2, 21, C)`` (masks: ``(*, 2, 21)``), hand 0 = right, 1 = left, MANO order.
    """
    x = _as_array(joints42)
    ax = _check_axis(x, axis, 42, "to_two_hand")
    y = _take(x, _two_hand_permutation(src, "mano"), ax)
    shape = tuple(y.shape)
    return y.reshape(shape[:ax] + (2, 21) + shape[ax + 1 :])


def from_two_hand(joints: ArrayT, dst: str = "interhand", axis: int = -3) -> ArrayT:
    """Inverse of :func:`to_two_hand`.

    Args:
        joints: ``(*, 2, 21, C)`` in MANO order, hand 0 = right, 1 = left (masks ``(*, 2, 21)``
            with ``axis=-2``).
        dst: per-hand order of the output.
        axis: the hand axis (the 21-joint axis follows it).

    Returns:
        ``(*, 42, C)`` (masks ``(*, 42)``): right hand 0-20, left 21-41, each in ``dst`` order.
    """
    x = _as_array(joints)
    shape = tuple(x.shape)
    ax = axis + len(shape) if axis < 0 else axis
    if not 0 <= ax < len(shape) - 1 or shape[ax] != 2 or shape[ax + 1] != 21:
        raise InputError(f"from_two_hand: expected (..., 2, 21, ...) with the hand axis at {axis}, got shape {shape}")
    flat = x.reshape(shape[:ax] + (42,) + shape[ax + 2 :])
    return _take(flat, _two_hand_permutation("mano", dst), ax)
