"""Stage-I network and losses: shapes, known answers, masking, weight files, a tiny overfit."""

from types import SimpleNamespace

import pytest
import torch

import ihmr
from ihmr import losses as L
from ihmr.errors import InputError
from ihmr.geometry.camera import project_weak_perspective
from ihmr.stage1 import (
    NUM_PARAMS,
    Stage1Loss,
    Stage1Net,
    Stage1Output,
    Stage1Targets,
    mean_params,
    pack_params,
    soft_argmax_3d,
    unpack_params,
)

# Small joint head for CPU tests.
SMALL = dict(heatmap_size=16, depth_bins=16, deconv_channels=32, num_deconv=2)


@pytest.fixture(scope="module")
def hands32():
    return ihmr.TwoHands("open")


@pytest.fixture(scope="module")
def net(hands32):
    torch.manual_seed(0)
    return Stage1Net("resnet18", hand_model=hands32, **SMALL).eval()


def random_params(B, g):
    return {
        "beta": 0.5 * torch.randn(B, 2, 10, generator=g),
        "phi": 0.4 * torch.randn(B, 2, 3, generator=g),
        "theta": 0.2 * torch.randn(B, 2, 45, generator=g),
        "tau": torch.tensor([0.12, 0.0, 0.02]) + 0.02 * torch.randn(B, 3, generator=g),
        "cam": torch.tensor([5.0, 0.0, 0.0]) + 0.2 * torch.randn(B, 3, generator=g),
    }


# ---------------------------------------------------------------------------------------- network


def test_output_shapes(net, hands32):
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = net(x)
    assert isinstance(out, Stage1Output)
    V = hands32.num_vertices
    assert out.params["beta"].shape == (2, 2, 10)
    assert out.params["phi"].shape == (2, 2, 3)
    assert out.params["theta"].shape == (2, 2, 45)
    assert out.params["tau"].shape == (2, 3)
    assert out.cam.shape == (2, 3) and out.vector.shape == (2, NUM_PARAMS)
    assert out.feature.shape == (2, 1024)
    assert out.j2d.shape == (2, 42, 2) and out.j3d.shape == (2, 42, 3)
    assert out.hand_type_logits.shape == (2, 2) and out.root_depth.shape == (2,)
    assert out.joints.shape == (2, 2, 21, 3) and out.vertices.shape == (2, 2, V, 3)
    assert torch.equal(out.cam, out.vector[:, :3])
    assert out.j2d.abs().max() <= 1.0
    assert torch.equal(out.j3d[:, 0], torch.zeros(2, 3))  # right wrist at the origin
    assert torch.allclose(out.joints[:, 0, 0], torch.zeros(2, 3), atol=1e-6)
    # 128 x 128 works too, and the network is deterministic in eval mode
    with torch.no_grad():
        a, b = net(torch.ones(1, 3, 128, 128)), net(torch.ones(1, 3, 128, 128))
    assert a.j2d.shape == (1, 42, 2) and torch.equal(a.vector, b.vector)


def test_no_hand_model_and_bad_input():
    torch.manual_seed(0)
    n = Stage1Net("resnet18", **SMALL).eval()
    with torch.no_grad():
        out = n(torch.randn(1, 3, 64, 64))
    assert out.joints is None and out.vertices is None
    with pytest.raises(InputError, match="B, 3, H, W"):
        n(torch.randn(1, 64, 64))
    with pytest.raises(InputError, match="empty"):
        n(torch.randn(0, 3, 64, 64))
    with pytest.raises(InputError, match="backbone"):
        Stage1Net("vgg16")
    with pytest.raises(InputError, match="depth_range"):
        Stage1Net("resnet18", depth_range=0.0, **SMALL)


def test_regressor_starts_from_mean_params(net):
    init = net.init_params
    expected = torch.zeros(NUM_PARAMS)
    expected[0] = 5.0
    assert torch.equal(init, expected)
    assert "regressor.init_params" in net.state_dict()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = net(x)  # small initial weights: close to the mean
        assert (out.vector - init).abs().max() < 0.2
        layer = net.regressor.layer
        w, b = layer.weight.clone(), layer.bias.clone()
        layer.weight.zero_()
        layer.bias.zero_()
        try:
            out0 = net(x)
        finally:
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    assert torch.equal(out0.vector, init.expand(2, -1))
    assert torch.equal(out0.params["cam"], torch.tensor([[5.0, 0, 0]] * 2))
    assert torch.equal(out0.params["theta"], torch.zeros(2, 2, 45))


