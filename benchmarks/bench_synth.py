"""Throughput of ``ihmr synth`` (rendered InterHand2.6M-format training data) on the CPU.

Run: PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/bench_synth.py [--n 64] [--size 256] [--workers 1 2]
Prints two tables: the cost per image of the two stages in one process (ground-truth poses in
contact, rendering + JPEG + record), and end-to-end images per second for each worker count
(same seed, so every run writes the same bytes; worker start-up included).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

os.environ.setdefault("PYOPENGL_PLATFORM", "egl")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from ihmr.data.synth import POSE_CHUNK, SampleRenderer, SynthConfig, generate, pose_chunk

    r = SampleRenderer(args.size)
    t = time.perf_counter()
    pose_chunk(args.seed, 0, POSE_CHUNK, r.hands)
    t_pose = (time.perf_counter() - t) / POSE_CHUNK
    r.render(args.seed, 0, POSE_CHUNK)  # warm-up (and caches the pose chunk)
    t = time.perf_counter()
    for i in range(POSE_CHUNK):
        r.render(args.seed, i, POSE_CHUNK)
    t_render = (time.perf_counter() - t) / POSE_CHUNK
    r.close()
    print(f"size={args.size} cpus={os.cpu_count()} load={os.getloadavg()[0]:.1f}")
    print(f"| {'stage':<29} | {'ms / image':>10} |")
    print(f"|{'-' * 31}|{'-' * 12}|")
    print(f"| {'ground truth (make_synthetic)':<29} | {t_pose * 1e3:>10.1f} |")
    print(f"| {'render + JPEG + record':<29} | {t_render * 1e3:>10.1f} |")
    print()
    print(f"| {'workers':>7} | {'n':>5} | {'seconds':>8} | {'images / s':>10} |")
    print(f"|{'-' * 9}|{'-' * 7}|{'-' * 10}|{'-' * 12}|")
    for k in args.workers:
        with tempfile.TemporaryDirectory() as out:
            m = generate(SynthConfig(out=out, n=args.n, seed=args.seed, size=args.size, workers=k, progress=False))
        print(f"| {k:>7} | {args.n:>5} | {m['seconds']:>8.1f} | {args.n / m['seconds']:>10.2f} |")


if __name__ == "__main__":
    main()
