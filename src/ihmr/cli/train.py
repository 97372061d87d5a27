"""``ihmr train mlp``: train the MLP refiners on synthetic closely interacting pairs.

Runs as one process or under ``torchrun`` (``torchrun --nproc-per-node 2 -m ihmr train mlp ...``,
gloo on CPU, nccl on GPU); only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["add_train_parser", "training_pairs"]


def add_train_parser(sub) -> None:
    tr = sub.add_parser("train", help="training (the MLP refiners)")
    tsub = tr.add_subparsers(dest="train_command", required=True)
    p = tsub.add_parser("mlp", help="train the per-factor MLP refiners on synthetic closely interacting pairs")
    p.add_argument("--out", default="mlp_refiner.pt", help="output checkpoint (default: mlp_refiner.pt)")
    p.add_argument("--data", default=None, help="training pairs .npz (ihmr synthetic format, with gt_*); generated when absent")
    p.add_argument("--n", type=int, default=1024, help="pairs to generate when --data is not given")
    p.add_argument("--data-seed", type=int, default=11, help="seed of the generated pairs (the benchmark uses 0)")
    p.add_argument("--save-data", default=None, help="also save the generated pairs to this .npz")
    p.add_argument("--epochs", type=int, default=2, help="epochs per factor, each with fresh stage-I noise (paper: 2)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--sigma", type=float, default=10.0, help="joint-head noise of the simulated inputs (mm)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--labels", choices=["gt", "opt"], default="gt", help="pose/shape labels: ground truth or OPT results (pseudo labels)")
    p.add_argument("--log", default=None, help="CSV log of every step")
    p.add_argument("--model", default="open", help="'open' or a folder with the MANO pickles")
    p.set_defaults(func=_cmd_train_mlp)


def training_pairs(hands64, path, n: int, seed: int, progress: bool = True):
    """Closely interacting training pairs: from ``path`` or generated (close contact kinds only)."""
    from ihmr.data.synthetic import load_npz, make_synthetic
    from ihmr.joint_order import to_two_hand
    from ihmr.metrics import closely_interacting_mask

    if path is not None:
        data = load_npz(path)
    else:
        data = make_synthetic(n, seed=seed, hands=hands64, progress=progress,
                              contacts=["palm_to_palm", "clasped", "interlaced", "holding_fingers"])
    close = closely_interacting_mask(to_two_hand(data.gt_j3d, "mano").numpy())
    return data, data.subset(torch.as_tensor(np.flatnonzero(close)))


def _cmd_train_mlp(args: argparse.Namespace) -> int:
    import ihmr
    from ihmr.distributed import init_from_env, shutdown
    from ihmr.refine.mlp_train import TrainMLPConfig, train_mlp_refiner

    rank, world = init_from_env()
    try:
        t0 = time.perf_counter()
        hands64 = ihmr.TwoHands(args.model, dtype=torch.float64)
        full, data = training_pairs(hands64, args.data, args.n, args.data_seed, progress=rank == 0)
        if args.save_data and rank == 0 and args.data is None:
            from ihmr.data.synthetic import save_npz

            save_npz(args.save_data, full)
        labels = None
        if args.labels == "opt":
            from ihmr.refine import refine_opt

            res = refine_opt(hands64, data.pred, data.j3d, data.j2d, data.cam, progress=rank == 0)
            labels = res.params
        if rank == 0:
            print(f"{len(data)} closely interacting training pairs of {len(full)} ({time.perf_counter() - t0:.1f} s); {world} process(es)")
        cfg = TrainMLPConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, sigma_mm=args.sigma, seed=args.seed)
        rows: list[dict] = []
        hands = ihmr.TwoHands(args.model, dtype=torch.float32)
        refiner, history = train_mlp_refiner(hands, data, cfg, labels=labels, progress=rank == 0, log=rows.append)
        if rank == 0:
            refiner.config.info["labels"] = args.labels
            refiner.config.info["train_seconds"] = round(time.perf_counter() - t0, 1)
            refiner.save(args.out)
            if args.log:
                from ihmr.viz.export import atomic_write

                keys = sorted({k for r in rows for k in r}, key=lambda k: (k not in ("factor", "epoch", "step"), k))
                with atomic_write(args.log, "w") as fh:
                    w = csv.DictWriter(fh, fieldnames=keys)
                    w.writeheader()
                    w.writerows(rows)
            print(json.dumps({"out": str(args.out), "history": history[-len(cfg.factors):]}, indent=1, default=float))
    finally:
        shutdown()
    return 0
