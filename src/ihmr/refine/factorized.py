"""Factorized refinement with verification (Sec. 3.3.2, Algorithm 1) with the OPT refiner (A.3).

One factor at a time (default order tau, phi, theta, beta) is optimised with a fresh Adam for all
colliding samples of the batch at once. Every ``snapshot_every`` iterations (and at the start and end) a snapshot is taken; a
snapshot is a valid candidate for a sample when its 3D-joint error against the joint head is not
higher than at the stage's start (``e3d_tolerance``), its collision error (the summed exact depths)
is at most ``col_ratio`` times the start's and its deepest vertex (MAX-P) is not deeper than at the
start. Per sample the valid snapshot with the lowest 3D-joint error wins, the start state wins ties,
so a stage never makes a sample worse on any of these criteria: neither AVE-P nor MAX-P rises.

Contact (our addition, ``contact=True`` by default; ``False`` is the paper's behaviour): the
paper's objective only pushes hands apart, so a prediction that holds touching hands apart is left
as it is. Where the joint head evidences contact (:func:`~ihmr.refine.objective.contact_evidence`:
two hands' joints closer than the hands are thick), the sample is refined even without collision
and verification gets a contact criterion: a candidate must not widen the gap between the two
surfaces beyond ``touch`` (separating penetrating hands to a touching distance is fine). The
collision criteria stay as they are, so touching never comes at the price of penetration: a pair
that starts collision-free stays so. What closes a gap is the 3D-joint terms, aligned at the
joints' centroids (:mod:`ihmr.refine.objective`), which place the hands where the joint head puts
them. The contact term (:func:`~ihmr.refine.objective.contact_energy`: the ``contact_k`` vertices
nearest to the other hand pulled to within ``contact_margin`` of it, weight :data:`CONTACT_WEIGHT`)
acts only on pairs that penetrate at the stage's start: it holds them together while the collision
term pushes them apart, so they end touching instead of overshooting into a gap. Its (vertex,
triangle) pairs are found once, at the stage's start (the distances to those triangles follow every
step): searching them again at every snapshot gave the same figures (contact gap 8.52 vs 8.46 mm,
I-MPJPE 7.26 vs 7.27 mm) at 0.7 times the speed. On pairs that
start apart it pulled the hands together where they happened to be nearest rather than where the
joints put them, and ranking touching candidates above closer-fitting ones likewise widened the
benchmark's gap; candidates are ranked by the 3D-joint error alone. After the stages the contact
snap (:mod:`ihmr.refine.snap`, ``snap=True``) closes the gaps left where contact is evidenced.

Speed (our additions, each switchable): samples without collision are skipped (they are returned
unchanged, as in the paper); the exact collision search runs only at snapshots and its penetrating
(vertex, triangle) pairs drive the gradient until the next one; the rigid factors (tau, phi) move
precomputed hand meshes instead of re-running skinning, and their searches query AABB trees built
once per stage (:class:`~ihmr.collision.trees.RigidTrees`); a snapshot measures the gap only for
the candidates that pass the other criteria (the same choices).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal, Optional

import torch
from torch import Tensor
from tqdm import tqdm

from ihmr.collision.distance import ProximityQuery, find_near, surface_gap
from ihmr.collision.exact import PenetrationQuery, find_penetrations
from ihmr.collision.loss import per_vertex_penetration
from ihmr.collision.trees import RigidTrees
from ihmr.errors import InputError
from ihmr.geometry.rotations import axis_angle_to_matrix
from ihmr.handmodel.two_hands import TwoHands
from ihmr.metrics.contact import CONTACT_THRESHOLD
from ihmr.refine.objective import TERMS, Targets, cached_penetration, contact_energy, contact_pairs, joint_error, objective_terms
from ihmr.refine.snap import close_gaps

__all__ = ["FACTORS", "RefineConfig", "RefineResult", "RigidPoser", "refine_opt", "default_weights"]

FACTORS = ("tau", "phi", "theta", "beta")
#: Weight of the contact term (ours), applied only to evidenced pairs that penetrate at the start of
#: a stage. Measured on the two-sided benchmark (Inter-Close, sigma 10 mm, centroid-aligned joint
#: terms, n = 65 separated / 69 penetrating pairs): on every evidenced pair, weight 0 / 1 / 3 / 10
#: gave a contact gap on the separated part of 8.37 / 8.75 / 9.13 / 9.09 mm (from 16.14); on the
#: penetrating pairs only, weight 10 kept the separated part at 8.51 mm and closed the penetrating
#: part's final gap from 5.32 (weight 0) to 4.23 mm, I-MPJPE over all 7.35 -> 7.28 mm.
CONTACT_WEIGHT = 10.0


def default_weights() -> dict[str, dict[str, float]]:
    """Objective weights per factor stage (Table A.1, with the release's tau-stage 2D weight of
    100 and tau-term weight of 100 in the other stages)."""
    base = {"col": 1.0, "2d": 10.0, "3d": 1e3, "tau": 1e2, "reg": 0.1, "finger": 0.0, "contact": CONTACT_WEIGHT}
    return {
        "tau": dict(base, col=0.1, **{"2d": 100.0}, tau=1e3),
        "phi": dict(base),
        "theta": dict(base, finger=1e5),
        "beta": dict(base),
        "all": dict(base, finger=1e5),
    }


@dataclass
class RefineConfig:
    """Switches of the refinement (defaults: the full method; see the module docstring).

    Attributes:
        factors: factors to refine, in order (any subset of tau, phi, theta, beta).
        factorize: ``False`` refines all listed factors jointly in one stage (ablation).
        verify: ``False`` accepts every stage's final state (ablation).
        iterations: Adam steps per stage; ``snapshot_every``: snapshot interval.
        lr: Adam step size per factor.
        weights: objective weights per stage (keys: factor names and "all").
        terms: enabled objective terms (subset of ``TERMS``; Table A.3 ablation).
        collision: "exact" (ours) or "grid" (the paper's psi grid) in the objective; verification
            and metrics always use exact penetration.
        init: "pred" (stage-I predictions) or "mean" (shape and finger pose from the mean, Table 3).
        e3d_tolerance, col_ratio: verification thresholds (the release: 1.001 and 0.901; we keep
            1.0 so the 3D-joint error can never rise).
        e3d_slack: extra 3D-joint error (m^2, summed over the 42 joints) a candidate may add. 0 for
            a separate joint head; the image demo fits its parameters to the very landmarks it
            verifies against, so it allows joints to move a few millimetres.
        skip_collision_free: leave samples without collision untouched (with ``contact``: unless
            contact is evidenced and the hands do not touch yet).
        early_stop: end a stage at a snapshot once every sample of the batch has an accepted
            candidate without any collision left (and touching where contact is evidenced).
        contact: the contact term and criterion (see the module docstring); ``False``: the paper.
        contact_band: vertices farther than this (m) from the other hand are not pulled.
        contact_k: vertices per sample the contact term pulls (the nearest ones, both hands).
        contact_margin: distance (m) to which the contact term pulls them.
        touch: a pair touches when its two surfaces come this close (m; the contact metric's
            threshold).
        snap: after the stages, close the gaps left where contact is evidenced by a rigid move of
            the left hand (:func:`~ihmr.refine.snap.close_gaps`; only with ``contact``, ``verify``
            and tau among the ``factors``).
    """

    factors: tuple[str, ...] = FACTORS
    factorize: bool = True
    verify: bool = True
    iterations: int = 60
    snapshot_every: int = 15
    lr: dict[str, float] = field(default_factory=lambda: {"tau": 1e-3, "phi": 1e-2, "theta": 1e-2, "beta": 5e-2})
    weights: dict[str, dict[str, float]] = field(default_factory=default_weights)
    terms: tuple[str, ...] = TERMS
    collision: Literal["exact", "grid"] = "exact"
    grid_size: int = 32
    init: Literal["pred", "mean"] = "pred"
    e3d_tolerance: float = 1.0
    e3d_slack: float = 0.0
    col_ratio: float = 0.901
    skip_collision_free: bool = True
    early_stop: bool = True
    contact: bool = True
    contact_band: float = 0.015
    contact_k: int = 128
    contact_margin: float = 0.001
    touch: float = CONTACT_THRESHOLD
    snap: bool = True

    def check(self) -> "RefineConfig":
        bad = [f for f in self.factors if f not in FACTORS]
        if bad or not self.factors or len(set(self.factors)) != len(self.factors):
            raise InputError(f"factors must be distinct names among {FACTORS}, got {self.factors}")
        if set(self.terms) - set(TERMS):
            raise InputError(f"unknown objective terms {sorted(set(self.terms) - set(TERMS))}; known: {TERMS}")
        if self.collision not in ("exact", "grid"):
            raise InputError(f"collision must be 'exact' or 'grid', got {self.collision!r}")
        if self.init not in ("pred", "mean"):
            raise InputError(f"init must be 'pred' or 'mean', got {self.init!r}")
        if self.iterations < 1 or self.snapshot_every < 1:
            raise InputError("iterations and snapshot_every must be positive")
        if self.contact_k < 1 or not (self.contact_band > 0 and self.contact_margin >= 0 and self.touch >= 0):
            raise InputError("contact_k and contact_band must be positive, contact_margin and touch non-negative")
        return self


@dataclass
class RefineResult:
    """Refined parameters and per-sample bookkeeping.

    Attributes:
        params: dict with beta ``(B, 2, 10)``, phi ``(B, 2, 3)``, theta ``(B, 2, 45)``, tau ``(B, 3)``.
        e_col_before, e_col_after: ``(B,)`` collision error (sum of exact depths, m).
        e3d_before, e3d_after: ``(B,)`` 3D-joint error against the joint head (m^2).
        max_before, max_after: ``(B,)`` the deepest penetrating vertex of the collision measure
            (OPT: exact depths, i.e. MAX-P in m; the MLP refiners: their verification measure).
        accepted: factor -> ``(B,)`` bool, whether verification kept that stage's candidate (and
            ``"snap"`` -> whether the contact snap moved the pair, where it ran).
        seconds: wall time.
        contact: ``(B,)`` bool, contact was evidenced (and the contact refinement on); ``None``
            when the refiner has no contact refinement.
        gap_before, gap_after: ``(B,)`` the smallest distance between the two surfaces (m; 0 when
            they touch or penetrate, inf beyond the contact band) where contact is evidenced,
            NaN elsewhere; ``None`` as ``contact``.
    """

    params: dict[str, Tensor]
    e_col_before: Tensor
    e_col_after: Tensor
    e3d_before: Tensor
    e3d_after: Tensor
    max_before: Tensor
    max_after: Tensor
    accepted: dict[str, Tensor]
    seconds: float
    contact: Optional[Tensor] = None
    gap_before: Optional[Tensor] = None
    gap_after: Optional[Tensor] = None


def _pose(hands: TwoHands, p: dict[str, Tensor]):
    return hands(p["beta"], p["phi"], p["theta"], p["tau"])


def _exact_sum_max(vertices: Tensor, faces: Tensor) -> tuple[Tensor, Tensor]:
    """Summed and largest exact depth ``(B,)`` each (m) of ``vertices (B, 2, V, 3)``."""
    d = per_vertex_penetration(vertices.detach(), faces, "exact", check=False).flatten(1)
    return d.sum(1), d.amax(1)


@torch.no_grad()
def _near(vertices: Tensor, faces: Tensor, rows: Tensor, cfg: RefineConfig, query: Optional[PenetrationQuery],
          trees: Optional[RigidTrees] = None) -> ProximityQuery:
    """Contact pairs (for the contact term) of the samples ``rows``; ``query``: the snapshot's exact
    penetrating vertices (their inside test is then not repeated), or ``None``; ``trees``: of a
    rigid stage, or ``None``."""
    if rows.numel() == 0:
        return ProximityQuery.empty()
    inside = None
    if query is not None:
        inside = torch.zeros(vertices.shape[:3], dtype=torch.bool)
        inside[query.batch, query.hand, query.vertex] = True
        inside = inside[rows]
    sub = None if trees is None else trees.rows(rows)
    pairs, _ = contact_pairs(find_near(vertices[rows].detach(), faces, cfg.contact_band, inside, sub), cfg.contact_k, len(rows))
    pairs.batch = rows[pairs.batch]
    return pairs


@torch.no_grad()
def _gap(vertices: Tensor, faces: Tensor, evidence: Tensor, e_col: Tensor, cfg: RefineConfig,
         trees: Optional[RigidTrees] = None) -> Tensor:
    """``(B,)`` gaps (m; 0 for a penetrating pair, ``e_col > 0``; NaN without evidence)."""
    gap = torch.full((vertices.shape[0],), float("nan"), dtype=torch.float64)
    rows = torch.nonzero(evidence).flatten()
    if rows.numel() == 0:
        return gap
    sub = None if trees is None else trees.rows(rows)
    return gap.index_copy(0, rows, surface_gap(vertices[rows], faces, e_col[rows] > 0, cfg.contact_band, sub))


@torch.no_grad()
def _errors(hands: TwoHands, p: dict[str, Tensor], targets: Targets, evidence: Tensor, cfg: RefineConfig) -> tuple[Tensor, ...]:
    """Collision sum, MAX-P (exact, m), 3D-joint error (m^2) and gap (m, NaN without evidence), ``(B,)`` each."""
    out = _pose(hands, p)
    e_col, e_max = _exact_sum_max(out.vertices, hands.faces)
    return e_col, e_max, joint_error(out.joints, targets.j3d), _gap(out.vertices, hands.faces, evidence, e_col, cfg)


class RigidPoser:
    """Vertices and joints for new (phi, tau) by rotating hands posed once (shape, fingers fixed)."""

    def __init__(self, hands: TwoHands, p: dict[str, Tensor]) -> None:
        with torch.no_grad():
            z = torch.zeros_like(p["phi"])
            out = hands(p["beta"], z, p["theta"], torch.zeros_like(p["tau"]))
        self.v = out.vertices.clone()
        self.v[:, 1] -= out.joints[:, 1, :1]  # both hands relative to their own wrists
        self.j = out.joints.clone()
        self.j[:, 1] -= out.joints[:, 1, :1]
        self.trees = RigidTrees(self.v, hands.faces)  # the searches' AABB trees, built once per stage

    def posed_trees(self) -> RigidTrees:
        """:attr:`trees` in the pose of the last call."""
        return self.trees.pose(*self._pose)

    def __call__(self, phi: Tensor, tau: Tensor) -> tuple[Tensor, Tensor]:
        R = axis_angle_to_matrix(phi)  # (B, 2, 3, 3)
        off = torch.stack([torch.zeros_like(tau), tau], 1)[:, :, None]
        self._pose = (R.detach(), off[:, :, 0].detach())
        v = torch.einsum("bhij,bhvj->bhvi", R, self.v) + off
        j = torch.einsum("bhij,bhvj->bhvi", R, self.j) + off
        return v, j


class Adam:
    """Adam (Kingma & Ba, 2015) for the stages' few parameter tensors: the arithmetic of
    ``torch.optim.Adam``'s single-tensor path with its defaults (no weight decay, no amsgrad), so the
    steps are the same to the last bit, without ``torch.optim``'s first construction in a process
    (it imports ``torch._dynamo``: 1.6 s, a tenth of refining 64 pairs).

    Args:
        groups: ``(parameter, learning rate)`` pairs.
    """

    def __init__(self, groups: list[tuple[Tensor, float]], betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        self.groups = [(p, lr, torch.zeros_like(p), torch.zeros_like(p)) for p, lr in groups]
        self.betas, self.eps, self.t = betas, eps, 0

    def zero_grad(self) -> None:
        for p, *_ in self.groups:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        self.t += 1
        c1, c2 = 1 - b1**self.t, (1 - b2**self.t) ** 0.5
        for p, lr, m, v in self.groups:
            if p.grad is None:
                continue
            m.lerp_(p.grad, 1 - b1)
            v.mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
            p.addcdiv_(m, (v.sqrt() / c2).add_(self.eps), value=-lr / c1)


def _stage(
    hands: TwoHands, p: dict[str, Tensor], names: tuple[str, ...], targets: Targets, cfg: RefineConfig,
    key: str, e_col0: Tensor, e_max0: Tensor, e3d0: Tensor, evidence: Tensor, gap0: Tensor,
) -> tuple[dict[str, Tensor], Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Optimise the factors ``names`` for the batch ``p``; returns the selected parameters, their
    errors (collision sum, MAX-P, 3D joints, gap) and the per-sample acceptance."""
    w = cfg.weights[key]
    lr = {n: cfg.lr[n] for n in names}
    var = {n: p[n].detach().clone().requires_grad_() for n in names}
    opt = Adam([(var[n], lr[n]) for n in names])
    rigid = RigidPoser(hands, p) if set(names) <= {"tau", "phi"} else None
    best = {n: p[n].detach().clone() for n in names}
    best_e3d, best_col, best_max, best_gap = e3d0.clone(), e_col0.clone(), e_max0.clone(), gap0.clone()
    accepted = torch.zeros_like(e3d0, dtype=torch.bool)
    faces = hands.faces
    query = None
    use_contact = bool(evidence.any())
    hold = evidence & (e_col0 > 0)  # the contact term holds penetrating pairs together as they separate
    pull = bool(hold.any()) and w.get("contact", 0.0) > 0
    hold_rows = torch.nonzero(hold).flatten()
    pairs = ProximityQuery.empty()
    for it in range(cfg.iterations + 1):
        cur = dict(p, **var)
        if rigid is not None:
            verts, joints = rigid(cur["phi"], cur["tau"])
        else:
            out = _pose(hands, cur)
            verts, joints = out.vertices, out.joints
        if it % cfg.snapshot_every == 0 or it == cfg.iterations:
            with torch.no_grad():
                trees = None if rigid is None else rigid.posed_trees()
                query = find_penetrations(verts, faces, trees) if cfg.collision == "exact" or cfg.verify else None
                # exact sum and MAX-P in one pass over the pairs just found
                e_col, e_max = _exact_sum_max(verts, faces) if query is None else \
                    cached_penetration(verts.detach(), faces, query, gate=False, with_max=True)
                e3d = joint_error(joints.detach(), targets.j3d)
                if pull and it == 0:  # the pairs of the stage's start; their distances follow the step
                    pairs = _near(verts, faces, hold_rows, cfg, query, trees)
                if cfg.verify:
                    ok = (e3d <= cfg.e3d_tolerance * e3d0 + cfg.e3d_slack) & (e_col <= cfg.col_ratio * e_col0) & (e_max <= e_max0)
                    ok &= (e3d < best_e3d) | ((e3d <= best_e3d + cfg.e3d_slack) & (e_col < best_col) & (best_col > 0))
                else:
                    ok = torch.full_like(accepted, it == cfg.iterations)
                gap = gap0
                if use_contact and it > 0:  # the gap only where it decides: candidates passing the rest
                    gap = _gap(verts, faces, evidence & ok, e_col, cfg, trees)
                    if cfg.verify:  # never widen an evidenced gap
                        ok &= ~evidence | (gap <= torch.clamp(gap0, min=cfg.touch))
                for n in names:
                    best[n] = torch.where(ok.view(-1, *([1] * (best[n].ndim - 1))), var[n].detach(), best[n])
                best_e3d = torch.where(ok, e3d, best_e3d)
                best_col = torch.where(ok, e_col, best_col)
                best_max = torch.where(ok, e_max, best_max)
                best_gap = torch.where(ok, gap, best_gap)
                accepted |= ok
                done = accepted & (best_col == 0) & (~evidence | (best_gap <= cfg.touch))
                if cfg.early_stop and cfg.verify and bool(done.all()):
                    break
        if it == cfg.iterations:
            break
        if cfg.collision == "exact":
            col = cached_penetration(verts, faces, query)
        else:
            col = per_vertex_penetration(verts, faces, "grid", cfg.grid_size, check=False).sum(dim=(1, 2))
        con = contact_energy(verts, faces, pairs, cfg.contact_margin) if pull else None
        terms = objective_terms(joints, cur["beta"], targets, col, cfg.terms, con)
        loss = sum(w.get(k, 0.0) * v for k, v in terms.items()).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return best, best_col, best_max, best_e3d, best_gap, accepted


