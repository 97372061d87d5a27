"""``ihmr demo``: reconstruct the hands in photos and write overlay, views, meshes and JSON
(the batch is :func:`ihmr.pipeline.batch.run_batch`; under ``torchrun`` each process takes a share)."""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from pathlib import Path

from ihmr.distributed import init_from_env, shutdown
from ihmr.errors import InputError
from ihmr.io.files import ensure_writable_folder
from ihmr.pipeline import Reconstructor
from ihmr.pipeline.batch import BatchOptions, BatchReport, bundled_examples, collect_images, parse_box, run_batch

__all__ = ["add_demo_parser", "positive", "positive_focal"]


def positive(kind: type = float, what: str = "number"):
    """An argparse type: a finite ``kind`` (float or int) > 0; the error says ``must be a finite
    <what> > 0``."""
    def parse(text: str):
        try:
            v = kind(text)
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and v > 0):
            raise argparse.ArgumentTypeError(f"must be a finite {what} > 0, got {text!r}")
        return v
    return parse


#: ``--focal``: a finite number of pixels > 0.
positive_focal = positive(float, "number of pixels")


def add_demo_parser(sub) -> None:
    p = sub.add_parser("demo", help="reconstruct two interacting hands from photos (MediaPipe + IK + OPT refinement)",
                       description="One folder per image under --out. Exit status: 0 all done, 1 some image failed "
                                   "(one line each), 2 bad usage (nothing run), 130 interrupted. Under torchrun "
                                   "(torchrun --nproc-per-node N -m ihmr demo ...) each process takes a share.")
    p.add_argument("inputs", nargs="*", help="images, folders or glob patterns (default: the bundled examples)")
    p.add_argument("--out", default="out", help="output folder; one subfolder per image (default: out)")
    p.add_argument("--focal", type=positive_focal, default=None, help="focal length in pixels (default: from a sidecar JSON, else 1.2 x the longer side)")
    p.add_argument("--box", default=None, help="x,y,w,h region holding the hands (helps closely interacting hands)")
    p.add_argument("--refine", choices=["opt", "mlp", "none"], default="opt",
                   help="collision refinement: OPT (gradient optimisation, default), the learned MLP refiners, or none")
    p.add_argument("--refiner", default="default", help="MLP refiner checkpoint for --refine mlp (default: the shipped ones)")
    p.add_argument("--no-refine", action="store_true", help="same as --refine none")
    p.add_argument("--no-contact", action="store_true",
                   help="OPT only pushes colliding hands apart (the paper); default: it also closes gaps the landmarks evidence")
    p.add_argument("--checkpoint", default=None,
                   help="stage-I network checkpoint (ihmr train stage1) or 'default' (the shipped one): the network replaces MediaPipe + IK as stage I "
                        "(MediaPipe, the sidecar or --box only give the crop around both hands; the checkpoint's hand model replaces --model)")
    p.add_argument("--resume", action="store_true",
                   help="skip images whose folder holds a complete result of the same file (path and content) and options")
    p.add_argument("--model", default="open", help="'open' or a folder with the MANO pickles")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_demo)


def _resolved(path: str | None, keep: tuple[str, ...] = ()) -> str | None:
    return path if path is None or path in keep else str(Path(path).resolve())


def _print_summary(report: BatchReport, problems: list[str], out: Path) -> None:
    print("\n| image | status | hands | AVE-P/MAX-P mm before -> after | seconds |")
    print("|---|---|---|---|---|")
    for p in problems:
        print(f"| {p.split(': ')[0]} | FAILED: {p.split(': ', 1)[-1]} |  |  |  |")
    for r in report.items:
        status = r.status if r.folder == Path(r.image).stem else f"{r.status} (folder {r.folder})"
        hands = "" if r.hands is None else str(r.hands)
        secs = "" if r.seconds is None else f"{r.seconds:.2f}"
        print(f"| {Path(r.image).name} | {status} | {hands} | {r.pen or ('-' if r.hands else '')} | {secs} |")
    done = sum(r.status in ("ok", "one hand only", "no pair") for r in report.items)
    skipped = sum(r.status == "skipped (complete)" for r in report.items)
    left = sum(r.status == "not run (interrupted)" for r in report.items)
    print(f"\n{done} done, {skipped} skipped, {report.failed + len(problems)} failed"
          + (f", {left} not run (interrupted)" if report.interrupted else "") + f"; results in {out}/")


def _cmd_demo(args: argparse.Namespace) -> int:
    images, problems = collect_images(args.inputs) if args.inputs else (bundled_examples(), [])
    for msg in problems:
        print(f"ihmr demo: {msg}", file=sys.stderr)
    if not images:
        raise InputError("no images to process" + (f" ({len(problems)} input(s) unusable)" if problems else ""))
    box = parse_box(args.box) if args.box else None
    out = ensure_writable_folder(args.out)
    refine = "none" if args.no_refine else args.refine
    # Whole-run errors (a bad --model, --checkpoint or --refiner) surface here, once, before any image.
    rec = Reconstructor(args.model, refine=refine, refiner=args.refiner, checkpoint=args.checkpoint, contact=not args.no_contact)
    if threading.current_thread() is threading.main_thread():  # MediaPipe's start-up replaces the Ctrl-C handler
        signal.signal(signal.SIGINT, signal.default_int_handler)
    options = BatchOptions(
        focal=args.focal, box=None if box is None else tuple(box), refine=refine,
        refiner=_resolved(args.refiner, ("default",)) if refine == "mlp" else None,
        checkpoint=_resolved(args.checkpoint, ("default",)), model=rec.hands.model_name if args.checkpoint else _resolved(args.model, ("open",)),
        contact=not args.no_contact,
    )
    rank, _ = init_from_env("gloo")  # only Python objects are gathered: gloo on any machine
    try:
        report = run_batch(rec, images, out, options, resume=args.resume, hand_model=options.model,
                           progress=not args.no_progress)
    finally:
        shutdown()
    if rank == 0:
        _print_summary(report, problems, out)
    if report.interrupted:
        return 130
    return 1 if report.failed or problems else 0
