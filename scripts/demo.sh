#!/usr/bin/env bash
# Install everything (scripts/setup.sh) and run the main job, writing to out/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
exec .venv/bin/ihmr demo --out out "$@"
