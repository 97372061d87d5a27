"""Synthetic interacting-hands benchmark: ground truth in contact, simulated stage-I and joint head.

We cannot download InterHand2.6M, so refinement is measured on a faithful stand-in:

- **Ground truth**: finger poses drawn from an anatomical prior inside the model's joint limits
  (correlated flexion per finger), shapes of one person (left ~ right), and a relative placement
  of the kind people make: palm to palm, fingertips, clasped, interlaced, holding the other's
  fingers, crossed hands, and near misses. The left hand is slid along a separation direction to
  first contact (bisection on the exact penetration), so every pair is penetration-free
  (MAX-P < 0.5 mm) and, unless it is a near miss, crossed hands or touching fingertips (which rarely
  meet the joint-based criterion), closely interacting (mean inter-distance < 40 mm).
  A random global rotation is applied to the pair.
- **Simulated stage-I predictions**: the ground truth corrupted per factor (shape, orientation,
  finger pose, and relative translation). The relative translation errs along the separation
  direction according to the *mix* (:data:`MIXES`):

  - ``"two-sided"`` (the default): half the samples (a seeded random half) are pulled 8-20 mm
    into the other hand, the other half pushed 8-20 mm away from it, since a monocular estimate
    of touching hands errs both ways; ``error_side`` records which (+1 into, -1 away).
  - ``"one-sided"``: every sample pulled 6-16 mm into the other hand, so they collide like the
    paper's baseline (the benchmark of the paper's Table 1; the draws of earlier versions).
- **Simulated joint head**: ground-truth 3D joints plus Gaussian noise of ``sigma`` (per coordinate)
  and 2D joints projected by the weak-perspective camera plus noise.

Everything is seeded. :func:`save_npz` / :func:`load_npz` store the documented ``.npz`` format
(see :data:`ihmr.io.npz.NPZ_KEYS`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from ihmr.errors import InputError
from ihmr.geometry.camera import project_weak_perspective
from ihmr.geometry.rotations import axis_angle_to_matrix, axis_rotation, matrix_to_axis_angle
from ihmr.handmodel.limits import JointLimits
from ihmr.handmodel.two_hands import TwoHands
from ihmr.io.npz import NPZ_KEYS, read_refine_input, write_npz
from ihmr.joint_order import from_two_hand
from ihmr.metrics import closely_interacting_mask, penetration_depths

__all__ = [
    "CONTACTS",
    "MIXES",
    "NPZ_KEYS",
    "SyntheticSet",
    "make_synthetic",
    "resimulate",
    "save_npz",
    "load_npz",
]

CONTACTS = ("palm_to_palm", "fingertips", "clasped", "interlaced", "holding_fingers", "crossed", "near_miss")
#: How often each contact kind is drawn (loose kinds rarely: the benchmark is about close contact).
CONTACT_WEIGHTS = (0.2, 0.06, 0.2, 0.2, 0.2, 0.07, 0.07)
#: Max depth (m) still counted as touching when placing the ground truth.
CONTACT_TOLERANCE = 0.0003
#: How the simulated stage I errs in the relative translation (see the module docstring).
MIXES = ("two-sided", "one-sided")
#: Range (m) of the relative-translation error along the separation direction, per mix.
MIX_RANGES = {"two-sided": (0.008, 0.020), "one-sided": (0.006, 0.016)}



@dataclass
class SyntheticSet:
    """Ground truth, simulated predictions and joint head of ``N`` samples (tensors, float64)."""

    gt: dict[str, Tensor]
    pred: dict[str, Tensor]
    cam: Tensor
    j3d: Tensor
    j2d: Tensor
    gt_j3d: Tensor
    valid: Tensor
    contact: Tensor
    meta: dict = field(default_factory=dict)
    sep: Optional[Tensor] = None  # (N, 3) separation direction of the ground-truth placement
    error_side: Optional[Tensor] = None  # (N,) int8: +1 stage I errs into the other hand, -1 away

    def __len__(self) -> int:
        return int(self.cam.shape[0])

    def subset(self, idx: Tensor) -> "SyntheticSet":
        """The samples ``idx`` (an index tensor)."""
        return SyntheticSet(
            gt={k: v[idx] for k, v in self.gt.items()}, pred={k: v[idx] for k, v in self.pred.items()},
            cam=self.cam[idx], j3d=self.j3d[idx], j2d=self.j2d[idx], gt_j3d=self.gt_j3d[idx], valid=self.valid[idx],
            contact=self.contact[idx], meta=dict(self.meta), sep=None if self.sep is None else self.sep[idx],
            error_side=None if self.error_side is None else self.error_side[idx],
        )

    def sides(self) -> tuple[Tensor, Tensor]:
        """``(N,)`` bool masks of the penetrating part (stage I errs into the other hand) and the
        separated part (errs away); a set without ``error_side`` is all penetrating."""
        s = self.error_side if self.error_side is not None else torch.ones(len(self), dtype=torch.int8)
        return s > 0, s < 0


#: Spread direction per MANO finger joint 1..15 (index and thumb towards the thumb side, pinky and
#: ring away, middle none): +1 uses the upper spread limit, -1 the lower.
_SPREAD_SIGN = torch.tensor([1, 1, 1, 0, 0, 0, -1, -1, -1, -0.5, -0.5, -0.5, 0, 0, 0], dtype=torch.float64)


def _finger_pose(lim: JointLimits, n: int, bend_lo: Tensor, bend_hi: Tensor, spread: Tensor, g: torch.Generator) -> Tensor:
    """Anatomical prior: per-finger flexion level in [bend_lo, bend_hi] x max with small per-joint
    jitter, a finger spread level ``spread (n,)`` in [0, 1] of the limits, small twist. ``(n, 45)``."""
    dt = lim.lower.dtype
    level = bend_lo[:, None] + (bend_hi - bend_lo)[:, None] * torch.rand(n, 5, generator=g, dtype=dt)  # per finger
    # MANO joints 1..15 -> fingers: index 0-2, middle 3-5, pinky 6-8, ring 9-11, thumb 12-14.
    finger_of_joint = torch.tensor([1, 1, 1, 2, 2, 2, 4, 4, 4, 3, 3, 3, 0, 0, 0])
    frac = (level[:, finger_of_joint] + 0.06 * torch.randn(n, 15, generator=g, dtype=dt)).clamp(0.0, 1.0)
    q = torch.zeros(n, 15, 3, dtype=dt)
    q[..., 2] = frac * lim.upper[:, 2] * 0.999
    sp = _SPREAD_SIGN.to(dt)[None] * spread[:, None]
    sp = sp + 0.1 * torch.randn(n, 15, generator=g, dtype=dt)
    q[..., 1] = torch.where(sp > 0, sp * lim.upper[:, 1], -sp * lim.lower[:, 1]).clamp(lim.lower[:, 1], lim.upper[:, 1])
    u = torch.rand(n, 15, generator=g, dtype=dt)
    q[..., 0] = 0.3 * (lim.lower[:, 0] + u * (lim.upper[:, 0] - lim.lower[:, 0]))
    return lim.from_local(q)


def _placements(kind: Tensor, g: torch.Generator, dt: torch.dtype):
    """Per contact kind: left orientation (in the right hand's rest frame), start offset, separation
    direction, and finger flexion ranges for both hands."""
    n = kind.shape[0]
    rnd = lambda *s: torch.rand(*s, generator=g, dtype=dt)  # noqa: E731
    R = torch.eye(3, dtype=dt).repeat(n, 1, 1)
    start = torch.zeros(n, 3, dtype=dt)
    sep = torch.zeros(n, 3, dtype=dt)
    bend = torch.zeros(n, 5, dtype=dt)  # right lo, right hi, left lo, left hi, spread level
    pi = math.pi
    for k, name in enumerate(CONTACTS):
        m = kind == k
        c = int(m.sum())
        if c == 0:
            continue
        flip = axis_rotation("z", torch.full((c,), pi, dtype=dt))  # left palm facing the right palm
        if name in ("palm_to_palm", "near_miss"):
            Rk = flip @ axis_rotation("y", (rnd(c) - 0.5) * 0.5)
            s, st, b = [0.0, -1.0, 0.0], [-0.04, 0.0, 0.0], [0.0, 0.15, 0.0, 0.15, 0.8]
        elif name == "fingertips":
            Rk = axis_rotation("y", (rnd(c) - 0.5) * 0.4) @ axis_rotation("x", (rnd(c) - 0.5) * 0.6)
            s, st, b = [-1.0, 0.0, 0.0], [-0.16, -0.02, 0.0], [0.3, 0.5, 0.3, 0.5, 0.3]
        elif name == "clasped":
            Rk = flip @ axis_rotation("y", (0.1 + 0.1 * rnd(c)) * pi * torch.sign(rnd(c) - 0.5))
            s, st, b = [0.0, -1.0, 0.0], [-0.04, 0.0, 0.01], [0.65, 0.9, 0.65, 0.9, 0.8]
        elif name == "interlaced":
            Rk = flip @ axis_rotation("y", (rnd(c) - 0.5) * 0.4)
            s, st, b = [0.0, -1.0, 0.0], [-0.04, 0.0, 0.01], [0.35, 0.7, 0.35, 0.7, 0.9]
        elif name == "holding_fingers":
            Rk = flip @ axis_rotation("y", (rnd(c) - 0.5) * 0.6)
            s, st, b = [0.0, -1.0, 0.0], [-0.07, 0.0, 0.0], [0.0, 0.15, 0.45, 0.75, 0.5]
        else:  # crossed: left hand across the back of the right one
            Rk = axis_rotation("y", (0.4 + 0.2 * rnd(c)) * pi * torch.sign(rnd(c) - 0.5))
            s, st, b = [0.0, 1.0, 0.0], [-0.05, 0.0, 0.0], [0.0, 0.4, 0.0, 0.4, 0.3]
        R[m] = Rk
        sep[m] = torch.tensor(s, dtype=dt)
        start[m] = torch.tensor(st, dtype=dt) + 0.01 * (rnd(c, 3) - 0.5)
        bend[m] = torch.tensor(b, dtype=dt)
    return R, start, sep, bend


def _first_contact(hands: TwoHands, beta, phi, theta, start, sep, lo=-0.04, hi=0.14, steps=12) -> Tensor:
    """Bisection per sample on ``t`` so the pair at ``tau = start + t sep`` just touches."""
    t_lo = torch.full((start.shape[0],), lo, dtype=start.dtype)
    t_hi = torch.full_like(t_lo, hi)
    for _ in range(steps):
        mid = 0.5 * (t_lo + t_hi)
        with torch.no_grad():
            v = hands(beta, phi, theta, start + mid[:, None] * sep).vertices
            ok = penetration_depths(v, hands.faces).flatten(1).max(1).values <= CONTACT_TOLERANCE
        t_hi = torch.where(ok, mid, t_hi)
        t_lo = torch.where(ok, t_lo, mid)
    return t_hi


def make_synthetic(
    n: int,
    seed: int = 0,
    sigma_mm: float = 10.0,
    hands: Optional[TwoHands] = None,
    contacts: Optional[list[str]] = None,
    progress: bool = True,
    mix: str = "two-sided",
) -> SyntheticSet:
    """Generate ``n`` samples (see the module docstring; ``mix`` one of :data:`MIXES`).
    Deterministic for a seed; the two mixes share the ground truth and every draw but the
    direction and size of the relative-translation error."""
    if n <= 0:
        raise InputError(f"n must be positive, got {n}")
    _check_mix(mix)
    contacts = list(contacts or CONTACTS)
    unknown = set(contacts) - set(CONTACTS)
    if unknown:
        raise InputError(f"unknown contact kinds {sorted(unknown)}; known: {', '.join(CONTACTS)}")
    hands = hands or TwoHands("open", dtype=torch.float64)
    dt = torch.float64
    g = torch.Generator().manual_seed(seed)
    lim_r = JointLimits(hands.right.data, dtype=dt)
    lim_l = JointLimits(hands.left.data, dtype=dt)

    keep: dict[str, list[Tensor]] = {k: [] for k in ("beta", "phi", "theta", "tau", "kind", "sep")}
    have, rounds = 0, 0
    bar = tqdm(total=n, desc="synthetic ground truth", disable=not progress, unit="pair")
    while have < n and rounds < 20:
        rounds += 1
        m = max(8, int((n - have) * 1.5))
        ids = torch.tensor([CONTACTS.index(c) for c in contacts])
        w = torch.tensor([CONTACT_WEIGHTS[i] for i in ids], dtype=dt)
        kind = ids[torch.multinomial(w, m, replacement=True, generator=g)]
        R_left, start, sep, bend = _placements(kind, g, dt)
        spread = bend[:, 4] * (0.6 + 0.4 * torch.rand(m, generator=g, dtype=dt))
        theta = torch.stack([
            _finger_pose(lim_r, m, bend[:, 0], bend[:, 1], spread, g),
            _finger_pose(lim_l, m, bend[:, 2], bend[:, 3], spread, g),
        ], 1)
        beta_r = 0.8 * torch.randn(m, 10, generator=g, dtype=dt)
        beta = torch.stack([beta_r, beta_r + 0.15 * torch.randn(m, 10, generator=g, dtype=dt)], 1)
        # Global rotation of the pair.
        G = axis_angle_to_matrix(_random_rotvec(m, g, dt))
        phi = torch.stack([matrix_to_axis_angle(G), matrix_to_axis_angle(G @ R_left)], 1)
        start_w, sep_w = (G @ start[..., None])[..., 0], (G @ sep[..., None])[..., 0]
        t = _first_contact(hands, beta, phi, theta, start_w, sep_w)
        loose = kind == CONTACTS.index("near_miss")
        may_be_loose = loose | (kind == CONTACTS.index("crossed")) | (kind == CONTACTS.index("fingertips"))
        t = t + torch.where(loose, 0.003 + 0.012 * torch.rand(m, generator=g, dtype=dt), torch.zeros_like(t))
        tau = start_w + t[:, None] * sep_w
        with torch.no_grad():
            out = hands(beta, phi, theta, tau)
            maxp = penetration_depths(out.vertices, hands.faces).flatten(1).max(1).values
        close = torch.as_tensor(closely_interacting_mask(out.joints.numpy()))
        ok = (maxp < 0.0005) & (close | may_be_loose) & (t < 0.135)
        for k, x in (("beta", beta), ("phi", phi), ("theta", theta), ("tau", tau), ("kind", kind), ("sep", sep_w)):
            keep[k].append(x[ok])
        have += int(ok.sum())
        bar.update(min(int(ok.sum()), n - (have - int(ok.sum()))))
    bar.close()
    if have < n:
        raise RuntimeError(f"could only place {have} of {n} pairs; try other contact kinds")
    gt = {k: torch.cat(v)[:n] for k, v in keep.items()}
    return _simulate_predictions(hands, gt, sigma_mm, g, seed, mix)


def _check_mix(mix: str) -> None:
    if mix not in MIXES:
        raise InputError(f"mix must be one of {', '.join(MIXES)}, got {mix!r}")


def _error_side(n: int, seed: int, mix: str) -> Tensor:
    """``(n,)`` int8 +1 / -1 per sample (see the module docstring), from its own seeded generator
    so that the mixes share every other draw."""
    if mix == "one-sided":
        return torch.ones(n, dtype=torch.int8)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    side = torch.ones(n, dtype=torch.int8)
    side[perm[n // 2:]] = -1
    return side


def _random_rotvec(n: int, g: torch.Generator, dt: torch.dtype) -> Tensor:
    """Uniform random rotations as axis-angle ``(n, 3)``."""
    q = torch.randn(n, 4, generator=g, dtype=dt)
    q = q / q.norm(dim=1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    s = q[:, 1:].norm(dim=1, keepdim=True).clamp_min(1e-12)
    return q[:, 1:] / s * 2 * torch.atan2(s, q[:, :1])


def _simulate_predictions(hands: TwoHands, gt: dict, sigma_mm: float, g: torch.Generator, seed: int, mix: str) -> SyntheticSet:
    """Corrupt the ground truth per factor (stage I) and simulate the joint head."""
    dt = torch.float64
    n = gt["beta"].shape[0]
    lim = [JointLimits(hands.right.data, dtype=dt), JointLimits(hands.left.data, dtype=dt)]
    beta = gt["beta"] + 0.5 * torch.randn(n, 2, 10, generator=g, dtype=dt)
    dR = axis_angle_to_matrix(0.07 * torch.randn(n, 2, 3, generator=g, dtype=dt))
    phi = matrix_to_axis_angle(axis_angle_to_matrix(gt["phi"]) @ dR)
    theta = torch.stack([lim[h].clamp(gt["theta"][:, h] + 0.12 * torch.randn(n, 45, generator=g, dtype=dt)) for h in range(2)], 1)
    # Relative translation: along the separation direction into (+1) or away from (-1) the other
    # hand (the mix), plus noise.
    lo, hi = MIX_RANGES[mix]
    side = _error_side(n, seed, mix)
    push = (side.to(dt) * (lo + (hi - lo) * torch.rand(n, generator=g, dtype=dt)))[:, None] * gt["sep"]
    tau = gt["tau"] - push + 0.003 * torch.randn(n, 3, generator=g, dtype=dt)
    with torch.no_grad():
        gt_out = hands(gt["beta"], gt["phi"], gt["theta"], gt["tau"])
    gt_j = from_two_hand(gt_out.joints, "mano")  # (n, 42, 3) right first, MANO order
    j3d = gt_j + sigma_mm * 1e-3 * torch.randn(gt_j.shape, generator=g, dtype=dt)
    # Weak-perspective camera framing both hands in [-1, 1].
    lo, hi = gt_j[..., :2].min(1).values, gt_j[..., :2].max(1).values
    s = 1.6 / (hi - lo).max(1).values
    cam = torch.cat([s[:, None], -(lo + hi) / 2], 1)
    j2d = project_weak_perspective(gt_j, cam) + (sigma_mm * 1e-3) * s[:, None, None] * torch.randn(n, 42, 2, generator=g, dtype=dt)
    cam_pred = cam * (1 + 0.02 * torch.randn(n, 3, generator=g, dtype=dt))
    return SyntheticSet(
        gt={k: gt[k] for k in ("beta", "phi", "theta", "tau")},
        pred=dict(beta=beta, phi=phi, theta=theta, tau=tau),
        cam=cam_pred, j3d=j3d, j2d=j2d, gt_j3d=gt_j, valid=torch.ones(n, 42, dtype=torch.bool),
        contact=gt["kind"], meta=dict(seed=seed, sigma_mm=sigma_mm, model=hands.model_name, contacts=list(CONTACTS), mix=mix),
        sep=gt["sep"], error_side=side,
    )


def resimulate(hands: TwoHands, data: SyntheticSet, sigma_mm: float, seed: int, mix: str = "two-sided") -> SyntheticSet:
    """The same ground truth with a fresh simulated stage I and joint head (seeded; ``mix`` one of
    :data:`MIXES`): a cheap way to draw new training inputs for the learned refiners. Needs
    ``data.sep``."""
    _check_mix(mix)
    if data.sep is None:
        raise InputError("this synthetic set has no separation directions (gt_sep); regenerate it with make_synthetic")
    g = torch.Generator().manual_seed(seed)
    gt = dict(data.gt, kind=data.contact, sep=data.sep)
    return _simulate_predictions(hands, gt, sigma_mm, g, seed, mix)


def save_npz(path: str | Path, data: SyntheticSet) -> Path:
    """Write the documented ``.npz`` format (see :data:`ihmr.io.npz.NPZ_KEYS`) atomically."""
    arrays = {k: v.numpy() for k, v in data.pred.items()}
    arrays.update({f"gt_{k}": v.numpy() for k, v in data.gt.items()})
    arrays.update(cam=data.cam.numpy(), j3d=data.j3d.numpy(), j2d=data.j2d.numpy(), gt_j3d=data.gt_j3d.numpy(),
                  valid=data.valid.numpy(), contact=data.contact.numpy(), meta=np.array(json.dumps(data.meta)))
    if data.sep is not None:
        arrays["gt_sep"] = data.sep.numpy()
    if data.error_side is not None:
        arrays["error_side"] = data.error_side.numpy()
    return write_npz(path, arrays)


def load_npz(path: str | Path) -> SyntheticSet:
    """Read a synthetic benchmark ``.npz`` (validated by :func:`ihmr.io.npz.read_refine_input`)."""
    d = read_refine_input(path, require_gt=True)
    n = d["beta"].shape[0]
    t = lambda k: torch.as_tensor(d[k])  # noqa: E731
    return SyntheticSet(
        gt={k: t(f"gt_{k}") for k in ("beta", "phi", "theta", "tau")},
        pred={k: t(k) for k in ("beta", "phi", "theta", "tau")},
        cam=t("cam"), j3d=t("j3d"), j2d=t("j2d"), gt_j3d=t("gt_j3d"),
        valid=t("valid") if "valid" in d else torch.ones(n, 42, dtype=torch.bool),
        contact=t("contact") if "contact" in d else torch.zeros(n, dtype=torch.long),
        meta=json.loads(str(d["meta"])) if "meta" in d else {},
        sep=t("gt_sep") if "gt_sep" in d else None,
        error_side=t("error_side").to(torch.int8) if "error_side" in d else None,
    )
