"""The official-MANO loader: structure, safety, errors, and LBS against an independent reference."""

import os
import pickle
import sys

import numpy as np
import pytest
import torch

import ihmr
from ihmr.errors import ModelFileError, UnsafePickleError
from ihmr.geometry.mesh import is_watertight, signed_volume
from ihmr.handmodel.mano_pkl import (
    axis_angle_to_pca,
    load_mano_dir,
    load_mano_pkl,
    pca_to_axis_angle,
    read_mano_pickle,
)
from mano_fixture import write_mano_pkl


@pytest.fixture
def mano_dir(tmp_path):
    arrays = {}
    for side, seed in (("RIGHT", 0), ("LEFT", 1)):
        arrays[side] = write_mano_pkl(tmp_path / f"MANO_{side}.pkl", seed=seed)
    return tmp_path, arrays


def test_loads_without_chumpy_and_keeps_arrays(mano_dir):
    d, arrays = mano_dir
    assert "chumpy" not in sys.modules
    data = load_mano_pkl(d / "MANO_RIGHT.pkl")
    a = arrays["RIGHT"]
    assert data.side == "right" and data.name == "mano"
    np.testing.assert_array_equal(data.v_template, a["v_template"])
    np.testing.assert_array_equal(data.shapedirs, a["shapedirs"])
    np.testing.assert_array_equal(data.posedirs, a["posedirs"])
    np.testing.assert_array_equal(data.J_regressor, a["J_regressor"].toarray())
    np.testing.assert_array_equal(data.weights, a["weights"])
    np.testing.assert_array_equal(data.hands_components, a["hands_components"])
    assert data.parents[0] == -1 and list(data.parents[1:4]) == [0, 1, 2]
    # The opened wrist is capped: watertight and outward.
    assert not is_watertight(data.faces_open)
    assert is_watertight(data.faces) and signed_volume(data.v_template, data.faces) > 0
    raw = read_mano_pickle(d / "MANO_RIGHT.pkl")
    assert raw["bs_style"] == "lbs"


def test_left_shapedirs_sign_fix(mano_dir):
    d, arrays = mano_dir
    left = load_mano_pkl(d / "MANO_LEFT.pkl")
    assert left.side == "left"
    np.testing.assert_array_equal(left.shapedirs[:, 0], -arrays["LEFT"]["shapedirs"][:, 0])
    np.testing.assert_array_equal(left.shapedirs[:, 1:], arrays["LEFT"]["shapedirs"][:, 1:])
    raw = load_mano_pkl(d / "MANO_LEFT.pkl", fix_left_shapedirs=False)
    np.testing.assert_array_equal(raw.shapedirs, arrays["LEFT"]["shapedirs"])
    assert load_mano_dir(d, "left").meta["fixed_left_shapedirs"]


def test_layer_matches_independent_lbs_with_posedirs(mano_dir):
    d, _ = mano_dir
    layer = ihmr.load_hand_model(d / "MANO_RIGHT.pkl", "right", dtype=torch.float64)
    rng = np.random.default_rng(3)
    betas = rng.normal(size=(2, 10))
    pose = rng.normal(size=(2, 16, 3)) * 0.5
    out = layer(torch.as_tensor(betas), torch.as_tensor(pose[:, 0]), torch.as_tensor(pose[:, 1:].reshape(2, 45)))
    data = layer.data
    for b in range(2):
        # Pose correctives: added to the shaped template before skinning.
        from scipy.spatial.transform import Rotation

        R = Rotation.from_rotvec(pose[b, 1:]).as_matrix()
        feat = (R - np.eye(3)).reshape(-1)
        v_corr = data.v_template + data.shapedirs @ betas[b] + data.posedirs @ feat
        vv, jj = reference_lbs_with_template(data, v_corr, betas[b], pose[b])
        np.testing.assert_allclose(out.vertices[b].numpy(), vv, atol=1e-10)
        np.testing.assert_allclose(out.joints[b].numpy(), jj, atol=1e-10)


