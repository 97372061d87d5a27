"""Collision term (grid, Eq. 6-7) and exact penetration depths on meshes with known answers."""

import numpy as np
import pytest
import torch
import trimesh

from ihmr.collision import closest_point_on_triangle, collision_loss, per_vertex_penetration, psi_grid, sample_psi
from ihmr.errors import InputError
from ihmr.metrics import penetration_depths


def box(extents, centre, subdiv=3):
    m = trimesh.creation.box(extents=extents)
    v, f = m.vertices, m.faces
    for _ in range(subdiv):
        v, f = trimesh.remesh.subdivide(v, f)
    return np.asarray(v) + centre, np.asarray(f)


def pair(mesh_a, mesh_b):
    (va, fa), (vb, fb) = mesh_a, mesh_b
    assert fa.shape == fb.shape
    return torch.as_tensor(np.stack([va, vb]))[None], torch.as_tensor(np.stack([fa, fb]))


def sphere(r, centre, subdiv=3):
    s = trimesh.creation.icosphere(subdivisions=subdiv, radius=r)
    return np.asarray(s.vertices) + centre, np.asarray(s.faces)


def test_boxes_exact_depths_known_answer():
    # A = [-.05,.05]^3; B = [.03,.13] x [-.1,.1]^2. A's vertices with x > .03 are inside B at depth x - .03.
    verts, faces = pair(box([0.1, 0.1, 0.1], [0, 0, 0]), box([0.1, 0.2, 0.2], [0.08, 0, 0]))
    d = penetration_depths(verts, faces)[0].numpy()
    va = verts[0, 0].numpy()
    expected = np.where(va[:, 0] > 0.03 + 1e-12, va[:, 0] - 0.03, 0.0)
    np.testing.assert_allclose(d[0], expected, atol=1e-12)
    vb = verts[0, 1].numpy()  # B's vertices inside A: x in [.03, .05), |y|, |z| < .05
    inside = (vb[:, 0] < 0.05 - 1e-12) & (np.abs(vb[:, 1:]) < 0.05 - 1e-12).all(1)
    exp_b = np.where(inside, np.minimum(0.05 - vb[:, 0], 0.05 - np.abs(vb[:, 1:]).max(1)), 0.0)
    np.testing.assert_allclose(d[1], exp_b, atol=1e-12)


def test_spheres_depth_matches_analytic_within_faceting():
    r, sep = 0.05, 0.07
    verts, faces = pair(sphere(r, [0, 0, 0], 4), sphere(r, [sep, 0, 0], 4))
    d = penetration_depths(verts, faces)[0].numpy()
    va = verts[0, 0].numpy()
    analytic = np.clip(r - np.linalg.norm(va - [sep, 0, 0], axis=1), 0, None)
    # The polyhedral sphere lies inside the true one by at most r (1 - cos(edge angle / 2)).
    assert np.abs(d[0] - analytic).max() < 1.5e-4
    assert d[0].max() == pytest.approx(2 * r - sep, abs=1.5e-4)


def test_grid_converges_to_exact():
    verts, faces = pair(sphere(0.05, [0, 0, 0], 3), sphere(0.045, [0.06, 0.01, 0], 3))
    exact = per_vertex_penetration(verts, faces, "exact")
    errs = [(per_vertex_penetration(verts, faces, "grid", n) - exact).abs().mean().item() for n in (16, 32, 64)]
    assert errs[0] > errs[1] > errs[2]
    assert errs[2] < 1e-5


def test_grid_samples_nodes_exactly():
    """No half-cell offset: sampling at a grid node returns the node's value."""
    v, f = sphere(0.05, [0.01, -0.02, 0.03], 2)
    vt = torch.as_tensor(v)[None]
    psi, c, h = psi_grid(vt, torch.as_tensor(f), 9)
    idx = torch.tensor([[4, 4, 4], [3, 5, 4], [2, 4, 6]])  # [z, y, x]
    t = torch.linspace(-1, 1, 9, dtype=torch.float64)
    pts = c[0] + h[0] * torch.stack([t[idx[:, 2]], t[idx[:, 1]], t[idx[:, 0]]], -1)
    got = sample_psi(psi, c, h, pts[None])[0]
    torch.testing.assert_close(got, psi[0, idx[:, 0], idx[:, 1], idx[:, 2]], atol=1e-12, rtol=0)
    assert psi[0, 4, 4, 4] > 0.04  # the centre node is deep inside


