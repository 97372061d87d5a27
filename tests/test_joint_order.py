"""ihmr.joint_order: the tables against the written conventions, round trips, two-hand layout, errors."""

import numpy as np
import pytest
import torch

from ihmr.errors import InputError
from ihmr.joint_order import (
    FINGER_CHAINS,
    FINGER_NAMES,
    INTERHAND_FROM_MANO,
    INTERHAND_JOINT_NAMES,
    MANO21_PARENTS,
    MANO_FROM_INTERHAND,
    MANO_FROM_MEDIAPIPE,
    MANO_JOINT_NAMES,
    MEDIAPIPE_FROM_MANO,
    MEDIAPIPE_JOINT_NAMES,
    ORDERS,
    convert,
    convert_mask,
    from_two_hand,
    permutation,
    to_two_hand,
)

# The mapping MANO <- InterHand2.6M written out in reference_notes.md.
REFERENCE = {0: 20, 1: 7, 2: 6, 3: 5, 4: 11, 5: 10, 6: 9, 7: 19, 8: 18, 9: 17, 10: 15, 11: 14, 12: 13,
             13: 3, 14: 2, 15: 1, 16: 0, 17: 4, 18: 8, 19: 12, 20: 16}


def test_interhand_mapping_matches_reference_notes():
    ih = np.arange(21)[:, None] * np.ones((1, 3))
    mano = convert(ih, "interhand", "mano")
    for m, i in REFERENCE.items():
        assert mano[m, 0] == i
    np.testing.assert_array_equal(MANO_FROM_INTERHAND, [REFERENCE[m] for m in range(21)])


def test_interhand_semantics():
    # InterHand2.6M: tip to base per finger, thumb 0-3, index 4-7, middle 8-11, ring 12-15, pinky 16-19, wrist 20.
    assert INTERHAND_JOINT_NAMES[20] == "wrist"
    for f, finger in enumerate(FINGER_NAMES):
        assert INTERHAND_JOINT_NAMES[4 * f : 4 * f + 4] == [f"{finger}_tip", f"{finger}3", f"{finger}2", f"{finger}1"]


def test_mediapipe_semantics():
    # MediaPipe: wrist 0, thumb 1-4 base->tip, index 5-8, middle 9-12, ring 13-16, pinky 17-20.
    names_mp = ["wrist"] + [f"{f}{k}" for f in ("thumb", "index", "middle", "ring", "pinky") for k in range(4)]
    mano = convert(np.array(names_mp, dtype=object)[:, None], "mediapipe", "mano")[:, 0]
    assert list(mano[:4]) == ["wrist", "index0", "index1", "index2"]
    assert list(mano[13:17]) == ["thumb0", "thumb1", "thumb2", "thumb3"]
    assert list(mano[16:]) == ["thumb3", "index3", "middle3", "ring3", "pinky3"]
    assert mano[7] == "pinky0" and mano[10] == "ring0"
    assert MEDIAPIPE_JOINT_NAMES[:5] == ["wrist", "thumb1", "thumb2", "thumb3", "thumb_tip"]
    assert MEDIAPIPE_JOINT_NAMES[17:] == ["pinky1", "pinky2", "pinky3", "pinky_tip"]


def test_index_constants():
    for fwd, inv in ((MANO_FROM_INTERHAND, INTERHAND_FROM_MANO), (MANO_FROM_MEDIAPIPE, MEDIAPIPE_FROM_MANO)):
        assert fwd.dtype == np.int64 and fwd.shape == (21,)
        np.testing.assert_array_equal(fwd[inv], np.arange(21))
        np.testing.assert_array_equal(inv[fwd], np.arange(21))
    x = np.random.default_rng(1).normal(size=(21, 3))
    np.testing.assert_array_equal(convert(x, "interhand", "mediapipe"), x[permutation("interhand", "mediapipe")])
    np.testing.assert_array_equal(permutation("MediaPipe", "openpose"), np.arange(21))
    np.testing.assert_array_equal(permutation("InterHand2.6M", "mano"), MANO_FROM_INTERHAND)


@pytest.mark.parametrize("src", ORDERS)
@pytest.mark.parametrize("dst", ORDERS)
def test_round_trips(src, dst, rng):
    x = rng.normal(size=(4, 21, 3))
    np.testing.assert_array_equal(convert(convert(x, src, dst), dst, src), x)
    t = torch.as_tensor(x)
    torch.testing.assert_close(convert(t, src, dst), torch.as_tensor(convert(x, src, dst)))