def reference_lbs_with_template(data, v_posed, betas, pose):
    """Reference LBS where joints come from the shaped (uncorrected) template, vertices from v_posed."""
    from scipy.spatial.transform import Rotation

    J = data.J_regressor @ (data.v_template + data.shapedirs @ betas)
    G = [None] * 16
    for j in range(16):
        T = np.eye(4)
        T[:3, :3] = Rotation.from_rotvec(pose[j]).as_matrix()
        T[:3, 3] = J[j] - (J[data.parents[j]] if j > 0 else 0.0)
        G[j] = T if j == 0 else G[data.parents[j]] @ T
    verts = np.zeros_like(v_posed)
    for j in range(16):
        A = G[j].copy()
        A[:3, 3] -= A[:3, :3] @ J[j]
        verts += data.weights[:, j : j + 1] * (v_posed @ A[:3, :3].T + A[:3, 3])
    joints = np.concatenate([np.array([g[:3, 3] for g in G]), verts[data.tip_vertex_ids]])
    return verts, joints


def test_two_hands_with_mano_dir_and_pca(mano_dir):
    d, arrays = mano_dir
    hands = ihmr.TwoHands(d, dtype=torch.float64)
    assert hands.model_name == "mano"
    out = hands(torch.zeros(1, 2, 10, dtype=torch.float64), torch.zeros(1, 2, 3, dtype=torch.float64),
                torch.zeros(1, 2, 45, dtype=torch.float64), torch.tensor([[0.1, 0.0, 0.0]], dtype=torch.float64))
    assert out.vertices.shape == (1, 2, hands.num_vertices, 3)
    pca = ihmr.load_hand_model(d, "right", use_pca=True, num_pca_comps=6, dtype=torch.float64)
    c = torch.randn(2, 6, dtype=torch.float64)
    full = ihmr.load_hand_model(d, "right", dtype=torch.float64)
    theta = torch.as_tensor(pca_to_axis_angle(c.numpy(), arrays["RIGHT"]["hands_components"], arrays["RIGHT"]["hands_mean"]))
    torch.testing.assert_close(pca(hand_pose=c).vertices, full(hand_pose=theta).vertices)
    back = axis_angle_to_pca(theta.numpy(), arrays["RIGHT"]["hands_components"], 6, arrays["RIGHT"]["hands_mean"])
    np.testing.assert_allclose(back, c.numpy(), atol=1e-10)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalEvil:
    def __reduce__(self):
        return (eval, ("__import__('os').getcwd()",))


@pytest.mark.parametrize("payload", ["system", "eval"])
def test_forbidden_classes_are_refused_and_not_executed(tmp_path, payload):
    marker = tmp_path / "pwned"
    evil = _Evil(marker) if payload == "system" else _EvalEvil()
    p = tmp_path / "MANO_RIGHT.pkl"
    p.write_bytes(pickle.dumps({"v_template": np.zeros((3, 3)), "x": evil}, protocol=2))
    with pytest.raises(UnsafePickleError, match="refusing to load"):
        load_mano_pkl(p)
    assert not marker.exists()


def test_missing_truncated_and_incomplete_files(tmp_path, mano_dir):
    with pytest.raises(ModelFileError, match="not found.*mano.is.tue.mpg.de"):
        load_mano_pkl(tmp_path / "MANO_RIGHT_missing.pkl", side="right")
    with pytest.raises(ModelFileError, match="no MANO_LEFT.pkl"):
        load_mano_dir(tmp_path / "empty", "left")
    d, _ = mano_dir
    data = (d / "MANO_RIGHT.pkl").read_bytes()
    bad = tmp_path / "MANO_RIGHT_trunc.pkl"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated or corrupt"):
        load_mano_pkl(bad)
    partial = tmp_path / "MANO_RIGHT_partial.pkl"
    partial.write_bytes(pickle.dumps({"v_template": np.zeros((10, 3)), "f": np.zeros((1, 3))}, protocol=2))
    with pytest.raises(ModelFileError, match="lacks entries: shapedirs, posedirs, J_regressor, weights, kintree_table"):
        load_mano_pkl(partial)
    # A neutral name and a flat mean pose: neither the name nor the data tells the side.
    from mano_fixture import mano_like_arrays

    flat = mano_like_arrays(0)
    flat["hands_mean"] = np.zeros(45)
    write_mano_pkl(tmp_path / "model.pkl", flat)
    with pytest.raises(ModelFileError, match="cannot tell the side"):
        load_mano_pkl(tmp_path / "model.pkl")
    assert load_mano_pkl(tmp_path / "model.pkl", side="right").side == "right"


