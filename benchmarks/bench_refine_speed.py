"""OPT refinement speed: its components, previous code vs current, and refine_opt end to end.

Run: PYTHONPATH=src .venv/bin/python benchmarks/bench_refine_speed.py [--n 128] [--data pairs.npz] [--threads N]

The closely interacting pairs of ``make_synthetic(n, seed=0)`` (float64 hand model, as
``ihmr bench refine``) are refined by ``refine_opt`` (B = 64) twice in the same run: with the
previous components (``_lbs_einsum``, ``_find_penetrations_loop``) patched in, and with the current
ones. Prints the per-component table (ms per call, ratio) and the end-to-end table (samples/s,
AVE-P / MAX-P, the largest parameter difference between the two runs).
"""

from __future__ import annotations

import argparse
import contextlib
import time
from pathlib import Path

import numpy as np
import torch

import ihmr.collision.exact as exact
import ihmr.handmodel.layer as layer
import ihmr.refine.factorized as factorized
from _timing import timeit
from ihmr.data.synthetic import load_npz, make_synthetic, save_npz
from ihmr.experiments.refine_runs import evaluate_params
from ihmr.handmodel import TwoHands
from ihmr.handmodel.lbs import _lbs_einsum, lbs
from ihmr.joint_order import to_two_hand
from ihmr.metrics import closely_interacting_mask
from ihmr.refine import RefineConfig, refine_opt


@contextlib.contextmanager
def previous_components():
    """Patch the previous skinning and penetration search into the refinement."""
    saved = layer.lbs, factorized.find_penetrations, exact.find_penetrations
    layer.lbs, factorized.find_penetrations, exact.find_penetrations = (
        _lbs_einsum, exact._find_penetrations_loop, exact._find_penetrations_loop)
    try:
        yield
    finally:
        layer.lbs, factorized.find_penetrations, exact.find_penetrations = saved


def lbs_rows(hands: TwoHands, B: int, repeats: int) -> list[tuple[str, float, float]]:
    """ms per call of one hand's skinning (forward + backward as in the theta / beta stages)."""
    g = torch.Generator().manual_seed(0)
    L = hands.right
    betas = torch.randn(B, 10, dtype=torch.float64, generator=g) * 0.5
    pose = torch.randn(B, 16, 3, dtype=torch.float64, generator=g) * 0.3
    rows = []
    for mode in ("theta grad", "beta grad", "no grad"):
        def run(fn):
            bt = betas.clone().requires_grad_(mode == "beta grad")
            ps = pose.clone().requires_grad_(mode == "theta grad")
            with torch.set_grad_enabled(mode != "no grad"):
                v, j, _ = fn(bt, ps, L.v_template, L.shapedirs, L.posedirs, L.J_regressor, L.parents, L.lbs_weights)
                if mode != "no grad":
                    (v.square().sum() + j.sum()).backward()
        rows.append((f"lbs, one hand, {mode} (B={B})", timeit(lambda: run(_lbs_einsum), repeats), timeit(lambda: run(lbs), repeats)))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--data", default=None, help="cache .npz of the synthetic pairs (read if present)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    hands = TwoHands(dtype=torch.float64)
    if args.data and Path(args.data).is_file():
        data = load_npz(args.data)
    else:
        data = make_synthetic(args.n, seed=0, hands=hands, progress=False)
        if args.data:
            save_npz(args.data, data)
    gt = to_two_hand(data.gt_j3d, "mano")
    idx = torch.as_tensor(np.flatnonzero(closely_interacting_mask(gt.numpy())))
    p = {k: v[idx] for k, v in data.pred.items()}

    def refine():
        return refine_opt(hands, p, data.j3d[idx], data.j2d[idx], data.cam[idx], RefineConfig(), batch_size=args.batch, progress=False)

    # The vertex batches the search sees: every snapshot of one refinement.
    caps = []
    orig = factorized.find_penetrations

    def capture(v, f):
        caps.append(v.detach().clone())
        return orig(v, f)

    factorized.find_penetrations = capture
    try:
        refine()
    finally:
        factorized.find_penetrations = orig
    sub = caps[:: max(1, len(caps) // 8)]
    rows = lbs_rows(hands, args.batch, 5)
    t_old = sum(timeit(lambda v=v: exact._find_penetrations_loop(v, hands.faces), 1) for v in sub) / len(sub)
    t_new = sum(timeit(lambda v=v: exact.find_penetrations(v, hands.faces), 1) for v in sub) / len(sub)
    rows.append((f"find_penetrations, one snapshot (B={sub[0].shape[0]})", t_old, t_new))
    same = all(torch.equal(getattr(exact._find_penetrations_loop(v, hands.faces), k), getattr(exact.find_penetrations(v, hands.faces), k))
               for v in sub for k in ("batch", "hand", "vertex", "face"))
    print(f"threads={args.threads} n={args.n} close pairs={len(idx)} snapshots={len(caps)}; search results identical: {same}\n")
    print("| component | previous (ms) | current (ms) | speed-up |\n|---|---|---|---|")
    for name, a, b in rows:
        print(f"| {name} | {a * 1e3:.1f} | {b * 1e3:.1f} | {a / b:.2f}x |")

    results = {}
    for name in ("previous", "current"):
        with previous_components() if name == "previous" else contextlib.nullcontext():
            t = time.perf_counter()
            res = refine()
            results[name] = (res, time.perf_counter() - t)
    print("\n| refine_opt (B=%d) | samples/s | AVE-P (mm) | MAX-P (mm) | speed-up |\n|---|---|---|---|---|" % args.batch)
    base = results["previous"][1]
    for name, (res, sec) in results.items():
        m = evaluate_params(hands, res.params, gt[idx])
        print(f"| {name} | {len(idx) / sec:.2f} | {np.mean(m['ave_p_mm']):.3f} | {np.mean(m['max_p_mm']):.3f} | {base / sec:.2f}x |")
    diff = max(float((results["previous"][0].params[k] - results["current"][0].params[k]).abs().max()) for k in p)
    print(f"\nlargest parameter difference previous vs current: {diff:.2e}")


if __name__ == "__main__":
    main()
