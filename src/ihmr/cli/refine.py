"""``ihmr refine`` (refine predictions stored in an ``.npz``) and ``ihmr bench refine`` (the
synthetic interacting-hands benchmark with the paper's Table 1, 3, 4 and A.4 shapes): argument
parsing only; the work is in :mod:`ihmr.experiments.refine_runs` and
:mod:`ihmr.experiments.refine_tables`."""

from __future__ import annotations

import argparse
import json
from typing import Optional

from ihmr.data.synthetic import MIXES
from ihmr.errors import InputError
from ihmr.experiments.camera_runs import refine_file
from ihmr.experiments.refine_tables import BenchRefineConfig, run_refine_tables, write_report
from ihmr.refine import FACTORS, RefineConfig

__all__ = ["add_refine_parser", "add_bench_parser", "config_from_args"]


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
              collision=args.collision, init=args.init, iterations=args.iterations, contact=not args.no_contact,
              snap=not args.no_snap)
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
    p.add_argument("--no-contact", action="store_true",
                   help="no contact term and criterion: only push colliding hands apart, as in the paper (ablation)")
    p.add_argument("--no-snap", action="store_true",
                   help="no contact snap: leave the gaps the stages leave where contact is evidenced (ablation)")
    p.add_argument("--init", choices=["pred", "mean"], default="pred", help="start from the predictions or the mean shape/pose")
    p.add_argument("--terms", default=None, help="objective terms, comma-separated subset of col,2d,3d,tau,reg,finger")
    p.add_argument("--iterations", type=int, default=60, help="Adam steps per stage")
    p.add_argument("--batch", type=int, default=64, help="samples refined together")
    p.add_argument("--model", default="open", help="'open' or a folder with the MANO pickles")


def add_refine_parser(sub) -> None:
    p = sub.add_parser("refine", help="refine two-hand predictions (factorized refinement): the pair .npz or camera-frame hands (.json / .npz)")
    p.add_argument("input", help="pair .npz (beta, phi, theta, tau, cam, j3d, j2d) or camera-frame hands per side (.json, or .npz with right_* / left_* keys); see docs")
    p.add_argument("-o", "--output", required=True, help="output in the input's convention (pair .npz: input arrays + refined_*; camera-frame: the refined hands), with per-sample metrics")
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
    p.add_argument("--mix", choices=list(MIXES), default="two-sided",
                   help="how the simulated stage I errs: into and away from the other hand (two-sided), or only into it (one-sided, the paper)")
    p.add_argument("--json", default=None, help="also write all figures to this JSON file")
    p.add_argument("--tables", default="1,3,4,A4", help="which tables to run")
    p.add_argument("--data", default=None, help="cache of the generated pairs: read when it exists (for the same --n/--seed/--sigma), else written")
    _add_switches(p)
    p.set_defaults(func=_cmd_bench_refine)


def _cmd_refine(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    if args.method == "mlp":
        opt_only = [flag for flag, on in (("--no-factorize", args.no_factorize), ("--init mean", args.init == "mean"),
                                          ("--terms", bool(args.terms)), ("--collision grid", args.collision == "grid")) if on]
        if opt_only:
            raise InputError(f"{', '.join(opt_only)} apply to --method opt only (the MLP refiner is factorized by design)")
    summary = refine_file(args.input, args.output, cfg, method=args.method, model=args.model, batch=args.batch,
                         refiner=args.refiner, mlp_batch=args.mlp_batch, verify_collision=args.verify_collision)
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_bench_refine(args: argparse.Namespace) -> int:
    cfg = BenchRefineConfig(
        n=args.n, n_ablation=args.n_ablation, seed=args.seed, sigma_mm=args.sigma, tables=_factor_list(args.tables) or (),
        data=args.data, refine=config_from_args(args), batch=args.batch, model=args.model, refiner=args.refiner,
        mlp_batch=args.mlp_batch, verify_collision=args.verify_collision, mix=args.mix,
    )
    report = run_refine_tables(cfg, echo=print)
    if args.json:
        write_report(report, args.json)
        print(f"\nwrote {args.json}")
    return 0
