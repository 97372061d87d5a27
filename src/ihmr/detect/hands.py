"""Hand detection and 2D/3D landmarks with MediaPipe Hands 0.10.21's models (offline, CPU).

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
5. If nothing at all is found, MediaPipe's legacy ``mediapipe.solutions.hands`` pipeline.

Handedness: the side of each hand is decided by the *chirality* of its metric 3D landmarks
(:func:`chirality`: on which side of the palm plane, oriented by the index -> pinky direction, the
thumb and the flexing fingers lie), which mirrors with the hand; the landmark model's handedness
score is used only where the 3D landmarks are too flat to tell. MediaPipe's own labels assume a
mirrored (selfie) image; ihmr reports the anatomical side of a hand in the image as given.
Landmarks are returned in MediaPipe order (convert with :mod:`ihmr.joint_order`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ihmr.errors import IhmrError

__all__ = ["HandDetection", "Detections", "HandDetector", "chirality", "chirality_side", "overlap", "landmark_roi"]

#: Tracking crop (MediaPipe's hand_landmark_landmarks_to_roi): 2 x the palm-side landmarks' box,
#: shifted by 0.1 of its height towards the fingers.
ROI_SCALE, ROI_SHIFT = 2.0, 0.1
#: Minimum presence score of a crop result.
MIN_PRESENCE = 0.5
#: |chirality| below this (out-of-plane offset / palm length) is too flat to tell the side.
CHIRALITY_MIN = 0.05
#: Landmark overlap (mean same-joint distance / hand size) below which two detections are one hand,
#: and the lower bound below which they are one hand even when their chiralities differ.
SAME_HAND, SAME_HAND_ALWAYS = 0.2, 0.1
#: Two hands of one side whose landmark boxes overlap more than this (IoU) are one hand (a second
#: detection of the same side cannot overlap it that much; MediaPipe's own palm NMS uses 0.3).
SAME_SIDE_IOU = 0.3
#: Most square tiles the palm detector sees of an image far from square (bounds its cost).
MAX_TILES = 4
#: Lowest palm-detector score proposed to the landmark model (MediaPipe's own default is 0.5).
MIN_PALM_SCORE = 0.2
#: A hand whose centre is within this many hand sizes of a hand of the other side has its partner
#: (the pipeline pairs hands up to 1.5 sizes apart).
PARTNER_DIST = 1.5
#: Tracking iterations (re-crop from the landmarks) per crop result.
TRACK_ITERS = 2
#: Tracking has converged when the landmarks move less than this (of the hand's size); a result
#: whose next re-crop moves them by more than ``UNSTABLE`` is not a hand the model can hold on to
#: (measured: real hands 0.005-0.07, a hand's fingers taken for another hand 0.58).
CONVERGED, UNSTABLE = 0.05, 0.25
#: Most crop results of one search that are tracked (the most confident distinct ones).
MAX_TRACK = 3

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


def landmark_roi(xy: np.ndarray, scale: float = ROI_SCALE, shift: float = ROI_SHIFT) -> tuple[np.ndarray, float, float]:
    """Crop around one hand's 2D landmarks ``(21, 2)`` as MediaPipe's tracking derives it: turned so
    that the wrist -> palm-centre direction (middle finger base, averaged with the index and ring
    bases) is upright; centred on the box of the palm-side landmarks (wrist, thumb, bases of the
    fingers: what stays visible and reliable) in that frame, shifted by ``shift`` x its height
    towards the fingers; side ``scale`` x its longer side. Returns ``(centre (2,), size, angle)``."""
    tip = 0.5 * (0.5 * (xy[_INDEX_MCP] + xy[_RING_MCP]) + xy[_MIDDLE_MCP])
    d = tip - xy[_WRIST]
    a = float(np.arctan2(d[0], -d[1]))
    R = _rot(a)
    pts = xy[list(_ROI_LANDMARKS)]
    q = (pts - pts.mean(0)) @ R  # into the upright frame
    lo, hi = q.min(0), q.max(0)
    centre = pts.mean(0) + R @ ((lo + hi) / 2 + np.array([0.0, -shift * (hi - lo)[1]]))
    return centre, float(max(hi - lo)) * scale, a


def _rot(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s], [s, c]])


def _mediapipe_modules() -> str:
    """The ``modules`` folder of the installed mediapipe wheel, found without importing mediapipe
    (its import pulls in matplotlib and costs ~0.6 s)."""
    import importlib.util

    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise IhmrError("the image front end needs mediapipe==0.10.21 (its model files) and ai-edge-litert")
    return os.path.join(list(spec.submodule_search_locations)[0], "modules")


def _palm_anchors() -> np.ndarray:
    """Centres ``(2016, 2)`` (normalised) of the palm detector's SSD anchors: 192 x 192 input, strides
    8 (2 anchors per cell) and 16 (3 layers merged: 6 anchors per cell), fixed unit anchor size."""
    out = []
    for stride, per_cell in ((8, 2), (16, 6)):
        g = 192 // stride
        yy, xx = np.meshgrid((np.arange(g) + 0.5) / g, (np.arange(g) + 0.5) / g, indexing="ij")
        out.append(np.repeat(np.stack([xx.ravel(), yy.ravel()], 1), per_cell, axis=0))
    return np.concatenate(out)


def _box_iou(a: np.ndarray, b: np.ndarray) -> float:
    lo, hi = np.maximum(a.min(0), b.min(0)), np.minimum(a.max(0), b.max(0))
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    area = lambda p: float(np.prod(np.ptp(p, 0)))  # noqa: E731
    return inter / max(area(a) + area(b) - inter, 1e-9)


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
    hands: list[HandDetection]
    tried: list[str] = field(default_factory=list)


class HandDetector:
    """MediaPipe-based detector (create once, reuse for many images)."""

    def __init__(self, min_detection_confidence: float = 0.3, max_hands: int = 4, min_palm_score: float = MIN_PALM_SCORE) -> None:
        try:
            from ai_edge_litert.interpreter import Interpreter
        except ImportError as e:  # pragma: no cover - install problem
            raise IhmrError(f"the image front end needs mediapipe==0.10.21 and ai-edge-litert ({e})") from e
        self._min_detection_confidence = min_detection_confidence
        self._max_hands = max_hands
        self._min_palm_score = min_palm_score
        self._hands = None  # the legacy pipeline, loaded only as a fallback
        modules = _mediapipe_modules()
        self._itp = Interpreter(model_path=os.path.join(modules, "hand_landmark", "hand_landmark_full.tflite"))
        self._itp.allocate_tensors()
        self._in = self._itp.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._itp.get_output_details()}
        self._out = (outs["Identity"], outs["Identity_1"], outs["Identity_2"], outs["Identity_3"])
        self._palm = Interpreter(model_path=os.path.join(modules, "palm_detection", "palm_detection_full.tflite"))
        self._palm.allocate_tensors()
        self._palm_in = self._palm.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._palm.get_output_details()}
        self._palm_out = (outs["Identity"], outs["Identity_1"])  # (1, 2016, 18) boxes + keypoints, (1, 2016, 1) logits
        self._anchors = _palm_anchors()

    # -- the palm detector, run directly ---------------------------------------------------------
    def palms(self, image: np.ndarray, min_score: Optional[float] = None) -> list[tuple[float, np.ndarray, float, float]]:
        """Palm detections as hand crops, best first: ``(score, centre (2,), size, angle)``.

        The model sees the image letter-boxed to its square 192 x 192 input (RGB in [0, 1]); an
        image far from square is also seen as overlapping square tiles along its long side, so that
        letter-boxing does not shrink its hands. Boxes and the 7 palm keypoints are decoded against
        the SSD anchors, overlapping boxes suppressed (IoU > 0.3), and each palm becomes MediaPipe's
        hand crop: turned so that wrist -> middle finger base is upright, shifted by half the palm
        box towards the fingers, 2.6 x the palm box. ``min_score`` (default 0.2; MediaPipe's default
        is 0.5): every crop is checked by the landmark model's presence score afterwards, so weak
        palms may be proposed.
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
        cands.sort(key=lambda c: -c[0])
        out, boxes = [], []
        for score, box, crop in cands:
            if any(_box_iou(box, b) > 0.3 for b in boxes):
                continue
            boxes.append(box)
            out.append(crop)
            if len(out) >= 2 * self._max_hands:
                break
        return out

    def _palms_in(self, image: np.ndarray, thr: float, origin: np.ndarray) -> list:
        from PIL import Image

        H, W = image.shape[:2]
        S = max(H, W)
        ox, oy = (S - W) // 2, (S - H) // 2
        pad = np.zeros((S, S, 3), np.uint8)
        pad[oy:oy + H, ox:ox + W] = image
        x = np.asarray(Image.fromarray(pad).resize((192, 192), Image.BILINEAR), np.float32)[None] / 255.0
        self._palm.set_tensor(self._palm_in, x)
        self._palm.invoke()
        reg = self._palm.get_tensor(self._palm_out[0])[0].astype(np.float64)
        logit = self._palm.get_tensor(self._palm_out[1])[0, :, 0].astype(np.float64)
        score = 1.0 / (1.0 + np.exp(-np.clip(logit, -100, 100)))
        off = np.array([ox, oy], np.float64) - origin
        out = []
        for k in np.flatnonzero(score >= thr):
            c = (reg[k, :2] / 192.0 + self._anchors[k]) * S - off
            wh = np.abs(reg[k, 2:4]) / 192.0 * S
            wrist = (reg[k, 4:6] / 192.0 + self._anchors[k]) * S - off
            middle = (reg[k, 8:10] / 192.0 + self._anchors[k]) * S - off
            d = middle - wrist
            a = float(np.arctan2(d[0], -d[1]))
            side = float(wh.max())
            crop = (float(score[k]), c + _rot(a) @ np.array([0.0, -0.5 * side]), 2.6 * side, a)
            out.append((float(score[k]), np.stack([c - wh / 2, c + wh / 2]), crop))
        return out

    def _palm_hands(self, image: np.ndarray) -> list[HandDetection]:
        hands: list[HandDetection] = []
        for _, c, size, a in self.palms(image):
            d = self._crop(image, c[0], c[1], size, "palm_detector", a)
            t = self._track(image, d) if d is not None else None
            if t is not None:
                self._merge(hands, [t])
        return hands

    # -- the legacy MediaPipe pipeline (fallback) -----------------------------------------------
    def _palm_pipeline(self, image: np.ndarray) -> list[HandDetection]:
        if self._hands is None:
            import mediapipe as mp

            self._hands = mp.solutions.hands.Hands(
                static_image_mode=True, max_num_hands=self._max_hands, model_complexity=1,
                min_detection_confidence=self._min_detection_confidence,
            )
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
            out.append(HandDetection(side, float(c.score), float(c.score), xy, world, "mediapipe_pipeline"))
        return out

    # -- the landmark model on a crop ------------------------------------------------------------
    def _crop(self, image: np.ndarray, cx: float, cy: float, size: float, source: str, angle: float = 0.0,
              min_presence: float = MIN_PRESENCE) -> Optional[HandDetection]:
        """The landmark model on the square crop of side ``size`` centred at ``(cx, cy)`` and turned by
        ``angle`` (radians; the crop's up direction is the image direction ``(sin a, -cos a)``)."""
        from PIL import Image

        s = max(float(size), 8.0)
        R = _rot(angle)
        A = (s / 224.0) * R  # crop pixel -> image pixel
        b = np.array([cx, cy]) - A @ np.array([112.0, 112.0])
        patch = Image.fromarray(image).transform(
            (224, 224), Image.AFFINE, (A[0, 0], A[0, 1], b[0], A[1, 0], A[1, 1], b[1]), resample=Image.BILINEAR)
        inp = np.asarray(patch, np.float32)[None] / 255.0
        self._itp.set_tensor(self._in, inp)
        self._itp.invoke()
        lm, pres, hand, world = (self._itp.get_tensor(i) for i in self._out)
        presence = float(pres.ravel()[0])
        if presence < min_presence:
            return None
        xy = lm.reshape(21, 3)[:, :2] @ A.T + b
        w = world.reshape(21, 3).astype(np.float64)
        w[:, :2] = w[:, :2] @ R.T  # back to image-aligned axes (a rotation about the view axis)
        # The landmark model's score is the probability of "Right" (second label of handedness.txt);
        # on non-mirrored images it matched the anatomical side as is. Chirality overrides it.
        p_right = float(hand.ravel()[0])
        side = "right" if p_right > 0.5 else "left"
        conf = p_right if p_right > 0.5 else 1.0 - p_right
        return HandDetection(side, presence, conf, xy, w, source)

    def _track(self, image: np.ndarray, d: HandDetection) -> Optional[HandDetection]:
        """Track a crop result as MediaPipe tracks a hand from frame to frame: re-crop from its
        landmarks (:func:`landmark_roi`) until they settle. Returns the most confident (presence)
        result that is *stable*, i.e. that the next re-crop finds again (it moves by less than
        ``UNSTABLE`` of the hand's size); None if there is none: a crop that mixed two hands, or
        fingers taken for a hand, drifts away on the next re-crop."""
        seq = [d]
        for _ in range(TRACK_ITERS):
            c, s, a = landmark_roi(seq[-1].landmarks_2d)
            seq.append(self._crop(image, c[0], c[1], s, d.source, a, min_presence=0.0))
            if overlap(seq[-1].landmarks_2d, seq[-2].landmarks_2d) < CONVERGED:
                break
        moves = [overlap(seq[k + 1].landmarks_2d, seq[k].landmarks_2d) for k in range(len(seq) - 1)]
        ok = [k for k, m in enumerate(moves) if m < UNSTABLE]
        if moves[-1] < CONVERGED:
            ok.append(len(seq) - 1)
        ok = [k for k in ok if seq[k].score >= MIN_PRESENCE]
        return seq[max(ok, key=lambda k: seq[k].score)] if ok else None

    def _search(self, image: np.ndarray, cx: float, cy: float, size: float, source: str,
                offsets: Sequence[tuple[float, float]] = ((0, 0),), scales: Sequence[float] = (1.0,),
                angles: Sequence[float] = (0.0,), avoid: Sequence[HandDetection] = (),
                max_track: int = MAX_TRACK) -> list[HandDetection]:
        """Crops at ``(cx, cy) + offset * size`` of ``scale * size`` turned by each angle. Results that
        are one of ``avoid`` (the hands already found) or repeat a better one are dropped; the
        ``max_track`` most confident of the rest are tracked (:meth:`_track`) and returned, best first,
        unless tracking led them onto a hand of ``avoid``."""
        cands: list[HandDetection] = []
        for dx, dy in offsets:
            for sc in scales:
                for a in angles:
                    d = self._crop(image, cx + dx * size, cy + dy * size, size * sc, source, a)
                    if d is not None and not any(self._same(d, h) for h in avoid):
                        cands.append(d)
        found: list[HandDetection] = []
        for d in sorted(cands, key=lambda h: -h.score):
            if len(found) >= max_track:
                break
            if any(overlap(d.landmarks_2d, q.landmarks_2d) < SAME_HAND_ALWAYS for q in found):
                continue
            t = self._track(image, d)
            if t is not None and not any(self._same(t, h) for h in avoid):
                found.append(t)
        return sorted(found, key=lambda h: -h.score)

    @staticmethod
    def _same(a: HandDetection, b: HandDetection) -> bool:
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
        return a.side == b.side and _box_iou(a.landmarks_2d, b.landmarks_2d) > SAME_SIDE_IOU

    def _merge(self, hands: list[HandDetection], new: list[HandDetection]) -> list[HandDetection]:
        for d in sorted(new, key=lambda h: -h.score):
            if not any(self._same(d, h) for h in hands):
                hands.append(d)
        return hands

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
                self._merge(hands, self._search(image, x + w / 2, y + h / 2, max(w, h) * 0.75, "crop", grid, (1.0, 1.3), avoid=hands))
        if not hands:
            tried.append("MediaPipe's legacy hands pipeline")
            self._merge(hands, self._palm_pipeline(image))
        if hands and need():
            # The partner of each hand found: the one most confident distinct hand of the other side
            # on crops around it (4 orientations; the partner's is unknown).
            for h0 in list(hands):
                if not lonely(h0):
                    continue
                tried.append(f"partner search around the {h0.side} hand (tracked crops, 4 orientations)")
                other = [d for d in self._search(image, *h0.centre, h0.size, "partner_crop", ring, (2.0,), quarter, avoid=hands)
                         if d.side != h0.side]
                self._merge(hands, other[:1])
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
