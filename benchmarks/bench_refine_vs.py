"""OPT and MLP refinement end to end: the current code against an earlier commit, in one run.

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_refine_vs.py --baseline REV [--data pairs.npz] [--n 64] [--repeat 2]

The earlier commit is checked out in a temporary ``git worktree``; each round times both codes one
after the other, in fresh processes with one thread each, on the same pairs (the closely
interacting pairs of the cached ``ihmr bench refine --data`` file, two-sided by default; generated
with ``make_synthetic(256, seed=0)`` and written there when the file does not exist): OPT
(``refine_opt``, defaults, B = 64) on the first ``--n`` of them, the MLP (``refine_mlp``, the
shipped refiners, float32, B = 256) on all of them, best of 3. Prints samples/s per code, the
ratio, and I-MPJPE / AVE-P after refinement (so a speed change is not a silent quality change).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(data_path: str, n: int) -> dict:
    """The child's work: figures of the code on ``sys.path``."""
    import numpy as np
    import torch

    from ihmr.data.synthetic import load_npz
    from ihmr.experiments.refine_runs import evaluate_params
    from ihmr.handmodel import TwoHands
    from ihmr.joint_order import to_two_hand
    from ihmr.metrics import closely_interacting_mask
    from ihmr.refine import RefineConfig, refine_opt
    from ihmr.refine.mlp import load_refiner
    from ihmr.refine.mlp_refine import refine_mlp

    torch.set_num_threads(1)
    data = load_npz(data_path)
    gt = to_two_hand(data.gt_j3d, "mano")
    idx = torch.as_tensor(np.flatnonzero(closely_interacting_mask(gt.numpy())))
    out = {}
    hands = TwoHands("open", dtype=torch.float64)
    sub = idx[:n]
    p = {k: v[sub] for k, v in data.pred.items()}
    args = (data.j3d[sub], data.j2d[sub], data.cam[sub])
    refine_opt(hands, {k: v[:2] for k, v in p.items()}, *(a[:2] for a in args), RefineConfig(), progress=False)  # warm-up
    t = time.perf_counter()
    res = refine_opt(hands, p, *args, RefineConfig(), batch_size=64, progress=False)
    out["opt_samples_per_s"] = len(sub) / (time.perf_counter() - t)
    m = evaluate_params(hands, res.params, gt[sub])
    out["opt_i_mpjpe_mm"], out["opt_ave_p_mm"] = float(m["i_mpjpe_mm"].mean()), float(m["ave_p_mm"].mean())
    h32 = TwoHands("open")
    p = {k: v[idx].float() for k, v in data.pred.items()}
    refiner = load_refiner("default", h32)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        res = refine_mlp(h32, p, data.j3d[idx].float(), data.j2d[idx].float(), refiner, batch_size=256, progress=False)
        best = min(best, time.perf_counter() - t)
    out["mlp_samples_per_s"] = len(idx) / best
    m = evaluate_params(hands, {k: v.double() for k, v in res.params.items()}, gt[idx])
    out["mlp_i_mpjpe_mm"], out["mlp_ave_p_mm"] = float(m["i_mpjpe_mm"].mean()), float(m["ave_p_mm"].mean())
    return out


def _child(src: Path, data: str, n: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, __file__, "--child", "--data", data, "--n", str(n)], env=env, cwd=src.parent,
                       capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--baseline", default="HEAD~1", help="the earlier commit (any git revision)")
    ap.add_argument("--data", default=str(Path(tempfile.gettempdir()) / "ihmr_bench256.npz"))
    ap.add_argument("--n", type=int, default=64, help="pairs refined by OPT")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(measure(a.data, a.n)))
        return
    if not Path(a.data).is_file():
        import torch

        from ihmr.data.synthetic import make_synthetic, save_npz
        from ihmr.handmodel import TwoHands

        save_npz(a.data, make_synthetic(256, seed=0, hands=TwoHands("open", dtype=torch.float64)))
    with tempfile.TemporaryDirectory() as tmp:
        wt = Path(tmp) / "baseline"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(wt), a.baseline], check=True)
        try:
            runs: dict[str, list[dict]] = {"baseline": [], "current": []}
            for _ in range(a.repeat):
                runs["baseline"].append(_child(wt / "src", a.data, a.n))
                runs["current"].append(_child(ROOT / "src", a.data, a.n))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(wt)], check=False)
    print(f"baseline {a.baseline} vs current working tree; {a.repeat} rounds, the best of each; one thread\n")
    print("| refiner | baseline samples/s | current samples/s | ratio | I-MPJPE mm (baseline / current) | AVE-P mm (baseline / current) |")
    print("|---|---|---|---|---|---|")
    for r in ("opt", "mlp"):
        b = max(x[f"{r}_samples_per_s"] for x in runs["baseline"])
        c = max(x[f"{r}_samples_per_s"] for x in runs["current"])
        q = [(runs[k][0][f"{r}_i_mpjpe_mm"], runs[k][0][f"{r}_ave_p_mm"]) for k in ("baseline", "current")]
        print(f"| {r.upper()} | {b:.2f} | {c:.2f} | {c / b:.2f} | {q[0][0]:.2f} / {q[1][0]:.2f} | {q[0][1]:.3f} / {q[1][1]:.3f} |")


if __name__ == "__main__":
    main()