def test_regressor_iterates_with_feedback():
    reg = ihmr.stage1.network.IterativeRegressor(feature_dim=4, num_iters=3)
    with torch.no_grad():
        reg.layer.weight.zero_()
        reg.layer.bias.fill_(1.0)
    assert torch.equal(reg(torch.zeros(2, 4)), (reg.init_params + 3.0).expand(2, -1))  # 3 residual steps


def test_mean_params_options():
    m = mean_params(cam_scale=4.0, mean_theta=torch.full((45,), 0.1))
    p = unpack_params(m[None])
    assert torch.equal(p["cam"], torch.tensor([[4.0, 0, 0]]))
    assert torch.allclose(p["theta"], torch.full((1, 2, 45), 0.1))
    assert torch.equal(p["phi"], torch.zeros(1, 2, 3)) and torch.equal(p["beta"], torch.zeros(1, 2, 10))
    with pytest.raises(InputError):
        mean_params(mean_theta=torch.zeros(44))


def test_pack_unpack_round_trip():
    g = torch.Generator().manual_seed(1)
    params = random_params(3, g)
    vec = pack_params(params)
    assert vec.shape == (3, 122)
    back = unpack_params(vec)
    for k in params:
        assert torch.equal(back[k], params[k]), k
    # documented layout
    assert torch.equal(vec[:, 0:3], params["cam"])
    assert torch.equal(vec[:, 3:6], params["phi"][:, 0]) and torch.equal(vec[:, 6:51], params["theta"][:, 0])
    assert torch.equal(vec[:, 51:54], params["phi"][:, 1]) and torch.equal(vec[:, 54:99], params["theta"][:, 1])
    assert torch.equal(vec[:, 99:109], params["beta"][:, 0]) and torch.equal(vec[:, 109:119], params["beta"][:, 1])
    assert torch.equal(vec[:, 119:], params["tau"])
    v = torch.randn(4, 122, generator=g)
    assert torch.equal(pack_params(unpack_params(v)), v)
    with pytest.raises(InputError):
        unpack_params(torch.zeros(2, 121))
    with pytest.raises(InputError, match="missing"):
        pack_params({"beta": params["beta"]})


# ---------------------------------------------------------------------------------------- joint head


def test_soft_argmax_delta_heatmap():
    B, J, D, H, W = 2, 3, 4, 5, 6
    hm = torch.zeros(B, J, D, H, W)
    cells = [(0, 0, 0), (3, 4, 5), (1, 2, 3)]
    for j, (d, h, w) in enumerate(cells):
        hm[:, j, d, h, w] = 100.0  # exp(-100) elsewhere: a delta
    c = soft_argmax_3d(hm)
    for j, (d, h, w) in enumerate(cells):
        want = torch.tensor([(2 * w + 1) / W - 1, (2 * h + 1) / H - 1, (2 * d + 1) / D - 1])
        assert torch.allclose(c[:, j], want.expand(B, 3), atol=1e-6), (j, c[:, j], want)
    # uniform -> the centre; half/half between two cells -> their midpoint
    assert torch.allclose(soft_argmax_3d(torch.zeros(1, 1, 4, 4, 4)), torch.zeros(1, 1, 3), atol=1e-6)
    hm = torch.full((1, 1, 2, 2, 2), -100.0)
    hm[0, 0, 0, 0, 0] = hm[0, 0, 0, 0, 1] = 0.0
    assert torch.allclose(soft_argmax_3d(hm), torch.tensor([[[0.0, -0.5, -0.5]]]), atol=1e-6)


