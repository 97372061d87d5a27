"""``ihmr refine`` on camera-frame pairs (:mod:`ihmr.io.camera_pairs`, what a single-hand estimator
such as HaMeR / WiLoR run on both hands gives): the exact conversion to the internal pair and back,
the joint-head targets, the refinement, and the output in the input's own convention.
:func:`refine_file` is ``ihmr refine``'s entry: it tells the two input conventions apart.

The hand model places a hand's wrist joint at ``J_0(betas)`` whatever the pose (the global
orientation turns the hand about its wrist), so with MANO's ``transl`` (``vertices = MANO(...) +
transl``) the wrist is at ``W = J_0(betas) + transl`` in the camera frame. The internal pair is that
frame moved to the right wrist: ``tau = W_left - W_right``, ``phi`` = the global orientations, and
refined parameters go back with ``transl = W_right + (0 | tau) - J_0(betas)`` (the right wrist stays
where it was). A field whose internal value did not change is written back as it was read, bit for
bit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ihmr.errors import InputError
from ihmr.experiments.refine_runs import evaluate_params, refine_npz, run_mlp
from ihmr.geometry.camera import project_perspective
from ihmr.geometry.rotations import axis_angle_to_matrix, matrix_to_axis_angle, rotation_matrix_error
from ihmr.handmodel import TwoHands
from ihmr.handmodel.mano_pkl import pose_from_mano_convention
from ihmr.io.camera_pairs import CameraPairs, input_convention, read_camera_pairs, write_camera_pairs
from ihmr.joint_order import convert, from_two_hand
from ihmr.pipeline.refiners import E3D_SLACK
from ihmr.refine import RefineConfig, refine_opt
from ihmr.refine.mlp_refine import MLPRefineConfig

__all__ = ["ROTATION_TOL", "rest_wrists", "pair_from_camera", "camera_from_pair", "to_internal", "from_internal",
           "joint_head", "refine_camera_file", "refine_file"]

#: Largest ``max(|R^T R - I|, |det R - 1|)`` of a given rotation matrix (float32 outputs: ~1e-6).
ROTATION_TOL = 1e-4
_DT = torch.float64


def rest_wrists(hands: TwoHands, beta: Tensor) -> Tensor:
    """``(N, 2, 3)`` each hand's wrist joint ``J_0(betas)`` in its model frame (m): where the layer puts
    it for every pose (without ``transl``)."""
    return torch.stack([hands.right(betas=beta[:, 0]).rest_joints[:, 0], hands.left(betas=beta[:, 1]).rest_joints[:, 0]], 1)


def pair_from_camera(hands: TwoHands, beta: Tensor, transl: Tensor) -> tuple[Tensor, Tensor]:
    """MANO ``transl (N, 2, 3)`` (hand 0 right) -> ``tau (N, 3)`` = left wrist - right wrist and the
    right wrist ``(N, 3)`` in the camera frame (m)."""
    w = rest_wrists(hands, beta) + transl
    return w[:, 1] - w[:, 0], w[:, 0]


def camera_from_pair(hands: TwoHands, beta: Tensor, tau: Tensor, wrist: Tensor) -> Tensor:
    """Inverse of :func:`pair_from_camera`: ``transl (N, 2, 3)`` putting the right wrist at ``wrist``
    and the left wrist at ``wrist + tau``."""
    return torch.stack([wrist, wrist + tau], 1) - rest_wrists(hands, beta)


def _check_rotations(pairs: CameraPairs, mats: Tensor, given: np.ndarray, name: str) -> None:
    err = rotation_matrix_error(mats).reshape(len(pairs), 2, -1).amax(-1).numpy()
    bad = np.argwhere(given & (err > ROTATION_TOL))
    if len(bad):
        n, h = bad[0]
        raise InputError(f"{pairs.field(n, h, name)} is not a rotation matrix (max(|R^T R - I|, |det R - 1|) = "
                         f"{err[n, h]:.3g} > {ROTATION_TOL:g})")


def _hands_mean(hands: TwoHands, pairs: CameraPairs) -> Tensor:
    means = [layer.data.hands_mean for layer in (hands.right, hands.left)]
    if any(m is None for m in means):
        raise InputError(f"{pairs.path}: hand_pose_space 'mean' needs a hand model with MANO's mean pose "
                         f"(--model DIR with the MANO files); the {hands.model_name!r} model has none")
    return torch.as_tensor(np.stack(means), dtype=_DT)


def to_internal(pairs: CameraPairs, hands: TwoHands) -> tuple[dict[str, Tensor], Tensor]:
    """The internal pair of ``pairs``: ``params`` (float64 ``beta (N, 2, K)``, ``phi (N, 2, 3)``,
    ``theta (N, 2, 45)`` relative to the flat hand, ``tau (N, 3)``) and the right wrist ``(N, 3)`` in the
    camera frame. InputError for betas that do not match the model, matrices that are not rotations,
    ``hand_pose_space`` ``"mean"`` with a model without a mean pose."""
    K = hands.right.num_betas
    if pairs.betas.shape[-1] != K:
        raise InputError(f"{pairs.field(0, 0, 'betas')} has {pairs.betas.shape[-1]} betas; the {hands.model_name!r} model has {K}")
    t = lambda a: torch.as_tensor(a, dtype=_DT)  # noqa: E731
    o_given = np.array([[s[-2:] == (3, 3) for s in row] for row in pairs.orient_shape])
    p_given = np.array([[len(s) == 3 for s in row] for row in pairs.pose_shape])
    _check_rotations(pairs, t(pairs.orient_mat), o_given, "global_orient")
    _check_rotations(pairs, t(pairs.pose_mat), p_given, "hand_pose")
    phi = torch.where(t(o_given)[..., None] > 0, matrix_to_axis_angle(t(pairs.orient_mat)), t(pairs.orient_aa))
    theta = torch.where(t(p_given)[..., None] > 0, matrix_to_axis_angle(t(pairs.pose_mat)).flatten(2), t(pairs.pose_aa))
    if pairs.pose_space == "mean":
        theta = pose_from_mano_convention(theta, _hands_mean(hands, pairs))
    beta = t(pairs.betas)
    tau, wrist = pair_from_camera(hands, beta, t(pairs.transl))
    return {"beta": beta, "phi": phi, "theta": theta, "tau": tau}, wrist


def from_internal(pairs: CameraPairs, hands: TwoHands, before: dict[str, Tensor], after: dict[str, Tensor],
                  wrist: Tensor) -> dict[str, np.ndarray]:
    """Refined internal parameters ``after`` back in ``pairs``' convention (the values of
    :func:`ihmr.io.camera_pairs.write_camera_pairs`). ``before`` / ``wrist``: what :func:`to_internal`
    gave; every hand's field whose internal value is unchanged keeps its input value exactly."""
    same = lambda k: (after[k] == before[k]).flatten(2).all(-1)  # noqa: E731  (N, 2) hand's factor unchanged
    keep = lambda mask, new, old: np.where(mask.numpy().reshape(mask.shape + (1,) * (old.ndim - 2)), old, new)  # noqa: E731
    theta = after["theta"]
    if pairs.pose_space == "mean":
        theta = theta - _hands_mean(hands, pairs)
    transl = camera_from_pair(hands, after["beta"], after["tau"], wrist)
    tau_same = (after["tau"] == before["tau"]).all(-1)
    transl_same = same("beta") & torch.stack([torch.ones_like(tau_same), tau_same], 1)
    return {
        "orient_aa": keep(same("phi"), after["phi"].numpy(), pairs.orient_aa),
        "orient_mat": keep(same("phi"), axis_angle_to_matrix(after["phi"]).numpy(), pairs.orient_mat),
        "pose_aa": keep(same("theta"), theta.numpy(), pairs.pose_aa),
        "pose_mat": keep(same("theta"), axis_angle_to_matrix(theta.reshape(*theta.shape[:2], 15, 3)).numpy(), pairs.pose_mat),
        "betas": keep(same("beta"), after["beta"].numpy(), pairs.betas),
        "transl": keep(transl_same, transl.numpy(), pairs.transl),
    }


