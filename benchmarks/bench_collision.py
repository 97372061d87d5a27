"""Collision term and penetration metric: accuracy against libigl and time per pair on the CPU.

Run: .venv/bin/python benchmarks/bench_collision.py [--threads N] [--grid 32]

Hand pairs of the open model, palm to palm: (a) separated, (b) touching (max depth about 2 mm),
(c) deeply interpenetrating (max depth about 15 mm). Prints two tables.
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import torch

import ihmr
from _timing import timeit
from ihmr.collision import collision_loss
from ihmr.metrics import penetration_depths, penetration_stats


def pair_at(hands, gap: float) -> torch.Tensor:
    """Palm-to-palm pair, the left hand ``gap`` metres below the right (negative = overlap)."""
    phi = torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, math.pi]]], dtype=torch.float64)
    tau = torch.tensor([[0.0, -gap, 0.0]], dtype=torch.float64)
    z = torch.zeros(1, 2, 10, dtype=torch.float64)
    return hands(z, phi, torch.zeros(1, 2, 45, dtype=torch.float64), tau).vertices


def find_gap(hands, target_mm: float) -> float:
    """Bisection on the gap for a given exact max depth."""
    lo, hi = -0.06, 0.06  # deep overlap .. apart
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        d = penetration_depths(pair_at(hands, mid), hands.faces).max().item() * 1000
        lo, hi = (mid, hi) if d > target_mm else (lo, mid)
    return 0.5 * (lo + hi)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--grid", type=int, default=32)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hands = ihmr.TwoHands(dtype=torch.float64)
    faces = hands.faces
    cases = {"separated": pair_at(hands, 0.08), "touching": pair_at(hands, find_gap(hands, 2.0)),
             "deep": pair_at(hands, find_gap(hands, 15.0))}

    # 1. Accuracy: our exact depths vs libigl's signed distance, for vertices inside the other hand.
    import igl

    print(f"V={hands.num_vertices} F={faces.shape[1]} threads={args.threads} grid={args.grid}")
    print("\n| case | inside vertices | max depth (mm) | max abs diff vs libigl signed_distance (mm) |")
    print("|---|---|---|---|")
    for name, v in cases.items():
        d = penetration_depths(v, faces)[0].numpy()
        worst, n_in = 0.0, 0
        for h in range(2):
            other, f = v[0, 1 - h].numpy(), faces[1 - h].numpy().astype(np.int64)
            s = igl.signed_distance(v[0, h].numpy(), other, f)[0]
            inside = s < 0
            n_in += int(inside.sum())
            worst = max(worst, float(np.abs(np.where(inside, -s, 0.0) - d[h]).max()))
        print(f"| {name} | {n_in} | {d.max() * 1000:.2f} | {worst * 1000:.2e} |")

    # 2. Speed: loss + gradient per pair, and the metric per pair.
    print("\n| case | B | grid loss+grad (ms/pair) | exact loss+grad (ms/pair) | exact metric (ms/pair) |")
    print("|---|---|---|---|---|")
    for name, v in cases.items():
        for B in args.batches:
            vb = v.repeat(B, 1, 1, 1)
            reps = 3 if B == 1 else 1

            def run(mode):
                x = vb.clone().requires_grad_()
                collision_loss(x, faces, mode, args.grid).sum().backward()

            tg = timeit(lambda: run("grid"), reps) / B
            te = timeit(lambda: run("exact"), max(reps, 3)) / B
            tm = timeit(lambda: penetration_stats(vb, faces), max(reps, 3)) / B
            print(f"| {name} | {B} | {tg * 1e3:.2f} | {te * 1e3:.2f} | {tm * 1e3:.2f} |")


if __name__ == "__main__":
    main()
