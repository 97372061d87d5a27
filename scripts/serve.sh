#!/usr/bin/env bash
# Install everything (scripts/setup.sh) and start the browser app on http://127.0.0.1:7860/ (Ctrl-C stops).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
exec .venv/bin/ihmr serve "$@"
