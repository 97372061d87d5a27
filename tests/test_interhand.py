"""ihmr.data.interhand: the official InterHand2.6M format on four real frames and on small edge-case
files written in the same format (projection convention, joint order, subsets, crops, cache, errors)."""

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import ihmr.data.interhand as ih
import ihmr.data.interhand.parse as ih_parse
from ihmr.data import InterHandDataset, load_interhand
from ihmr.data.interhand import find_split_files
from ihmr.errors import InputError
from ihmr.geometry.crop import (
    apply_affine,
    crop_affine,
    crop_image,
    hand_boxes,
    invert_affine,
    pixels_to_normalised,
)
from ihmr.joint_order import MANO_FROM_INTERHAND
from ihmr.metrics import inter_distance

SAMPLE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "interhand26m_sample"
PREFIX = "test_interhand2.6m"
needs_sample = pytest.mark.skipif(
    not (SAMPLE / f"{PREFIX}_data.json").is_file(),
    reason=f"InterHand2.6M sample not found at {SAMPLE} (expected ../shared/data/interhand26m_sample beside the repo)",
)

# What the sample's README and files say about the four frames.
EXPECTED = {  # image_id: (file, hand type, valid joints)
    326750: ("image69148.jpg", "interacting", 42),
    286291: ("image44669.jpg", "interacting", 42),
    680801: ("image29590.jpg", "left", 21),
    471953: ("image2017.jpg", "right", 21),
}


def _raw(name: str, root: Path = SAMPLE):
    return json.loads((root / f"{PREFIX}_{name}.json").read_text())


def _write(root: Path, name: str, obj) -> None:
    (root / f"{PREFIX}_{name}.json").write_text(json.dumps(obj))


@pytest.fixture
def sample_copy(tmp_path):
    """A writable copy of the sample (annotations and images)."""
    d = tmp_path / "ih"
    shutil.copytree(SAMPLE, d)
    for p in d.iterdir():
        p.chmod(0o644)
    d.chmod(0o755)
    return d


@pytest.fixture(scope="module")
def sample():
    if not (SAMPLE / f"{PREFIX}_data.json").is_file():
        pytest.skip(f"InterHand2.6M sample not found at {SAMPLE}")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the real frames must load without any skipped record
        return load_interhand(SAMPLE, split="test", cache_dir=False)


# ------------------------------------------------------------------------------------ real frames
@needs_sample
def test_sample_loads_all_frames_with_types_and_validity(sample):
    assert len(sample) == 4 and sample.skipped == []
    assert not sample.has_mano and not sample.from_cache
    for k, iid in enumerate(sample.image_id):
        fname, htype, nvalid = EXPECTED[int(iid)]
        assert sample.file_name[k] == fname
        assert ih.HAND_TYPES[sample.hand_type[k]] == htype == sample.hand_type_names[k] and sample.hand_type_valid[k]
        assert sample.valid[k].sum() == nvalid
        assert sample.image_paths[k] == SAMPLE / fname
    # single hands: only that hand's 21 joints are valid (right 0-20, left 21-41)
    k_left = list(sample.image_id).index(680801)
    assert not sample.valid[k_left, :21].any() and sample.valid[k_left, 21:].all()
    assert (sample.valid_two_hand[k_left].sum(1) == [0, 21]).all()


