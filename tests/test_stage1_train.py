"""``ihmr train stage1``: overfitting, exact resume, torchrun (gloo) vs one process, input errors.

Tiny on purpose (2 shared CPU cores): 8 rendered 64x64 images made once per session, ResNet-18 with a
small joint head, a few steps per run.
"""

import contextlib
import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ihmr.cli.main import main
from ihmr.stage1.dataset import ResumableShardSampler, build_data
from ihmr.stage1.train import TrainStage1Config, train_stage1
from ihmr.stage1.weights import load_stage1, read_stage1_checkpoint

SMALL = ["--input-size", "64", "--workers", "0", "--heatmap-size", "8", "--depth-bins", "8", "--deconv-channels", "32",
         "--feature-dim", "256", "--no-progress"]
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.fixture(scope="session")
def synth8(tmp_path_factory):
    """8 rendered two-hand images (64 x 64, ``ihmr synth`` format, train split), about 10 s."""
    from ihmr.data.synth import SynthConfig, generate

    out = tmp_path_factory.mktemp("synth8")
    generate(SynthConfig(out=out, n=8, seed=0, size=64, progress=False))
    return out


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: on 2 cores shared with other jobs, two spinning OpenMP threads stall for
    seconds per step whenever a core is taken; one thread is steady."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@contextlib.contextmanager
def _deterministic_kernels():
    """Deterministic kernels (with the one thread above): two runs compared bit for bit may not
    depend on how a kernel splits its float sums."""
    det, warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn)


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _losses(run):
    return np.array([float(r["loss"]) for r in _rows(run / "train_log.csv")])


def test_overfits_eight_images(synth8, tmp_path, capsys):
    run = tmp_path / "run"
    rc = main(["train", "stage1", "--data", str(synth8), "--out", str(run), "--batch", "8", "--epochs", "30", "--lr", "1e-3",
               "--val-fraction", "0", "--no-augment", *SMALL])
    assert rc == 0
    loss = _losses(run)  # all 8 images in every step: a smooth curve
    assert len(loss) == 30 and np.isfinite(loss).all()
    first, last = loss[:5].mean(), loss[-5:].mean()
    assert last < 0.7 * first and loss[-1] < 0.6 * loss[0], (first, last, loss.round(2).tolist())
    rows = _rows(run / "train_log.csv")
    assert [int(r["step"]) for r in rows] == list(range(1, 31))
    assert float(rows[0]["lr"]) == pytest.approx(1e-3) and float(rows[-1]["lr"]) < 1e-5  # cosine decay to ~0
    assert {"pose", "shape", "tau", "j3d", "j2d", "head_j2d", "head_j3d", "hand_type"} <= {k for k, v in rows[0].items() if v}
    assert (run / "curve.png").stat().st_size > 1000 and (run / "config.json").is_file()
    assert list((run / "tb").glob("events.out.tfevents.*")), "TensorBoard events (tensorboard is in the lock)"
    net, arch, info = load_stage1(run / "last.pt")
    assert arch.backbone == "resnet18" and arch.input_size == 64 and arch.heatmap_size == 8
    tr = read_stage1_checkpoint(run / "last.pt")["train"]
    assert tr["epoch"] == 30 and tr["step"] == 30 and tr["batch_in_epoch"] == 0
    shown = capsys.readouterr()
    assert "TensorBoard" in shown.err or (run / "tb").is_dir()
    assert shown.out.startswith("ihmr train stage1: 8 training / 0 validation images (labels: ihmr_params.json), resnet18 at 64 px, "
                                "1 process(es) on cpu, 1 steps per epoch\n"), shown.out[:300]
    assert '"steps": 30' in shown.out  # the summary (JSON)


