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
from typing import Optional, Protocol, Union

import numpy as np
import torch
from torch import Tensor

from ihmr.collision.exact import penetration_depths
from ihmr.errors import InputError
from ihmr.geometry.camera import reprojection_error
from ihmr.handmodel import TwoHands
from ihmr.joint_order import from_two_hand
from ihmr.pipeline.results import HandResult, PairResult
from ihmr.refine import RefineConfig, default_weights, joint_error, refine_opt
from ihmr.refine.mlp import load_refiner
from ihmr.refine.mlp_refine import MLPRefineConfig, refine_mlp

log = logging.getLogger(__name__)

__all__ = ["E3D_SLACK", "REFINE_MODES", "ESCALATE_ROUNDS", "ESCALATE_COLLISION", "ESCALATE_2D", "ESCALATE_ITERATIONS",
           "MAX_REPROJECTION_RISE", "Refiner", "OptRefiner", "MlpRefiner", "NoRefiner", "make_refiner", "refine_pair"]

#: Verification slack of the demo (m^2 over 42 joints): joints may move ~5 mm RMS from the landmarks.
E3D_SLACK = 42 * 0.005**2
#: The refinement modes of :func:`make_refiner`.
REFINE_MODES = ("opt", "mlp", "none")
#: OPT on a photo (:func:`refine_pair`): while the exact test still finds penetration after the
#: refinement, up to ``ESCALATE_ROUNDS`` more refinements from its result with the collision and the 2D weights times
#: ``ESCALATE_COLLISION`` and ``ESCALATE_2D`` (the fingers give way in depth, which the image does not
#: see, rather than in the image) and ``ESCALATE_ITERATIONS`` steps per factor, each kept only if it
#: lowers the deepest penetration, keeps each hand's 2D reprojection within ``MAX_REPROJECTION_RISE``
#: px of the placed pair's and the 3D-joint error within ``E3D_SLACK`` of the unrefined pair's. Measured
#: on the clasped example cropped tightly (30 % margin; the two hands' landmarks collide themselves)
#: and in grey (``benchmarks/bench_photos.py``): MAX-P after the default refinement 4.70 / 7.26 mm;
#: one more round at collision x100 with 30 / 60 / 90 steps 4.25 / 2.52 / 0.0 mm on the crop
#: (reprojection 14.3 -> 15.9 px at 90), with the 2D weight x100 as well 0.0 mm at 6.1 px on the
#: crop and 4.38 mm on the grey one, but both drift farther from the landmarks than the slack and
#: are dropped since the drift is bounded (the crop then ends at 1.5 mm by :func:`separate_pair`).
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
        return self._run(params, j3d, j2d, persp, RefineConfig(iterations=self.iterations, snapshot_every=10,
                                                               e3d_slack=E3D_SLACK, contact=self.contact))

    def escalate(self, params: dict[str, Tensor], j3d: Tensor, j2d: Tensor, persp: Tensor) -> tuple[dict[str, Tensor], dict[str, bool]]:
        """One further round (see :data:`ESCALATE_ROUNDS`; :func:`refine_pair` decides what is kept)."""
        weights = default_weights()
        for w in weights.values():
            w["col"] *= ESCALATE_COLLISION
            w["2d"] *= ESCALATE_2D
        return self._run(params, j3d, j2d, persp, RefineConfig(iterations=ESCALATE_ITERATIONS, snapshot_every=10, e3d_slack=E3D_SLACK,
                                                               contact=self.contact, weights=weights))

    def _run(self, params: dict[str, Tensor], j3d: Tensor, j2d: Tensor, persp: Tensor, cfg: RefineConfig) -> tuple[dict[str, Tensor], dict[str, bool]]:
        cam = torch.tensor([[1.0, 0.0, 0.0]], dtype=j3d.dtype)  # unused with a perspective camera
        res = refine_opt(self.hands, params, from_two_hand(j3d, "mano"), from_two_hand(j2d, "mano"), cam, cfg,
                         progress=False, persp=persp)
        return res.params, {k: bool(v[0]) for k, v in res.accepted.items()}


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


