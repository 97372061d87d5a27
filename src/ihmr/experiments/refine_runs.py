"""Refining stored predictions and scoring them: ``ihmr refine`` on an ``.npz`` and the shared steps
of the refinement benchmark (:mod:`ihmr.experiments.refine_tables`).

All figures are in millimetres; parameters are float64 ``beta (N, 2, 10)``, ``phi (N, 2, 3)``,
``theta (N, 2, 45)``, ``tau (N, 3)``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from ihmr.handmodel import TwoHands
from ihmr.io.npz import GT_KEYS, read_refine_input, write_npz
from ihmr.joint_order import to_two_hand
from ihmr.metrics import contact_stats, i_mpjpe, mpjpe, penetration_stats
from ihmr.refine import RefineConfig, RefineResult, refine_opt
from ihmr.refine.mlp import load_refiner
from ihmr.refine.mlp_refine import MLPRefineConfig, refine_mlp

__all__ = ["POSE_METRICS", "evaluate_params", "mean_figures", "run_mlp", "refine_npz"]

#: Per-sample pose and penetration figures of :func:`evaluate_params` (mm).
POSE_METRICS = ("mpjpe_mm", "i_mpjpe_mm", "ave_p_mm", "max_p_mm")


@torch.no_grad()
def evaluate_params(hands: TwoHands, params: dict, gt_joints: Optional[torch.Tensor], batch: int = 256,
                    gt_params: Optional[dict] = None) -> dict[str, np.ndarray]:
    """Per-sample AVE-P / MAX-P (mm); with ground-truth joints ``(N, 2, 21, 3)`` MPJPE / I-MPJPE
    (mm); with ground-truth parameters (``gt_params``, as ``params``) the contact figures
    (:func:`ihmr.metrics.contact_stats`).

    Returns ``{"ave_p_mm", "max_p_mm"[, "mpjpe_mm", "i_mpjpe_mm"][, "contact_gap_mm",
    "contact_tp", "contact_pred", "contact_gt"]}``, each ``(N,)`` (the gap NaN where the ground
    truth has no contact; the rest vertex counts).
    """
    ave, mx, joints, con = [], [], [], []
    N = params["beta"].shape[0]
    for s in range(0, N, batch):
        sl = slice(s, s + batch)
        out = hands(params["beta"][sl], params["phi"][sl], params["theta"][sl], params["tau"][sl])
        st = penetration_stats(out.vertices, hands.faces)
        ave.append(st.ave_p)
        mx.append(st.max_p)
        joints.append(out.joints)
        if gt_params is not None:
            gv = hands(*(gt_params[k][sl] for k in ("beta", "phi", "theta", "tau"))).vertices
            con.append(contact_stats(out.vertices, gv, hands.faces))
    res = {"ave_p_mm": np.concatenate(ave), "max_p_mm": np.concatenate(mx)}
    if con:
        res.update(contact_gap_mm=np.concatenate([c.gap_mm for c in con]), contact_tp=np.concatenate([c.tp for c in con]),
                   contact_pred=np.concatenate([c.n_pred for c in con]), contact_gt=np.concatenate([c.n_gt for c in con]))
    if gt_joints is not None:
        j = torch.cat(joints)
        res["mpjpe_mm"] = mpjpe(j, gt_joints).per_sample
        res["i_mpjpe_mm"] = i_mpjpe(j, gt_joints).per_sample
    return res


def mean_figures(m: dict, mask: np.ndarray) -> dict[str, Optional[float]]:
    """Means of the per-sample metrics ``m`` over ``mask``: pose and penetration (``None`` for an
    empty mask), the contact gap over the samples with ground-truth contact, precision / recall
    pooled over the vertices."""
    out: dict[str, Optional[float]] = {k: float(np.mean(m[k][mask])) if mask.any() else None for k in POSE_METRICS if k in m}
    if "contact_gap_mm" in m:
        g = m["contact_gap_mm"][mask]
        g = g[np.isfinite(g)]
        tp, npred, ngt = (float(m[k][mask].sum()) for k in ("contact_tp", "contact_pred", "contact_gt"))
        out.update(contact_gap_mm=float(g.mean()) if g.size else None, contact_precision=tp / npred if npred else None,
                   contact_recall=tp / ngt if ngt else None)
    return out


def run_mlp(model: str, params: dict, j3d: torch.Tensor, j2d: torch.Tensor, config: MLPRefineConfig,
            refiner: Any = "default", batch_size: int = 256) -> RefineResult:
    """The MLP refiner (float32 hand model ``model``) on ``params``; returns a :class:`RefineResult`
    whose ``params`` are float64.

    ``refiner``: a loaded :class:`~ihmr.refine.mlp.MLPRefiner`, or what :func:`load_refiner` takes
    (a checkpoint path or ``"default"``).
    """
    hands32 = TwoHands(model, dtype=torch.float32)
    if isinstance(refiner, (str, Path)):
        refiner = load_refiner(refiner, hands32)
    res = refine_mlp(hands32, params, j3d, j2d, refiner, config=config, batch_size=batch_size, progress=False)
    res.params = {k: v.double() for k, v in res.params.items()}
    return res


def refine_npz(input_path: str | Path, output_path: str | Path, config: RefineConfig, method: str = "opt", model: str = "open",
               batch: int = 64, refiner: str | Path = "default", mlp_batch: int = 256,
               verify_collision: str = "proxy") -> dict:
    """Refine the predictions of an ``.npz`` (:func:`ihmr.io.npz.read_refine_input`) and write
    ``output_path``: the input arrays, ``refined_*``, per-sample ``{metric}_before`` / ``{metric}_after``
    (:func:`evaluate_params`; MPJPE and contact only with ground truth), ``e3d_*``, ``accepted_*`` and
    with the contact refinement ``contact_evidence`` and ``gap_before_mm`` / ``gap_after_mm`` (the
    smallest distance between the surfaces where contact is evidenced, NaN elsewhere).

    ``method``: ``"opt"`` (:func:`ihmr.refine.refine_opt` with ``config``, ``batch`` samples at once)
    or ``"mlp"`` (:func:`run_mlp` with ``config``'s factors and verification, ``verify_collision``
    and ``mlp_batch``). Returns the JSON summary (sizes, speed, config, mean metrics, acceptances).
    """
    d = read_refine_input(input_path)
    hands = TwoHands(model, dtype=torch.float64)
    t = lambda k: torch.as_tensor(d[k], dtype=torch.float64)  # noqa: E731
    params = {k: t(k) for k in ("beta", "phi", "theta", "tau")}
    if method == "mlp":
        mcfg = MLPRefineConfig(factors=config.factors, verify=config.verify, collision=verify_collision, contact=config.contact,
                               snap=config.snap)
        res = run_mlp(model, params, t("j3d"), t("j2d"), mcfg, refiner, batch_size=mlp_batch)
    else:
        res = refine_opt(hands, params, t("j3d"), t("j2d"), t("cam"), config, batch_size=batch)
    has_gt = all(k in d for k in GT_KEYS)
    gt = to_two_hand(t("gt_j3d"), "mano") if has_gt else None
    gtp = {k: t(f"gt_{k}") for k in ("beta", "phi", "theta", "tau")} if has_gt else None
    before = evaluate_params(hands, params, gt, gt_params=gtp)
    after = evaluate_params(hands, res.params, gt, gt_params=gtp)
    out = dict(d)
    out.update({f"refined_{k}": v.numpy() for k, v in res.params.items()})
    out.update({f"{k}_before": v for k, v in before.items()})
    out.update({f"{k}_after": v for k, v in after.items()})
    out.update(e3d_before=res.e3d_before.numpy(), e3d_after=res.e3d_after.numpy())
    out.update({f"accepted_{k}": v.numpy() for k, v in res.accepted.items()})
    if res.contact is not None:
        out.update(contact_evidence=res.contact.numpy(), gap_before_mm=res.gap_before.numpy() * 1000.0,
                   gap_after_mm=res.gap_after.numpy() * 1000.0)
    write_npz(output_path, out)
    return {
        "input": str(input_path), "output": str(output_path), "samples": int(len(res.e3d_before)),
        "seconds": round(res.seconds, 2), "samples_per_s": round(len(res.e3d_before) / res.seconds, 2),
        "method": method,
        "config": {"factors": config.factors, "verify": config.verify, "factorize": config.factorize, "collision": config.collision, "init": config.init,
                   "contact": config.contact}
        if method == "opt" else {"factors": config.factors, "verify": config.verify, "collision": verify_collision, "refiner": str(refiner)},
        "before": mean_figures(before, np.ones(len(res.e3d_before), bool)),
        "after": mean_figures(after, np.ones(len(res.e3d_before), bool)),
        "accepted": {k: int(v.sum()) for k, v in res.accepted.items()},
    }
