"""Speed of the MLP refiner (IHMR-MLP) on this machine: samples/s at several batch sizes.

Runs the shipped refiners on the synthetic closely interacting benchmark pairs (seed 0, the pairs
of ``ihmr bench refine``), repeated to fill the batches, float32 hand model, proxy verification:
the previous code path (``MLPRefineConfig(reference=True)``: every candidate skinned in full, the
proxy's dense S x M test) and the current one (only the proxy's vertices posed, group search),
measured alternately in the same run (best of ``--repeat``), with their ratio and whether both
accepted the same samples; and, for comparison, exact verification and the OPT refiner on a few
samples (``--no-slow`` skips those).

    .venv/bin/python benchmarks/bench_mlp.py [--n 256] [--data pairs.npz] [--repeat 5] [--threads N] [--no-slow]
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
from ihmr.refine.mlp import load_refiner
from ihmr.refine.mlp_refine import MLPRefineConfig, refine_mlp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=256, help="benchmark pairs to generate (seed 0)")
    ap.add_argument("--data", default=None, help="read/write the generated pairs here")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-slow", action="store_true", help="skip the exact-verification and OPT rows")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
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
    mlp_rows = []
    for B in (64, 256, 512):
        idx = torch.as_tensor(np.resize(close, B))
        p = {k: v[idx] for k, v in data.pred.items()}
        run = lambda reference: refine_mlp(h32, p, data.j3d[idx], data.j2d[idx], ref, batch_size=B,  # noqa: E731
                                           config=MLPRefineConfig(reference=reference), progress=False)
        old, new = run(True), run(False)  # warm-up, and the results to compare
        same = all(torch.equal(old.accepted[f], new.accepted[f]) for f in old.accepted)
        dp = max(float((old.params[k] - new.params[k]).abs().max()) for k in old.params)
        t_old, t_new = [], []
        for _ in range(args.repeat):  # alternately: a load change on a shared machine hits both
            t_old.append(run(True).seconds)
            t_new.append(run(False).seconds)
        mlp_rows.append((B, min(t_old), min(t_new), same, dp))
    print(f"\nMLP refiner speed ({torch.get_num_threads()} threads; {len(close)} closely interacting pairs repeated; "
          f"best of {args.repeat}, previous and current path alternately)\n")
    print("| IHMR-MLP, proxy verification | samples | previous s | current s | previous samples/s | current samples/s | ratio | same accepted | max param diff |")
    print("|---|---|---|---|---|---|---|---|---|")
    for B, a, b, same, dp in mlp_rows:
        print(f"| B = {B} | {B} | {a:.3f} | {b:.3f} | {B / a:.0f} | {B / b:.0f} | {a / b:.2f} | {same} | {dp:.1e} |")
    if args.no_slow:
        return
    rows = []
    idx = torch.as_tensor(np.resize(close, 32))
    p = {k: v[idx] for k, v in data.pred.items()}
    res = refine_mlp(h32, p, data.j3d[idx], data.j2d[idx], ref, config=MLPRefineConfig(collision="exact"), batch_size=32, progress=False)
    rows.append(("IHMR-MLP, exact verification, B = 32", 32, res.seconds))
    t = time.perf_counter()
    refine_opt(h64, {k: v[idx] for k, v in data.pred.items()}, data.j3d[idx], data.j2d[idx], data.cam[idx], RefineConfig(), progress=False)
    rows.append(("IHMR-OPT (exact collision), B = 32", 32, time.perf_counter() - t))
    print("\n| refiner | samples | seconds | samples/s |")
    print("|---|---|---|---|")
    for name, n, s in rows:
        print(f"| {name} | {n} | {s:.3f} | {n / s:.1f} |")


if __name__ == "__main__":
    main()
