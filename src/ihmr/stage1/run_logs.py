"""The files a stage-I training run logs to: ``train_log.csv`` (per step), ``val_log.csv`` (per
epoch) and ``curve.png`` (both, plotted)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

import numpy as np

from ihmr.io.files import atomic_write, write_csv
from ihmr.stage1.loss import LOSS_WEIGHTS

__all__ = ["TRAIN_COLUMNS", "VAL_COLUMNS", "CsvLog", "truncate_csv", "plot_curve"]

#: Columns of ``train_log.csv`` (one row per optimiser step; loss terms unweighted).
TRAIN_COLUMNS = ["epoch", "step", "lr", "loss", *LOSS_WEIGHTS, "seconds", "images_per_s"]
#: Columns of ``val_log.csv`` (one row per epoch; errors in mm).
VAL_COLUMNS = ["epoch", "step", "n", "mpjpe_params", "i_mpjpe_params", "mpjpe_head", "i_mpjpe_head", "val_loss", "seconds"]


class CsvLog:
    """A CSV file written row by row (floats as ``%.6g``, flushed after every row); ``append``
    continues an existing file without a second header."""

    def __init__(self, path: Path, columns: list[str], append: bool) -> None:
        self.path, self.columns = path, columns
        new = not (append and path.is_file())
        self.fh = open(path, "w" if new else "a", newline="", encoding="utf-8")
        self.w = csv.DictWriter(self.fh, fieldnames=columns, extrasaction="ignore")
        if new:
            self.w.writeheader()
            self.fh.flush()

    def write(self, row: dict) -> None:
        self.w.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def truncate_csv(path: Path, key: str, last: int) -> None:
    """Drop rows with ``key > last`` (a resumed run rewrites the steps after its checkpoint)."""
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
        cols = list(rows[0].keys()) if rows else None
    if cols is None:
        return

    write_csv(path, cols, (r for r in rows if r.get(key) not in (None, "") and int(float(r[key])) <= last))


def plot_curve(run_dir: Path) -> Optional[Path]:
    """``RUN_DIR/curve.png`` from the CSV logs (training loss per step, validation MPJPE per epoch);
    ``None`` without training rows."""
    # matplotlib is imported lazily: a second to import, needed only for the plot
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tl, vl = run_dir / "train_log.csv", run_dir / "val_log.csv"
    if not tl.is_file():
        return None
    with open(tl, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        return None
    steps = np.array([int(r["step"]) for r in rows])
    loss = np.array([float(r["loss"]) for r in rows])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax = axes[0]
    ax.plot(steps, loss, lw=0.6, alpha=0.5, label="loss")
    k = max(1, len(loss) // 50)
    if k > 1:
        sm = np.convolve(loss, np.ones(k) / k, mode="valid")
        ax.plot(steps[k - 1:], sm, lw=1.5, label=f"mean of {k}")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend()
    ax = axes[1]
    if vl.is_file():
        with open(vl, newline="", encoding="utf-8") as fh:
            vrows = list(csv.DictReader(fh))
        for col, lab in (("mpjpe_params", "MPJPE params"), ("i_mpjpe_params", "I-MPJPE params"),
                         ("mpjpe_head", "MPJPE joint head"), ("i_mpjpe_head", "I-MPJPE joint head")):
            xs = [int(r["epoch"]) for r in vrows if r.get(col) not in (None, "", "nan")]
            ys = [float(r[col]) for r in vrows if r.get(col) not in (None, "", "nan")]
            if xs:
                ax.plot(xs, ys, marker="o", label=lab)
        if vrows:
            ax.legend()
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation error (mm)")
    fig.tight_layout()
    path = run_dir / "curve.png"
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100)
    plt.close(fig)
    return path
