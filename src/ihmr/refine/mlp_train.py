"""Training of the MLP refiners (A.4): one factor after the other, verification in the loop.

For factor ``k`` the training inputs are what the refiner will see at test time: fresh simulated
stage-I predictions of the training pairs (:func:`ihmr.data.synthetic.resimulate`, new noise every
epoch), refined by the already trained factors ``0..k-1`` *with verification*; only samples that
still collide, or (with the contact criterion) have a gap the joint head evidences, are used (the
others are never changed at test time). The simulated stage I is two-sided by default: it errs
into and away from the other hand. The loss is the paper's
Eq. 3-5 against the labels (ground-truth parameters, or OPT results as pseudo labels where ground
truth is missing) plus the collision loss, here on the sphere proxy.

The loss terms are those stage I uses too (:mod:`ihmr.losses`): rotation matrices, shape L1, tau and
3D joints in centimetres, 2D in normalised image units, plus the mean proxy depth per vertex in
millimetres for collision. Weights default to Eq. 5's (10, 10, 10, 0.1, 10) and 10 for collision.

Distributed: under ``torchrun`` (``torch.distributed`` initialised, gloo on CPU, nccl on GPU)
every process computes the same inputs, takes its share of each mini-batch and gradients are
averaged with ``all_reduce``, so N processes follow the same trajectory as one.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from tqdm import tqdm

import ihmr.losses as L
from ihmr.collision.spheres import proxy_collision
from ihmr.data.synthetic import SyntheticSet, load_npz, make_synthetic, resimulate
from ihmr.distributed import rank_world
from ihmr.errors import InputError
from ihmr.geometry.camera import project_weak_perspective
from ihmr.handmodel.two_hands import TwoHands
from ihmr.io.files import write_csv
from ihmr.joint_order import to_two_hand
from ihmr.metrics import closely_interacting_mask
from ihmr.refine.factorized import FACTORS, refine_opt
from ihmr.refine.mlp import MLPRefiner, MLPRefinerConfig, normalise_2d
from ihmr.refine.mlp_refine import MLPRefineConfig, evaluate_state, pose_candidate, propose, refine_stage, stage_rows
from ihmr.refine.objective import contact_evidence

__all__ = ["TrainMLPConfig", "train_mlp_refiner", "training_pairs", "opt_labels", "write_step_log", "LOSS_WEIGHTS"]

#: Loss weights: Eq. 5 (pose, tau, 3D joints, shape regulariser, 2D joints) and the collision term.
LOSS_WEIGHTS = {"pose": 10.0, "shape": 10.0, "tau": 10.0, "j3d": 10.0, "reg": 0.1, "j2d": 10.0, "col": 10.0}


@dataclass
class TrainMLPConfig:
    """Training switches.

    Attributes:
        epochs: passes per factor (the paper: 2 over InterHand2.6M's closely interacting frames; a
            small synthetic set needs more, each with fresh stage-I noise).
        batch_size: samples per step (over all processes).
        lr: Adam learning rate (the paper: 1e-4).
        sigma_mm: joint-head noise of the simulated inputs.
        seed: seeds the simulated inputs and the initialisation.
        factors: order of the factors.
        weights: loss weights (see :data:`LOSS_WEIGHTS`).
        contact: train (and verify in the loop) with the contact criterion, so samples with an
            evidenced gap are training inputs too (``False``: the paper, colliding samples only).
        mix: how the simulated stage I errs (:data:`ihmr.data.synthetic.MIXES`).
    """

    epochs: int = 2
    batch_size: int = 128
    lr: float = 1e-4
    sigma_mm: float = 10.0
    seed: int = 1
    factors: tuple[str, ...] = FACTORS
    weights: dict[str, float] = field(default_factory=lambda: dict(LOSS_WEIGHTS))
    contact: bool = True
    mix: str = "two-sided"

    def check(self) -> "TrainMLPConfig":
        if self.epochs < 1 or self.batch_size < 1 or not self.lr > 0:
            raise InputError("epochs and batch_size must be positive and lr > 0")
        MLPRefineConfig(factors=self.factors).check()
        return self


def _average_gradients(params) -> None:
    _, world = rank_world()
    if world == 1:
        return
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world


def training_loss(
    hands: TwoHands, cand: dict[str, Tensor], vertices: Tensor, joints: Tensor, label: dict[str, Tensor],
    gt_joints: Tensor, cam: Tensor, proxy, weights: dict[str, float],
) -> tuple[Tensor, dict[str, float]]:
    """Eq. 3-5 (the loss terms shared with stage I, :mod:`ihmr.losses`) plus collision for a batch of
    candidates; lengths in centimetres so the 3D terms weigh like the others. Returns the weighted
    sum and the unweighted terms as floats."""
    cm = 100.0
    terms = {
        "pose": L.pose_loss(cand["phi"], cand["theta"], label["phi"], label["theta"]),
        "shape": L.shape_loss(cand["beta"], label["beta"]),
        "tau": L.tau_loss(cand["tau"] * cm, label["tau"] * cm),
        "j3d": L.joint3d_loss(joints * cm, gt_joints * cm),
        "reg": L.shape_consistency_loss(cand["beta"]),
        "j2d": L.joint2d_loss(joints, cam, project_weak_perspective(gt_joints, cam)),
        "col": proxy_collision(vertices, joints, hands.faces, proxy).mean() / (2 * proxy.num_vertices) * 1000.0,
    }
    total = sum(weights.get(k, 0.0) * v for k, v in terms.items())
    return total, {k: float(v.detach()) for k, v in terms.items()}


def train_mlp_refiner(
    hands: TwoHands,
    data: SyntheticSet,
    config: Optional[TrainMLPConfig] = None,
    labels: Optional[dict[str, Tensor]] = None,
    progress: bool = True,
    log: Optional[Callable[[dict], None]] = None,
) -> tuple[MLPRefiner, list[dict]]:
    """Train the four factor MLPs on the (closely interacting) pairs of ``data``.

    Args:
        hands: the two-hand model (float32 is fastest).
        data: training pairs with ground truth (``data.sep`` set, as from ``make_synthetic``).
        labels: pose/shape labels per pair (beta, phi, theta, tau); default the ground truth. Pass
            OPT results here where ground truth is missing (A.4's pseudo labels).
        log: called with a dict per optimiser step (factor, epoch, step, loss and terms).

    Returns:
        the trained :class:`MLPRefiner` (eval mode) and the per-epoch history.
    """
    cfg = (config or TrainMLPConfig()).check()
    rank, world = rank_world()
    dt = hands.right.v_template.dtype
    torch.manual_seed(cfg.seed)
    refiner = MLPRefiner(MLPRefinerConfig(model=hands.model_name, num_betas=hands.right.num_betas)).to(dt)
    proxy = refiner.proxy(hands)
    label = {k: v.to(dt) for k, v in (labels or data.gt).items()}
    gt_j = to_two_hand(data.gt_j3d.to(dt), "mano")
    history: list[dict] = []
    stage_cfg = MLPRefineConfig(factors=cfg.factors, contact=cfg.contact)
    N = len(data)
    steps_per_epoch = None
    for k, factor in enumerate(cfg.factors):
        opt = torch.optim.Adam(refiner.mlps[factor].parameters(), lr=cfg.lr)
        bar = tqdm(total=cfg.epochs, desc=f"train mlp ({factor})", disable=not progress or rank != 0, unit="epoch")
        for epoch in range(cfg.epochs):
            t0 = time.perf_counter()
            sim = resimulate(hands, data, cfg.sigma_mm, seed=cfg.seed * 100003 + k * 1009 + epoch, mix=cfg.mix)
            j3 = to_two_hand(sim.j3d.to(dt), "mano")
            j3 = j3 - j3[:, :1, :1]
            j2 = normalise_2d(to_two_hand(sim.j2d.to(dt), "mano"))
            cam = sim.cam.to(dt)
            with torch.no_grad():
                state = evaluate_state(hands, proxy, {kk: v.to(dt) for kk, v in sim.pred.items()}, j3)
                if k == 0 and epoch == 0:  # input standardisation from the first inputs
                    x = refiner.features(state, j3, j2, None)
                    refiner.x_mean.copy_(x.mean(0))
                    refiner.x_std.copy_(x.std(0).clamp_min(1e-6))
                evidence = contact_evidence(j3)
                for prev in cfg.factors[:k]:
                    state, _ = refine_stage(hands, refiner, prev, state, j3, j2, None, stage_cfg, evidence)
                rows = torch.nonzero(stage_rows(hands, refiner, state, evidence, stage_cfg)[0]).flatten()
            g = torch.Generator().manual_seed(cfg.seed * 7919 + k * 31 + epoch)
            rows = rows[torch.randperm(len(rows), generator=g)]
            n_steps = max(1, math.ceil(len(rows) / cfg.batch_size))
            steps_per_epoch = n_steps
            sums: dict[str, float] = {}
            refiner.train()
            for s in range(n_steps):
                batch = rows[s * cfg.batch_size:(s + 1) * cfg.batch_size]
                mine = batch[rank::world]  # this process's share
                opt.zero_grad(set_to_none=True)
                if mine.numel():
                    sub = state.rows(mine)
                    cand = propose(refiner, factor, sub, j3[mine], j2[mine], None)
                    v, j = pose_candidate(hands, factor, sub, cand)
                    loss, terms = training_loss(hands, cand, v, j, {kk: vv[mine] for kk, vv in label.items()},
                                                gt_j[mine], cam[mine], proxy, cfg.weights)
                    (loss * (len(mine) * world / len(batch))).backward()
                    terms["loss"] = float(loss.detach())
                else:  # keep the collective calls matched across processes
                    terms = {}
                    for p in refiner.mlps[factor].parameters():
                        p.grad = torch.zeros_like(p)
                _average_gradients(refiner.mlps[factor].parameters())
                opt.step()
                for kk, vv in terms.items():
                    sums[kk] = sums.get(kk, 0.0) + vv
                if log is not None:
                    log(dict(factor=factor, epoch=epoch, step=s, samples=int(len(batch)), **terms))
            refiner.eval()
            rec = dict(factor=factor, epoch=epoch, colliding=int(len(rows)), of=N, steps=n_steps,
                       seconds=time.perf_counter() - t0, **{kk: vv / n_steps for kk, vv in sums.items()})
            history.append(rec)
            bar.set_postfix(loss=f"{rec.get('loss', float('nan')):.3f}", colliding=len(rows))
            bar.update(1)
        bar.close()
    refiner.config.info = dict(
        train_pairs=N, epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, sigma_mm=cfg.sigma_mm,
        seed=cfg.seed, factors=list(cfg.factors), weights=dict(cfg.weights), processes=world, contact=cfg.contact, mix=cfg.mix,
        steps_per_epoch_last=steps_per_epoch, data_meta={k: v for k, v in data.meta.items() if k != "contacts"},
    )
    return refiner.eval(), history


def training_pairs(hands64, path, n: int, seed: int, progress: bool = True) -> tuple[SyntheticSet, SyntheticSet]:
    """``(all pairs, the closely interacting ones)`` for training: from the benchmark ``.npz`` at
    ``path`` or generated (``n`` pairs, ``seed``; close contact kinds only)."""
    if path is not None:
        data = load_npz(path)
    else:
        data = make_synthetic(n, seed=seed, hands=hands64, progress=progress,
                              contacts=["palm_to_palm", "clasped", "interlaced", "holding_fingers"])
    close = closely_interacting_mask(to_two_hand(data.gt_j3d, "mano").numpy())
    return data, data.subset(torch.as_tensor(np.flatnonzero(close)))


def opt_labels(hands64, data: SyntheticSet, progress: bool = True) -> dict[str, Tensor]:
    """Pseudo labels for ``--labels opt``: the OPT refinement (:func:`ihmr.refine.refine_opt`) of the
    simulated stage-I parameters ``data.pred`` against the joint head."""
    return refine_opt(hands64, data.pred, data.j3d, data.j2d, data.cam, progress=progress).params


def write_step_log(path, rows: list[dict]) -> None:
    """The per-step training log (``train_mlp_refiner(log=rows.append)``) as CSV, written atomically;
    columns: factor, epoch, step, then the others sorted."""
    keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("factor", "epoch", "step"), k))
    write_csv(path, keys, rows)
