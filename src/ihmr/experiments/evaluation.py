"""Evaluation of stage I and the refiners on InterHand2.6M-format data (``ihmr eval``).

Steps (per process; under ``torchrun`` each rank takes a contiguous shard of the samples):

1. Load the split with :func:`ihmr.data.interhand.load_interhand` and crop it with
   :class:`~ihmr.data.interhand.InterHandDataset` at the checkpoint's input size. Steps 2-4 run on
   chunks of ``refine_batch`` samples, each sample isolated: one that cannot be loaded, or that
   raises when its chunk is redone sample by sample, fails alone (one line, listed in the report).
2. Stage I (:class:`~ihmr.stage1.network.Stage1Net` from :func:`~ihmr.stage1.weights.load_stage1`):
   parameters, the weak-perspective camera, the joint head's 2D / 3D joints and the image feature.
3. Each chosen refiner on the stage-I predictions, with the joint head's ``j3d`` / ``j2d`` as targets
   and the parameter head's camera (``opt``: :func:`ihmr.refine.refine_opt`; ``mlp``:
   :func:`ihmr.refine.mlp_refine.refine_mlp`; the image feature is passed only to refiners trained with it).
4. Per-sample metrics (:func:`ihmr.metrics.sample_metrics`): MPJPE / I-MPJPE against the ground-truth
   camera-frame joints (each hand aligned to its own ground-truth wrist, as the metrics define; the
   predicted hands have the right wrist at the origin, which the alignment removes), exact AVE-P /
   MAX-P on the predicted meshes, and MPVPE / I-MPVPE when the data set has exact ground-truth
   parameters for the same hand model (``ihmr_params.json`` of ``ihmr synth``).
5. Rank 0 gathers the per-sample results and failures (:func:`ihmr.distributed.gather_objects`),
   orders them by sample index and writes the Table-1 shaped table (:func:`ihmr.metrics.metrics_table`, Markdown
   + JSON) and the per-sample arrays (``per_sample.npz``).

Speeds: stage I in images/s and each refiner in samples/s, each the number of evaluated samples
divided by the slowest process's time (so with several processes: the aggregate throughput).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch
from tqdm import tqdm

from ihmr.data.interhand import SUBSETS, InterHandDataset, find_split_files, load_interhand
from ihmr.data.synth import PARAMS_FILE, read_ihmr_params
from ihmr.distributed import gather_objects, rank_world
from ihmr.errors import InputError, one_line
from ihmr.handmodel import TwoHands
from ihmr.io.files import atomic_write, ensure_writable_folder, remove_leftovers
from ihmr.io.npz import write_npz
from ihmr.metrics import ContactStats, PenetrationStats, PoseError, SampleMetrics, metrics_table, sample_metrics
from ihmr.refine import RefineConfig, refine_opt
from ihmr.refine.mlp import load_refiner
from ihmr.refine.mlp_refine import MLPRefineConfig, refine_mlp
from ihmr.stage1.ik import pair_ik
from ihmr.stage1.weights import checkpoint_hands, load_stage1

__all__ = [
    "REFINERS",
    "METHOD_NAMES",
    "SUBSET_NAMES",
    "EvalConfig",
    "EvalReport",
    "load_gt_params",
    "shard_indices",
    "evaluate",
    "write_report",
]

#: Refiner choices of ``--refine``.
REFINERS: tuple[str, ...] = ("none", "mlp", "opt")
#: Table row of each choice; ``<choice>_ik``: the starred rows (the paper's Table 1), whose stage I
#: is the joint head's 3D joints through IK (:func:`~ihmr.stage1.ik.pair_ik`).
METHOD_NAMES: dict[str, str] = {"none": "Baseline (stage I)", "mlp": "IHMR-MLP", "opt": "IHMR-OPT",
                                "none_ik": "Baseline* (joint head + IK)", "mlp_ik": "IHMR-MLP*", "opt_ik": "IHMR-OPT*"}
#: Column-group names of the subsets.
SUBSET_NAMES: dict[str, str] = {"all": "All", "inter": "Inter", "inter_close": "Inter-Close"}
_POSE_KEYS = ("mpjpe", "i_mpjpe", "mpvpe", "i_mpvpe")

log = logging.getLogger(__name__)


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
    contact: bool = True
    refine_batch: int = 64
    progress: bool = True
    cache_dir: Any = None
    starred: bool = True

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
    """What rank 0 returns (``None`` on other ranks): the table over the samples evaluated (None
    when there are none), their per-sample arrays, facts, the files written (none after an
    interruption), the failed samples (``{"index", "image_id", "file_name", "error"}``; index None
    for those the loader skipped) and whether Ctrl-C stopped the run."""

    table: Any
    per_sample: dict[str, np.ndarray]
    info: dict = field(default_factory=dict)
    paths: dict[str, str] = field(default_factory=dict)
    failed: list[dict] = field(default_factory=list)
    interrupted: bool = False


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
def _load_images(ds, positions: np.ndarray) -> tuple[list[torch.Tensor], list[int], list[tuple[int, BaseException]]]:
    """The crops ``(3, S, S)`` of the samples ``positions`` of ``ds``, each loaded on its own:
    ``(crops, their positions, [(position, exception)] of the samples that could not be loaded)``."""
    crops, ok, bad = [], [], []
    for i in positions:
        try:
            crops.append(ds[int(i)]["image"])
        except Exception as e:  # noqa: BLE001 - per-sample isolation: a missing / corrupt / truncated image
            bad.append((int(i), e))
        else:
            ok.append(int(i))
    return crops, ok, bad


@torch.no_grad()
def _stage1(net, images: torch.Tensor, batch: int) -> tuple[dict[str, np.ndarray], float]:
    """Stage I on ``images (B, 3, S, S)`` in forward passes of ``batch``: ``({"beta", "phi",
    "theta", "tau", "cam", "j3d", "j2d", "feature"}: (B, ...) arrays, seconds of network time)``."""
    outs: dict[str, list] = {}
    seconds = 0.0
    for s in range(0, images.shape[0], batch):
        t0 = time.perf_counter()
        out = net(images[s:s + batch])
        seconds += time.perf_counter() - t0
        got = dict(out.params, j3d=out.j3d, j2d=out.j2d, feature=out.feature)
        for k, v in got.items():
            outs.setdefault(k, []).append(v.detach().double().cpu().numpy())
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
    ``ave_p`` / ``max_p`` (mm), with ground-truth meshes the contact figures ``contact_gap`` (mm)
    and the vertex counts ``contact_tp`` / ``contact_pred`` / ``contact_gt``."""
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
        if m.contact is not None:
            for k, v in (("contact_gap", m.contact.gap_mm), ("contact_tp", m.contact.tp), ("contact_pred", m.contact.n_pred),
                         ("contact_gt", m.contact.n_gt)):
                res.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in res.items()}


