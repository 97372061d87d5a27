"""The floor plan (docs/DESIGN.md): layers import only downward, imports stand at the top of modules,
no module reaches the root package, every module belongs to a floor, modules stay small.

The layers contract itself lives in ``pyproject.toml`` (``[tool.importlinter]``) and is checked by
``lint-imports`` in ``scripts/test.sh``; the tests here check what import-linter does not, and that
the contract really fails on an upward import.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "src" / "ihmr"
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())
LAYERS = CONFIG["tool"]["importlinter"]["contracts"][0]["layers"]

#: Imports that may stay inside functions: optional or heavy dependencies that most commands never
#: need: offscreen rendering (pyrender, OpenGL, triton), trimesh (writing meshes; 0.4 s to import),
#: MediaPipe / LiteRT, the model build's anny and scipy.optimize, TensorBoard, matplotlib (plots),
#: the stage-I backbones' torchvision and timm, gradio and ihmr.app.web (the page, which imports gradio: the
#: optional app extra); and numpy's private pickle modules the MANO unpickler maps.
LAZY = ("gradio", "ihmr.app.web", "timm", "pyrender", "OpenGL", "triton", "trimesh", "mediapipe", "ai_edge_litert", "anny", "tensorboard",
        "torch.utils.tensorboard", "matplotlib", "torchvision", "numpy.core", "numpy._core", "scipy.optimize")
#: The largest module in lines ("no module over ~500 lines").
MAX_LINES = 520


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(PKG.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


MODULES = _modules()


def _function_imports(tree: ast.AST):
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                if isinstance(n, ast.Import):
                    yield n, [a.name for a in n.names]
                elif isinstance(n, ast.ImportFrom):
                    yield n, ["." * n.level + (n.module or "")]


def test_imports_stand_at_the_top_of_modules():
    bad = []
    for name, path in MODULES.items():
        for node, mods in _function_imports(ast.parse(path.read_text())):
            for m in mods:
                if not any(m == lazy or m.startswith(lazy + ".") for lazy in LAZY):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {m} inside a function")
    assert not bad, "\n".join(bad)


def test_no_module_imports_the_root_package():
    """``import ihmr`` inside the package closes a circle through ``ihmr/__init__.py``."""
    bad = []
    for name, path in MODULES.items():
        if name == "ihmr":
            continue
        for n in ast.walk(ast.parse(path.read_text())):
            if isinstance(n, ast.Import) and any(a.name == "ihmr" for a in n.names):
                bad.append(f"{name}: import ihmr")
            if isinstance(n, ast.ImportFrom) and n.level == 0 and n.module == "ihmr":
                bad += [f"{name}: from ihmr import {a.name}" for a in n.names if f"ihmr.{a.name}" not in MODULES]
    assert not bad, "\n".join(bad)


def test_every_module_belongs_to_a_floor():
    floors = {m.strip() for layer in LAYERS for m in layer.split("|")}
    top = {".".join(n.split(".")[:2]) for n in MODULES if n.count(".") >= 1}
    unplaced = sorted(t for t in top if t not in floors and t != "ihmr.__main__")
    assert not unplaced, f"modules on no floor of pyproject.toml's layers contract: {unplaced}"


def test_modules_are_small():
    big = {n: len(p.read_text().splitlines()) for n, p in MODULES.items()}
    big = {n: k for n, k in big.items() if k > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_no_dead_private_names():
    """A module-level ``_name`` that nothing in the package uses is dead code."""
    sources = {n: p.read_text() for n, p in MODULES.items()}
    everything = "\n".join(sources.values())
    dead = []
    for name, text in sources.items():
        for node in ast.parse(text).body:
            targets = []
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                targets = [node.name]
            elif isinstance(node, ast.Assign):
                targets = [t.id for t in node.targets if isinstance(t, ast.Name)]
            elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
                targets = [node.target.id]
            for t in targets:
                if t.startswith("_") and not t.startswith("__") and len(re.findall(rf"\b{re.escape(t)}\b", everything)) < 2:
                    dead.append(f"{name}.{t}")
    assert not dead, f"unused private names: {dead}"


def test_the_contract_fails_on_an_upward_import(tmp_path):
    """A copy of the package with one deliberate upward import (geometry -> pipeline) breaks the
    layers contract, so ``lint-imports`` (and with it the test command) fails."""
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint is None:
        pytest.skip("import-linter is not installed")
    shutil.copytree(PKG, tmp_path / "src" / "ihmr", ignore=shutil.ignore_patterns("assets", "__pycache__", "*.pt", "*.npz"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = {"PYTHONPATH": str(tmp_path / "src"), "PATH": str(Path(sys.executable).parent)}
    ok = subprocess.run([lint, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    victim = tmp_path / "src" / "ihmr" / "geometry" / "camera.py"
    victim.write_text(victim.read_text() + "\nfrom ihmr.pipeline import Reconstructor  # noqa: E402,F401\n")
    broken = subprocess.run([lint, "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert broken.returncode != 0
    assert "ihmr.geometry.camera -> ihmr.pipeline" in broken.stdout
