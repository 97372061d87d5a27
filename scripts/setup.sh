#!/usr/bin/env bash
# Create or update the project's virtual environment at .venv/ with the pinned versions of
# requirements/lock.txt, then install ihmr itself (editable). A second run with unchanged pins
# reuses what is installed and returns in about a second.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${IHMR_PYTHON:-python3.11}"
LOCK=requirements/lock.txt
STAMP=.venv/.ihmr-setup-stamp
want="$(cat "$LOCK" pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"

# Offscreen rendering (pyrender over EGL) needs Mesa's EGL/GL libraries.
if ! ldconfig -p 2>/dev/null | grep -q 'libEGL.so.1' || ! ldconfig -p 2>/dev/null | grep -q 'libEGL_mesa'; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[setup] installing Mesa EGL libraries (apt)"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri libgles2 >/dev/null
    else
        echo "[setup] warning: Mesa EGL libraries not found; rendering will be unavailable (install libegl1 libegl-mesa0 libgl1-mesa-dri)" >&2
    fi
fi

# --browser (scripts/test.sh): Debian's Chromium and ChromeDriver for the browser tests of ihmr serve
# (tests/test_serve.py says so and skips them where they cannot be installed).
if [ "${1:-}" = "--browser" ] && ! { command -v chromium >/dev/null && command -v chromedriver >/dev/null; }; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "[setup] installing chromium and chromium-driver (apt) for the browser tests"
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
            || echo "[setup] warning: chromium could not be installed; the browser tests will be skipped" >&2
    else
        echo "[setup] warning: chromium / chromedriver not found (apt install chromium chromium-driver); the browser tests will be skipped" >&2
    fi
fi

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && [ -x .venv/bin/ihmr ]; then
    echo "[setup] .venv is up to date"
    exit 0
fi

command -v "$PY" >/dev/null || { echo "[setup] error: $PY not found (ihmr needs Python 3.11; set IHMR_PYTHON)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
echo "[setup] installing pinned dependencies into .venv (first run: a few minutes)"
.venv/bin/python -m pip install -qq -r "$LOCK"
.venv/bin/python -m pip install -qq --no-deps "pyrender==0.1.45"
.venv/bin/python -m pip install -qq --no-deps --no-build-isolation -e .
echo "$want" > "$STAMP"
echo "[setup] done: $(.venv/bin/python -c 'import ihmr, torch; print("ihmr", ihmr.__version__, "torch", torch.__version__)')"
