"""Stage-I training samples: the dataset of (augmented) crops with labels, the loss targets of a
batch, and the resumable, sharded sampler.

Data: InterHand2.6M-format splits (real files or ``ihmr synth`` output) through
:mod:`ihmr.data.interhand`, parameter labels from :mod:`ihmr.stage1.labels`, augmentation from
:mod:`ihmr.stage1.augment` seeded per ``(seed, epoch, index)``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Iterator, Optional

import numpy as np
import torch
from torch import Tensor

from ihmr.data.interhand import InterHandDataset, find_split_files, load_interhand
from ihmr.errors import InputError
from ihmr.geometry.crop import normalise_image, pixels_to_normalised
from ihmr.stage1.augment import AugmentConfig, augment_sample
from ihmr.stage1.config import TrainStage1Config
from ihmr.stage1.labels import param_labels
from ihmr.stage1.loss import Stage1Targets

__all__ = ["Stage1TrainData", "ResumableShardSampler", "targets_from_batch", "build_data"]


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


def build_data(cfg: TrainStage1Config, hands, rank: int) -> tuple[Stage1TrainData, Optional[Stage1TrainData], dict]:
    """Train / validation :class:`Stage1TrainData` (validation ``None`` when empty) and a description
    ``{train, val, labels}`` (sample counts and the label source). Without ``cfg.val_split`` a fixed
    ``cfg.val_fraction`` of the training split (drawn with ``cfg.seed``) is held out. Only rank 0
    shows the loader's warnings."""

    def load(split: str):
        files = find_split_files(cfg.data, split)
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
