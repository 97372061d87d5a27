"""Stage II in the pipeline: a pair's collision refinement behind one interface,
``refiner.refine(params, j3d, j2d, persp) -> (refined params, accepted)``: :class:`OptRefiner`
(factorized gradient refinement with verification, :func:`ihmr.refine.refine_opt`),
:class:`MlpRefiner` (the learned refiners, :func:`ihmr.refine.mlp_refine.refine_mlp`) or
:class:`NoRefiner`; and :func:`refine_pair`, which refines two :class:`HandResult` with one and
measures their penetration before and after.

Parameters are those of :class:`~ihmr.handmodel.TwoHands` for a batch of one pair: ``beta (1, 2, 10)``,
``phi (1, 2, 3)``, ``theta (1, 2, 45)``, ``tau (1, 3)`` (left wrist - right wrist, metres).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Protocol, Union

import numpy as np
import torch
from torch import Tensor

from ihmr.collision.exact import penetration_depths
from ihmr.errors import InputError
from ihmr.geometry.camera import project_points
from ihmr.handmodel import TwoHands
from ihmr.joint_order import from_two_hand
from ihmr.pipeline.results import HandResult, PairResult
from ihmr.refine import RefineConfig, default_weights, refine_opt
from ihmr.refine.mlp import load_refiner
from ihmr.refine.mlp_refine import MLPRefineConfig, refine_mlp

log = logging.getLogger(__name__)

__all__ = ["E3D_SLACK", "REFINE_MODES", "ESCALATE_ROUNDS", "ESCALATE_COLLISION", "ESCALATE_2D", "ESCALATE_ITERATIONS",
           "MAX_REPROJECTION_RISE", "reprojection_px", "Refiner", "OptRefiner", "MlpRefiner", "NoRefiner", "make_refiner", "refine_pair"]

#: Verification slack of the demo (m^2 over 42 joints): joints may move ~5 mm RMS from the landmarks.
E3D_SLACK = 42 * 0.005**2
#: The refinement modes of :func:`make_refiner`.
REFINE_MODES = ("opt", "mlp", "none")
#: OPT on a photo: while the exact test still finds penetration after the refinement, up to
#: ``ESCALATE_ROUNDS`` more refinements from its result with the collision and the 2D weights times
#: ``ESCALATE_COLLISION`` and ``ESCALATE_2D`` (the fingers give way in depth, which the image does not
#: see, rather than in the image) and ``ESCALATE_ITERATIONS`` steps per factor, each kept only if it
#: lowers the deepest penetration and keeps the 2D reprojection within ``MAX_REPROJECTION_RISE`` px
#: of the unrefined pair's. Measured on the clasped example cropped tightly (30 % margin; the two
#: hands' landmarks collide themselves) and in grey (``benchmarks/bench_photos.py``): MAX-P after the
#: default refinement 4.70 / 7.26 mm; one more round at collision x100 with 30 / 60 / 90 steps
#: 4.25 / 2.52 / 0.0 mm on the crop (reprojection 14.3 -> 15.9 px at 90), and with the 2D weight
#: x100 as well 0.0 mm at 6.1 px on the crop, 4.38 mm at +1.4 px on the grey one (x1: 6.29 mm at
#: +3.3 px, dropped; x10: 3.03 mm at +3.5 px, dropped).
ESCALATE_ROUNDS, ESCALATE_COLLISION, ESCALATE_2D, ESCALATE_ITERATIONS = 2, 100.0, 100.0, 90
#: The most (px) the refinement may raise the mean 2D distance of a pair's joints to its landmarks.
MAX_REPROJECTION_RISE = 2.0


class Refiner(Protocol):
    """``refine(params, j3d (1, 2, 21, 3) metres, right-wrist-relative, MANO order; j2d (1, 2, 21, 2)
    pixels; persp (1, 6) = (f, cx, cy, right wrist (3,))) -> (params, accepted {factor: bool})``."""

    def refine(self, params: dict[str, Tensor], j3d: Tensor, j2d: Tensor, persp: Tensor) -> tuple[dict[str, Tensor], dict[str, bool]]: ...


class OptRefiner:
    """OPT: ``iterations`` gradient steps per factor, the 2D term through the perspective camera;
    ``contact``: close gaps the landmarks evidence (see :mod:`ihmr.refine.factorized`); where
    penetration is left, further rounds with stronger collision and 2D weights
    (:data:`ESCALATE_ROUNDS`)."""

    def __init__(self, hands: TwoHands, iterations: int = 30, contact: bool = True) -> None:
        self.hands, self.iterations, self.contact = hands, iterations, contact

    def refine(self, params: dict[str, Tensor], j3d: Tensor, j2d: Tensor, persp: Tensor) -> tuple[dict[str, Tensor], dict[str, bool]]:
        cam = torch.tensor([[1.0, 0.0, 0.0]], dtype=j3d.dtype)  # unused with a perspective camera
        args = (from_two_hand(j3d, "mano"), from_two_hand(j2d, "mano"), cam)
        res = refine_opt(self.hands, params, *args,
                         RefineConfig(iterations=self.iterations, snapshot_every=10, e3d_slack=E3D_SLACK, contact=self.contact),
                         progress=False, persp=persp)
        out, deepest = res.params, float(res.max_after[0])
        accepted = {k: bool(v[0]) for k, v in res.accepted.items()}
        limit = reprojection_px(self.hands, params, j2d, persp) + MAX_REPROJECTION_RISE
        weights = default_weights()
        for w in weights.values():
            w["col"] *= ESCALATE_COLLISION
            w["2d"] *= ESCALATE_2D
        for _ in range(ESCALATE_ROUNDS):  # see ESCALATE_ROUNDS
            if deepest <= 0:
                break
            more = refine_opt(self.hands, out, *args,
                              RefineConfig(iterations=ESCALATE_ITERATIONS, snapshot_every=10, e3d_slack=E3D_SLACK,
                                           contact=self.contact, weights=weights), progress=False, persp=persp)
            if float(more.max_after[0]) >= deepest or reprojection_px(self.hands, more.params, j2d, persp) > limit:
                break
            out, deepest = more.params, float(more.max_after[0])
            accepted = {k: v or bool(more.accepted[k][0]) for k, v in accepted.items()}
        return out, accepted


class MlpRefiner:
    """The learned refiners (``refiner``: a checkpoint, ``"default"`` = the shipped ones)."""

    def __init__(self, hands: TwoHands, refiner: Union[str, Path] = "default", contact: bool = True) -> None:
        self.hands, self.contact = hands, contact
        self.net = load_refiner(refiner, hands)

    def refine(self, params: dict[str, Tensor], j3d: Tensor, j2d: Tensor, persp: Tensor) -> tuple[dict[str, Tensor], dict[str, bool]]:
        res = refine_mlp(self.hands, params, from_two_hand(j3d, "mano"), from_two_hand(j2d, "mano"), self.net,
                         config=MLPRefineConfig(e3d_slack=E3D_SLACK, contact=self.contact), progress=False)
        return res.params, {k: bool(v[0]) for k, v in res.accepted.items()}


class NoRefiner:
    """No refinement: the parameters as they are, nothing accepted."""

    def refine(self, params: dict[str, Tensor], j3d: Tensor, j2d: Tensor, persp: Tensor) -> tuple[dict[str, Tensor], dict[str, bool]]:
        return params, {}


def make_refiner(mode: str, hands: TwoHands, iterations: int = 30, refiner: Union[str, Path] = "default",
                 contact: bool = True) -> Refiner:
    """The refiner of ``mode`` (one of :data:`REFINE_MODES`); InputError for another mode."""
    if mode not in REFINE_MODES:
        raise InputError(f"refine must be 'opt', 'mlp' or 'none', got {mode!r}")
    if mode == "mlp":
        return MlpRefiner(hands, refiner, contact)
    return OptRefiner(hands, iterations, contact) if mode == "opt" else NoRefiner()


def reprojection_px(model: TwoHands, params: dict[str, Tensor], j2d: Tensor, persp: Tensor) -> float:
    """Mean distance (px) of the pair's projected joints to ``j2d (1, 2, 21, 2)`` px (right-wrist-relative
    ``params``, ``persp (1, 6)`` = (f, cx, cy, right wrist))."""
    f, cx, cy = (float(x) for x in persp[0, :3])
    K = np.array([[[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]]])
    joints = model(**params).joints[0].detach().numpy().reshape(1, 42, 3) + persp[0, 3:].numpy()
    return float(np.linalg.norm(project_points(joints, K).reshape(2, 21, 2) - j2d[0].numpy(), axis=-1).mean())


def refine_pair(model: TwoHands, refiner: Refiner, hands: list[HandResult], i: int, j: int, K: np.ndarray) -> PairResult:
    """Refine the right hand ``hands[i]`` and the left hand ``hands[j]`` together (in place: their
    vertices, joints and parameters become the refined ones) against their landmarks: 3D, the
    metric landmarks in the camera frame (right wrist at the origin); 2D, pixels through the
    perspective camera ``K``. The refiner leaves a pair that does not penetrate as it is (unless
    its contact refinement finds touching evidenced), and a pair is kept unrefined when the
    refinement would raise its exact AVE-P or MAX-P (whatever the refiner verified with:
    the MLP's proxy can miss a deeper vertex) or the mean 2D distance of its joints to the
    landmarks by more than :data:`MAX_REPROJECTION_RISE`; its ``accepted`` is then all false."""
    hr, hl = hands[i], hands[j]
    wr, wl = hr.params["wrist"], hl.params["wrist"]
    dt = torch.float64
    params = {
        "beta": torch.as_tensor(np.stack([hr.params["beta"], hl.params["beta"]])[None], dtype=dt),
        "phi": torch.as_tensor(np.stack([hr.params["global_orient"], hl.params["global_orient"]])[None], dtype=dt),
        "theta": torch.as_tensor(np.stack([hr.params["hand_pose"], hl.params["hand_pose"]])[None], dtype=dt),
        "tau": torch.as_tensor((wl - wr)[None], dtype=dt),
    }
    unrefined = model(**params)
    before = unrefined.vertices
    d0 = penetration_depths(before, model.faces)[0].flatten().numpy() * 1000
    j3d = torch.as_tensor(np.stack([hr.landmarks_3d, hl.landmarks_3d]) - wr, dtype=dt)[None]
    f, cx, cy = K[0, 0], K[0, 2], K[1, 2]
    j2d = torch.as_tensor(np.stack([hr.joints_2d, hl.joints_2d])[None], dtype=dt)  # pixels
    persp = torch.tensor([[f, cx, cy, *wr]], dtype=dt)
    accepted = {}
    out, d1 = unrefined, d0
    if not isinstance(refiner, NoRefiner):
        refined, accepted = refiner.refine(params, j3d, j2d, persp)
        out_r = model(**refined)
        d_r = penetration_depths(out_r.vertices, model.faces)[0].flatten().numpy() * 1000
        px0, px1 = reprojection_px(model, params, j2d, persp), reprojection_px(model, refined, j2d, persp)
        if d_r.mean() <= d0.mean() and d_r.max() <= d0.max() and px1 <= px0 + MAX_REPROJECTION_RISE:
            params, out, d1 = refined, out_r, d_r
        else:  # the exact depths and the image decide: keep the unrefined pair
            log.info("refinement would raise AVE-P %.3f -> %.3f, MAX-P %.2f -> %.2f mm or the reprojection %.1f -> %.1f px: "
                     "pair kept unrefined", d0.mean(), d_r.mean(), d0.max(), d_r.max(), px0, px1)
            accepted = {k: False for k in accepted}
    for h, hand in ((0, hr), (1, hl)):
        hand.vertices = out.vertices[0, h].numpy() + wr
        hand.joints_3d = out.joints[0, h].numpy() + wr
        hand.params = dict(beta=params["beta"][0, h].numpy(), global_orient=params["phi"][0, h].numpy(),
                           hand_pose=params["theta"][0, h].numpy(), wrist=hand.joints_3d[0])
    return PairResult(right=i, left=j, ave_p_mm_before=float(d0.mean()), max_p_mm_before=float(d0.max()),
                      ave_p_mm_after=float(d1.mean()), max_p_mm_after=float(d1.max()), accepted=accepted,
                      vertices_before=before[0].numpy() + wr, joints_before=unrefined.joints[0].numpy() + wr)
