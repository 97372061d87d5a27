"""What the pipeline returns: one :class:`Result` per image, holding its hands and pairs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ihmr.errors import IhmrError

__all__ = ["NoHandsError", "HandResult", "PairResult", "Result"]


class NoHandsError(IhmrError):
    """No hand was found in the image."""


@dataclass
class HandResult:
    """One reconstructed hand (camera coordinates, metres; pixels for 2D)."""

    side: str
    score: float
    params: dict[str, np.ndarray]  # beta (10,), global_orient (3,), hand_pose (45,), wrist (3,)
    joints_3d: np.ndarray  # (21, 3) MANO order
    joints_2d: np.ndarray  # (21, 2) MANO order, pixels (the detected landmarks)
    vertices: np.ndarray  # (V, 3)
    source: str
    landmarks_3d: np.ndarray  # (21, 3) MANO order, the detector's metric landmarks placed in the camera frame


@dataclass
class PairResult:
    """A right and a left hand (indices into :attr:`Result.hands`) refined together; penetration
    depths (mm) before and after, which factors' refinements were accepted."""

    right: int
    left: int
    ave_p_mm_before: float
    max_p_mm_before: float
    ave_p_mm_after: float
    max_p_mm_after: float
    accepted: dict[str, bool]
    vertices_before: np.ndarray  # (2, V, 3) camera coordinates
    joints_before: Optional[np.ndarray] = None  # (2, 21, 3) camera coordinates, MANO order


@dataclass
class Result:
    """The hands in one image: ``image_size`` ``(W, H)`` pixels, intrinsics ``K``, the hand model's
    ``faces`` (right, left), seconds per stage and notes (in words) on what was tried."""

    image_size: tuple[int, int]
    K: np.ndarray  # (3, 3)
    hands: list[HandResult]
    pairs: list[PairResult]
    faces: np.ndarray  # (2, F, 3) right, left
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
