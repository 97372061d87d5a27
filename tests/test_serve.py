"""``ihmr serve`` in a real browser: Debian's headless Chromium driven by Selenium against a server
the test starts on 127.0.0.1 (a free port, its own temporary folder). Where Chromium, ChromeDriver
or Selenium is missing the browser tests are skipped with the reason (``scripts/setup.sh --browser``
installs them), never passed. The click-to-result time is printed, not asserted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ihmr.pipeline.batch import bundled_examples

EXAMPLE = next(p for p in bundled_examples() if p.stem == "image69148")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
try:
    from selenium.common.exceptions import StaleElementReferenceException

    HAVE_SELENIUM = True
except ImportError:
    HAVE_SELENIUM = False

    class StaleElementReferenceException(Exception):  # noqa: N818 - stands in for selenium's
        pass
MISSING = [n for n, ok in (("chromium", CHROMIUM), ("chromedriver", DRIVER), ("selenium", HAVE_SELENIUM)) if not ok]
browser = pytest.mark.skipif(bool(MISSING), reason=f"browser tests skipped: {', '.join(MISSING)} not installed "
                                                    "(bash scripts/setup.sh --browser installs them)")
#: result.json keys that differ between two runs on the same photo (timings, where the file lay).
RUN_SPECIFIC = ("timings_s", "input", "image", "folder")


# -- without a browser ------------------------------------------------------------------------------
def test_serve_usage_errors(capsys):
    from ihmr.cli.main import main

    assert main(["serve", "--port", "70000"]) == 2
    assert capsys.readouterr().err.strip() == "ihmr: error: --port: must be 1-65535, got 70000"
    with pytest.raises(SystemExit) as e:
        main(["serve", "--max-upload-mb", "-1"])
    assert e.value.code == 2 and "--max-upload-mb: must be a finite number > 0" in capsys.readouterr().err
    from ihmr.cli.main import build_parser

    args = build_parser().parse_args(["serve"])
    assert (args.host, args.port) == ("127.0.0.1", 7860)  # this machine only, unless told otherwise


def test_page_options_match_the_demo_and_reject_bad_values():
    from ihmr.app.web import App
    from ihmr.errors import InputError
    from ihmr.pipeline.batch import BatchOptions

    app = App()
    try:
        assert app.options("opt", True, "", "") == BatchOptions()
        assert app.options("mlp", False, " 1261.6 ", "10, 20, 30, 40") == BatchOptions(
            focal=1261.6, box=(10.0, 20.0, 30.0, 40.0), refine="mlp", refiner="default", contact=False)
        for focal in ("abc", "-3", "0", "inf", "nan"):
            with pytest.raises(InputError, match="^focal length: must be a number of pixels > 0"):
                app.options("opt", True, focal, "")
        with pytest.raises(InputError, match="box"):
            app.options("opt", True, "", "1,2")
    finally:
        app.close()
    assert not app.workspace.root.exists()


# -- the server and the browser --------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``ihmr serve`` on a free port with its own TMPDIR; yields (url, tmpdir). At the end it is
    stopped with Ctrl-C (SIGINT) and must leave no job folder behind."""
    if MISSING:
        pytest.skip(f"browser tests skipped: {', '.join(MISSING)} not installed")
    tmp = tmp_path_factory.mktemp("serve")
    port = _free_port()
    env = dict(os.environ, TMPDIR=str(tmp), GRADIO_TEMP_DIR=str(tmp / "gradio"), PYOPENGL_PLATFORM="egl")
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "ihmr", "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 240
    while True:
        if proc.poll() is not None:
            pytest.fail("ihmr serve exited: " + (tmp / "server.log").read_text()[-2000:])
        try:
            urllib.request.urlopen(url, timeout=5).read()
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                pytest.fail("ihmr serve did not answer: " + (tmp / "server.log").read_text()[-2000:])
            time.sleep(0.5)
    yield url, tmp
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    assert not list(tmp.glob("ihmr-serve-*")), "the job workspace was not removed"
    left = [p for p in (tmp / "gradio").rglob("*") if p.is_file()]
    assert not [p for p in left if p.stat().st_size], f"Gradio's copies were not removed: {left[:3]}"


def _driver():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1800",
              "--enable-unsafe-swiftshader", "--use-angle=swiftshader"):  # WebGL without a GPU
        o.add_argument(a)
    d = webdriver.Chrome(options=o, service=Service(DRIVER))
    d.implicitly_wait(0)
    return d


