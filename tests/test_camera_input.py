"""``ihmr refine`` on camera-frame hands (single-hand estimator output, HaMeR / WiLoR style): the exact
conversion to the internal pair and back, refinement through the CLI for the open model (JSON, 2D
keypoints, fx != fy) and a MANO-format model (``.npz``, rotation matrices, own joints as targets),
and bad input refused in one line naming the field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ihmr.cli.main import main
from ihmr.experiments.camera_runs import camera_from_pair, from_internal, joint_head, pair_from_camera, to_internal
from ihmr.geometry.camera import project_perspective, project_points
from ihmr.geometry.rotations import axis_angle_to_matrix
from ihmr.handmodel import TwoHands
from ihmr.io.camera_pairs import read_camera_pairs
from ihmr.joint_order import convert
from ihmr.metrics import penetration_stats
from mano_fixture import write_mano_pkl

DT = torch.float64
K = np.array([[1000.0, 0, 320], [0, 1100.0, 240], [0, 0, 1]])
WRIST = torch.tensor([[0.02, -0.01, 0.55], [-0.03, 0.02, 0.6]], dtype=DT)  # right wrists in the camera frame
CAM_ROT = torch.tensor([2.5, 0.3, -0.2], dtype=DT)  # the pair seen turned by this rotation


@pytest.fixture(scope="module")
def open_hands():
    return TwoHands("open", dtype=DT)


@pytest.fixture(scope="module")
def mano_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("mano")
    for side, seed in (("RIGHT", 0), ("LEFT", 1)):
        write_mano_pkl(d / f"MANO_{side}.pkl", seed=seed)
    return d


def _pair(tau: list[list[float]], rot: bool = True, theta_scale: float = 0.0) -> dict[str, torch.Tensor]:
    """Internal params of len(tau) samples: mean shape, the pair turned by CAM_ROT (both hands)."""
    n = len(tau)
    R = axis_angle_to_matrix(CAM_ROT) if rot else torch.eye(3, dtype=DT)
    gs = [torch.Generator().manual_seed(i) for i in range(n)]  # sample i is the same whatever n
    phi = CAM_ROT.expand(n, 2, 3).clone() if rot else torch.zeros(n, 2, 3, dtype=DT)
    return {"beta": 0.3 * torch.stack([torch.randn(2, 10, generator=g, dtype=DT) for g in gs]), "phi": phi,
            "theta": theta_scale * torch.stack([torch.randn(2, 45, generator=g, dtype=DT) for g in gs]),
            "tau": torch.tensor(tau, dtype=DT) @ R.T}


def _camera_doc(hands: TwoHands, params: dict, with_2d: bool = True, matrices: bool = True) -> dict:
    """A JSON document of camera-frame hands (left hand listed first) from internal params."""
    n = len(params["tau"])
    transl = camera_from_pair(hands, params["beta"], params["tau"], WRIST[:n])
    joints = hands(**params).joints + WRIST[:n, None, None]
    samples = []
    for i in range(n):
        hs = []
        for h, side in ((1, "left"), (0, "right")):
            orient = axis_angle_to_matrix(params["phi"][i, h]) if matrices and h == 0 else params["phi"][i, h]
            hand = {"side": side, "global_orient": orient.tolist(), "hand_pose": params["theta"][i, h].tolist(),
                    "betas": params["beta"][i, h].tolist(), "transl": transl[i, h].tolist(), "score": 0.9}
            if with_2d:
                uv = project_points(joints[i, h][None].numpy(), K[None])[0]
                hand["keypoints_2d"] = convert(uv, "mano", "openpose").tolist()
            hs.append(hand)
        samples.append({"name": f"frame{i}", "hands": hs,
                        "intrinsics": {"fx": K[0, 0], "fy": K[1, 1], "cx": K[0, 2], "cy": K[1, 2]}})
    return {"format": "ihmr.camera_pairs", "hand_pose_space": "flat", "joint_order": "openpose", "samples": samples}


def _layer_vertices(hands: TwoHands, betas, orient_aa, pose_aa, transl) -> torch.Tensor:
    """Each hand posed by its own layer with MANO's transl (vertices = model(...) + transl)."""
    return torch.stack([layer(betas=betas[:, h], global_orient=orient_aa[:, h], hand_pose=pose_aa[:, h], transl=transl[:, h]).vertices
                        for h, layer in enumerate((hands.right, hands.left))], 1)


