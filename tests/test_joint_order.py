import numpy as np
import pytest
import torch

from ihmr.errors import InputError
from ihmr.joint_order import FINGER_CHAINS, MANO21_PARENTS, MANO_JOINT_NAMES, ORDERS, convert, from_two_hand, to_two_hand

# The mapping MANO <- InterHand2.6M written out in reference_notes.md.
REFERENCE = {0: 20, 1: 7, 2: 6, 3: 5, 4: 11, 5: 10, 6: 9, 7: 19, 8: 18, 9: 17, 10: 15, 11: 14, 12: 13,
             13: 3, 14: 2, 15: 1, 16: 0, 17: 4, 18: 8, 19: 12, 20: 16}


def test_interhand_mapping_matches_reference_notes():
    ih = np.arange(21)[:, None] * np.ones((1, 3))
    mano = convert(ih, "interhand", "mano")
    for m, i in REFERENCE.items():
        assert mano[m, 0] == i


def test_mediapipe_semantics():
    # MediaPipe: wrist 0, thumb 1-4 base->tip, index 5-8, middle 9-12, ring 13-16, pinky 17-20.
    names_mp = ["wrist"] + [f"{f}{k}" for f in ("thumb", "index", "middle", "ring", "pinky") for k in range(4)]
    mano = convert(np.array(names_mp, dtype=object)[:, None], "mediapipe", "mano")[:, 0]
    assert list(mano[:4]) == ["wrist", "index0", "index1", "index2"]
    assert list(mano[13:17]) == ["thumb0", "thumb1", "thumb2", "thumb3"]
    assert list(mano[16:]) == ["thumb3", "index3", "middle3", "ring3", "pinky3"]
    assert mano[7] == "pinky0" and mano[10] == "ring0"


@pytest.mark.parametrize("src", ORDERS)
@pytest.mark.parametrize("dst", ORDERS)
def test_round_trips(src, dst, rng):
    x = rng.normal(size=(4, 21, 3))
    np.testing.assert_array_equal(convert(convert(x, src, dst), dst, src), x)
    t = torch.as_tensor(x)
    torch.testing.assert_close(convert(t, src, dst), torch.as_tensor(convert(x, src, dst)))


def test_two_hand_round_trip_and_masks(rng):
    j42 = rng.normal(size=(3, 42, 2))
    two = to_two_hand(j42, "interhand")
    assert two.shape == (3, 2, 21, 2)
    np.testing.assert_array_equal(two[:, 0, 0], j42[:, 20])  # right wrist
    np.testing.assert_array_equal(two[:, 1, 0], j42[:, 41])  # left wrist
    np.testing.assert_array_equal(from_two_hand(two, "interhand"), j42)
    mask = rng.random((3, 42)) > 0.5
    m2 = to_two_hand(mask, "interhand", axis=-1)
    assert m2.shape == (3, 2, 21)
    np.testing.assert_array_equal(from_two_hand(m2, "interhand", axis=-2), mask)
    t = torch.as_tensor(j42)
    torch.testing.assert_close(from_two_hand(to_two_hand(t, "mediapipe"), "mediapipe"), t)


def test_tables_are_consistent():
    assert len(MANO_JOINT_NAMES) == 21
    assert all(MANO21_PARENTS[j] < j for j in range(1, 16))
    for chain in FINGER_CHAINS:  # tip -> palm, each joint's parent is the next one
        for a, b in zip(chain[:-1], chain[1:]):
            assert MANO21_PARENTS[a] == b
        assert MANO21_PARENTS[chain[-1]] == 0


def test_bad_input():
    with pytest.raises(InputError, match="unknown joint order"):
        convert(np.zeros((21, 3)), "coco", "mano")
    with pytest.raises(InputError, match="21 joints"):
        convert(np.zeros((20, 3)), "mano", "interhand")
    with pytest.raises(InputError, match="42 joints"):
        to_two_hand(np.zeros((21, 3)))
