"""IHMR-MLP refinement with verification: each factor's MLP proposes, verification keeps a
proposal per sample (Algorithm 1 with learned proposals; the refiners themselves are
:mod:`ihmr.refine.mlp`).

A proposal is kept only if the 3D-joint error against the joint head strictly decreases (or rises
by at most ``e3d_slack``), the deepest penetration does not grow and either the collision error
strictly decreases or -- the contact criterion (ours, ``contact=True``), for a pair without
collision whose joint head evidences contact (:func:`~ihmr.refine.objective.contact_evidence`) --
the pair stays collision-free and the gap between the hands shrinks; an evidenced gap never
widens beyond touching (as OPT's criterion: separating penetrating hands to touching is fine,
overshooting into a gap is not). The factors are refined in ``passes`` rounds, each proposal
tried at a few ``steps`` (multiples of the MLP's residual); the tau stage also proposes the
translation that minimises the 3D-joint error over tau alone
(:func:`~ihmr.refine.objective.centroid_tau_step`). Collision and gap are
measured on the sphere proxy (:mod:`ihmr.collision.spheres`; ``collision="exact"`` verifies
collisions with exact depths); the inscribed spheres miss the millimetre of penetration where
closed gaps touch, so every candidate that would be kept for closing a gap, and every centroid
tau candidate (a jump the proxy may misjudge), is also checked with the exact test
(:func:`~ihmr.collision.exact.find_penetrations`) and kept only without exact penetration: a pair
that starts collision-free stays so, and a candidate that fails falls back on the next best one,
not on the stage's start.
Samples without collision and without an evidenced gap are never changed. After the passes the
contact snap (:mod:`ihmr.refine.snap`, ``snap=True``) closes the gaps left where contact is
evidenced, checked exactly and against the proxy's own collision and gap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Optional

import torch
from torch import Tensor
from tqdm import tqdm

from ihmr.collision.exact import boxes_overlap, find_penetrations, penetration_depths
from ihmr.collision.spheres import SphereProxy, proxy_collision, sphere_gap
from ihmr.errors import InputError
from ihmr.geometry.rotations import axis_angle_to_matrix
from ihmr.handmodel.two_hands import TwoHands
from ihmr.joint_order import to_two_hand
from ihmr.metrics.contact import CONTACT_THRESHOLD
from ihmr.refine.factorized import FACTORS, RefineResult, RigidPoser
from ihmr.refine.mlp import MLPRefiner, PairState, ProxySubset, normalise_2d
from ihmr.refine.objective import centroid_tau_step, contact_evidence, joint_error
from ihmr.refine.snap import close_gaps

__all__ = ["MLPRefineConfig", "evaluate_state", "propose", "pose_candidate", "stage_rows", "refine_stage", "refine_mlp"]



@dataclass
class MLPRefineConfig:
    """Switches of the MLP refinement.

    Attributes:
        factors: factors in order (subset of tau, phi, theta, beta).
        verify: keep a candidate only if collision and 3D-joint error both strictly decrease and the
            deepest penetration does not grow; ``False`` accepts every candidate of a colliding
            sample (ablation).
        collision: "proxy" (spheres, fast) or "exact" (exact depths) for verification.
        skip_collision_free: leave samples without collision untouched.
        reference: the straightforward path (every candidate posed in full, the proxy's dense
            ``S x M`` test) instead of posing only the proxy's vertices (:class:`ProxySubset`)
            and its group search; the same results up to float rounding, about three times
            slower (for checks and ``benchmarks/bench_mlp.py``).
        e3d_slack: 3D-joint error (m^2, over the 42 joints) a candidate may add and still pass. 0
            (strict decrease) for a separate joint head; the image demo, whose joint head is the
            very landmarks the hands were fitted to, lets joints move a few millimetres, as for OPT.
        contact: the contact criterion (see the module docstring); ``False``: the paper.
        touch: a pair touches when its proxy gap is at most this (m); it then has no gap to close.
        passes: rounds over ``factors``, each from the previous one's verified result.
        steps: each proposal is tried at these multiples of the MLP's residual; per sample the
            verified candidate with the lowest 3D-joint error is kept (``(1.0,)``: the proposal only,
            as the paper). On the two-sided benchmark (Inter-Close, n = 134, shipped refiners),
            passes x steps 1 x (1) / 2 x (1) / 2 x (1, 0.5, 1.5) gave AVE-P (penetrating part)
            -86.2 / -89.6 / -93.5 %, contact gap (separated part) -40.2 / -44.8 / -48.1 %, I-MPJPE
            -27.0 / -28.7 / -29.3 %, at 1 / 0.5 / 0.25 times the speed; a third pass, a step of 2 or
            one of 0.25 added < 1 point.
        centroid_tau: the tau stage also tries :func:`~ihmr.refine.objective.centroid_tau_step`
            (at the same ``steps``; kept only where the exact test finds no penetration). Measured
            on the same benchmark (with each candidate checked exactly where it closes a gap):
            without / with it contact gap -43.3 / -45.1 %, I-MPJPE -28.7 / -28.7 %, AVE-P -93.5 /
            -93.9 %. Without the exact check of its candidates it gave I-MPJPE -29.7 %, but on
            stage-I CNN predictions (``tests/test_eval.py``) it raised the mean exact AVE-P from
            0.03 to 0.11 mm: the proxy missed the penetration of those jumps.
        centroid_steps: the multiples of the centroid step tried. The error is a quadratic with its
            minimum at 1, so shorter steps only serve where the longer ones penetrate (by the exact
            test); measured with the snap: (1, 0.5, 1.5) / (1, 0.75, 0.5, 0.25) gave I-MPJPE -28.7 /
            -29.2 %, contact gap -48.8 / -49.8 %, AVE-P -93.9 / -93.8 % at the same speed.
        snap: after the passes, close the gaps left where contact is evidenced by a rigid move of
            the left hand (:func:`~ihmr.refine.snap.close_gaps`, checked exactly; only with
            ``contact``, ``verify`` and tau among the ``factors``).
    """

    factors: tuple[str, ...] = FACTORS
    verify: bool = True
    collision: Literal["proxy", "exact"] = "proxy"
    skip_collision_free: bool = True
    e3d_slack: float = 0.0
    reference: bool = False
    contact: bool = True
    touch: float = CONTACT_THRESHOLD
    passes: int = 2
    steps: tuple[float, ...] = (1.0, 0.5, 1.5)
    centroid_tau: bool = True
    centroid_steps: tuple[float, ...] = (1.0, 0.75, 0.5, 0.25)
    snap: bool = True

    def check(self) -> "MLPRefineConfig":
        if self.passes < 1 or not self.steps or not all(x > 0 for x in tuple(self.steps) + tuple(self.centroid_steps)):
            raise InputError(f"passes, steps and centroid_steps must be positive, got {self.passes}, {self.steps} and {self.centroid_steps}")
        if not self.factors or set(self.factors) - set(FACTORS) or len(set(self.factors)) != len(self.factors):
            raise InputError(f"factors must be distinct names among {FACTORS}, got {self.factors}")
        if self.collision not in ("proxy", "exact"):
            raise InputError(f"collision must be 'proxy' or 'exact', got {self.collision!r}")
        return self


def evaluate_state(hands: TwoHands, proxy: SphereProxy, params: dict[str, Tensor], j3d: Tensor,
                   collision: str = "proxy", posed: Optional[tuple[Tensor, Tensor]] = None,
                   subset: Optional[ProxySubset] = None, search: str = "groups") -> PairState:
    """Pose ``params`` (or take ``posed = (vertices, joints)``) and measure collision and 3D error.

    With ``subset`` (proxy collision only) only the subset's vertices are posed (``posed`` holds
    them); ``search``: of :func:`~ihmr.collision.spheres.sphere_penetration`."""
    if subset is not None and collision != "proxy":
        raise InputError("a ProxySubset serves the proxy verification only")
    if posed is None:
        out = hands(params["beta"], params["phi"], params["theta"], params["tau"],
                    vertex_ids=None if subset is None else subset.ids)
        v, j = out.vertices, out.joints
    else:
        v, j = posed
    if subset is None:
        e_col, col_hand, push, e_max = proxy_collision(v, j, hands.faces, proxy, return_parts=True, search=search)
    else:
        e_col, col_hand, push, e_max = _subset_collision(hands, subset, params, v, j, search)
    if collision == "exact":
        d = penetration_depths(v.detach(), hands.faces, check=False).flatten(1)
        e_col, e_max = d.sum(1), d.amax(1)
    return PairState(params, v, j, e_col, e_max, col_hand, push, joint_error(j, j3d), subset)


def _subset_collision(hands: TwoHands, subset: ProxySubset, params: dict[str, Tensor], v: Tensor, j: Tensor,
                      search: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """:func:`proxy_collision`'s parts for the subset's vertices ``v (B, 2, n, 3)``. The proxy skips
    pairs whose *meshes'* bounding boxes do not overlap; the subset's boxes overlapping implies
    it, and where they do not, only the few pairs with a nonzero measure are posed in full to decide."""
    sure = boxes_overlap(v)
    parts = proxy_collision(v, j, subset.faces, subset.proxy, return_parts=True, search=search,
                            overlap=torch.ones_like(sure))
    unsure = torch.nonzero((parts[0] > 0) & ~sure).flatten()
    if unsure.numel():
        p = {k: x[unsure] for k, x in params.items()}
        apart = unsure[~boxes_overlap(hands(p["beta"], p["phi"], p["theta"], p["tau"]).vertices)]
        parts = tuple(x.index_fill(0, apart, 0.0) for x in parts)
    return parts


def propose(refiner: MLPRefiner, factor: str, state: PairState, j3d: Tensor, j2d_n: Tensor,
            feature: Optional[Tensor]) -> dict[str, Tensor]:
    """Candidate parameters: ``state`` with ``factor`` moved by its MLP's residual."""
    x = refiner.features(state, j3d, j2d_n, feature)
    delta = refiner(factor, x).to(state.params[factor].dtype)
    cand = dict(state.params)
    cand[factor] = state.params[factor] + delta.reshape(state.params[factor].shape)
    return cand