def _to_sample_metrics(d: dict[str, np.ndarray], prefix: str):
    def pose(k):
        if f"{prefix}{k}" not in d:
            return None
        ps, c = d[f"{prefix}{k}"], d[f"{prefix}{k}_count"]
        tot = c.sum()
        return PoseError(float(np.nansum(ps * c) / tot) if tot else float("nan"), ps, c)

    contact = None
    if f"{prefix}contact_gap" in d:
        contact = ContactStats(*(d[f"{prefix}contact_{k}"] for k in ("gap", "tp", "pred", "gt")))
    return SampleMetrics(mpjpe=pose("mpjpe"), i_mpjpe=pose("i_mpjpe"), mpvpe=pose("mpvpe"), i_mpvpe=pose("i_mpvpe"),
                         penetration=PenetrationStats(d[f"{prefix}ave_p"], d[f"{prefix}max_p"]), contact=contact)


# -------------------------------------------------------------------------------------------- run
@dataclass
class _Context:
    """What every chunk of samples needs (one process)."""

    cfg: EvalConfig
    net: Any
    ann: Any
    gt_params: Optional[dict[str, np.ndarray]]
    hands64: TwoHands
    hands32: Optional[TwoHands]
    refiner: Any
    ds: Any


def _eval_samples(ctx: _Context, positions: Sequence[int], crops: Sequence[torch.Tensor]) -> tuple[dict, dict[str, float], bool]:
    """Stage I, the refiners and the metrics of the samples ``positions`` (their ``crops``):
    ``(per-sample arrays keyed "index", "stage1/<k>", "<method>/<k>", seconds per method, whether
    the ground-truth parameters reproduce the annotated joints)``."""
    cfg, ann = ctx.cfg, ctx.ann
    pos = np.asarray(positions)
    seconds: dict[str, float] = {}
    pred, seconds["none"] = _stage1(ctx.net, torch.stack(list(crops)), cfg.batch)
    local: dict[str, Any] = {"index": pos}
    local.update({f"stage1/{k}": v for k, v in pred.items() if k != "feature"})
    gt_j = torch.as_tensor(ann.joints[pos])
    valid = ann.valid_two_hand[pos]
    gt_v, gt_ok = None, ctx.gt_params is not None
    if gt_ok:
        gj, gv = _gt_meshes(ctx.hands64, {k: v[pos] for k, v in ctx.gt_params.items()}, ann.R[pos], ann.t[pos])
        # The parameters must reproduce the annotated joints; otherwise no mesh metrics.
        gt_ok = float((gj - gt_j).norm(dim=-1).max()) < 1e-3
        gt_v = gv if gt_ok else None
    t = lambda k: torch.as_tensor(pred[k], dtype=torch.float64)  # noqa: E731
    starts = {"": {k: t(k) for k in ("beta", "phi", "theta", "tau")}}
    if cfg.starred:  # the starred rows: the joint head's joints through IK as stage I
        t0 = time.perf_counter()
        starts["_ik"] = pair_ik(ctx.hands64, t("j3d"))
        seconds["none_ik"] = seconds["none"] + time.perf_counter() - t0
    results = {}
    for suffix, base in starts.items():
        results["none" + suffix] = {k: v.numpy() for k, v in base.items()}
        for r in cfg.refine:
            if r == "opt":
                rc = RefineConfig(contact=cfg.contact) if cfg.iterations is None else RefineConfig(iterations=cfg.iterations, contact=cfg.contact)
                res = refine_opt(ctx.hands64, base, t("j3d"), t("j2d"), t("cam"), rc, batch_size=cfg.refine_batch, progress=False)
            elif r == "mlp":
                feat = None
                if ctx.refiner.config.feature_dim and ctx.refiner.config.feature_dim == pred["feature"].shape[1]:
                    feat = torch.as_tensor(pred["feature"], dtype=torch.float32)
                res = refine_mlp(ctx.hands32, {k: v.float() for k, v in base.items()}, t("j3d").float(), t("j2d").float(), ctx.refiner,
                                 feature=feat, config=MLPRefineConfig(contact=cfg.contact), batch_size=cfg.refine_batch, progress=False)
            else:
                continue
            seconds[r + suffix] = res.seconds
            results[r + suffix] = {k: v.detach().double().cpu().numpy() for k, v in res.params.items()}
            local.update({f"{r}{suffix}/accepted_{f}": v.cpu().numpy() for f, v in res.accepted.items()})
    for r, p in results.items():
        local.update({f"{r}/{k}": v for k, v in p.items()})
        local.update({f"{r}/{k}": v for k, v in _method_metrics(ctx.hands64, p, gt_j, valid, gt_v).items()})
    return local, seconds, gt_ok


