"""``ihmr eval`` as a batch that never dies: a sample that fails (a truncated or missing image, a broken
annotation, any exception while it is evaluated) is one line and the table is over the others (exit 1); whole-run
errors are exit 2 before any sample; Ctrl-C is exit 130 with the table so far and nothing written;
under torchrun the failures of every rank reach rank 0's report. The 6 synthetic images of
``eval_setup``, stage I only (``--refine none``) where the refiners do not matter."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from ihmr.cli.main import main
from ihmr.data.synth import image_relpath
from ihmr.experiments import evaluation

SRC = Path(__file__).resolve().parents[1] / "src"
FLAGS = ["--batch", "3", "--refine-batch", "3", "--threads", "1", "--no-progress"]


def _image(data: Path, i: int) -> Path:
    return data / "images" / "test" / image_relpath(i)


def _copy(data: Path, tmp_path: Path) -> Path:
    d = tmp_path / "data"
    shutil.copytree(data, d)
    return d


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("ihmr")]


def _raise_at(monkeypatch, position: int, exc: BaseException) -> None:
    """Evaluating a set of samples that holds ``position`` raises ``exc``."""
    real = evaluation._eval_samples

    def fake(ctx, positions, crops):
        if position in list(positions):
            raise exc
        return real(ctx, positions, crops)

    monkeypatch.setattr(evaluation, "_eval_samples", fake)


def test_failing_samples_are_one_line_each(eval_setup, tmp_path, monkeypatch, capsys):
    data, ckpt = eval_setup
    d = _copy(data, tmp_path)
    _image(d, 2).write_bytes(_image(d, 2).read_bytes()[:200])  # truncated JPEG
    _image(d, 4).unlink()  # missing: skipped by the loader
    ann = d / "annotations" / "test" / "InterHand2.6M_test_data.json"
    doc = json.loads(ann.read_text())
    doc["images"][5]["width"] = "BIG"
    ann.write_text(json.dumps(doc).replace('"BIG"', "1e400"))  # a broken annotation (inf pixels wide): skipped
    _raise_at(monkeypatch, 0, RuntimeError("boom"))  # sample 0 raises while evaluated (its chunk is redone one by one)
    out = tmp_path / "out"
    assert main(["eval", "--data", str(d), "--checkpoint", str(ckpt), "--out", str(out), "--refine", "none", *FLAGS]) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    lines = _lines(cap.err)
    assert len(lines) == 4, lines
    assert lines[0] == f"ihmr eval: {image_relpath(5)}: skipped: malformed record (OverflowError: cannot convert float infinity to integer)"
    assert lines[1] == f"ihmr eval: {image_relpath(4)}: skipped: image file not found"
    assert lines[2] == f"ihmr eval: {image_relpath(2)}: not a readable image (OSError: Truncated File Read)"
    assert lines[3] == f"ihmr eval: {image_relpath(0)}: RuntimeError: boom"
    doc = json.loads((out / "table.json").read_text())
    assert doc["info"]["samples"] == 2 and doc["methods"]["Baseline (stage I)"]["subsets"]["All"]["n"] == 2
    assert sorted(f["image_id"] for f in doc["info"]["failed"]) == [0, 2, 4, 5]
    z = np.load(out / "per_sample.npz")
    assert z["image_id"].tolist() == [1, 3] and np.isfinite(z["none__mpjpe"]).all()

    # --debug: the tracebacks of the failures (this module's log at DEBUG level).
    assert main(["eval", "--data", str(d), "--checkpoint", str(ckpt), "--out", str(out), "--refine", "none", *FLAGS, "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "RuntimeError: boom" in err


def test_whole_run_errors_before_any_sample(eval_setup, tmp_path, monkeypatch, capsys):
    data, ckpt = eval_setup
    _raise_at(monkeypatch, 0, AssertionError("evaluated although the run is invalid"))
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    cases = [
        (["--data", str(data), "--out", str(blocker)], f"output path {str(blocker)!r} is not a folder"),
        (["--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")], "does not exist"),
        (["--data", str(data), "--split", "val", "--out", str(tmp_path / "o")], "expected one *val*_data.json"),
        (["--data", str(data), "--refine", "mlp", "--refiner", str(tmp_path / "none.pt"), "--out", str(tmp_path / "o")], "none.pt"),
        (["--data", str(data), "--batch", "0", "--out", str(tmp_path / "o")], "batch sizes must be >= 1"),
    ]
    for args, msg in cases:
        assert main(["eval", "--checkpoint", str(ckpt), *args, "--no-progress"]) == 2, args
        err = capsys.readouterr().err
        assert len(_lines(err)) == 1 and err.startswith("ihmr: error: ") and msg in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "o").exists()


def test_ctrl_c_prints_the_table_so_far(eval_setup, tmp_path, monkeypatch, capsys):
    data, ckpt = eval_setup
    out = tmp_path / "out"
    out.mkdir()
    (out / ".table.json.abc.tmp").write_bytes(b"")  # left by a killed run
    _raise_at(monkeypatch, 3, KeyboardInterrupt())  # the second chunk (samples 3-5)
    assert main(["eval", "--data", str(data), "--checkpoint", str(ckpt), "--out", str(out), "--refine", "none", *FLAGS]) == 130
    cap = capsys.readouterr()
    assert "| Baseline (stage I) |" in cap.out
    assert "3 of 6 samples evaluated, 0 failed" in cap.err and "interrupted" in cap.err and "Traceback" not in cap.err
    assert list(out.iterdir()) == []  # nothing written, the temporary removed


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_failures_of_every_rank_reach_rank_0(eval_setup, tmp_path):
    data, ckpt = eval_setup
    d = _copy(data, tmp_path)
    for i in (1, 4):  # rank 0 evaluates samples 0-2, rank 1 samples 3-5
        _image(d, i).write_bytes(b"not a jpeg")
    out = tmp_path / "out"
    env = dict(__import__("os").environ, PYTHONPATH=str(SRC), PYOPENGL_PLATFORM="egl")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-addr", "127.0.0.1",
           "--master-port", str(_free_port()), "-m", "ihmr", "eval", "--data", str(d), "--checkpoint", str(ckpt),
           "--out", str(out), "--refine", "none", *FLAGS]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode != 0  # rank 0 exits 1
    info = json.loads((out / "table.json").read_text())["info"]
    assert info["processes"] == 2 and info["samples"] == 4
    assert sorted(f["image_id"] for f in info["failed"]) == [1, 4]
    for i in (1, 4):
        assert f"ihmr eval: {image_relpath(i)}: " in r.stderr
    assert "4 of 6 samples evaluated, 2 failed" in r.stderr
