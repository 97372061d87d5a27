"""Stage-I network weights: the architecture record (:class:`Stage1Arch`) and save / load of a
:class:`~ihmr.stage1.network.Stage1Net` with its weights and (optionally) training state, in the
checkpoint file format of :mod:`ihmr.io.checkpoints`.

A stage-I weights file is a ``torch.save`` dict of plain types and tensors, loaded with
``weights_only=True``::

    {"format": "ihmr-stage1", "version": 1,
     "arch": {backbone, feature_dim, num_iters, init_cam_scale, heatmap_size, depth_bins,
              depth_range, deconv_channels, num_deconv, input_size, model},
     "state_dict": {...},                       # Stage1Net weights
     "train": {"epoch", "step", "optimizer", "scheduler", "scaler", "rng", "config", ...} or None,
     "info": {...}}                              # free-form facts (data, figures)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch

from ihmr.errors import InputError, ModelFileError
from ihmr.handmodel.two_hands import TwoHands
from ihmr.io.checkpoints import load_matching_state, read_checkpoint, write_checkpoint
from ihmr.stage1.network import Stage1Net

__all__ = ["Stage1Arch", "save_stage1", "load_stage1", "read_stage1_checkpoint", "default_stage1_path", "export_stage1", "checkpoint_hands"]

FORMAT = "ihmr-stage1"
VERSION = 1


@dataclass
class Stage1Arch:
    """Constructor arguments of :class:`~ihmr.stage1.network.Stage1Net` that a checkpoint records
    (``input_size``: crop side the network was trained on; ``model``: hand model name)."""

    backbone: str = "resnet18"
    feature_dim: int = 1024
    num_iters: int = 3
    init_cam_scale: float = 5.0
    heatmap_size: int = 32
    depth_bins: int = 32
    depth_range: float = 0.2
    deconv_channels: int = 256
    num_deconv: int = 2
    input_size: int = 224
    model: str = "open"
    extra: dict = field(default_factory=dict)

    def build(self, hand_model=None):
        """A fresh :class:`Stage1Net` with this architecture (no pretrained weights)."""
        return Stage1Net(
            backbone=self.backbone, feature_dim=self.feature_dim, num_iters=self.num_iters,
            init_cam_scale=self.init_cam_scale, heatmap_size=self.heatmap_size, depth_bins=self.depth_bins,
            depth_range=self.depth_range, deconv_channels=self.deconv_channels, num_deconv=self.num_deconv,
            hand_model=hand_model,
        )


def save_stage1(path, model, arch: Stage1Arch, train: Optional[dict] = None, info: Optional[dict] = None) -> Path:
    """Write a checkpoint atomically (``model``: a Stage1Net, or one wrapped in DDP)."""
    net = getattr(model, "module", model)
    blob = {
        "format": FORMAT, "version": VERSION, "arch": asdict(arch),
        "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
        "train": train, "info": dict(info or {}),
    }
    return write_checkpoint(path, blob)


def default_stage1_path(model: str = "open") -> Path:
    """The stage-I network shipped with the package for a hand model (``--checkpoint default``)."""
    return Path(__file__).resolve().parent / "assets" / f"stage1_{model}.pt"


def _resolve(path) -> Path:
    if str(path) != "default":
        return Path(path)
    p = default_stage1_path()
    if not p.is_file():
        raise InputError(f"no shipped stage-I network at {p}; train one with `ihmr train stage1` and pass its best.pt")
    return p


def read_stage1_checkpoint(path) -> dict[str, Any]:
    """The checkpoint dict, validated (format, version); ``"default"``: the shipped network. Raises
    :class:`InputError`."""
    return read_checkpoint(_resolve(path), FORMAT, VERSION, "stage-I checkpoint")


def export_stage1(src, dst, info: Optional[dict] = None) -> Path:
    """Write ``src``'s network as a file to ship: weights in float16 (they load back into float32),
    no training state, ``info`` merged into the checkpoint's. Returns ``dst``."""
    blob = read_stage1_checkpoint(src)
    blob["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in blob["state_dict"].items()}
    blob["train"] = None
    blob["info"] = dict(blob.get("info") or {}, **(info or {}))
    return write_checkpoint(dst, blob)


def load_stage1(path, hand_model=None, map_location: str | torch.device = "cpu"):
    """``(Stage1Net in eval mode, Stage1Arch, info)`` from a checkpoint (``"default"``: the shipped
    one); shapes are checked and a mismatch names the tensor."""
    path = _resolve(path)
    blob = read_stage1_checkpoint(path)
    try:
        arch = Stage1Arch(**blob["arch"])
    except TypeError as e:
        raise InputError(f"{path}: bad architecture record ({e})") from e
    net = arch.build(hand_model).float()
    load_matching_state(net, blob["state_dict"], path, f" (a {arch.backbone} network)")
    return net.to(map_location).eval(), arch, dict(blob.get("info") or {})


def checkpoint_hands(arch: Stage1Arch, path, dtype: torch.dtype = torch.float64) -> TwoHands:
    """The two-hand model a checkpoint's network was trained for (``arch.model``); an
    :class:`InputError` that names the checkpoint when that model cannot be loaded here."""
    try:
        return TwoHands(arch.model, dtype=dtype)
    except (InputError, ModelFileError) as e:
        raise InputError(f"{path}: the network was trained for the hand model {arch.model!r}, which cannot be loaded here ({e})") from e
