"""Parameter labels of stage-I training samples, in the camera frame.

Sources, in the order ``labels="auto"`` tries them: ``annotations/<split>/ihmr_params.json``
(``ihmr synth``'s exact parameters, keyed capture -> frame, read by
:func:`ihmr.data.synth.read_ihmr_params`), else the NeuralAnnot MANO file of the split, else
none (joint losses only). Labels are rotated into the camera frame (``phi_cam = log(R R(phi))``,
``tau_cam = R tau``) because the network's hands live in a camera-aligned frame (weak-perspective
projection of x/y).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ihmr.data.synth import PARAMS_FILE, read_ihmr_params
from ihmr.errors import InputError
from ihmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle

__all__ = ["param_labels"]

log = logging.getLogger(__name__)


def param_labels(ann, ann_dir: Path, hands, mode: str = "auto") -> tuple[Optional[dict[str, np.ndarray]], str]:
    """Per-sample parameter labels in the **camera** frame, or ``(None, "none")``.

    Returns ``({beta (N, 2, 10), phi (N, 2, 3), theta (N, 2, 45), tau (N, 3) or None, valid (N, 2)},
    source)``. ``ihmr_params.json`` (``ihmr synth``; capture -> frame -> {model, beta, phi, theta, tau,
    ...}, model frame = world frame) gives exact labels for the hand model it names; the NeuralAnnot
    file gives ``pose = phi + (theta - hands_mean)`` and ``shape`` (``tau`` then comes from the 3D joints);
    in ``auto`` mode it is used only with a MANO hand model (its parameters are MANO's).
    """
    path = ann_dir / PARAMS_FILE
    if mode in ("auto", "ihmr") and path.is_file():
        rec = read_ihmr_params(path, ann.capture, ann.frame_idx)
        beta, phi, theta, tau, models = rec.beta, rec.phi, rec.theta, rec.tau, rec.models
        valid = np.repeat(rec.valid[:, None], 2, axis=1)
        if models and models != {hands.model_name}:
            if mode == "ihmr":
                raise InputError(f"{path}: parameters are for hand model(s) {sorted(models)}, training uses {hands.model_name!r}")
            # the folder's NeuralAnnot file was written for the same model: neither fits
            log.warning("%s (and the MANO file beside it) are for %s, not %r: training without parameter labels "
                        "(joint losses only)", path.name, sorted(models), hands.model_name)
            return None, "none"
        else:
            return _to_camera(ann, dict(beta=beta, phi=phi, theta=theta, tau=tau, valid=valid)), "ihmr_params.json"
    if mode == "auto" and ann.has_mano and hands.model_name == "open":
        log.warning("the NeuralAnnot MANO parameters do not fit the open hand model: training without parameter labels "
                    "(joint losses only); --model MANO_DIR uses them, --labels mano forces them")
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
