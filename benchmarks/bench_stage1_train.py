"""Training throughput of ``ihmr train stage1`` on the CPU (images per second, whole steps).

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_stage1_train.py [--data DIR] [--sizes 64 224]
     [--batch 8] [--threads 1 2] [--steps 12] [--workers 0]

Each row is a real ``train_stage1`` run (InterHand2.6M-format loader, crops, augmentation, forward
with the hand model, the release's losses, backward, fused Adam) of ``--steps`` optimiser steps, one
process; the rate is the median of ``batch / seconds`` between consecutive steps after two warm-up
steps (checkpointing at epoch ends excluded by using one long epoch). Without ``--data`` a small
synthetic set (``ihmr synth``, 48 images of 128 x 128) is rendered to a temporary folder first.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    from ihmr.stage1.train import TrainStage1Config, train_stage1

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=None, help="InterHand2.6M-format folder (default: render 48 synthetic images)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--workers", type=int, default=0)
    ap.add_argument("--backbone", default="resnet18")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ihmr-bench-train-"))
    try:
        data = args.data
        if data is None:
            from ihmr.data.synth import SynthConfig, generate

            data = tmp / "data"
            n = max(48, args.batch * (args.steps + 1))
            generate(SynthConfig(out=data, n=n, seed=0, size=128, progress=False))
        print(f"torch={torch.__version__} backbone={args.backbone} batch={args.batch} workers={args.workers} "
              f"steps={args.steps}; joint head: default (32^3 heatmaps, 2 x 256-channel deconvolutions)")
        print(f"| {'input':>7} | {'threads':>7} | {'s / step':>8} | {'images / s':>10} |")
        print(f"|{'-' * 9}|{'-' * 9}|{'-' * 10}|{'-' * 12}|")
        for size in args.sizes:
            for th in args.threads:
                torch.set_num_threads(th)
                out = tmp / f"run{size}_{th}"
                cfg = TrainStage1Config(data=str(data), out=str(out), backbone=args.backbone, input_size=size, batch=args.batch,
                                        epochs=1, max_steps=args.steps, workers=args.workers, val_fraction=0.0, progress=False)
                train_stage1(cfg)
                with open(out / "train_log.csv", newline="") as fh:
                    secs = np.array([float(r["seconds"]) for r in csv.DictReader(fh)])[2:]
                med = float(np.median(secs))
                print(f"| {size:>4} px | {th:>7} | {med:>8.3f} | {args.batch / med:>10.1f} |", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
