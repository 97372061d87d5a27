"""Contact: surface distances, contact metrics, the contact term and criterion of OPT, the two-sided
synthetic benchmark."""

import numpy as np
import pytest
import torch
import trimesh

from ihmr.collision.distance import ProximityQuery, find_near, proximity_distance, surface_distances, surface_gap
from ihmr.collision.exact import find_penetrations
from ihmr.data.synthetic import MIXES, load_npz, make_synthetic, save_npz
from ihmr.errors import InputError
from ihmr.geometry.camera import project_weak_perspective
from ihmr.metrics import CONTACT_THRESHOLD, contact_stats, penetration_stats
from ihmr.refine import RefineConfig, refine_opt
from ihmr.refine.objective import centroid_tau_step, contact_energy, contact_evidence, contact_pairs, joint_error
from ihmr.refine.snap import SNAP_MARGIN, close_gaps

FAST = dict(iterations=15, snapshot_every=5)


def _spheres(gap, r=0.03):
    """Two icospheres of radius ``r`` whose surfaces are ``gap`` apart along x (negative: overlap)."""
    s = trimesh.creation.icosphere(subdivisions=3, radius=r)
    v = np.asarray(s.vertices)
    f = np.asarray(s.faces)
    verts = torch.as_tensor(np.stack([v, v + [2 * r + gap, 0.0, 0.0]]))[None]
    return verts, torch.as_tensor(np.stack([f, f]))


def test_surface_distances_known_answer():
    verts, faces = _spheres(0.01)
    d = surface_distances(verts, faces)[0]
    # the nearest vertices (the poles facing each other) are the gap apart; every distance is at
    # least the gap and exact against libigl's signed distance
    assert float(d.min()) == pytest.approx(0.01, abs=1e-9)
    import igl

    v = verts[0].numpy()
    f = faces[0].numpy()
    sd = igl.signed_distance(v[0], v[1], f)[0]
    np.testing.assert_allclose(d[0].numpy(), np.maximum(np.asarray(sd).reshape(-1), 0.0), atol=1e-12)
    # overlapping: vertices inside the other sphere are at distance 0
    verts, faces = _spheres(-0.01)
    d = surface_distances(verts, faces)[0]
    v = verts[0].numpy()
    inside = np.linalg.norm(v[0] - v[1].mean(0), axis=1) < 0.03 * 0.95  # well inside the other (polyhedral) sphere
    assert inside.any() and np.all(d[0].numpy()[inside] == 0)


def test_find_near_band_and_gradient():
    verts, faces = _spheres(0.005)
    q = find_near(verts, faces, band=0.008)
    assert len(q.batch) > 0 and float(q.distance.max()) <= 0.008 and not bool(q.inside.any())
    full = surface_distances(verts, faces)[0]
    np.testing.assert_allclose(q.distance.numpy(), full[q.hand, q.vertex].numpy(), atol=1e-12)
    v = verts.clone().requires_grad_()
    sub = ProximityQuery(*(x[:5] for x in (q.batch, q.hand, q.vertex, q.face, q.distance, q.inside)))
    torch.autograd.gradcheck(lambda x: proximity_distance(x, faces, sub), (v,), atol=1e-6)


def test_find_near_with_known_inside_is_the_outside_part():
    verts, faces = _spheres(-0.006)
    verts = torch.cat([verts, _spheres(0.004)[0]])
    full = find_near(verts, faces, band=0.01)
    q = find_penetrations(verts, faces)
    inside = torch.zeros(verts.shape[:3], dtype=torch.bool)
    inside[q.batch, q.hand, q.vertex] = True
    assert int(inside[0].sum()) > 0 and not bool(inside[1].any())
    part = find_near(verts, faces, band=0.01, inside=inside)
    out = ~full.inside
    assert not bool(part.inside.any()) and int(full.inside.sum()) == int(inside.sum())
    for k in ("batch", "hand", "vertex", "face", "distance"):
        torch.testing.assert_close(getattr(part, k), getattr(full, k)[out], rtol=0, atol=0)


