"""Front-end logic without the models: chirality side decision, landmark overlap, tracking crops, palm anchors."""

import numpy as np
import pytest
import torch

from ihmr.detect import (
    CHIRALITY_MIN,
    HandDetection,
    chirality,
    chirality_side,
    landmark_roi,
    overlap,
    palm_anchors,
    same_hand,
    track,
)
from ihmr.joint_order import convert


def _rot3(axis, angle):
    from ihmr.geometry.rotations import axis_angle_to_matrix

    return axis_angle_to_matrix(torch.tensor(axis, dtype=torch.float64) * angle).numpy()


@pytest.fixture(scope="module")
def relaxed_hands():
    """3D joints (MediaPipe order, metres) of the open model's right and left hands in a relaxed
    pose (the mean of poses sampled within the joint limits: fingers and thumb mildly flexed)."""
    import ihmr
    from ihmr.handmodel.limits import JointLimits

    out = {}
    for side in ("right", "left"):
        h = ihmr.load_hand_model("open", side, dtype=torch.float64)
        theta = JointLimits(h.data, dtype=torch.float64).sample(500, torch.Generator().manual_seed(0)).mean(0, keepdim=True)
        out[side] = convert(h(hand_pose=theta).joints[0].numpy(), "mano", "mediapipe")
    return out


def test_chirality_right_left_and_mirror(relaxed_hands):
    right, left = relaxed_hands["right"], relaxed_hands["left"]
    assert chirality(right) > CHIRALITY_MIN and chirality_side(right) == "right"
    assert chirality(left) < -CHIRALITY_MIN and chirality_side(left) == "left"
    mirrored = right * np.array([-1.0, 1.0, 1.0])  # a mirror image of a right hand is a left hand
    assert chirality_side(mirrored) == "left"
    assert chirality(mirrored) == pytest.approx(-chirality(right))
    assert chirality_side(right * np.array([1.0, 1.0, -1.0])) == "left"  # depth flipped: mirrored too
    # Invariant to rotation, translation and scale.
    for axis, ang in (([0, 0, 1], 2.0), ([1, 0, 0], -1.1), ([0.6, 0.8, 0], 2.9)):
        moved = 3.0 * right @ _rot3(axis, ang).T + np.array([0.1, -0.2, 0.7])
        assert chirality(moved) == pytest.approx(chirality(right))


def test_chirality_flat_or_degenerate_hand_is_undecided(relaxed_hands):
    import ihmr

    h = ihmr.load_hand_model("open", "right", dtype=torch.float64)
    flat = convert(h().joints[0].numpy(), "mano", "mediapipe")  # the flat rest pose
    flat[:, 2] = 0.0  # all joints in one plane
    assert chirality(flat) == pytest.approx(0.0, abs=1e-12) and chirality_side(flat) is None
    assert chirality(np.zeros((21, 3))) == 0.0
    bad = relaxed_hands["right"].copy()
    bad[3, 0] = np.nan
    assert chirality(bad) == 0.0


def test_side_from_chirality_overrides_the_classifier(relaxed_hands):
    xy = relaxed_hands["right"][:, :2] * 1000 + 200
    d = HandDetection("left", 0.9, 0.8, xy, relaxed_hands["right"], "crop")
    assert d.side == "right" and d.side_from == "chirality" and d.handedness_score == pytest.approx(0.2)
    flat = relaxed_hands["right"].copy()
    flat[:, 2] = 0.0
    flat[:, 1] *= 0.0  # collinear: no palm plane, the classifier decides
    d = HandDetection("left", 0.9, 0.8, xy, flat, "crop")
    assert d.side == "left" and d.side_from == "classifier"


