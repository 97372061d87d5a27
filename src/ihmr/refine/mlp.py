"""IHMR-MLP: learned per-factor refiners (Sec. 3.3.2, A.4); the refinement with verification is
:mod:`ihmr.refine.mlp_refine`.

One MLP per factor (tau, phi, theta, beta; layers 512-256-128-K, ReLU, near-zero initialised
residual output) proposes a correction of its factor; verification keeps it for a sample only if
the 3D-joint error against the joint head strictly decreases, the deepest penetration does not
grow and the collision error strictly decreases (reference_notes, "MLP refiners") or, with our
contact criterion, an evidenced gap closes without collision (:mod:`ihmr.refine.mlp_refine`).

Input of every MLP (``(B, D)``, standardised with statistics stored in the checkpoint):

==========================  =====  =====================================================
part                         size   content
==========================  =====  =====================================================
parameters                   119   beta (2x10), phi (2x3), theta (2x45), tau (3)
joint-head 3D joints         126   ``(2, 21, 3)`` m, right wrist at the origin
joint-head 2D joints          84   ``(2, 21, 2)`` centred on their mean, divided by their extent
current 3D joints            126   forward kinematics of the current parameters (right-wrist aligned)
joint-head - current         126   the residual the refiner should explain
collision                      8   per hand: proxy depth sum, and the direction out of the other hand
image feature                  F   stage-I feature when a network is used (``feature_dim``, else 0)
==========================  =====  =====================================================

The 2D joints are normalised per sample so the same refiners serve weak-perspective inputs
(normalised coordinates) and the image demo (pixels); the camera is not an input. The collision
part and the verification use the sphere proxy (:mod:`ihmr.collision.spheres`), which makes the
refiner hundreds of times faster than exact penetration; ``collision="exact"`` verifies with exact
depths instead (slow, for checking).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from ihmr.collision.spheres import SphereProxy, build_sphere_proxy
from ihmr.errors import InputError
from ihmr.handmodel.two_hands import TwoHands
from ihmr.io.checkpoints import load_matching_state, read_checkpoint, write_checkpoint
from ihmr.refine.factorized import FACTORS

__all__ = [
    "FACTOR_DIMS",
    "INPUT_DIM",
    "MLPRefinerConfig",
    "FactorMLP",
    "MLPRefiner",
    "PairState",
    "ProxySubset",
    "load_refiner",
    "default_refiner_path",
]

#: Output size K of each factor's MLP (both hands).
FACTOR_DIMS = {"tau": 3, "phi": 6, "theta": 90, "beta": 20}
#: Input size without the image feature.
INPUT_DIM = 119 + 126 + 84 + 126 + 126 + 8
#: Residual units: the MLP output is multiplied by these (m, rad, rad, shape units).
OUTPUT_SCALE = {"tau": 0.01, "phi": 0.05, "theta": 0.05, "beta": 0.2}
CHECKPOINT_FORMAT = "ihmr-mlp-refiner"
CHECKPOINT_VERSION = 1


@dataclass
class MLPRefinerConfig:
    """Architecture facts stored in a checkpoint (plain types only).

    Attributes:
        feature_dim: size of the stage-I image feature (0: none, the MediaPipe + IK path).
        hidden: hidden layer widths.
        model: hand model name the refiners were trained for ("open" or "mano").
        num_betas: shape parameters per hand.
        info: free-form training facts (data, seed, epochs, figures).
    """

    feature_dim: int = 0
    hidden: tuple[int, ...] = (512, 256, 128)
    model: str = "open"
    num_betas: int = 10
    info: dict = field(default_factory=dict)


class FactorMLP(nn.Module):
    """``D -> 512 -> 256 -> 128 -> K`` with ReLU; the last layer starts near zero so an untrained
    refiner proposes (almost) no change."""

    def __init__(self, in_dim: int, out_dim: int, hidden: tuple[int, ...] = (512, 256, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        d = in_dim
        for h in hidden:
            layers += [nn.Linear(d, h), nn.ReLU()]
            d = h
        last = nn.Linear(d, out_dim)
        with torch.no_grad():
            last.weight.mul_(1e-3)
            last.bias.zero_()
        self.net = nn.Sequential(*layers, last)

    def forward(self, x: Tensor) -> Tensor:
        """``(B, D) -> (B, K)``."""
        return self.net(x)


@dataclass
class ProxySubset:
    """The vertices the proxy verification reads: the queries, the anchors and the corners of the
    anchors' faces (their normals), about two thirds of a hand. Posing only these (and the joints)
    gives the same proxy measures as posing whole meshes (:func:`evaluate_state`).

    Attributes:
        ids: ``(n,)`` int64 sorted vertex ids (the same for both hands).
        proxy: the sphere proxy renumbered to positions in ``ids``.
        faces: ``(2, F', 3)`` the anchors' faces (in mesh order) renumbered to positions in ``ids``.
    """

    ids: Tensor
    proxy: SphereProxy
    faces: Tensor

    @classmethod
    def build(cls, proxy: SphereProxy, faces: Tensor) -> "ProxySubset":
        """From a model's proxy and its faces ``(2, F, 3)``."""
        near = torch.isin(faces, proxy.anchors).any(-1).any(0)  # (F,) faces around an anchor (either hand)
        ids = torch.unique(torch.cat([proxy.queries, proxy.anchors, faces[:, near].flatten()]))
        pos = torch.full((proxy.num_vertices,), -1, dtype=torch.long)
        pos[ids] = torch.arange(len(ids))
        return cls(ids, proxy.remap(pos[proxy.anchors], pos[proxy.queries]), pos[faces[:, near]])


@dataclass
class PairState:
    """Current parameters of a batch and what verification needs about them.

    Attributes:
        params: beta ``(B, 2, 10)``, phi ``(B, 2, 3)``, theta ``(B, 2, 45)``, tau ``(B, 3)``.
        vertices: ``(B, 2, V, 3)``, or ``(B, 2, n, 3)`` the vertices ``subset.ids`` only;
            joints: ``(B, 2, 21, 3)`` (right wrist at the origin).
        e_col: ``(B,)`` collision error (proxy or exact, m).
        e_max: ``(B,)`` the deepest penetration of the same measure (proxy: query vertex; exact: MAX-P; m).
        col_hand: ``(B, 2)`` proxy collision per hand; push: ``(B, 2, 3)`` proxy push directions.
        e3d: ``(B,)`` 3D-joint error against the joint head (m^2).
        subset: the :class:`ProxySubset` ``vertices`` holds, ``None`` for whole meshes.
    """

    params: dict[str, Tensor]
    vertices: Tensor
    joints: Tensor
    e_col: Tensor
    e_max: Tensor
    col_hand: Tensor
    push: Tensor
    e3d: Tensor
    subset: Optional[ProxySubset] = None

    def select(self, ok: Tensor, other: "PairState", rows: Tensor) -> "PairState":
        """This state with rows ``rows[ok]`` replaced by ``other``'s rows ``ok`` (``other`` holds
        the rows ``rows`` only)."""
        idx = rows[ok]

        def put(a: Tensor, b: Tensor) -> Tensor:
            return a.index_copy(0, idx, b[ok])

        return PairState(
            params={k: put(v, other.params[k]) for k, v in self.params.items()},
            vertices=put(self.vertices, other.vertices), joints=put(self.joints, other.joints),
            e_col=put(self.e_col, other.e_col), e_max=put(self.e_max, other.e_max), col_hand=put(self.col_hand, other.col_hand),
            push=put(self.push, other.push), e3d=put(self.e3d, other.e3d), subset=self.subset,
        )

    def rows(self, idx: Tensor) -> "PairState":
        return PairState({k: v[idx] for k, v in self.params.items()}, self.vertices[idx], self.joints[idx],
                         self.e_col[idx], self.e_max[idx], self.col_hand[idx], self.push[idx], self.e3d[idx], self.subset)


def normalise_2d(j2d: Tensor) -> Tensor:
    """``(B, 2, 21, 2)`` joints centred on their mean and divided by their largest extent."""
    flat = j2d.flatten(1, 2)
    centre = flat.mean(1, keepdim=True)
    extent = (flat.amax(1) - flat.amin(1)).amax(-1).clamp_min(1e-9)
    return (j2d - centre[:, None]) / extent[:, None, None, None]


class MLPRefiner(nn.Module):
    """The four factor MLPs, the input standardisation and the output scales.

    Args:
        config: :class:`MLPRefinerConfig`.
    """

    def __init__(self, config: Optional[MLPRefinerConfig] = None) -> None:
        super().__init__()
        self.config = config or MLPRefinerConfig()
        d = INPUT_DIM + self.config.feature_dim
        self.mlps = nn.ModuleDict({f: FactorMLP(d, FACTOR_DIMS[f], tuple(self.config.hidden)) for f in FACTORS})
        self.register_buffer("x_mean", torch.zeros(d))
        self.register_buffer("x_std", torch.ones(d))
        self._proxy: dict = {}
        self._subset: dict = {}

    @property
    def input_dim(self) -> int:
        return INPUT_DIM + self.config.feature_dim

    def proxy(self, hands: TwoHands) -> SphereProxy:
        """The sphere proxy of ``hands`` (built once per model and dtype)."""
        v = hands.right.v_template
        key = (hands.model_name, tuple(v.shape), v.dtype, float(v.double().sum()))  # the model, not the object
        if key not in self._proxy:
            self._proxy[key] = build_sphere_proxy(hands).to(hands.right.v_template.dtype)
        return self._proxy[key]

    def proxy_subset(self, hands: TwoHands) -> ProxySubset:
        """The :class:`ProxySubset` of :meth:`proxy` (built once per proxy)."""
        proxy = self.proxy(hands)
        if id(proxy) not in self._subset:
            self._subset[id(proxy)] = ProxySubset.build(proxy, hands.faces)
        return self._subset[id(proxy)]

    def features(self, state: PairState, j3d: Tensor, j2d_n: Tensor, feature: Optional[Tensor]) -> Tensor:
        """Raw (unstandardised) input ``(B, D)``; ``j3d (B, 2, 21, 3)`` right-wrist relative,
        ``j2d_n (B, 2, 21, 2)`` from :func:`normalise_2d`, ``feature (B, F)`` or ``None``."""
        p = state.params
        B = p["tau"].shape[0]
        cur = state.joints - state.joints[:, :1, :1]
        parts = [
            p["beta"].reshape(B, -1), p["phi"].reshape(B, -1), p["theta"].reshape(B, -1), p["tau"],
            j3d.reshape(B, -1), j2d_n.reshape(B, -1), cur.reshape(B, -1), (j3d - cur).reshape(B, -1),
            state.col_hand, state.push.reshape(B, -1),
        ]
        if self.config.feature_dim:
            if feature is None or feature.shape != (B, self.config.feature_dim):
                raise InputError(f"these refiners need a (B, {self.config.feature_dim}) image feature, "
                                 f"got {None if feature is None else tuple(feature.shape)}")
            parts.append(feature)
        elif feature is not None:
            raise InputError("these refiners take no image feature (trained with feature_dim = 0)")
        return torch.cat([x.to(self.x_mean.dtype) for x in parts], 1)

    def forward(self, factor: str, x: Tensor) -> Tensor:
        """Residual of ``factor`` ``(B, K)`` in parameter units for raw inputs ``x (B, D)``."""
        z = (x - self.x_mean) / self.x_std
        return self.mlps[factor](z) * OUTPUT_SCALE[factor]

    # -- checkpoints ---------------------------------------------------------------------------

    def save(self, path: str | Path) -> Path:
        """Write a checkpoint (``torch.save`` of plain types and tensors; loads with ``weights_only``)."""
        cfg = asdict(self.config)
        cfg["hidden"] = list(cfg["hidden"])
        blob = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, "config": cfg,
                "state_dict": {k: v.detach().cpu().clone() for k, v in self.state_dict().items()}}
        return write_checkpoint(path, blob)

    @classmethod
    def load(cls, path: str | Path) -> "MLPRefiner":
        """Load a checkpoint written by :meth:`save`; raise :class:`InputError` on anything else."""
        blob = read_checkpoint(path, CHECKPOINT_FORMAT, CHECKPOINT_VERSION, "refiner checkpoint")
        cfg = dict(blob["config"])
        cfg["hidden"] = tuple(cfg.get("hidden", (512, 256, 128)))
        try:
            config = MLPRefinerConfig(**cfg)
        except TypeError as e:
            raise InputError(f"{path}: bad refiner configuration ({e})") from e
        model = cls(config)
        load_matching_state(model, blob["state_dict"], path,
                            f" (the refiner's input size is {model.input_dim}, feature_dim {config.feature_dim})")
        return model.eval()


def default_refiner_path(model: str = "open") -> Path:
    """The refiners shipped with the package for a hand model."""
    return Path(__file__).resolve().parent / "assets" / f"mlp_refiner_{model}.pt"


def load_refiner(source: str | Path = "default", hands: Optional[TwoHands] = None) -> MLPRefiner:
    """A checkpoint path, or ``"default"`` for the shipped refiners of ``hands``' model."""
    model = "open" if hands is None else hands.model_name
    path = default_refiner_path(model) if str(source) == "default" else Path(source)
    if str(source) == "default" and not path.is_file():
        raise InputError(f"no shipped MLP refiners for the {model!r} hand model; train them with `ihmr train mlp --model ...`")
    ref = MLPRefiner.load(path)
    if hands is not None:
        if ref.config.model != hands.model_name or ref.config.num_betas != hands.right.num_betas:
            raise InputError(f"{path}: refiners trained for the {ref.config.model!r} model with {ref.config.num_betas} betas, "
                             f"used with {hands.model_name!r} / {hands.right.num_betas}")
    return ref
