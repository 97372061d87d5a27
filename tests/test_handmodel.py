"""The LBS core, the single- and two-hand layers, and the packaged open hand model."""

import numpy as np
import pytest
import torch
import trimesh
from scipy.spatial.transform import Rotation

import ihmr
from ihmr.errors import InputError, ModelFileError
from ihmr.geometry.rotations import mirror_axis_angle
from ihmr.handmodel.limits import JointLimits


def reference_lbs(data, betas, pose):
    """Independent numpy LBS (plain loops), one sample: betas (K,), pose (16, 3)."""
    v_shaped = data.v_template + data.shapedirs @ betas
    J = data.J_regressor @ v_shaped
    Rs = [Rotation.from_rotvec(p).as_matrix() for p in pose]
    G = [None] * 16
    for j in range(16):
        T = np.eye(4)
        T[:3, :3] = Rs[j]
        T[:3, 3] = J[j] - (J[data.parents[j]] if j > 0 else 0.0)
        G[j] = T if j == 0 else G[data.parents[j]] @ T
    posed_J = np.array([g[:3, 3] for g in G])
    verts = np.zeros_like(v_shaped)
    for j in range(16):
        A = G[j].copy()
        A[:3, 3] -= A[:3, :3] @ J[j]
        verts += data.weights[:, j : j + 1] * (v_shaped @ A[:3, :3].T + A[:3, 3])
    joints = np.concatenate([posed_J, verts[data.tip_vertex_ids]])
    return verts, joints


def test_zero_pose_gives_template(open_right):
    out = open_right()
    d = open_right.data
    np.testing.assert_allclose(out.vertices[0].numpy(), d.v_template, atol=1e-12)
    np.testing.assert_allclose(out.joints[0, :16].numpy(), d.J_regressor @ d.v_template, atol=1e-12)
    np.testing.assert_allclose(out.joints[0, 16:].numpy(), d.v_template[d.tip_vertex_ids], atol=1e-12)


def test_lbs_matches_independent_reference(open_right, rng):
    d = open_right.data
    betas = rng.normal(size=(3, 10))
    pose = rng.normal(size=(3, 16, 3)) * 0.4
    out = open_right(torch.as_tensor(betas), torch.as_tensor(pose[:, 0]), torch.as_tensor(pose[:, 1:].reshape(3, 45)))
    for b in range(3):
        v, j = reference_lbs(d, betas[b], pose[b])
        np.testing.assert_allclose(out.vertices[b].numpy(), v, atol=1e-10)
        np.testing.assert_allclose(out.joints[b].numpy(), j, atol=1e-10)


def test_gradients_match_finite_differences(open_right):
    torch.manual_seed(0)
    w = torch.randn(open_right.num_vertices, 3, dtype=torch.float64)

    def f(betas, go, hp, tr):
        out = open_right(betas, go, hp, tr)
        return (out.vertices * w).sum(dim=(1, 2)) + out.joints.sum(dim=(1, 2))

    args = (
        torch.randn(1, 10, dtype=torch.float64) * 0.5,
        torch.randn(1, 3, dtype=torch.float64) * 0.5,
        torch.randn(1, 45, dtype=torch.float64) * 0.3,
        torch.randn(1, 3, dtype=torch.float64) * 0.1,
    )
    args = tuple(a.requires_grad_() for a in args)
    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-5)


