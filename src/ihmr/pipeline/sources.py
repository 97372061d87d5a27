"""Stage I: the hands' initial parameters and placement in camera coordinates, from one of two
sources behind one interface, ``source(image, K, boxes) -> InitialHands``:

- :class:`LandmarkSource`: MediaPipe detection and landmarks (:mod:`ihmr.detect`) -> per-hand
  analytic IK on the metric world landmarks and a perspective root translation from the 2D
  landmarks. The hands come unpaired (the reconstructor pairs and re-places them).
- :class:`NetworkSource`: a stage-I network checkpoint: a crop around both hands (the given box(es),
  else the box of the MediaPipe landmarks, else the whole image) -> :class:`~ihmr.stage1.network.Stage1Net`
  -> the pair in camera coordinates (:func:`~ihmr.geometry.camera.weak_to_perspective`), with the
  joint head's joints as the targets of the refinement. The hands come as one pair (right, left).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional, Protocol, Sequence

import numpy as np
import torch

from ihmr.detect import HandDetector
from ihmr.geometry.camera import weak_to_perspective
from ihmr.geometry.crop import apply_affine, crop_affine, crop_image, hand_boxes, invert_affine, normalise_image
from ihmr.handmodel import TwoHands
from ihmr.joint_order import convert
from ihmr.pipeline.pairing import root_translation
from ihmr.pipeline.results import HandResult, NoHandsError
from ihmr.stage1 import hand_ik

__all__ = ["InitialHands", "Stage1Source", "LandmarkSource", "NetworkSource"]


@dataclass
class InitialHands:
    """Stage I's hands (camera coordinates), notes (in words) and seconds per step ("detect",
    "initial_fit"). ``pairs``: the ``(right, left)`` pairs as the source placed them, or None when the
    hands are to be paired by proximity and re-placed (:mod:`ihmr.pipeline.pairing`)."""

    hands: list[HandResult]
    notes: list[str]
    timings_s: dict[str, float] = field(default_factory=dict)
    pairs: Optional[list[tuple[int, int]]] = None


class Stage1Source(Protocol):
    """``source(image (H, W, 3) uint8, K (3, 3), boxes [(x, y, w, h)]) -> InitialHands``; ``detector``
    is the hand detector it uses (replaceable, e.g. by a stub in tests)."""

    detector: HandDetector

    def __call__(self, image: np.ndarray, K: np.ndarray, boxes: Sequence[Sequence[float]]) -> InitialHands: ...


class LandmarkSource:
    """MediaPipe landmarks + analytic IK (see the module docstring)."""

    def __init__(self, hands: TwoHands, detector: HandDetector) -> None:
        self.hands = hands
        self.detector = detector

    def __call__(self, image: np.ndarray, K: np.ndarray, boxes: Sequence[Sequence[float]]) -> InitialHands:
        t = {}
        t0 = time.perf_counter()
        det = self.detector(image, boxes)
        t["detect"] = time.perf_counter() - t0
        if not det.hands:
            raise NoHandsError("no hands found (tried: " + "; ".join(det.tried) + ")")
        t0 = time.perf_counter()
        hands: list[HandResult] = []
        for d in det.hands:
            layer = self.hands.right if d.side == "right" else self.hands.left
            world = convert(d.world, "mediapipe", "mano")
            uv = convert(d.landmarks_2d, "mediapipe", "mano")
            T = root_translation(world, uv, K)
            ik = hand_ik(layer, torch.as_tensor(world[None], dtype=torch.float64))
            out = layer(ik.beta, ik.global_orient, ik.hand_pose)
            shift = torch.as_tensor(world[0] + T) - out.joints[0, 0]
            hands.append(HandResult(
                side=d.side, score=d.score,
                params=dict(beta=ik.beta[0].numpy(), global_orient=ik.global_orient[0].numpy(),
                            hand_pose=ik.hand_pose[0].numpy(), wrist=(world[0] + T)),
                joints_3d=(out.joints[0] + shift).numpy(), joints_2d=uv,
                vertices=(out.vertices[0] + shift).numpy(), source=d.source, landmarks_3d=world + T,
            ))
        t["initial_fit"] = time.perf_counter() - t0
        return InitialHands(hands=hands, notes=list(det.tried), timings_s=t)


class NetworkSource:
    """The stage-I network (see the module docstring): ``net, arch`` as
    :func:`~ihmr.stage1.weights.load_stage1` returns them; ``hands`` built on the checkpoint's hand
    model (``arch.model``)."""

    def __init__(self, net: torch.nn.Module, arch, hands: TwoHands, detector: HandDetector) -> None:
        self.net, self.arch, self.hands, self.detector = net, arch, hands, detector

    def hands_box(self, image: np.ndarray, boxes: Sequence[Sequence[float]], notes: list[str]) -> np.ndarray:
        """``[x0, y0, x1, y1]`` around both hands: the union of ``boxes`` (x, y, w, h), else of the
        MediaPipe landmarks (enlarged 1.2x), else the whole image; appends what it used to ``notes``."""
        H, W = image.shape[:2]
        if len(boxes):
            b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            notes.append("stage I: crop from the given box(es)")
            return np.array([b[:, 0].min(), b[:, 1].min(), (b[:, 0] + b[:, 2]).max(), (b[:, 1] + b[:, 3]).max()])
        det = self.detector(image, ())
        if det.hands:
            pts = np.concatenate([d.landmarks_2d for d in det.hands])[None]
            notes.append(f"stage I: crop around {len(det.hands)} MediaPipe hand(s)")
            return hand_boxes(pts, np.ones(pts.shape[:2], bool), padding=1.2)[0]
        notes.append("stage I: no hands detected, the whole image is the crop")
        return np.array([-0.5, -0.5, W - 0.5, H - 0.5])

    def __call__(self, image: np.ndarray, K: np.ndarray, boxes: Sequence[Sequence[float]]) -> InitialHands:
        notes: list[str] = []
        t = {}
        t0 = time.perf_counter()
        box = self.hands_box(image, boxes, notes)
        t["detect"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        S = int(self.arch.input_size)
        A = crop_affine(box[None], S)[0]
        crop = crop_image(image, A, S, box=box)
        with torch.no_grad():
            out = self.net(normalise_image(crop)[None].float())
            p = {k: v.double() for k, v in out.params.items()}
            posed = self.hands(p["beta"], p["phi"], p["theta"], p["tau"])
        cam = out.cam[0].double().numpy()
        T = weak_to_perspective(cam, A, S, K)  # right wrist, camera frame
        j3d = out.j3d[0].double().numpy().reshape(2, 21, 3)  # right-wrist-relative, MANO order
        uv_crop = ((out.j2d[0].double().numpy() + 1.0) * S - 1.0) / 2.0
        j2d = apply_affine(uv_crop[None], invert_affine(A[None]))[0].reshape(2, 21, 2)  # image pixels
        present = torch.sigmoid(out.hand_type_logits[0].double()).numpy()
        hands: list[HandResult] = []
        for h, side in enumerate(("right", "left")):
            joints = posed.joints[0, h].numpy() + T
            hands.append(HandResult(
                side=side, score=float(present[h]),
                params=dict(beta=p["beta"][0, h].numpy(), global_orient=p["phi"][0, h].numpy(),
                            hand_pose=p["theta"][0, h].numpy(), wrist=joints[0]),
                joints_3d=joints, joints_2d=j2d[h], vertices=posed.vertices[0, h].numpy() + T,
                source="stage-I network", landmarks_3d=j3d[h] + T,
            ))
        notes.append(f"stage I: network ({self.arch.backbone}, {S} px crop); camera depth {T[2]:.3f} m from the weak-perspective "
                     f"scale {cam[0]:.3f} (approximation: both hands at the right wrist's depth); hand presence "
                     f"right {present[0]:.2f}, left {present[1]:.2f}")
        t["initial_fit"] = time.perf_counter() - t0
        return InitialHands(hands=hands, notes=notes, timings_s=t, pairs=[(0, 1)])