def _snap(hands: TwoHands, p: dict[str, Tensor], tg: Targets, rows: Tensor, limit: Tensor, e3d: Tensor, gap: Tensor,
          cfg: RefineConfig) -> tuple[Tensor, Tensor, Tensor]:
    """The contact snap of the collision-free evidenced ``rows`` with a gap: moves ``p["tau"]`` in
    place; returns the updated 3D-joint errors and gaps and ``(B,)`` which pairs moved."""
    moved = torch.zeros_like(rows)
    sel = torch.nonzero(rows & (gap > 0)).flatten()  # NaN (no evidence) compares False
    if sel.numel() == 0:
        return e3d, gap, moved
    with torch.no_grad():
        out = hands(p["beta"][sel], p["phi"][sel], p["theta"][sel], p["tau"][sel])
        delta, ok, err = close_gaps(out.vertices, out.joints, hands.faces, tg.j3d[sel], limit[sel], torch.ones(len(sel), dtype=torch.bool))
        if not bool(ok.any()):
            return e3d, gap, moved
        p["tau"] = p["tau"].index_add(0, sel, delta)
        g = sel[ok]
        v = out.vertices[ok].clone()
        v[:, 1] += delta[ok][:, None]
        moved[g] = True
        new_gap = surface_gap(v, hands.faces, torch.zeros(len(g), dtype=torch.bool), cfg.contact_band)
        return e3d.index_copy(0, g, err[ok]), gap.index_copy(0, g, new_gap), moved