@pytest.mark.parametrize("model", ["open", "mano"])
def test_camera_frame_conversion_is_exact(tmp_path, open_hands, mano_dir, model):
    hands = open_hands if model == "open" else TwoHands(mano_dir, dtype=DT)
    p = _pair([[-0.03, -0.035, 0.0], [-0.05, 0.02, 0.01]], theta_scale=0.0 if model == "mano" else 0.2)
    transl = camera_from_pair(hands, p["beta"], p["tau"], WRIST)
    # The placement convention: the layer with transl = the internal pair moved by the right wrist.
    v_cam = _layer_vertices(hands, p["beta"], p["phi"], p["theta"], transl)
    torch.testing.assert_close(v_cam, hands(**p).vertices + WRIST[:, None, None], atol=1e-12, rtol=0)
    tau, wrist = pair_from_camera(hands, p["beta"], transl)
    torch.testing.assert_close(tau, p["tau"], atol=1e-15, rtol=0)
    torch.testing.assert_close(wrist, WRIST, atol=1e-15, rtol=0)
    # Through a file: rotation matrices and hand_pose relative to MANO's mean pose (MANO model).
    doc = _camera_doc(hands, p, with_2d=False)
    if model == "mano":
        doc["hand_pose_space"] = "mean"
        for s in doc["samples"]:
            for hd in s["hands"]:
                m = (hands.right if hd["side"] == "right" else hands.left).data.hands_mean
                hd["hand_pose"] = (np.asarray(hd["hand_pose"]) - m).tolist()
    (tmp_path / "in.json").write_text(json.dumps(doc))
    pairs = read_camera_pairs(tmp_path / "in.json")
    params, wrist = to_internal(pairs, hands)
    for k in p:
        torch.testing.assert_close(params[k], p[k], atol=1e-12, rtol=0)
    back = from_internal(pairs, hands, params, {k: v.clone() for k, v in params.items()}, wrist)
    for k in ("orient_aa", "orient_mat", "pose_aa", "betas", "transl"):  # unchanged: bit for bit
        np.testing.assert_array_equal(back[k], getattr(pairs, k))
    moved = {k: v.clone() for k, v in params.items()}
    moved["tau"] = moved["tau"] + 0.01
    back = from_internal(pairs, hands, params, moved, wrist)
    np.testing.assert_array_equal(back["transl"][:, 0], pairs.transl[:, 0])  # right hand stays
    np.testing.assert_allclose(back["transl"][:, 1], pairs.transl[:, 1] + 0.01, atol=1e-15)