def joint_head(pairs: CameraPairs, hands: TwoHands, params: dict[str, Tensor], wrist: Tensor) -> dict[str, Any]:
    """The refinement's targets: ``j3d (N, 42, 3)`` (m, MANO order, right hand first, right-wrist
    relative): the given ``keypoints_3d``, else the hand's own joints; ``j2d (N, 42, 2)``: the given
    ``keypoints_2d`` (pixels, ``v`` rescaled by ``fx / fy`` about ``cy`` so that one focal length ``fx``
    projects exactly), else the projection of the 3D target; in samples without any 2D keypoints
    the 3D targets' ``x, y`` (only the MLP reads them: its 2D features are normalised per sample);
    ``persp (N, 6)`` = ``(fx, cx, cy, right wrist)``; ``has_2d (N,)``; ``own (N,)`` = a hand without
    ``keypoints_3d`` (its own joints are its targets)."""
    t = lambda a: torch.as_tensor(a, dtype=_DT)  # noqa: E731
    with torch.no_grad():
        fk = hands(**params).joints + wrist[:, None, None]
    head3 = torch.where(t(pairs.has_kp3d)[..., None, None] > 0, convert(t(pairs.kp3d), pairs.joint_order, "mano"), fk)
    has_2d = pairs.has_kp2d.any(1)
    behind = np.nonzero(has_2d & (wrist[:, 2].numpy() <= 0))[0]
    if len(behind):
        n = int(behind[0])
        raise InputError(f"{pairs.field(n, 0, 'transl')} puts the right wrist at depth z = {float(wrist[n, 2]):.3g} m; "
                         "with keypoints_2d the hands must be in front of the camera (z > 0)")
    fx, fy, c = t(pairs.intrinsics[:, 0]), t(pairs.intrinsics[:, 1]), t(pairs.intrinsics[:, 2:])
    fx = torch.where(t(has_2d) > 0, fx, torch.ones_like(fx))
    fy = torch.where(t(has_2d) > 0, fy, torch.ones_like(fy))
    kp2 = convert(t(pairs.kp2d), pairs.joint_order, "mano")
    kp2 = torch.stack([kp2[..., 0], c[:, None, None, 1] + (kp2[..., 1] - c[:, None, None, 1]) * (fx / fy)[:, None, None]], -1)
    proj = project_perspective(head3, fx, c)
    j2 = torch.where(t(has_2d)[:, None, None, None] > 0, proj, head3[..., :2])
    j2 = torch.where(t(pairs.has_kp2d)[..., None, None] > 0, kp2, j2)
    return dict(j3d=from_two_hand(head3 - wrist[:, None, None], "mano"), j2d=from_two_hand(j2, "mano"),
                persp=torch.cat([fx[:, None], c, wrist], 1), has_2d=has_2d, own=~pairs.has_kp3d.all(1))