def test_efficientnet_from_imagenet_with_collision_loss(synth8, tmp_path):
    """--backbone efficientnet_lite0 starts from the packaged ImageNet weights (recorded in the
    checkpoint) and --collision-weight adds the logged collision term."""
    from ihmr.stage1.backbones import imagenet_weights_path

    run = tmp_path / "run"
    rc = main(["train", "stage1", "--data", str(synth8), "--out", str(run), "--batch", "4", "--epochs", "1", "--max-steps", "2",
               "--backbone", "efficientnet_lite0", "--collision-weight", "10", "--val-fraction", "0", *SMALL])
    assert rc == 0
    net, arch, info = load_stage1(run / "last.pt")
    assert arch.backbone == "efficientnet_lite0" and info["init"] == "imagenet"
    start = torch.load(imagenet_weights_path("efficientnet_lite0"), weights_only=True)["_conv_stem.weight"]
    w = net.encoder.net.conv_stem.weight.detach()
    assert torch.corrcoef(torch.stack([w.flatten(), start.flatten()]))[0, 1] > 0.99  # two small steps from ImageNet
    rows = _rows(run / "train_log.csv")
    assert len(rows) == 2 and all(r["collision"] != "" and float(r["collision"]) >= 0 for r in rows)
    scratch = tmp_path / "scratch"
    assert main(["train", "stage1", "--data", str(synth8), "--out", str(scratch), "--batch", "4", "--epochs", "1", "--max-steps", "1",
                 "--backbone", "efficientnet_lite0", "--pretrained", "none", "--val-fraction", "0", *SMALL]) == 0
    assert load_stage1(scratch / "last.pt")[2]["init"] == "scratch"


def test_resume_continues_exactly(synth8, tmp_path, capsys):
    """Stopped inside epoch 2 (step 4 of 6) and resumed == one uninterrupted run, bit for bit."""
    common = ["train", "stage1", "--data", str(synth8), "--batch", "2", "--epochs", "2", "--val-fraction", "0.25", *SMALL]
    full, part = tmp_path / "full", tmp_path / "part"
    with _deterministic_kernels():
        assert main([*common, "--out", str(full)]) == 0
        assert main([*common, "--out", str(part), "--max-steps", "4"]) == 0
        mid = read_stage1_checkpoint(part / "last.pt")["train"]
        assert (mid["epoch"], mid["batch_in_epoch"], mid["step"]) == (1, 1, 4)  # 6 training images / 2 = 3 steps per epoch
        capsys.readouterr()
        assert main([*common, "--out", str(part), "--resume"]) == 0
    assert "epoch 2: val MPJPE params " in capsys.readouterr().out  # epoch 1 was validated before the stop
    a, b = read_stage1_checkpoint(full / "last.pt"), read_stage1_checkpoint(part / "last.pt")
    assert a["train"]["step"] == b["train"]["step"] == 6
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    sa, sb = a["train"]["optimizer"]["state"], b["train"]["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for k in sa:
        for name in ("exp_avg", "exp_avg_sq", "step"):
            assert torch.equal(sa[k][name], sb[k][name]), (k, name)
    assert a["train"]["scheduler"]["last_epoch"] == b["train"]["scheduler"]["last_epoch"] == 6
    np.testing.assert_array_equal(_losses(full), _losses(part))
    va, vb = _rows(full / "val_log.csv"), _rows(part / "val_log.csv")
    assert len(va) == len(vb) == 2
    for ra, rb in zip(va, vb):
        for k in ("epoch", "step", "n", "mpjpe_params", "i_mpjpe_params", "mpjpe_head", "i_mpjpe_head"):
            assert ra[k] == rb[k], k
    assert float(va[-1]["mpjpe_params"]) > 0 and (full / "best.pt").is_file()
    capsys.readouterr()
    assert main([*common, "--out", str(part), "--resume"]) == 0  # nothing left to do: a notice, the run unchanged
    assert "ihmr: --resume: last.pt already finished 2 of 2 epochs" in capsys.readouterr().err
    np.testing.assert_array_equal(_losses(full), _losses(part))


def test_torchrun_two_processes_follow_one(synth8, tmp_path):
    """2 gloo processes with the same global batch give (nearly) the same per-step losses as one
    (BatchNorm statistics are per process on CPU, hence not bit-identical)."""
    common = ["--data", str(synth8), "--batch", "4", "--epochs", "2", "--val-fraction", "0", *SMALL]
    one, two = tmp_path / "one", tmp_path / "two"
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "ihmr", "train", "stage1", *common, "--out", str(two)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = p.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)  # torchrun and its two workers
        p.communicate()
        raise
    assert p.returncode == 0, stderr[-3000:]
    assert '"world": 2' in stdout
    assert main(["train", "stage1", *common, "--out", str(one)]) == 0
    l1, l2 = _losses(one), _losses(two)
    assert len(l1) == len(l2) == 4
    np.testing.assert_allclose(l2, l1, rtol=0.05)
    assert [r["step"] for r in _rows(two / "train_log.csv")] == ["1", "2", "3", "4"]  # rank 0 alone writes


