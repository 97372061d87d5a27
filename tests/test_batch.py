"""A batch never dies (``ihmr demo`` and :func:`ihmr.pipeline.batch.run_batch`): one line per failed
item, nothing lost or mixed between inputs, resumable after Ctrl-C or kill -9 at any point.

Most tests use :class:`batch_fixture.FakeReconstructor` (no MediaPipe) so that they test the batch,
its files and the renderer; the bad-model and torchrun tests use the real pipeline."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ihmr.cli.demo as demo_cli
from batch_fixture import FakeReconstructor, write_images
from ihmr.cli.main import main
from ihmr.errors import InputError
from ihmr.geometry.camera import intrinsics
from ihmr.pipeline.batch import BatchOptions, collect_images, folder_names, run_batch
from ihmr.viz.render import MeshSpec, render_meshes

TESTS = Path(__file__).resolve().parent
EXAMPLES = TESTS.parent / "src" / "ihmr" / "examples"


def _fake(monkeypatch, **kw) -> FakeReconstructor:
    rec = FakeReconstructor(**kw)
    monkeypatch.setattr(demo_cli, "Reconstructor", lambda *a, **k: rec)
    return rec


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` -> its bytes (result.json without its timings)."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "result.json":
                doc = json.loads(data)
                doc.pop("timings_s")
                data = json.dumps(doc, sort_keys=True).encode()
            out[str(p.relative_to(root))] = data
    return out


def test_one_renderer_for_any_number_of_sizes():
    """12 image sizes in one process (the old cache of 4 renderers died at the 5th: eglTerminate).
    A triangle of legs 0.1 f px covers 0.005 f^2 px; a size seen before renders the same pixels."""
    v = np.array([[0.0, 0.0, 0.5], [0.05, 0.0, 0.5], [0.0, 0.05, 0.5]])
    f = np.array([[0, 1, 2], [0, 2, 1]])
    sizes = [(640, 480), (480, 640), (1024, 768), (333, 377), (1920, 1080), (64, 64), (800, 800), (1200, 1600),
             (97, 101), (2048, 1536), (500, 281), (360, 360)]
    first = None
    for W, H in sizes + [(640, 480)]:
        fpx = 1.2 * max(W, H)
        rgb, depth, mask = render_meshes([MeshSpec(v, f)], intrinsics(W, H, fpx), (W, H))
        assert rgb.shape == (H, W, 3) and mask.shape == (H, W)
        if 0.12 * max(W, H) < min(W, H) / 2:  # the triangle is inside the image
            area, edge = 0.005 * fpx**2, 0.1 * fpx * (2 + 2**0.5)  # px^2, px (pixels on the edge may go either way)
            assert abs(mask.sum() - area) < 0.01 * area + 0.5 * edge, (W, H, mask.sum())
        assert np.allclose(depth[mask], 0.5, atol=1e-3)
        if (W, H) == (640, 480):
            if first is None:
                first = rgb
            else:
                assert np.array_equal(rgb, first)


def test_batch_at_ten_sizes_writes_every_file(tmp_path, monkeypatch):
    sizes = [(640, 480), (480, 640), (1024, 768), (333, 377), (1280, 720), (96, 96), (800, 800), (600, 1000),
             (97, 101), (500, 281)]
    write_images(tmp_path / "in", sizes)
    _fake(monkeypatch)
    assert main(["demo", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    for k, (W, H) in enumerate(sizes):
        folder = tmp_path / "out" / f"photo{k}"
        assert Image.open(folder / "overlay.png").size == (W, H)
        doc = json.loads((folder / "result.json").read_text())
        assert doc["complete"] and doc["image_size"] == [W, H]


def test_same_stems_get_their_own_folders_and_resume_checks_the_input(tmp_path, monkeypatch, capsys):
    a, b = write_images(tmp_path / "a", [(200, 160)], seed=1)[0], write_images(tmp_path / "b", [(200, 160)], seed=2)[0]
    out = tmp_path / "out"
    names = folder_names([a, b])
    assert names[0] != names[1] and all(n.startswith("photo0-") for n in names)
    assert folder_names([a]) == ["photo0"]
    rec = _fake(monkeypatch)
    assert main(["demo", str(a), str(b), "--out", str(out), "--no-progress"]) == 0
    for p, n in zip((a, b), names):
        doc = json.loads((out / n / "result.json").read_text())
        assert doc["input"]["path"] == str(p.resolve()) and doc["folder"] == n
        overlay = np.asarray(Image.open(out / n / "overlay.png"))
        assert np.array_equal(overlay[0, 0], np.asarray(Image.open(p))[0, 0])  # its own background
    assert rec.calls == 2
    # --resume: skipped only for the same file content and the same options.
    assert main(["demo", str(a), str(b), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert rec.calls == 2 and capsys.readouterr().out.count("skipped (complete)") == 2
    write_images(tmp_path / "b", [(200, 160)], seed=3)  # b's content changes
    assert main(["demo", str(a), str(b), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert rec.calls == 3
    assert main(["demo", str(a), str(b), "--out", str(out), "--resume", "--focal", "300", "--no-progress"]) == 0
    assert rec.calls == 5  # other options: both redone
    # b alone in a later run writes out/photo0: a folder of a is not taken for b's.
    assert main(["demo", str(b), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert rec.calls == 6 and json.loads((out / "photo0" / "result.json").read_text())["input"]["path"] == str(b.resolve())


def test_redo_removes_stale_files_and_every_hand_is_in_the_meshes(tmp_path, monkeypatch):
    import trimesh

    (img,) = write_images(tmp_path / "in", [(320, 240)])
    out = tmp_path / "out"
    _fake(monkeypatch, extra_hands=2)
    assert main(["demo", str(img), "--out", str(out), "--no-progress"]) == 0
    folder = out / "photo0"
    doc = json.loads((folder / "result.json").read_text())
    assert [h["mesh"] for h in doc["hands"]] == ["right.obj", "left.obj", "right_2.obj", "right_3.obj"]
    assert len(trimesh.load(folder / "hands.glb").geometry) == 4
    assert np.allclose(trimesh.load(folder / "right_3.obj", process=False).vertices, doc["hands"][3]["joints_3d"][0], atol=0.3)
    _fake(monkeypatch)
    assert main(["demo", str(img), "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["hands.glb", "hands_before.glb", "left.obj", "overlay.png", "result.json", "right.obj", "views.png"]
    assert [p.name for p in out.iterdir()] == ["photo0"]  # no staging or old folder left


def test_a_failing_item_is_one_line_and_the_others_go_on(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "in", [(200, 150)] * 4)
    (tmp_path / "in" / "photo1.json").write_text("[1, 2]")  # a sidecar that is a list
    _fake(monkeypatch, fail={1: RuntimeError("boom\nsecond line"), 2: OSError(28, "No space left on device")})
    (tmp_path / "in" / "photo4.png").write_text("not an image")
    (tmp_path / "in" / "photo5.png").write_bytes(b"")
    rc = main(["demo", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-progress"])
    cap = capsys.readouterr()
    assert rc == 1 and "Traceback" not in cap.err
    lines = [ln for ln in cap.err.splitlines() if ln.startswith("ihmr demo: ")]
    assert len(lines) == 5, cap.err
    assert any("photo1.png: sidecar photo1.json must hold a JSON object" in ln for ln in lines)
    assert any("photo2.png: RuntimeError: boom second line" in ln for ln in lines)  # the fake's 2nd call
    assert any("photo3.png: OSError: [Errno 28] No space left on device" in ln for ln in lines)
    assert any("photo4.png" in ln and "not a readable image" in ln for ln in lines)
    assert any("photo5.png" in ln and "not a readable image" in ln for ln in lines)
    bad = tmp_path / "in" / "photo4.png"
    assert f"ihmr demo: {bad}: not a readable image" in cap.err  # the path is named once, not "path: path: ..."
    assert (tmp_path / "out" / "photo0" / "result.json").is_file()
    assert "1 done, 0 skipped, 5 failed" in cap.out
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("side, message", [
    ({"focal": "x"}, "\"focal\" must be a finite number > 0, got 'x'"),
    ({"focal": -5}, "must be a finite number > 0"),
    ({"boxes": [[0, 0, 10]]}, "\"boxes\" must be a list of [x, y, w, h]"),
    ({"boxes": [[150, 10, 100, 50]]}, "sidecar box 0 [150.0, 10.0, 100.0, 50.0] is not inside the 200x150 image"),
])
def test_sidecar_schema(tmp_path, monkeypatch, capsys, side, message):
    write_images(tmp_path, [(200, 150)])
    (tmp_path / "photo0.json").write_text(json.dumps(side))
    _fake(monkeypatch)
    assert main(["demo", str(tmp_path / "photo0.png"), "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    assert message in capsys.readouterr().err


def test_bad_options_stop_before_any_work(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "in", [(200, 150)])
    rec = _fake(monkeypatch)
    base = ["demo", str(tmp_path / "in"), "--no-progress"]
    for focal in ("nan", "inf", "-100", "0", "x"):
        with pytest.raises(SystemExit) as e:
            main(base + ["--out", str(tmp_path / "o"), "--focal", focal])
        assert e.value.code == 2 and "must be a finite number of pixels > 0" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main(base + ["--out", str(tmp_path / "file")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0] == f"ihmr: error: output path {str(tmp_path / 'file')!r} is not a folder"
    assert main(base + ["--out", str(tmp_path / "o"), "--box", "1,2,nan,4"]) == 2
    assert main(["demo", str(tmp_path / "nothing*.png"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no file matches" in err and "no images to process" in err
    assert rec.calls == 0 and not (tmp_path / "o").exists()
    # --box outside one image: that image fails, in one line.
    assert main(base + ["--out", str(tmp_path / "o"), "--box", "150,100,100,100"]) == 1
    assert "--box [150.0, 100.0, 100.0, 100.0] is not inside the 200x150 image" in capsys.readouterr().err


def test_bad_model_is_reported_once_with_exit_2(tmp_path, capsys):
    write_images(tmp_path / "in", [(200, 150)] * 3)
    assert main(["demo", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--model", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ihmr: error: ")
    assert not list((tmp_path / "out").iterdir())


def test_inputs_that_cannot_be_used(tmp_path, monkeypatch, capsys):
    write_images(tmp_path, [(200, 150)])
    (tmp_path / "x.jpg").mkdir()  # a folder named like an image
    (tmp_path / "loop1.jpg").symlink_to(tmp_path / "loop2.jpg")
    (tmp_path / "loop2.jpg").symlink_to(tmp_path / "loop1.jpg")
    images, problems = collect_images([str(tmp_path)])
    assert [p.name for p in images] == ["photo0.png"]
    assert any("x.jpg: a folder, not an image" in p for p in problems)
    assert any("loop1.jpg" in p for p in problems) and any("loop2.jpg" in p for p in problems)
    _fake(monkeypatch)
    assert main(["demo", str(tmp_path), str(tmp_path / "loop1.jpg"), str(tmp_path / "gone.jpg"),
                 "--out", str(tmp_path / "out"), "--no-progress"]) == 1
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err and "gone.jpg: no such file" in cap.err
    assert (tmp_path / "out" / "photo0" / "result.json").is_file()


def test_unexpected_errors_and_ctrl_c_in_main(monkeypatch, capsys):
    def boom(args):
        raise ZeroDivisionError("division by zero")

    def stop(args):
        raise KeyboardInterrupt

    import ihmr.cli.main as cli_main

    monkeypatch.setattr(cli_main, "_cmd_info", boom)
    assert main(["info"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == "ihmr: error: ZeroDivisionError: division by zero (run with --debug for the traceback)"
    with pytest.raises(ZeroDivisionError):
        main(["info", "--debug"])
    monkeypatch.setattr(cli_main, "_cmd_info", stop)
    assert main(["info"]) == 130 and capsys.readouterr().err.strip() == "ihmr: interrupted"


def test_ctrl_c_prints_the_summary_then_resume_gives_the_uninterrupted_outputs(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "in", [(200, 150), (160, 200), (120, 90)])
    _fake(monkeypatch)
    assert main(["demo", str(tmp_path / "in"), "--out", str(tmp_path / "clean"), "--no-progress"]) == 0
    capsys.readouterr()
    _fake(monkeypatch, fail={1: KeyboardInterrupt()})
    assert main(["demo", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-progress"]) == 130
    out = capsys.readouterr().out
    assert "1 done, 0 skipped, 0 failed, 2 not run (interrupted)" in out and "| photo2.png | not run (interrupted)" in out
    assert not [p for p in (tmp_path / "out").rglob(".*")]
    _fake(monkeypatch)
    assert main(["demo", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--resume", "--no-progress"]) == 0
    assert "1 skipped" in capsys.readouterr().out
    assert _tree(tmp_path / "out") == _tree(tmp_path / "clean")


_KILL = """
import os, sys
sys.path.insert(0, {tests!r})
import ihmr.cli.demo as demo_cli
import ihmr.io.files as files
from batch_fixture import FakeReconstructor
demo_cli.Reconstructor = lambda *a, **k: FakeReconstructor()
n = {{"replace": 0}}
real = os.replace
def dying_replace(a, b):
    n["replace"] += 1
    if n["replace"] == {at}:
        os._exit(9)  # like kill -9: no cleanup runs
    real(a, b)
