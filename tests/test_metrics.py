"""Metrics: known answers, masks, subsets and the table writer."""

import json
import warnings

import numpy as np
import pytest
import torch

import ihmr
from ihmr.errors import InputError
from ihmr.metrics import (
    closely_interacting_mask,
    i_mpjpe,
    i_mpvpe,
    inter_distance,
    interacting_mask,
    metrics_table,
    mpjpe,
    mpvpe,
    mrrpe,
    penetration_stats,
    sample_metrics,
)


@pytest.fixture
def gt(rng):
    return rng.normal(scale=0.05, size=(6, 2, 21, 3))


def test_translation_per_hand_gives_zero_mpjpe(gt, rng):
    pred = gt + rng.normal(size=(6, 2, 1, 3))  # each hand shifted by its own offset
    r = mpjpe(pred, gt)
    assert r.value == pytest.approx(0.0, abs=1e-9)
    assert r.count.tolist() == [42] * 6
    assert mpjpe(torch.as_tensor(pred.reshape(6, 42, 3)), gt.reshape(6, 42, 3)).value == pytest.approx(0.0, abs=1e-9)


def test_mrrpe_known_answer_and_invariance(gt, rng):
    pred = gt + rng.normal(size=(6, 1, 1, 3))  # the pair moved as a whole: no relative error
    assert mrrpe(pred, gt).value == pytest.approx(0.0, abs=1e-9)
    pred[:, 1] += [0.0, 0.006, 0.008]  # the left hand 10 mm off relative to the right
    r = mrrpe(pred, gt)
    assert r.value == pytest.approx(10.0) and r.count.tolist() == [1] * 6
    valid = np.ones((6, 2, 21), bool)
    valid[0, 1, 0] = False  # sample 0 has no left wrist: not counted
    with pytest.warns(RuntimeWarning):
        r = mrrpe(pred, gt, valid)
    assert r.count.tolist() == [0] + [1] * 5 and np.isnan(r.per_sample[0])


def test_known_mpjpe_value_in_mm(gt):
    pred = gt.copy()
    pred[:, :, 1:] += [0.003, 0.004, 0.0]  # 5 mm on every joint but the wrists
    r = mpjpe(pred, gt)
    assert r.value == pytest.approx(5.0 * 40 / 42)
    np.testing.assert_allclose(r.per_sample, 5.0 * 40 / 42)


def test_axis_scaling_and_translation_gives_zero_i_mpjpe(gt):
    pred = gt * np.array([1.3, 0.7, 2.0]) + np.array([0.1, -0.2, 0.5])
    assert i_mpjpe(pred, gt).value == pytest.approx(0.0, abs=1e-9)
    assert mpjpe(pred, gt).value > 1.0  # not a pure translation per hand
    assert i_mpvpe(pred, gt).value == pytest.approx(0.0, abs=1e-9)


def test_invalid_joints_are_ignored(gt):
    pred = gt.copy()
    valid = np.ones((6, 2, 21), bool)
    pred[:, 0, 5] += 1.0  # a huge error on an invalid joint
    valid[:, 0, 5] = False
    assert mpjpe(pred, gt, valid).value == pytest.approx(0.0, abs=1e-9)
    assert i_mpjpe(pred, gt, valid).value == pytest.approx(0.0, abs=1e-9)
    assert mpjpe(pred, gt, valid).count.tolist() == [41] * 6
    # An invalid ground-truth wrist makes its hand unusable for wrist alignment.
    valid[0, 1, 0] = False
    assert mpjpe(pred, gt, valid).count[0] == 20


def test_all_invalid_samples_are_skipped_with_a_warning(gt):
    pred = gt + 0.01
    valid = np.ones((6, 42), bool)
    valid[2] = False
    with pytest.warns(RuntimeWarning, match="1 sample"):
        r = mpjpe(pred, gt.reshape(6, 42, 3), valid)
    assert np.isnan(r.per_sample[2]) and np.isfinite(r.value) and r.count[2] == 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isfinite(i_mpjpe(pred, gt, valid).value)
        none = mpjpe(pred, gt, np.zeros((6, 42), bool))
    assert np.isnan(none.value)


def test_bad_metric_input(gt):
    with pytest.raises(InputError, match="shape"):
        mpjpe(gt[:, 0], gt[:, 0])
    with pytest.raises(InputError, match="empty"):
        mpjpe(gt[:0], gt[:0])
    bad = gt.copy()
    bad[0, 0, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        mpjpe(bad, gt)
    with pytest.raises(InputError, match="valid mask"):
        mpjpe(gt, gt, np.ones((6, 40), bool))


def test_inter_distance_and_subsets():
    j = np.zeros((3, 2, 21, 3))
    j[:, 1] += [0.03, 0, 0]  # every joint 30 mm from its counterpart
    j[1, 1] += [0.05, 0, 0]  # 80 mm apart
    np.testing.assert_allclose(inter_distance(j), [0.03, 0.08, 0.03])
    valid = np.ones((3, 42), bool)
    valid[2, :15] = False  # 27 valid joints: not interacting
    np.testing.assert_array_equal(interacting_mask(valid), [True, True, False])
    np.testing.assert_array_equal(closely_interacting_mask(j, valid), [True, False, False])


def test_vertex_errors_and_penetration_stats():
    hands = ihmr.TwoHands(dtype=torch.float64)
    z = torch.zeros(2, 2, 10, dtype=torch.float64)
    phi = torch.zeros(2, 2, 3, dtype=torch.float64)
    th = torch.zeros(2, 2, 45, dtype=torch.float64)
    out = hands(z, phi, th, torch.tensor([[0.0, 0.0, 0.3], [0.0, 0.01, 0.0]], dtype=torch.float64))
    shifted = out.vertices + torch.tensor([0.01, 0.0, 0.0], dtype=torch.float64)
    jshift = out.joints + torch.tensor([0.01, 0.0, 0.0], dtype=torch.float64)
    assert mpvpe(shifted, out.vertices, jshift, out.joints).value == pytest.approx(0.0, abs=1e-9)
    assert mpvpe(shifted, out.vertices, out.joints, out.joints).value == pytest.approx(10.0)
    stats = penetration_stats(out.vertices, hands.faces)
    assert stats.ave_p[0] == 0 and stats.max_p[0] == 0
    assert stats.max_p[1] > 5.0 and 0 < stats.ave_p[1] < stats.max_p[1]


def test_table_writer(tmp_path, gt, rng):
    valid = np.ones((6, 42), bool)
    res = {
        "Baseline": sample_metrics(gt + rng.normal(scale=0.01, size=gt.shape), gt, valid),
        "OPT": sample_metrics(gt + rng.normal(scale=0.005, size=gt.shape), gt, valid),
    }
    subsets = {"All": np.ones(6, bool), "Inter": np.array([1, 1, 1, 0, 0, 1], bool)}
    table = metrics_table(res, subsets, speed={"Baseline": 75.2, "OPT": 5.1})
    md, js = table.save(tmp_path / "table1")
    text = md.read_text()
    assert "| Method | All MPJPE | All I-MPJPE |" in text and "| OPT |" in text and "5.10" in text
    data = json.loads(js.read_text())
    assert data["methods"]["OPT"]["subsets"]["Inter"]["n"] == 4
    assert data["methods"]["Baseline"]["subsets"]["All"]["mpjpe"] > data["methods"]["OPT"]["subsets"]["All"]["mpjpe"]
