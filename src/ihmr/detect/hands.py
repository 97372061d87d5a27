"""Hand detection and 2D/3D landmarks with MediaPipe Hands 0.10.21's models (offline, CPU): the
search policy (:class:`HandDetector`) over the models (:mod:`ihmr.detect.models`), the palm
detector's decoding (:mod:`ihmr.detect.anchors`), tracking (:mod:`ihmr.detect.tracking`) and the
landmark geometry (:mod:`ihmr.detect.landmarks`).

The two models shipped in the mediapipe wheel run directly with ``ai-edge-litert`` (mediapipe
itself is imported only for the fallback in step 5):

1. The palm detector (``palm_detection_full.tflite``) on the whole image (and, for an image far
   from square, on square tiles along its long side), with a low score threshold; each palm becomes
   MediaPipe's hand crop (turned upright, 2.6 x the palm box).
2. The landmark model (``hand_landmark_full.tflite``) on each crop; every result is *tracked* as
   MediaPipe tracks hands between video frames: re-cropped from its own landmarks (upright, 2 x the
   palm-side landmarks, :func:`landmark_roi`) and run again. A real hand is stable under this; a
   crop that saw parts of two hands, or fingers taken for a hand, drifts away and is dropped; the
   presence score rejects crops without a hand.
3. Where a hand has no partner of the other side next to it (closely interacting hands are where
   the palm detector fails most): crops of a user or data-set box, then crops around the hand
   (its partner is next to it; its orientation is unknown, so upright and turned by 90, 180 and
   270 degrees), keeping the most confident distinct hand of the other side.
4. Two detections are the same hand when their landmarks overlap strongly (:func:`overlap`); the
   model's handedness output does not count there, as it is unreliable on overlapping hands.
5. If nothing at all is found (also on the boxes), the palms down to :data:`LOW_PALM_SCORE` (a
   grey-scale frame's thumbs-up hand scores 0.07 as a palm and 0.99 as a hand); then MediaPipe's
   legacy ``mediapipe.solutions.hands`` pipeline. (Before the boxes, a weak palm's hand would make
   the box search a partner search, which on that frame found a phantom left hand in the same
   pixels.)

Handedness: the side of each hand is decided by the *chirality* of its metric 3D landmarks
(:func:`chirality`: on which side of the palm plane, oriented by the index -> pinky direction, the
thumb and the flexing fingers lie), which mirrors with the hand; the landmark model's handedness
score is used only where the 3D landmarks are too flat to tell. MediaPipe's own labels assume a
mirrored (selfie) image; ihmr reports the anatomical side of a hand in the image as given.
Landmarks are returned in MediaPipe order (convert with :mod:`ihmr.joint_order`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ihmr.detect.anchors import decode_palms, letterbox, palm_anchors
from ihmr.detect.landmarks import Detections, HandDetection, box_iou, overlap
from ihmr.detect.models import LegacyHands, open_models
from ihmr.detect.tracking import SAME_HAND_ALWAYS, merge_hands, same_hand, track

__all__ = ["PARTNER_DIST", "MIN_PALM_SCORE", "LOW_PALM_SCORE", "HandDetector"]

#: Most square tiles the palm detector sees of an image far from square (bounds its cost).
MAX_TILES = 4
#: Lowest palm-detector score proposed to the landmark model (MediaPipe's own default is 0.5).
MIN_PALM_SCORE = 0.2
#: Lowest palm score tried when the palms above ``MIN_PALM_SCORE`` gave no hand (the landmark model's
#: presence score and tracking still decide; measured on the InterHand2.6M sample frames: the right
#: hand of image2017, palm score 0.072, tracked presence 0.994; no other crop above 0.05 there).
LOW_PALM_SCORE = 0.05
#: A hand whose centre is within this many hand sizes of a hand of the other side has its partner.
#: The pipeline pairs a right and a left hand up to this many sizes apart (``ihmr.pipeline.pairing``).
PARTNER_DIST = 1.5
#: Most crop results of one search that are tracked (the most confident distinct ones).
MAX_TRACK = 3


class HandDetector:
    """MediaPipe-based detector (create once, reuse for many images): the search policy over the
    palm detector (:class:`~ihmr.detect.models.PalmModel`), the landmark model on tracked crops
    (:class:`~ihmr.detect.models.LandmarkModel`, :func:`~ihmr.detect.tracking.track`) and the
    legacy pipeline (:class:`~ihmr.detect.models.LegacyHands`)."""

    def __init__(self, min_detection_confidence: float = 0.3, max_hands: int = 4, min_palm_score: float = MIN_PALM_SCORE) -> None:
        self._max_hands = max_hands
        self._min_palm_score = min_palm_score
        self.palm_model, self.landmark_model = open_models()
        self._legacy = LegacyHands(max_hands, min_detection_confidence)  # loaded only as a fallback
        self._anchors = palm_anchors()

    # -- the palm detector, run directly ---------------------------------------------------------
    def palms(self, image: np.ndarray, min_score: Optional[float] = None,
              max_score: float = float("inf")) -> list[tuple[float, np.ndarray, float, float]]:
        """Palm detections as hand crops, best first: ``(score, centre (2,), size, angle)``.

        The model sees the image letter-boxed to its square 192 x 192 input (RGB in [0, 1]); an
        image far from square is also seen as overlapping square tiles along its long side, so that
        letter-boxing does not shrink its hands. Boxes and the 7 palm keypoints are decoded against
        the SSD anchors, overlapping boxes suppressed (IoU > 0.3), and each palm becomes MediaPipe's
        hand crop: turned so that wrist -> middle finger base is upright, shifted by half the palm
        box towards the fingers, 2.6 x the palm box. ``min_score`` (default 0.2; MediaPipe's default
        is 0.5): every crop is checked by the landmark model's presence score afterwards, so weak
        palms may be proposed. ``max_score``: only palms scoring below it (before the suppression and
        the cap, so that palms tried already leave their places to the others).
        """
        thr = self._min_palm_score if min_score is None else min_score
        H, W = image.shape[:2]
        views = [(0, 0, W, H)]
        short, long_ = min(H, W), max(H, W)
        if long_ > 1.25 * short:
            n = min(int(np.ceil(long_ / short)), MAX_TILES)
            for k in range(n):
                o = int(round(k * (long_ - short) / (n - 1)))
                views.append((o, 0, short, short) if W > H else (0, o, short, short))
        cands = []
        for x0, y0, w, h in views:
            cands += self._palms_in(image[y0:y0 + h, x0:x0 + w], thr, np.array([x0, y0], np.float64))
        cands = [c for c in cands if c[0] < max_score]
        cands.sort(key=lambda c: -c[0])
        out, boxes = [], []
        for score, box, crop in cands:
            if any(box_iou(box, b) > 0.3 for b in boxes):
                continue
            boxes.append(box)
            out.append(crop)
            if len(out) >= 2 * self._max_hands:
                break
        return out

    def _palms_in(self, image: np.ndarray, thr: float, origin: np.ndarray) -> list:
        x, S, pad = letterbox(image)
        reg, logit = self.palm_model(x)
        return decode_palms(reg, logit, self._anchors, S, pad - origin, thr)

    def _palm_hands(self, image: np.ndarray, min_score: Optional[float] = None,
                    max_score: float = float("inf")) -> list[HandDetection]:
        """Tracked landmark-model hands on the palm crops scoring at least ``min_score`` (default
        ``min_palm_score``) and below ``max_score``."""
        hands: list[HandDetection] = []
        for _, c, size, a in self.palms(image, min_score, max_score):
            d = self.landmark_model(image, c[0], c[1], size, "palm_detector", a)
            t = track(self.landmark_model, image, d) if d is not None else None
            if t is not None:
                merge_hands(hands, [t])
        return hands

    def _search(self, image: np.ndarray, cx: float, cy: float, size: float, source: str,
                offsets: Sequence[tuple[float, float]] = ((0, 0),), scales: Sequence[float] = (1.0,),
                angles: Sequence[float] = (0.0,), avoid: Sequence[HandDetection] = (),
                max_track: int = MAX_TRACK) -> list[HandDetection]:
        """Crops at ``(cx, cy) + offset * size`` of ``scale * size`` turned by each angle. Results that
        are one of ``avoid`` (the hands already found) or repeat a better one are dropped; the
        ``max_track`` most confident of the rest are tracked (:func:`~ihmr.detect.tracking.track`) and
        returned, best first, unless tracking led them onto a hand of ``avoid``."""
        cands: list[HandDetection] = []
        for dx, dy in offsets:
            for sc in scales:
                for a in angles:
                    d = self.landmark_model(image, cx + dx * size, cy + dy * size, size * sc, source, a)
                    if d is not None and not any(same_hand(d, h) for h in avoid):
                        cands.append(d)
        found: list[HandDetection] = []
        for d in sorted(cands, key=lambda h: -h.score):
            if len(found) >= max_track:
                break
            if any(overlap(d.landmarks_2d, q.landmarks_2d) < SAME_HAND_ALWAYS for q in found):
                continue
            t = track(self.landmark_model, image, d)
            if t is not None and not any(same_hand(t, h) for h in avoid):
                found.append(t)
        return sorted(found, key=lambda h: -h.score)

    def __call__(self, image: np.ndarray, boxes: Sequence[Sequence[float]] = (), max_hands: int = 4) -> Detections:
        """Detect hands in an RGB ``(H, W, 3)`` uint8 image; ``boxes`` are optional ``(x, y, w, h)``
        regions known to hold hands (e.g. a data set's box or a user's ``--box``)."""
        tried = ["palm detector + landmark model (tracked crops)"]
        hands = self._palm_hands(image)

        def lonely(h0: HandDetection) -> bool:  # no hand of the other side next to it
            return not any(h.side != h0.side and float(np.linalg.norm(h.centre - h0.centre)) < PARTNER_DIST * max(h.size, h0.size)
                           for h in hands)

        def need() -> bool:
            return len(hands) < 2 or any(lonely(h) for h in hands)

        grid = ((0, 0), (-0.3, 0), (0.3, 0), (0, -0.3), (0, 0.3), (-0.25, -0.25), (0.25, 0.25), (-0.25, 0.25), (0.25, -0.25))
        ring = ((0, 0), (-0.5, 0), (0.5, 0), (0, -0.5), (0, 0.5), (-0.5, -0.5), (0.5, 0.5), (-0.5, 0.5), (0.5, -0.5))
        quarter = (0.0, 0.5 * np.pi, np.pi, 1.5 * np.pi)
        if need():
            for x, y, w, h in boxes:
                tried.append(f"landmark model on tracked crops of box ({x:.0f}, {y:.0f}, {w:.0f}, {h:.0f})")
                merge_hands(hands, self._search(image, x + w / 2, y + h / 2, max(w, h) * 0.75, "crop", grid, (1.0, 1.3), avoid=hands))
        if not hands and self._min_palm_score > LOW_PALM_SCORE:
            tried.append(f"palm detector down to a score of {LOW_PALM_SCORE}")
            hands = self._palm_hands(image, LOW_PALM_SCORE, max_score=self._min_palm_score)
        if not hands:
            tried.append("MediaPipe's legacy hands pipeline")
            merge_hands(hands, self._legacy(image))
        if hands and need():
            # The partner of each hand found: the one most confident distinct hand of the other side
            # on crops around it (4 orientations; the partner's is unknown).
            for h0 in list(hands):
                if not lonely(h0):
                    continue
                tried.append(f"partner search around the {h0.side} hand (tracked crops, 4 orientations)")
                other = [d for d in self._search(image, *h0.centre, h0.size, "partner_crop", ring, (2.0,), quarter, avoid=hands)
                         if d.side != h0.side]
                merge_hands(hands, other[:1])
        hands.sort(key=lambda h: -h.score)
        hands = hands[:max_hands]
        if len(hands) >= 2 and len({h.side for h in hands}) < 2:
            # Distinct hands all labelled alike: a side the classifier gave (3D landmarks too flat to
            # tell) may be wrong; the least confident such hand is taken to be the other side.
            weak = [i for i in range(1, len(hands)) if hands[i].side_from == "classifier"]
            if weak:
                k = min(weak, key=lambda i: hands[i].handedness_score)
                hands[k].side = "left" if hands[k].side == "right" else "right"
                hands[k].handedness_score = 1.0 - hands[k].handedness_score
                tried.append("handedness conflict: the least confident hand was relabelled")
        return Detections(hands=hands, tried=tried)
