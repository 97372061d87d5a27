"""``ihmr synth`` (:mod:`ihmr.data.synth`): determinism across workers, official InterHand2.6M structure,
projection consistency, exact parameters, bad arguments. Tiny images (64 px), 3 samples, pose chunks of 1."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ihmr.data.synth import SampleRenderer, SynthConfig, annotation_paths, generate, image_relpath
from ihmr.errors import InputError

SAMPLE = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "interhand26m_sample"
N, SEED, SIZE, CHUNK = 3, 5, 64, 1
TIPS = [0, 4, 8, 12, 16, 21, 25, 29, 33, 37]  # InterHand order: thumb..pinky tips, right then left
WRISTS = [20, 41]


def _run(out: Path, workers: int, **kw) -> dict:
    return generate(SynthConfig(out=out, n=N, seed=SEED, size=SIZE, workers=workers, chunk=CHUNK, progress=False, **kw))


@pytest.fixture(scope="module")
def synth_dirs(tmp_path_factory):
    d1 = tmp_path_factory.mktemp("synth_k1")
    d2 = tmp_path_factory.mktemp("synth_k2")
    m1 = _run(d1, 1)
    m2 = _run(d2, 2)
    return d1, d2, m1, m2


def _load(out: Path) -> dict:
    return {k: json.loads(p.read_text()) for k, p in annotation_paths(out, "train").items() if k not in ("parts",)}


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and ".parts" not in p.parts}


def test_deterministic_across_workers(synth_dirs):
    d1, d2, m1, m2 = synth_dirs
    assert m1["rendered"] == m2["rendered"] == N
    f1, f2 = _files(d1), _files(d2)
    assert sorted(f1) == sorted(f2)
    for name in f1:
        assert f1[name] == f2[name], f"{name} differs between 1 and 2 workers"
    for i in range(N):
        assert f"images/train/{image_relpath(i)}" in f1
    import os

    mask = os.umask(0)
    os.umask(mask)
    for name in (f"images/train/{image_relpath(0)}", "annotations/train/InterHand2.6M_train_data.json"):
        assert (d1 / name).stat().st_mode & 0o777 == 0o666 & ~mask  # like open(), not mkstemp's 0600
    # Different seeds give different data.
    params = _load(d1)["ihmr"]["0"]
    assert params["0"]["beta"] != params["1"]["beta"]


def test_resume_reuses_everything(synth_dirs, tmp_path):
    d1, _, _, _ = synth_dirs
    before = _files(d1)
    m = _run(d1, 1, resume=True)
    assert m["rendered"] == 0 and m["reused"] == N
    assert _files(d1) == before
    with pytest.raises(InputError, match="other settings"):
        generate(SynthConfig(out=d1, n=N, seed=SEED + 1, size=SIZE, chunk=CHUNK, resume=True, progress=False))


def _sig(x):
    """Type skeleton: id-keyed dicts (all-digit keys) collapse to their first entry, numeric lists keep
    their length."""
    if isinstance(x, dict):
        if x and all(str(k).isdigit() for k in x):
            return {"<id>": _sig(next(iter(x.values())))}
        return {k: _sig(v) for k, v in x.items()}
    if isinstance(x, list):
        if x and isinstance(x[0], dict):
            return ["list", _sig(x[0])]
        return ["list", len(x), _sig(x[0]) if x else None]
    return type(x).__name__


@pytest.mark.skipif(not SAMPLE.is_dir(), reason="../shared/data/interhand26m_sample is absent")
def test_structure_matches_official_sample(synth_dirs):
    d1 = synth_dirs[0]
    ours = _load(d1)
    for key in ("data", "camera", "joint_3d"):
        real = json.loads((SAMPLE / f"test_interhand2.6m_{key}.json").read_text())
        assert _sig(ours[key]) == _sig(real), key
    # Every entry, not only the first, has the same skeleton.
    real_data = json.loads((SAMPLE / "test_interhand2.6m_data.json").read_text())
    for im, an in zip(ours["data"]["images"], ours["data"]["annotations"]):
        assert _sig(im) == _sig(real_data["images"][0]) and _sig(an) == _sig(real_data["annotations"][0])
        assert (im["width"], im["height"]) == (SIZE, SIZE) and an["image_id"] == im["id"]
        assert an["hand_type"] == "interacting"
    assert len(ours["joint_3d"]["0"]) == N and len(ours["camera"]["0"]["campos"]) == N


def test_mano_and_ihmr_params_shape(synth_dirs):
    ours = _load(synth_dirs[0])
    assert _sig(ours["mano"]) == {"<id>": {"<id>": {side: {"pose": ["list", 48, "float"], "shape": ["list", 10, "float"],
                                                           "trans": ["list", 3, "float"]} for side in ("right", "left")}}}
    p = ours["ihmr"]["0"]["0"]
    assert p["model"] == "open"
    assert np.asarray(p["beta"]).shape == (2, 10) and np.asarray(p["phi"]).shape == (2, 3)
    assert np.asarray(p["theta"]).shape == (2, 45) and np.asarray(p["tau"]).shape == (3,)


def _dilate(mask: np.ndarray) -> np.ndarray:
    m = np.pad(mask, 1)
    return np.any([m[1 + dy : m.shape[0] - 1 + dy, 1 + dx : m.shape[1] - 1 + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)


def _project(world_mm, cam, cid):
    R = np.asarray(cam["camrot"][cid])
    X = (np.asarray(world_mm) - np.asarray(cam["campos"][cid])) @ R.T
    return X[:, :2] / X[:, 2:3] * np.asarray(cam["focal"][cid]) + np.asarray(cam["princpt"][cid]), X[:, 2]


def test_projection_lands_on_rendered_hands(synth_dirs):
    """world_coord (and the meshes rebuilt from ihmr_params) projected with the written camera fall on
    the rendered hands; visible fingertips have the rendered depth."""
    from ihmr.handmodel.two_hands import TwoHands

    files = _load(synth_dirs[0])
    hands = TwoHands("open", dtype=torch.float64)
    r = SampleRenderer(SIZE)
    try:
        for im, an in zip(files["data"]["images"], files["data"]["annotations"]):
            idx, cid, fr = im["id"], im["camera"], str(im["frame_idx"])
            s = r.render(SEED, idx, CHUNK, buffers=True)
            assert s.jpeg == (synth_dirs[0] / "images" / "train" / im["file_name"]).read_bytes()
            for _ in range(3):  # the same pixels every time (pyrender's draw order is made deterministic)
                assert r.render(SEED, idx, CHUNK).jpeg == s.jpeg
            cam = files["camera"]["0"]
            uv, z = _project(files["joint_3d"]["0"][fr]["world_coord"], cam, cid)
            assert (uv >= 0).all() and (uv < SIZE).all() and (z > 0).all()
            x, y, w, h = an["bbox"]
            assert (uv[:, 0] >= x - 1e-6).all() and (uv[:, 0] <= x + w + 1e-6).all()
            assert (uv[:, 1] >= y - 1e-6).all() and (uv[:, 1] <= y + h + 1e-6).all()
            mask = s.hand_label >= 0  # hands only (forearms left out)
            assert 0.03 < mask.mean() < 0.9 and (s.hand_label == 0).any() and (s.hand_label == 1).any()
            # The meshes rebuilt from the written parameters cover the rendered silhouette.
            p = files["ihmr"]["0"][fr]
            t = lambda k: torch.tensor(p[k], dtype=torch.float64)[None]  # noqa: E731
            with torch.no_grad():
                V = hands(t("beta"), t("phi"), t("theta"), t("tau")).vertices[0].numpy().reshape(-1, 3)
            vuv, _ = _project(V * 1000.0 + np.asarray(p["origin_mm"]), cam, cid)
            px = np.clip(np.floor(vuv).astype(int), 0, SIZE - 1)
            assert mask[px[:, 1], px[:, 0]].mean() > 0.9  # silhouette pixels less than half covered are empty
            assert _dilate(mask)[px[:, 1], px[:, 0]].mean() > 0.998
            ys, xs = np.nonzero(mask)
            np.testing.assert_allclose([xs.min(), ys.min()], vuv.min(0), atol=1.5)
            np.testing.assert_allclose([xs.max() + 1, ys.max() + 1], vuv.max(0), atol=1.5)
            # Joints on the silhouette; the visible surface there is at or in front of the joint.
            near = 0
            for j in TIPS + WRISTS:
                u, v = np.floor(uv[j]).astype(int)
                win = (slice(max(v - 1, 0), v + 2), slice(max(u - 1, 0), u + 2))
                assert mask[win].any(), f"sample {idx}: joint {j} at {uv[j]} falls on background"
                d = s.hand_depth[win][mask[win]] * 1000.0
                assert d.min() <= z[j] + 12.0, f"sample {idx}: joint {j} behind the visible surface"
                near += j in TIPS and np.abs(d - z[j]).min() < 8.0
            assert near >= 1, f"sample {idx}: no fingertip on the visible surface"
    finally:
        r.close()


def test_params_reproduce_world_joints(synth_dirs):
    """ihmr_params (TwoHands + origin) and the MANO-style params (layer + trans) both give world_coord."""
    from ihmr.handmodel.two_hands import TwoHands
    from ihmr.joint_order import convert, from_two_hand

    files = _load(synth_dirs[0])
    hands = TwoHands("open", dtype=torch.float64)
    for fr, p in files["ihmr"]["0"].items():
        world = np.asarray(files["joint_3d"]["0"][fr]["world_coord"])
        t = lambda k: torch.tensor(p[k], dtype=torch.float64)[None]  # noqa: E731
        with torch.no_grad():
            J = hands(t("beta"), t("phi"), t("theta"), t("tau")).joints
        ours = from_two_hand(J[0].numpy() * 1000.0, "interhand") + np.asarray(p["origin_mm"])
        np.testing.assert_allclose(ours, world, atol=1e-3)
        for h, side in enumerate(("right", "left")):
            m = files["mano"]["0"][fr][side]
            layer = hands.right if h == 0 else hands.left
            pose = torch.tensor(m["pose"], dtype=torch.float64)[None]
            with torch.no_grad():
                j = layer(torch.tensor(m["shape"], dtype=torch.float64)[None], pose[:, :3], pose[:, 3:]).joints[0].numpy()
            j = (j + np.asarray(m["trans"])) * 1000.0
            np.testing.assert_allclose(convert(j, "mano", "interhand"), world[21 * h:21 * h + 21], atol=1e-3)


def test_bad_arguments(tmp_path, capsys):
    for n in (0, -2):
        with pytest.raises(InputError, match="n must be"):
            generate(SynthConfig(out=tmp_path / "x", n=n))
    with pytest.raises(InputError, match="workers"):
        generate(SynthConfig(out=tmp_path / "x", n=1, workers=0))
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot create output folder|not a folder"):
        generate(SynthConfig(out=blocker / "sub", n=1))
    with pytest.raises(InputError, match="not a folder|cannot create"):
        generate(SynthConfig(out=blocker, n=1))

    from ihmr.cli.main import main

    assert main(["synth", "--out", str(tmp_path / "y"), "--n", "0"]) == 2
    assert "ihmr: error: n must be" in capsys.readouterr().err
    assert main(["synth", "--out", str(blocker / "sub"), "--n", "2", "--quiet"]) == 2
    assert "cannot create output folder" in capsys.readouterr().err
    assert not (tmp_path / "y").exists() or not any((tmp_path / "y").rglob("*.jpg"))


def test_forearm_tube_is_closed_outwards():
    import trimesh

    from ihmr.data.synth.forearms import inside_tube, tube

    a, u = np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0])
    for v in (np.cross(a, u), -np.cross(a, u)):  # both handednesses of (u, v, a)
        V, F = tube(np.zeros(3), a, u, v, 0.5, (0.03, 0.02), (0.2, 0.5))
        m = trimesh.Trimesh(V, F, process=False)
        assert m.volume > 0.0  # outward winding (pyrender culls back faces)
        inside = inside_tube(np.array([[0, 0, 0.25], [0.05, 0, 0.1], [0, 0, -0.01]]), np.zeros(3), a, u, v, 0.5,
                             (0.03, 0.02), (0.2, 0.5), 0.0)
        assert inside.tolist() == [True, False, False]
