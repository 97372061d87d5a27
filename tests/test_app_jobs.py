"""The work behind ``ihmr serve`` without a browser: upload checks, safe names, the job workspace."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ihmr.app.jobs import Limits, Workspace, check_upload, safe_name
from ihmr.errors import InputError
from ihmr.pipeline.batch import BatchOptions, bundled_examples

EXAMPLE = next(p for p in bundled_examples() if p.stem == "image69148")


# --- no browser ------------------------------------------------------------------------------------

def test_safe_name_stays_inside_the_folder():
    assert safe_name("../../etc/passwd") == "passwd"
    assert safe_name("C:\\Users\\x\\photo 1.jpg") == "photo_1.jpg"
    assert safe_name(".hidden.png") == "hidden.png"
    assert safe_name("") == "upload"


def test_check_upload_names_what_is_wrong(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(InputError, match="notes.jpg: not a readable image"):
        check_upload(text, Limits())
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.png: the file is empty"):
        check_upload(empty, Limits())
    img = tmp_path / "big.png"
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(img)
    check_upload(img, Limits())
    with pytest.raises(InputError, match=r"big.png: 400x300 pixels is over the limit"):
        check_upload(img, Limits(max_pixels=100_000))
    with pytest.raises(InputError, match="over the upload limit"):
        check_upload(img, Limits(max_bytes=100))
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(EXAMPLE.read_bytes()[:2000])
    with pytest.raises(InputError, match="cut.jpg: not a readable image"):
        check_upload(cut, Limits())


def test_workspace_refuses_unusable_uploads_and_cleans_up(tmp_path):
    ws = Workspace(root=tmp_path, limits=Limits(max_files=2))
    text = tmp_path / "a.txt"
    text.write_text("hello")
    with pytest.raises(InputError, match="no photo uploaded"):
        ws.run(lambda *a, **k: None, [], BatchOptions())
    with pytest.raises(InputError, match="a.png: not a readable image"):
        ws.run(lambda *a, **k: None, [(text, "a.png")], BatchOptions())
    with pytest.raises(InputError, match="3 files is over the limit of 2"):
        ws.run(lambda *a, **k: None, [(text, "a.png")] * 3, BatchOptions())
    root = ws.root
    assert root.is_dir()
    ws.close()
    assert not root.exists()


def test_a_failing_image_is_one_problem_line_naming_the_upload(tmp_path):
    """A photo that fails in the pipeline is a FAILED row and one line with the upload's name (never
    the job folder's path); a bad upload beside it is a line too, and the job still runs."""
    def boom(image, focal=None, boxes=()):
        raise RuntimeError("the detector broke")

    ws = Workspace(root=tmp_path)
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    try:
        job = ws.run(boom, [(EXAMPLE, "my photo.jpg"), (bad, "notes.png")], BatchOptions(), progress=False)
        assert [(r.name, r.status, r.folder) for r in job.images] == [("my_photo.jpg", "FAILED: RuntimeError: the detector broke", None)]
        assert job.problems[0].startswith("notes.png: not a readable image")
        assert job.problems[1:] == ["my_photo.jpg: RuntimeError: the detector broke"]
        assert job.images[0].downloads() == []
    finally:
        ws.close()