def test_gradients_match_finite_differences():
    torch.manual_seed(0)
    verts, faces = pair(sphere(0.05, [0, 0, 0], 1), sphere(0.04, [0.055, 0.004, -0.003], 1))
    verts = (verts + 1e-3 * torch.randn_like(verts)).requires_grad_()
    w = torch.rand(verts.shape[:3], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: (penetration_depths(v, faces) * w).sum(), (verts,), eps=1e-7, atol=1e-6)
    # Grid mode: gradients reach the querying vertices (the grid itself carries none).
    psi, c, h = psi_grid(verts[:, 1].detach(), faces[1], 32)
    q = verts[:, 0].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda p: sample_psi(psi, c, h, p).sum(), (q,), eps=1e-7, atol=1e-6)


@pytest.mark.parametrize("mode", ["grid", "exact"])
def test_separated_meshes_give_exact_zero_and_zero_gradient(mode):
    verts, faces = pair(sphere(0.05, [0, 0, 0]), sphere(0.05, [0.2, 0, 0]))
    verts.requires_grad_()
    loss = collision_loss(verts, faces, mode)
    assert loss.item() == 0.0
    loss.sum().backward()
    assert torch.count_nonzero(verts.grad) == 0


@pytest.mark.parametrize("mode", ["grid", "exact"])
def test_swapping_hands_swaps_directions(mode):
    verts, faces = pair(sphere(0.05, [0, 0, 0], 2), sphere(0.04, [0.06, 0, 0], 2))
    d = per_vertex_penetration(verts, faces, mode)
    ds = per_vertex_penetration(verts.flip(1), faces.flip(0), mode)
    torch.testing.assert_close(ds, d.flip(1), atol=1e-12, rtol=0)
    assert d[0, 0].sum() > 0 and d[0, 1].sum() > 0


def test_batched_equals_single():
    a = pair(sphere(0.05, [0, 0, 0], 2), sphere(0.04, [0.06, 0, 0], 2))
    b = pair(sphere(0.05, [0, 0, 0], 2), sphere(0.04, [0.3, 0, 0], 2))
    c = pair(sphere(0.05, [0, 0, 0], 2), sphere(0.04, [0.02, 0.02, 0], 2))
    verts = torch.cat([a[0], b[0], c[0]])
    for mode in ("grid", "exact"):
        batched = collision_loss(verts, a[1], mode)
        single = torch.cat([collision_loss(x[0], x[1], mode) for x in (a, b, c)])
        torch.testing.assert_close(batched, single)
        assert batched[1] == 0 and batched[2] > batched[0] > 0


def test_closest_point_regions():
    a, b, c = (torch.tensor(x, dtype=torch.float64) for x in ([0.0, 0, 0], [1.0, 0, 0], [0.0, 1, 0]))
    p = torch.tensor([[0.2, 0.2, 1.0], [-1.0, -1.0, 0], [2.0, -0.5, 0], [0.5, -1.0, 0], [1.0, 1.0, 0.0], [-1.0, 0.5, 0]], dtype=torch.float64)
    q = closest_point_on_triangle(p, a.expand_as(p), b.expand_as(p), c.expand_as(p))
    expected = torch.tensor([[0.2, 0.2, 0], [0, 0, 0], [1, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0], [0, 0.5, 0]], dtype=torch.float64)
    torch.testing.assert_close(q, expected)


def test_bad_input():
    verts, faces = pair(sphere(0.05, [0, 0, 0], 1), sphere(0.05, [0.05, 0, 0], 1))
    with pytest.raises(InputError, match="empty batch"):
        penetration_depths(verts[:0], faces)
    bad = verts.clone()
    bad[0, 1, 3, 0] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        collision_loss(bad, faces, "grid")
    degenerate = verts.clone()
    f0 = faces[0, 5]
    degenerate[0, 0, f0[1]] = degenerate[0, 0, f0[0]]
    degenerate[0, 0, f0[2]] = degenerate[0, 0, f0[0]]
    with pytest.raises(InputError, match="degenerate mesh: face"):
        penetration_depths(degenerate, faces)
    with pytest.raises(InputError, match=r"\(B, 2, V, 3\)"):
        penetration_depths(verts[0], faces)
    with pytest.raises(InputError, match="faces index"):
        penetration_depths(verts, faces + 1000)
    with pytest.raises(InputError, match="mode"):
        collision_loss(verts, faces, "voxels")
    with pytest.raises(InputError, match="grid_size"):
        psi_grid(verts[:, 0], faces[0], grid_size=1)