files.os.replace = dying_replace
from ihmr.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("at", [2, 7, 9, 14])
def test_kill_9_at_any_write_then_resume_gives_the_uninterrupted_outputs(tmp_path, monkeypatch, at):
    """Killed at the ``at``-th os.replace: 6 files into an image's staging folder, then the folder
    into place (7, 14), for two images."""
    write_images(tmp_path / "in", [(200, 150), (150, 120)])
    args = ["demo", str(tmp_path / "in"), "--no-progress"]
    _fake(monkeypatch)
    assert main(args + ["--out", str(tmp_path / "clean")]) == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS.parent / "src"), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", _KILL.format(tests=str(TESTS), at=at), *args, "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 9, r.stderr[-2000:]
    assert main(args + ["--out", str(tmp_path / "out"), "--resume"]) == 0
    assert _tree(tmp_path / "out") == _tree(tmp_path / "clean")
    assert not [p for p in (tmp_path / "out").rglob(".*")]


def test_file_modes_follow_the_umask(tmp_path, monkeypatch):
    write_images(tmp_path / "in", [(120, 90)])
    _fake(monkeypatch)
    old = os.umask(0o027)
    try:
        assert main(["demo", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    finally:
        os.umask(old)
    folder = tmp_path / "out" / "photo0"
    assert folder.stat().st_mode & 0o777 == 0o750
    assert {p.stat().st_mode & 0o777 for p in folder.iterdir()} == {0o640}


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("mount"), reason="mounting a small tmpfs needs root")
def test_disk_full_fails_the_item_in_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    write_images(tmp_path / "in", [(400, 300)])
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        _fake(monkeypatch)
        assert main(["demo", str(tmp_path / "in"), "--out", str(mnt), "--no-progress"]) == 1
        err = capsys.readouterr().err
        assert "photo0.png: OSError: [Errno 28] No space left on device" in err and "Traceback" not in err
        assert list(mnt.iterdir()) == []  # the staging folder and its temporaries are gone
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_run_batch_rows_follow_the_inputs(tmp_path):
    imgs = write_images(tmp_path / "in", [(100, 80), (90, 70)])
    rep = run_batch(FakeReconstructor(fail={0: InputError("bad")}), imgs, tmp_path, BatchOptions(), progress=False,
                    echo=lambda m: None)
    assert [r.status for r in rep.items] == ["FAILED: bad", "ok"] and rep.failed == 1 and not rep.interrupted


def test_torchrun_two_processes_write_what_one_writes(tmp_path):
    """``torchrun --nproc-per-node 2 -m ihmr demo``: disjoint shares, one summary, the same files."""
    src = tmp_path / "in"
    src.mkdir()
    for name in ("image44669", "image69148"):
        for suffix in (".jpg", ".json"):
            for copy in ("", "_b"):
                shutil.copy(EXAMPLES / f"{name}{suffix}", src / f"{name}{copy}{suffix}")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["-m", "ihmr", "demo", str(src), "--no-progress"]
    one = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], capture_output=True, text=True,
                         env=env, timeout=600)
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29531",
                          *common, "--out", str(tmp_path / "two")], capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-2000:]
    assert two.stdout.count("| image | status") == 1 and "4 done, 0 skipped, 0 failed" in two.stdout
    assert _tree(tmp_path / "one") == _tree(tmp_path / "two")


