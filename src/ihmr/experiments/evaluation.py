"""Evaluation of stage I and the refiners on InterHand2.6M-format data (``ihmr eval``).

Steps (per process; under ``torchrun`` each rank takes a contiguous shard of the samples):

1. Load the split with :func:`ihmr.data.interhand.load_interhand` and crop it with
   :class:`~ihmr.data.interhand.InterHandDataset` at the checkpoint's input size.
2. Stage I (:class:`~ihmr.stage1.network.Stage1Net` from :func:`~ihmr.stage1.weights.load_stage1`):
   parameters, the weak-perspective camera, the joint head's 2D / 3D joints and the image feature.
3. Each chosen refiner on the stage-I predictions, with the joint head's ``j3d`` / ``j2d`` as targets
   and the parameter head's camera (``opt``: :func:`ihmr.refine.refine_opt`; ``mlp``:
   :func:`ihmr.refine.mlp.refine_mlp`; the image feature is passed only to refiners trained with it).
4. Per-sample metrics (:func:`ihmr.metrics.sample_metrics`): MPJPE / I-MPJPE against the ground-truth
   camera-frame joints (each hand aligned to its own ground-truth wrist, as the metrics define; the
   predicted hands have the right wrist at the origin, which the alignment removes), exact AVE-P /
   MAX-P on the predicted meshes, and MPVPE / I-MPVPE when the data set has exact ground-truth
   parameters for the same hand model (``ihmr_params.json`` of ``ihmr synth``).
5. Rank 0 gathers the per-sample results (``torch.distributed.gather_object``), orders them by
   sample index and writes the Table-1 shaped table (:func:`ihmr.metrics.metrics_table`, Markdown
   + JSON) and the per-sample arrays (``per_sample.npz``).

Speeds: stage I in images/s and each refiner in samples/s, each the number of evaluated samples
divided by the slowest process's time (so with several processes: the aggregate throughput).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
import torch.distributed as dist
from tqdm import tqdm

from ihmr.data.interhand import SUBSETS, InterHandDataset, find_split_files, load_interhand
from ihmr.data.synth import PARAMS_FILE, read_ihmr_params
from ihmr.distributed import rank_world
from ihmr.errors import InputError
from ihmr.handmodel import TwoHands
from ihmr.io.files import atomic_write
from ihmr.io.npz import write_npz
from ihmr.metrics import PenetrationStats, PoseError, SampleMetrics, metrics_table, sample_metrics
from ihmr.refine import RefineConfig, refine_opt
from ihmr.refine.mlp import load_refiner, refine_mlp
from ihmr.stage1.weights import load_stage1

__all__ = [
    "REFINERS",
    "METHOD_NAMES",
    "SUBSET_NAMES",
    "EvalConfig",
    "EvalReport",
    "load_gt_params",
    "shard_indices",
    "run_stage1",
    "evaluate",
    "write_report",
]

#: Refiner choices of ``--refine``.
REFINERS: tuple[str, ...] = ("none", "mlp", "opt")
#: Table row of each choice.
METHOD_NAMES: dict[str, str] = {"none": "Baseline (stage I)", "mlp": "IHMR-MLP", "opt": "IHMR-OPT"}
#: Column-group names of the subsets.
SUBSET_NAMES: dict[str, str] = {"all": "All", "inter": "Inter", "inter_close": "Inter-Close"}
_POSE_KEYS = ("mpjpe", "i_mpjpe", "mpvpe", "i_mpvpe")


@dataclass
class EvalConfig:
    """Options of :func:`evaluate` (see ``ihmr eval --help``)."""

    data: str | Path
    checkpoint: str | Path
    split: str = "test"
    refine: Sequence[str] = ("none", "opt", "mlp")
    subsets: Sequence[str] = ("all", "inter", "inter_close")
    batch: int = 16
    limit: Optional[int] = None
    out: Optional[str | Path] = None
    refiner: str | Path = "default"
    iterations: Optional[int] = None
    refine_batch: int = 64
    progress: bool = True
    cache_dir: Any = None

    def check(self) -> "EvalConfig":
        bad = [r for r in self.refine if r not in REFINERS]
        if bad or not self.refine:
            raise InputError(f"--refine must be a comma-separated subset of {','.join(REFINERS)}, got {','.join(self.refine)!r}")
        bad = [s for s in self.subsets if s not in SUBSETS]
        if bad or not self.subsets:
            raise InputError(f"--subset must be a comma-separated subset of {','.join(SUBSETS)}, got {','.join(self.subsets)!r}")
        if self.batch < 1 or self.refine_batch < 1:
            raise InputError(f"batch sizes must be >= 1, got {self.batch} / {self.refine_batch}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be >= 1, got {self.limit}")
        if self.iterations is not None and self.iterations < 1:
            raise InputError(f"--iterations must be >= 1, got {self.iterations}")
        return self


@dataclass
class EvalReport:
    """What rank 0 returns: the table, the per-sample arrays and facts (``None`` on other ranks)."""

    table: Any
    per_sample: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------ data
def load_gt_params(files, ann, model: str) -> Optional[dict[str, np.ndarray]]:
    """Exact ground-truth parameters of the samples ``ann`` from ``ihmr_params.json`` beside the
    annotation files (written by ``ihmr synth``), when made for the hand model ``model``.

    Returns ``beta (N, 2, 10)``, ``phi (N, 2, 3)``, ``theta (N, 2, 45)``, ``tau (N, 3)``,
    ``origin (N, 3)`` metres (world = hand frame + origin, no rotation), or None.
    """
    path = Path(files.data).parent / PARAMS_FILE
    if not path.is_file():
        return None
    try:
        rec = read_ihmr_params(path, ann.capture, ann.frame_idx)
    except InputError:
        return None
    if not len(rec.valid) or not rec.valid.all() or rec.models != {model}:
        return None
    return dict(beta=rec.beta, phi=rec.phi, theta=rec.theta, tau=rec.tau, origin=rec.origin)


def shard_indices(n: int, rank: int, world: int) -> np.ndarray:
    """Contiguous, deterministic shard of ``range(n)`` for ``rank`` of ``world`` (sizes differ by <= 1)."""
    return np.array_split(np.arange(n), world)[rank]


# --------------------------------------------------------------------------------------- stage I
@torch.no_grad()
def run_stage1(net, dataset, indices: np.ndarray, batch: int = 16, progress: bool = False) -> tuple[dict[str, np.ndarray], float]:
    """Stage I on the samples ``indices`` of ``dataset``.

    Returns ``({"beta", "phi", "theta", "tau", "cam", "j3d", "j2d", "feature"}: arrays over the
    samples, seconds of network time)`` (image loading and cropping not counted; one untimed
    warm-up forward pass first).
    """
    outs: dict[str, list] = {}
    seconds = 0.0
    if len(indices):  # one untimed warm-up pass (first-call allocations would dominate small runs)
        net(dataset[int(indices[0])]["image"][None])
    bar = tqdm(total=len(indices), desc="ihmr eval: stage I", unit="img", disable=not progress)
    for s in range(0, len(indices), batch):
        idx = indices[s:s + batch]
        images = torch.stack([dataset[int(i)]["image"] for i in idx])
        t0 = time.perf_counter()
        out = net(images)
        seconds += time.perf_counter() - t0
        got = dict(out.params, j3d=out.j3d, j2d=out.j2d, feature=out.feature)
        for k, v in got.items():
            outs.setdefault(k, []).append(v.detach().double().cpu().numpy())
        bar.update(len(idx))
    bar.close()
    return {k: np.concatenate(v) for k, v in outs.items()}, seconds


# ---------------------------------------------------------------------------------------- metrics
def _gt_meshes(hands, gt: dict[str, np.ndarray], R: np.ndarray, t: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Ground-truth joints and vertices in camera coordinates (m): ``X_cam = R (X + origin) + t``."""
    d = lambda k: torch.as_tensor(gt[k], dtype=torch.float64)  # noqa: E731
    out = hands(d("beta"), d("phi"), d("theta"), d("tau"))
    Rt, tt, o = torch.as_tensor(R), torch.as_tensor(t), d("origin")

    def cam(x):
        return torch.einsum("nij,nhvj->nhvi", Rt, x + o[:, None, None]) + tt[:, None, None]

    return cam(out.joints), cam(out.vertices)


