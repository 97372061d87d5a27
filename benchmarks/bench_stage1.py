"""Forward throughput of the stage-I network on the CPU (eval mode, no gradients, 224 x 224 crops).

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_stage1.py [--threads N] [--backbones ...] [--batches ...]
        [--checkpoint default]
Prints a table: backbone, batch size, ms per batch, images per second for the whole network
(encoder + parameter head + joint head + hand-type head, no hand model) and for the encoder alone
(backbone + FC 1024 x 2). With ``--checkpoint`` (a file or ``default``, the shipped network) its own
architecture is measured too (its joint head, not the default one).
"""

from __future__ import annotations

import argparse

import torch

from _timing import timeit
from ihmr.stage1 import Stage1Net
from ihmr.stage1.backbones import BACKBONES
from ihmr.stage1.weights import load_stage1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--backbones", nargs="+", default=["resnet18", "resnet50", "efficientnet_lite0"], choices=BACKBONES)
    ap.add_argument("--checkpoint", default=None, help="also measure this stage-I checkpoint's network ('default': the shipped one)")
    ap.add_argument("--batches", type=int, nargs="+", default=[8, 32])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"threads={args.threads} torch={torch.__version__} input={args.size}x{args.size} eval, no_grad; "
          f"joint head: default (32 x 32 x 32 heatmaps, 2 deconvolutions of 256 channels)")  # fmt: skip
    print(f"| {'network':>18} | {'B':>3} | {'ms / batch':>10} | {'images / s':>10} | {'encoder only, images / s':>24} |")
    print(f"|{'-' * 20}|{'-' * 5}|{'-' * 12}|{'-' * 12}|{'-' * 26}|")
    nets = [(name, lambda n=name: Stage1Net(n)) for name in args.backbones]
    if args.checkpoint:
        nets.append((f"{args.checkpoint} checkpoint", lambda: load_stage1(args.checkpoint)[0]))
    for name, build in nets:
        torch.manual_seed(0)
        net = build().eval()
        for B in args.batches:
            x = torch.randn(B, 3, args.size, args.size, generator=g)
            with torch.no_grad():
                t = timeit(lambda: net(x), args.repeats)
                te = timeit(lambda: net.encoder(x), args.repeats)
            print(f"| {name:>18} | {B:>3} | {t * 1e3:>10.0f} | {B / t:>10.1f} | {B / te:>24.1f} |")


if __name__ == "__main__":
    main()