def pose_candidate(hands: TwoHands, factor: str, state: PairState, cand: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Vertices and joints of ``cand`` (the vertices ``state.subset.ids`` only when ``state`` has a
    subset). The rigid factors move the current meshes (each hand's global orientation turns it
    about its wrist, tau moves the left hand) instead of skinning."""
    if factor not in ("tau", "phi"):
        out = hands(cand["beta"], cand["phi"], cand["theta"], cand["tau"],
                    vertex_ids=None if state.subset is None else state.subset.ids)
        return out.vertices, out.joints
    old = torch.stack([torch.zeros_like(state.params["tau"]), state.params["tau"]], 1)[:, :, None]  # wrists
    new = torch.stack([torch.zeros_like(cand["tau"]), cand["tau"]], 1)[:, :, None]
    R = axis_angle_to_matrix(cand["phi"]) @ axis_angle_to_matrix(state.params["phi"]).transpose(-1, -2)  # (B, 2, 3, 3)
    v = torch.einsum("bhij,bhvj->bhvi", R, state.vertices - old) + new
    j = torch.einsum("bhij,bhvj->bhvi", R, state.joints - old) + new
    return v, j


def proxy_gap(hands: TwoHands, refiner: MLPRefiner, state: PairState, evidence: Tensor) -> Tensor:
    """``(B,)`` the proxy gap (:func:`~ihmr.collision.spheres.sphere_gap`, m) of the evidenced
    samples of ``state``, NaN elsewhere."""
    gap = torch.full_like(state.e3d, float("nan"))
    rows = torch.nonzero(evidence).flatten()
    if rows.numel():
        v, j = state.vertices[rows], state.joints[rows]
        if state.subset is None:
            g = sphere_gap(v, j, hands.faces, refiner.proxy(hands))
        else:
            g = sphere_gap(v, j, state.subset.faces, state.subset.proxy)
        gap = gap.index_copy(0, rows, g.to(gap.dtype))
    return gap


def stage_rows(hands: TwoHands, refiner: MLPRefiner, state: PairState, evidence: Tensor, cfg: MLPRefineConfig) -> tuple[Tensor, Tensor]:
    """The samples a stage refines, ``(B,)`` bool (those that collide and, with ``cfg.contact``,
    those with an evidenced gap wider than ``cfg.touch``), and their proxy gaps (NaN without
    evidence)."""
    ev = evidence & cfg.contact
    gap = proxy_gap(hands, refiner, state, ev)
    todo = (state.e_col > 0) | (ev & (gap > cfg.touch))
    return (todo if cfg.skip_collision_free else torch.ones_like(todo)), gap


@torch.no_grad()
def refine_stage(hands: TwoHands, refiner: MLPRefiner, factor: str, state: PairState, j3d: Tensor, j2d_n: Tensor,
                 feature: Optional[Tensor], cfg: MLPRefineConfig, evidence: Optional[Tensor] = None) -> tuple[PairState, Tensor]:
    """One factor: propose, verify, keep per sample. Returns the new state and ``(B,)`` acceptance.

    ``evidence``: ``(B,)`` bool, contact evidenced by the joint head (default: none)."""
    B = state.e_col.shape[0]
    ev = torch.zeros(B, dtype=torch.bool) if evidence is None else evidence & cfg.contact
    todo, gap = stage_rows(hands, refiner, state, ev, cfg)
    rows = torch.nonzero(todo).flatten()
    accepted = torch.zeros(B, dtype=torch.bool)
    if rows.numel() == 0:
        return state, accepted
    sub = state.rows(rows)
    f = None if feature is None else feature[rows]
    proposal = propose(refiner, factor, sub, j3d[rows], j2d_n[rows], f)
    deltas = [(proposal[factor] - sub.params[factor], False, cfg.steps)]
    if factor == "tau" and cfg.centroid_tau:
        deltas.append((centroid_tau_step(sub.joints, j3d[rows]), True, cfg.centroid_steps))
    local = torch.arange(len(rows))
    best, taken = sub, torch.zeros(len(rows), dtype=torch.bool)
    poser = None  # the stage start's RigidPoser, built at the first exact check of a rigid factor's candidates
    for delta, analytic, step in ((d, a, s) for d, a, ss in deltas for s in ss):  # per sample the verified one nearest the joint head
        cand = dict(sub.params, **{factor: sub.params[factor] + step * delta})
        new = evaluate_state(hands, refiner.proxy(hands), cand, j3d[rows], cfg.collision, pose_candidate(hands, factor, sub, cand),
                             sub.subset, "dense" if cfg.reference else "groups")
        ok = _verified(hands, refiner, sub, new, ev[rows], gap[rows], cfg) if cfg.verify else torch.ones(len(rows), dtype=torch.bool)
        ok &= ~taken | (new.e3d < best.e3d)
        if cfg.verify and cfg.collision == "proxy":  # a closed gap, or a jump to the centroid, must not hide exact penetration
            check = ok if analytic else ok & ev[rows] & (sub.e_col == 0)
            if poser is None and factor in ("tau", "phi") and bool(check.any()):
                poser = RigidPoser(hands, sub.params)
            ok &= ~_touch_penetrates(hands, new, check, poser)
        best = best.select(ok, new, local)
        taken |= ok
        if not cfg.verify:
            break
    accepted[rows] = taken
    return state.select(taken, best, rows), accepted


def _touch_penetrates(hands: TwoHands, state: PairState, check: Tensor, poser: Optional[RigidPoser] = None) -> Tensor:
    """``(n,)`` bool: rows ``check`` of ``state`` penetrate by the exact test. A pair the proxy
    calls collision-free may touch with a millimetre of exact penetration that the inscribed spheres
    miss; the contact criterion would close gaps into it, and a centroid-tau jump may land in it, so
    those candidates are checked exactly. ``poser``: the stage start's :class:`RigidPoser` when the
    stage's factor is rigid (tau, phi): the candidates' meshes are then its hands turned and moved
    and their libigl trees are built once per stage (same answers; MLP 16.6 -> 18.0 samples/s on
    the two-sided benchmark, one thread), instead of skinning and new trees per check."""
    out = torch.zeros_like(check)
    rows = torch.nonzero(check).flatten()
    if rows.numel():
        if poser is None:
            p = {k: v[rows] for k, v in state.params.items()}
            q = find_penetrations(hands(p["beta"], p["phi"], p["theta"], p["tau"]).vertices, hands.faces)
        else:
            v, _ = poser(state.params["phi"], state.params["tau"])
            q = find_penetrations(v[rows], hands.faces, poser.posed_trees().rows(rows))
        out[rows[torch.unique(q.batch)]] = True
    return out


def _verified(hands: TwoHands, refiner: MLPRefiner, sub: PairState, new: PairState, ev: Tensor, gap: Tensor,
              cfg: MLPRefineConfig) -> Tensor:
    """``(n,)`` bool: candidate ``new`` passes verification against the stage's start ``sub``."""
    ok = (new.e_max <= sub.e_max) & ((new.e3d < sub.e3d) if cfg.e3d_slack <= 0 else (new.e3d <= sub.e3d + cfg.e3d_slack))
    lower = new.e_col < sub.e_col
    free = ev & (sub.e_col == 0) & (new.e_col == 0)
    need = ok & ev & (lower | free)  # the gap decides only these (the proxy gap is the costly part)
    if not bool(need.any()):
        return ok & lower
    new_gap = proxy_gap(hands, refiner, new, need)
    closes = need & free & (new_gap < gap)  # an evidenced gap closes, no collision
    widens = need & ~(new_gap <= torch.clamp(gap, min=cfg.touch))  # never widen it (separating to touching is fine)
    return ok & (lower | closes) & ~widens


def _snap(hands: TwoHands, proxy: SphereProxy, state: PairState, j3d: Tensor, rows: Tensor, limit: Tensor,
          cfg: MLPRefineConfig, subset: Optional[ProxySubset], search: str) -> tuple[PairState, Tensor]:
    """The contact snap (:func:`~ihmr.refine.snap.close_gaps`) of the evidenced, proxy
    collision-free ``rows``; returns the new state and ``(B,)`` which pairs moved."""
    moved = torch.zeros_like(rows)
    sel = torch.nonzero(rows).flatten()
    if sel.numel() == 0:
        return state, moved
    p = {k: v[sel] for k, v in state.params.items()}
    out = hands(p["beta"], p["phi"], p["theta"], p["tau"])
    delta, ok, _ = close_gaps(out.vertices, out.joints, hands.faces, j3d[sel], limit[sel], torch.ones(len(sel), dtype=torch.bool))
    if not bool(ok.any()):
        return state, moved
    g = sel[ok]
    p = {k: v[g] for k, v in state.params.items()}
    p["tau"] = p["tau"] + delta[ok]
    new = evaluate_state(hands, proxy, p, j3d[g], cfg.collision, subset=subset, search=search)
    # the verification's own measures must agree: no collision, no wider gap
    faces, sp = (hands.faces, proxy) if subset is None else (subset.faces, subset.proxy)
    old_gap = sphere_gap(state.vertices[g], state.joints[g], faces, sp)
    keep = (new.e_col <= state.e_col[g]) & (new.e3d <= limit[g]) & \
        (sphere_gap(new.vertices, new.joints, faces, sp) <= torch.clamp(old_gap, min=cfg.touch))
    moved[g[keep]] = True
    return state.select(keep, new, g), moved


@torch.no_grad()
def refine_mlp(
    hands: TwoHands,
    params: dict[str, Tensor],
    j3d: Tensor,
    j2d: Tensor,
    refiner: MLPRefiner,
    *,
    feature: Optional[Tensor] = None,
    config: Optional[MLPRefineConfig] = None,
    batch_size: int = 256,
    progress: bool = True,
) -> RefineResult:
    """Refine two-hand predictions with the MLP refiners (Algorithm 1, learned proposals).

    Args:
        hands: the two-hand model the refiners were trained for (its dtype is used; float32 is
            fastest).
        params: beta ``(N, 2, 10)``, phi ``(N, 2, 3)``, theta ``(N, 2, 45)``, tau ``(N, 3)``.
        j3d: ``(N, 42, 3)`` joint-head 3D joints (m, MANO order, right hand first).
        j2d: ``(N, 42, 2)`` joint-head 2D joints (any image units: normalised per sample).
        refiner: trained :class:`MLPRefiner` (see :func:`load_refiner`).
        feature: ``(N, F)`` stage-I image features when the refiners were trained with them.
        batch_size: samples processed together.

    Returns:
        :class:`~ihmr.refine.factorized.RefineResult`; ``e_col_*`` and ``max_*`` are the
        verification's collision errors and deepest penetrations (proxy unless ``collision="exact"``),
        ``gap_*`` the proxy gaps of the evidenced samples.
    """
    cfg = (config or MLPRefineConfig()).check()
    if refiner.config.model != hands.model_name:
        raise InputError(f"refiners trained for the {refiner.config.model!r} model, hands are {hands.model_name!r}")
    t0 = time.perf_counter()
    dt = hands.right.v_template.dtype
    refiner.eval()  # inputs are cast to the refiner's dtype and its proposals back (see features, propose)
    p_all = {k: params[k].to(dt).clone() for k in ("beta", "phi", "theta", "tau")}
    N = p_all["tau"].shape[0]
    if j3d.shape != (N, 42, 3) or j2d.shape != (N, 42, 2):
        raise InputError(f"j3d must be ({N}, 42, 3) and j2d ({N}, 42, 2), got {tuple(j3d.shape)} and {tuple(j2d.shape)}")
    j3_all = to_two_hand(j3d.to(dt), "mano")
    j3_all = j3_all - j3_all[:, :1, :1]
    j2_all = normalise_2d(to_two_hand(j2d.to(dt), "mano"))
    feat_all = None if feature is None else feature.to(dt)
    proxy = refiner.proxy(hands)
    subset = None if cfg.reference or cfg.collision != "proxy" else refiner.proxy_subset(hands)
    search = "dense" if cfg.reference else "groups"
    out = {k: [] for k in ("e_col_b", "max_b", "e3d_b", "gap_b", "e_col_a", "max_a", "e3d_a", "gap_a")}
    evidence_all = contact_evidence(j3_all) if cfg.contact else torch.zeros(N, dtype=torch.bool)
    snap = cfg.contact and cfg.snap and cfg.verify and "tau" in cfg.factors  # it moves tau, verified
    acc = {f: torch.zeros(N, dtype=torch.bool) for f in cfg.factors + (("snap",) if snap else ())}
    bar = tqdm(total=N, desc="refine (mlp)", disable=not progress, unit="sample")
    for s in range(0, N, batch_size):
        idx = torch.arange(s, min(N, s + batch_size))
        j3, j2 = j3_all[idx], j2_all[idx]
        f = None if feat_all is None else feat_all[idx]
        state = evaluate_state(hands, proxy, {k: v[idx] for k, v in p_all.items()}, j3, cfg.collision,
                               subset=subset, search=search)
        out["e_col_b"].append(state.e_col.clone())
        out["max_b"].append(state.e_max.clone())
        out["e3d_b"].append(state.e3d.clone())
        ev = evidence_all[idx]
        out["gap_b"].append(proxy_gap(hands, refiner, state, ev))
        for _ in range(cfg.passes):
            for factor in cfg.factors:
                state, ok = refine_stage(hands, refiner, factor, state, j3, j2, f, cfg, ev)
                acc[factor][idx] |= ok
        if snap:
            state, acc["snap"][idx] = _snap(hands, proxy, state, j3, ev & (state.e_col == 0), out["e3d_b"][-1] + cfg.e3d_slack,
                                            cfg, subset, search)
        for k in p_all:
            p_all[k][idx] = state.params[k]
        out["e_col_a"].append(state.e_col)
        out["max_a"].append(state.e_max)
        out["e3d_a"].append(state.e3d)
        out["gap_a"].append(proxy_gap(hands, refiner, state, ev))
        bar.update(len(idx))
    bar.close()
    return RefineResult(
        params=p_all, e_col_before=torch.cat(out["e_col_b"]), e_col_after=torch.cat(out["e_col_a"]),
        e3d_before=torch.cat(out["e3d_b"]), e3d_after=torch.cat(out["e3d_a"]),
        max_before=torch.cat(out["max_b"]), max_after=torch.cat(out["max_a"]), accepted=acc,
        seconds=time.perf_counter() - t0, contact=evidence_all, gap_before=torch.cat(out["gap_b"]).double(),
        gap_after=torch.cat(out["gap_a"]).double(),
    )
