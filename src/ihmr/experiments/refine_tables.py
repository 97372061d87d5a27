"""The synthetic interacting-hands benchmark of ``ihmr bench refine``: the paper's Table 1, 3, 4 and
A.4 shapes on pairs from :func:`ihmr.data.synthetic.make_synthetic`.

- Table 1: the simulated stage-I baseline, IHMR-MLP and IHMR-OPT (exact collision) on the closely
  interacting pairs; with the exact collision term also the paper's grid term on a few of them.
- Table 3: OPT from the stage-I predictions vs from the mean shape and pose.
- Table 4: factors, their order, factorization and verification (ablations of the base config).
- Table A.4: OPT with joint heads of increasing noise (``sigma`` 0 ... 40 mm).

Every row is a dict: ``method``, ``n``, ``mpjpe_mm``, ``i_mpjpe_mm``, ``ave_p_mm``, ``max_p_mm``
(after refinement; the baseline row: before), the same with ``_before``, ``samples_per_s``
(``None`` for the baseline) and for refiner rows ``samples_worse_on_a_criterion``.
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

from ihmr.data.synthetic import load_npz, make_synthetic, save_npz
from ihmr.errors import InputError
from ihmr.experiments.refine_runs import evaluate_params, run_mlp
from ihmr.handmodel import TwoHands
from ihmr.io.files import atomic_write
from ihmr.joint_order import to_two_hand
from ihmr.metrics import closely_interacting_mask
from ihmr.refine import RefineConfig, RefineResult, refine_opt
from ihmr.refine.mlp import MLPRefineConfig, load_refiner

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
_METRICS = ("mpjpe_mm", "i_mpjpe_mm", "ave_p_mm", "max_p_mm")
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


def _row(name: str, before: dict, after: Optional[dict], seconds: Optional[float]) -> dict:
    """A table row: the means of the per-sample metrics ``before`` / ``after`` refinement (``after``
    None: the baseline row) and the speed of a refinement that took ``seconds``."""
    m = after if after is not None else before
    n = len(before["ave_p_mm"])
    row = {"method": name, "n": n}
    for k in _METRICS:
        row[k] = float(np.mean(m[k]))
        row[f"{k}_before"] = float(np.mean(before[k]))
    row["samples_per_s"] = None if seconds is None else n / seconds
    return row


def _refine(hands: TwoHands, data, idx: torch.Tensor, cfg: RefineConfig, batch: int) -> RefineResult:
    """OPT on the samples ``idx`` of a synthetic set."""
    p = {k: v[idx] for k, v in data.pred.items()}
    return refine_opt(hands, p, data.j3d[idx], data.j2d[idx], data.cam[idx], cfg, batch_size=batch, progress=False)


def _run_rows(hands: TwoHands, data, gt: torch.Tensor, idx: torch.Tensor, variants, batch: int) -> list[dict]:
    """The baseline row and one row per ``(name, cfg)`` of OPT on the samples ``idx``."""
    rows = []
    sub_gt = gt[idx]
    before = evaluate_params(hands, {k: v[idx] for k, v in data.pred.items()}, sub_gt)
    rows.append(_row(_BASELINE, before, None, None))
    for name, cfg in variants:
        res = _refine(hands, data, idx, cfg, batch)
        after = evaluate_params(hands, res.params, sub_gt)
        row = _row(name, before, after, res.seconds)
        worse = ((res.e_col_after > res.e_col_before + 1e-12) | (res.e3d_after > res.e3d_before + 1e-12)).sum()
        row["samples_worse_on_a_criterion"] = int(worse)
        rows.append(row)
    return rows


def _mlp_row(cfg: BenchRefineConfig, hands: TwoHands, data, gt: torch.Tensor, idx: torch.Tensor) -> dict:
    refiner = load_refiner(cfg.refiner, hands)
    sub_gt = gt[idx]
    pred = {k: v[idx] for k, v in data.pred.items()}
    before = evaluate_params(hands, pred, sub_gt)
    mcfg = MLPRefineConfig(factors=cfg.refine.factors, verify=cfg.refine.verify, collision=cfg.verify_collision)
    res = run_mlp(cfg.model, pred, data.j3d[idx], data.j2d[idx], mcfg, refiner, batch_size=cfg.mlp_batch)
    after = evaluate_params(hands, res.params, sub_gt)
    row = _row(f"IHMR-MLP ({cfg.verify_collision} verification, B = {cfg.mlp_batch})", before, after, res.seconds)
    row["samples_worse_on_a_criterion"] = int(((res.e_col_after > res.e_col_before) | (res.e3d_after > res.e3d_before)).sum())
    row["samples_worse_exact_collision"] = int((after["ave_p_mm"] > before["ave_p_mm"] + 1e-9).sum())
    row["accepted"] = {k: int(v.sum()) for k, v in res.accepted.items()}
    return row


def rows_markdown(title: str, rows: list[dict]) -> str:
    """A Markdown table of Table 1 / 3 / 4 rows under ``title`` (preceded by a blank line)."""
    lines = [f"\n{title}", "| Method | n | MPJPE | I-MPJPE | AVE-P / MAX-P (mm) | samples/s |", "|---|---|---|---|---|---|"]
    for r in rows:
        sp = "-" if r["samples_per_s"] is None else f"{r['samples_per_s']:.2f}"
        lines.append(f"| {r['method']} | {r['n']} | {r['mpjpe_mm']:.2f} | {r['i_mpjpe_mm']:.2f} | {r['ave_p_mm']:.3f} / {r['max_p_mm']:.2f} | {sp} |")
    return "\n".join(lines)


def _a4_markdown(rows: list[dict], n: int) -> str:
    lines = [f"\nTable A.4 (joint-head quality, n = {n} per row; *_before = simulated baseline)",
             "| sigma | MPJPE before -> after | I-MPJPE before -> after | AVE-P before -> after | samples/s |",
             "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['mpjpe_mm_before']:.2f} -> {r['mpjpe_mm']:.2f} | {r['i_mpjpe_mm_before']:.2f} -> {r['i_mpjpe_mm']:.2f} "
                     f"| {r['ave_p_mm_before']:.3f} -> {r['ave_p_mm']:.3f} | {r['samples_per_s']:.2f} |")
    return "\n".join(lines)


def _improvement_lines(rows: list[dict]) -> list[str]:
    """Table 1: each refiner's AVE-P reduction and I-MPJPE improvement over the baseline row."""
    b = rows[0]
    return [
        f"{o['method']}: AVE-P reduction {100 * (1 - o['ave_p_mm'] / b['ave_p_mm']):.1f} %, "
        f"I-MPJPE improvement {100 * (1 - o['i_mpjpe_mm'] / b['i_mpjpe_mm']):.1f} %, "
        f"samples made worse on a verification criterion: {o['samples_worse_on_a_criterion']}"
        + (f" (exact AVE-P higher than before: {o['samples_worse_exact_collision']})" if "samples_worse_exact_collision" in o else "")
        for o in rows[1:3]
    ]


