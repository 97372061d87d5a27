"""The two TFLite models of MediaPipe Hands 0.10.21 (shipped in the mediapipe wheel), run directly
with ``ai-edge-litert``, and MediaPipe's legacy hands pipeline (a fallback).

``ai_edge_litert`` and ``mediapipe`` are optional heavy dependencies: imported lazily, inside the
functions that need them.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Optional

import numpy as np
from PIL import Image

from ihmr.detect.landmarks import HandDetection
from ihmr.errors import IhmrError
from ihmr.geometry.rotations import rotation_2d

__all__ = ["MIN_PRESENCE", "PalmModel", "LandmarkModel", "LegacyHands", "open_models", "mediapipe_modules"]

#: Minimum presence score of a crop result.
MIN_PRESENCE = 0.5
#: Side (pixels) of the landmark model's square input.
LANDMARK_INPUT = 224


def mediapipe_modules() -> str:
    """The ``modules`` folder of the installed mediapipe wheel, found without importing mediapipe
    (its import pulls in matplotlib and costs ~0.6 s)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise IhmrError("the image front end needs mediapipe==0.10.21 (its model files) and ai-edge-litert")
    return os.path.join(list(spec.submodule_search_locations)[0], "modules")


class PalmModel:
    """``palm_detection_full.tflite``: ``(1, 192, 192, 3)`` RGB in [0, 1] -> regressors ``(2016, 18)``
    (box + 7 keypoints, input pixels relative to the SSD anchors) and logits ``(2016,)``."""

    def __init__(self, interpreter) -> None:
        self._itp = interpreter
        self._itp.allocate_tensors()
        self._in = self._itp.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._itp.get_output_details()}
        self._out = (outs["Identity"], outs["Identity_1"])  # (1, 2016, 18) boxes + keypoints, (1, 2016, 1) logits

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._itp.set_tensor(self._in, x)
        self._itp.invoke()
        reg = self._itp.get_tensor(self._out[0])[0].astype(np.float64)
        logit = self._itp.get_tensor(self._out[1])[0, :, 0].astype(np.float64)
        return reg, logit


class LandmarkModel:
    """``hand_landmark_full.tflite`` on a square, turned crop of an image -> one :class:`HandDetection`."""

    def __init__(self, interpreter) -> None:
        self._itp = interpreter
        self._itp.allocate_tensors()
        self._in = self._itp.get_input_details()[0]["index"]
        outs = {d["name"]: d["index"] for d in self._itp.get_output_details()}
        self._out = (outs["Identity"], outs["Identity_1"], outs["Identity_2"], outs["Identity_3"])

    def __call__(self, image: np.ndarray, cx: float, cy: float, size: float, source: str, angle: float = 0.0,
                 min_presence: float = MIN_PRESENCE) -> Optional[HandDetection]:
        """The landmark model on the square crop of side ``size`` centred at ``(cx, cy)`` and turned by
        ``angle`` (radians; the crop's up direction is the image direction ``(sin a, -cos a)``); None
        when its presence score is below ``min_presence``."""
        s = max(float(size), 8.0)
        R = rotation_2d(angle)
        A = (s / 224.0) * R  # crop pixel -> image pixel
        b = np.array([cx, cy]) - A @ np.array([112.0, 112.0])
        patch = Image.fromarray(image).transform(
            (LANDMARK_INPUT, LANDMARK_INPUT), Image.AFFINE, (A[0, 0], A[0, 1], b[0], A[1, 0], A[1, 1], b[1]),
            resample=Image.BILINEAR)
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


def open_models() -> tuple[PalmModel, LandmarkModel]:
    """The palm detector and the landmark model of the installed mediapipe wheel."""
    try:
        from ai_edge_litert.interpreter import Interpreter  # optional heavy dependency: lazy
    except ImportError as e:  # pragma: no cover - install problem
        raise IhmrError(f"the image front end needs mediapipe==0.10.21 and ai-edge-litert ({e})") from e
    modules = mediapipe_modules()
    landmark = LandmarkModel(Interpreter(model_path=os.path.join(modules, "hand_landmark", "hand_landmark_full.tflite")))
    palm = PalmModel(Interpreter(model_path=os.path.join(modules, "palm_detection", "palm_detection_full.tflite")))
    return palm, landmark


class LegacyHands:
    """MediaPipe's legacy ``mediapipe.solutions.hands`` pipeline (a fallback), loaded on first use."""

    def __init__(self, max_hands: int, min_detection_confidence: float) -> None:
        self._max_hands = max_hands
        self._min_detection_confidence = min_detection_confidence
        self._hands = None

    def __call__(self, image: np.ndarray) -> list[HandDetection]:
        if self._hands is None:
            import mediapipe as mp  # optional heavy dependency: lazy

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