def _method_metrics(hands, params: dict[str, np.ndarray], gt_j, valid, gt_v, batch: int = 64) -> dict[str, np.ndarray]:
    """Per-sample arrays of one method: ``{metric}`` (mm) and ``{metric}_count`` for the pose errors,
    ``ave_p`` / ``max_p`` (mm)."""
    res: dict[str, list] = {}
    N = params["beta"].shape[0]
    for s in range(0, N, batch):
        sl = slice(s, s + batch)
        p = {k: torch.as_tensor(params[k][sl], dtype=torch.float64) for k in ("beta", "phi", "theta", "tau")}
        with torch.no_grad():
            out = hands(p["beta"], p["phi"], p["theta"], p["tau"])
        m = sample_metrics(out.joints, gt_j[sl], valid[sl], out.vertices, hands.faces, None if gt_v is None else gt_v[sl])
        for k in _POSE_KEYS:
            e = getattr(m, k)
            if e is not None:
                res.setdefault(k, []).append(e.per_sample)
                res.setdefault(f"{k}_count", []).append(e.count)
        res.setdefault("ave_p", []).append(m.penetration.ave_p)
        res.setdefault("max_p", []).append(m.penetration.max_p)
    return {k: np.concatenate(v) for k, v in res.items()}


def _to_sample_metrics(d: dict[str, np.ndarray], prefix: str):
    def pose(k):
        if f"{prefix}{k}" not in d:
            return None
        ps, c = d[f"{prefix}{k}"], d[f"{prefix}{k}_count"]
        tot = c.sum()
        return PoseError(float(np.nansum(ps * c) / tot) if tot else float("nan"), ps, c)

    return SampleMetrics(mpjpe=pose("mpjpe"), i_mpjpe=pose("i_mpjpe"), mpvpe=pose("mpvpe"), i_mpvpe=pose("i_mpvpe"),
                         penetration=PenetrationStats(d[f"{prefix}ave_p"], d[f"{prefix}max_p"]))


