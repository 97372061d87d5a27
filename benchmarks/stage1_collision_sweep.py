"""The paper's Fig. 6 study: stage-I training with a collision loss of weight W, on the same data and
budget for each W; MPJPE, I-MPJPE and AVE-P on the held-out split against the weight.

Run: PYTHONPATH=src .venv/bin/python benchmarks/stage1_collision_sweep.py --data DIR --out SWEEP_DIR
        [--weights 0 1 10] [--scratch] [-- extra ihmr train stage1 flags]

Each weight is one ``ihmr train stage1 ... --collision-weight W --out SWEEP_DIR/w<W>`` (fresh
process, same seed, data, schedule), then ``ihmr eval --split <val> --checkpoint .../last.pt
--refine none --no-starred`` (exact penetration of the predicted meshes). ``--scratch`` adds the
weight-0 run from scratch (``--pretrained none``): the ImageNet start against no start at the same
budget. Writes SWEEP_DIR/fig6.md, fig6.json and fig6.png; prints the table. A run folder that has
its ``eval/table.json`` already is reused (so an interrupted sweep continues).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DEFAULT_TRAIN = ["--backbone", "efficientnet_lite0", "--epochs", "2", "--batch", "32", "--lr", "3e-4", "--input-size", "128",
                 "--deconv-channels", "128", "--heatmap-size", "16", "--threads", "2", "--workers", "1", "--seed", "0", "--no-progress"]


def _ihmr(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "ihmr", *args], check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="ihmr synth folder with the train split and the held-out split")
    ap.add_argument("--val-split", default="val")
    ap.add_argument("--out", required=True)
    ap.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 10.0])
    ap.add_argument("--scratch", action="store_true", help="also weight 0 from scratch (--pretrained none)")
    ap.add_argument("train", nargs="*", help="after --: ihmr train stage1 flags replacing the defaults (" + " ".join(DEFAULT_TRAIN) + ")")
    a = ap.parse_args()
    out = Path(a.out)
    runs = [(f"w{w:g}", w, []) for w in a.weights] + ([("w0-scratch", 0.0, ["--pretrained", "none"])] if a.scratch else [])
    rows = []
    for name, w, extra in runs:
        run = out / name
        table = run / "eval" / "table.json"
        if not table.is_file():
            _ihmr("train", "stage1", "--data", a.data, "--split", "train", "--val-split", a.val_split, "--out", str(run),
                  *(a.train or DEFAULT_TRAIN), "--collision-weight", f"{w:g}", *extra)
            _ihmr("eval", "--data", a.data, "--split", a.val_split, "--checkpoint", str(run / "last.pt"), "--refine", "none",
                  "--no-starred", "--subset", "all", "--out", str(run / "eval"), "--no-progress")
        m = json.loads(table.read_text())["methods"]["Baseline (stage I)"]["subsets"]["All"]
        rows.append({"run": name, "weight": w, "init": "scratch" if extra else "imagenet", "n": m["n"],
                     **{k: m[k] for k in ("mpjpe", "i_mpjpe", "ave_p", "max_p")}})
    md = ["| run | collision weight | start | n | MPJPE mm | I-MPJPE mm | AVE-P mm | MAX-P mm |", "|---|---|---|---|---|---|---|---|"]
    md += [f"| {r['run']} | {r['weight']:g} | {r['init']} | {r['n']} | {r['mpjpe']:.1f} | {r['i_mpjpe']:.1f} | {r['ave_p']:.3f} | "
           f"{r['max_p']:.2f} |" for r in rows]
    (out / "fig6.md").write_text("\n".join(md) + "\n")
    (out / "fig6.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(md))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = [r for r in rows if r["init"] == "imagenet"]
    x = [max(r["weight"], 0.1) for r in sweep]  # weight 0 drawn at 0.1 on the log axis
    fig, ax = plt.subplots(1, 2, figsize=(9, 3.4))
    ax[0].plot(x, [r["mpjpe"] for r in sweep], "o-", label="MPJPE")
    ax[0].plot(x, [r["i_mpjpe"] for r in sweep], "s-", label="I-MPJPE")
    ax[0].set_ylabel("mm")
    ax[0].legend()
    ax[1].plot(x, [r["ave_p"] for r in sweep], "o-", color="C3")
    ax[1].set_ylabel("AVE-P mm")
    for axis in ax:
        axis.set_xscale("log")
        axis.set_xlabel("collision weight (0 drawn at 0.1)")
    fig.suptitle("Stage I with a collision loss (held-out synthetic images)")
    fig.tight_layout()
    fig.savefig(out / "fig6.png", dpi=110)


if __name__ == "__main__":
    main()
