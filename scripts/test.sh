#!/usr/bin/env bash
# Install everything (scripts/setup.sh), check the floor plan and the lint rules, run the whole test suite.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/setup.sh --browser
# The floor plan (pyproject.toml [tool.importlinter], docs/DESIGN.md): no upward import, no circle.
.venv/bin/lint-imports --no-cache
# Unused imports and variables, undefined or redefined names, import order (pyproject.toml [tool.ruff]).
.venv/bin/ruff check --no-cache src tests benchmarks
export PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}"
exec .venv/bin/python -m pytest -q "$@"
