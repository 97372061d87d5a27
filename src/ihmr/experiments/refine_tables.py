"""The synthetic interacting-hands benchmark of ``ihmr bench refine``: the paper's Table 1, 3, 4 and
A.4 shapes on pairs from :func:`ihmr.data.synthetic.make_synthetic`.

- Table 1: the simulated stage-I baseline, IHMR-MLP and IHMR-OPT (exact collision) on the closely
  interacting pairs; with the exact collision term also the paper's grid term on a few of them.
- Table 3: OPT from the stage-I predictions vs from the mean shape and pose.
- Table 4: factors, their order, factorization and verification (ablations of the base config).
- Table A.4: OPT with joint heads of increasing noise (``sigma`` 0 ... 40 mm).

The benchmark is two-sided by default (:data:`ihmr.data.synthetic.MIXES`): the simulated stage I
errs into the other hand on one half of the pairs (the *penetrating part*) and away from it on the
other (the *separated part*); ``--mix one-sided`` is the paper's setting (every pair penetrating).

Every row is a dict: ``method``, ``n``, ``mpjpe_mm``, ``i_mpjpe_mm``, ``ave_p_mm``, ``max_p_mm``,
``contact_gap_mm``, ``contact_precision``, ``contact_recall`` over all its samples (after
refinement; the baseline row: before), the same with ``_before``, ``parts``: ``penetrating`` /
``separated`` -> the same figures on that part, ``samples_per_s`` (``None`` for the baseline)
and for refiner rows ``samples_worse_on_a_criterion`` (collision, 3D-joint error or an evidenced
gap higher than before).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ihmr.data.synthetic import MIXES, load_npz, make_synthetic, save_npz
from ihmr.errors import InputError
from ihmr.experiments.refine_runs import evaluate_params, mean_figures, run_mlp
from ihmr.handmodel import TwoHands
from ihmr.io.files import atomic_write
from ihmr.joint_order import to_two_hand
from ihmr.metrics import CONTACT_THRESHOLD, closely_interacting_mask
from ihmr.refine import RefineConfig, RefineResult, refine_opt
from ihmr.refine.mlp import load_refiner
from ihmr.refine.mlp_refine import MLPRefineConfig

__all__ = [
    "TABLES",
    "BenchRefineConfig",
    "table_variants",
    "run_refine_tables",
    "rows_markdown",
    "write_report",
]

log = logging.getLogger(__name__)

#: Table names of :attr:`BenchRefineConfig.tables`.
TABLES: tuple[str, ...] = ("1", "3", "4", "A4")
#: Joint-head noise (mm per coordinate) of the Table A.4 rows.
A4_SIGMAS_MM: tuple[float, ...] = (0.0, 10.0, 20.0, 40.0)
_BASELINE = "Baseline (simulated stage I)"


@dataclass
class BenchRefineConfig:
    """Options of :func:`run_refine_tables` (see ``ihmr bench refine --help``).

    Attributes:
        n: synthetic pairs of the main comparison (Table 1; its rows use the closely interacting ones).
        n_ablation: samples of each ablation run (Tables 3, 4, A.4).
        seed, sigma_mm: of :func:`~ihmr.data.synthetic.make_synthetic` (joint-head noise, mm).
        tables: which of :data:`TABLES` to run.
        data: cache ``.npz`` of the generated pairs: read when it exists (must match n / seed /
            sigma), else written.
        refine: the base OPT config (the ablations vary it); its factors and verification also
            configure the MLP refiner.
        batch: samples refined together by OPT.
        model: hand model (``"open"`` or a MANO folder).
        refiner: MLP refiner checkpoint (``"default"``: the shipped ones); ``"none"`` skips the MLP row.
        mlp_batch: samples refined together by the MLP refiner.
        verify_collision: collision measure of the MLP refiner's verification (``"proxy"`` / ``"exact"``).
        mix: how the simulated stage I errs (:data:`ihmr.data.synthetic.MIXES`).
    """

    n: int = 256
    n_ablation: int = 64
    seed: int = 0
    sigma_mm: float = 10.0
    tables: Sequence[str] = TABLES
    data: Optional[str | Path] = None
    refine: RefineConfig = field(default_factory=RefineConfig)
    batch: int = 64
    model: str = "open"
    refiner: str | Path = "default"
    mlp_batch: int = 256
    verify_collision: str = "proxy"
    mix: str = "two-sided"


def table_variants(table: str, base: RefineConfig) -> list[tuple[str, RefineConfig]]:
    """The named OPT configs of the ablation tables ``"3"`` and ``"4"``, derived from ``base``."""
    if table == "3":
        return [("OPT from stage-I predictions", base), ("OPT from the mean shape and pose", replace(base, init="mean"))]
    if table == "4":
        variants = [(f"only {f}", replace(base, factors=(f,))) for f in ("tau", "phi", "theta", "beta")]
        variants += [
            ("tau, phi", replace(base, factors=("tau", "phi"))),
            ("tau, phi, theta, beta (default)", base),
            ("beta, theta, phi, tau (reversed)", replace(base, factors=("beta", "theta", "phi", "tau"))),
            ("no factorization (all at once)", replace(base, factorize=False)),
            ("no verification", replace(base, verify=False)),
        ]
        return variants
    raise InputError(f"no variants for table {table!r} (only '3' and '4')")


def _row(name: str, before: dict, after: Optional[dict], seconds: Optional[float],
         parts: Optional[dict[str, np.ndarray]] = None) -> dict:
    """A table row: the means of the per-sample metrics ``before`` / ``after`` refinement (``after``
    None: the baseline row) over all samples and over each of ``parts`` (name -> ``(n,)`` bool),
    and the speed of a refinement that took ``seconds``."""
    m = after if after is not None else before
    n = len(before["ave_p_mm"])
    row: dict = {"method": name, "n": n}
    everything = np.ones(n, bool)
    for which, src in (("", m), ("_before", before)):
        row.update({f"{k}{which}": v for k, v in mean_figures(src, everything).items()})
    if parts:
        row["parts"] = {}
        for part, mask in parts.items():
            fig = {"n": int(mask.sum()), **mean_figures(m, mask)}
            fig.update({f"{k}_before": v for k, v in mean_figures(before, mask).items()})
            row["parts"][part] = fig
    row["samples_per_s"] = None if seconds is None else n / seconds
    return row


def _worse(res: RefineResult) -> torch.Tensor:
    """``(n,)`` bool: refinement raised the collision error, the 3D-joint error or an evidenced gap
    (beyond touching: separating penetrating hands to within 2 mm is no wider gap)."""
    worse = (res.e_col_after > res.e_col_before + 1e-12) | (res.e3d_after > res.e3d_before + 1e-12)
    if res.contact is not None and res.gap_before is not None and res.gap_after is not None:
        worse |= res.contact & (res.gap_after > torch.clamp(res.gap_before, min=CONTACT_THRESHOLD) + 1e-12)
    return worse


def _refine(hands: TwoHands, data, idx: torch.Tensor, cfg: RefineConfig, batch: int) -> RefineResult:
    """OPT on the samples ``idx`` of a synthetic set."""
    p = {k: v[idx] for k, v in data.pred.items()}
    return refine_opt(hands, p, data.j3d[idx], data.j2d[idx], data.cam[idx], cfg, batch_size=batch, progress=False)


def _parts(data, idx: torch.Tensor) -> dict[str, np.ndarray]:
    """The penetrating and separated parts (:meth:`SyntheticSet.sides`) of the samples ``idx``."""
    pen, sep = data.sides()
    return {"penetrating": pen[idx].numpy(), "separated": sep[idx].numpy()}


def _gt_params(data, idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v[idx] for k, v in data.gt.items()}


def _run_rows(hands: TwoHands, data, gt: torch.Tensor, idx: torch.Tensor, variants, batch: int) -> list[dict]:
    """The baseline row and one row per ``(name, cfg)`` of OPT on the samples ``idx``."""
    rows = []
    sub_gt, gtp, parts = gt[idx], _gt_params(data, idx), _parts(data, idx)
    before = evaluate_params(hands, {k: v[idx] for k, v in data.pred.items()}, sub_gt, gt_params=gtp)
    rows.append(_row(_BASELINE, before, None, None, parts))
    for name, cfg in variants:
        res = _refine(hands, data, idx, cfg, batch)
        after = evaluate_params(hands, res.params, sub_gt, gt_params=gtp)
        row = _row(name, before, after, res.seconds, parts)
        row["samples_worse_on_a_criterion"] = int(_worse(res).sum())
        rows.append(row)
    return rows


def _mlp_row(cfg: BenchRefineConfig, hands: TwoHands, data, gt: torch.Tensor, idx: torch.Tensor) -> dict:
    refiner = load_refiner(cfg.refiner, hands)
    sub_gt, gtp, parts = gt[idx], _gt_params(data, idx), _parts(data, idx)
    pred = {k: v[idx] for k, v in data.pred.items()}
    before = evaluate_params(hands, pred, sub_gt, gt_params=gtp)
    mcfg = MLPRefineConfig(factors=cfg.refine.factors, verify=cfg.refine.verify, collision=cfg.verify_collision,
                          contact=cfg.refine.contact, snap=cfg.refine.snap)
    res = run_mlp(cfg.model, pred, data.j3d[idx], data.j2d[idx], mcfg, refiner, batch_size=cfg.mlp_batch)
    after = evaluate_params(hands, res.params, sub_gt, gt_params=gtp)
    row = _row(f"IHMR-MLP ({cfg.verify_collision} verification, B = {cfg.mlp_batch})", before, after, res.seconds, parts)
    row["samples_worse_on_a_criterion"] = int(_worse(res).sum())
    row["samples_worse_exact_collision"] = int((after["ave_p_mm"] > before["ave_p_mm"] + 1e-9).sum())
    row["accepted"] = {k: int(v.sum()) for k, v in res.accepted.items()}
    return row


def _f(x: Optional[float], nd: int = 2) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{nd}f}"


def rows_markdown(title: str, rows: list[dict]) -> str:
    """A Markdown table of Table 1 / 3 / 4 rows under ``title`` (preceded by a blank line): pose
    errors on all samples, penetration on the penetrating part, the contact gap on the separated
    part, contact precision / recall on all."""
    lines = [f"\n{title}", "| Method | n | MPJPE | I-MPJPE | AVE-P / MAX-P (mm), penetrating part | contact gap (mm), separated part "
             "| contact P / R | samples/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pen = r.get("parts", {}).get("penetrating", r)
        sep = r.get("parts", {}).get("separated", {})
        lines.append(f"| {r['method']} | {r['n']} | {_f(r['mpjpe_mm'])} | {_f(r['i_mpjpe_mm'])} | {_f(pen.get('ave_p_mm'), 3)} / "
                     f"{_f(pen.get('max_p_mm'))} (n {pen.get('n', r['n'])}) | {_f(sep.get('contact_gap_mm'))} (n {sep.get('n', 0)}) "
                     f"| {_f(r.get('contact_precision'))} / {_f(r.get('contact_recall'))} | {_f(r['samples_per_s'])} |")
    return "\n".join(lines)


def _a4_markdown(rows: list[dict], n: int) -> str:
    lines = [f"\nTable A.4 (joint-head quality, n = {n} per row; *_before = simulated baseline)",
             "| sigma | MPJPE before -> after | I-MPJPE before -> after | AVE-P before -> after | contact gap before -> after | samples/s |",
             "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['mpjpe_mm_before']:.2f} -> {r['mpjpe_mm']:.2f} | {r['i_mpjpe_mm_before']:.2f} -> {r['i_mpjpe_mm']:.2f} "
                     f"| {r['ave_p_mm_before']:.3f} -> {r['ave_p_mm']:.3f} | {_f(r.get('contact_gap_mm_before'))} -> {_f(r.get('contact_gap_mm'))} "
                     f"| {r['samples_per_s']:.2f} |")
    return "\n".join(lines)


def _change(after: Optional[float], before: Optional[float]) -> str:
    """``-x.x %`` (a reduction is negative) or ``-`` when undefined."""
    return "-" if after is None or not before else f"{100 * (after / before - 1):+.1f} %"


def _improvement_lines(rows: list[dict]) -> list[str]:
    """Table 1: each refiner's change of AVE-P on the penetrating part, of the contact gap on the
    separated part and of I-MPJPE on all samples, against the baseline row."""
    b = rows[0]
    out = []
    for o in rows[1:]:
        if "samples_worse_on_a_criterion" not in o or "[first" in o["method"]:  # baselines and the grid's few samples
            continue
        pen_o, pen_b = o.get("parts", {}).get("penetrating", o), b.get("parts", {}).get("penetrating", b)
        sep_o, sep_b = o.get("parts", {}).get("separated", {}), b.get("parts", {}).get("separated", {})
        out.append(
            f"{o['method']}: AVE-P (penetrating part) {_change(pen_o.get('ave_p_mm'), pen_b.get('ave_p_mm'))}, "
            f"contact gap (separated part) {_change(sep_o.get('contact_gap_mm'), sep_b.get('contact_gap_mm'))}, "
            f"I-MPJPE (all) {_change(o['i_mpjpe_mm'], b['i_mpjpe_mm'])}, "
            f"samples made worse on a verification criterion: {o['samples_worse_on_a_criterion']}"
            + (f" (exact AVE-P higher than before: {o['samples_worse_exact_collision']})" if "samples_worse_exact_collision" in o else ""))
    return out


def _synthetic_pairs(cfg: BenchRefineConfig, hands: TwoHands):
    data = load_npz(cfg.data) if cfg.data and Path(cfg.data).is_file() else None
    if cfg.mix not in MIXES:
        raise InputError(f"--mix must be one of {', '.join(MIXES)}, got {cfg.mix!r}")
    mix = None if data is None else data.meta.get("mix", "one-sided")
    if data is not None and (len(data) != cfg.n or data.meta.get("seed") != cfg.seed or data.meta.get("sigma_mm") != cfg.sigma_mm
                             or mix != cfg.mix):
        raise InputError(f"{cfg.data} holds {len(data)} pairs (seed {data.meta.get('seed')}, sigma {data.meta.get('sigma_mm')}, "
                         f"mix {mix}), not --n {cfg.n} --seed {cfg.seed} --sigma {cfg.sigma_mm} --mix {cfg.mix}")
    if data is None:
        data = make_synthetic(cfg.n, seed=cfg.seed, sigma_mm=cfg.sigma_mm, hands=hands, mix=cfg.mix)
        if cfg.data:
            save_npz(cfg.data, data)
    return data


def run_refine_tables(cfg: BenchRefineConfig, echo: Optional[Callable[[str], None]] = None) -> dict:
    """Run the chosen tables (see the module docstring).

    Args:
        cfg: the options.
        echo: called with each progress line and each finished table (Markdown) as it is ready;
            default: logged at INFO level.

    Returns:
        the report: ``n``, ``n_close``, ``seed``, ``sigma_mm`` and ``tables``: name -> rows.

    Raises:
        InputError: a cache file ``cfg.data`` made with other n / seed / sigma.
    """
    echo = echo or log.info
    hands = TwoHands(cfg.model, dtype=torch.float64)
    base = cfg.refine
    tables = set(cfg.tables)
    t0 = time.perf_counter()
    data = _synthetic_pairs(cfg, hands)
    echo(f"{cfg.n} synthetic pairs ready in {time.perf_counter() - t0:.1f} s (seed {cfg.seed}, sigma {cfg.sigma_mm} mm, {cfg.mix})")
    gt = to_two_hand(data.gt_j3d, "mano")
    close = closely_interacting_mask(gt.numpy())
    close_idx = torch.as_tensor(np.flatnonzero(close))
    report: dict = {"n": cfg.n, "n_close": int(close.sum()), "seed": cfg.seed, "sigma_mm": cfg.sigma_mm, "mix": cfg.mix,
                    "contact": base.contact, "tables": {}}

    if "1" in tables:
        rows = _run_rows(hands, data, gt, close_idx, [("IHMR-OPT (exact collision, ours)", base)], cfg.batch)
        if str(cfg.refiner) != "none":
            rows.insert(1, _mlp_row(cfg, hands, data, gt, close_idx))
        if base.collision == "exact":
            small = close_idx[: min(cfg.n_ablation, 8)]  # the paper's grid is slow: a few samples
            grid_rows = _run_rows(hands, data, gt, small, [("IHMR-OPT (grid collision, paper)", replace(base, collision="grid"))], cfg.batch)
            rows += [dict(r, method=r["method"] + f" [first {len(small)}]") for r in grid_rows]
        echo(rows_markdown(f"Table 1 (synthetic Inter-Close, n = {len(close_idx)}, sigma = {cfg.sigma_mm} mm)", rows))
        for line in _improvement_lines(rows):
            echo(line)
        report["tables"]["1"] = rows
    small = close_idx[: cfg.n_ablation]
    if "3" in tables:
        rows = _run_rows(hands, data, gt, small, table_variants("3", base), cfg.batch)
        echo(rows_markdown(f"Table 3 (initialisation, n = {len(small)})", rows))
        report["tables"]["3"] = rows
    if "4" in tables:
        rows = _run_rows(hands, data, gt, small, table_variants("4", base), cfg.batch)
        echo(rows_markdown(f"Table 4 (factors, order, factorization, verification; n = {len(small)})", rows))
        report["tables"]["4"] = rows
    if "A4" in tables:
        rows = []
        for sigma in A4_SIGMAS_MM:
            d2 = make_synthetic(cfg.n_ablation, seed=cfg.seed + 1, sigma_mm=sigma, hands=hands, progress=False, mix=cfg.mix)
            idx = torch.arange(cfg.n_ablation)
            g2 = to_two_hand(d2.gt_j3d, "mano")
            before = evaluate_params(hands, d2.pred, g2, gt_params=d2.gt)
            res = _refine(hands, d2, idx, base, cfg.batch)
            after = evaluate_params(hands, res.params, g2, gt_params=d2.gt)
            rows.append(_row(f"OPT, joint-head sigma {sigma:.0f} mm", before, after, res.seconds, _parts(d2, idx)))
        echo(_a4_markdown(rows, cfg.n_ablation))
        report["tables"]["A4"] = rows
    return report


def write_report(report: dict, path: str | Path) -> Path:
    """Write the report of :func:`run_refine_tables` as indented JSON (atomically); returns the path."""
    with atomic_write(path, "w") as fh:
        json.dump(report, fh, indent=2)
    return Path(path)