def _refine_groups(hands: TwoHands, params: dict[str, Tensor], head: dict[str, Any], config: RefineConfig, method: str,
                   model: str, batch: int, refiner: Any, mlp_batch: int, verify_collision: str) -> dict[str, Any]:
    """Refine samples in groups of the same targets: with / without 2D keypoints (OPT: the 2D term
    through the perspective camera, or no 2D term) and with their own joints as 3D targets (the
    demo's :data:`~ihmr.pipeline.refiners.E3D_SLACK`) or a separate joint head (``config``'s slack)."""
    N = len(head["own"])
    out = {"params": {k: v.clone() for k, v in params.items()}, "e3d_before": torch.zeros(N, dtype=_DT),
           "e3d_after": torch.zeros(N, dtype=_DT), "seconds": 0.0}
    out["accepted"] = {}  # stage -> (N,) bool, filled by each group's result
    key = np.stack([head["has_2d"] & (method == "opt"), head["own"]], 1)
    for has_2d, own in np.unique(key, axis=0):
        idx = torch.as_tensor(np.nonzero((key == (has_2d, own)).all(1))[0])
        sub = {k: v[idx] for k, v in params.items()}
        slack = E3D_SLACK if own else config.e3d_slack
        j3d, j2d = head["j3d"][idx], head["j2d"][idx]
        if method == "mlp":
            mcfg = MLPRefineConfig(factors=config.factors, verify=config.verify, collision=verify_collision, e3d_slack=slack, snap=config.snap,
                                   contact=config.contact)
            res = run_mlp(model, sub, j3d, j2d, mcfg, refiner, batch_size=mlp_batch)
        else:
            terms = config.terms if has_2d else tuple(x for x in config.terms if x != "2d")
            cfg = dataclasses.replace(config, e3d_slack=slack, terms=terms)
            cam = torch.ones(len(idx), 3, dtype=_DT)  # unused: the perspective camera, or no 2D term
            res = refine_opt(hands, sub, j3d, j2d, cam, cfg, batch_size=batch, persp=head["persp"][idx] if has_2d else None)
        for k, v in res.params.items():
            out["params"][k][idx] = v.to(_DT)
        out["e3d_before"][idx], out["e3d_after"][idx] = res.e3d_before.to(_DT), res.e3d_after.to(_DT)
        for f, v in res.accepted.items():
            out["accepted"].setdefault(f, torch.zeros(N, dtype=torch.bool))[idx] = v
        out["seconds"] += res.seconds
    return out