def test_a_users_file_or_folder_is_never_replaced_and_brackets_are_literal(tmp_path, monkeypatch, capsys):
    (tmp_path / "hands").mkdir()
    write_images(tmp_path / "hands", [(120, 90)])
    (tmp_path / "hands" / "photo0.png").rename(tmp_path / "hands" / "hands.png")
    (tmp_path / "hands" / "notes.txt").write_text("precious")
    write_images(tmp_path / "x", [(120, 90)])
    (tmp_path / "photo0").write_text("user file")
    shutil.copy(tmp_path / "x" / "photo0.png", tmp_path / "shot[1].png")
    _fake(monkeypatch)
    rc = main(["demo", str(tmp_path / "hands" / "hands.png"), str(tmp_path / "x" / "photo0.png"), str(tmp_path / "shot[1].png"),
               "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("is not an ihmr result folder") == 2, err
    assert (tmp_path / "hands" / "notes.txt").read_text() == "precious" and (tmp_path / "hands" / "hands.png").is_file()
    assert (tmp_path / "photo0").read_text() == "user file"
    assert (tmp_path / "shot[1]" / "result.json").is_file()  # a file named like a pattern is that file


def test_remove_leftovers_takes_only_its_own(tmp_path):
    from ihmr.io.files import remove_leftovers

    for name in (".a.partial-abcd1234", ".a.old-wxyz5678", ".a.old-x.partial-abcd1234", ".ab.partial-abcd1234"):
        (tmp_path / name).mkdir()
    (tmp_path / "a" / "sub").mkdir(parents=True)
    for f in ("a/.overlay.png.x1.tmp", "a/sub/.deep.png.x2.tmp", "a/keep.tmp"):
        (tmp_path / f).write_text("")
    remove_leftovers(tmp_path / "a")
    left = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert left == [".a.old-x.partial-abcd1234", ".ab.partial-abcd1234", "a", "a/keep.tmp", "a/sub", "a/sub/.deep.png.x2.tmp"]
    remove_leftovers(tmp_path / "a", recursive=True)
    assert not (tmp_path / "a" / "sub" / ".deep.png.x2.tmp").exists() and (tmp_path / "a" / "keep.tmp").exists()