# -------------------------------------------------------------------------------------------- run
def _gather(obj: Any) -> list[Any]:
    rank, world = rank_world()
    if world == 1:
        return [obj]
    out = [None] * world if rank == 0 else None
    dist.gather_object(obj, out, dst=0)
    return out if rank == 0 else []


def evaluate(cfg: EvalConfig) -> Optional[EvalReport]:
    """Run the evaluation (see the module docstring); returns the report on rank 0, None elsewhere.

    Raises:
        InputError: bad options, a missing / corrupt checkpoint, unreadable data, no samples.
    """
    cfg.check()
    rank, world = rank_world()
    main = rank == 0
    net, arch, ck_info = load_stage1(cfg.checkpoint)
    hands64 = TwoHands(arch.model, dtype=torch.float64)
    refiner = None
    if "mlp" in cfg.refine:
        hands32 = TwoHands(arch.model, dtype=torch.float32)
        refiner = load_refiner(cfg.refiner, hands32)
    files = find_split_files(cfg.data, cfg.split)
    ann = load_interhand(files, cache_dir=cfg.cache_dir, warn=main)
    if cfg.limit is not None:
        ann = ann.select(np.arange(min(cfg.limit, len(ann))))
    masks = {s: ann.subset_mask(s) for s in cfg.subsets}
    keep = np.logical_or.reduce(list(masks.values()))
    if not keep.any():
        raise InputError(f"{files.data}: no samples in the subsets {', '.join(cfg.subsets)} (of {len(ann)} loaded)")
    ann = ann.select(keep)
    masks = {s: m[keep] for s, m in masks.items()}
    N = len(ann)
    ds = InterHandDataset(ann, size=arch.input_size)
    gt_params = load_gt_params(files, ann, arch.model)
    mine = shard_indices(N, rank, world)

    # Stage I.
    local: dict[str, Any] = {"index": mine}
    seconds: dict[str, float] = {}
    if len(mine):
        pred, seconds["none"] = run_stage1(net, ds, mine, cfg.batch, progress=cfg.progress and main)
    else:
        pred, seconds["none"] = None, 0.0
    gt_j = torch.as_tensor(ann.joints[mine])
    valid = ann.valid_two_hand[mine]
    gt_v = None
    if gt_params is not None and len(mine):
        gj, gv = _gt_meshes(hands64, {k: v[mine] for k, v in gt_params.items()}, ann.R[mine], ann.t[mine])
        # The parameters must reproduce the annotated joints; otherwise no mesh metrics.
        if float((gj - gt_j).norm(dim=-1).max()) < 1e-3:
            gt_v = gv
    has_gt_mesh = gt_params is not None and (gt_v is not None or not len(mine))

    if pred is not None:
        base = {k: pred[k] for k in ("beta", "phi", "theta", "tau")}
        local.update({f"stage1/{k}": v for k, v in pred.items() if k != "feature"})
        results = {"none": base}
        t = lambda k: torch.as_tensor(pred[k], dtype=torch.float64)  # noqa: E731
        for r in cfg.refine:
            if r == "opt":
                rc = RefineConfig() if cfg.iterations is None else replace(RefineConfig(), iterations=cfg.iterations)
                res = refine_opt(hands64, {k: t(k) for k in base}, t("j3d"), t("j2d"), t("cam"), rc,
                                 batch_size=cfg.refine_batch, progress=cfg.progress and main)
            elif r == "mlp":
                feat = None
                if refiner.config.feature_dim and refiner.config.feature_dim == pred["feature"].shape[1]:
                    feat = torch.as_tensor(pred["feature"], dtype=torch.float32)
                res = refine_mlp(hands32, {k: t(k).float() for k in base}, t("j3d").float(), t("j2d").float(), refiner,
                                 feature=feat, batch_size=cfg.refine_batch, progress=cfg.progress and main)
            else:
                continue
            seconds[r] = res.seconds
            results[r] = {k: v.detach().double().cpu().numpy() for k, v in res.params.items()}
            local.update({f"{r}/accepted_{f}": v.cpu().numpy() for f, v in res.accepted.items()})
        for r, p in results.items():
            local.update({f"{r}/{k}": v for k, v in p.items()})
            local.update({f"{r}/{k}": v for k, v in _method_metrics(hands64, p, gt_j, valid, gt_v).items()})
    local_info = {"seconds": seconds, "has_gt_mesh": has_gt_mesh, "n": int(len(mine))}

    gathered = _gather((local, local_info))
    if not main:
        return None
    parts = [g[0] for g in gathered if g[1]["n"] > 0]
    keys = parts[0].keys()
    per = {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in keys}
    order = np.argsort(per["index"], kind="stable")
    per = {k: v[order] for k, v in per.items()}
    if not np.array_equal(per["index"], np.arange(N)):
        raise RuntimeError("gathered samples do not cover the data set exactly once")  # pragma: no cover
    has_mesh = all(g[1]["has_gt_mesh"] for g in gathered)
    if not has_mesh:
        per = {k: v for k, v in per.items() if "mpvpe" not in k}
    speed = {}
    methods = [r for r in REFINERS if r == "none" or r in cfg.refine]
    for r in methods:
        slowest = max(g[1]["seconds"].get(r, 0.0) for g in gathered)
        speed[METHOD_NAMES[r]] = N / slowest if slowest > 0 else None
    results_m = {METHOD_NAMES[r]: _to_sample_metrics(per, f"{r}/") for r in methods}
    table = metrics_table(results_m, {SUBSET_NAMES[s]: masks[s] for s in cfg.subsets}, speed)
    per.update({f"subset/{s}": m for s, m in masks.items()})
    per["image_id"] = ann.image_id
    info = {
        "data": str(cfg.data), "split": cfg.split, "checkpoint": str(cfg.checkpoint), "samples": N,
        "processes": world, "backbone": arch.backbone, "input_size": arch.input_size, "model": arch.model,
        "refine": list(methods), "refiner": str(cfg.refiner) if "mlp" in cfg.refine else None,
        "opt_iterations": cfg.iterations, "gt_meshes": has_mesh,
        "subset_sizes": {SUBSET_NAMES[s]: int(m.sum()) for s, m in masks.items()},
        "speed_units": {"Baseline (stage I)": "images/s (network forward only)", "refiners": "samples/s"},
        "skipped": len(ann.skipped), "checkpoint_info": ck_info,
    }
    report = EvalReport(table=table, per_sample=per, info=info)
    if cfg.out is not None:
        report.paths = write_report(report, cfg.out)
    return report


def write_report(report: EvalReport, out: str | Path) -> dict[str, str]:
    """Write ``table.md`` / ``table.json`` (the Table-1 shape plus an ``info`` block) and
    ``per_sample.npz`` into ``out``; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md, js = report.table.save(out / "table")
    doc = json.loads(js.read_text(encoding="utf-8"))
    doc["info"] = report.info
    with atomic_write(js, "w") as fh:
        json.dump(doc, fh, indent=2, default=str)
    npz = out / "per_sample.npz"
    write_npz(npz, {k.replace("/", "__"): v for k, v in report.per_sample.items()})
    return {"markdown": str(md), "json": str(js), "per_sample": str(npz)}