@needs_sample
def test_world_to_camera_formula_matches_raw_json(sample):
    """X_cam = camrot (X_world - campos), mm -> m, recomputed independently from the raw files."""
    data, cams, j3d = _raw("data"), _raw("camera"), _raw("joint_3d")
    images = {im["id"]: im for im in data["images"]}
    for k, iid in enumerate(sample.image_id):
        im = images[int(iid)]
        cap, cam, fr = str(im["capture"]), im["camera"], str(im["frame_idx"])
        R = np.array(cams[cap]["camrot"][cam])
        c = np.array(cams[cap]["campos"][cam])
        world = np.array(j3d[cap][fr]["world_coord"])
        expected = (R @ (world - c).T).T / 1000.0
        np.testing.assert_allclose(sample.joints_cam[k], expected, atol=1e-9)
        np.testing.assert_allclose(sample.joints_world[k], world / 1000.0, atol=1e-12)
        np.testing.assert_allclose(sample.campos[k], c / 1000.0, atol=1e-9)
        fx, fy = cams[cap]["focal"][cam]
        cx, cy = cams[cap]["princpt"][cam]
        np.testing.assert_allclose(sample.K[k], [[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
        np.testing.assert_allclose(sample.R[k] @ sample.joints_world[k].T + sample.t[k][:, None], sample.joints_cam[k].T, atol=1e-9)
        # the valid joints are 0.9 - 1.2 m in front of the camera (the capture dome)
        z = sample.joints_cam[k][sample.valid[k], 2]
        assert (z > 0.9).all() and (z < 1.2).all()


@needs_sample
def test_projection_reproduces_the_annotation_bbox(sample):
    """The files have no 2D joints. The official bbox is the box of the projected valid joints
    enlarged 1.2x about its centre: our projection reproduces it to a thousandth of a pixel."""
    j, v = sample.joints_2d, sample.valid
    lo = np.where(v[..., None], j, np.inf).min(1)
    hi = np.where(v[..., None], j, -np.inf).max(1)
    ctr, size = (lo + hi) / 2, (hi - lo) * 1.2
    np.testing.assert_allclose(np.concatenate([ctr - size / 2, size], 1), sample.bbox, atol=2e-3)
    # same thing through hand_boxes (padding 1.2 = the annotation convention)
    b = hand_boxes(j, v, padding=1.2)
    np.testing.assert_allclose(np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], 1), sample.bbox, atol=2e-3)
    # and inside the image
    for k in range(len(sample)):
        jj = j[k][v[k]]
        assert (jj >= 0).all() and (jj[:, 0] < sample.width[k]).all() and (jj[:, 1] < sample.height[k]).all()


@needs_sample
def test_other_camera_conventions_would_miss_the_bbox(sample):
    """Sanity of the check above: R^T (X - c) or R X + c put the joints far outside the bbox."""
    for k in range(len(sample)):
        R, c = sample.R[k], -sample.R[k].T @ sample.t[k]
        w = sample.joints_world[k][sample.valid[k]]
        for cam in ((w - c) @ R, w @ R.T + c):  # R^T (X - c), R X + c
            z = np.where(np.abs(cam[:, 2:]) < 1e-6, 1e-6, cam[:, 2:])
            uv = cam[:, :2] / z * np.diag(sample.K[k])[:2] + sample.K[k][:2, 2]
            x, y, bw, bh = sample.bbox[k]
            inside = (uv[:, 0] >= x) & (uv[:, 0] <= x + bw) & (uv[:, 1] >= y) & (uv[:, 1] <= y + bh)
            assert inside.mean() < 0.5


@needs_sample
def test_joint_order_wrist_mapping_and_bone_lengths(sample):
    J = sample.joints  # (N, 2, 21, 3) MANO order
    np.testing.assert_array_equal(J[:, 0, 0], sample.joints_cam[:, 20])  # right wrist = InterHand 20
    np.testing.assert_array_equal(J[:, 1, 0], sample.joints_cam[:, 41])  # left wrist = InterHand 41
    np.testing.assert_array_equal(J[:, 0, 16], sample.joints_cam[:, 0])  # thumb tip = InterHand 0
    np.testing.assert_array_equal(J[:, 1], sample.joints_cam[:, 21:][:, MANO_FROM_INTERHAND])
    V = sample.valid_two_hand
    # anatomy on real data: wrist -> index/middle/pinky/ring MCP 6-12 cm; finger segments 1-6 cm
    for n, h in zip(*np.nonzero(V.all(2))):
        wrist_mcp = np.linalg.norm(J[n, h, [1, 4, 7, 10]] - J[n, h, 0], axis=1)
        assert ((wrist_mcp > 0.06) & (wrist_mcp < 0.12)).all(), wrist_mcp
        for chain in ([1, 2, 3, 17], [4, 5, 6, 18], [7, 8, 9, 20], [10, 11, 12, 19], [13, 14, 15, 16]):
            seg = np.linalg.norm(np.diff(J[n, h, chain], axis=0), axis=1)
            assert ((seg > 0.01) & (seg < 0.06)).all(), (chain, seg)
        # the wrist is the joint farthest from the middle fingertip
        d = np.linalg.norm(J[n, h] - J[n, h, 18], axis=1)
        assert d.argmax() == 0


@needs_sample
def test_subsets_of_the_real_frames(sample):
    inter = sample.subset_mask("inter")
    close = sample.subset_mask("inter_close")
    ids = sample.image_id
    assert set(ids[inter]) == {326750, 286291} and set(ids[close]) == {326750, 286291}
    assert sample.subset_mask("all").all()
    d = inter_distance(sample.joints, sample.valid_two_hand)
    assert np.isnan(d[~inter]).all() and (d[inter] > 0.015).all() and (d[inter] < 0.035).all()
    assert len(sample.subset("inter_close")) == 2
    with pytest.raises(InputError, match="unknown subset"):
        sample.subset_mask("close")


@needs_sample
def test_dataset_item_crop_round_trip_and_consistency(sample):
    ds = InterHandDataset(sample, size=224)
    assert len(ds) == 4
    for i in range(len(ds)):
        it = ds[i]
        assert it["image"].shape == (3, 224, 224) and it["image"].dtype == torch.float32
        assert it["image"].min() >= -1 and it["image"].max() <= 1
        A = it["affine"].double().numpy()
        valid = it["valid"].numpy()
        # crop pixels -> image pixels
        back = apply_affine(it["j2d"].double().numpy().reshape(1, 42, 2), invert_affine(A[None]))[0].reshape(2, 21, 2)
        np.testing.assert_allclose(back[valid], sample.joints_2d_two_hand[i][valid], atol=1e-3)
        # normalised coordinates: all valid joints inside [-1, 1], the box's long side at +-1/1.2
        jn = it["j2d_norm"].numpy()[valid]
        assert np.abs(jn).max() == pytest.approx(1 / 1.2, abs=1e-4)
        np.testing.assert_allclose(jn, pixels_to_normalised(it["j2d"].numpy()[valid], 224), atol=1e-6)
        # the crop's intrinsics project the camera-frame joints onto the crop joints
        p = it["j3d"].double().numpy() @ it["K_crop"].double().numpy().T
        np.testing.assert_allclose((p[..., :2] / p[..., 2:])[valid], it["j2d"].numpy()[valid], atol=1e-2)
        assert it["hand_type"] == list(ih.HAND_TYPES).index(EXPECTED[int(it["image_id"])][1])
        assert it["hand_type_vec"].tolist() == {"right": [1, 0], "left": [0, 1], "interacting": [1, 1]}[EXPECTED[int(it["image_id"])][1]]
    # deterministic
    a, b = ds[1], ds[1]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert ds[-1]["image_id"] == ds[3]["image_id"]
    with pytest.raises(IndexError):
        ds[4]


@needs_sample
def test_dataset_uint8_zero_padding_and_root_relative(sample):
    ds = InterHandDataset(sample, subset="inter", normalise=False, root_relative=True, size=128)
    assert len(ds) == 2
    for i in range(2):
        it = ds[i]
        img = it["image"].numpy()
        assert img.shape == (128, 128, 3) and img.dtype == np.uint8
        # the short side of the hand box is zero-padded (rows or columns outside it are black)
        box = ds.boxes[i]
        w, h = box[2] - box[0], box[3] - box[1]
        lo = int(np.ceil((127 / 2) - 64 * min(w, h) / max(w, h))) - 2
        strip = img[:lo] if h < w else img[:, :lo]
        assert lo >= 1 and strip.max() == 0
        assert img.mean() > 20  # the hands are there
        np.testing.assert_allclose(it["j3d"][:, 0].numpy(), 0.0, atol=1e-7)
        np.testing.assert_allclose((it["j3d"] + it["root"][:, None]).numpy(), sample.subset("inter").joints[i], atol=1e-6)
    # a single hand: root_relative invalidates the absent hand (no wrist)
    single = InterHandDataset(sample, root_relative=True)
    k = list(single.annotations.image_id).index(471953)  # right only
    assert single[k]["valid"].sum(1).tolist() == [21, 0] and single[k]["root_valid"].tolist() == [True, False]


# ----------------------------------------------------------------------------------------- crops
def test_crop_affine_maps_box_edges_and_pixels():
    boxes = np.array([[10.0, 20.0, 110.0, 70.0], [-5.0, -5.0, 45.0, 95.0]])
    A = crop_affine(boxes, size=64)
    corners = apply_affine(boxes.reshape(2, 2, 2), A)
    # long side spans the whole crop (-0.5 .. 63.5), short side centred
    np.testing.assert_allclose(corners[0], [[-0.5, 15.5], [63.5, 47.5]])
    np.testing.assert_allclose(corners[1], [[15.5, -0.5], [47.5, 63.5]])
    np.testing.assert_allclose(pixels_to_normalised(corners[0], 64), [[-1, -0.5], [1, 0.5]])
    np.testing.assert_allclose(apply_affine(corners, invert_affine(A)), boxes.reshape(2, 2, 2))
    # pixel centres at integers: a linear ramp image is sampled at A^-1(crop pixel)
    H, W = 100, 150
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx, yy, np.zeros_like(xx)], -1).astype(np.uint8)
    box = np.array([30.0, 20.0, 90.0, 80.0])
    Ai = crop_affine(box[None], 60)[0]  # scale 1: a pure shift
    crop = crop_image(img, Ai, 60)
    src = apply_affine(np.array([[[10.0, 7.0], [40.0, 33.0]]]), invert_affine(Ai[None]))[0]
    for (x, y), (u, v) in zip([(10, 7), (40, 33)], src):
        assert crop[y, x, 0] == pytest.approx(u, abs=1) and crop[y, x, 1] == pytest.approx(v, abs=1)
    # zero padding outside the box, zero outside the image
    wide = np.array([0.0, 40.0, 100.0, 60.0])
    Aw = crop_affine(wide[None], 50)[0]
    c = crop_image(np.full((100, 150, 3), 200, np.uint8), Aw, 50, box=wide)
    assert c[:19].max() == 0 and c[31:].max() == 0 and c[21:29].min() == 200
    c2 = crop_image(np.full((100, 150, 3), 200, np.uint8), Aw, 50)  # with context
    assert c2[:19].min() == 200