def test_2d_targets_with_fx_not_fy_are_exact(tmp_path, open_hands):
    p = _pair([[-0.03, -0.035, 0.0]])
    (tmp_path / "in.json").write_text(json.dumps(_camera_doc(open_hands, p)))
    pairs = read_camera_pairs(tmp_path / "in.json")
    params, wrist = to_internal(pairs, open_hands)
    head = joint_head(pairs, open_hands, params, wrist)
    joints = open_hands(**params).joints + wrist[:, None, None]
    # One focal length fx and the v axis rescaled about cy: the objective's projection hits the targets.
    uv = project_perspective(joints, torch.tensor([K[0, 0]], dtype=DT), torch.tensor(K[None, :2, 2], dtype=DT))
    torch.testing.assert_close(head["j2d"].reshape(1, 2, 21, 2), uv, atol=1e-9, rtol=0)
    assert head["has_2d"].all() and head["own"].all()
    torch.testing.assert_close(head["persp"], torch.tensor([[K[0, 0], K[0, 2], K[1, 2], *WRIST[0]]], dtype=DT))
    # Given 3D keypoints (OpenPose order) are the right hand's targets; the left hand without 2D
    # keypoints gets the projection of its 3D target.
    doc = _camera_doc(open_hands, p)
    kp3 = joints[0, 0].numpy() + np.linspace(-0.01, 0.01, 63).reshape(21, 3)
    doc["samples"][0]["hands"][1]["keypoints_3d"] = convert(kp3, "mano", "openpose").tolist()
    del doc["samples"][0]["hands"][0]["keypoints_2d"]
    (tmp_path / "in.json").write_text(json.dumps(doc))
    pairs = read_camera_pairs(tmp_path / "in.json")
    head = joint_head(pairs, open_hands, params, wrist)
    j3 = head["j3d"].reshape(1, 2, 21, 3) + wrist[:, None, None]
    torch.testing.assert_close(j3[0, 0], torch.as_tensor(kp3), atol=1e-12, rtol=0)
    torch.testing.assert_close(j3[0, 1], joints[0, 1], atol=1e-12, rtol=0)
    torch.testing.assert_close(head["j2d"].reshape(1, 2, 21, 2), uv, atol=1e-9, rtol=0)
    assert head["own"].all()  # the left hand's own joints are targets


def _run(tmp_path, name_in, name_out, *extra) -> int:
    return main(["refine", str(tmp_path / name_in), "-o", str(tmp_path / name_out), "--iterations", "15", *extra])


def test_refine_json_open_model(tmp_path, open_hands):
    p = _pair([[-0.03, -0.036, 0.0], [-0.03, -0.08, 0.0]])  # sample 0 penetrates, sample 1 is apart
    doc = _camera_doc(open_hands, p)
    (tmp_path / "in.json").write_text(json.dumps(doc))
    assert _run(tmp_path, "in.json", "out.json") == 0
    out = json.loads((tmp_path / "out.json").read_text())
    r0, r1 = (s["refinement"] for s in out["samples"])
    assert r0["ave_p_mm_before"] > 0.003 and r0["max_p_mm_before"] > 1.0
    assert r0["ave_p_mm_after"] < 1e-9 and r0["max_p_mm_after"] < 1e-9
    assert any(v for k, v in r0.items() if k.startswith("accepted_"))
    assert r1["ave_p_mm_before"] == 0 and r1["ave_p_mm_after"] == 0 and not any(v for k, v in r1.items() if k.startswith("accepted"))
    assert r0["joint_rms_mm_after"] < 10.0
    # The input's convention: hand order, sides, representation (right orient a matrix), other fields.
    for s_in, s_out in zip(doc["samples"], out["samples"]):
        assert [h["side"] for h in s_out["hands"]] == ["left", "right"] and s_out["name"] == s_in["name"]
        assert np.shape(s_out["hands"][1]["global_orient"]) == (3, 3) and np.shape(s_out["hands"][0]["global_orient"]) == (3,)
        assert s_out["hands"][0]["score"] == 0.9 and s_out["hands"][0]["keypoints_2d"] == s_in["hands"][0]["keypoints_2d"]
    for key in ("global_orient", "hand_pose", "betas", "transl"):  # the collision-free sample comes back as it was
        for h in (0, 1):
            assert out["samples"][1]["hands"][h][key] == doc["samples"][1]["hands"][h][key]
    # The refined pair, read back: right wrist where it was, no penetration.
    pairs = read_camera_pairs(tmp_path / "out.json")
    params, wrist = to_internal(pairs, open_hands)
    torch.testing.assert_close(wrist, WRIST, atol=1e-12, rtol=0)
    assert penetration_stats(open_hands(**params).vertices, open_hands.faces).ave_p.max() < 1e-9
    assert any(not torch.equal(params[k][0], p[k][0]) for k in p)


