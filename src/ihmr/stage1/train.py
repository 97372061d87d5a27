"""Training of the stage-I network (``ihmr train stage1``).

Data: InterHand2.6M-format splits (real files or ``ihmr synth`` output) through
:mod:`ihmr.data.interhand`; parameter labels from ``annotations/<split>/ihmr_params.json`` when
present (``ihmr synth``'s exact parameters, keyed capture -> frame), else from the NeuralAnnot MANO
file, else none (joint losses only). Labels are rotated into the camera frame
(``phi_cam = log(R R(phi))``, ``tau_cam = R tau``) because the network's hands live in a camera-aligned
frame (weak-perspective projection of x/y).

Loop: Adam, cosine decay of the learning rate over all steps of ``epochs`` epochs, the release's loss
weights (:class:`~ihmr.stage1.losses.Stage1Loss`), the augmentation of :mod:`ihmr.stage1.augment`
seeded per ``(seed, epoch, index)``. Under ``torchrun`` the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on GPU, :func:`ihmr.distributed.init_from_env`); ``batch``
is the global batch, each of the ``N`` processes takes ``batch / N`` of the same shuffled order
(:class:`ResumableShardSampler`) and gradients are averaged, so N processes follow one process's
trajectory; on GPU BatchNorm is synchronised (SyncBatchNorm), on CPU (gloo, where SyncBatchNorm does not
run) each process normalises with its own ``batch / N`` samples, so the curves agree closely but not
exactly. Rank 0 validates (on the whole validation split) and writes every file.

Files in ``RUN_DIR``: ``last.pt`` (every epoch and when stopped early; with the training state under
``train=``), ``best.pt`` (lowest validation MPJPE of the parameter-head joints), ``train_log.csv``
(per step), ``val_log.csv`` (per epoch), ``curve.png``, ``config.json`` and TensorBoard events in
``tb/`` when ``torch.utils.tensorboard`` imports.

``resume=True`` continues from ``last.pt`` exactly: epoch, position inside the epoch, global step,
optimizer, scheduler, grad scaler and RNG states.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from ihmr.data.interhand import InterHandDataset, find_split_files, load_interhand
from ihmr.data.synth_render import read_ihmr_params
from ihmr.distributed import init_from_env
from ihmr.errors import InputError
from ihmr.geometry.crop import normalise_image, pixels_to_normalised
from ihmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from ihmr.handmodel import TwoHands
from ihmr.io.files import atomic_write
from ihmr.metrics import i_mpjpe, mpjpe
from ihmr.stage1.augment import AugmentConfig, augment_sample
from ihmr.stage1.checkpoint import Stage1Arch, read_stage1_checkpoint, save_stage1
from ihmr.stage1.losses import LOSS_WEIGHTS, Stage1Loss, Stage1Targets
from ihmr.stage1.network import load_resnet_weights

__all__ = [
    "TrainStage1Config",
    "Stage1TrainData",
    "ResumableShardSampler",
    "find_split",
    "param_labels",
    "train_stage1",
]

TRAIN_COLUMNS = ["epoch", "step", "lr", "loss", *LOSS_WEIGHTS, "seconds", "images_per_s"]
VAL_COLUMNS = ["epoch", "step", "n", "mpjpe_params", "i_mpjpe_params", "mpjpe_head", "i_mpjpe_head", "val_loss", "seconds"]


@dataclass
class TrainStage1Config:
    """Options of :func:`train_stage1` (see ``ihmr train stage1 --help``)."""

    data: str
    out: str
    split: str = "train"
    val_split: Optional[str] = None
    val_fraction: float = 0.1
    backbone: str = "resnet18"
    pretrained: Optional[str] = None
    epochs: int = 20
    batch: int = 32
    lr: float = 1e-4
    input_size: int = 224
    workers: int = 2
    minutes: Optional[float] = None
    resume: bool = False
    amp: bool = False
    seed: int = 0
    model: str = "open"
    augment: bool = True
    max_steps: Optional[int] = None
    heatmap_size: int = 32
    depth_bins: int = 32
    deconv_channels: int = 256
    feature_dim: int = 1024
    subset: str = "all"
    progress: bool = True
    labels: str = "auto"

    def check(self) -> "TrainStage1Config":
        def whole(name: str, lo: int) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise InputError(f"--{name.replace('_', '-')} must be an integer >= {lo}, got {v!r}")

        for name, lo in (("epochs", 1), ("batch", 1), ("input_size", 32), ("workers", 0), ("seed", 0),
                         ("heatmap_size", 1), ("depth_bins", 1), ("deconv_channels", 1), ("feature_dim", 1)):
            whole(name, lo)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise InputError(f"--lr must be a positive number, got {self.lr!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        if self.minutes is not None and not self.minutes > 0:
            raise InputError(f"--minutes must be > 0, got {self.minutes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.labels not in ("auto", "ihmr", "mano", "none"):
            raise InputError(f"--labels must be auto, ihmr, mano or none, got {self.labels!r}")
        if self.input_size % 32:
            raise InputError(f"--input-size must be a multiple of 32, got {self.input_size}")
        return self


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def find_split(data: str | Path, split: str):
    """The :class:`~ihmr.data.interhand.InterHandFiles` of a split (layouts: see
    :func:`ihmr.data.interhand.find_split_files`)."""
    root = Path(data)
    if not root.is_dir():
        raise InputError(f"data folder {str(root)!r} does not exist")
    return find_split_files(root, split)


def param_labels(ann, ann_dir: Path, hands, mode: str = "auto") -> tuple[Optional[dict[str, np.ndarray]], str]:
    """Per-sample parameter labels in the **camera** frame, or ``(None, "none")``.

    Returns ``({beta (N, 2, 10), phi (N, 2, 3), theta (N, 2, 45), tau (N, 3) or None, valid (N, 2)},
    source)``. ``ihmr_params.json`` (``ihmr synth``; capture -> frame -> {model, beta, phi, theta, tau,
    ...}, model frame = world frame) gives exact labels for the hand model it names; the NeuralAnnot
    file gives ``pose = phi + (theta - hands_mean)`` and ``shape`` (``tau`` then comes from the 3D joints);
    in ``auto`` mode it is used only with a MANO hand model (its parameters are MANO's).
    """
    path = ann_dir / "ihmr_params.json"
    if mode in ("auto", "ihmr") and path.is_file():
        rec = read_ihmr_params(path, ann.capture, ann.frame_idx)
        beta, phi, theta, tau, models = rec.beta, rec.phi, rec.theta, rec.tau, rec.models
        valid = np.repeat(rec.valid[:, None], 2, axis=1)
        if models and models != {hands.model_name}:
            if mode == "ihmr":
                raise InputError(f"{path}: parameters are for hand model(s) {sorted(models)}, training uses {hands.model_name!r}")
            # the folder's NeuralAnnot file was written for the same model: neither fits
            print(f"ihmr: {path.name} (and the MANO file beside it) are for {sorted(models)}, not {hands.model_name!r}: "
                  "training without parameter labels (joint losses only)", file=sys.stderr)
            return None, "none"
        else:
            return _to_camera(ann, dict(beta=beta, phi=phi, theta=theta, tau=tau, valid=valid)), "ihmr_params.json"
    if mode == "auto" and ann.has_mano and hands.model_name == "open":
        print("ihmr: the NeuralAnnot MANO parameters do not fit the open hand model: training without parameter labels "
              "(joint losses only); --model MANO_DIR uses them, --labels mano forces them", file=sys.stderr)
        return None, "none"
    if mode in ("auto", "mano") and ann.has_mano and ann.mano_valid.any():
        mean = hands.right.data.hands_mean
        mean = np.zeros((2, 45)) if mean is None else np.stack([mean, hands.left.data.hands_mean if hands.left.data.hands_mean is not None else mean])
        lab = dict(beta=ann.mano_shape.copy(), phi=ann.mano_pose[..., :3].copy(), theta=ann.mano_pose[..., 3:] + mean[None],
                   tau=None, valid=ann.mano_valid.copy())
        return _to_camera(ann, lab), "MANO_NeuralAnnot"
    if mode in ("ihmr", "mano"):
        raise InputError(f"--labels {mode}: no such parameters in {ann_dir}")
    return None, "none"


def _to_camera(ann, lab: dict) -> dict:
    R = torch.as_tensor(ann.R, dtype=torch.float64)  # (N, 3, 3) world -> camera
    phi = torch.as_tensor(lab["phi"], dtype=torch.float64)
    lab["phi"] = matrix_to_axis_angle(R[:, None] @ axis_angle_to_matrix(phi)).numpy()
    if lab["tau"] is not None:
        lab["tau"] = np.einsum("nij,nj->ni", ann.R, lab["tau"])
    return lab


class Stage1TrainData(torch.utils.data.Dataset):
    """Training/validation samples: an :class:`~ihmr.data.interhand.InterHandDataset` (uint8 crops),
    optional parameter labels and augmentation, as the tensors the loss wants.

    Item: ``image (3, S, S)`` normalised; ``j2d (2, 21, 2)`` normalised crop coordinates; ``j3d
    (2, 21, 3)`` camera frame (m); ``valid (2, 21)``; ``present (2,)``; ``hand_type_valid ()``; with
    labels ``beta, phi, theta (2, ...)``, ``tau (3,)`` (``tau_valid ()``), ``param_valid (2,)``;
    ``index``. Augmentation (if ``augment``) draws from ``default_rng([seed, epoch, index])``; set
    :attr:`epoch` before each epoch.
    """

    def __init__(self, base, indices: np.ndarray, labels: Optional[dict] = None, augment: Optional[AugmentConfig] = None, seed: int = 0) -> None:
        self.base, self.indices, self.labels, self.augment, self.seed = base, np.asarray(indices, dtype=np.int64), labels, augment, int(seed)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int) -> dict[str, Tensor]:
        i = int(self.indices[k])
        item = self.base[i]
        S = self.base.size
        s: dict[str, Any] = {
            "image": item["image"].numpy(), "j2d": item["j2d"].numpy().astype(np.float64),
            "j3d": item["j3d"].numpy().astype(np.float64), "valid": item["valid"].numpy(),
            "present": item["hand_type_vec"].numpy().astype(np.float64),
        }
        L = self.labels
        if L is not None:
            s.update(beta=L["beta"][i].copy(), phi=L["phi"][i].copy(), theta=L["theta"][i].copy(), param_valid=L["valid"][i].copy())
            if L["tau"] is not None:
                s["tau"] = L["tau"][i].copy()
        if self.augment is not None:
            s = augment_sample(s, np.random.default_rng([self.seed, self.epoch, i]), self.augment)
        f32 = lambda x: torch.as_tensor(np.ascontiguousarray(x), dtype=torch.float32)  # noqa: E731
        out = {
            "image": normalise_image(s["image"]), "j2d": f32(pixels_to_normalised(s["j2d"], S)), "j3d": f32(s["j3d"]),
            "valid": torch.as_tensor(np.ascontiguousarray(s["valid"]), dtype=torch.bool), "present": f32(s["present"]),
            "hand_type_valid": item["hand_type_valid"].to(torch.float32), "index": torch.tensor(i, dtype=torch.long),
        }
        if L is not None:
            out.update(beta=f32(s["beta"]), phi=f32(s["phi"]), theta=f32(s["theta"]), param_valid=f32(s["param_valid"]))
            if "tau" in s:
                out["tau"] = f32(s["tau"])
        return out


def targets_from_batch(b: dict[str, Tensor]) -> Stage1Targets:
    """:class:`Stage1Targets` of a collated batch of :class:`Stage1TrainData` items."""
    t = Stage1Targets(j2d=b["j2d"], j3d=b["j3d"], joint_valid=b["valid"], hand_present=b["present"],
                      hand_type_valid=b["hand_type_valid"])
    if "beta" in b:
        t.beta, t.phi, t.theta, t.mano_valid = b["beta"], b["phi"], b["theta"], b["param_valid"]
        if "tau" in b:
            t.tau = b["tau"]
    return t


class ResumableShardSampler(torch.utils.data.Sampler):
    """The indices of :class:`torch.utils.data.DistributedSampler` (shuffled with ``seed + epoch``,
    padded to a multiple of ``world``, rank ``r`` takes every ``world``-th) trimmed to whole batches
    of ``batch_per_rank`` (``drop_last``) and starting after ``skip_batches`` batches (resume inside an
    epoch). With one process the order equals the union of the N-process shards batch by batch."""

    def __init__(self, n: int, rank: int, world: int, batch_per_rank: int, seed: int = 0, shuffle: bool = True) -> None:
        self.n, self.rank, self.world, self.bpr, self.seed, self.shuffle = n, rank, world, batch_per_rank, seed, shuffle
        self.epoch, self.skip_batches = 0, 0

    def batches_per_epoch(self) -> int:
        return (math.ceil(self.n / self.world)) // self.bpr

    def _order(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator()
            g.manual_seed(self.seed + self.epoch)
            idx = torch.randperm(self.n, generator=g).tolist()
        else:
            idx = list(range(self.n))
        total = math.ceil(self.n / self.world) * self.world
        idx += (idx * math.ceil(total / max(len(idx), 1)))[: total - len(idx)]
        # global batch j = idx[j*B : (j+1)*B] with B = world * bpr; rank r takes positions r, r+world, ...
        B = self.world * self.bpr
        mine = []
        for j in range(self.batches_per_epoch()):
            mine += idx[j * B: (j + 1) * B][self.rank::self.world]
        return mine

    def __iter__(self) -> Iterator[int]:
        return iter(self._order()[self.skip_batches * self.bpr:])

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.skip_batches) * self.bpr


# --------------------------------------------------------------------------------------------------
# Logging helpers
# --------------------------------------------------------------------------------------------------


class _CsvLog:
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


def _truncate_csv(path: Path, key: str, last: int) -> None:
    """Drop rows with ``key > last`` (a resumed run rewrites the steps after its checkpoint)."""
    if not path.is_file():
        return
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
        cols = list(rows[0].keys()) if rows else None
    if cols is None:
        return

    with atomic_write(path, "w") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(r for r in rows if r.get(key) not in (None, "") and int(float(r[key])) <= last)


def plot_curve(run_dir: Path) -> Optional[Path]:
    """``RUN_DIR/curve.png`` from the CSV logs (training loss per step, validation MPJPE per epoch)."""
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


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def validate(net, loader, loss_fn, device) -> dict[str, float]:
    """MPJPE / I-MPJPE (mm) of the parameter-head joints and of the joint head on ``loader``."""
    was = net.training
    net.eval()
    P, H, G, V, losses, n = [], [], [], [], [], 0
    for b in loader:
        x = b["image"].to(device)
        out = net(x)
        tot, _ = loss_fn(out, targets_from_batch({k: v.to(device) for k, v in b.items()}))
        losses.append(float(tot) * len(x))
        n += len(x)
        P.append(out.joints.float().cpu())
        H.append(out.j3d.float().cpu().reshape(-1, 2, 21, 3))
        G.append(b["j3d"])
        V.append(b["valid"])
    net.train(was)
    if n == 0:
        return {}
    p, h, g, v = (torch.cat(a).numpy() for a in (P, H, G, V))
    return dict(n=n, mpjpe_params=mpjpe(p, g, v).value, i_mpjpe_params=i_mpjpe(p, g, v).value,
                mpjpe_head=mpjpe(h, g, v).value, i_mpjpe_head=i_mpjpe(h, g, v).value, val_loss=sum(losses) / n)


# --------------------------------------------------------------------------------------------------
# RNG state
# --------------------------------------------------------------------------------------------------


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state(), "numpy": json.dumps(_np_state()), "python": json.dumps(_py_state())}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def _np_state() -> list:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _py_state() -> list:
    v, inner, g = random.getstate()
    return [v, list(inner), g]


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    n = json.loads(st["numpy"])
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = json.loads(st["python"])
    random.setstate((p[0], tuple(p[1]), p[2]))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state(st["cuda"])


# --------------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------------


def _notice(msg: str, rank: int) -> None:
    if rank == 0:
        print(f"ihmr: {msg}", file=sys.stderr, flush=True)


def _build_data(cfg: TrainStage1Config, hands, rank: int):
    """Train / validation :class:`Stage1TrainData` and a description."""
    import warnings


    def load(split: str):
        files = find_split(cfg.data, split)
        ann_dir = files.data.parent
        with warnings.catch_warnings():
            if rank != 0:
                warnings.simplefilter("ignore")
            ann = load_interhand(files)
        ds = InterHandDataset(ann, subset=cfg.subset, size=cfg.input_size, normalise=False)
        if len(ds) == 0:
            raise InputError(f"split {split!r} of {cfg.data!r} has no usable samples (subset {cfg.subset!r})")
        labels, source = param_labels(ds.annotations, ann_dir, hands, cfg.labels)
        return ds, labels, source

    train_base, train_labels, source = load(cfg.split)
    aug = AugmentConfig().check() if cfg.augment else None
    n = len(train_base)
    if cfg.val_split is not None:
        val_base, val_labels, _ = load(cfg.val_split)
        train_idx, val_idx = np.arange(n), np.arange(len(val_base))
    else:
        val_base, val_labels = train_base, train_labels
        n_val = int(round(cfg.val_fraction * n))
        if cfg.val_fraction > 0 and n_val == 0 and n >= 2:
            n_val = 1
        perm = np.random.default_rng([cfg.seed, 0xDA7A]).permutation(n)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    train = Stage1TrainData(train_base, train_idx, train_labels, aug, cfg.seed)
    val = Stage1TrainData(val_base, val_idx, val_labels, None, cfg.seed) if len(val_idx) else None
    desc = dict(train=len(train), val=0 if val is None else len(val), labels=source)
    return train, val, desc


def train_stage1(cfg: TrainStage1Config) -> dict:
    """Train (or resume) a stage-I network; returns a summary dict. Joins the torchrun process group
    when launched by torchrun (the caller shuts it down)."""

    cfg.check()
    out = Path(cfg.out)
    rank, world = init_from_env()
    if cfg.batch % world:
        raise InputError(f"--batch {cfg.batch} must be divisible by the number of processes ({world})")
    bpr = cfg.batch // world
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if cfg.amp and device.type != "cuda":
        _notice("--amp ignored: mixed precision is used on GPU only", rank)
    use_amp = cfg.amp and device.type == "cuda"
    amp_dtype = torch.bfloat16 if use_amp and torch.cuda.is_bf16_supported() else torch.float16

    blob = None
    if cfg.resume:
        last = out / "last.pt"
        if not last.is_file():
            raise InputError(f"--resume: {last} not found")
        blob = read_stage1_checkpoint(last)
        if not blob.get("train"):
            raise InputError(f"--resume: {last} has no training state")
    if rank == 0:
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"cannot create run folder {str(out)!r}: {e.strerror or e}") from e

    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    random.seed(cfg.seed)
    hands = TwoHands(cfg.model)
    train_set, val_set, desc = _build_data(cfg, hands, rank)
    sampler = ResumableShardSampler(len(train_set), rank, world, bpr, cfg.seed)
    steps_per_epoch = sampler.batches_per_epoch()
    if steps_per_epoch == 0:
        raise InputError(f"{len(train_set)} training samples make no batch of {cfg.batch}; lower --batch")

    arch = Stage1Arch(backbone=cfg.backbone, feature_dim=cfg.feature_dim, heatmap_size=cfg.heatmap_size, depth_bins=cfg.depth_bins,
                      deconv_channels=cfg.deconv_channels, input_size=cfg.input_size, model=cfg.model)
    if blob is not None:
        arch = Stage1Arch(**blob["arch"])
        if (arch.backbone, arch.input_size) != (cfg.backbone, cfg.input_size):
            raise InputError(f"--resume: last.pt is {arch.backbone} at {arch.input_size} px, asked for {cfg.backbone} at {cfg.input_size} px")
    net = arch.build(hand_model=hands)
    if cfg.pretrained and blob is None:
        load_resnet_weights(net.encoder.resnet, cfg.pretrained, cfg.backbone)
    if blob is not None:
        try:
            net.load_state_dict(blob["state_dict"])
        except RuntimeError as e:
            raise InputError(f"--resume: the weights in last.pt do not fit the network ({str(e).splitlines()[0]})") from e
    net.to(device)
    model = net
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # the hand model's constant buffers are identical everywhere: not broadcast every step
        fixed = [f"hand_model.{n}" for n, _ in net.hand_model.named_buffers()] if net.hand_model is not None else []
        if fixed and hasattr(DDP, "_set_params_and_buffers_to_ignore_for_model"):
            DDP._set_params_and_buffers_to_ignore_for_model(net, fixed)
        if device.type == "cuda":  # SyncBatchNorm works on GPU modules only
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
            model = DDP(net, device_ids=[device.index])
        else:  # CPU (gloo): BatchNorm statistics per process (batch / N samples)
            model = DDP(net)
    loss_fn = Stage1Loss()
    opt = _adam([p for p in net.parameters() if p.requires_grad], cfg.lr)
    total_steps = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total_steps)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

    start_epoch, skip, step, best = 0, 0, 0, float("inf")
    if blob is not None:
        tr = blob["train"]
        opt.load_state_dict(tr["optimizer"])
        sched.load_state_dict(tr["scheduler"])
        if tr.get("scaler"):
            scaler.load_state_dict(tr["scaler"])
        start_epoch, skip, step = int(tr["epoch"]), int(tr["batch_in_epoch"]), int(tr["step"])
        best = float(tr.get("best", float("inf")))
        if tr.get("steps_per_epoch") != steps_per_epoch:
            raise InputError(f"--resume: the data or batch changed ({tr.get('steps_per_epoch')} steps per epoch in last.pt, now {steps_per_epoch})")
        _set_rng_state(tr["rng"])
        saved_epochs = json.loads(tr.get("config") or "{}").get("epochs")
        if saved_epochs not in (None, cfg.epochs):
            _notice(f"--resume: --epochs {cfg.epochs} differs from the run's {saved_epochs}; the learning rate keeps the "
                    f"original cosine schedule over {saved_epochs} epochs", rank)
        if start_epoch >= cfg.epochs:
            _notice(f"--resume: last.pt already finished {start_epoch} of {cfg.epochs} epochs", rank)

    # logs (rank 0)
    tlog = vlog = tb = None
    if rank == 0:
        if blob is not None:
            _truncate_csv(out / "train_log.csv", "step", step)
            _truncate_csv(out / "val_log.csv", "step", step)
        tlog = _CsvLog(out / "train_log.csv", TRAIN_COLUMNS, append=blob is not None)
        vlog = _CsvLog(out / "val_log.csv", VAL_COLUMNS, append=blob is not None)
        try:
            from torch.utils.tensorboard import SummaryWriter

            tb = SummaryWriter(str(out / "tb"), purge_step=step if blob is not None else None)
        except Exception:  # noqa: BLE001 - tensorboard is optional
            _notice("TensorBoard logging skipped (the tensorboard package is not installed)", rank)

        with atomic_write(out / "config.json", "w") as fh:
            json.dump(dict(asdict(cfg), world=world, steps_per_epoch=steps_per_epoch, data_summary=desc, device=str(device)), fh, indent=1)
        print(f"ihmr train stage1: {desc['train']} training / {desc['val']} validation images (labels: {desc['labels']}), "
              f"{cfg.backbone} at {cfg.input_size} px, {world} process(es) on {device}, {steps_per_epoch} steps per epoch", flush=True)

    loader_kw: dict[str, Any] = dict(num_workers=cfg.workers, pin_memory=device.type == "cuda")
    if cfg.workers > 0:
        loader_kw["persistent_workers"] = False
    val_loader = (torch.utils.data.DataLoader(val_set, batch_size=max(bpr, 1), shuffle=False, **loader_kw)
                  if val_set is not None and rank == 0 else None)

    def checkpoint(epoch: int, batch_in_epoch: int, path: Path, extra: Optional[dict] = None) -> None:
        train_state = dict(
            epoch=epoch, batch_in_epoch=batch_in_epoch, step=step, steps_per_epoch=steps_per_epoch, best=best,
            optimizer=opt.state_dict(), scheduler=sched.state_dict(), scaler=scaler.state_dict() if scaler.is_enabled() else None,
            rng=_rng_state(), config=json.dumps(asdict(cfg)), world=world,
        )
        save_stage1(path, net, arch, train=train_state, info=dict(data=str(cfg.data), **desc, **(extra or {})))

    t_start = time.perf_counter()
    t_plot = t_start
    deadline = t_start + cfg.minutes * 60.0 if cfg.minutes else None
    stop_reason = "done"
    last_val: dict = {}
    model.train()
    from tqdm import tqdm

    epoch = start_epoch
    done_epochs = start_epoch
    try:
        for epoch in range(start_epoch, cfg.epochs):
            sampler.epoch = epoch
            sampler.skip_batches = skip if epoch == start_epoch else 0
            train_set.epoch = epoch
            loader = torch.utils.data.DataLoader(train_set, batch_size=bpr, sampler=sampler, drop_last=True, **loader_kw)
            bar = tqdm(total=steps_per_epoch, initial=sampler.skip_batches, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="step",
                       disable=not (cfg.progress and rank == 0), dynamic_ncols=True, file=sys.stderr)
            batch_in_epoch = sampler.skip_batches
            t_last = time.perf_counter()
            stop = False
            for b in loader:
                b = {k: v.to(device, non_blocking=True) for k, v in b.items()}
                with torch.autocast(device.type, dtype=amp_dtype, enabled=use_amp):
                    out_ = model(b["image"])
                with torch.autocast(device.type, enabled=False):
                    out_ = _to_float(out_) if use_amp else out_
                    loss, terms = loss_fn(out_, targets_from_batch(b))
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                lr = opt.param_groups[0]["lr"]
                sched.step()
                step += 1
                batch_in_epoch += 1
                # global mean of the loss and its terms over the processes (for the log only)
                names = sorted(terms)
                vals = torch.stack([loss.detach().float(), *[terms[k].detach().float() for k in names]])
                if world > 1:
                    import torch.distributed as dist

                    dist.all_reduce(vals)
                    vals /= world
                now = time.perf_counter()
                if rank == 0:
                    row = dict(epoch=epoch + 1, step=step, lr=lr, loss=float(vals[0]), seconds=now - t_last,
                               images_per_s=cfg.batch / max(now - t_last, 1e-9))
                    row.update({k: float(v) for k, v in zip(names, vals[1:])})
                    tlog.write(row)
                    if tb is not None:
                        tb.add_scalar("train/loss", row["loss"], step)
                        tb.add_scalar("train/lr", lr, step)
                        for k in names:
                            tb.add_scalar(f"train/{k}", row[k], step)
                    bar.set_postfix(loss=f"{row['loss']:.4g}", lr=f"{lr:.2e}", refresh=False)
                bar.update(1)
                t_last = now
                if cfg.max_steps is not None and step >= cfg.max_steps:
                    stop, stop_reason = True, "max_steps"
                elif deadline is not None and _agree(now >= deadline, world, device):
                    stop, stop_reason = True, "minutes"
                if stop:
                    break
            bar.close()
            if stop and batch_in_epoch < steps_per_epoch:
                if rank == 0:
                    checkpoint(epoch, batch_in_epoch, out / "last.pt")
                break
            # end of epoch: validate, checkpoint
            if rank == 0:
                t0 = time.perf_counter()
                last_val = validate(net, val_loader, loss_fn, device) if val_loader is not None else {}
                if last_val:
                    vlog.write(dict(epoch=epoch + 1, step=step, seconds=time.perf_counter() - t0, **last_val))
                    if tb is not None:
                        for k, v in last_val.items():
                            tb.add_scalar(f"val/{k}", v, step)
                    print(f"epoch {epoch + 1}: val MPJPE params {last_val['mpjpe_params']:.1f} mm, joint head "
                          f"{last_val['mpjpe_head']:.1f} mm; I-MPJPE params {last_val['i_mpjpe_params']:.1f} mm, "
                          f"joint head {last_val['i_mpjpe_head']:.1f} mm", flush=True)
                    if math.isfinite(last_val["mpjpe_params"]) and last_val["mpjpe_params"] < best:
                        best = last_val["mpjpe_params"]
                        checkpoint(epoch + 1, 0, out / "best.pt", extra=dict(val_metrics={k: float(v) for k, v in last_val.items()}))
                checkpoint(epoch + 1, 0, out / "last.pt")
                if time.perf_counter() - t_plot > 30.0:  # the plot costs about a second: at most twice a minute
                    plot_curve(out)
                    t_plot = time.perf_counter()
            done_epochs = epoch + 1
            if stop:
                break
    finally:
        for h in (tlog, vlog):
            if h is not None:
                h.close()
        if tb is not None:
            tb.close()
    if rank == 0:
        plot_curve(out)
    elapsed = time.perf_counter() - t_start
    summary = dict(out=str(out), steps=step, epochs_done=done_epochs, stopped=stop_reason, seconds=round(elapsed, 2),
                   world=world, best_val_mpjpe=best if math.isfinite(best) else None, last_val=last_val, **desc)
    return summary


def _adam(params, lr: float) -> torch.optim.Optimizer:
    """Adam, fused where the device supports it (on CPU about 10x faster than the per-tensor loop)."""
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):
        return torch.optim.Adam(params, lr=lr, foreach=True)


def _agree(flag: bool, world: int, device) -> bool:
    """All processes stop at the same step: the deadline counts if any process has passed it."""
    if world == 1:
        return flag
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def _to_float(out):
    """A :class:`Stage1Output` with floating tensors cast to float32 (the loss runs in fp32)."""
    import dataclasses

    def f(x):
        if isinstance(x, Tensor) and x.is_floating_point():
            return x.float()
        if isinstance(x, dict):
            return {k: f(v) for k, v in x.items()}
        return x

    return dataclasses.replace(out, **{fl.name: f(getattr(out, fl.name)) for fl in dataclasses.fields(out)})