def _failure(ann, i: Optional[int], error: str, image_id: Optional[int] = None, file_name: Optional[str] = None) -> dict:
    """One failed sample of the report: its position (None: not loaded), image id, file name, why."""
    if i is not None:
        image_id, file_name = int(ann.image_id[i]), str(ann.file_name[i])
    return {"index": i, "image_id": image_id, "file_name": file_name, "error": error}


def _echo(msg: str) -> None:
    tqdm.write(msg, file=sys.stderr)


#: At most this many lines for the samples the loader skipped (all are listed in the report).
_SKIPPED_LINES = 20


def _run_shard(ctx: _Context, mine: np.ndarray, progress: bool) -> tuple[list[dict], dict[str, float], bool, list[dict], bool]:
    """Evaluate the samples ``mine`` in chunks of ``refine_batch``, each sample isolated: one that
    cannot be loaded fails alone; a chunk that raises is redone sample by sample, so only the
    samples that raise on their own fail. Returns ``(per-chunk arrays, seconds per method, ground
    truth meshes usable, failures, interrupted)``; Ctrl-C stops after the chunks done (in one
    process; under torchrun it propagates)."""
    cfg, ann = ctx.cfg, ctx.ann
    parts: list[dict] = []
    seconds: dict[str, float] = {}
    gt_ok = ctx.gt_params is not None
    failed: list[dict] = []
    warm = False

    def fail(i: int, e: BaseException) -> None:
        msg = one_line(e, about=ann.image_root / str(ann.file_name[i]))  # the line names the file already
        failed.append(_failure(ann, i, msg))
        log.debug("sample %d (%s) failed", int(ann.image_id[i]), ann.file_name[i], exc_info=e)
        _echo(f"ihmr eval: {ann.file_name[i]}: {msg}")

    def add(res: tuple[dict, dict[str, float], bool]) -> None:
        nonlocal gt_ok
        parts.append(res[0])
        for k, v in res[1].items():
            seconds[k] = seconds.get(k, 0.0) + v
        gt_ok = gt_ok and res[2]

    bar = tqdm(total=len(mine), desc="ihmr eval", unit="sample", disable=not progress)
    try:
        for s in range(0, len(mine), cfg.refine_batch):
            crops, ok, bad = _load_images(ctx.ds, mine[s:s + cfg.refine_batch])
            for i, e in bad:
                fail(i, e)
            if ok and not warm:  # one untimed warm-up pass (first-call allocations would dominate small runs)
                with torch.no_grad():
                    ctx.net(crops[0][None])
                warm = True
            if ok:
                try:
                    add(_eval_samples(ctx, ok, crops))
                except Exception:  # noqa: BLE001 - find the sample(s) that raise: each alone
                    log.debug("samples %d..%d failed together; evaluating them one by one", ok[0], ok[-1], exc_info=True)
                    for i, c in zip(ok, crops):
                        try:
                            add(_eval_samples(ctx, [i], [c]))
                        except Exception as e:  # noqa: BLE001 - per-sample isolation
                            fail(i, e)
            bar.update(len(mine[s:s + cfg.refine_batch]))
    except KeyboardInterrupt:
        if rank_world()[1] > 1:
            raise  # the other processes cannot be told; torchrun ends them all
        return parts, seconds, gt_ok, failed, True
    finally:
        bar.close()
    return parts, seconds, gt_ok, failed, False


