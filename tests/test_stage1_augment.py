"""Stage-I training augmentation: geometry consistent between image, joints and parameters."""

import numpy as np
import pytest
import torch

from ihmr.stage1.augment import (
    AugmentConfig,
    augment_sample,
    color_jitter,
    flip_sample,
    motion_blur,
    rotate_scale_sample,
)

S = 64


def _sample(rng, hands=None):
    """A random two-hand sample; with ``hands`` the 3D joints are the hand model's for the params."""
    beta = rng.normal(size=(2, 10)) * 0.5
    phi = rng.normal(size=(2, 3))
    theta = rng.normal(size=(2, 45)) * 0.2
    tau = np.array([-0.12, 0.02, 0.03]) + rng.normal(size=3) * 0.01
    if hands is not None:
        out = hands(*(torch.as_tensor(x)[None] for x in (beta, phi, theta, tau)))
        j3d = out.joints[0].numpy() + np.array([0.01, -0.02, 0.6])
    else:
        j3d = rng.normal(size=(2, 21, 3)) * 0.05 + np.array([0, 0, 0.6])
    return {
        "image": rng.integers(0, 256, size=(S, S, 3), dtype=np.uint8),
        "j2d": rng.uniform(5, S - 6, size=(2, 21, 2)),
        "j3d": j3d,
        "valid": rng.uniform(size=(2, 21)) > 0.2,
        "present": np.array([1.0, 1.0]),
        "beta": beta, "phi": phi, "theta": theta, "tau": tau,
        "param_valid": np.array([True, False]),
    }


def test_flip_twice_is_identity(rng):
    s = _sample(rng)
    f = flip_sample(s)
    assert not np.array_equal(f["image"], s["image"])
    np.testing.assert_array_equal(f["valid"], s["valid"][::-1])
    np.testing.assert_array_equal(f["param_valid"], [False, True])
    ff = flip_sample(f)
    np.testing.assert_array_equal(ff["image"], s["image"])
    for k in ("j2d", "j3d", "beta", "phi", "theta", "tau"):
        np.testing.assert_allclose(ff[k], s[k], atol=1e-12, err_msg=k)
    for k in ("valid", "present", "param_valid"):
        np.testing.assert_array_equal(ff[k], s[k])


def test_flipped_joints_follow_the_image(rng):
    s = _sample(rng)
    img = np.zeros((S, S, 3), np.uint8)
    x, y = 10, 40
    img[y, x] = 255
    s["image"], s["j2d"][0, 5] = img, (x, y)
    f = flip_sample(s)
    yy, xx = np.unravel_index(f["image"][..., 0].argmax(), (S, S))
    np.testing.assert_allclose(f["j2d"][1, 5], (xx, yy))  # the right hand's joint now belongs to the left


def test_rotated_joints_match_rotated_image(rng):
    s = _sample(rng)
    img = np.zeros((S, S, 3), np.uint8)
    x, y = 44, 20  # a bright 3x3 blob at a joint
    img[y - 1:y + 2, x - 1:x + 2] = 255
    s["image"], s["j2d"][1, 3] = img, (x, y)
    r = rotate_scale_sample(s, angle_deg=35.0, scale=0.7)
    w = r["image"][..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:S, 0:S]
    centroid = np.array([(w * xs).sum(), (w * ys).sum()]) / w.sum()
    np.testing.assert_allclose(r["j2d"][1, 3], centroid, atol=0.3)
    # a positive angle turns +x towards +y (clockwise on screen) about the centre
    c = (S - 1) / 2
    a = np.radians(35.0)
    expect = c + 0.7 * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) @ (np.array([x, y]) - c)
    np.testing.assert_allclose(r["j2d"][1, 3], expect, atol=1e-9)
    # 3D: a roll about the optical axis, depths unchanged, lengths preserved
    np.testing.assert_allclose(r["j3d"][..., 2], s["j3d"][..., 2], atol=1e-12)
    np.testing.assert_allclose(np.linalg.norm(r["j3d"], axis=-1), np.linalg.norm(s["j3d"], axis=-1), atol=1e-12)


def test_parameters_follow_the_joints(rng, two_hands64):
    """After flip + rotation the augmented parameters pose exactly the augmented 3D joints."""
    s = _sample(rng, two_hands64)
    for flip in (False, True):
        a = flip_sample(s) if flip else s
        a = rotate_scale_sample(a, angle_deg=-50.0, scale=0.8)
        out = two_hands64(*(torch.as_tensor(a[k])[None] for k in ("beta", "phi", "theta", "tau")))
        g = a["j3d"] - a["j3d"][:1, :1]
        np.testing.assert_allclose(out.joints[0].numpy(), g, atol=1e-9)


def test_augment_sample_is_seeded_and_mirrors_left_only(rng):
    s = _sample(rng)
    a = augment_sample(s, np.random.default_rng(7))
    b = augment_sample(s, np.random.default_rng(7))
    np.testing.assert_array_equal(a["image"], b["image"])
    np.testing.assert_array_equal(a["j2d"], b["j2d"])
    left = dict(s, present=np.array([0.0, 1.0]))
    for seed in range(5):
        out = augment_sample(left, np.random.default_rng(seed))
        assert out["flipped"] and list(out["present"]) == [1.0, 0.0]
    right = dict(s, present=np.array([1.0, 0.0]))
    assert not any(augment_sample(right, np.random.default_rng(k))["flipped"] for k in range(5))
    flips = [augment_sample(s, np.random.default_rng(k))["flipped"] for k in range(40)]
    assert 5 < sum(flips) < 35
    with pytest.raises(ValueError):
        AugmentConfig(scale=(1.0, 0.5)).check()


def test_colour_jitter_and_blur(rng):
    img = rng.integers(0, 256, size=(S, S, 3), dtype=np.uint8)
    j = color_jitter(img, np.random.default_rng(0), 0.3)
    assert j.shape == img.shape and j.dtype == np.uint8 and not np.array_equal(j, img)
    np.testing.assert_array_equal(color_jitter(img, np.random.default_rng(0), 0.0), img)
    # horizontal motion blur smooths along x only: a vertical edge spreads, a horizontal one does not
    e = np.zeros((S, S, 3), np.uint8)
    e[:, S // 2:] = 255
    b = motion_blur(e, 7, 0.0)
    assert 0 < b[10, S // 2 - 1, 0] < 255 and 0 < b[10, S // 2, 0] < 255
    h = np.zeros((S, S, 3), np.uint8)
    h[S // 2:] = 255
    np.testing.assert_array_equal(motion_blur(h, 7, 0.0), h)
    np.testing.assert_array_equal(motion_blur(img, 1, 30.0), img)