@pytest.fixture
def page(server):
    d = _driver()
    d.get(server[0])
    _wait(d, lambda: d.find_elements("css selector", "#upload input[type=file]"), 60, "the page did not load")
    yield d
    d.quit()


def _wait(d, cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            v = cond()
        except StaleElementReferenceException:  # the page re-rendered between finding and reading
            v = None
        if v:
            return v
        time.sleep(0.1)
    d.save_screenshot(str(Path(os.environ.get("TMPDIR", "/tmp")) / "ihmr-serve-failure.png"))
    pytest.fail(f"{what} within {timeout:.0f} s")


def _toasts(d) -> list[str]:
    # One script reads every toast's text at once: a toast that closes meanwhile cannot go stale.
    texts = d.execute_script("return Array.from(document.querySelectorAll('.toast-body')).map(e => e.innerText);")
    return [t for t in texts or [] if t.strip()]


def _upload(d, paths: list[Path]) -> None:
    for b in d.find_elements("css selector", "#upload button[aria-label='Clear']"):
        b.click()
    d.find_element("css selector", "#upload input[type=file]").send_keys("\n".join(str(p) for p in paths))
    _wait(d, lambda: all(d.find_elements("css selector", f"#upload [aria-label='{p.name}']") for p in paths), 30,
          "the upload did not show")


def _result(d, name: str, timeout: float = 120) -> str:
    """Wait for the message of a finished job naming ``name`` (its overlay loaded); pytest.fail on
    an error toast."""
    def done():
        if _toasts(d):
            pytest.fail("error shown: " + " | ".join(_toasts(d)))
        msg = d.find_element("css selector", "#message").text
        loaded = d.execute_script("const i = document.querySelector('#overlay img'); return !!i && i.complete && i.naturalWidth > 0;")
        return msg if f"{name}:" in msg and loaded else None
    return _wait(d, done, timeout, f"no result for {name}")


def _photo(tmp: Path, name: str, longer: int | None = None) -> Path:
    """The clasped example as ``name`` (its longer side scaled to ``longer`` pixels if given)."""
    p = tmp / name
    if longer is None:
        shutil.copyfile(EXAMPLE, p)
    else:
        im = Image.open(EXAMPLE)
        s = longer / max(im.size)
        im.resize((round(im.width * s), round(im.height * s)), Image.LANCZOS).save(p, quality=92)
    return p


def _canvas_pixels(d) -> np.ndarray:
    c = d.find_element("css selector", "#viewer canvas")
    return np.asarray(Image.open(BytesIO(c.screenshot_as_png)).convert("RGB"), dtype=np.int16)


def _href(d, css: str) -> str:
    return d.find_element("css selector", css).get_attribute("href")


@browser
def test_photo_to_turnable_hands_and_demo_identical_json(server, page, tmp_path):
    url, _ = server
    d = page
    photo = _photo(tmp_path, "clasped.jpg", longer=640)
    demo = subprocess.Popen([sys.executable, "-m", "ihmr", "demo", str(photo), "--out", str(tmp_path / "demo"), "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, PYOPENGL_PLATFORM="egl"))
    _upload(d, [photo])
    t0 = time.perf_counter()
    d.find_element("css selector", "#run").click()
    msg = _result(d, "clasped.jpg")
    print(f"\nihmr serve: click -> overlay shown {time.perf_counter() - t0:.2f} s ({EXAMPLE.name} at 640 px, warm server)")
    assert "clasped.jpg: ok" in msg

    # the 3D viewer draws the hands (pixels vary) and dragging turns them
    before = _wait(d, lambda: (lambda px: [px] if px.std() > 8 else None)(_canvas_pixels(d)), 30, "the 3D viewer stayed blank")[0]
    assert len(np.unique(before.reshape(-1, 3), axis=0)) > 50
    from selenium.webdriver import ActionChains

    canvas = d.find_element("css selector", "#viewer canvas")
    ActionChains(d).move_to_element(canvas).click_and_hold().move_by_offset(120, 30).release().perform()
    _wait(d, lambda: np.abs(_canvas_pixels(d) - before).mean() > 1.0, 10, "dragging did not turn the hands")
    assert _href(d, "#viewer a[data-testid='model3d-download-link']").endswith("/hands.glb")
    for label in d.find_elements("css selector", "#which label"):
        if "before" in label.text:
            label.click()
    _wait(d, lambda: _href(d, "#viewer a[data-testid='model3d-download-link']").endswith("/hands_before.glb"), 20,
          "the before/after toggle did not switch the 3D view")

    # the pair table and the downloads: result.json is ihmr demo's for the same photo and options
    rows = d.find_elements("css selector", "#pairs tbody tr")
    cells = [r.get_attribute("textContent") for r in rows]
    assert len(cells) == 1 and cells[0].startswith("1 (hands"), cells
    links = {a.get_attribute("download"): a.get_attribute("href") for a in d.find_elements("css selector", "#downloads a[download]")}
    assert {"result.json", "hands.glb", "hands_before.glb", "overlay.png", "views.png", "right.obj", "left.obj"} <= set(links)
    assert all(h.startswith(url) for h in links.values())
    got = json.loads(urllib.request.urlopen(links["result.json"], timeout=30).read())
    assert demo.wait(timeout=300) == 0, demo.stderr.read().decode()
    want = json.loads((tmp_path / "demo" / "clasped" / "result.json").read_text())
    assert {k: v for k, v in got.items() if k not in RUN_SPECIFIC} == {k: v for k, v in want.items() if k not in RUN_SPECIFIC}
    assert got["input"]["sha256"] == want["input"]["sha256"]
    glb = urllib.request.urlopen(links["hands.glb"], timeout=30).read()
    assert glb[:4] == b"glTF" and glb == (tmp_path / "demo" / "clasped" / "hands.glb").read_bytes()

    # nothing was fetched from anywhere but this server
    fetched = d.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert fetched and all(u.startswith((url, "data:", "blob:")) for u in fetched), [u for u in fetched if not u.startswith(url)]


@browser
def test_bad_upload_shows_an_error_and_the_next_one_works(server, page, tmp_path):
    d = page
    bad = tmp_path / "notes.png"
    bad.write_text("not an image at all\n")
    _upload(d, [bad])
    d.find_element("css selector", "#run").click()
    toast = _wait(d, lambda: _toasts(d), 60, "no error shown for a text file")
    assert any("notes.png: not a readable image" in t for t in toast), toast
    for b in d.find_elements("css selector", ".toast-close"):
        b.click()
    _wait(d, lambda: not _toasts(d), 20, "the error did not close")
    photo = _photo(tmp_path, "after_error.jpg")
    _upload(d, [photo])
    d.find_element("css selector", "#run").click()
    assert "after_error.jpg: ok" in _result(d, "after_error.jpg")


@browser
def test_two_users_at_once_are_both_served(server, tmp_path):
    url, tmp = server
    a, b = _driver(), _driver()
    try:
        for d in (a, b):
            d.get(url)
            _wait(d, lambda d=d: d.find_elements("css selector", "#upload input[type=file]"), 60, "the page did not load")
        _upload(a, [_photo(tmp_path, "user_a.jpg")])
        a.find_element("css selector", "#run").click()
        b.find_element("css selector", "#examples").click()  # the other user runs the bundled examples
        assert "user_a.jpg: ok" in _result(a, "user_a.jpg", 180)
        msg = _result(b, EXAMPLE.name, 180)
        assert all(f"{p.name}:" in msg for p in bundled_examples())
        # the other photo of the job, picked from the list, replaces the overlay and the 3D view
        shown = _href(b, "#viewer a[data-testid='model3d-download-link']")
        overlay = b.execute_script("return document.querySelector('#overlay img').src")
        current = b.find_element("css selector", "#photo input").get_attribute("value")
        other = next(p.name for p in bundled_examples() if p.name != current)
        b.find_element("css selector", "#photo input").click()
        _wait(b, lambda: [li for li in b.find_elements("css selector", "ul li") if other in li.text], 20, "no photo list")[0].click()
        _wait(b, lambda: b.execute_script("return document.querySelector('#overlay img').src") != overlay, 20,
              "picking the other photo did not change the overlay")
        _wait(b, lambda: _href(b, "#viewer a[data-testid='model3d-download-link']") != shown, 20,
              "picking the other photo did not change the 3D view")
    finally:
        a.quit()
        b.quit()
    # files are served only from the jobs' published results, never from anywhere else on disk
    inside = sorted(tmp.glob("ihmr-serve-*/job-*/out/*/result.json"))
    assert inside, "no job folder found"
    for path in ("/etc/passwd", str(inside[0]), str(EXAMPLE)):
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"{url}gradio_api/file={path}", timeout=10)
        assert e.value.code in (403, 404), path