def evaluate(cfg: EvalConfig) -> Optional[EvalReport]:
    """Run the evaluation (see the module docstring); returns the report on rank 0, None elsewhere.

    Each sample is isolated: one that fails (an image missing, corrupt, truncated or of the wrong
    size, any exception while it is evaluated) or that the loader skipped (a broken annotation) is
    one line on stderr (its traceback in this module's log at DEBUG level) and one entry of
    ``report.failed`` (every process's, on rank 0); the table is over the samples evaluated. Ctrl-C
    (one process) stops after the chunks done: ``report.interrupted``, the table so far, no files.

    Raises:
        InputError: bad options, a missing / corrupt checkpoint or refiner, an unwritable ``out``,
            a missing data folder or split, unreadable annotation files, no samples (all checked
            before any sample is evaluated).
    """
    cfg.check()
    rank, world = rank_world()
    main = rank == 0
    net, arch, ck_info = load_stage1(cfg.checkpoint)
    hands64 = checkpoint_hands(arch, cfg.checkpoint)
    hands32 = refiner = None
    if "mlp" in cfg.refine:
        hands32 = checkpoint_hands(arch, cfg.checkpoint, torch.float32)
        refiner = load_refiner(cfg.refiner, hands32)
    files = find_split_files(cfg.data, cfg.split)
    if cfg.out is not None:
        remove_leftovers(ensure_writable_folder(cfg.out))  # the temporaries of a killed run's report
    ann = load_interhand(files, cache_dir=cfg.cache_dir, warn=False)
    failed = [_failure(ann, None, f"skipped: {s.reason}", s.image_id, s.file_name) for s in ann.skipped]
    if main:
        for f in failed[:_SKIPPED_LINES]:
            _echo(f"ihmr eval: {f['file_name'] or f['image_id']}: {f['error']}")
        if len(failed) > _SKIPPED_LINES:
            _echo(f"ihmr eval: ... and {len(failed) - _SKIPPED_LINES} more skipped (all listed in the report)")
    if cfg.limit is not None:
        ann = ann.select(np.arange(min(cfg.limit, len(ann))))
    masks = {s: ann.subset_mask(s) for s in cfg.subsets}
    keep = np.logical_or.reduce(list(masks.values()))
    if not keep.any():
        raise InputError(f"{files.data}: no samples in the subsets {', '.join(cfg.subsets)} (of {len(ann)} loaded)")
    ann = ann.select(keep)
    masks = {s: m[keep] for s, m in masks.items()}
    N = len(ann)
    ctx = _Context(cfg, net, ann, load_gt_params(files, ann, arch.model), hands64, hands32, refiner,
                   InterHandDataset(ann, size=arch.input_size))
    mine = shard_indices(N, rank, world)
    parts, seconds, gt_ok, mine_failed, interrupted = _run_shard(ctx, mine, cfg.progress and main)
    if not gt_ok:
        parts = [{k: v for k, v in p.items() if "mpvpe" not in k} for p in parts]
    local = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if parts else {}
    gathered = gather_objects((local, {"seconds": seconds, "has_gt_mesh": gt_ok, "failed": mine_failed, "interrupted": interrupted}))
    if not main:
        return None
    for g in gathered:
        failed += g[1]["failed"]
        interrupted |= g[1]["interrupted"]
    has_mesh = all(g[1]["has_gt_mesh"] for g in gathered)
    pieces = [g[0] for g in gathered if g[0]]
    if not has_mesh:
        pieces = [{k: v for k, v in p.items() if "mpvpe" not in k} for p in pieces]
    per = {k: np.concatenate([np.asarray(p[k]) for p in pieces]) for k in pieces[0]} if pieces else {"index": np.zeros(0, int)}
    order = np.argsort(per["index"], kind="stable")
    per = {k: v[order] for k, v in per.items()}
    done = per["index"]
    lost = sorted(f["index"] for f in failed if f["index"] is not None)
    if len(np.unique(done)) != len(done) or (not interrupted and sorted([*done.tolist(), *lost]) != list(range(N))):
        raise RuntimeError("gathered samples do not cover the data set exactly once")  # pragma: no cover
    sub = {s: m[done] for s, m in masks.items()}
    methods = [r for r in REFINERS if r == "none" or r in cfg.refine]
    methods += [r + "_ik" for r in methods] if cfg.starred else []
    table = None
    if len(done):
        speed = {}
        for r in methods:
            slowest = max(g[1]["seconds"].get(r, 0.0) for g in gathered)
            speed[METHOD_NAMES[r]] = len(done) / slowest if slowest > 0 else None
        results_m = {METHOD_NAMES[r]: _to_sample_metrics(per, f"{r}/") for r in methods}
        table = metrics_table(results_m, {SUBSET_NAMES[s]: sub[s] for s in cfg.subsets}, speed)
    per.update({f"subset/{s}": m for s, m in sub.items()})
    per["image_id"] = ann.image_id[done]
    info = {
        "data": str(cfg.data), "split": cfg.split, "checkpoint": str(cfg.checkpoint), "samples": int(len(done)),
        "selected": N, "processes": world, "backbone": arch.backbone, "input_size": arch.input_size, "model": arch.model,
        "refine": list(methods), "refiner": str(cfg.refiner) if "mlp" in cfg.refine else None,
        "opt_iterations": cfg.iterations, "contact": cfg.contact, "gt_meshes": has_mesh and bool(len(done)),
        "subset_sizes": {SUBSET_NAMES[s]: int(m.sum()) for s, m in sub.items()},
        "speed_units": {"Baseline (stage I)": "images/s (network forward only)", "Baseline* (joint head + IK)": "images/s (network + IK)",
                        "refiners": "samples/s"},
        "skipped": len(ann.skipped), "failed": failed, "interrupted": interrupted, "checkpoint_info": ck_info,
    }
    report = EvalReport(table=table, per_sample=per, info=info, failed=failed, interrupted=interrupted)
    if cfg.out is not None and table is not None and not interrupted:
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