def test_two_hands_wrists_and_shapes(two_hands64, rng):
    B = 5
    beta = torch.as_tensor(rng.normal(size=(B, 2, 10)))
    phi = torch.as_tensor(rng.normal(size=(B, 2, 3)))
    theta = torch.as_tensor(rng.normal(size=(B, 2, 45)) * 0.3)
    tau = torch.as_tensor(rng.normal(size=(B, 3)) * 0.1)
    out = two_hands64(beta, phi, theta, tau)
    V = two_hands64.num_vertices
    assert out.vertices.shape == (B, 2, V, 3) and out.joints.shape == (B, 2, 21, 3)
    assert two_hands64.faces.shape[0] == 2 and two_hands64.faces.shape[2] == 3
    torch.testing.assert_close(out.joints[:, 0, 0], torch.zeros(B, 3, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(out.joints[:, 1, 0], tau, atol=1e-12, rtol=0)
    # Each hand equals its single-hand model up to the wrist translation.
    single = two_hands64.left(beta[:, 1], phi[:, 1], theta[:, 1])
    shift = tau - single.joints[:, 0]
    torch.testing.assert_close(out.vertices[:, 1], single.vertices + shift[:, None], atol=1e-12, rtol=0)


def test_left_is_mirror_of_right(two_hands64, rng):
    B = 4
    beta_r = torch.as_tensor(rng.normal(size=(B, 10)))
    phi_r = torch.as_tensor(rng.normal(size=(B, 3)))
    th_r = torch.as_tensor(rng.normal(size=(B, 45)) * 0.4)
    beta = torch.stack([beta_r, beta_r], 1)
    phi = torch.stack([phi_r, mirror_axis_angle(phi_r)], 1)
    theta = torch.stack([th_r, mirror_axis_angle(th_r)], 1)
    out = two_hands64(beta, phi, theta, torch.zeros(B, 3, dtype=torch.float64))
    M = torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(out.vertices[:, 1], out.vertices[:, 0] * M, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.joints[:, 1], out.joints[:, 0] * M, atol=1e-12, rtol=0)
    # Mirrored faces stay outward: equal (positive) volumes.
    faces = two_hands64.faces.numpy()
    vr = trimesh.Trimesh(out.vertices[0, 0].numpy(), faces[0], process=False).volume
    vl = trimesh.Trimesh(out.vertices[0, 1].numpy(), faces[1], process=False).volume
    assert vr > 0 and vl == pytest.approx(vr, rel=1e-9)


def test_open_model_is_a_closed_believable_hand(two_hands64):
    d = two_hands64.right.data
    assert 780 <= d.num_vertices <= 1700
    for h in (0, 1):
        m = trimesh.Trimesh(two_hands64.right.data.v_template * ([1, 1, 1] if h == 0 else [-1, 1, 1]),
                            two_hands64.faces[h].numpy(), process=False)
        assert m.is_watertight and m.is_winding_consistent
        assert m.volume > 0  # outward oriented
        assert len(trimesh.graph.split(m, only_watertight=False)) == 1
    # Adult hand: 18-19 cm from the wrist joint to the middle fingertip; MANO's rest frame.
    out = two_hands64.right()
    J = out.joints[0].numpy()
    length = np.linalg.norm(J[18] - J[0])
    assert 0.18 <= length <= 0.19
    assert J[4, 0] < J[0, 0] - 0.07  # fingers point along -x
    assert J[13, 2] > J[7, 2] + 0.03  # thumb on the +z side, pinky on -z
    # 21 joints: kinematic joints inside the closed surface.
    m = trimesh.Trimesh(d.v_template, d.faces, process=False)
    import igl

    wn = igl.winding_number(d.v_template, d.faces, (d.J_regressor @ d.v_template))
    assert (wn > 0.5).all(), wn


def test_shape_space_ordered_and_plausible(open_right):
    """Each component at beta = +-3 gives a hand of plausible size without distortion or folds."""
    from ihmr.geometry.mesh import face_normals

    d = open_right.data
    var = (d.shapedirs**2).sum(axis=(0, 1))
    assert np.all(np.diff(var) <= 1e-12), "components must be ordered by variance"
    edges = np.concatenate([d.faces[:, [0, 1]], d.faces[:, [1, 2]]])
    e0 = np.linalg.norm(d.v_template[edges[:, 0]] - d.v_template[edges[:, 1]], axis=1)
    n0 = face_normals(d.v_template, d.faces)
    for k in range(10):
        for s in (-3.0, 3.0):
            beta = torch.zeros(1, 10, dtype=torch.float64)
            beta[0, k] = s
            out = open_right(betas=beta)
            v = out.vertices[0].numpy()
            length = np.linalg.norm(out.joints[0, 18].numpy() - out.joints[0, 0].numpy())
            assert 0.14 < length < 0.24, (k, s, length)
            ratio = np.linalg.norm(v[edges[:, 0]] - v[edges[:, 1]], axis=1) / e0
            lo, hi = np.percentile(ratio, [1, 99])
            assert lo > 0.4 and hi < 2.0, (k, s, lo, hi)
            flips = ((face_normals(v, d.faces) * n0).sum(1) < 0).sum()
            assert flips <= 0.001 * len(d.faces), (k, s, flips)
            assert trimesh.Trimesh(v, d.faces, process=False).volume > 0


def test_posed_hands_stay_closed_without_folding(open_right):
    """Random and extreme in-limit poses: surface stays closed, keeps its volume and orientation."""
    d = open_right.data
    lim = JointLimits(d, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    theta = torch.cat([lim.sample(40, g), lim.sample(40, g, extreme=True), lim.extreme_pose(1.0), lim.extreme_pose(-1.0)])
    assert lim.within(theta).all()
    beta = torch.randn(theta.shape[0], 10, generator=g, dtype=torch.float64)
    out = open_right(betas=beta, hand_pose=theta)
    f = torch.as_tensor(d.faces)
    rest = open_right(betas=beta)

    def volume(v):
        t = v[:, f]
        return (t[:, :, 0] * torch.cross(t[:, :, 1], t[:, :, 2], dim=-1)).sum((-1, -2)) / 6

    ratio = volume(out.vertices) / volume(rest.vertices)
    assert ratio.min() > 0.75 and ratio.max() < 1.1
    # Orientation: a face whose normal turns against its skinning rotation is a fold.
    from ihmr.geometry.rotations import axis_angle_to_matrix
    from ihmr.handmodel.lbs import batch_rigid_transform

    _, rel = batch_rigid_transform(axis_angle_to_matrix(out.full_pose), out.rest_joints, open_right.parents)
    Wf = open_right.lbs_weights[f].mean(1)
    M = torch.einsum("fj,bjxy->bfxy", Wf, rel[..., :3, :3])

    def normals(v):
        t = v[:, f]
        return torch.cross(t[:, :, 1] - t[:, :, 0], t[:, :, 2] - t[:, :, 0], dim=-1)

    expected = torch.einsum("bfxy,bfy->bfx", M, normals(rest.vertices))
    flipped = ((expected * normals(out.vertices)).sum(-1) < 0).double().mean(1)
    assert flipped.max() < 0.03, flipped.max()
    # Interior points stay inside: the palm centre's winding number is 1.
    import igl

    for b in range(0, theta.shape[0], 7):
        v = out.vertices[b].numpy()
        palm = (out.joints[b, 0] * 0.5 + out.joints[b, 4] * 0.5).numpy()[None]
        assert igl.winding_number(v, d.faces, palm)[0] == pytest.approx(1.0, abs=1e-6)


def test_joint_limits_round_trip_and_mirror(two_hands64):
    lr = JointLimits(two_hands64.right.data, dtype=torch.float64)
    ll = JointLimits(two_hands64.left.data, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    th = lr.sample(20, g)
    torch.testing.assert_close(lr.from_local(lr.to_local(th)), th)
    torch.testing.assert_close(ll.to_local(mirror_axis_angle(th)), lr.to_local(th))
    wild = torch.randn(20, 45, generator=g, dtype=torch.float64) * 2
    assert not lr.within(wild).all()
    assert lr.within(lr.clamp(wild)).all()
    # Positive bend curls a finger towards the palm (-y in the rest frame).
    out = two_hands64.right(hand_pose=lr.extreme_pose(0.5))
    rest = two_hands64.right()
    assert out.joints[0, 17, 1] < rest.joints[0, 17, 1] - 0.02  # index tip moves palm-wards


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(beta=torch.zeros(2, 10)), "beta must have shape"),
        (dict(theta=torch.zeros(2, 2, 48)), "theta must have shape"),
        (dict(tau=torch.zeros(2, 2)), "tau must have shape"),
        (dict(phi=torch.zeros(2, 2, 3, dtype=torch.long)), "floating-point"),
        (dict(phi=torch.full((2, 2, 3), float("nan"))), "NaN"),
        (dict(tau=torch.full((2, 3), float("inf"))), "NaN or inf"),
    ],
)
def test_bad_parameters_raise_clear_errors(two_hands64, kwargs, match):
    args = dict(beta=torch.zeros(2, 2, 10), phi=torch.zeros(2, 2, 3), theta=torch.zeros(2, 2, 45), tau=torch.zeros(2, 3))
    args.update(kwargs)
    with pytest.raises(InputError, match=match):
        two_hands64(**{k: v.double() if v.is_floating_point() else v for k, v in args.items()})


def test_empty_batch_and_float32_outputs():
    hands = ihmr.TwoHands()
    with pytest.raises(InputError, match="empty"):
        hands(torch.zeros(0, 2, 10), torch.zeros(0, 2, 3), torch.zeros(0, 2, 45), torch.zeros(0, 3))
    out = hands(torch.zeros(1, 2, 10), torch.zeros(1, 2, 3), torch.zeros(1, 2, 45), torch.zeros(1, 3))
    assert out.vertices.dtype == torch.float32


def test_missing_and_truncated_model_files(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        ihmr.load_hand_model(tmp_path / "nothing.npz")
    from ihmr.handmodel.open_model import OPEN_MODEL_PATH

    data = OPEN_MODEL_PATH.read_bytes()
    bad = tmp_path / "truncated.npz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        ihmr.load_hand_model(bad)
    with pytest.raises(InputError, match="side"):
        ihmr.load_hand_model("open", side="middle")
    with pytest.raises(ModelFileError):
        ihmr.TwoHands(tmp_path / "no_mano_here")


@pytest.mark.parametrize("with_posedirs", [False, True])
def test_lbs_equals_the_previous_einsum_lbs(open_right, with_posedirs):
    """The reordered skinning gives the previous implementation's vertices, joints and gradients
    (up to rounding) on random shapes and poses, with and without pose correctives."""
    from ihmr.handmodel.lbs import _lbs_einsum, lbs

    g = torch.Generator().manual_seed(1)
    L = open_right
    V = L.num_vertices
    posedirs = torch.randn(135, V * 3, dtype=torch.float64, generator=g) * 1e-3 if with_posedirs else None
    betas0 = torch.randn(7, 10, dtype=torch.float64, generator=g)
    pose0 = torch.randn(7, 16, 3, dtype=torch.float64, generator=g) * 0.6
    w = torch.randn(7, V, 3, dtype=torch.float64, generator=g)
    outs, grads = [], []
    for fn in (_lbs_einsum, lbs):
        betas, pose = betas0.clone().requires_grad_(), pose0.clone().requires_grad_()
        v, j, r = fn(betas, pose, L.v_template, L.shapedirs, posedirs, L.J_regressor, L.parents, L.lbs_weights)
        ((v * w).sum() + j.square().sum() + r.sum()).backward()
        outs.append((v, j, r))
        grads.append((betas.grad, pose.grad))
    for a, b in zip(outs[0] + grads[0], outs[1] + grads[1]):
        assert a.shape == b.shape
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-13)
