"""Hand detection and 2D/3D landmarks with MediaPipe Hands 0.10.21 (offline, CPU).

1. The legacy ``mediapipe.solutions.hands`` pipeline (palm detector + landmark model) on the image.
2. Where it finds fewer than two hands (closely interacting hands are where the palm detector
   fails most), the landmark model alone (``hand_landmark_full.tflite`` shipped in the wheel, run
   with ``ai-edge-litert``) is tried on square crops: around every hand found (its partner is next
   to it), around a user or data-set box, and with the found hands masked out. Its presence score
   rejects crops without a hand.

Handedness: MediaPipe labels assume a mirrored (selfie) image; ihmr reports the anatomical side of
a hand in the image as given (``mirrored=False``), swapping MediaPipe's label.
Landmarks are returned in MediaPipe order (convert with :mod:`ihmr.joint_order`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ihmr.errors import IhmrError

__all__ = ["HandDetection", "Detections", "HandDetector"]

#: Crop = this many times the hand's landmark extent.
CROP_SCALE = 1.6
#: Minimum presence score of a crop result.
MIN_PRESENCE = 0.5


@dataclass
class HandDetection:
    """One hand.

    Attributes:
        side: "right" or "left" (anatomical, for the image as given).
        score: presence / detection confidence in [0, 1].
        handedness_score: confidence of ``side``.
        landmarks_2d: ``(21, 2)`` pixels, MediaPipe order.
        world: ``(21, 3)`` metres, MediaPipe order, hand-centred, image-aligned axes (x right, y down).
        source: "palm_detector", "crop" or "masked_crop".
    """

    side: str
    score: float
    handedness_score: float
    landmarks_2d: np.ndarray
    world: np.ndarray
    source: str

    @property
    def size(self) -> float:
        """Extent of the 2D landmarks in pixels."""
        return float(np.max(self.landmarks_2d.max(0) - self.landmarks_2d.min(0)))

    @property
    def centre(self) -> np.ndarray:
        return 0.5 * (self.landmarks_2d.max(0) + self.landmarks_2d.min(0))


@dataclass
class Detections:
    hands: list[HandDetection]
    tried: list[str] = field(default_factory=list)


class HandDetector:
    """MediaPipe-based detector (create once, reuse for many images)."""

    def __init__(self, min_detection_confidence: float = 0.3, max_hands: int = 4) -> None:
        try:
            import mediapipe as mp
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:  # pragma: no cover - install problem
            raise IhmrError(f"the image front end needs mediapipe==0.10.21 and ai-edge-litert ({e})") from e
        self._hands = mp.solutions.hands.Hands(
            static_image_mode=True, max_num_hands=max_hands, model_complexity=1,
            min_detection_confidence=min_detection_confidence,
        )
        model = os.path.join(os.path.dirname(mp.__file__), "modules", "hand_landmark", "hand_landmark_full.tflite")
        self._itp = Interpreter(model_path=model)
        self._itp.allocate_tensors()
        self._in = self._itp.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._itp.get_output_details()}
        self._out = (outs["Identity"], outs["Identity_1"], outs["Identity_2"], outs["Identity_3"])

    # -- the full pipeline ---------------------------------------------------------------------
    def _palm_pipeline(self, image: np.ndarray) -> list[HandDetection]:
        H, W = image.shape[:2]
        res = self._hands.process(image)
        out = []
        if not res.multi_hand_landmarks:
            return out
        for lm, wl, hd in zip(res.multi_hand_landmarks, res.multi_hand_world_landmarks, res.multi_handedness):
            c = hd.classification[0]
            side = "right" if c.label == "Left" else "left"  # MediaPipe assumes a mirrored image
            xy = np.array([[p.x * W, p.y * H] for p in lm.landmark])
            world = np.array([[p.x, p.y, p.z] for p in wl.landmark])
            out.append(HandDetection(side, float(c.score), float(c.score), xy, world, "palm_detector"))
        return out

    # -- the landmark model on a crop ------------------------------------------------------------
    def _crop(self, image: np.ndarray, cx: float, cy: float, size: float, source: str) -> Optional[HandDetection]:
        from PIL import Image

        H, W = image.shape[:2]
        s = max(int(round(size)), 8)
        x0, y0 = int(round(cx - s / 2)), int(round(cy - s / 2))
        patch = np.zeros((s, s, 3), np.uint8)
        xa, ya, xb, yb = max(0, x0), max(0, y0), min(W, x0 + s), min(H, y0 + s)
        if xb <= xa or yb <= ya:
            return None
        patch[ya - y0:yb - y0, xa - x0:xb - x0] = image[ya:yb, xa:xb]
        inp = np.asarray(Image.fromarray(patch).resize((224, 224), Image.BILINEAR), np.float32)[None] / 255.0
        self._itp.set_tensor(self._in, inp)
        self._itp.invoke()
        lm, pres, hand, world = (self._itp.get_tensor(i) for i in self._out)
        presence = float(pres.ravel()[0])
        if presence < MIN_PRESENCE:
            return None
        xy = lm.reshape(21, 3)[:, :2] * (s / 224.0) + np.array([x0, y0])
        # The landmark model's score is the probability of "Right" (second label of handedness.txt).
        # Unlike the full pipeline's label, on our data (InterHand2.6M frames, not mirrored) it
        # matched the anatomical side as is.
        p_right = float(hand.ravel()[0])
        side = "right" if p_right > 0.5 else "left"
        conf = p_right if p_right > 0.5 else 1.0 - p_right
        return HandDetection(side, presence, conf, xy, world.reshape(21, 3).astype(np.float64), source)

    def _search(self, image: np.ndarray, cx: float, cy: float, size: float, source: str) -> list[HandDetection]:
        found = []
        for dx, dy in ((0, 0), (-0.3, 0), (0.3, 0), (0, -0.3), (0, 0.3), (-0.25, -0.25), (0.25, 0.25), (-0.25, 0.25), (0.25, -0.25)):
            for sc in (1.0, 1.3):
                d = self._crop(image, cx + dx * size, cy + dy * size, size * sc, source)
                if d is not None:
                    found.append(d)
        return found

    @staticmethod
    def _same(a: HandDetection, b: HandDetection) -> bool:
        size = max(a.size, b.size, 1.0)
        if a.side != b.side and min(a.handedness_score, b.handedness_score) > 0.75:
            return False  # confidently different hands, even when they overlap in the image (praying)
        if float(np.linalg.norm(a.landmarks_2d - b.landmarks_2d, axis=1).mean()) < 0.2 * size:
            return True
        return a.side == b.side and float(np.linalg.norm(a.centre - b.centre)) < 0.2 * size

    def _merge(self, hands: list[HandDetection], new: list[HandDetection]) -> list[HandDetection]:
        for d in sorted(new, key=lambda h: -h.score):
            if not any(self._same(d, h) for h in hands):
                hands.append(d)
        return hands

    def __call__(self, image: np.ndarray, boxes: Sequence[Sequence[float]] = (), max_hands: int = 4) -> Detections:
        """Detect hands in an RGB ``(H, W, 3)`` uint8 image; ``boxes`` are optional ``(x, y, w, h)``
        regions known to hold hands (e.g. a data set's box or a user's ``--box``)."""
        tried = ["palm detector + landmarks (full image)"]
        hands = self._palm_pipeline(image)
        sides = lambda: {h.side for h in hands}  # noqa: E731
        if len(hands) < 2 or len(sides()) < 2:
            for x, y, w, h in boxes:
                tried.append(f"landmark model on crops of box ({x:.0f}, {y:.0f}, {w:.0f}, {h:.0f})")
                self._merge(hands, self._search(image, x + w / 2, y + h / 2, max(w, h) * 0.75, "crop"))
        if hands and (len(hands) < 2 or len(sides()) < 2):
            for h0 in list(hands):
                tried.append(f"partner search around the {h0.side} hand")
                self._merge(hands, self._search(image, *h0.centre, h0.size * CROP_SCALE, "crop"))
        if hands and len(sides()) < 2:
            masked = image.copy()
            for h0 in hands:
                x0, y0 = np.maximum(h0.landmarks_2d.min(0) - 0.1 * h0.size, 0).astype(int)
                x1, y1 = (h0.landmarks_2d.max(0) + 0.1 * h0.size).astype(int)
                masked[y0:y1, x0:x1] = 0
            tried.append("landmark model with the found hand(s) masked")
            for h0 in list(hands):
                self._merge(hands, self._search(masked, *h0.centre, h0.size * CROP_SCALE, "masked_crop"))
        hands.sort(key=lambda h: -h.score)
        hands = hands[:max_hands]
        if len(hands) >= 2 and len(sides()) == 1:
            # Two distinct hands labelled alike (overlapping hands confuse the handedness output):
            # the less confident one is taken to be the other side.
            k = min(range(1, len(hands)), key=lambda i: hands[i].handedness_score)
            hands[k].side = "left" if hands[k].side == "right" else "right"
            hands[k].handedness_score = 1.0 - hands[k].handedness_score
            tried.append("handedness conflict: the less confident hand was relabelled")
        return Detections(hands=hands, tried=tried)
