"""Image in, two collision-free hand meshes out: ``ihmr.reconstruct(image) -> Result``.

Stages: image loading (orientation, colour modes, size checks) -> MediaPipe detection and
landmarks (:mod:`ihmr.detect.hands`) -> per-hand analytic IK on the metric world landmarks and a
perspective root translation from the 2D landmarks -> pairing of left and right hands -> factorized
refinement with verification (OPT) of each pair against the landmarks.

With a stage-I checkpoint (``Reconstructor(checkpoint=...)``, ``ihmr demo --checkpoint``) the network
replaces MediaPipe + IK as stage I: a crop around both hands (the given box(es), else the box of the
MediaPipe landmarks, else the whole image) -> :class:`~ihmr.stage1.network.Stage1Net` -> the pair in
camera coordinates (:func:`weak_to_perspective`) -> the same refinement, with the joint head's
joints as the targets.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import torch

from ihmr.collision.exact import penetration_depths
from ihmr.detect.hands import HandDetector
from ihmr.errors import IhmrError, InputError
from ihmr.geometry.camera import weak_to_perspective
from ihmr.geometry.crop import apply_affine, crop_affine, crop_image, hand_boxes, invert_affine, normalise_image
from ihmr.handmodel import TwoHands
from ihmr.io.images import load_image
from ihmr.joint_order import convert, from_two_hand
from ihmr.refine import RefineConfig, refine_opt
from ihmr.refine.mlp import MLPRefineConfig, load_refiner, refine_mlp
from ihmr.stage1 import hand_ik
from ihmr.stage1.checkpoint import load_stage1

__all__ = ["NoHandsError", "HandResult", "PairResult", "Result", "Reconstructor", "reconstruct"]

#: Verification slack of the demo (m^2 over 42 joints): joints may move ~5 mm RMS from the landmarks.
E3D_SLACK = 42 * 0.005**2


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
    right: int
    left: int
    ave_p_mm_before: float
    max_p_mm_before: float
    ave_p_mm_after: float
    max_p_mm_after: float
    accepted: dict[str, bool]
    vertices_before: np.ndarray  # (2, V, 3) camera coordinates


@dataclass
class Result:
    image_size: tuple[int, int]
    K: np.ndarray  # (3, 3)
    hands: list[HandResult]
    pairs: list[PairResult]
    faces: np.ndarray  # (2, F, 3) right, left
    timings_s: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _root_translation(world: np.ndarray, uv: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Translation ``T (3,)`` so that ``project(K, world + T) ~ uv`` (linear least squares)."""
    f, cx, cy = K[0, 0], K[0, 2], K[1, 2]
    du, dv = uv[:, 0] - cx, uv[:, 1] - cy
    A = np.concatenate([
        np.stack([np.full_like(du, f), np.zeros_like(du), -du], 1),
        np.stack([np.zeros_like(dv), np.full_like(dv, f), -dv], 1),
    ])
    b = np.concatenate([du * world[:, 2] - f * world[:, 0], dv * world[:, 2] - f * world[:, 1]])
    T, *_ = np.linalg.lstsq(A, b, rcond=None)
    return T


#: Prior spread (m) of the depth difference of two interacting hands' wrists, against the
#: landmarks' reprojection (:data:`PIXEL_SIGMA` px): monocular depth from a hand's apparent size is
#: far less certain than the few centimetres two hands in contact can differ by.
PAIR_DEPTH_SIGMA = 0.05
PIXEL_SIGMA = 10.0


