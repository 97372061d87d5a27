"""Analytic IK: forward kinematics -> IK -> forward kinematics round trips."""

import pytest
import torch

import ihmr
from ihmr.errors import InputError
from ihmr.geometry.rotations import axis_angle_to_matrix, swing_rotation
from ihmr.handmodel.limits import JointLimits
from ihmr.stage1 import hand_ik, kabsch_rotation, pair_ik


@pytest.mark.parametrize("side", ["right", "left"])
def test_fk_ik_fk_round_trip(side):
    h = ihmr.load_hand_model("open", side, dtype=torch.float64)
    lim = JointLimits(h.data, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    theta = lim.sample(24, g)
    beta = torch.randn(24, 10, generator=g, dtype=torch.float64)
    go = torch.randn(24, 3, generator=g, dtype=torch.float64)
    tr = 0.1 * torch.randn(24, 3, generator=g, dtype=torch.float64)
    J = h(beta, go, theta, tr).joints
    r = hand_ik(h, J)
    J2 = h(r.beta, r.global_orient, r.hand_pose).joints
    J2 = J2 - J2[:, :1] + r.wrist[:, None]
    err = (J2 - J).norm(dim=-1)
    assert err.mean() < 1e-3 and err.max() < 3e-3  # metres; twist is invisible to joints


def test_pair_ik_reproduces_two_hands():
    """The starred rows' stage I: joints of both hands (right wrist anywhere) -> parameters whose
    posed joints are the given ones relative to the right wrist."""
    hands = ihmr.TwoHands("open", dtype=torch.float64)
    lim = JointLimits(hands.right.data, dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    B = 6
    theta = torch.stack([lim.sample(B, g), lim.sample(B, g)], 1)
    beta = torch.randn(B, 2, 10, generator=g, dtype=torch.float64)
    phi = torch.randn(B, 2, 3, generator=g, dtype=torch.float64)
    tau = 0.1 * torch.randn(B, 3, generator=g, dtype=torch.float64)
    J = hands(beta, phi, theta, tau).joints.reshape(B, 42, 3) + torch.tensor([0.05, -0.02, 0.6], dtype=torch.float64)
    p = pair_ik(hands, J)
    assert p["beta"].shape == (B, 2, 10) and p["theta"].shape == (B, 2, 45) and p["tau"].shape == (B, 3)
    torch.testing.assert_close(p["tau"], tau)
    J2 = hands(**p).joints.reshape(B, 42, 3)
    err = (J2 - (J - J[:, :1])).norm(dim=-1)
    assert err.mean() < 1e-3 and err.max() < 3e-3
    with pytest.raises(InputError, match=r"j3d must be \(B, 42, 3\)"):
        pair_ik(hands, J[:, :21])


def test_global_orientation_recovered_exactly_for_flat_hands():
    h = ihmr.load_hand_model("open", "right", dtype=torch.float64)
    go = torch.tensor([[0.3, -1.2, 0.5], [2.0, 0.1, -0.4]], dtype=torch.float64)
    J = h(global_orient=go, transl=torch.tensor([[0.1, 0, 0], [0, 0.2, 0]], dtype=torch.float64)).joints
    r = hand_ik(h, J, fit_beta=False)
    torch.testing.assert_close(axis_angle_to_matrix(r.global_orient), axis_angle_to_matrix(go), atol=1e-9, rtol=0)
    assert r.hand_pose.abs().max() < 1e-6


def test_kabsch_and_swing():
    g = torch.Generator().manual_seed(1)
    R = axis_angle_to_matrix(torch.randn(5, 3, generator=g, dtype=torch.float64))
    src = torch.randn(5, 6, 3, generator=g, dtype=torch.float64)
    src = src - src.mean(1, keepdim=True)
    torch.testing.assert_close(kabsch_rotation(src, src @ R.transpose(1, 2)), R)
    a = torch.randn(7, 3, generator=g, dtype=torch.float64)
    b = torch.randn(7, 3, generator=g, dtype=torch.float64)
    b[0] = -a[0]  # antiparallel
    S = swing_rotation(a, b)
    got = (S @ a[..., None])[..., 0]
    torch.testing.assert_close(got / got.norm(dim=-1, keepdim=True), b / b.norm(dim=-1, keepdim=True))
    # Minimal: the rotation axis is orthogonal to both directions.
    from ihmr.geometry.rotations import matrix_to_axis_angle

    axis = matrix_to_axis_angle(S[1:])
    assert (axis * a[1:]).sum(-1).abs().max() < 1e-9


def test_ik_bad_input():
    h = ihmr.load_hand_model("open", "right", dtype=torch.float64)
    with pytest.raises(InputError, match="21, 3"):
        hand_ik(h, torch.zeros(2, 20, 3, dtype=torch.float64))
    bad = torch.zeros(1, 21, 3, dtype=torch.float64)
    bad[0, 3, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        hand_ik(h, bad)
