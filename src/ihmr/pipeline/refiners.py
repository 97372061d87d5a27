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
from ihmr.handmodel import TwoHands
from ihmr.joint_order import from_two_hand
from ihmr.pipeline.results import HandResult, PairResult
from ihmr.refine import RefineConfig, refine_opt
from ihmr.refine.mlp import load_refiner
from ihmr.refine.mlp_refine import MLPRefineConfig, refine_mlp

log = logging.getLogger(__name__)

__all__ = ["E3D_SLACK", "REFINE_MODES", "Refiner", "OptRefiner", "MlpRefiner", "NoRefiner", "make_refiner", "refine_pair"]

#: Verification slack of the demo (m^2 over 42 joints): joints may move ~5 mm RMS from the landmarks.
E3D_SLACK = 42 * 0.005**2
#: The refinement modes of :func:`make_refiner`.
REFINE_MODES = ("opt", "mlp", "none")


class Refiner(Protocol):
    """``refine(params, j3d (1, 2, 21, 3) metres, right-wrist-relative, MANO order; j2d (1, 2, 21, 2)
    pixels; persp (1, 6) = (f, cx, cy, right wrist (3,))) -> (params, accepted {factor: bool})``."""

    def refine(self, params: dict[str, Tensor], j3d: Tensor, j2d: Tensor, persp: Tensor) -> tuple[dict[str, Tensor], dict[str, bool]]: ...


class OptRefiner:
    """OPT: ``iterations`` gradient steps per factor, the 2D term through the perspective camera;
    ``contact``: close gaps the landmarks evidence (see :mod:`ihmr.refine.factorized`)."""

    def __init__(self, hands: TwoHands, iterations: int = 30, contact: bool = True) -> None:
        self.hands, self.iterations, self.contact = hands, iterations, contact

    def refine(self, params: dict[str, Tensor], j3d: Tensor, j2d: Tensor, persp: Tensor) -> tuple[dict[str, Tensor], dict[str, bool]]:
        cam = torch.tensor([[1.0, 0.0, 0.0]], dtype=j3d.dtype)  # unused with a perspective camera
        res = refine_opt(self.hands, params, from_two_hand(j3d, "mano"), from_two_hand(j2d, "mano"), cam,
                         RefineConfig(iterations=self.iterations, snapshot_every=10, e3d_slack=E3D_SLACK, contact=self.contact),
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


def refine_pair(model: TwoHands, refiner: Refiner, hands: list[HandResult], i: int, j: int, K: np.ndarray) -> PairResult:
    """Refine the right hand ``hands[i]`` and the left hand ``hands[j]`` together (in place: their
    vertices, joints and parameters become the refined ones) against their landmarks: 3D, the
    metric landmarks in the camera frame (right wrist at the origin); 2D, pixels through the
    perspective camera ``K``. The refiner leaves a pair that does not penetrate as it is (unless
    its contact refinement finds touching evidenced), and a pair is kept unrefined when the
    refinement would raise its exact AVE-P or MAX-P (whatever the refiner verified with:
    the MLP's proxy can miss a deeper vertex); its ``accepted`` is then all false."""
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
        if d_r.mean() <= d0.mean() and d_r.max() <= d0.max():
            params, out, d1 = refined, out_r, d_r
        else:  # the exact depths decide: keep the unrefined pair
            log.info("refinement would raise AVE-P %.3f -> %.3f or MAX-P %.2f -> %.2f mm: pair kept unrefined",
                     d0.mean(), d_r.mean(), d0.max(), d_r.max())
            accepted = {k: False for k in accepted}
    for h, hand in ((0, hr), (1, hl)):
        hand.vertices = out.vertices[0, h].numpy() + wr
        hand.joints_3d = out.joints[0, h].numpy() + wr
        hand.params = dict(beta=params["beta"][0, h].numpy(), global_orient=params["phi"][0, h].numpy(),
                           hand_pose=params["theta"][0, h].numpy(), wrist=hand.joints_3d[0])
    return PairResult(right=i, left=j, ave_p_mm_before=float(d0.mean()), max_p_mm_before=float(d0.max()),
                      ave_p_mm_after=float(d1.mean()), max_p_mm_after=float(d1.max()), accepted=accepted,
                      vertices_before=before[0].numpy() + wr, joints_before=unrefined.joints[0].numpy() + wr)