def test_refine_npz_mano_fixture_own_joints(tmp_path, mano_dir):
    hands = TwoHands(mano_dir, dtype=DT)
    p = _pair([[0.055, 0.0, 0.0], [0.12, 0.0, 0.0]], rot=False)  # sample 0: ~4 mm deep
    p["phi"][:, :, 2] = 0.1
    transl = camera_from_pair(hands, p["beta"], p["tau"], WRIST)
    arrays = {"format": np.array("ihmr.camera_pairs"), "hand_pose_space": np.array("flat")}
    for h, side in enumerate(("right", "left")):
        arrays[f"{side}_global_orient"] = axis_angle_to_matrix(p["phi"][:, h]).numpy()
        arrays[f"{side}_hand_pose"] = axis_angle_to_matrix(p["theta"][:, h].reshape(2, 15, 3)).numpy()
        arrays[f"{side}_betas"] = p["beta"][:, h].numpy()
        arrays[f"{side}_transl"] = transl[:, h].numpy()
    np.savez(tmp_path / "in.npz", **arrays)
    assert _run(tmp_path, "in.npz", "out.npz", "--model", str(mano_dir)) == 0
    with np.load(tmp_path / "out.npz") as z:
        out = {k: z[k] for k in z.files}
    assert out["ave_p_mm_before"][0] > 0.003 and out["max_p_mm_before"][0] > 0.5 and out["ave_p_mm_after"][0] < 1e-9 and out["max_p_mm_after"][0] < 1e-9
    assert out["ave_p_mm_before"][1] == 0 and out["ave_p_mm_after"][1] == 0
    for key in ("global_orient", "hand_pose", "betas", "transl"):
        for side in ("right", "left"):
            assert out[f"{side}_{key}"].shape == arrays[f"{side}_{key}"].shape
            np.testing.assert_array_equal(out[f"{side}_{key}"][1], arrays[f"{side}_{key}"][1])
    if not out["accepted_beta"][0]:  # beta unchanged -> right hand fixed (else its transl follows the new shape)
        np.testing.assert_array_equal(out["right_transl"][0], arrays["right_transl"][0])
    pairs = read_camera_pairs(tmp_path / "out.npz")
    params, wrist = to_internal(pairs, hands)
    torch.testing.assert_close(wrist, WRIST, atol=1e-12, rtol=0)
    assert penetration_stats(hands(**params).vertices, hands.faces).ave_p.max() < 1e-9


def test_refine_json_mlp(tmp_path, open_hands):
    p = _pair([[-0.03, -0.035, 0.0]])
    (tmp_path / "in.json").write_text(json.dumps(_camera_doc(open_hands, p)))
    assert _run(tmp_path, "in.json", "out.json", "--method", "mlp") == 0
    r = json.loads((tmp_path / "out.json").read_text())["samples"][0]["refinement"]
    assert r["ave_p_mm_after"] <= r["ave_p_mm_before"] and "accepted_tau" in r


def _bad_doc(open_hands):
    return _camera_doc(open_hands, _pair([[-0.03, -0.035, 0.0]]))


def _set(path, value):
    def change(doc):
        node = doc["samples"][0]
        for k in path[:-1]:
            node = node[k]
        if value is KeyError:
            del node[path[-1]]
        else:
            node[path[-1]] = value(node[path[-1]]) if callable(value) else value
    return change


