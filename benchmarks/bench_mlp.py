"""Speed of the MLP refiner (IHMR-MLP) on this machine: samples/s at several batch sizes.

Runs the shipped refiners on the synthetic closely interacting benchmark pairs (seed 0, the pairs
of ``ihmr bench refine``), repeated to fill the batches, float32 hand model, proxy verification;
and, for comparison, with exact verification and the OPT refiner on a few samples.

    .venv/bin/python benchmarks/bench_mlp.py [--n 256] [--data pairs.npz] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import ihmr
from ihmr.data.synthetic import load_npz, make_synthetic, save_npz
from ihmr.joint_order import to_two_hand
from ihmr.metrics import closely_interacting_mask
from ihmr.refine import RefineConfig, refine_opt
from ihmr.refine.mlp import MLPRefineConfig, load_refiner, refine_mlp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="benchmark pairs to generate (seed 0)")
    ap.add_argument("--data", default=None, help="read/write the generated pairs here")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    h64 = ihmr.TwoHands(dtype=torch.float64)
    if args.data and Path(args.data).is_file():
        data = load_npz(args.data)
    else:
        data = make_synthetic(args.n, seed=0, hands=h64)
        if args.data:
            save_npz(args.data, data)
    close = np.flatnonzero(closely_interacting_mask(to_two_hand(data.gt_j3d, "mano").numpy()))
    h32 = ihmr.TwoHands(dtype=torch.float32)
    ref = load_refiner("default", h32)
    rows = []
    for B in (64, 256, 512):
        idx = torch.as_tensor(np.resize(close, B))
        p = {k: v[idx] for k, v in data.pred.items()}
        run = lambda: refine_mlp(h32, p, data.j3d[idx], data.j2d[idx], ref, batch_size=B, progress=False)  # noqa: E731
        run()  # warm-up
        best = min(run().seconds for _ in range(args.repeat))
        rows.append((f"IHMR-MLP, proxy verification, B = {B}", B, best))
    idx = torch.as_tensor(np.resize(close, 32))
    p = {k: v[idx] for k, v in data.pred.items()}
    res = refine_mlp(h32, p, data.j3d[idx], data.j2d[idx], ref, config=MLPRefineConfig(collision="exact"), batch_size=32, progress=False)
    rows.append(("IHMR-MLP, exact verification, B = 32", 32, res.seconds))
    t = time.perf_counter()
    refine_opt(h64, {k: v[idx] for k, v in data.pred.items()}, data.j3d[idx], data.j2d[idx], data.cam[idx], RefineConfig(), progress=False)
    rows.append(("IHMR-OPT (exact collision), B = 32", 32, time.perf_counter() - t))
    print(f"\nMLP refiner speed ({torch.get_num_threads()} threads; {len(close)} closely interacting pairs repeated)\n")
    print("| refiner | samples | seconds | samples/s |")
    print("|---|---|---|---|")
    for name, n, s in rows:
        print(f"| {name} | {n} | {s:.3f} | {n / s:.1f} |")


if __name__ == "__main__":
    main()