def test_any_leading_dims_channels_axis_and_lists(rng):
    x = rng.normal(size=(2, 3, 5, 21, 2))
    y = convert(x, "mediapipe", "mano")
    assert y.shape == x.shape
    np.testing.assert_array_equal(y[1, 2, 4], x[1, 2, 4][MANO_FROM_MEDIAPIPE])
    xt = np.moveaxis(x, -2, 1)  # joints on axis 1
    np.testing.assert_array_equal(np.moveaxis(convert(xt, "mediapipe", "mano", axis=1), 1, -2), y)
    mask = rng.random((7, 21)) > 0.5
    m = convert_mask(mask, "interhand", "mano")
    assert m.dtype == bool and m.shape == (7, 21)
    np.testing.assert_array_equal(m, mask[:, MANO_FROM_INTERHAND])
    np.testing.assert_array_equal(convert(x[0, 0, 0].tolist(), "mano", "mano"), x[0, 0, 0])


def test_torch_keeps_dtype_device_and_gradient():
    t = torch.randn(3, 21, 3, dtype=torch.float64, requires_grad=True)
    y = convert(t, "mano", "interhand")
    assert y.dtype == torch.float64 and y.device == t.device
    (y * torch.arange(21.0, dtype=torch.float64)[:, None]).sum().backward()
    # d loss / d x_mano[i] = position of MANO joint i in InterHand order = MANO_FROM_INTERHAND[i]
    torch.testing.assert_close(t.grad[0, :, 0], torch.as_tensor(MANO_FROM_INTERHAND, dtype=torch.float64))


def test_two_hand_round_trip_and_masks(rng):
    j42 = rng.normal(size=(3, 42, 2))
    two = to_two_hand(j42, "interhand")
    assert two.shape == (3, 2, 21, 2)
    np.testing.assert_array_equal(two[:, 0, 0], j42[:, 20])  # right wrist
    np.testing.assert_array_equal(two[:, 1, 0], j42[:, 41])  # left wrist
    np.testing.assert_array_equal(two[:, 0], convert(j42[:, :21], "interhand", "mano"))
    np.testing.assert_array_equal(two[:, 1], convert(j42[:, 21:], "interhand", "mano"))
    np.testing.assert_array_equal(from_two_hand(two, "interhand"), j42)
    np.testing.assert_array_equal(from_two_hand(two, "mano"), two.reshape(3, 42, 2))
    mask = rng.random((3, 42)) > 0.5
    m2 = to_two_hand(mask, "interhand", axis=-1)
    assert m2.shape == (3, 2, 21)
    np.testing.assert_array_equal(from_two_hand(m2, "interhand", axis=-2), mask)
    t = torch.as_tensor(j42)
    torch.testing.assert_close(from_two_hand(to_two_hand(t, "mediapipe"), "mediapipe"), t)
    torch.testing.assert_close(to_two_hand(t, "interhand"), torch.as_tensor(two))
    # unbatched
    assert to_two_hand(j42[0], "mano").shape == (2, 21, 2)


def test_tables_are_consistent():
    assert len(MANO_JOINT_NAMES) == 21 == len(set(MANO_JOINT_NAMES))
    assert all(MANO21_PARENTS[j] < j for j in range(1, 16))
    assert MANO21_PARENTS[0] == -1 and FINGER_CHAINS.shape == (5, 4)
    np.testing.assert_array_equal(np.sort(FINGER_CHAINS.ravel()), np.arange(1, 21))
    for f, chain in enumerate(FINGER_CHAINS):  # tip -> palm, each joint's parent is the next one
        assert MANO_JOINT_NAMES[chain[0]] == f"{FINGER_NAMES[f]}_tip"
        for a, b in zip(chain[:-1], chain[1:]):
            assert MANO21_PARENTS[a] == b
        assert MANO21_PARENTS[chain[-1]] == 0


def test_bad_input():
    with pytest.raises(InputError, match="unknown joint order"):
        convert(np.zeros((21, 3)), "coco", "mano")
    with pytest.raises(ValueError, match="unknown joint order"):
        to_two_hand(np.zeros((42, 3)), "smpl")
    with pytest.raises(InputError, match="21 joints"):
        convert(np.zeros((20, 3)), "mano", "interhand")
    with pytest.raises(InputError, match="21 joints"):
        convert(np.zeros(21), "mano", "interhand")  # (21,) has no (21, C) axis at -2
    with pytest.raises(InputError, match="scalar"):
        convert(np.float64(1.0), "mano", "interhand")
    with pytest.raises(InputError, match="42 joints"):
        to_two_hand(np.zeros((21, 3)))
    with pytest.raises(InputError, match="2, 21"):
        from_two_hand(torch.zeros(3, 42, 3))