def refine_opt(
    hands: TwoHands,
    params: dict[str, Tensor],
    j3d: Tensor,
    j2d: Tensor,
    cam: Tensor,
    config: Optional[RefineConfig] = None,
    batch_size: int = 64,
    progress: bool = True,
    persp: Optional[Tensor] = None,
) -> RefineResult:
    """Refine a set of two-hand predictions (Algorithm 1 with the OPT refiner).

    Args:
        hands: the two-hand model (its dtype is used).
        params: beta ``(N, 2, 10)``, phi ``(N, 2, 3)``, theta ``(N, 2, 45)``, tau ``(N, 3)``.
        j3d: ``(N, 42, 3)`` joint-head 3D joints (m, MANO order, right hand first).
        j2d: ``(N, 42, 2)`` joint-head 2D joints (normalised image coordinates).
        cam: ``(N, 3)`` weak-perspective cameras.
        batch_size: samples optimised together.
        persp: optional ``(N, 6)`` perspective cameras ``(f, cx, cy, Tx, Ty, Tz)`` with ``j2d`` in
            pixels (see :class:`Targets`); the weak-perspective ``cam`` is then unused.
    """
    cfg = (config or RefineConfig()).check()
    t0 = time.perf_counter()
    dt = hands.right.v_template.dtype
    p_all = {k: params[k].to(dt).clone() for k in ("beta", "phi", "theta", "tau")}
    if cfg.init == "mean":
        p_all["beta"] = torch.zeros_like(p_all["beta"])
        p_all["theta"] = torch.zeros_like(p_all["theta"])
    tg_all = Targets.from_joint_head(j3d.to(dt), j2d.to(dt), cam.to(dt), None if persp is None else persp.to(dt))
    N = p_all["beta"].shape[0]
    evidence_all = tg_all.contact if cfg.contact else torch.zeros(N, dtype=torch.bool)
    rec: dict[str, list[Tensor]] = {k: [] for k in ("col_b", "max_b", "e3d_b", "gap_b", "col_a", "max_a", "e3d_a", "gap_a")}
    snap = cfg.contact and cfg.snap and cfg.verify and "tau" in cfg.factors  # it moves tau, verified
    acc = {f: torch.zeros(N, dtype=torch.bool) for f in (cfg.factors if cfg.factorize else ("all",)) + (("snap",) if snap else ())}
    stages = [(f,) for f in cfg.factors] if cfg.factorize else [tuple(cfg.factors)]
    bar = tqdm(total=N, desc="refine (opt)", disable=not progress, unit="sample")
    for s in range(0, N, batch_size):
        idx = torch.arange(s, min(N, s + batch_size))
        p = {k: v[idx] for k, v in p_all.items()}
        tg = tg_all.index(idx)
        ev = evidence_all[idx]
        e_col, e_max, e3d, gap = _errors(hands, p, tg, ev, cfg)
        for k, v in (("col_b", e_col), ("max_b", e_max), ("e3d_b", e3d), ("gap_b", gap)):
            rec[k].append(v.clone())
        for names in stages:
            key = names[0] if cfg.factorize else "all"
            todo = (e_col > 0) | (ev & ~(gap <= cfg.touch))
            active = torch.nonzero(todo).flatten() if cfg.skip_collision_free else torch.arange(len(idx))
            if active.numel() == 0:
                continue
            sub = {k: v[active] for k, v in p.items()}
            best, bc, bm, be, bg, ok = _stage(hands, sub, names, tg.index(active), cfg, key, e_col[active], e_max[active], e3d[active],
                                              ev[active], gap[active])
            for n in names:
                p[n] = p[n].index_copy(0, active, best[n])
            e_col = e_col.index_copy(0, active, bc)
            e_max = e_max.index_copy(0, active, bm)
            e3d = e3d.index_copy(0, active, be)
            gap = gap.index_copy(0, active, bg)
            acc[key][idx[active]] = ok
        if snap:
            e3d, gap, acc["snap"][idx] = _snap(hands, p, tg, ev & (e_col == 0), rec["e3d_b"][-1] + cfg.e3d_slack, e3d, gap, cfg)
        for k in p_all:
            p_all[k][idx] = p[k]
        for k, v in (("col_a", e_col), ("max_a", e_max), ("e3d_a", e3d), ("gap_a", gap)):
            rec[k].append(v)
        bar.update(len(idx))
    bar.close()
    cat = {k: torch.cat(v) for k, v in rec.items()}
    return RefineResult(
        params=p_all, e_col_before=cat["col_b"], e_col_after=cat["col_a"], e3d_before=cat["e3d_b"],
        e3d_after=cat["e3d_a"], max_before=cat["max_b"], max_after=cat["max_a"], accepted=acc,
        seconds=time.perf_counter() - t0, contact=evidence_all, gap_before=cat["gap_b"], gap_after=cat["gap_a"],
    )
