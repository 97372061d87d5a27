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
from ihmr.data.synthetic import load_npz, make_synthetic, save_npz
from ihmr.experiments.refine_runs import evaluate_params
from ihmr.handmodel import TwoHands
from ihmr.handmodel.lbs import _lbs_einsum, lbs
from ihmr.joint_order import to_two_hand
from ihmr.metrics import closely_interacting_mask
from ihmr.refine import RefineConfig, refine_opt


def best_of(fns: list, repeats: int) -> list[float]:
    """Least seconds per call of each of ``fns`` over ``repeats`` interleaved rounds (after one
    warm-up call each): the least is the figure least disturbed by other load on the machine."""
    best = [float("inf")] * len(fns)
    for fn in fns:
        fn()
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            t = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - t)
    return best


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
        rows.append((f"lbs, one hand, {mode} (B={B})", *best_of([lambda: run(_lbs_einsum), lambda: run(lbs)], repeats)))
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
    rows = lbs_rows(hands, args.batch, 7)
    times = [best_of([lambda v=v: exact._find_penetrations_loop(v, hands.faces), lambda v=v: exact.find_penetrations(v, hands.faces)], 2)
             for v in sub]
    t_old, t_new = (sum(t[i] for t in times) / len(sub) for i in range(2))
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
    print(f"\n| refine_opt (B={args.batch}) | samples/s | AVE-P (mm) | MAX-P (mm) | MPJPE (mm) | I-MPJPE (mm) | speed-up |")
    print("|---|---|---|---|---|---|---|")
    base = results["previous"][1]
    for name, (res, sec) in results.items():
        m = evaluate_params(hands, res.params, gt[idx])
        cells = " | ".join(f"{np.mean(m[k]):.3f}" for k in ("ave_p_mm", "max_p_mm", "mpjpe_mm", "i_mpjpe_mm"))
        print(f"| {name} | {len(idx) / sec:.2f} | {cells} | {base / sec:.2f}x |")
    # per sample: the largest difference of any parameter (the refinement amplifies rounding)
    d = torch.stack([(results["previous"][0].params[k] - results["current"][0].params[k]).abs().flatten(1).amax(1) for k in p], 1).amax(1)
    print(f"\nparameters previous vs current, per sample: median difference {d.median():.1e}, largest {d.max():.1e}, "
          f"{int((d > 1e-6).sum())} of {len(d)} samples differ by more than 1e-6")


if __name__ == "__main__":
    main()
