"""``ihmr eval`` (stage I + refiners on InterHand2.6M-format data), its torchrun sharding, and
``ihmr demo --checkpoint`` (the stage-I network as the demo's stage I).

Tiny on purpose: 6 rendered 64 px synthetic images and an untrained ResNet-18 with a small joint head.
"""

import json
import math
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ihmr.stage1.weights import default_stage1_path

SRC = Path(__file__).resolve().parents[1] / "src"
EXAMPLE = SRC / "ihmr" / "examples" / "image69148.jpg"
N = 6
# Same batch composition and threads in 1- and 2-process runs (3 samples per rank), so per-sample
# results agree to float rounding.
FLAGS = ["--iterations", "10", "--batch", "3", "--refine-batch", "3", "--threads", "1", "--no-progress"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("PYOPENGL_PLATFORM", "egl")
    return env


def _ihmr(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "ihmr", *map(str, args)], capture_output=True, text=True, env=_env(), timeout=timeout)


@pytest.fixture(scope="session")
def one_process(eval_setup, tmp_path_factory):
    data, ckpt = eval_setup
    out = tmp_path_factory.mktemp("eval1")
    r = _ihmr("eval", "--data", data, "--checkpoint", ckpt, "--out", out, *FLAGS)
    assert r.returncode == 0, r.stderr
    return out, r


def test_shard_indices():
    from ihmr.experiments.evaluation import shard_indices

    for n in (1, 5, 6, 7):
        for world in (1, 2, 3):
            parts = [shard_indices(n, r, world) for r in range(world)]
            assert np.array_equal(np.concatenate(parts), np.arange(n))  # contiguous, each sample once
            assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_eval_table(one_process):
    out, r = one_process
    doc = json.loads((out / "table.json").read_text())
    rows = ["Baseline (stage I)", "IHMR-MLP", "IHMR-OPT", "Baseline* (joint head + IK)", "IHMR-MLP*", "IHMR-OPT*"]
    assert list(doc["methods"]) == rows
    assert doc["subsets"] == ["All", "Inter", "Inter-Close"]
    assert doc["info"]["samples"] == N and doc["info"]["gt_meshes"] is True and doc["info"]["processes"] == 1
    for m in rows:
        assert doc["methods"][m]["speed"] > 0
        for s in doc["subsets"]:
            d = doc["methods"][m]["subsets"][s]
            assert d["n"] == doc["info"]["subset_sizes"][s]
            if d["n"] == 0:
                continue
            for k in ("mpjpe", "i_mpjpe", "mpvpe", "i_mpvpe", "ave_p", "max_p"):
                assert math.isfinite(d[k]) and d[k] >= 0, (m, s, k)
    assert doc["methods"][rows[0]]["subsets"]["All"]["n"] == N  # synthetic pairs: all interacting
    md = (out / "table.md").read_text()
    assert "| Method | All MPJPE | All I-MPJPE | All MPVPE | All AVE-P / MAX-P |" in md
    for m in rows:
        assert f"| {m} |" in md and f"| {m} |" in r.stdout