def refine_camera_file(input_path: str | Path, output_path: str | Path, config: RefineConfig, method: str = "opt",
                       model: str = "open", batch: int = 64, refiner: Any = "default", mlp_batch: int = 256,
                       verify_collision: str = "proxy") -> dict:
    """Refine a camera-frame pair file and write ``output_path`` in the same convention (JSON ->
    JSON, ``.npz`` -> ``.npz``) with the refined ``global_orient``, ``hand_pose``, ``betas``, ``transl``
    and per-sample figures: ``ave_p_mm_*``, ``max_p_mm_*`` (exact penetration), ``joint_rms_mm_*`` (RMS
    distance to the 3D targets, right-wrist aligned), ``_before`` / ``_after``, ``accepted_{factor}``.
    Arguments as :func:`ihmr.experiments.refine_runs.refine_npz`. Returns the JSON summary."""
    pairs = read_camera_pairs(input_path)
    out_json = Path(output_path).suffix.lower() == ".json"
    if out_json != (pairs.kind == "json"):
        raise InputError(f"--output {output_path}: a {pairs.kind} input is written as {pairs.kind} "
                         f"({'name it *.json' if pairs.kind == 'json' else 'not *.json'})")
    hands = TwoHands(model, dtype=_DT)
    params, wrist = to_internal(pairs, hands)
    head = joint_head(pairs, hands, params, wrist)
    res = _refine_groups(hands, params, head, config, method, model, batch, refiner, mlp_batch, verify_collision)
    before, after = evaluate_params(hands, params, None), evaluate_params(hands, res["params"], None)
    figures = {f"{k}_{when}": v for when, d in (("before", before), ("after", after)) for k, v in d.items()}
    figures.update({f"joint_rms_mm_{w}": (res[f"e3d_{w}"] / 42).sqrt().numpy() * 1000 for w in ("before", "after")})
    figures.update({f"accepted_{k}": v.numpy() for k, v in res["accepted"].items()})
    write_camera_pairs(output_path, pairs, from_internal(pairs, hands, params, res["params"], wrist), figures)
    n, secs = len(pairs), max(res["seconds"], 1e-9)
    return {
        "input": str(input_path), "output": str(output_path), "format": f"camera pairs ({pairs.kind})", "samples": n,
        "with_2d": int(head["has_2d"].sum()), "own_joints_as_3d_targets": int(head["own"].sum()),
        "seconds": round(res["seconds"], 2), "samples_per_s": round(n / secs, 2), "method": method,
        "before": {k: float(np.mean(v)) for k, v in before.items()},
        "after": {k: float(np.mean(v)) for k, v in after.items()},
        "accepted": {k: int(v.sum()) for k, v in res["accepted"].items()},
    }


def refine_file(input_path: str | Path, output_path: str | Path, config: RefineConfig, **kwargs: Any) -> dict:
    """``ihmr refine``: a camera-frame pair file (:func:`ihmr.io.camera_pairs.input_convention`) goes
    to :func:`refine_camera_file`, the internal pair format to
    :func:`ihmr.experiments.refine_runs.refine_npz`; same keyword arguments."""
    if input_convention(input_path) == "camera":
        return refine_camera_file(input_path, output_path, config, **kwargs)
    return refine_npz(input_path, output_path, config, **kwargs)