def test_same_hand_by_overlap_not_by_handedness(relaxed_hands):
    r, l = relaxed_hands["right"], relaxed_hands["left"]
    xy = r[:, :2] * 1500 + 300  # ~150 px hand
    size = float(np.ptp(xy, 0).max())
    rng = np.random.default_rng(0)
    a = HandDetection("right", 0.9, 0.9, xy, r, "palm_detector")
    # The same hand again, labelled (and shaped) as a left hand: overlapping landmarks -> one hand.
    dup = HandDetection("left", 0.8, 0.95, xy + rng.normal(0, 0.02 * size, xy.shape), l, "crop")
    assert overlap(a.landmarks_2d, dup.landmarks_2d) < 0.1
    assert same_hand(a, dup)
    # A hand of the other side moderately overlapping (praying hands) stays a second hand.
    near = HandDetection("left", 0.8, 0.9, xy + [0.15 * size, 0.0], l, "crop")
    assert 0.1 < overlap(a.landmarks_2d, near.landmarks_2d) < 0.2 and not same_hand(a, near)
    # ... unless the 3D landmarks cannot tell its side.
    flat = l.copy()
    flat[:, 2] = 0.0
    near_flat = HandDetection("left", 0.8, 0.9, xy + [0.15 * size, 0.0], flat, "crop")
    assert near_flat.side_from == "classifier" and same_hand(a, near_flat)
    # Two right hands whose boxes overlap are one; far apart, two.
    shifted = HandDetection("right", 0.7, 0.9, xy + [0.3 * size, 0.1 * size], r, "crop")
    assert same_hand(a, shifted)
    far = HandDetection("right", 0.7, 0.9, xy + [3 * size, 0.0], r, "crop")
    assert not same_hand(a, far)


def test_landmark_roi_follows_the_hand(relaxed_hands):
    xy = relaxed_hands["right"][:, :2] * np.array([1.0, -1.0])  # fingers up in the image (y down)
    xy = (xy - xy[0]) * 1500
    c0, s0, a0 = landmark_roi(xy + [200.0, 300.0])
    for ang in (0.5, 2.0, -2.5):
        R = np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
        c, s, a = landmark_roi(xy @ R.T + [200.0, 300.0])
        assert s == pytest.approx(s0)
        assert np.angle(np.exp(1j * (a - a0 - ang))) == pytest.approx(0.0, abs=1e-9)
        assert np.allclose(c - [200.0, 300.0], R @ (c0 - [200.0, 300.0]))
    # The crop holds the whole hand.
    c, s, a = landmark_roi(xy)
    R = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    q = (xy - c) @ R
    assert np.abs(q).max() < s / 2


def _fake_crop(results):
    """A landmark model (``crop`` of :func:`ihmr.detect.track`) that returns ``results`` one after the other."""
    it = iter(results)
    return lambda image, cx, cy, size, source, angle=0.0, min_presence=0.5: next(it)


def test_tracking_keeps_stable_results_only(relaxed_hands):
    r = relaxed_hands["right"]
    xy = r[:, :2] * 1500 + 300
    size = float(np.ptp(xy, 0).max())
    mk = lambda shift, p: HandDetection("right", p, 0.9, xy + shift, r, "crop")  # noqa: E731
    img = np.zeros((8, 8, 3), np.uint8)
    # Settles: the most confident stable result is kept.
    start = mk([0.0, 0.0], 0.6)
    got = track(_fake_crop([mk([0.02 * size, 0.0], 0.9), mk([0.025 * size, 0.0], 0.8)]), img, start)
    assert got is not None and got.score == pytest.approx(0.9)
    # Drifts away on every re-crop (fingers taken for a hand): rejected.
    got = track(_fake_crop([mk([0.6 * size, 0.0], 0.9), mk([1.2 * size, 0.0], 0.9)]), img, start)
    assert got is None
    # Stable but never confident enough: rejected.
    got = track(_fake_crop([mk([0.01 * size, 0.0], 0.3), mk([0.01 * size, 0.0], 0.3)]), img, mk([0.0, 0.0], 0.3))
    assert got is None


def test_palm_anchors():
    a = palm_anchors()
    assert a.shape == (2016, 2) and a.min() > 0 and a.max() < 1
    assert np.allclose(a[0], [0.5 / 24, 0.5 / 24]) and np.allclose(a[2], [1.5 / 24, 0.5 / 24])
    assert np.allclose(a[1152], [0.5 / 12, 0.5 / 12]) and np.allclose(a[-1], [11.5 / 12, 11.5 / 12])
