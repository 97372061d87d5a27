"""``ihmr refine`` (refine predictions stored in an ``.npz``) and ``ihmr bench refine`` (the
synthetic interacting-hands benchmark with the paper's Table 1, 3, 4 and A.4 shapes)."""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ihmr.data.synthetic import load_npz, make_synthetic, save_npz
from ihmr.errors import InputError
from ihmr.handmodel import TwoHands
from ihmr.io.files import atomic_write
from ihmr.io.npz import GT_KEYS, read_refine_input
from ihmr.joint_order import to_two_hand
from ihmr.metrics import closely_interacting_mask, i_mpjpe, mpjpe, penetration_stats
from ihmr.refine import FACTORS, RefineConfig, refine_opt
from ihmr.refine.mlp import MLPRefineConfig, load_refiner, refine_mlp

__all__ = ["add_refine_parser", "add_bench_parser", "config_from_args", "evaluate_params"]


def _factor_list(text: Optional[str]) -> Optional[tuple[str, ...]]:
    return None if text is None else tuple(t.strip() for t in text.split(",") if t.strip())


def config_from_args(args: argparse.Namespace):
    """A :class:`RefineConfig` from the shared command-line switches."""
    order = _factor_list(args.order) or FACTORS
    chosen = _factor_list(args.factors)
    factors = tuple(f for f in order if chosen is None or f in chosen)
    if chosen is not None and set(chosen) - set(order):
        raise InputError(f"--factors {sorted(set(chosen) - set(order))} not in --order {order}")
    kw = dict(factors=factors, verify=not args.no_verify, factorize=not args.no_factorize,
              collision=args.collision, init=args.init, iterations=args.iterations)
    if args.terms:
        kw["terms"] = _factor_list(args.terms)
    return RefineConfig(**kw).check()


def _add_switches(p: argparse.ArgumentParser) -> None:
    p.add_argument("--method", choices=["opt", "mlp"], default="opt", help="refiner: gradient optimisation (OPT) or the learned per-factor MLPs")
    p.add_argument("--refiner", default="default", help="MLP refiner checkpoint ('default': the ones shipped for the hand model; 'none' skips MLP rows in bench)")
    p.add_argument("--mlp-batch", type=int, default=256, help="samples refined together by the MLP refiner")
    p.add_argument("--verify-collision", choices=["proxy", "exact"], default="proxy", help="collision measure of the MLP refiner's verification")
    p.add_argument("--collision", choices=["exact", "grid"], default="exact", help="collision term in the objective")
    p.add_argument("--factors", default=None, help="comma-separated subset of tau,phi,theta,beta (default all)")
    p.add_argument("--order", default=None, help="comma-separated factor order (default tau,phi,theta,beta)")
    p.add_argument("--no-verify", action="store_true", help="accept every stage's result (ablation)")
    p.add_argument("--no-factorize", action="store_true", help="refine all factors jointly in one stage (ablation)")
    p.add_argument("--init", choices=["pred", "mean"], default="pred", help="start from the predictions or the mean shape/pose")
    p.add_argument("--terms", default=None, help="objective terms, comma-separated subset of col,2d,3d,tau,reg,finger")
    p.add_argument("--iterations", type=int, default=60, help="Adam steps per stage")
    p.add_argument("--batch", type=int, default=64, help="samples refined together")
    p.add_argument("--model", default="open", help="'open' or a folder with the MANO pickles")


def add_refine_parser(sub) -> None:
    p = sub.add_parser("refine", help="refine two-hand predictions stored in an .npz (factorized refinement)")
    p.add_argument("input", help="input .npz: beta, phi, theta, tau, cam, j3d, j2d (see docs)")
    p.add_argument("-o", "--output", required=True, help="output .npz (input arrays + refined_* + per-sample metrics)")
    _add_switches(p)
    p.set_defaults(func=_cmd_refine)


