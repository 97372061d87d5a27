"""``ihmr eval``: stage I and the refiners on InterHand2.6M-format data, the Table-1 shaped report.

Runs as one process or under ``torchrun`` (``torchrun --nproc-per-node 2 -m ihmr eval ...``): each
process evaluates a contiguous shard of the samples; rank 0 gathers them and writes the files.
"""

from __future__ import annotations

import argparse
import sys

import torch

from ihmr.distributed import init_from_env, shutdown
from ihmr.experiments.evaluation import EvalConfig, evaluate

__all__ = ["add_eval_parser"]

#: Failed samples listed in the summary on stderr (table.json lists all).
_SHOWN = 20


def _list(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def add_eval_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate stage I (+ OPT / MLP refinement) on InterHand2.6M-format data: Table-1 shaped report",
                       description="Exit status: 0 every sample evaluated, 1 some sample failed or was skipped (one line each, "
                                   "listed in table.json's info.failed; the table is over the others), 2 bad usage (nothing run), "
                                   "130 interrupted (the table so far is printed, nothing written).")
    p.add_argument("--data", required=True, help="data folder: annotations/<split>/ + images/<split>/ (ihmr synth, InterHand2.6M), or the annotation folder")
    p.add_argument("--split", default="test", help="split (default: test)")
    p.add_argument("--checkpoint", required=True, help="stage-I checkpoint (ihmr train stage1), or 'default': the shipped network")
    p.add_argument("--refine", default="none,opt,mlp", help="comma-separated refiners among none, opt, mlp; the stage-I baseline row is always written (default: none,opt,mlp)")
    p.add_argument("--subset", default="all,inter,inter_close", help="comma-separated subsets: all, inter, inter_close (default: all three)")
    p.add_argument("--batch", type=int, default=16, help="images per stage-I forward pass (default: 16)")
    p.add_argument("--refine-batch", type=int, default=64, help="samples refined together (default: 64)")
    p.add_argument("--iterations", type=int, default=None, help="OPT Adam steps per factor (default: RefineConfig's)")
    p.add_argument("--no-contact", action="store_true", help="OPT without the contact term and criterion (the paper; ablation)")
    p.add_argument("--no-starred", action="store_true",
                   help="skip the starred rows (Baseline* = the joint head's 3D joints through IK as stage I, then MLP* / OPT* from it)")
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
        batch=args.batch, limit=args.limit, out=args.out, refiner=args.refiner, iterations=args.iterations, contact=not args.no_contact,
        refine_batch=args.refine_batch, progress=not args.no_progress, starred=not args.no_starred,
    ).check()
    init_from_env()
    try:
        report = evaluate(cfg)
    finally:
        shutdown()
    if report is None:  # not rank 0: its failures are in rank 0's report
        return 0
    if report.table is not None:
        print(report.table.to_markdown())
    info = report.info
    print(f"{info['samples']} of {info['selected']} samples evaluated, {len(report.failed)} failed, "
          f"{info['processes']} process(es); speed: stage I images/s, refiners samples/s.", file=sys.stderr)
    for f in report.failed[:_SHOWN]:
        print(f"  failed: {f['file_name'] or f['image_id']}: {f['error']}", file=sys.stderr)
    if len(report.failed) > _SHOWN:
        print(f"  ... and {len(report.failed) - _SHOWN} more (all in table.json's info.failed)", file=sys.stderr)
    if report.interrupted:
        print("ihmr eval: interrupted: the table above is over the samples evaluated so far; nothing written", file=sys.stderr)
        return 130
    if report.paths:
        print(f"Wrote {report.paths['markdown']}, {report.paths['json']}, {report.paths['per_sample']}", file=sys.stderr)
    return 1 if report.failed else 0