def _pair_translations(world: Sequence[np.ndarray], uv: Sequence[np.ndarray], K: np.ndarray,
                       depth_sigma: float = PAIR_DEPTH_SIGMA) -> tuple[np.ndarray, np.ndarray]:
    """Translations ``(T_r, T_l)`` of two interacting hands fitted together: each hand's landmarks
    ``world (21, 3)`` reproject onto ``uv (21, 2)`` (as in :func:`_root_translation`), and their
    wrists (joint 0) lie at about the same depth (``depth_sigma``). The reprojection rows have
    residuals of about depth x pixel error, so the prior row is weighted by ``PIXEL_SIGMA * Z /
    depth_sigma`` with ``Z`` the mean of the separate estimates."""
    f, cx, cy = K[0, 0], K[0, 2], K[1, 2]
    rows, rhs = [], []
    Ts = [_root_translation(w, p, K) for w, p in zip(world, uv)]
    for h, (w, p) in enumerate(zip(world, uv)):
        du, dv = p[:, 0] - cx, p[:, 1] - cy
        n = len(du)
        A = np.zeros((2 * n, 6))
        A[:n, 3 * h + 0], A[:n, 3 * h + 2] = f, -du
        A[n:, 3 * h + 1], A[n:, 3 * h + 2] = f, -dv
        rows.append(A)
        rhs.append(np.concatenate([du * w[:, 2] - f * w[:, 0], dv * w[:, 2] - f * w[:, 1]]))
    z = 0.5 * (Ts[0][2] + world[0][0, 2] + Ts[1][2] + world[1][0, 2])
    wgt = PIXEL_SIGMA * max(z, 0.1) / depth_sigma
    prior = np.zeros((1, 6))
    prior[0, 2], prior[0, 5] = wgt, -wgt
    A = np.concatenate(rows + [prior])
    b = np.concatenate(rhs + [np.array([wgt * (world[1][0, 2] - world[0][0, 2])])])
    T, *_ = np.linalg.lstsq(A, b, rcond=None)
    return T[:3], T[3:]



