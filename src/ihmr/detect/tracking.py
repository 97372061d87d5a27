"""Tracking a crop result as MediaPipe tracks a hand between video frames, and telling whether two
detections are one hand.

Pure numpy: the landmark model is passed in as a function (:class:`ihmr.detect.models.LandmarkModel`).
"""

from __future__ import annotations

from typing import Callable, Optional

import numpy as np

from ihmr.detect.landmarks import HandDetection, box_iou, landmark_roi, overlap
from ihmr.detect.models import MIN_PRESENCE

__all__ = ["TRACK_ITERS", "CONVERGED", "UNSTABLE", "SAME_HAND", "SAME_HAND_ALWAYS", "SAME_SIDE_IOU",
           "CropFn", "track", "same_hand", "merge_hands"]

#: Tracking iterations (re-crop from the landmarks) per crop result.
TRACK_ITERS = 2
#: Tracking has converged when the landmarks move less than this (of the hand's size); a result
#: whose next re-crop moves them by more than ``UNSTABLE`` is not a hand the model can hold on to
#: (measured: real hands 0.005-0.07, a hand's fingers taken for another hand 0.58).
CONVERGED, UNSTABLE = 0.05, 0.25
#: Landmark overlap (mean same-joint distance / hand size) below which two detections are one hand,
#: and the lower bound below which they are one hand even when their chiralities differ.
SAME_HAND, SAME_HAND_ALWAYS = 0.2, 0.1
#: Two hands of one side whose landmark boxes overlap more than this (IoU) are one hand (a second
#: detection of the same side cannot overlap it that much; MediaPipe's own palm NMS uses 0.3).
SAME_SIDE_IOU = 0.3

#: The landmark model on a crop: ``(image, cx, cy, size, source, angle, min_presence) -> detection or None``.
CropFn = Callable[..., Optional[HandDetection]]


def track(crop: CropFn, image: np.ndarray, d: HandDetection) -> Optional[HandDetection]:
    """Track a crop result as MediaPipe tracks a hand from frame to frame: re-crop from its
    landmarks (:func:`~ihmr.detect.landmarks.landmark_roi`) with ``crop`` until they settle. Returns
    the most confident (presence) result that is *stable*, i.e. that the next re-crop finds again (it
    moves by less than ``UNSTABLE`` of the hand's size); None if there is none: a crop that mixed
    two hands, or fingers taken for a hand, drifts away on the next re-crop."""
    seq = [d]
    for _ in range(TRACK_ITERS):
        c, s, a = landmark_roi(seq[-1].landmarks_2d)
        seq.append(crop(image, c[0], c[1], s, d.source, a, min_presence=0.0))
        if overlap(seq[-1].landmarks_2d, seq[-2].landmarks_2d) < CONVERGED:
            break
    moves = [overlap(seq[k + 1].landmarks_2d, seq[k].landmarks_2d) for k in range(len(seq) - 1)]
    ok = [k for k, m in enumerate(moves) if m < UNSTABLE]
    if moves[-1] < CONVERGED:
        ok.append(len(seq) - 1)
    ok = [k for k in ok if seq[k].score >= MIN_PRESENCE]
    return seq[max(ok, key=lambda k: seq[k].score)] if ok else None


def same_hand(a: HandDetection, b: HandDetection) -> bool:
    """One hand seen twice? Landmarks that overlap strongly are, whatever the handedness
    classifier says (it is unreliable on overlapping hands); two confident, opposite chiralities
    keep moderately overlapping hands apart (praying hands overlap in the image); two hands of
    one side whose boxes overlap are one hand."""
    o = overlap(a.landmarks_2d, b.landmarks_2d)
    if o < SAME_HAND_ALWAYS:
        return True
    if a.side_from == b.side_from == "chirality" and a.side != b.side:
        return False
    if o < SAME_HAND:
        return True
    return a.side == b.side and box_iou(a.landmarks_2d, b.landmarks_2d) > SAME_SIDE_IOU


def merge_hands(hands: list[HandDetection], new: list[HandDetection]) -> list[HandDetection]:
    """Append to ``hands`` (in place) each of ``new``, most confident first, that is not one of them."""
    for d in sorted(new, key=lambda h: -h.score):
        if not any(same_hand(d, h) for h in hands):
            hands.append(d)
    return hands