def test_two_hands_at_rest_do_not_collide_and_overlapping_do():
    import ihmr

    hands = ihmr.TwoHands(dtype=torch.float64)
    z = torch.zeros(2, 2, 10, dtype=torch.float64)
    phi = torch.zeros(2, 2, 3, dtype=torch.float64)
    th = torch.zeros(2, 2, 45, dtype=torch.float64)
    tau = torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.01, 0.0]], dtype=torch.float64)
    out = hands(z, phi, th, tau)
    for mode in ("grid", "exact"):
        loss = collision_loss(out.vertices, hands.faces, mode)
        assert loss[0] == 0 and loss[1] > 0.1


@pytest.mark.parametrize("shape", ["box", "ico"])
def test_pseudo_normal_sign_near_corners_and_edges(shape, rng):
    """Points near vertices, edges and faces of a coarse mesh: same inside/outside as the winding number."""
    import igl

    from ihmr.collision.exact import pseudo_normal_inside

    m = trimesh.creation.box(extents=[0.1, 0.08, 0.06]) if shape == "box" else trimesh.creation.icosphere(0, 0.05)
    v, f = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)
    feats = np.concatenate([v, (v[f[:, 0]] + v[f[:, 1]]) / 2, v[f].mean(1)])
    p = np.repeat(feats, 20, axis=0) + rng.normal(scale=0.004, size=(len(feats) * 20, 3))
    _, fi, c = igl.point_mesh_squared_distance(p, v, f)
    inside = pseudo_normal_inside(p, np.asarray(c), np.asarray(fi).reshape(-1), v, f)
    np.testing.assert_array_equal(inside, igl.winding_number(v, f, p) > 0.5)


def test_batched_search_equals_the_previous_per_sample_loop(two_hands64):
    """find_penetrations (batched filters and inside test) returns exactly the pairs of the
    previous per-sample loop, in the same order, on random overlapping two-hand poses."""
    from ihmr.collision.exact import _find_penetrations_loop, find_penetrations

    g = torch.Generator().manual_seed(2)
    B = 10
    beta = torch.randn(B, 2, 10, dtype=torch.float64, generator=g)
    phi = torch.randn(B, 2, 3, dtype=torch.float64, generator=g) * 1.5
    theta = torch.randn(B, 2, 45, dtype=torch.float64, generator=g) * 0.4
    tau = torch.randn(B, 3, dtype=torch.float64, generator=g) * 0.03
    tau[0] = torch.tensor([0.0, 0.0, 0.5], dtype=torch.float64)  # one pair far apart
    v = two_hands64(beta, phi, theta, tau).vertices
    old, new = _find_penetrations_loop(v, two_hands64.faces), find_penetrations(v, two_hands64.faces)
    assert old.batch.numel() > 100 and 0 not in old.batch.tolist()
    for k in ("batch", "hand", "vertex", "face"):
        assert torch.equal(getattr(new, k), getattr(old, k)), k


