"""``ihmr synth``: rendered synthetic interacting-hands training data in the InterHand2.6M format."""

from __future__ import annotations

import argparse
import json
import sys

from ihmr.data.synth import SynthConfig, generate

__all__ = ["add_synth_parser"]


def _cmd_synth(args: argparse.Namespace) -> int:
    manifest = generate(SynthConfig(
        out=args.out, n=args.n, seed=args.seed, size=args.size, workers=args.workers, split=args.split,
        resume=args.resume, model=args.model, quality=args.quality, progress=not args.quiet,
    ))
    print(json.dumps(manifest, indent=2))
    if manifest["interrupted"]:
        print(f"ihmr synth: interrupted: {manifest['rendered']} rendered, {len(manifest['failed'])} failed, "
              f"{manifest['not_run']} not run; --resume continues", file=sys.stderr)
        return 130
    return 1 if manifest["failed"] else 0


def add_synth_parser(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="render synthetic interacting hands as training data in the InterHand2.6M format",
        description="Exit status: 0 all written, 1 some sample failed (one line each, listed in the manifest's "
                    "'failed'), 2 bad usage (nothing run), 130 interrupted (--resume continues). Render N pairs of interacting hands (poses in contact, random cameras, skin shading, procedural "
                    "backgrounds) and write images/<split>/... and annotations/<split>/InterHand2.6M_<split>_{data,camera,"
                    "joint_3d,MANO_NeuralAnnot}.json plus ihmr_params.json. Deterministic for a seed, whatever --workers.",
    )
    p.add_argument("--out", required=True, help="output folder (the dataset root)")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--size", type=int, default=256, help="image side in pixels (square; default 256)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, each with its own renderer (default 1)")
    p.add_argument("--split", default="train", help="split name used in the paths and file names (default train)")
    p.add_argument("--resume", action="store_true", help="keep samples already written by a run with the same settings")
    p.add_argument("--model", default="open", help="'open' (packaged) or a folder with the MANO pickles")
    p.add_argument("--quality", type=int, default=92, help="JPEG quality (default 92)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)
