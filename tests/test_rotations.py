import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from ihmr.errors import InputError
from ihmr.geometry.rotations import (
    axis_angle_to_matrix,
    matrix_to_axis_angle,
    matrix_to_rot6d,
    mirror_axis_angle,
    rot6d_to_matrix,
)


def test_axis_angle_matches_scipy(rng):
    aa = rng.normal(size=(200, 3)) * 1.5
    R = axis_angle_to_matrix(torch.as_tensor(aa)).numpy()
    np.testing.assert_allclose(R, Rotation.from_rotvec(aa).as_matrix(), atol=1e-12)


def test_round_trip_including_zero_and_pi(rng):
    aa = rng.normal(size=(300, 3))
    aa /= np.linalg.norm(aa, axis=1, keepdims=True)
    aa *= rng.uniform(0, math.pi - 1e-3, size=(300, 1))
    aa[0] = 0.0
    aa[1] = [1e-9, 0, 0]
    back = matrix_to_axis_angle(axis_angle_to_matrix(torch.as_tensor(aa))).numpy()
    np.testing.assert_allclose(back, aa, atol=1e-9)
    # Exactly pi: the axis is recovered up to sign.
    pi_aa = torch.tensor([[0.0, 0.0, math.pi], [math.pi / math.sqrt(2), math.pi / math.sqrt(2), 0.0]], dtype=torch.float64)
    R = axis_angle_to_matrix(pi_aa)
    torch.testing.assert_close(axis_angle_to_matrix(matrix_to_axis_angle(R)), R, atol=1e-9, rtol=0)


def test_batch_dims_and_6d_round_trip(rng):
    aa = torch.as_tensor(rng.normal(size=(4, 5, 3)))
    R = axis_angle_to_matrix(aa)
    assert R.shape == (4, 5, 3, 3)
    d6 = matrix_to_rot6d(R)
    assert d6.shape == (4, 5, 6)
    torch.testing.assert_close(rot6d_to_matrix(d6), R, atol=1e-12, rtol=0)
    # Orthonormal with det +1 even for a noisy 6D input.
    Rn = rot6d_to_matrix(d6 + 0.1 * torch.randn_like(d6))
    torch.testing.assert_close(Rn @ Rn.transpose(-1, -2), torch.eye(3, dtype=Rn.dtype).expand_as(Rn), atol=1e-12, rtol=0)
    torch.testing.assert_close(torch.linalg.det(Rn), torch.ones(4, 5, dtype=Rn.dtype), atol=1e-12, rtol=0)


def test_gradients_finite_at_zero_and_match_fd():
    aa = torch.zeros(1, 3, dtype=torch.float64, requires_grad=True)
    axis_angle_to_matrix(aa).sum().backward()
    assert torch.isfinite(aa.grad).all()
    x = torch.tensor([[0.3, -0.2, 0.5], [1e-8, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(axis_angle_to_matrix, (x,))
    y = torch.tensor([[0.3, -0.2, 0.5], [1.0, 2.0, -0.5]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a: matrix_to_axis_angle(axis_angle_to_matrix(a)), (y,))


def test_mirror_conjugation(rng):
    aa = torch.as_tensor(rng.normal(size=(50, 3)))
    M = torch.diag(torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(axis_angle_to_matrix(mirror_axis_angle(aa)), M @ axis_angle_to_matrix(aa) @ M)
    # Stacks of 15 joints mirror joint by joint.
    th = torch.as_tensor(rng.normal(size=(2, 45)))
    torch.testing.assert_close(mirror_axis_angle(th).reshape(2, 15, 3), mirror_axis_angle(th.reshape(2, 15, 3)))


def test_bad_shapes():
    with pytest.raises(InputError):
        axis_angle_to_matrix(torch.zeros(2, 4))
    with pytest.raises(InputError):
        matrix_to_axis_angle(torch.zeros(2, 3))
    with pytest.raises(InputError):
        rot6d_to_matrix(torch.zeros(5))
    with pytest.raises(ValueError):  # InputError is a ValueError: callers catching that keep working
        rot6d_to_matrix(torch.zeros(5))


def test_rotation_z_known_answer():
    import numpy as np

    from ihmr.geometry.rotations import rotation_z

    np.testing.assert_allclose(rotation_z(np.pi / 2) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(rotation_z(0.3) @ rotation_z(-0.3), np.eye(3), atol=1e-12)
    np.testing.assert_allclose(rotation_z(0.7)[2], [0.0, 0.0, 1.0], atol=1e-12)


def test_rotation_matrix_error():
    from ihmr.geometry.rotations import rotation_matrix_error

    R = axis_angle_to_matrix(torch.randn(8, 3, dtype=torch.float64))
    assert rotation_matrix_error(R).max() < 1e-14
    assert torch.allclose(rotation_matrix_error(1.1 * R), torch.full((8,), 1.1**3 - 1, dtype=torch.float64), atol=1e-12)  # det 1.331 > 0.21 off-orthonormal
    mirror = R * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)  # orthonormal, det -1
    assert torch.allclose(rotation_matrix_error(mirror), torch.full((8,), 2.0, dtype=torch.float64), atol=1e-12)
    with pytest.raises(InputError):
        rotation_matrix_error(torch.zeros(2, 3))
