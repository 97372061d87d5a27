"""``ihmr example``: render and export the hand models (:func:`ihmr.viz.showcase.write_showcase`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ihmr.viz.showcase import write_showcase

__all__ = ["add_example_parser"]


def add_example_parser(sub) -> None:
    ex = sub.add_parser("example", help="render and export the hand models (mean pair, pose and shape sweeps)")
    ex.add_argument("--out", default="out", help="output folder (default: out)")
    ex.add_argument("--model", default="open", help="'open' (packaged) or a folder with MANO_RIGHT.pkl / MANO_LEFT.pkl")
    ex.add_argument("--size", type=int, default=480, help="tile size of the rendered images in pixels")
    ex.add_argument("--docs", default=None, help="also copy the two showcase PNGs to this folder (e.g. docs)")
    ex.set_defaults(func=_cmd_example)


def _cmd_example(args: argparse.Namespace) -> int:
    summary = write_showcase(args.out, model=args.model, size=args.size, docs=args.docs)
    print(f"wrote {', '.join(summary['files'])} to {Path(args.out)}/")
    return 0
