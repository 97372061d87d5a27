"""Forward throughput of the stage-I network on the CPU (eval mode, no gradients, 224 x 224 crops).

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_stage1.py [--threads N] [--backbones ...] [--batches ...]
Prints a table: backbone, batch size, ms per batch, images per second for the whole network
(encoder + parameter head + joint head + hand-type head, no hand model) and for the encoder alone
(ResNet + FC 1024 x 2).
"""

from __future__ import annotations

import argparse

import torch

from _timing import timeit
from ihmr.stage1 import Stage1Net


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50"])
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"threads={args.threads} torch={torch.__version__} input={args.size}x{args.size} eval, no_grad; "
          f"joint head: default (32 x 32 x 32 heatmaps, 2 deconvolutions of 256 channels)")  # fmt: skip
    print(f"| {'backbone':>9} | {'B':>3} | {'ms / batch':>10} | {'images / s':>10} | {'encoder only, images / s':>24} |")
    print(f"|{'-' * 11}|{'-' * 5}|{'-' * 12}|{'-' * 12}|{'-' * 26}|")
    for name in args.backbones:
        torch.manual_seed(0)
        net = Stage1Net(name).eval()
        for B in args.batches:
            x = torch.randn(B, 3, args.size, args.size, generator=g)
            with torch.no_grad():
                t = timeit(lambda: net(x), args.repeats)
                te = timeit(lambda: net.encoder(x), args.repeats)
            print(f"| {name:>9} | {B:>3} | {t * 1e3:>10.0f} | {B / t:>10.1f} | {B / te:>24.1f} |")


if __name__ == "__main__":
    main()