def test_rigid_trees_answer_as_the_posed_meshes(two_hands64):
    """RigidTrees (built once on each hand in its own frame) give the closest points of the posed
    meshes, and the searches that use them find what they find without."""
    import igl

    from ihmr.collision.distance import find_near, surface_gap
    from ihmr.collision.exact import find_penetrations
    from ihmr.collision.trees import RigidTrees
    from ihmr.geometry.rotations import axis_angle_to_matrix

    g = torch.Generator().manual_seed(4)
    B = 6
    zero = torch.zeros(B, 3, dtype=torch.float64)
    local = two_hands64(torch.randn(B, 2, 10, dtype=torch.float64, generator=g) * 0.5, torch.zeros(B, 2, 3, dtype=torch.float64),
                        torch.randn(B, 2, 45, dtype=torch.float64, generator=g) * 0.3, zero).vertices
    R = axis_angle_to_matrix(torch.randn(B, 2, 3, dtype=torch.float64, generator=g))
    t = torch.stack([zero, torch.randn(B, 3, dtype=torch.float64, generator=g) * 0.02 + torch.tensor([0.0, 0.04, 0.0], dtype=torch.float64)], 1)
    v = torch.einsum("bhij,bhvj->bhvi", R, local) + t[:, :, None]
    faces = two_hands64.faces
    trees = RigidTrees(local, faces).pose(R, t)
    p = v[2, 0].numpy()
    d2, fi, c = trees.query(2, 1, p)
    d2_ref, fi_ref, c_ref = igl.point_mesh_squared_distance(p, v[2, 1].numpy().copy(), faces[1].numpy().astype(np.int64))
    np.testing.assert_allclose(d2, np.asarray(d2_ref).reshape(-1), rtol=0, atol=1e-15)
    np.testing.assert_allclose(c, np.asarray(c_ref), rtol=0, atol=1e-12)
    tri = v[2, 1][faces[1][torch.as_tensor(fi)]]  # the returned triangles are at that distance (ties: any of them)
    on = closest_point_on_triangle(torch.as_tensor(p), tri[:, 0], tri[:, 1], tri[:, 2])
    np.testing.assert_allclose(((on - torch.as_tensor(p)) ** 2).sum(-1).numpy(), d2, rtol=0, atol=1e-14)
    a, b = find_penetrations(v, faces), find_penetrations(v, faces, trees)
    assert a.batch.numel() > 50
    for k in ("batch", "hand", "vertex"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k
    pen = torch.zeros(B, dtype=torch.bool).index_fill(0, torch.unique(a.batch), True)
    torch.testing.assert_close(surface_gap(v, faces, pen, 0.02, trees), surface_gap(v, faces, pen, 0.02), rtol=0, atol=1e-12)
    rows = torch.tensor([4, 1])
    n1, n2 = find_near(v[rows], faces, 0.01), find_near(v[rows], faces, 0.01, trees=trees.rows(rows))
    assert torch.equal(n1.vertex, n2.vertex) and torch.equal(n1.inside, n2.inside)
    torch.testing.assert_close(n1.distance, n2.distance, rtol=0, atol=1e-12)


@pytest.mark.parametrize("shape", ["box", "ico"])
def test_pseudo_normal_many_meshes_equals_one_at_a_time(shape, rng):
    """The batched inside test (``mesh=``) gives what the single-mesh test gives on each mesh."""
    import igl

    from ihmr.collision.exact import _pseudo_normal_inside_loop, pseudo_normal_inside

    m = trimesh.creation.box(extents=[0.1, 0.08, 0.06]) if shape == "box" else trimesh.creation.icosphere(0, 0.05)
    v0, f = np.asarray(m.vertices, dtype=np.float64), np.asarray(m.faces, dtype=np.int64)
    vs = np.stack([v0 * s for s in (1.0, 0.7, 1.3)])
    feats = np.concatenate([v0, (v0[f[:, 0]] + v0[f[:, 1]]) / 2, v0[f].mean(1)])
    ps, cs, fis, mesh, want = [], [], [], [], []
    for k, v in enumerate(vs):
        p = np.repeat(feats, 10, axis=0) + rng.normal(scale=0.004, size=(len(feats) * 10, 3))
        _, fi, c = igl.point_mesh_squared_distance(p, v, f)
        fi = np.asarray(fi).reshape(-1)
        want.append(_pseudo_normal_inside_loop(p, np.asarray(c), fi, v, f))
        ps.append(p), cs.append(np.asarray(c)), fis.append(fi), mesh.append(np.full(len(p), k))
    got = pseudo_normal_inside(np.concatenate(ps), np.concatenate(cs), np.concatenate(fis), vs, f, mesh=np.concatenate(mesh))
    np.testing.assert_array_equal(got, np.concatenate(want))
    np.testing.assert_array_equal(pseudo_normal_inside(ps[1], cs[1], fis[1], vs[1], f), want[1])
