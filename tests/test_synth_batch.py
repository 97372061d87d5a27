"""``ihmr synth`` as a batch that never dies: a failing sample is one line and the others are
written (exit 1), whole-run errors are exit 2 before any work, Ctrl-C is exit 130 with the counts so
far, and ``--resume`` after an interruption (or a kill: leftover temporaries) gives exactly the files
of an uninterrupted run. Tiny: 3 samples of 64 px, pose chunks of one sample (also for the CLI)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from tqdm import tqdm

from ihmr.cli import synth as cli_synth
from ihmr.cli.main import main
from ihmr.data.synth import SampleRenderer, SynthConfig, annotation_paths, generate, generation, image_relpath

N, SEED, SIZE = 3, 5, 64
CLI = ["--n", str(N), "--seed", str(SEED), "--size", str(SIZE), "--quiet"]


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The files of an uninterrupted run."""
    d = tmp_path_factory.mktemp("ref")
    generate(SynthConfig(out=d, n=N, seed=SEED, size=SIZE, chunk=1, progress=False))
    return _files(d)


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch):
    """The CLI with pose chunks of one sample (a chunk of 16 poses takes seconds to make)."""
    monkeypatch.setattr(cli_synth, "SynthConfig", functools.partial(SynthConfig, chunk=1))


_render = SampleRenderer.render


def _fail_at(monkeypatch, k: int, exc: BaseException) -> None:
    def fake(self, seed, idx, chunk=16, buffers=False):
        if idx == k:
            raise exc
        return _render(self, seed, idx, chunk, buffers)

    monkeypatch.setattr(SampleRenderer, "render", fake)


def _lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("ihmr")]


def test_failing_sample_is_one_line_others_written(tmp_path, monkeypatch, capsys, reference):
    out = tmp_path / "d"
    _fail_at(monkeypatch, 1, RuntimeError("boom\nsecond line"))
    assert main(["synth", "--out", str(out), *CLI]) == 1
    cap = capsys.readouterr()
    assert _lines(cap.err) == ["ihmr synth: sample 1: RuntimeError: boom second line"]
    assert "Traceback" not in cap.err
    summary = json.loads(cap.out)
    assert summary["failed"] == [{"sample": 1, "image": f"images/train/{image_relpath(1)}", "error": "RuntimeError: boom second line"}]
    assert summary["rendered"] == 2 and summary["interrupted"] is False
    for i in range(N):
        assert (out / "images" / "train" / image_relpath(i)).is_file() == (i != 1)
    paths = annotation_paths(out, "train")
    assert [im["id"] for im in json.loads(paths["data"].read_text())["images"]] == [0, 2]
    assert json.loads(paths["manifest"].read_text())["failed"][0]["sample"] == 1

    # --debug: the traceback of the failure (through the log at DEBUG level); only sample 1 is redone.
    assert main(["synth", "--out", str(out), *CLI, "--resume", "--debug"]) == 1
    cap = capsys.readouterr()
    assert "Traceback" in cap.err and "RuntimeError: boom" in cap.err
    assert json.loads(cap.out)["reused"] == 2

    monkeypatch.setattr(SampleRenderer, "render", _render)
    assert main(["synth", "--out", str(out), *CLI, "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["rendered"] == 1 and summary["failed"] == []
    assert _files(out) == reference  # byte for byte an uninterrupted run (no "failed" left anywhere)


def test_ctrl_c_then_resume_is_identical(tmp_path, monkeypatch, capsys, reference):
    out = tmp_path / "d"
    _fail_at(monkeypatch, 1, KeyboardInterrupt())
    assert main(["synth", "--out", str(out), *CLI]) == 130
    cap = capsys.readouterr()
    summary = json.loads(cap.out)
    assert summary["interrupted"] is True and summary["rendered"] == 1 and summary["not_run"] == 2
    assert "Traceback" not in cap.err and "interrupted" in cap.err
    assert not list(out.rglob("*.tmp"))
    assert not annotation_paths(out, "train")["data"].exists()  # nothing assembled from a partial run
    # What a kill -9 leaves: temporaries of atomic writes and an assembly's staging folder.
    parts = annotation_paths(out, "train")["parts"]
    junk = [out / "images" / "train" / Path(image_relpath(2)).parent / ".image00002.jpg.x1.tmp",
            parts / ".0000002.json.x2.tmp", parts / ".assemble.x3" / "images"]
    for p in junk:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"")
    monkeypatch.setattr(SampleRenderer, "render", _render)
    assert main(["synth", "--out", str(out), *CLI, "--resume"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reused"] == 1 and summary["rendered"] == 2
    assert not (parts / ".assemble.x3").exists()
    assert _files(out) == reference


def test_whole_run_errors_before_any_work(tmp_path, monkeypatch, capsys):
    def never(*a, **k):
        raise AssertionError("rendered although the run is invalid")

    monkeypatch.setattr(SampleRenderer, "render", never)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert main(["synth", "--out", str(blocker), *CLI]) == 2
    err = capsys.readouterr().err
    assert _lines(err) == [f"ihmr: error: output path {str(blocker)!r} is not a folder"]
    for workers in ("1", "2"):  # the model is loaded once, in this process, before any worker starts
        out = tmp_path / f"o{workers}"
        assert main(["synth", "--out", str(out), *CLI, "--model", str(tmp_path / "no_mano"), "--workers", workers]) == 2
        err = capsys.readouterr().err
        assert len(_lines(err)) == 1 and err.startswith("ihmr: error: no MANO_RIGHT.pkl") and "Traceback" not in err
        assert not out.exists()


def test_pool_isolates_a_failing_sample(tmp_path, capsys, reference):
    out = tmp_path / "d"
    target = out / "images" / "train" / image_relpath(2)
    target.mkdir(parents=True)  # a folder where sample 2's image goes: its write fails in a worker
    m = generate(SynthConfig(out=out, n=N, seed=SEED, size=SIZE, chunk=1, workers=2, progress=False))
    assert [f["sample"] for f in m["failed"]] == [2] and m["failed"][0]["error"].startswith("IsADirectoryError: ")
    assert m["rendered"] == 2
    err = capsys.readouterr().err
    assert _lines(err) == [f"ihmr synth: sample 2: {m['failed'][0]['error']}"]
    assert not list(out.rglob("*.tmp"))
    target.rmdir()
    m = generate(SynthConfig(out=out, n=N, seed=SEED, size=SIZE, chunk=1, resume=True, progress=False))
    assert m["rendered"] == 1 and m["failed"] == []
    assert _files(out) == reference


def test_pool_ctrl_c_terminates_cleans_and_resumes(tmp_path, monkeypatch, reference):
    class InterruptedBar(tqdm):
        def update(self, n=1):
            raise KeyboardInterrupt  # Ctrl-C in the parent while the workers render

    monkeypatch.setattr(generation, "tqdm", InterruptedBar)
    out = tmp_path / "d"
    m = generate(SynthConfig(out=out, n=N, seed=SEED, size=SIZE, chunk=1, workers=2, progress=False))
    assert m["interrupted"] is True and m["failed"] == []
    assert not list(out.rglob("*.tmp")) and not annotation_paths(out, "train")["data"].exists()
    monkeypatch.setattr(generation, "tqdm", tqdm)
    m = generate(SynthConfig(out=out, n=N, seed=SEED, size=SIZE, chunk=1, resume=True, progress=False))
    assert m["interrupted"] is False and m["reused"] + m["rendered"] == N
    assert _files(out) == reference
