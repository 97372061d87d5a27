"""One detected hand and the geometry of its 21 landmarks (MediaPipe order): chirality (which side a
hand is, from its metric 3D landmarks), overlap of two hands' 2D landmarks, MediaPipe's tracking crop.

Pure numpy; no models.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ihmr.geometry.rotations import rotation_2d

__all__ = ["CHIRALITY_MIN", "ROI_SCALE", "ROI_SHIFT", "HandDetection", "Detections", "chirality", "chirality_side",
           "overlap", "landmark_roi", "box_iou"]

#: Tracking crop (MediaPipe's hand_landmark_landmarks_to_roi): 2 x the palm-side landmarks' box,
#: shifted by 0.1 of its height towards the fingers.
ROI_SCALE, ROI_SHIFT = 2.0, 0.1
#: |chirality| below this (out-of-plane offset / palm length) is too flat to tell the side.
CHIRALITY_MIN = 0.05

# MediaPipe landmark indices.
_WRIST, _INDEX_MCP, _MIDDLE_MCP, _RING_MCP, _PINKY_MCP = 0, 5, 9, 13, 17
#: Landmarks of MediaPipe's tracking crop: wrist, thumb CMC/MCP/IP, base and first joint of each finger.
_ROI_LANDMARKS = (0, 1, 2, 3, 5, 6, 9, 10, 13, 14, 17, 18)
_THUMB = (2, 3, 4)  # MCP, IP, tip
_FINGERS = (6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20)  # PIP, DIP, tip of the four fingers


def chirality(world: np.ndarray) -> float:
    """Signed chirality of one hand's 3D landmarks ``(21, 3)`` (MediaPipe order, any right-handed
    frame, any scale): positive for a right hand, negative for a left hand, near zero when the hand
    is too flat to tell.

    The palm plane is spanned by wrist -> index base and wrist -> pinky base; its normal
    ``(index - wrist) x (pinky - wrist)`` points to the palm side of a right hand and to the back
    of a left hand (a mirror flips a cross product). The thumb sits, and the fingers flex, on the
    palm side, so the mean offset of the thumb joints plus the mean offset of the finger joints
    along that normal, over the palm length (wrist -> middle base), has the sign of the side.
    Invariant to rotation, translation and scale; a mirror image flips its sign.
    """
    w = np.asarray(world, np.float64)
    W = w[_WRIST]
    n = np.cross(w[_INDEX_MCP] - W, w[_PINKY_MCP] - W)
    nn = np.linalg.norm(n)
    palm = np.linalg.norm(w[_MIDDLE_MCP] - W)
    if nn < 1e-12 or palm < 1e-12 or not np.isfinite(w).all():
        return 0.0
    n = n / nn
    return float((((w[list(_THUMB)] - W) @ n).mean() + ((w[list(_FINGERS)] - W) @ n).mean()) / palm)


def chirality_side(world: np.ndarray, min_abs: float = CHIRALITY_MIN) -> Optional[str]:
    """"right" / "left" from :func:`chirality`, or None when ``|chirality| < min_abs``."""
    c = chirality(world)
    if abs(c) < min_abs:
        return None
    return "right" if c > 0 else "left"


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """Mean distance of corresponding 2D landmarks ``(21, 2)`` over the larger hand's extent:
    about 0 for two detections of one hand, 0.2-0.4 for two real hands interacting closely."""
    size = max(float(np.ptp(a, 0).max()), float(np.ptp(b, 0).max()), 1.0)
    return float(np.linalg.norm(a - b, axis=1).mean()) / size



def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of the axis-aligned boxes of two point sets ``(N, 2)`` (e.g. the
    corners of a box, or a hand's landmarks)."""
    lo, hi = np.maximum(a.min(0), b.min(0)), np.minimum(a.max(0), b.max(0))
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    area = lambda p: float(np.prod(np.ptp(p, 0)))  # noqa: E731
    return inter / max(area(a) + area(b) - inter, 1e-9)


def landmark_roi(xy: np.ndarray, scale: float = ROI_SCALE, shift: float = ROI_SHIFT) -> tuple[np.ndarray, float, float]:
    """Crop around one hand's 2D landmarks ``(21, 2)`` as MediaPipe's tracking derives it: turned so
    that the wrist -> palm-centre direction (middle finger base, averaged with the index and ring
    bases) is upright; centred on the box of the palm-side landmarks (wrist, thumb, bases of the
    fingers: what stays visible and reliable) in that frame, shifted by ``shift`` x its height
    towards the fingers; side ``scale`` x its longer side. Returns ``(centre (2,), size, angle)``."""
    tip = 0.5 * (0.5 * (xy[_INDEX_MCP] + xy[_RING_MCP]) + xy[_MIDDLE_MCP])
    d = tip - xy[_WRIST]
    a = float(np.arctan2(d[0], -d[1]))
    R = rotation_2d(a)
    pts = xy[list(_ROI_LANDMARKS)]
    q = (pts - pts.mean(0)) @ R  # into the upright frame
    lo, hi = q.min(0), q.max(0)
    centre = pts.mean(0) + R @ ((lo + hi) / 2 + np.array([0.0, -shift * (hi - lo)[1]]))
    return centre, float(max(hi - lo)) * scale, a


@dataclass
class HandDetection:
    """One hand.

    Attributes:
        side: "right" or "left" (anatomical, for the image as given).
        score: presence / detection confidence in [0, 1].
        handedness_score: confidence of ``side``.
        landmarks_2d: ``(21, 2)`` pixels, MediaPipe order.
        world: ``(21, 3)`` metres, MediaPipe order, hand-centred, image-aligned axes (x right, y down).
        source: "palm_detector" (the palm detector's crop, tracked), "crop" (a box's crop), "partner_crop"
            (a crop around another hand) or "mediapipe_pipeline" (the legacy pipeline, a fallback).
        chirality: :func:`chirality` of ``world`` (positive: right).
        side_from: what decided ``side``: "chirality" or "classifier".
    """

    side: str
    score: float
    handedness_score: float
    landmarks_2d: np.ndarray
    world: np.ndarray
    source: str
    chirality: float = 0.0
    side_from: str = "classifier"

    def __post_init__(self) -> None:
        self.chirality = chirality(self.world)
        cs = chirality_side(self.world)
        if cs is not None:
            if cs != self.side:
                self.handedness_score = 1.0 - self.handedness_score
            self.side, self.side_from = cs, "chirality"

    @property
    def size(self) -> float:
        """Extent of the 2D landmarks in pixels."""
        return float(np.max(self.landmarks_2d.max(0) - self.landmarks_2d.min(0)))

    @property
    def centre(self) -> np.ndarray:
        return 0.5 * (self.landmarks_2d.max(0) + self.landmarks_2d.min(0))


@dataclass
class Detections:
    """The hands found in one image and the steps tried (in words, for the notes)."""

    hands: list[HandDetection]
    tried: list[str] = field(default_factory=list)