def test_surface_gap_is_the_nearest_surface_distance():
    gaps = (0.004, 0.012, 0.03)
    verts = torch.cat([_spheres(g)[0] for g in gaps])
    faces = _spheres(0.0)[1]
    g = surface_gap(verts, faces, torch.zeros(3, dtype=torch.bool), band=0.02)
    full = surface_distances(verts, faces).flatten(1).amin(1)
    assert g.dtype == torch.float64 and float(g[0]) == pytest.approx(0.004, abs=1e-9)
    np.testing.assert_allclose(g[:2].numpy(), full[:2].numpy(), atol=1e-12)  # = find_near's nearest
    near = find_near(verts, faces, band=0.02)
    assert float(g[1]) == pytest.approx(float(near.distance[near.batch == 1].min()), abs=1e-12)
    assert float(g[2]) == float("inf")  # beyond the band
    # a penetrating sample is not searched: its gap is 0
    g = surface_gap(verts, faces, torch.tensor([False, True, False]))
    assert float(g[1]) == 0.0 and float(g[2]) == pytest.approx(0.03, abs=1e-9)


def test_joint_error_ignores_a_common_translation():
    j = torch.randn(3, 2, 21, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.05
    t = j + 0.002 * torch.randn(j.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shift = torch.tensor([0.03, -0.2, 0.5], dtype=torch.float64)
    torch.testing.assert_close(joint_error(j + shift, t), joint_error(j, t), rtol=0, atol=1e-15)
    torch.testing.assert_close(joint_error(j, t - shift), joint_error(j, t), rtol=0, atol=1e-15)
    # one hand moved by d relative to the other: each joint is d / 2 off after centring
    d = torch.tensor([0.01, 0.0, 0.0], dtype=torch.float64)
    moved = j.clone()
    moved[:, 1] += d
    torch.testing.assert_close(joint_error(moved, j), torch.full((3,), 42 * 0.005**2, dtype=torch.float64), rtol=1e-12, atol=0)


def test_centroid_tau_step_minimises_the_joint_error_over_tau():
    """The MLP's analytic tau proposal is the exact minimiser of the verification error over tau."""
    g = torch.Generator().manual_seed(2)
    j = torch.randn(4, 2, 21, 3, generator=g, dtype=torch.float64) * 0.05
    t = j + 0.01 * torch.randn(j.shape, generator=g, dtype=torch.float64)
    t[:, 1] += torch.tensor([0.02, -0.01, 0.015], dtype=torch.float64)  # the joint head places the left hand elsewhere
    step = centroid_tau_step(j, t).requires_grad_()
    moved = torch.cat([j[:, :1], j[:, 1:] + step[:, None, None]], 1)
    e = joint_error(moved, t)
    (grad,) = torch.autograd.grad(e.sum(), step)
    assert float(grad.abs().max()) < 1e-12  # stationary, and the error is convex in tau
    for d in (torch.tensor([1e-3, 0, 0]), torch.tensor([0, -2e-3, 1e-3])):
        off = torch.cat([j[:, :1], j[:, 1:] + (step.detach() + d.double())[:, None, None]], 1)
        assert bool((joint_error(off, t) > e.detach()).all())
    assert bool((e.detach() < joint_error(j, t)).all())


def test_contact_pairs_keep_the_nearest_per_sample():
    q = ProximityQuery(batch=torch.tensor([0, 0, 0, 1, 1, 2]), hand=torch.tensor([0, 1, 0, 0, 1, 1]),
                       vertex=torch.tensor([5, 6, 7, 1, 2, 3]), face=torch.zeros(6, dtype=torch.long),
                       distance=torch.tensor([0.004, 0.001, 0.002, 0.0, 0.003, 0.009], dtype=torch.float64),
                       inside=torch.tensor([False, False, False, True, False, False]))
    pairs, gap = contact_pairs(q, k=2, batch=4)
    np.testing.assert_allclose(gap.numpy(), [0.001, 0.0, 0.009, np.inf])
    kept = sorted(zip(pairs.batch.tolist(), pairs.vertex.tolist()))
    assert kept == [(0, 6), (0, 7), (1, 2), (2, 3)]  # inside vertices are never pulled


def test_contact_energy_pulls_to_the_margin():
    verts, faces = _spheres(0.006)
    q = find_near(verts, faces, band=0.02)
    pairs, gap = contact_pairs(q, k=8, batch=1)
    assert float(gap[0]) == pytest.approx(0.006, abs=1e-9)
    e = contact_energy(verts, faces, pairs, margin=0.001)
    assert 0.005 - 1e-9 <= float(e[0]) < 0.019
    assert float(contact_energy(verts, faces, pairs, margin=0.05)[0]) == 0.0
    v = verts.clone().requires_grad_()
    contact_energy(v, faces, pairs, margin=0.001).sum().backward()
    gx = v.grad[0, 1, :, 0]  # the left sphere is pulled towards -x, the right one towards +x
    assert float(gx.sum()) > 0 and float(v.grad[0, 0, :, 0].sum()) < 0


def test_contact_metrics_known_answers(two_hands64, synth12):
    hands, d = two_hands64, synth12
    gt = hands(**d.gt).vertices
    same = contact_stats(gt, gt, hands.faces)
    has = same.n_gt > 0
    assert has.sum() >= 6
    # a perfect prediction: the gap is the ground truth's own (its contact vertices lie within 2 mm)
    assert np.all((same.gap_mm[has] >= 0) & (same.gap_mm[has] <= 1000 * CONTACT_THRESHOLD)) and np.isnan(same.gap_mm[~has]).all()
    v = same.value()
    assert v["contact_precision"] == 1.0 and v["contact_recall"] == 1.0
    # the left hand moved 10 mm away along its separation direction: the gap grows by about that
    moved = dict(d.gt, tau=d.gt["tau"] + 0.01 * d.sep)
    st = contact_stats(hands(**moved).vertices, gt, hands.faces)
    assert np.all(st.gap_mm[has] > 3.0) and np.nanmean(st.gap_mm) < 12.0
    assert st.value()["contact_recall"] < 0.2
    assert CONTACT_THRESHOLD == 0.002


def test_two_sided_mix(two_hands64, synth12, synth12_two, tmp_path):
    two = synth12_two
    assert two.meta["mix"] == "two-sided" and synth12.meta["mix"] == "one-sided"
    assert int((two.error_side > 0).sum()) == 6 and int((two.error_side < 0).sum()) == 6
    pen, sep = two.sides()
    assert torch.equal(pen, two.error_side > 0) and not bool((pen & sep).any())
    for k in ("beta", "phi", "theta", "tau"):  # the same ground truth and draws but the translation error
        torch.testing.assert_close(two.gt[k], synth12.gt[k], rtol=0, atol=0)
        if k != "tau":
            torch.testing.assert_close(two.pred[k], synth12.pred[k], rtol=0, atol=0)
    torch.testing.assert_close(two.j3d, synth12.j3d, rtol=0, atol=0)
    # separated half: the left hand sits farther along the separation direction than the ground truth
    along = ((two.pred["tau"] - two.gt["tau"]) * two.sep).sum(1)
    assert bool((along[sep] > 0.004).all()) and bool((along[pen] < -0.004).all())
    back = load_npz(save_npz(tmp_path / "two.npz", two))
    assert torch.equal(back.error_side, two.error_side) and back.meta["mix"] == "two-sided"
    with pytest.raises(InputError, match="mix"):
        make_synthetic(4, seed=0, hands=two_hands64, progress=False, mix="sideways")
    assert MIXES == ("two-sided", "one-sided")


def _separated(hands, d, push=0.006):
    """Ground-truth pairs with the left hand ``push`` m away along the separation direction and a
    noise-free joint head (3D and 2D)."""
    pred = dict(d.gt, tau=d.gt["tau"] + push * d.sep)
    return pred, d.gt_j3d.clone(), project_weak_perspective(d.gt_j3d, d.cam), d.cam


def test_contact_closes_an_evidenced_gap_without_penetration(two_hands64, synth12):
    hands = two_hands64
    pred, j3d, j2d, cam = _separated(hands, synth12)
    ev = contact_evidence(j3d.reshape(-1, 2, 21, 3) - j3d.reshape(-1, 2, 21, 3)[:, :1, :1])
    assert int(ev.sum()) >= 8
    before = penetration_stats(hands(**pred).vertices, hands.faces)
    off = refine_opt(hands, pred, j3d, j2d, cam, RefineConfig(**FAST, contact=False), progress=False)
    for k, v in pred.items():  # the paper: collision-free pairs are left as they are
        torch.testing.assert_close(off.params[k], v, rtol=0, atol=0)
    res = refine_opt(hands, pred, j3d, j2d, cam, RefineConfig(iterations=30, snapshot_every=10), progress=False)
    assert torch.equal(res.contact, ev)
    free = torch.as_tensor(before.max_p == 0)
    touching = surface_distances(hands(**synth12.gt).vertices, hands.faces).flatten(1).amin(1) < 0.0005  # not the near misses
    sel = ev & free & touching
    assert int(sel.sum()) >= 4
    assert bool((res.gap_before[sel] > 0.002).all())
    assert int((res.gap_after[sel] <= CONTACT_THRESHOLD).sum()) >= 0.5 * int(sel.sum())
    assert float(res.gap_after[sel].mean()) < 0.4 * float(res.gap_before[sel].mean())
    assert bool((res.gap_after[ev] <= res.gap_before[ev].clamp(min=CONTACT_THRESHOLD) + 1e-12).all())
    after = penetration_stats(hands(**res.params).vertices, hands.faces)
    assert np.all(after.max_p[free.numpy()] == 0)  # touching never comes at the price of penetration
    assert bool((res.e3d_after <= res.e3d_before + 1e-12).all())
    assert float(res.e3d_after[sel].mean()) < 0.5 * float(res.e3d_before[sel].mean())


def test_contact_verification_never_makes_a_sample_worse(two_hands64, synth12_two):
    """Property: over perturbed two-sided inputs, no refined sample has a higher collision error,
    3D-joint error, MAX-P or evidenced gap than before."""
    hands = two_hands64
    g = torch.Generator().manual_seed(1)
    two = synth12_two
    pred = {k: v + 0.01 * torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in two.pred.items()}
    res = refine_opt(hands, pred, two.j3d, two.j2d, two.cam, RefineConfig(**FAST), progress=False)
    assert torch.all(res.e_col_after <= res.e_col_before + 1e-12)
    assert torch.all(res.e3d_after <= res.e3d_before + 1e-12)
    assert torch.all(res.max_after <= res.max_before + 1e-12)
    ev = res.contact
    assert torch.all(res.gap_after[ev] <= res.gap_before[ev].clamp(min=CONTACT_THRESHOLD) + 1e-12)
    assert torch.all(torch.isnan(res.gap_after[~ev]))
    before = penetration_stats(hands(**pred).vertices, hands.faces)
    after = penetration_stats(hands(**res.params).vertices, hands.faces)
    assert np.all(after.max_p <= before.max_p + 1e-9) and np.all(after.ave_p <= before.ave_p + 1e-9)


def test_close_gaps_snaps_separated_pairs_to_the_margin(two_hands64, synth12):
    """Known answer: touching ground-truth pairs pulled 5 mm apart, with the ground truth as joint
    head, snap back to within the margin, never penetrating, never above the error limit."""
    hands = two_hands64
    pred, j3d, _, _ = _separated(hands, synth12, push=0.005)
    target = j3d.reshape(-1, 2, 21, 3) - j3d.reshape(-1, 2, 21, 3)[:, :1, :1]
    out = hands(**pred)
    touching = surface_distances(hands(**synth12.gt).vertices, hands.faces).flatten(1).amin(1) < 0.0005
    limit = joint_error(out.joints, target)
    gap0 = surface_gap(out.vertices, hands.faces, torch.zeros(len(limit), dtype=torch.bool))
    delta, moved, e3d = close_gaps(out.vertices, out.joints, hands.faces, target, limit, torch.ones_like(touching))
    assert int((moved & touching).sum()) >= 0.75 * int(touching.sum()) >= 3
    assert torch.all(delta[~moved] == 0) and torch.all(torch.isnan(e3d[~moved]))
    new = hands(**dict(pred, tau=pred["tau"] + delta))
    torch.testing.assert_close(e3d[moved], joint_error(new.joints, target)[moved])
    assert torch.all(e3d[moved] <= limit[moved])
    gap = surface_gap(new.vertices, hands.faces, torch.zeros(len(limit), dtype=torch.bool))
    assert torch.all(gap[moved] < gap0[moved])  # the nearest pair comes closer: the gap never widens
    at_margin = moved & touching & (gap <= SNAP_MARGIN + 1e-9)  # the full move (shorter ones where it raised the error)
    assert int(at_margin.sum()) >= 0.5 * int(touching.sum()), (gap, touching)
    assert find_penetrations(new.vertices[moved], hands.faces).batch.numel() == 0
    # only the left hand moves, rigidly
    torch.testing.assert_close(new.vertices[:, 0], out.vertices[:, 0])
    torch.testing.assert_close(new.vertices[:, 1] - out.vertices[:, 1], delta[:, None].expand(-1, out.vertices.shape[2], -1))


def test_close_gaps_keeps_the_error_limit_and_the_rows(two_hands64, synth12):
    hands = two_hands64
    pred, _, _, _ = _separated(hands, synth12, push=0.005)
    out = hands(**pred)
    exact = out.joints - out.joints[:, :1, :1]  # the joint head is the prediction: any move raises the error
    limit = joint_error(out.joints, exact)
    _, moved, _ = close_gaps(out.vertices, out.joints, hands.faces, exact, limit, torch.ones(len(limit), dtype=torch.bool))
    assert not bool(moved.any())
    loose = limit + 1.0
    d_all, m_all, e_all = close_gaps(out.vertices, out.joints, hands.faces, exact, loose, torch.ones(len(limit), dtype=torch.bool))
    assert bool(m_all.any())
    rows = torch.arange(len(limit)) % 2 == 1  # each sample is snapped on its own: a subset gives its part
    d, m, e = close_gaps(out.vertices, out.joints, hands.faces, exact, loose, rows)
    assert torch.equal(m, m_all & rows) and torch.equal(d[rows], d_all[rows]) and torch.all(d[~rows] == 0)
    torch.testing.assert_close(e[m], e_all[m])


def test_contact_switches_of_the_command_line():
    from ihmr.cli.main import build_parser
    from ihmr.cli.refine import config_from_args

    parse = build_parser().parse_args
    on = config_from_args(parse(["refine", "in.npz", "-o", "out.npz"]))
    assert on.contact and on.snap
    no_snap = config_from_args(parse(["bench", "refine", "--no-snap"]))
    assert no_snap.contact and not no_snap.snap
    assert not config_from_args(parse(["refine", "in.npz", "-o", "out.npz", "--no-contact"])).contact


def test_snap_moves_pairs_and_its_bookkeeping_matches_the_refined_parameters(two_hands64, synth12):
    from ihmr.refine.objective import Targets

    hands = two_hands64
    pred, j3d, j2d, cam = _separated(hands, synth12, push=0.008)
    res = refine_opt(hands, pred, j3d, j2d, cam, RefineConfig(**FAST), progress=False)
    off = refine_opt(hands, pred, j3d, j2d, cam, RefineConfig(**FAST, snap=False), progress=False)
    assert "snap" not in off.accepted and bool(res.accepted["snap"].any())
    for k in ("beta", "phi", "theta"):  # the snap moves tau only, after the same stages
        torch.testing.assert_close(res.params[k], off.params[k], rtol=0, atol=0)
    moved = res.accepted["snap"]
    assert torch.equal(res.params["tau"][~moved], off.params["tau"][~moved])
    out = hands(**res.params)
    torch.testing.assert_close(res.e3d_after, joint_error(out.joints, Targets.from_joint_head(j3d, j2d, cam).j3d))
    ev = res.contact
    gap = surface_gap(out.vertices[ev], hands.faces, res.e_col_after[ev] > 0, RefineConfig().contact_band)
    torch.testing.assert_close(res.gap_after[ev], gap)
    assert torch.all(res.gap_after[ev] <= off.gap_after[ev] + 1e-12)  # it only closes gaps
    assert torch.all(res.e3d_after <= res.e3d_before + 1e-12)
    assert find_penetrations(out.vertices[moved], hands.faces).batch.numel() == 0
    # not without verification, nor when tau is not refined
    for cfg in (RefineConfig(**FAST, verify=False), RefineConfig(**FAST, factors=("phi",))):
        assert "snap" not in refine_opt(hands, pred, j3d, j2d, cam, cfg, progress=False).accepted
