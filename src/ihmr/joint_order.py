"""Joint orders: the project's only place that converts between them.

Internal order (per hand, 21 joints) = MANO's 16 kinematic joints followed by the five fingertips::

    0 wrist; 1-3 index MCP, PIP, DIP; 4-6 middle; 7-9 pinky; 10-12 ring; 13-15 thumb CMC, MCP, IP;
    16-20 tips of thumb, index, middle, ring, pinky.

Other orders (per hand, 21 joints):

- ``"interhand"`` (InterHand2.6M): tip to base, thumb 0-3, index 4-7, middle 8-11, ring 12-15,
  pinky 16-19, wrist 20. Two hands: right 0-20, left 21-41.
- ``"mediapipe"`` (= ``"openpose"``): 0 wrist; thumb 1-4 (CMC, MCP, IP, tip); index 5-8; middle
  9-12; ring 13-16; pinky 17-20 (base to tip).

Two-hand arrays inside ihmr are ``(*, 2, 21, C)`` with index 0 = right, 1 = left.
All functions accept numpy arrays and torch tensors and any leading batch dimensions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ihmr.errors import InputError

__all__ = [
    "ORDERS",
    "MANO_JOINT_NAMES",
    "MANO21_PARENTS",
    "FINGER_CHAINS",
    "MANO_FROM",
    "convert",
    "to_two_hand",
    "from_two_hand",
]

MANO_JOINT_NAMES = [
    "wrist",
    "index1", "index2", "index3",
    "middle1", "middle2", "middle3",
    "pinky1", "pinky2", "pinky3",
    "ring1", "ring2", "ring3",
    "thumb1", "thumb2", "thumb3",
    "thumb_tip", "index_tip", "middle_tip", "ring_tip", "pinky_tip",
]

#: Parent of each of the 21 MANO-order joints (tips hang from their finger's last joint).
MANO21_PARENTS = np.array([-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 0, 10, 11, 0, 13, 14, 15, 3, 6, 12, 9], dtype=np.int64)

#: Per finger (thumb, index, middle, ring, pinky) its four joints from tip to palm, MANO order.
FINGER_CHAINS = np.array(
    [[16, 15, 14, 13], [17, 3, 2, 1], [18, 6, 5, 4], [19, 12, 11, 10], [20, 9, 8, 7]], dtype=np.int64
)

#: ``MANO_FROM[order][i]`` = index in ``order`` of MANO-order joint ``i``.
MANO_FROM = {
    "mano": np.arange(21, dtype=np.int64),
    "interhand": np.array([20, 7, 6, 5, 11, 10, 9, 19, 18, 17, 15, 14, 13, 3, 2, 1, 0, 4, 8, 12, 16], dtype=np.int64),
    "mediapipe": np.array([0, 5, 6, 7, 9, 10, 11, 17, 18, 19, 13, 14, 15, 1, 2, 3, 4, 8, 12, 16, 20], dtype=np.int64),
}
MANO_FROM["openpose"] = MANO_FROM["mediapipe"]
ORDERS = tuple(MANO_FROM)


def _perm(src: str, dst: str) -> np.ndarray:
    """Index array ``p`` with ``x_dst = x_src[p]`` (per hand, 21 joints)."""
    for name in (src, dst):
        if name not in MANO_FROM:
            raise InputError(f"unknown joint order {name!r}; known: {', '.join(ORDERS)}")
    # x_mano = x_src[MANO_FROM[src]];  x_dst[MANO_FROM[dst]] = x_mano  =>  x_dst = x_src[MANO_FROM[src][inv_dst]]
    inv_dst = np.argsort(MANO_FROM[dst])
    return MANO_FROM[src][inv_dst]


def _take(x: Any, idx: np.ndarray, axis: int) -> Any:
    if hasattr(x, "index_select"):  # torch
        import torch

        return x.index_select(axis, torch.as_tensor(idx, device=x.device))
    return np.take(np.asarray(x), idx, axis=axis)


def _check_axis(x: Any, axis: int, n: int, what: str) -> int:
    shape = tuple(x.shape)
    if not shape:
        raise InputError(f"{what}: expected an array with a joint axis, got a scalar")
    ax = axis if axis >= 0 else len(shape) + axis
    if not 0 <= ax < len(shape) or shape[ax] != n:
        raise InputError(f"{what}: expected {n} joints on axis {axis}, got shape {shape}")
    return ax


def convert(joints: Any, src: str, dst: str, axis: int = -2) -> Any:
    """Reorder per-hand joints ``(..., 21, ...)`` from ``src`` to ``dst`` order.

    Args:
        joints: array or tensor with 21 joints on ``axis`` (default ``-2``, i.e. ``(*, 21, C)``;
            use ``axis=-1`` for masks ``(*, 21)``).
        src, dst: one of ``"mano"``, ``"interhand"``, ``"mediapipe"``, ``"openpose"``.
    """
    ax = _check_axis(joints, axis, 21, "convert")
    return _take(joints, _perm(src, dst), ax)


def to_two_hand(joints42: Any, src: str = "interhand", axis: int = -2) -> Any:
    """Two-hand joints ``(*, 42, C)`` (right 0-20, left 21-41, ``src`` order) -> ``(*, 2, 21, C)`` MANO order.

    With ``axis=-1`` for masks: ``(*, 42)`` -> ``(*, 2, 21)``.
    """
    ax = _check_axis(joints42, axis, 42, "to_two_hand")
    idx = np.concatenate([_perm(src, "mano"), 21 + _perm(src, "mano")])
    x = _take(joints42, idx, ax)
    shape = tuple(x.shape)
    return x.reshape(shape[:ax] + (2, 21) + shape[ax + 1 :])


def from_two_hand(joints: Any, dst: str = "interhand", axis: int = -3) -> Any:
    """Inverse of :func:`to_two_hand`: ``(*, 2, 21, C)`` MANO order -> ``(*, 42, C)`` in ``dst`` order.

    ``axis`` is the hand axis (``-3`` for ``(*, 2, 21, C)``, ``-2`` for masks ``(*, 2, 21)``).
    """
    shape = tuple(joints.shape)
    ax = axis if axis >= 0 else len(shape) + axis
    if not 0 <= ax < len(shape) - 1 or shape[ax] != 2 or shape[ax + 1] != 21:
        raise InputError(f"from_two_hand: expected (..., 2, 21, ...) at axis {axis}, got shape {shape}")
    x = joints.reshape(shape[:ax] + (42,) + shape[ax + 2 :])
    idx = np.concatenate([_perm("mano", dst), 21 + _perm("mano", dst)])
    return _take(x, idx, ax)