BAD = {
    "missing side": (_set(["hands", 0, "side"], KeyError), "samples[0].hands[0].side is missing"),
    "same side": (_set(["hands", 0, "side"], "right"), "samples[0].hands[1].side: both hands are 'right'"),
    "missing hand": (_set(["hands"], lambda h: h[:1]), "samples[0].hands must be a list of two hands"),
    "nan": (_set(["hands", 0, "transl"], [0.1, float("nan"), 0.5]), "samples[0].hands[0].transl contains NaN or inf"),
    "inf 2d": (_set(["hands", 1, "keypoints_2d"], lambda k: [[float("inf"), 0.0]] + k[1:]), "samples[0].hands[1].keypoints_2d contains NaN"),
    "not orthonormal": (_set(["hands", 1, "global_orient"], lambda m: (1.1 * np.asarray(m)).tolist()),
                        "samples[0].hands[1].global_orient is not a rotation matrix"),
    "reflection": (_set(["hands", 1, "global_orient"], lambda m: (-np.asarray(m)).tolist()),
                   "samples[0].hands[1].global_orient is not a rotation matrix"),
    "pose shape": (_set(["hands", 0, "hand_pose"], lambda p: p[:44]), "samples[0].hands[0].hand_pose must have shape (45,) or (15, 3) or (15, 3, 3)"),
    "orient shape": (_set(["hands", 0, "global_orient"], [0.0, 1.0]), "samples[0].hands[0].global_orient must have shape"),
    "zero focal": (_set(["intrinsics", "fx"], 0.0), "samples[0].intrinsics: focal lengths fx, fy must be positive"),
    "negative focal": (_set(["intrinsics", "fy"], -5.0), "samples[0].intrinsics: focal lengths fx, fy must be positive"),
    "2d without intrinsics": (_set(["intrinsics"], KeyError), "samples[0].hands[1].keypoints_2d given without intrinsics"),
    "intrinsics differ": (lambda d: [d["samples"][0]["hands"][i].__setitem__("intrinsics", [1000.0, 1100.0, 320.0 + i, 240.0])
                                     for i in (0, 1)], "samples[0].hands[1].intrinsics [1000.0, 1100.0, 321.0, 240.0] differs from"),
    "betas count": (lambda d: [h.__setitem__("betas", h["betas"][:9]) for h in d["samples"][0]["hands"]],
                    "samples[0].hands[1].betas has 9 betas; the 'open' model has 10"),
    "pose space": (lambda d: d.__setitem__("hand_pose_space", "relaxed"), "hand_pose_space must be one of flat, mean"),
    "mean without mean pose": (lambda d: d.__setitem__("hand_pose_space", "mean"), "hand_pose_space 'mean' needs a hand model with MANO's mean pose"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_camera_input_is_one_line_naming_the_field(tmp_path, open_hands, capsys, case):
    change, message = BAD[case]
    doc = _bad_doc(open_hands)
    change(doc)
    (tmp_path / "in.json").write_text(json.dumps(doc))
    assert _run(tmp_path, "in.json", "out.json") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out.json").exists()


@pytest.mark.parametrize("case", ["missing left", "nan", "not a rotation", "wrong shape", "json output"])
def test_bad_camera_npz_is_one_line_naming_the_key(tmp_path, capsys, case):
    eye = np.tile(np.eye(3), (1, 1, 1))
    arrays = {f"{s}_{k}": v for s in ("right", "left") for k, v in
              (("global_orient", eye.copy()), ("hand_pose", np.zeros((1, 45))), ("betas", np.zeros((1, 10))),
               ("transl", np.array([[0.0, 0.0, 0.5]])))}
    out = "out.npz"
    if case == "missing left":
        arrays = {k: v for k, v in arrays.items() if not k.startswith("left_")}
        message = "missing key(s) left_global_orient, left_hand_pose, left_betas, left_transl (the left hand)"
    elif case == "nan":
        arrays["left_betas"][0, 3] = np.nan
        message = "key 'left_betas' contains NaN or inf"
    elif case == "not a rotation":
        arrays["right_global_orient"][0, 0, 1] = 0.5
        message = "key 'right_global_orient' [sample 0] is not a rotation matrix"
    elif case == "wrong shape":
        arrays["right_transl"] = np.zeros((1, 2))
        message = "key 'right_transl' must have shape (1, 3)"
    else:
        out = "out.json"
        message = "--output"
    np.savez(tmp_path / "in.npz", **arrays)
    assert _run(tmp_path, "in.npz", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / out).exists()