def test_joints_from_heatmaps_known_answer(net):
    D, S = 16, 16
    hm = torch.full((1, 42, D, S, S), -100.0)
    cells = torch.stack([torch.randint(0, D, (42,)), torch.randint(0, S, (42,)), torch.randint(0, S, (42,))], 1)
    for j, (d, h, w) in enumerate(cells.tolist()):
        hm[0, j, d, h, w] = 0.0
    cam = torch.tensor([[4.0, 0.3, -0.2]])
    root = torch.tensor([0.05])
    j2d, j3d = net.joints_from_heatmaps(hm, cam, root)
    ctr = lambda i, n: (2 * i.float() + 1) / n - 1  # noqa: E731
    uv = torch.stack([ctr(cells[:, 2], S), ctr(cells[:, 1], S)], -1)
    assert torch.allclose(j2d[0], uv, atol=1e-6)
    z = (ctr(cells[:, 0], D) * net.depth_range).reshape(2, 21)
    z = z - z[:, :1]
    z[1] += 0.05
    # x/y: inverse weak perspective, relative to the right wrist
    xy = (uv - uv[:1]) / 4.0
    assert torch.allclose(j3d[0, :, :2], xy, atol=1e-6)
    assert torch.allclose(j3d[0, :, 2], z.reshape(42), atol=1e-6)
    # consistent with the parameter head's camera: projecting the 3D joints (placed at the right
    # wrist's back-projection) gives the 2D joints back
    wrist = uv[:1] / 4.0 - cam[0, 1:]
    assert torch.allclose(project_weak_perspective((j3d[0] + torch.cat([wrist[0], torch.zeros(1)]))[None], cam)[0], uv, atol=1e-5)


# ---------------------------------------------------------------------------------------- losses