class Reconstructor:
    """Holds the models (hand model, detector) for reconstructing many images."""

    def __init__(self, model: str = "open", refine: Union[bool, str] = True, iterations: int = 30,
                 threads: Optional[int] = 1, refiner: Union[str, Path] = "default",
                 checkpoint: Union[str, Path, None] = None) -> None:
        """``refine``: ``"opt"`` (or ``True``, the default) for the OPT refinement, ``"mlp"`` for the
        learned refiners (``refiner``: a checkpoint, ``"default"`` = the shipped ones), ``"none"``
        (or ``False``) to skip it. ``iterations``: OPT steps per factor.
        ``threads``: torch threads while reconstructing (None: leave torch's setting). One image's
        tensors are small (two hands, a few thousand vertices), so intra-op threads only add
        synchronisation, which costs 10-100x on a CPU shared with other processes.
        ``checkpoint``: a stage-I network checkpoint used as stage I instead of MediaPipe + IK (the
        detector then only gives a box around the hands); its hand model replaces ``model``."""

        self.net = self.arch = None
        if checkpoint is not None:
            self.net, self.arch, _ = load_stage1(checkpoint)
            model = self.arch.model
        self.hands = TwoHands(model, dtype=torch.float64)
        self.detector = HandDetector()
        mode = {True: "opt", False: "none"}.get(refine, refine) if isinstance(refine, bool) else str(refine)
        if mode not in ("opt", "mlp", "none"):
            raise InputError(f"refine must be 'opt', 'mlp' or 'none', got {refine!r}")
        self.refine = mode
        self.refiner = None
        if mode == "mlp":
            self.refiner = load_refiner(refiner, self.hands)
        self.iterations = iterations
        self.threads = threads

    def __call__(self, image, focal: Optional[float] = None, boxes: Sequence[Sequence[float]] = ()) -> Result:
        if self.threads is None:
            return self._reconstruct(image, focal, boxes)
        prev = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            return self._reconstruct(image, focal, boxes)
        finally:
            torch.set_num_threads(prev)

    def _reconstruct(self, image, focal: Optional[float], boxes: Sequence[Sequence[float]]) -> Result:
        t = {}
        t0 = time.perf_counter()
        img = load_image(image)
        H, W = img.shape[:2]
        f = float(focal) if focal else 1.2 * max(W, H)
        K = np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1.0]])
        t["load"] = time.perf_counter() - t0
        if self.net is not None:
            return self._reconstruct_network(img, K, boxes, t)
        t0 = time.perf_counter()
        det = self.detector(img, boxes)
        t["detect"] = time.perf_counter() - t0
        if not det.hands:
            raise NoHandsError("no hands found (tried: " + "; ".join(det.tried) + ")")
        notes = list(det.tried)
        # Initial fit per hand.
        t0 = time.perf_counter()
        hands: list[HandResult] = []
        for d in det.hands:
            layer = self.hands.right if d.side == "right" else self.hands.left
            world = convert(d.world, "mediapipe", "mano")
            uv = convert(d.landmarks_2d, "mediapipe", "mano")
            T = _root_translation(world, uv, K)
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
        # Pairs: each right hand with the nearest unused left hand, if close relative to hand size.
        t0 = time.perf_counter()
        pairs: list[PairResult] = []
        used: set[int] = set()
        for i, hr in enumerate(hands):
            if hr.side != "right":
                continue
            best, dist = None, np.inf
            for j, hl in enumerate(hands):
                if hl.side == "left" and j not in used:
                    size = max(np.ptp(hr.joints_2d, 0).max(), np.ptp(hl.joints_2d, 0).max())
                    dd = np.linalg.norm(hr.joints_2d.mean(0) - hl.joints_2d.mean(0)) / max(size, 1.0)
                    if dd < 1.5 and dd < dist:
                        best, dist = j, dd
            if best is None:
                continue
            used.add(best)
            self._place_pair(hands[i], hands[best], K)
            pairs.append(self._refine_pair(i, best, hands, K, penetration_depths, refine_opt, RefineConfig))
        lone = [h.side for k, h in enumerate(hands) if k not in used and not any(p.right == k for p in pairs)]
        if lone:
            notes.append(f"reconstructed {len(lone)} hand(s) without a partner: {', '.join(lone)}")
        t["refine"] = time.perf_counter() - t0
        return Result(image_size=(W, H), K=K, hands=hands, pairs=pairs, faces=self.hands.faces.numpy(), timings_s=t, notes=notes)

    @staticmethod
    def _place_pair(hr: "HandResult", hl: "HandResult", K: np.ndarray) -> None:
        """Re-place the two hands of a pair with :func:`_pair_translations` (both wrists at about
        the same depth), moving everything each hand holds in camera coordinates."""
        world = [h.landmarks_3d - h.landmarks_3d[0] for h in (hr, hl)]  # wrist-relative metric landmarks
        T_r, T_l = _pair_translations(world, [hr.joints_2d, hl.joints_2d], K)
        for h, T in ((hr, T_r), (hl, T_l)):
            d = T - h.landmarks_3d[0]  # new wrist - old wrist
            h.landmarks_3d = h.landmarks_3d + d
            h.joints_3d = h.joints_3d + d
            h.vertices = h.vertices + d
            h.params["wrist"] = h.params["wrist"] + d

    def _hands_box(self, img: np.ndarray, boxes: Sequence[Sequence[float]], notes: list[str]) -> np.ndarray:
        """``[x0, y0, x1, y1]`` around both hands: the union of ``boxes`` (x, y, w, h), else of the
        MediaPipe landmarks (enlarged 1.2x), else the whole image."""
        H, W = img.shape[:2]
        if len(boxes):
            b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
            notes.append("stage I: crop from the given box(es)")
            return np.array([b[:, 0].min(), b[:, 1].min(), (b[:, 0] + b[:, 2]).max(), (b[:, 1] + b[:, 3]).max()])
        det = self.detector(img, ())
        if det.hands:
            pts = np.concatenate([d.landmarks_2d for d in det.hands])[None]
            notes.append(f"stage I: crop around {len(det.hands)} MediaPipe hand(s)")
            return hand_boxes(pts, np.ones(pts.shape[:2], bool), padding=1.2)[0]
        notes.append("stage I: no hands detected, the whole image is the crop")
        return np.array([-0.5, -0.5, W - 0.5, H - 0.5])

    def _reconstruct_network(self, img: np.ndarray, K: np.ndarray, boxes: Sequence[Sequence[float]], t: dict) -> Result:
        """Stage I by the network (see the module docstring and :func:`weak_to_perspective`)."""
        notes: list[str] = []
        t0 = time.perf_counter()
        box = self._hands_box(img, boxes, notes)
        t["detect"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        S = int(self.arch.input_size)
        A = crop_affine(box[None], S)[0]
        crop = crop_image(img, A, S, box=box)
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
        t0 = time.perf_counter()
        pairs = [self._refine_pair(0, 1, hands, K, penetration_depths, refine_opt, RefineConfig)]
        t["refine"] = time.perf_counter() - t0
        H, W = img.shape[:2]
        return Result(image_size=(W, H), K=K, hands=hands, pairs=pairs, faces=self.hands.faces.numpy(), timings_s=t, notes=notes)

    def _refine_pair(self, i, j, hands, K, penetration_depths, refine_opt, RefineConfig) -> PairResult:
        hr, hl = hands[i], hands[j]
        wr, wl = hr.params["wrist"], hl.params["wrist"]
        dt = torch.float64
        params = {
            "beta": torch.as_tensor(np.stack([hr.params["beta"], hl.params["beta"]])[None], dtype=dt),
            "phi": torch.as_tensor(np.stack([hr.params["global_orient"], hl.params["global_orient"]])[None], dtype=dt),
            "theta": torch.as_tensor(np.stack([hr.params["hand_pose"], hl.params["hand_pose"]])[None], dtype=dt),
            "tau": torch.as_tensor((wl - wr)[None], dtype=dt),
        }
        before = self.hands(**params).vertices
        d0 = penetration_depths(before, self.hands.faces)[0].flatten().numpy() * 1000
        # Joint-head targets: the detected landmarks. 3D: metric landmarks in the camera frame (right
        # wrist at the origin); 2D: pixels, through the perspective camera.
        j3d = torch.as_tensor(np.stack([hr.landmarks_3d, hl.landmarks_3d]) - wr, dtype=dt)[None]
        f, cx, cy = K[0, 0], K[0, 2], K[1, 2]
        j2d = torch.as_tensor(np.stack([hr.joints_2d, hl.joints_2d])[None], dtype=dt)  # pixels
        persp = torch.tensor([[f, cx, cy, *wr]], dtype=dt)
        cam = torch.tensor([[1.0, 0.0, 0.0]], dtype=dt)  # unused with a perspective camera
        accepted = {}
        if self.refine != "none" and d0.max() > 0:
            if self.refine == "mlp":
                res = refine_mlp(self.hands, params, from_two_hand(j3d, "mano"), from_two_hand(j2d, "mano"), self.refiner,
                                 config=MLPRefineConfig(e3d_slack=E3D_SLACK), progress=False)
            else:
                res = refine_opt(self.hands, params, from_two_hand(j3d, "mano"), from_two_hand(j2d, "mano"), cam,
                                 RefineConfig(iterations=self.iterations, snapshot_every=10, e3d_slack=E3D_SLACK),
                                 progress=False, persp=persp)
            params = res.params
            accepted = {k: bool(v[0]) for k, v in res.accepted.items()}
        out = self.hands(**params)
        d1 = penetration_depths(out.vertices, self.hands.faces)[0].flatten().numpy() * 1000
        for h, hand in ((0, hr), (1, hl)):
            hand.vertices = out.vertices[0, h].numpy() + wr
            hand.joints_3d = out.joints[0, h].numpy() + wr
            hand.params = dict(beta=params["beta"][0, h].numpy(), global_orient=params["phi"][0, h].numpy(),
                               hand_pose=params["theta"][0, h].numpy(), wrist=hand.joints_3d[0])
        return PairResult(right=i, left=j, ave_p_mm_before=float(d0.mean()), max_p_mm_before=float(d0.max()),
                          ave_p_mm_after=float(d1.mean()), max_p_mm_after=float(d1.max()), accepted=accepted,
                          vertices_before=before[0].numpy() + wr)


_DEFAULT: Optional[Reconstructor] = None


def reconstruct(image, focal: Optional[float] = None, boxes: Sequence[Sequence[float]] = ()) -> Result:
    """Reconstruct the hands in one image (a path or an RGB array); models load on first use."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = Reconstructor()
    return _DEFAULT(image, focal=focal, boxes=boxes)
