"""Stage I: initial two-hand parameters: the CNN (:class:`Stage1Net`, paper Sec. 3.2) with its
losses, and analytic IK from 3D joints."""

from ihmr.stage1.ik import IKResult, hand_ik, kabsch_rotation, pair_ik
from ihmr.stage1.loss import LOSS_WEIGHTS, Stage1Loss, Stage1Targets
from ihmr.stage1.network import (
    NUM_PARAMS,
    Stage1Net,
    Stage1Output,
    mean_params,
    pack_params,
    soft_argmax_3d,
    unpack_params,
)

__all__ = [
    "IKResult",
    "hand_ik",
    "kabsch_rotation",
    "pair_ik",
    "LOSS_WEIGHTS",
    "NUM_PARAMS",
    "Stage1Loss",
    "Stage1Net",
    "Stage1Output",
    "Stage1Targets",
    "mean_params",
    "pack_params",
    "soft_argmax_3d",
    "unpack_params",
]