def _synthetic_pairs(cfg: BenchRefineConfig, hands: TwoHands):
    data = load_npz(cfg.data) if cfg.data and Path(cfg.data).is_file() else None
    if data is not None and (len(data) != cfg.n or data.meta.get("seed") != cfg.seed or data.meta.get("sigma_mm") != cfg.sigma_mm):
        raise InputError(f"{cfg.data} holds {len(data)} pairs (seed {data.meta.get('seed')}, sigma {data.meta.get('sigma_mm')}), "
                         f"not --n {cfg.n} --seed {cfg.seed} --sigma {cfg.sigma_mm}")
    if data is None:
        data = make_synthetic(cfg.n, seed=cfg.seed, sigma_mm=cfg.sigma_mm, hands=hands)
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
    echo(f"{cfg.n} synthetic pairs ready in {time.perf_counter() - t0:.1f} s (seed {cfg.seed}, sigma {cfg.sigma_mm} mm)")
    gt = to_two_hand(data.gt_j3d, "mano")
    close = closely_interacting_mask(gt.numpy())
    close_idx = torch.as_tensor(np.flatnonzero(close))
    report: dict = {"n": cfg.n, "n_close": int(close.sum()), "seed": cfg.seed, "sigma_mm": cfg.sigma_mm, "tables": {}}

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
            d2 = make_synthetic(cfg.n_ablation, seed=cfg.seed + 1, sigma_mm=sigma, hands=hands, progress=False)
            idx = torch.arange(cfg.n_ablation)
            g2 = to_two_hand(d2.gt_j3d, "mano")
            before = evaluate_params(hands, d2.pred, g2)
            res = _refine(hands, d2, idx, base, cfg.batch)
            after = evaluate_params(hands, res.params, g2)
            rows.append(_row(f"OPT, joint-head sigma {sigma:.0f} mm", before, after, res.seconds))
        echo(_a4_markdown(rows, cfg.n_ablation))
        report["tables"]["A4"] = rows
    return report


def write_report(report: dict, path: str | Path) -> Path:
    """Write the report of :func:`run_refine_tables` as indented JSON (atomically); returns the path."""
    with atomic_write(path, "w") as fh:
        json.dump(report, fh, indent=2)
    return Path(path)