def test_hand_boxes_fallback_to_bbox_and_union():
    j = np.array([[[10.0, 10.0], [20.0, 30.0]], [[0.0, 0.0], [0.0, 0.0]]])
    v = np.array([[True, True], [False, False]])
    bbox = np.array([[0.0, 0.0, 100.0, 100.0], [5.0, 6.0, 7.0, 8.0]])
    b = hand_boxes(j, v, bbox, padding=1.0)
    np.testing.assert_allclose(b, [[10, 10, 20, 30], [5, 6, 12, 14]])
    np.testing.assert_allclose(hand_boxes(j, v, bbox, padding=1.0, use_bbox=True)[0], [0, 0, 100, 100])
    with pytest.raises(InputError, match="no valid joint"):
        hand_boxes(j, v)


# --------------------------------------------------------------------- synthetic official files
def _synthetic_files(root: Path, with_mano: bool = True) -> dict:
    """Two frames of one capture, one camera rotated 90 deg about z, in the official format."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    R = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    campos = [100.0, -50.0, -1000.0]
    # right hand around (0, 0, 0) mm, left 200 mm to the side (frame 1) or 25 mm (frame 2)
    base = rng.normal(0.0, 30.0, (21, 3))
    worlds = {
        "1": np.concatenate([base, base + [200.0, 0.0, 0.0]]),
        "2": np.concatenate([base, base + [25.0, 5.0, 0.0]]),
    }
    cams = {"0": {"campos": {"cam1": campos}, "camrot": {"cam1": R}, "focal": {"cam1": [1000.0, 1100.0]},
                  "princpt": {"cam1": [160.0, 240.0]}}}
    j3d = {"0": {f: {"world_coord": w.tolist(), "joint_valid": [[True]] * 42, "hand_type": "interacting",
                     "hand_type_valid": True} for f, w in worlds.items()}}
    images, anns = [], []
    for iid, f in ((7, "1"), (8, "2")):
        images.append({"id": iid, "file_name": f"cap0/image{f}.jpg", "width": 320, "height": 480, "capture": 0,
                       "subject": 0, "seq_name": "synthetic", "camera": "cam1", "frame_idx": int(f)})
        anns.append({"id": iid, "image_id": iid, "bbox": [1.0, 2.0, 300.0, 400.0], "joint_valid": [[1]] * 42,
                     "hand_type": "interacting", "hand_type_valid": 1})
    _write(root, "data", {"images": images, "annotations": anns})
    _write(root, "camera", cams)
    _write(root, "joint_3d", j3d)
    mano = None
    if with_mano:
        mano = {"0": {"1": {"right": {"pose": list(np.arange(48) * 0.01), "shape": [0.5] * 10, "trans": [0.1, 0.2, 0.3]},
                            "left": None}}}
        (root / f"{PREFIX}_MANO_NeuralAnnot.json").write_text(json.dumps(mano))
    (root / "cap0").mkdir(exist_ok=True)
    from PIL import Image

    for f in ("1", "2"):
        Image.fromarray(np.full((480, 320, 3), 90, np.uint8)).save(root / "cap0" / f"image{f}.jpg")
    return {"worlds": worlds, "R": np.array(R), "campos": np.array(campos), "mano": mano}


def test_synthetic_projection_subsets_and_mano(tmp_path):
    info = _synthetic_files(tmp_path / "s")
    a = load_interhand(tmp_path / "s", cache_dir=False)
    assert len(a) == 2 and a.skipped == [] and a.has_mano
    for k, f in enumerate(("1", "2")):
        w = info["worlds"][f]
        cam = (w - info["campos"]) @ info["R"].T  # mm
        np.testing.assert_allclose(a.joints_cam[k], cam / 1000, atol=1e-12)
        # hand-computed pinhole with fx != fy
        u = 1000.0 * cam[:, 0] / cam[:, 2] + 160.0
        v = 1100.0 * cam[:, 1] / cam[:, 2] + 240.0
        np.testing.assert_allclose(a.joints_2d[k], np.stack([u, v], 1), atol=1e-9)
    # frame 1: hands 200 mm apart -> interacting (42 valid) but not close; frame 2: close
    assert a.subset_mask("inter").tolist() == [True, True]
    assert a.subset_mask("inter_close").tolist() == [False, True]
    # NeuralAnnot: right present, left null
    np.testing.assert_array_equal(a.mano_valid, [[True, False], [False, False]])
    np.testing.assert_allclose(a.mano_pose[0, 0], np.arange(48) * 0.01)
    np.testing.assert_allclose(a.mano_trans[0, 0], [0.1, 0.2, 0.3])
    assert (a.mano_pose[0, 1] == 0).all()
    it = InterHandDataset(a)[0]
    assert it["mano_pose"].shape == (2, 48) and it["mano_valid"].tolist() == [True, False]
    assert it["image"].shape == (3, 224, 224)
    # explicit files, MANO ignored
    files = find_split_files(tmp_path / "s", mano=False)
    assert files.mano is None and files.prefix == PREFIX
    assert "mano_pose" not in InterHandDataset(files, cache_dir=False)[0]


def test_find_split_files_names_and_errors(tmp_path):
    _synthetic_files(tmp_path / "s", with_mano=False)
    for name in ("data", "camera", "joint_3d"):  # the official naming
        shutil.copy(tmp_path / "s" / f"{PREFIX}_{name}.json", tmp_path / "s" / f"InterHand2.6M_val_{name}.json")
    f = find_split_files(tmp_path / "s", split="val")
    assert f.data.name == "InterHand2.6M_val_data.json" and f.image_root == tmp_path / "s"
    assert find_split_files(tmp_path / "s", prefix="InterHand2.6M_val", image_root="/x").image_root == Path("/x")
    with pytest.raises(InputError, match="expected one"):
        find_split_files(tmp_path / "s", split="train")
    (tmp_path / "s" / "InterHand2.6M_val_camera.json").unlink()
    with pytest.raises(InputError, match="camera file .*InterHand2.6M_val_camera.json"):
        find_split_files(tmp_path / "s", split="val")
    with pytest.raises(InputError, match="does not exist"):
        find_split_files(tmp_path / "nowhere")


# ------------------------------------------------------------------------------------------ cache
def test_cache_hit_and_invalidation(tmp_path, monkeypatch):
    _synthetic_files(tmp_path / "s")
    calls = []
    real = ih_parse.read_json
    monkeypatch.setattr(ih_parse, "read_json", lambda p: calls.append(Path(p).name) or real(p))
    monkeypatch.setenv("IHMR_CACHE", str(tmp_path / "user_cache"))  # the default cache location
    default = tmp_path / "user_cache" / "interhand"
    a = load_interhand(tmp_path / "s")
    assert not a.from_cache and len(calls) == 4  # data, camera, joint_3d, MANO
    assert not list((tmp_path / "s").glob("*.ihmr-cache.*.npz"))  # nothing written beside the data
    caches = list(default.glob("*.ihmr-cache.*.npz"))
    assert len(caches) == 1
    calls.clear()
    b = load_interhand(tmp_path / "s")
    assert b.from_cache and calls == []  # no JSON parsed
    for k in ("joints_cam", "joints_2d", "valid", "K", "bbox", "mano_pose", "mano_valid", "image_id", "file_name"):
        np.testing.assert_array_equal(getattr(a, k), getattr(b, k))
    assert b.has_mano
    # change a file: the cache is invalidated, the new value is read, the stale cache removed
    j = json.loads((tmp_path / "s" / f"{PREFIX}_joint_3d.json").read_text())
    j["0"]["1"]["world_coord"][20] = [0.0, 0.0, 0.0]
    _write(tmp_path / "s", "joint_3d", j)
    st = (tmp_path / "s" / f"{PREFIX}_joint_3d.json").stat()
    os.utime(tmp_path / "s" / f"{PREFIX}_joint_3d.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    c = load_interhand(tmp_path / "s")
    assert not c.from_cache and len(calls) == 4
    np.testing.assert_allclose(c.joints_world[0, 20], 0.0)
    assert len(list(default.glob("*.ihmr-cache.*.npz"))) == 1
    assert list(default.glob("*.ihmr-cache.*.npz")) != caches
    # a separate cache folder; cache_dir=False never writes
    calls.clear()
    assert not load_interhand(tmp_path / "s", cache_dir=tmp_path / "cache").from_cache
    assert load_interhand(tmp_path / "s", cache_dir=tmp_path / "cache").from_cache
    assert not load_interhand(tmp_path / "s", cache_dir=False).from_cache
    # a corrupt cache file is ignored and rewritten
    cache = next((tmp_path / "cache").glob("*.npz"))
    cache.write_bytes(b"not an npz")
    assert not load_interhand(tmp_path / "s", cache_dir=tmp_path / "cache").from_cache
    assert load_interhand(tmp_path / "s", cache_dir=tmp_path / "cache").from_cache


def test_cache_keeps_skipped_reports_and_rechecks_images(tmp_path):
    _synthetic_files(tmp_path / "s", with_mano=False)
    d = json.loads((tmp_path / "s" / f"{PREFIX}_data.json").read_text())
    d["annotations"][0]["bbox"] = [1.0, 2.0, 3.0]
    _write(tmp_path / "s", "data", d)
    with pytest.warns(UserWarning, match="skipped 1 sample"):
        a = load_interhand(tmp_path / "s")
    with pytest.warns(UserWarning, match="skipped 1 sample"):
        b = load_interhand(tmp_path / "s")
    assert b.from_cache and b.skipped == a.skipped and "bbox" in b.skipped[0].reason
    (tmp_path / "s" / "cap0" / "image2.jpg").unlink()  # images are checked after the cache
    with pytest.warns(UserWarning, match="skipped 2 sample"):
        c = load_interhand(tmp_path / "s")
    assert c.from_cache and len(c) == 0 and c.skipped[-1].reason == "image file not found"
    assert len(InterHandDataset(c)) == 0


# ----------------------------------------------------------------------------------- robustness
@needs_sample
@pytest.mark.parametrize("name", ["data", "camera", "joint_3d"])
def test_corrupt_json_names_the_file(sample_copy, name):
    p = sample_copy / f"{PREFIX}_{name}.json"
    p.write_text(p.read_text()[: len(p.read_text()) // 2])  # truncated
    with pytest.raises(InputError, match=f"{PREFIX}_{name}.json: not valid JSON"):
        load_interhand(sample_copy, cache_dir=False)


@needs_sample
def test_wrong_top_level_structure_names_the_file(sample_copy):
    _write(sample_copy, "data", {"images": []})
    with pytest.raises(InputError, match=f"{PREFIX}_data.json: expected an object with 'images'"):
        load_interhand(sample_copy, cache_dir=False)
    _write(sample_copy, "data", _raw("data"))
    _write(sample_copy, "camera", [1, 2])
    with pytest.raises(InputError, match=f"{PREFIX}_camera.json: expected an object"):
        load_interhand(sample_copy, cache_dir=False)


@needs_sample
def test_missing_image_is_reported_and_skipped_without_misalignment(sample_copy, sample):
    (sample_copy / "image44669.jpg").unlink()
    with pytest.warns(UserWarning, match=r"skipped 1 sample.*286291 image44669.jpg: image file not found"):
        a = load_interhand(sample_copy, cache_dir=False)
    assert len(a) == 3 and [s.image_id for s in a.skipped] == [286291]
    for k, iid in enumerate(a.image_id):
        j = list(sample.image_id).index(iid)
        assert a.file_name[k] == sample.file_name[j] == EXPECTED[int(iid)][0]
        np.testing.assert_array_equal(a.joints_cam[k], sample.joints_cam[j])
    assert len(InterHandDataset(a, subset="inter")) == 1
    assert len(load_interhand(sample_copy, cache_dir=False, check_images=False, warn=False)) == 4


@needs_sample
def test_corrupt_records_are_reported_and_skipped(sample_copy, sample):
    data, j3d = _raw("data"), _raw("joint_3d")
    by_id = {a["image_id"]: a for a in data["annotations"]}
    by_id[326750]["joint_valid"] = by_id[326750]["joint_valid"][:41]  # wrong length
    del by_id[286291]["bbox"]  # missing key
    j3d["7"]["29590"]["world_coord"][25][1] = float("nan")  # NaN at a valid (left) joint
    j3d["4"]["2017"]["world_coord"][30][0] = float("nan")  # NaN at an invalid joint: fine
    _write(sample_copy, "data", data)
    (sample_copy / f"{PREFIX}_joint_3d.json").write_text(json.dumps(j3d))  # json writes NaN
    with pytest.warns(UserWarning, match="skipped 3 sample"):
        a = load_interhand(sample_copy, cache_dir=False)
    reasons = {s.image_id: s.reason for s in a.skipped}
    assert "joint_valid has 41 values" in reasons[326750]
    assert "has no 'bbox'" in reasons[286291]
    assert "NaN/inf at valid joints [25]" in reasons[680801]
    assert a.image_id.tolist() == [471953] and np.isfinite(a.joints_cam).all()
    np.testing.assert_allclose(a.joints_cam[0][a.valid[0]], sample.joints_cam[3][sample.valid[3]])
    # unknown camera / frame, unknown hand type, an annotation without an image
    data = _raw("data")
    data["images"][0]["camera"] = "999999"
    data["images"][1]["frame_idx"] = 123
    data["annotations"][2]["hand_type"] = "both"
    data["annotations"].append(dict(data["annotations"][3], image_id=5))
    _write(sample_copy, "data", data)
    _write(sample_copy, "joint_3d", _raw("joint_3d"))
    with pytest.warns(UserWarning, match="skipped 4 sample"):
        b = load_interhand(sample_copy, cache_dir=False)
    reasons = [s.reason for s in b.skipped]
    assert any("camera capture 3 campos has no '999999'" in r for r in reasons)
    assert any("capture 2 frame 123 not in the joint_3d file" in r for r in reasons)
    assert any("hand_type 'both'" in r for r in reasons)
    assert any("image_id 5 has no entry" in r for r in reasons)
    assert b.image_id.tolist() == [471953]
    np.testing.assert_array_equal(b.joints_cam[0], sample.joints_cam[3])


def test_crop_image_agrees_with_cv2_warp_affine(rng):
    cv2 = pytest.importorskip("cv2")
    img = rng.integers(0, 256, (90, 130, 3), dtype=np.uint8)
    img = cv2.GaussianBlur(img, (5, 5), 2.0)  # smooth, so rounding differences stay small
    A = crop_affine(np.array([[20.3, 10.7, 95.1, 70.2]]), 77)[0]
    ours = crop_image(img, A, 77).astype(int)
    ref = cv2.warpAffine(img, A, (77, 77), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0).astype(int)
    inner = (slice(2, -2), slice(2, -2))
    assert np.abs(ours[inner] - ref[inner]).max() <= 2


def test_dataset_rejects_unreadable_or_resized_images(tmp_path):
    _synthetic_files(tmp_path / "s", with_mano=False)
    from PIL import Image

    Image.fromarray(np.zeros((100, 80, 3), np.uint8)).save(tmp_path / "s" / "cap0" / "image1.jpg")
    (tmp_path / "s" / "cap0" / "image2.jpg").write_bytes(b"no jpeg")
    ds = InterHandDataset(tmp_path / "s", cache_dir=False)
    with pytest.raises(InputError, match=r"image1.jpg: image is 80x100 pixels, the annotation says 320x480"):
        ds[0]
    with pytest.raises(InputError, match=r"image2.jpg: not a readable image"):
        ds[1]


def test_explicit_paths_data_file_and_dataloader(tmp_path):
    _synthetic_files(tmp_path / "s")
    ann_dir, img_dir = tmp_path / "annotations", tmp_path / "images"
    ann_dir.mkdir()
    img_dir.mkdir()
    shutil.move(tmp_path / "s" / "cap0", img_dir / "cap0")
    names = {k: ann_dir / f"{k}.json" for k in ("data", "camera", "joint_3d")}
    for k, p in names.items():
        shutil.copy(tmp_path / "s" / f"{PREFIX}_{k}.json", p)
    files = ih.InterHandFiles(data=names["data"], camera=names["camera"], joint_3d=names["joint_3d"], image_root=img_dir)
    a = load_interhand(files, cache_dir=False)
    assert len(a) == 2 and a.skipped == [] and not a.has_mano
    # a *_data.json path: the other files beside it; images relative to image_root
    b = load_interhand(tmp_path / "s" / f"{PREFIX}_data.json", image_root=img_dir, cache_dir=False)
    assert b.has_mano and len(b) == 2
    np.testing.assert_array_equal(a.joints_2d, b.joints_2d)
    loader = torch.utils.data.DataLoader(InterHandDataset(b, size=96), batch_size=2, shuffle=False)
    batch = next(iter(loader))
    assert batch["image"].shape == (2, 3, 96, 96) and batch["j3d"].shape == (2, 2, 21, 3)
    assert batch["valid"].dtype == torch.bool and batch["mano_pose"].shape == (2, 2, 48)
    assert batch["image_id"].tolist() == [7, 8]