def add_bench_parser(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks")
    bsub = bench.add_subparsers(dest="bench_command", required=True)
    p = bsub.add_parser("refine", help="synthetic interacting-hands benchmark: Table 1, 3, 4, A.4 shapes")
    p.add_argument("--n", type=int, default=256, help="samples of the main comparison (Table 1)")
    p.add_argument("--n-ablation", type=int, default=64, help="samples of each ablation run (Tables 3, 4, A.4)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sigma", type=float, default=10.0, help="joint-head noise, mm per coordinate")
    p.add_argument("--json", default=None, help="also write all figures to this JSON file")
    p.add_argument("--tables", default="1,3,4,A4", help="which tables to run")
    p.add_argument("--data", default=None, help="cache of the generated pairs: read when it exists (for the same --n/--seed/--sigma), else written")
    _add_switches(p)
    p.set_defaults(func=_cmd_bench_refine)


def _hands(model: str):

    return TwoHands(model, dtype=torch.float64)


@torch.no_grad()
def evaluate_params(hands, params: dict, gt_joints: Optional[torch.Tensor], batch: int = 256) -> dict[str, np.ndarray]:
    """Per-sample AVE-P / MAX-P (mm) and, with ground truth ``(N, 2, 21, 3)``, MPJPE / I-MPJPE (mm)."""
    ave, mx, joints = [], [], []
    N = params["beta"].shape[0]
    for s in range(0, N, batch):
        sl = slice(s, s + batch)
        out = hands(params["beta"][sl], params["phi"][sl], params["theta"][sl], params["tau"][sl])
        st = penetration_stats(out.vertices, hands.faces)
        ave.append(st.ave_p)
        mx.append(st.max_p)
        joints.append(out.joints)
    res = {"ave_p_mm": np.concatenate(ave), "max_p_mm": np.concatenate(mx)}
    if gt_joints is not None:
        j = torch.cat(joints)
        res["mpjpe_mm"] = mpjpe(j, gt_joints).per_sample
        res["i_mpjpe_mm"] = i_mpjpe(j, gt_joints).per_sample
    return res


def _cmd_refine(args: argparse.Namespace) -> int:
    d = read_refine_input(args.input)
    cfg = config_from_args(args)
    hands = _hands(args.model)
    t = lambda k: torch.as_tensor(d[k], dtype=torch.float64)  # noqa: E731
    params = {k: t(k) for k in ("beta", "phi", "theta", "tau")}
    if args.method == "mlp":
        opt_only = [flag for flag, on in (("--no-factorize", args.no_factorize), ("--init mean", args.init == "mean"),
                                          ("--terms", bool(args.terms)), ("--collision grid", args.collision == "grid")) if on]
        if opt_only:
            raise InputError(f"{', '.join(opt_only)} apply to --method opt only (the MLP refiner is factorized by design)")
        res = _run_mlp(args, params, t("j3d"), t("j2d"))
    else:
        res = refine_opt(hands, params, t("j3d"), t("j2d"), t("cam"), cfg, batch_size=args.batch)
    has_gt = all(k in d for k in GT_KEYS)
    gt = to_two_hand(t("gt_j3d"), "mano") if has_gt else None
    before = evaluate_params(hands, params, gt)
    after = evaluate_params(hands, res.params, gt)
    out = dict(d)
    out.update({f"refined_{k}": v.numpy() for k, v in res.params.items()})
    out.update({f"{k}_before": v for k, v in before.items()})
    out.update({f"{k}_after": v for k, v in after.items()})
    out.update(e3d_before=res.e3d_before.numpy(), e3d_after=res.e3d_after.numpy())
    out.update({f"accepted_{k}": v.numpy() for k, v in res.accepted.items()})
    with atomic_write(args.output) as fh:
        np.savez_compressed(fh, **out)
    summary = {
        "input": str(args.input), "output": str(args.output), "samples": int(len(res.e3d_before)),
        "seconds": round(res.seconds, 2), "samples_per_s": round(len(res.e3d_before) / res.seconds, 2),
        "method": args.method,
        "config": {"factors": cfg.factors, "verify": cfg.verify, "factorize": cfg.factorize, "collision": cfg.collision, "init": cfg.init}
        if args.method == "opt" else {"factors": cfg.factors, "verify": cfg.verify, "collision": args.verify_collision, "refiner": str(args.refiner)},
        "before": {k: float(np.nanmean(v)) for k, v in before.items()},
        "after": {k: float(np.nanmean(v)) for k, v in after.items()},
        "accepted": {k: int(v.sum()) for k, v in res.accepted.items()},
    }
    print(json.dumps(summary, indent=2))
    return 0


def _run_mlp(args: argparse.Namespace, params: dict, j3d: torch.Tensor, j2d: torch.Tensor, refiner=None):
    """The MLP refiner (float32 model) on ``params``; returns a :class:`RefineResult` in float64."""

    hands32 = TwoHands(args.model, dtype=torch.float32)
    refiner = refiner or load_refiner(args.refiner, hands32)
    cfg = MLPRefineConfig(factors=config_from_args(args).factors, verify=not args.no_verify, collision=args.verify_collision)
    res = refine_mlp(hands32, params, j3d, j2d, refiner, config=cfg, batch_size=args.mlp_batch, progress=False)
    res.params = {k: v.double() for k, v in res.params.items()}
    return res


def _run(hands, data, idx, cfg, batch):
    """Refine the samples ``idx`` of a synthetic set; returns (params, seconds)."""
    p = {k: v[idx] for k, v in data.pred.items()}
    res = refine_opt(hands, p, data.j3d[idx], data.j2d[idx], data.cam[idx], cfg, batch_size=batch, progress=False)
    return res, p


def _row(name: str, before: dict, after: Optional[dict], mask: np.ndarray, seconds: Optional[float], n: int) -> dict:
    m = after if after is not None else before
    row = {"method": name, "n": int(mask.sum())}
    for k in ("mpjpe_mm", "i_mpjpe_mm", "ave_p_mm", "max_p_mm"):
        row[k] = float(np.mean(m[k][mask]))
        row[f"{k}_before"] = float(np.mean(before[k][mask]))
    row["samples_per_s"] = None if seconds is None else n / seconds
    return row


def _print_table(title: str, rows: list[dict]) -> None:
    print(f"\n{title}")
    print("| Method | n | MPJPE | I-MPJPE | AVE-P / MAX-P (mm) | samples/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        sp = "-" if r["samples_per_s"] is None else f"{r['samples_per_s']:.2f}"
        print(f"| {r['method']} | {r['n']} | {r['mpjpe_mm']:.2f} | {r['i_mpjpe_mm']:.2f} | {r['ave_p_mm']:.3f} / {r['max_p_mm']:.2f} | {sp} |")


def _cmd_bench_refine(args: argparse.Namespace) -> int:
    hands = _hands(args.model)
    base_cfg = config_from_args(args)
    tables = set(_factor_list(args.tables) or ())
    t0 = time.perf_counter()

    data = load_npz(args.data) if args.data and Path(args.data).is_file() else None
    if data is not None and (len(data) != args.n or data.meta.get("seed") != args.seed or data.meta.get("sigma_mm") != args.sigma):
        raise InputError(f"{args.data} holds {len(data)} pairs (seed {data.meta.get('seed')}, sigma {data.meta.get('sigma_mm')}), "
                         f"not --n {args.n} --seed {args.seed} --sigma {args.sigma}")
    if data is None:
        data = make_synthetic(args.n, seed=args.seed, sigma_mm=args.sigma, hands=hands)
        if args.data:
            save_npz(args.data, data)
    print(f"{args.n} synthetic pairs ready in {time.perf_counter() - t0:.1f} s (seed {args.seed}, sigma {args.sigma} mm)")
    gt = to_two_hand(data.gt_j3d, "mano")
    close = closely_interacting_mask(gt.numpy())
    close_idx = torch.as_tensor(np.flatnonzero(close))
    report: dict = {"n": args.n, "n_close": int(close.sum()), "seed": args.seed, "sigma_mm": args.sigma, "tables": {}}

    def run_rows(idx, variants, mask_all=None):
        """Run each (name, cfg) on samples ``idx``; return rows on the closely interacting ones."""
        rows = []
        sub_gt = gt[idx]
        before = evaluate_params(hands, {k: v[idx] for k, v in data.pred.items()}, sub_gt)
        rows.append(_row("Baseline (simulated stage I)", before, None, np.ones(len(idx), bool), None, len(idx)))
        for name, cfg in variants:
            res, _ = _run(hands, data, idx, cfg, args.batch)
            after = evaluate_params(hands, res.params, sub_gt)
            row = _row(name, before, after, np.ones(len(idx), bool), res.seconds, len(idx))
            worse = ((res.e_col_after > res.e_col_before + 1e-12) | (res.e3d_after > res.e3d_before + 1e-12)).sum()
            row["samples_worse_on_a_criterion"] = int(worse)
            rows.append(row)
        return rows

    if "1" in tables:
        rows = run_rows(close_idx, [("IHMR-OPT (exact collision, ours)", base_cfg)])
        if str(args.refiner) != "none":
            refiner = load_refiner(args.refiner, hands)
            sub_gt = gt[close_idx]
            before = evaluate_params(hands, {k: v[close_idx] for k, v in data.pred.items()}, sub_gt)
            res = _run_mlp(args, {k: v[close_idx] for k, v in data.pred.items()}, data.j3d[close_idx], data.j2d[close_idx], refiner)
            after = evaluate_params(hands, res.params, sub_gt)
            mrow = _row(f"IHMR-MLP ({args.verify_collision} verification, B = {args.mlp_batch})", before, after,
                        np.ones(len(close_idx), bool), res.seconds, len(close_idx))
            mrow["samples_worse_on_a_criterion"] = int(((res.e_col_after > res.e_col_before) | (res.e3d_after > res.e3d_before)).sum())
            mrow["samples_worse_exact_collision"] = int((after["ave_p_mm"] > before["ave_p_mm"] + 1e-9).sum())
            mrow["accepted"] = {k: int(v.sum()) for k, v in res.accepted.items()}
            rows.insert(1, mrow)
        if args.collision == "exact":
            small = close_idx[: min(args.n_ablation, 8)]  # the paper's grid is slow: a few samples
            grid_rows = run_rows(small, [("IHMR-OPT (grid collision, paper)", replace(base_cfg, collision="grid"))])
            rows += [dict(r, method=r["method"] + f" [first {len(small)}]") for r in grid_rows]
        _print_table(f"Table 1 (synthetic Inter-Close, n = {len(close_idx)}, sigma = {args.sigma} mm)", rows)
        b = rows[0]
        for o in rows[1:3]:
            print(f"{o['method']}: AVE-P reduction {100 * (1 - o['ave_p_mm'] / b['ave_p_mm']):.1f} %, "
                  f"I-MPJPE improvement {100 * (1 - o['i_mpjpe_mm'] / b['i_mpjpe_mm']):.1f} %, "
                  f"samples made worse on a verification criterion: {o['samples_worse_on_a_criterion']}"
                  + (f" (exact AVE-P higher than before: {o['samples_worse_exact_collision']})" if "samples_worse_exact_collision" in o else ""))
        report["tables"]["1"] = rows
    small = close_idx[: args.n_ablation]
    if "3" in tables:
        rows = run_rows(small, [("OPT from stage-I predictions", base_cfg), ("OPT from the mean shape and pose", replace(base_cfg, init="mean"))])
        _print_table(f"Table 3 (initialisation, n = {len(small)})", rows)
        report["tables"]["3"] = rows
    if "4" in tables:
        variants = [(f"only {f}", replace(base_cfg, factors=(f,))) for f in ("tau", "phi", "theta", "beta")]
        variants += [
            ("tau, phi", replace(base_cfg, factors=("tau", "phi"))),
            ("tau, phi, theta, beta (default)", base_cfg),
            ("beta, theta, phi, tau (reversed)", replace(base_cfg, factors=("beta", "theta", "phi", "tau"))),
            ("no factorization (all at once)", replace(base_cfg, factorize=False)),
            ("no verification", replace(base_cfg, verify=False)),
        ]
        rows = run_rows(small, variants)
        _print_table(f"Table 4 (factors, order, factorization, verification; n = {len(small)})", rows)
        report["tables"]["4"] = rows
    if "A4" in tables:
        rows = []
        for sigma in (0.0, 10.0, 20.0, 40.0):
            d2 = make_synthetic(args.n_ablation, seed=args.seed + 1, sigma_mm=sigma, hands=hands, progress=False)
            idx = torch.arange(args.n_ablation)
            g2 = to_two_hand(d2.gt_j3d, "mano")
            before = evaluate_params(hands, d2.pred, g2)
            res, _ = _run(hands, d2, idx, base_cfg, args.batch)
            after = evaluate_params(hands, res.params, g2)
            rows.append(_row(f"OPT, joint-head sigma {sigma:.0f} mm", before, after, np.ones(len(idx), bool), res.seconds, len(idx)))
        print(f"\nTable A.4 (joint-head quality, n = {args.n_ablation} per row; *_before = simulated baseline)")
        print("| sigma | MPJPE before -> after | I-MPJPE before -> after | AVE-P before -> after | samples/s |")
        print("|---|---|---|---|---|")
        for r in rows:
            print(f"| {r['method']} | {r['mpjpe_mm_before']:.2f} -> {r['mpjpe_mm']:.2f} | {r['i_mpjpe_mm_before']:.2f} -> {r['i_mpjpe_mm']:.2f} "
                  f"| {r['ave_p_mm_before']:.3f} -> {r['ave_p_mm']:.3f} | {r['samples_per_s']:.2f} |")
        report["tables"]["A4"] = rows
    if args.json:
        with atomic_write(args.json, "w") as fh:
            json.dump(report, fh, indent=2)
        print(f"\nwrote {args.json}")
    return 0