def gt_batch(hands, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    p = random_params(B, g)
    p["beta"][:, 1] = p["beta"][:, 0]  # one person: equal shapes, so L_reg is 0 at the truth
    h = hands(p["beta"], p["phi"], p["theta"], p["tau"])
    j2d = project_weak_perspective(h.joints, p["cam"])
    t = Stage1Targets(
        j2d=j2d, j3d=h.joints + 0.3, beta=p["beta"], phi=p["phi"], theta=p["theta"],
        hand_present=torch.ones(B, 2), joint_valid=torch.ones(B, 2, 21),
    )  # fmt: skip
    return p, h, t


def fake_output(p, joints, j2d, j3d, logits):
    """A Stage1Output with leaf tensors (to inspect gradients)."""
    leaf = {k: v.clone().requires_grad_() for k, v in p.items()}
    joints = joints.clone().requires_grad_()
    B = joints.shape[0]
    out = Stage1Output(
        params=leaf, vector=pack_params(leaf), cam=leaf["cam"], feature=torch.zeros(B, 1024),
        j2d=j2d.reshape(B, 42, 2).clone().requires_grad_(), j3d=j3d.reshape(B, 42, 3).clone().requires_grad_(),
        hand_type_logits=logits.clone().requires_grad_(), root_depth=torch.zeros(B), joints=joints, vertices=None,
    )  # fmt: skip
    return out


def test_losses_zero_at_ground_truth(hands32):
    p, h, t = gt_batch(hands32)
    j3d = h.joints - h.joints[:, :1, :1]
    out = fake_output(p, h.joints, t.j2d, j3d, 40.0 * (2 * t.hand_present - 1))
    total, terms = Stage1Loss()(out, t)
    assert set(terms) == {"pose", "shape", "tau", "j3d", "j2d", "head_j3d", "head_j2d", "reg", "beta_l2", "hand_type"}
    for k, v in terms.items():
        if k == "beta_l2":  # a prior, not a data term
            assert torch.allclose(v, (p["beta"] ** 2).mean())
        elif k == "hand_type":
            assert v < 1e-15
        else:  # float32 rounding of the shifted 3D target
            assert v.abs() < (1e-7 if k == "head_j3d" else 1e-10), (k, v)
    # the joint-head target and tau target are read from the (shifted) 3D ground truth
    assert torch.allclose(total, 0.1 * terms["beta_l2"] + terms["hand_type"], atol=1e-6)
    # and each term responds to an error in its input
    out.params["tau"].data += 0.01
    out.params["theta"].data[:, 0, 5] += 0.3
    _, terms2 = Stage1Loss()(out, t)
    assert terms2["tau"].item() == pytest.approx(1e-4, rel=1e-3)
    assert terms2["pose"] > 1e-4


def test_loss_values_by_hand():
    # joint2d: projection 5 * (xy + 0) vs zeros -> mean |5 xy|
    j = torch.zeros(1, 2, 21, 3)
    j[0, 0, 3, :2] = torch.tensor([0.1, -0.2])
    v = L.joint2d_loss(j, torch.tensor([[5.0, 0, 0]]), torch.zeros(1, 2, 21, 2))
    assert v.item() == pytest.approx((0.5 + 1.0) / (42 * 2))
    # joint3d after right-wrist alignment: a global shift costs nothing
    g = torch.randn(2, 2, 21, 3)
    assert L.joint3d_loss(g + torch.tensor([1.0, 2, 3]), g).item() < 1e-12
    assert L.joint_head_3d_loss((g + 5.0).reshape(2, 42, 3), g).item() < 1e-6
    # shape L1 and consistency
    b = torch.zeros(1, 2, 10)
    b[0, 1] = 1.0
    assert L.shape_loss(b, torch.zeros(1, 2, 10)).item() == pytest.approx(0.5)
    assert L.shape_consistency_loss(b).item() == pytest.approx(1.0)
    # pose: a 180-degree flip of one joint changes 2 rows of R by 2 each: |R - I|^2 = 8
    ph = torch.zeros(1, 2, 3)
    th = torch.zeros(1, 2, 45)
    th[0, 0, :3] = torch.tensor([torch.pi, 0, 0])
    assert L.pose_loss(ph, th, ph, torch.zeros(1, 2, 45)).item() == pytest.approx(8 / (2 * 16 * 9), rel=1e-5)
    # hand type: logits 0 -> log 2
    assert L.hand_type_loss(torch.zeros(3, 2), torch.ones(3, 2)).item() == pytest.approx(0.693147, rel=1e-5)


def test_collision_term_pushes_penetrating_hands_apart(hands32):
    """The Fig. 6 term: the proxy collision of the predicted meshes on two-hand samples, zero for
    hands apart, and its gradient on tau separates hands that overlap."""
    from ihmr.collision.spheres import build_sphere_proxy, proxy_collision

    z = lambda *s: torch.zeros(*s)  # noqa: E731
    tau = torch.tensor([[0.0, 0.01, 0.0], [0.5, 0.0, 0.0]], requires_grad=True)  # overlapping; 0.5 m apart
    out = hands32(z(2, 2, 10), z(2, 2, 3), z(2, 2, 45), tau)
    vec = z(2, NUM_PARAMS)
    net_out = SimpleNamespace(vector=vec, params=dict(unpack_params(vec), tau=tau), vertices=out.vertices, joints=out.joints,
                              hand_type_logits=z(2, 2))
    loss = Stage1Loss({"collision": 5.0}, hands=hands32)
    total, terms = loss(net_out, Stage1Targets(hand_present=torch.ones(2, 2)))
    ref = proxy_collision(out.vertices, out.joints, hands32.faces, build_sphere_proxy(hands32))
    assert ref[0] > 0 and ref[1] == 0
    assert terms["collision"].item() == pytest.approx(ref.mean().item(), rel=1e-5)
    terms["collision"].backward()
    step = -tau.grad[0]  # descent direction of tau (the left wrist) for the overlapping pair
    assert step.norm() > 0 and tau.grad[1].abs().max() == 0
    shifted = hands32(z(1, 2, 10), z(1, 2, 3), z(1, 2, 45), tau[:1].detach() + 0.002 * step / step.norm())
    assert proxy_collision(shifted.vertices, shifted.joints, hands32.faces, build_sphere_proxy(hands32))[0] < ref[0]
    # The proxy follows the predicted meshes' dtype and device (a GPU run; "meta" stands in for it).
    moved = build_sphere_proxy(hands32).to(torch.float64, "meta")
    assert moved.radius.dtype == moved.ref_size.dtype == torch.float64 and moved.anchors.dtype == torch.long
    assert all(getattr(moved, n).device.type == "meta" for n in ("anchors", "radius", "queries", "ref_size", "query_leaves",
                                                                  "query_valid", "anchor_leaves", "anchor_valid"))
    with pytest.raises(InputError, match="needs the hand model"):
        Stage1Loss({"collision": 1.0})
    with pytest.raises(InputError, match=">= 0"):
        Stage1Loss({"collision": -1.0}, hands=hands32)


def test_masked_entries_get_zero_gradient():
    g = torch.Generator().manual_seed(3)
    B = 4
    valid = torch.rand(B, 2, 21, generator=g) > 0.4
    valid[:, 0, 0] = True
    valid[0, 0, 0] = False  # sample 0: right wrist unknown -> left hand aligned to its own wrist
    valid[0, 1, 0] = True
    cam = torch.tensor([[5.0, 0.1, 0.0]]).repeat(B, 1)
    fns = {
        "j3d": lambda x: L.joint3d_loss(x, torch.randn(B, 2, 21, 3, generator=g), valid),
        "j2d": lambda x: L.joint2d_loss(x, cam, torch.randn(B, 2, 21, 2, generator=g), valid),
        "head_j3d": lambda x: L.joint_head_3d_loss(x.reshape(B, 42, 3), torch.randn(B, 42, 3, generator=g), valid.reshape(B, 42)),
        "head_j2d": lambda x: L.joint_head_2d_loss(x[..., :2].reshape(B, 42, 2), torch.randn(B, 2, 21, 2, generator=g), valid),
    }
    for name, fn in fns.items():
        x = torch.randn(B, 2, 21, 3, generator=g, requires_grad=True)
        fn(x).backward()
        gn = x.grad.abs().sum(-1)
        non_ref = valid.clone()
        non_ref[:, :, 0] = False  # wrists also act as references
        if name in ("j3d", "head_j3d"):
            non_ref[0, 0] = False  # dropped with its wrist, see below
        assert (gn[~valid] == 0).all(), name
        assert (gn[non_ref] > 0).all(), name
        if name in ("j3d", "head_j3d"):
            # sample 0: right hand entirely dropped, left hand still supervised
            assert gn[0, 0].sum() == 0 and gn[0, 1].sum() > 0
    # NaN in a masked entry does not leak
    x = torch.zeros(1, 2, 21, 2, requires_grad=True)
    gt = torch.zeros(1, 2, 21, 2)
    gt[0, 1, 5] = float("nan")
    m = torch.ones(1, 2, 21)
    m[0, 1, 5] = 0
    loss = L.joint_head_2d_loss(x, gt, m)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(x.grad).all()
    # nothing valid: 0, attached to the graph
    x = torch.randn(2, 2, 21, 3, requires_grad=True)
    z = L.joint3d_loss(x, x.detach() + 1, torch.zeros(2, 2, 21))
    z.backward()
    assert z.item() == 0.0 and (x.grad == 0).all()


def test_absent_hand_parameters_get_zero_gradient(hands32):
    p, h, t = gt_batch(hands32, B=2, seed=5)
    t.hand_present = torch.tensor([[1.0, 1.0], [1.0, 0.0]])  # sample 1: no left hand
    g = torch.Generator().manual_seed(9)
    noisy = {k: v + 0.05 * torch.randn(v.shape, generator=g) for k, v in p.items()}
    out = fake_output(noisy, h.joints + 0.01 * torch.randn(h.joints.shape, generator=g), t.j2d + 0.05, t.j3d + 0.05, torch.zeros(2, 2))
    total, terms = Stage1Loss()(out, t)
    total.backward()
    P = out.params
    for k in ("beta", "phi", "theta"):
        assert (P[k].grad[1, 1] == 0).all(), k
        assert (P[k].grad[1, 0] != 0).any() and (P[k].grad[0, 1] != 0).any(), k
    assert (P["tau"].grad[1] == 0).all() and (P["tau"].grad[0] != 0).any()
    assert (out.joints.grad[1, 1] == 0).all() and (out.joints.grad[0, 1] != 0).any()
    assert (out.j3d.grad[1, 21:] == 0).all() and (out.j2d.grad[1, 21:] == 0).all()
    assert (out.hand_type_logits.grad[1] != 0).all()  # absence is itself a hand-type label
    # MANO ground truth missing for one hand: pose/shape do not touch it, joints still do
    out = fake_output(noisy, h.joints + 0.01, t.j2d, t.j3d, torch.zeros(2, 2))
    t.hand_present = None
    t.mano_valid = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    _, terms = Stage1Loss({"reg": 0, "beta_l2": 0, "tau": 0, "j3d": 0, "j2d": 0})(out, t)
    (terms["pose"] + terms["shape"]).backward()
    assert (out.params["theta"].grad[0, 1] == 0).all() and (out.params["beta"].grad[0, 1] == 0).all()
    assert (out.params["theta"].grad[0, 0] != 0).any()


def test_stage1_loss_errors(net):
    with pytest.raises(InputError, match="unknown loss term"):
        Stage1Loss({"penetration": 1.0})
    out = SimpleNamespace(vector=torch.zeros(1, 122), params=unpack_params(torch.zeros(1, 122)), joints=None)
    with pytest.raises(InputError, match="hand_model"):
        Stage1Loss()(out, Stage1Targets(j3d=torch.zeros(1, 2, 21, 3)))
    with pytest.raises(InputError, match="joint_valid"):
        Stage1Loss()(out, Stage1Targets(j3d=torch.zeros(1, 2, 21, 3), joint_valid=torch.ones(1, 21)))


# ---------------------------------------------------------------------------------------- weights


def test_pretrained_path_errors_and_load(tmp_path):
    import torchvision

    with pytest.raises(InputError, match="not found"):
        Stage1Net("resnet18", pretrained_path=tmp_path / "nope.pth", **SMALL)
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(InputError, match="cannot read"):
        Stage1Net("resnet18", pretrained_path=junk, **SMALL)
    notdict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], notdict)
    with pytest.raises(InputError, match="not a state dict"):
        Stage1Net("resnet18", pretrained_path=notdict, **SMALL)
    torch.manual_seed(1)
    ref = torchvision.models.resnet18(weights=None)
    sd = ref.state_dict()
    bad = dict(sd)
    bad["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    del bad["layer4.1.bn2.bias"]
    bad_path = tmp_path / "bad.pth"
    torch.save(bad, bad_path)
    with pytest.raises(InputError, match=r"do not match torchvision resnet18.*missing.*wrong shapes"):
        Stage1Net("resnet18", pretrained_path=bad_path, **SMALL)
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, good)
    n = Stage1Net("resnet18", pretrained_path=good, **SMALL)
    assert torch.equal(n.encoder.resnet.conv1.weight, sd["conv1.weight"])
    assert torch.equal(n.encoder.resnet.layer4[1].bn2.running_var, sd["layer4.1.bn2.running_var"])