def test_eval_per_sample_invariants(one_process, eval_setup):
    out, _ = one_process
    z = np.load(out / "per_sample.npz")
    assert np.array_equal(z["index"], np.arange(N))
    base = z["none__ave_p"]
    # OPT verifies with exact depths: it never makes a sample's penetration worse.
    assert (z["opt__ave_p"] <= base + 1e-9).all()
    # The MLP refiner verifies with the sphere proxy: the exact measure may differ a little.
    assert z["mlp__ave_p"].mean() <= base.mean() + 0.05
    for r in ("opt", "mlp"):
        untouched = ~np.logical_or.reduce([z[k] for k in z.files if k.startswith(f"{r}__accepted_")])  # the snap too
        assert f"{r}__accepted_snap" in z.files
        for k in ("beta", "phi", "theta", "tau"):
            assert np.allclose(z[f"{r}__{k}"][untouched], z[f"none__{k}"][untouched], atol=1e-6)
        assert np.allclose(z[f"{r}__mpjpe"][untouched], z["none__mpjpe"][untouched], atol=1e-3)
    # The stage-I parameters are the baseline row's.
    assert np.allclose(z["stage1__beta"], z["none__beta"])
    # The starred rows: OPT* never worsens Baseline*'s penetration, and Baseline*'s hands are the
    # joint head's joints (right wrist at the origin) up to what IK cannot fit (twist, bone lengths).
    assert (z["opt_ik__ave_p"] <= z["none_ik__ave_p"] + 1e-9).all()
    import ihmr

    hands = ihmr.TwoHands("open", dtype=torch.float64)
    t = lambda k: torch.as_tensor(z[f"none_ik__{k}"])  # noqa: E731
    j = hands(t("beta"), t("phi"), t("theta"), t("tau")).joints.reshape(N, 42, 3).numpy()
    head = z["stage1__j3d"] - z["stage1__j3d"][:, :1]
    assert np.linalg.norm(j - head, axis=-1).mean() < 0.01
    # Ground-truth meshes come from exact parameters: the baseline's MPVPE is finite and the MPJPE
    # matches an independent computation from the annotations.
    from ihmr.data.interhand import find_split_files, load_interhand
    from ihmr.metrics import mpjpe

    ann = load_interhand(find_split_files(eval_setup[0], "test"), cache_dir=False)
    t = lambda k: torch.as_tensor(z[f"none__{k}"])  # noqa: E731
    joints = hands(t("beta"), t("phi"), t("theta"), t("tau")).joints
    assert np.allclose(mpjpe(joints, ann.joints, ann.valid_two_hand).per_sample, z["none__mpjpe"], atol=1e-6)
    assert np.isfinite(z["none__mpvpe"]).all()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_eval_two_processes_match_one(one_process, eval_setup, tmp_path):
    data, ckpt = eval_setup
    out1, _ = one_process
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "ihmr", "eval", "--data", str(data), "--checkpoint", str(ckpt),
           "--out", str(tmp_path), *FLAGS]
    r = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads((tmp_path / "table.json").read_text())["info"]["processes"] == 2
    a, b = np.load(out1 / "per_sample.npz"), np.load(tmp_path / "per_sample.npz")
    assert set(a.files) == set(b.files)
    for k in a.files:
        if a[k].dtype.kind == "f":
            assert np.allclose(a[k], b[k], atol=1e-3, rtol=1e-4, equal_nan=True), (k, np.nanmax(np.abs(a[k] - b[k])))
        else:
            assert np.array_equal(a[k], b[k]), k


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_eval_bad_checkpoint(eval_setup, tmp_path, kind):
    data, _ = eval_setup
    ck = tmp_path / "stage1.pt"
    if kind == "corrupt":
        ck.write_bytes(b"not a checkpoint")
    r = _ihmr("eval", "--data", data, "--checkpoint", ck, "--out", tmp_path / "o")
    assert r.returncode == 2
    assert r.stderr.startswith("ihmr: error: ") and str(ck) in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_weak_to_perspective():
    """Perspective projection with the recovered wrist position reproduces the weak-perspective 2D
    of the crop up to the depth spread of the hand (weak-perspective approximation)."""
    from ihmr.geometry.camera import weak_to_perspective
    from ihmr.geometry.crop import apply_affine, crop_affine, invert_affine

    rng = np.random.default_rng(0)
    S = 64
    K = np.array([[800.0, 0, 320], [0, 800.0, 240], [0, 0, 1]])
    A = crop_affine(np.array([[200.0, 120.0, 380.0, 330.0]]), S)[0]
    cam = np.array([4.0, 0.05, -0.03])
    X = rng.normal(scale=0.03, size=(42, 3))
    X[:, 2] *= 0.01  # flat in depth: the approximation is exact in the limit
    X -= X[:1]
    uv_n = cam[0] * (X[:, :2] + cam[1:])
    uv_img = apply_affine((((uv_n + 1.0) * S - 1.0) / 2.0)[None], invert_affine(A[None]))[0]
    T = weak_to_perspective(cam, A, S, K)
    P = X + T
    proj = P[:, :2] / P[:, 2:] * np.diag(K)[:2] + K[:2, 2]
    assert T[2] > 0
    assert np.abs(proj - uv_img).max() < 0.05  # pixels


def test_demo_with_the_shipped_network(tmp_path):
    """``ihmr demo --checkpoint default``: the shipped network (it ships with the package) as stage I."""
    assert default_stage1_path().is_file()
    r = _ihmr("demo", EXAMPLE, "--checkpoint", "default", "--out", tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    doc = json.loads((tmp_path / EXAMPLE.stem / "result.json").read_text())
    assert doc["complete"] is True and doc["options"]["checkpoint"] == "default"
    assert any("stage I: network (efficientnet_lite" in n for n in doc["notes"])
    assert [h["side"] for h in doc["hands"]] == ["right", "left"]
    for h in doc["hands"]:
        assert h["source"] == "stage-I network"
        j = np.asarray(h["joints_3d"])
        assert j.shape == (21, 3) and np.isfinite(j).all() and (j[:, 2] > 0).all()
        assert np.asarray(h["joints_2d"]).shape == (21, 2)
    assert len(doc["pairs"]) == 1
    p = doc["pairs"][0]
    assert p["ave_p_mm_after"] <= p["ave_p_mm_before"] + 1e-9
    r = _ihmr("demo", EXAMPLE, "--checkpoint", tmp_path / "missing.pt", "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.startswith("ihmr: error: ") and "Traceback" not in r.stderr
