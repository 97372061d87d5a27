"""Forward (and forward + backward) throughput of the two-hand layer on the CPU.

Run: .venv/bin/python benchmarks/bench_handmodel.py [--model open|MANO_DIR] [--threads N]
Prints a table: batch size, ms per call, pairs of hands per second.
"""

from __future__ import annotations

import argparse

import torch

import ihmr
from _timing import timeit


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="open")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64, 512])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hands = ihmr.TwoHands(args.model)
    g = torch.Generator().manual_seed(0)
    print(f"model={hands.model_name} V={hands.num_vertices} F={hands.faces.shape[1]} threads={args.threads} torch={torch.__version__}")
    print(f"| {'B':>5} | {'mode':>8} | {'ms / call':>10} | {'pairs / s':>10} |")
    print(f"|{'-' * 7}|{'-' * 10}|{'-' * 12}|{'-' * 12}|")
    for B in args.batches:
        beta = torch.randn(B, 2, 10, generator=g)
        phi = torch.randn(B, 2, 3, generator=g)
        theta = 0.3 * torch.randn(B, 2, 45, generator=g)
        tau = 0.1 * torch.randn(B, 3, generator=g)
        reps = max(3, min(200, 2000 // B))
        with torch.no_grad():
            t = timeit(lambda: hands(beta, phi, theta, tau), reps)
        print(f"| {B:>5} | {'forward':>8} | {t * 1e3:>10.2f} | {B / t:>10.0f} |")
        params = [x.clone().requires_grad_() for x in (beta, phi, theta, tau)]

        def fb():
            out = hands(*params)
            (out.vertices.square().sum() + out.joints.sum()).backward()

        t = timeit(fb, max(2, reps // 3))
        print(f"| {B:>5} | {'fwd+bwd':>8} | {t * 1e3:>10.2f} | {B / t:>10.0f} |")


if __name__ == "__main__":
    main()
