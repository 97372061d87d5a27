"""The two-hand layer of Eq. 2: right hand at the origin, left hand at tau."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
from torch import Tensor, nn

from ihmr.errors import InputError
from ihmr.handmodel.layer import HandLayer, check_param
from ihmr.handmodel.mano_pkl import load_mano_dir, load_mano_pkl
from ihmr.handmodel.open_model import load_open_model
from ihmr.version import __version__

__all__ = ["TwoHandsOutput", "TwoHands", "load_hand_model", "load_hand_data", "model_info"]

ModelSource = Union[str, Path]


def load_hand_data(source: ModelSource = "open", side: str = "right"):
    """Arrays of one hand model: ``"open"`` (packaged, CC0), a MANO folder, or a MANO ``.pkl``."""
    if side not in ("right", "left"):
        raise InputError(f"side must be 'right' or 'left', got {side!r}")
    if isinstance(source, str) and source == "open":
        return load_open_model(side)
    p = Path(source)
    if p.suffix == ".npz":
        return load_open_model(side, path=p)

    if p.suffix == ".pkl":
        return load_mano_pkl(p, side=side)
    return load_mano_dir(p, side)


def load_hand_model(source: ModelSource = "open", side: str = "right", **kwargs) -> HandLayer:
    """One hand as a :class:`HandLayer`.

    Args:
        source: ``"open"`` for the packaged open model, a folder holding ``MANO_RIGHT.pkl`` /
            ``MANO_LEFT.pkl``, a MANO ``.pkl`` file, or an open-model ``.npz``.
        side: ``"right"`` or ``"left"``.
        **kwargs: passed to :class:`HandLayer` (``use_pca``, ``num_pca_comps``, ``dtype``).
    """
    return HandLayer(load_hand_data(source, side), **kwargs)


@dataclass
class TwoHandsOutput:
    """Output of :class:`TwoHands` (metres; hand index 0 = right, 1 = left).

    Attributes:
        vertices: ``(B, 2, V, 3)``.
        joints: ``(B, 2, 21, 3)`` MANO order per hand.
        beta, phi, theta, tau: the inputs, for convenience.
    """

    vertices: Tensor
    joints: Tensor
    beta: Tensor
    phi: Tensor
    theta: Tensor
    tau: Tensor


class TwoHands(nn.Module):
    """Two hand models as in Eq. 2 of the paper.

    The right wrist joint is at the origin and the left wrist joint at ``tau``; each hand's global
    orientation ``phi`` rotates it about its own wrist.

    Args:
        model: ``"open"`` (default, packaged) or a folder with the official MANO pickles.
        dtype: dtype of the model buffers and outputs.

    Attributes:
        faces: ``(2, F, 3)`` closed, outward-oriented triangles (index 0 right, 1 left).
    """

    def __init__(self, model: ModelSource = "open", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.right = load_hand_model(model, "right", dtype=dtype)
        self.left = load_hand_model(model, "left", dtype=dtype)
        if self.right.faces.shape != self.left.faces.shape:
            raise InputError(
                f"right and left models have different face counts {tuple(self.right.faces.shape)} "
                f"vs {tuple(self.left.faces.shape)}"
            )
        self.register_buffer("faces", torch.stack([self.right.faces, self.left.faces]), persistent=False)
        self.model_name = self.right.data.name

    @property
    def num_vertices(self) -> int:
        return self.right.num_vertices

    def forward(self, beta: Tensor, phi: Tensor, theta: Tensor, tau: Tensor, vertex_ids: Optional[Tensor] = None) -> TwoHandsOutput:
        """Pose both hands.

        Args:
            beta: ``(B, 2, 10)`` shapes.
            phi: ``(B, 2, 3)`` global orientations (axis-angle, radians).
            theta: ``(B, 2, 45)`` finger poses relative to the flat hand.
            tau: ``(B, 3)`` left wrist minus right wrist, metres.
            vertex_ids: ``(n,)`` int64 vertex ids: pose only these vertices of each hand
                (``vertices (B, 2, n, 3)``; the joints are unchanged).

        Returns:
            :class:`TwoHandsOutput`.
        """
        if not isinstance(beta, Tensor) or beta.ndim < 1:
            raise InputError("beta must be a (B, 2, 10) tensor")
        B = beta.shape[0]
        if B == 0:
            raise InputError("empty batch (B = 0)")
        K = self.right.num_betas
        check_param("beta", beta, (B, 2, K))
        check_param("phi", phi, (B, 2, 3))
        check_param("theta", theta, (B, 2, 45))
        check_param("tau", tau, (B, 3))
        out_r = self.right(beta[:, 0], phi[:, 0], theta[:, 0], vertex_ids=vertex_ids)
        out_l = self.left(beta[:, 1], phi[:, 1], theta[:, 1], vertex_ids=vertex_ids)
        # Put each wrist joint at its place: right at the origin, left at tau.
        off_r = -out_r.joints[:, :1]
        off_l = tau[:, None].to(out_l.joints.dtype) - out_l.joints[:, :1]
        verts = torch.stack([out_r.vertices + off_r, out_l.vertices + off_l], dim=1)
        joints = torch.stack([out_r.joints + off_r, out_l.joints + off_l], dim=1)
        return TwoHandsOutput(vertices=verts, joints=joints, beta=beta, phi=phi, theta=theta, tau=tau)


def model_info(model: ModelSource = "open") -> dict:
    """Facts about a two-hand model (what ``ihmr info`` prints): the ihmr version, the model's name,
    vertex / face / shape-component counts of one hand, whether it has joint limits, its ``meta``.

    Loads both hands (:class:`TwoHands`), so a mismatched pair raises as it would there.
    """
    d = TwoHands(model).right.data
    return dict(
        ihmr=__version__, model=d.name, vertices=d.num_vertices, faces=int(d.faces.shape[0]),
        betas=d.num_betas, has_joint_limits=d.joint_limits is not None, meta=d.meta,
    )