def test_state_dict_round_trip(net, tmp_path):
    path = tmp_path / "stage1.pt"
    torch.save(net.state_dict(), path)
    torch.manual_seed(123)  # a differently initialised copy
    other = Stage1Net("resnet18", hand_model=net.hand_model, **SMALL)
    other.load_state_dict(torch.load(path, weights_only=True))
    other.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        a, b = net(x), other(x)
    for k in ("vector", "feature", "j2d", "j3d", "hand_type_logits", "root_depth", "joints", "vertices"):
        assert torch.equal(getattr(a, k), getattr(b, k)), k


# ---------------------------------------------------------------------------------------- overfit


def fit_cam(joints):
    """Weak-perspective cameras ``(B, 3)`` that put both hands inside ``[-0.9, 0.9]``."""
    xy = joints[..., :2].flatten(1, 2)
    lo, hi = xy.min(1).values, xy.max(1).values
    s = 1.8 / (hi - lo).max(-1).values
    return torch.cat([s[:, None], -(lo + hi) / 2], -1)


def test_tiny_overfit(hands32):
    """resnet18 + heads memorise 8 random images (64 x 64) with fixed random targets."""
    torch.manual_seed(0)
    B = 8
    g = torch.Generator().manual_seed(7)
    model = Stage1Net("resnet18", hand_model=hands32, **SMALL).train()
    # random smooth colour fields plus noise (pure white noise pools to nearly identical features)
    images = torch.nn.functional.interpolate(torch.randn(B, 3, 4, 4, generator=g), size=(64, 64), mode="bilinear")
    images = images + 0.2 * torch.randn(B, 3, 64, 64, generator=g)
    p = random_params(B, g)
    with torch.no_grad():
        h = hands32(p["beta"], p["phi"], p["theta"], p["tau"])
    present = (torch.rand(B, 2, generator=g) > 0.2).float()
    present[:, 0] = 1.0
    t = Stage1Targets(
        j2d=project_weak_perspective(h.joints, fit_cam(h.joints)), j3d=h.joints, beta=p["beta"], phi=p["phi"],
        theta=p["theta"], hand_present=present,
    )  # fmt: skip
    assert t.j2d.abs().max() <= 0.9 + 1e-5
    crit = Stage1Loss()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses, first, last = [], None, None
    for _ in range(50):
        total, terms = crit(model(images), t)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
        first = first or {k: v.item() for k, v in terms.items()}
        last = {k: v.item() for k, v in terms.items()}
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] / 4, (losses[0], losses[-1])
    for k in ("pose", "shape", "j3d", "j2d", "head_j2d", "head_j3d"):
        assert last[k] < first[k] / 2, (k, first[k], last[k])