@pytest.mark.parametrize("extra, message", [
    (["--data", "{missing}"], "does not exist"),
    (["--data", "{data}", "--epochs", "0"], "--epochs must be an integer >= 1"),
    (["--data", "{data}", "--resume"], "last.pt not found"),
    (["--data", "{data}", "--batch", "64", "--val-fraction", "0"], "lower --batch"),
    (["--data", "{data}", "--split", "test"], "expected one *test*_data.json"),
    (["--data", "{data}", "--collision-weight", "-1"], "--collision-weight must be a number >= 0"),
    (["--data", "{data}", "--backbone", "resnet18", "--pretrained", "imagenet"], "ImageNet weights ship only for"),
])
def test_bad_input_is_a_clean_error(synth8, tmp_path, capsys, extra, message):
    extra = [x.format(missing=tmp_path / "nope", data=synth8) for x in extra]
    rc = main(["train", "stage1", "--out", str(tmp_path / "run"), *extra, *SMALL])
    err = capsys.readouterr().err
    assert rc == 2 and "ihmr: error:" in err and message in err and "Traceback" not in err, err


def test_cli_exit_code_without_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "ihmr", "train", "stage1", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")],
                       env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("ihmr: error:") and "Traceback" not in r.stderr, r.stderr


def test_parameter_labels_pose_the_augmented_joints(synth8):
    """ihmr_params.json labels, rotated into the camera frame and augmented (flip, rotation), pose the
    hand model exactly onto the sample's 3D joints (so parameter and joint losses agree)."""
    import ihmr

    hands = ihmr.TwoHands("open")
    cfg = TrainStage1Config(data=str(synth8), out="unused", input_size=64, val_fraction=0.25)
    train, val, desc = build_data(cfg, hands, 0)
    assert desc == {"train": 6, "val": 2, "labels": "ihmr_params.json"}
    assert not set(train.indices.tolist()) & set(val.indices.tolist())
    images = []
    for epoch in range(3):
        train.epoch = epoch
        b = torch.utils.data.default_collate([train[i] for i in range(len(train))])
        out = hands(b["beta"], b["phi"], b["theta"], b["tau"])
        torch.testing.assert_close(out.joints, b["j3d"] - b["j3d"][:, :1, :1], atol=1e-4, rtol=0)
        assert b["image"].shape == (6, 3, 64, 64) and b["j2d"].abs().max() < 1.5
        images.append(b["image"])
    assert not torch.equal(images[0], images[1])  # a new draw every epoch ...
    train.epoch = 0
    assert torch.equal(train[3]["image"], images[0][3])  # ... reproducible for (seed, epoch, index)


def test_minutes_budget_stops_cleanly_with_a_checkpoint(synth8, tmp_path):
    cfg = TrainStage1Config(data=str(synth8), out=str(tmp_path / "run"), input_size=64, batch=2, epochs=5, workers=0,
                            heatmap_size=8, depth_bins=8, deconv_channels=32, feature_dim=256, val_fraction=0,
                            minutes=0.0005, progress=False)  # 30 ms: over after the first step
    s = train_stage1(cfg)
    assert s["stopped"] == "minutes" and 1 <= s["steps"] < 20
    tr = read_stage1_checkpoint(tmp_path / "run" / "last.pt")["train"]
    assert tr["step"] == s["steps"] and tr["epoch"] * 4 + tr["batch_in_epoch"] == s["steps"]


def test_sampler_shards_are_the_one_process_batches():
    """Rank r of N takes every N-th index of each global batch; the shards of N processes make up the
    one-process batches, and a resumed epoch starts after the skipped batches."""
    one = ResumableShardSampler(10, 0, 1, 4, seed=3)
    one.epoch = 2
    shards = []
    for r in range(2):
        s = ResumableShardSampler(10, r, 2, 2, seed=3)
        s.epoch = 2
        shards.append(list(s))
    whole = list(one)
    assert one.batches_per_epoch() == 2 and len(whole) == len(one) == 8
    for j in range(2):
        assert sorted(shards[0][2 * j:2 * j + 2] + shards[1][2 * j:2 * j + 2]) == sorted(whole[4 * j:4 * j + 4])
    one.skip_batches = 1
    assert list(one) == whole[4:] and len(one) == 4
