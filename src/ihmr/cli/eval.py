"""``ihmr eval``: stage I and the refiners on InterHand2.6M-format data, the Table-1 shaped report.

Runs as one process or under ``torchrun`` (``torchrun --nproc-per-node 2 -m ihmr eval ...``): each
process evaluates a contiguous shard of the samples; rank 0 gathers them and writes the files.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ihmr.distributed import init_from_env, is_main, shutdown
from ihmr.experiments.evaluation import EvalConfig, evaluate

__all__ = ["add_eval_parser"]


def _list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate stage I (+ OPT / MLP refinement) on InterHand2.6M-format data: Table-1 shaped report")
    p.add_argument("--data", required=True, help="data folder: annotations/<split>/ + images/<split>/ (ihmr synth, InterHand2.6M), or the annotation folder")
    p.add_argument("--split", default="test", help="split (default: test)")
    p.add_argument("--checkpoint", required=True, help="stage-I checkpoint (ihmr train stage1)")
    p.add_argument("--refine", default="none,opt,mlp", help="comma-separated refiners among none, opt, mlp; the stage-I baseline row is always written (default: none,opt,mlp)")
    p.add_argument("--subset", default="all,inter,inter_close", help="comma-separated subsets: all, inter, inter_close (default: all three)")
    p.add_argument("--batch", type=int, default=16, help="images per stage-I forward pass (default: 16)")
    p.add_argument("--refine-batch", type=int, default=64, help="samples refined together (default: 64)")
    p.add_argument("--iterations", type=int, default=None, help="OPT Adam steps per factor (default: RefineConfig's)")
    p.add_argument("--limit", type=int, default=None, help="only the first N samples of the split")
    p.add_argument("--out", default="eval", help="output folder: table.md, table.json, per_sample.npz (default: eval)")
    p.add_argument("--refiner", default="default", help="MLP refiner checkpoint for the mlp row (default: the shipped ones)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per process (default: torch's setting)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    cfg = EvalConfig(
        data=args.data, checkpoint=args.checkpoint, split=args.split, refine=_list(args.refine), subsets=_list(args.subset),
        batch=args.batch, limit=args.limit, out=args.out, refiner=args.refiner, iterations=args.iterations,
        refine_batch=args.refine_batch, progress=not args.no_progress,
    ).check()
    init_from_env()
    try:
        report = evaluate(cfg)
    finally:
        shutdown()
    if report is not None and is_main():
        print(report.table.to_markdown())
        print(f"{report.info['samples']} samples, {report.info['processes']} process(es); "
              f"speed: stage I images/s, refiners samples/s. Wrote {report.paths.get('markdown')}, "
              f"{report.paths.get('json')}, {report.paths.get('per_sample')}", file=sys.stderr)
    return 0