def refine_pair(model: TwoHands, refiner: Refiner, hands: list[HandResult], i: int, j: int, K: np.ndarray,
                reference: Optional[np.ndarray] = None) -> PairResult:
    """Refine the right hand ``hands[i]`` and the left hand ``hands[j]`` together (in place: their
    vertices, joints and parameters become the refined ones) against their landmarks: 3D, the
    metric landmarks in the camera frame (right wrist at the origin); 2D, pixels through the
    perspective camera ``K``. The refiner leaves a pair that does not penetrate as it is (unless
    its contact refinement finds touching evidenced). A refinement is kept only if it raises
    neither the pair's exact AVE-P nor its MAX-P (whatever the refiner verified with: the MLP's
    proxy can miss a deeper vertex) and neither hand's mean 2D distance of its joints to its
    landmarks rises by more than :data:`MAX_REPROJECTION_RISE` over that of ``reference (2, 21, 3)``
    (camera coordinates: the joints as the pair was placed, before any move; default: as given);
    otherwise the pair is kept unrefined and its ``accepted`` is all false. Where the exact test
    still finds penetration and the refiner can ``escalate`` (OPT), up to :data:`ESCALATE_ROUNDS`
    further rounds run, each kept under the same rules, only if it lowers MAX-P and keeps the
    3D-joint error within :data:`E3D_SLACK` of the unrefined pair's (or the first round's)."""
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
    uv = np.stack([hr.joints_2d, hl.joints_2d])
    j2d = torch.as_tensor(uv[None], dtype=dt)  # pixels
    persp = torch.tensor([[f, cx, cy, *wr]], dtype=dt)
    ref = unrefined.joints[0].numpy() + wr if reference is None else np.asarray(reference)
    max_px = reprojection_error(ref, uv, K) + MAX_REPROJECTION_RISE  # (2,) per hand

    def measure(p: dict[str, Tensor]):
        o = model(**p)
        return o, penetration_depths(o.vertices, model.faces)[0].flatten().numpy() * 1000, reprojection_error(o.joints[0].numpy() + wr, uv, K)

    accepted = {}
    out, d1 = unrefined, d0
    if not isinstance(refiner, NoRefiner):
        refined, accepted = refiner.refine(params, j3d, j2d, persp)
        out_r, d_r, px_r = measure(refined)
        if d_r.mean() <= d0.mean() and d_r.max() <= d0.max() and np.all(px_r <= max_px):
            params, out, d1 = refined, out_r, d_r
        else:  # the exact depths and the image decide: keep the unrefined pair
            log.info("refinement would raise AVE-P %.3f -> %.3f, MAX-P %.2f -> %.2f mm or a hand's reprojection to %s px "
                     "(at most %s): pair kept unrefined", d0.mean(), d_r.mean(), d0.max(), d_r.max(), px_r.round(1), max_px.round(1))
            accepted = {k: False for k in accepted}
        escalate = getattr(refiner, "escalate", None)
        e3d_limit = max(float(joint_error(unrefined.joints, j3d)[0]) + E3D_SLACK, float(joint_error(out.joints, j3d)[0]))
        for _ in range(ESCALATE_ROUNDS if escalate is not None else 0):
            if d1.max() <= 0:
                break
            more, acc = escalate(params, j3d, j2d, persp)
            out_m, d_m, px_m = measure(more)
            if not (d_m.max() < d1.max() and d_m.mean() <= d0.mean() and np.all(px_m <= max_px)
                    and float(joint_error(out_m.joints, j3d)[0]) <= e3d_limit):
                break
            params, out, d1 = more, out_m, d_m
            accepted = {k: v or acc.get(k, False) for k, v in accepted.items()}
    for h, hand in ((0, hr), (1, hl)):
        hand.vertices = out.vertices[0, h].numpy() + wr
        hand.joints_3d = out.joints[0, h].numpy() + wr
        hand.params = dict(beta=params["beta"][0, h].numpy(), global_orient=params["phi"][0, h].numpy(),
                           hand_pose=params["theta"][0, h].numpy(), wrist=hand.joints_3d[0])
    return PairResult(right=i, left=j, ave_p_mm_before=float(d0.mean()), max_p_mm_before=float(d0.max()),
                      ave_p_mm_after=float(d1.mean()), max_p_mm_after=float(d1.max()), accepted=accepted,
                      vertices_before=before[0].numpy() + wr, joints_before=unrefined.joints[0].numpy() + wr)
