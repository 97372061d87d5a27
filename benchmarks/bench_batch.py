"""``ihmr demo`` as a batch: photos of many sizes, 1 process against ``torchrun`` with 2 processes.

Run (from the project root)::

    PYOPENGL_PLATFORM=egl .venv/bin/python benchmarks/bench_batch.py [--copies 3] [--out /tmp/bench_batch]

Inputs: the four InterHand2.6M frames of ``../shared/data/interhand26m_sample`` (the bundled two
when it is missing), each resized to ``--copies`` sizes (12 distinct sizes by default). Prints:

1. the renderer at every size in one process, with the previous scheme (an OffscreenRenderer per
   size, at most 4 kept, the oldest deleted) run in a subprocess beside the current one
   (one context, framebuffer resized): how many sizes each renders and ms per render;
2. ``ihmr demo`` over the batch with 1 process and with ``torchrun --nproc-per-node 2`` (gloo):
   wall seconds (models loaded in each process included), images/s, the ratio, and whether the two
   runs wrote the same files (result.json compared without its timings).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "interhand26m_sample"
EXAMPLES = ROOT / "src" / "ihmr" / "examples"
SCALES = (1.0, 1.6, 0.75, 2.1, 0.55, 1.3, 0.9)

_RENDER = r"""
import os, sys, time
os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
import numpy as np
from ihmr.viz.render import load_pyrender
from ihmr.geometry.camera import intrinsics
pyrender = load_pyrender()
import trimesh
sizes = [tuple(map(int, s.split("x"))) for s in sys.argv[2].split(",")]
tri = trimesh.Trimesh([[0, 0, .5], [.05, 0, .5], [0, .05, .5]], [[0, 1, 2], [0, 2, 1]])
cache, done, t = {}, 0, time.perf_counter()
from ihmr.viz.render import offscreen_renderer
for W, H in sizes:
    scene = pyrender.Scene()
    scene.add(pyrender.Mesh.from_trimesh(tri))
    K = intrinsics(W, H, 1.2 * max(W, H))
    scene.add(pyrender.IntrinsicsCamera(K[0, 0], K[1, 1], K[0, 2], K[1, 2]), pose=np.diag([1.0, -1, -1, 1]))
    try:
        if sys.argv[1] == "previous":
            r = cache.get((W, H))
            if r is None:
                if len(cache) >= 4:
                    cache.pop(next(iter(cache))).delete()
                r = cache[(W, H)] = pyrender.OffscreenRenderer(W, H)
        else:
            r = offscreen_renderer(W, H)
        r.render(scene)
    except Exception as e:
        print(f"FAIL {done} {type(e).__name__}: {e}"[:200])
        break
    done += 1
print(f"OK {done} {(time.perf_counter() - t) / max(done, 1) * 1000:.1f}")
"""


def make_inputs(folder: Path, copies: int) -> list[Path]:
    frames = sorted(DATA.glob("image*.jpg")) or sorted(EXAMPLES.glob("*.jpg"))
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, src in enumerate(frames):
        im = Image.open(src).convert("RGB")
        for c in range(copies):
            s = SCALES[(k + c) % len(SCALES)]
            p = folder / f"{src.stem}_{c}.jpg"
            im.resize((max(32, round(im.width * s)), max(32, round(im.height * s)))).save(p, quality=92)
            out.append(p)
    return out


def tree(root: Path) -> dict:
    files = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.name == "result.json":
                doc = json.loads(data)
                doc.pop("timings_s", None)
                data = json.dumps(doc, sort_keys=True).encode()
            files[str(p.relative_to(root))] = data
    return files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--copies", type=int, default=3, help="sizes per frame")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_batch"))
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    images = make_inputs(args.out / "in", args.copies)
    sizes = sorted({Image.open(p).size for p in images})
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"), PYOPENGL_PLATFORM="egl")

    print(f"{len(images)} images, {len(sizes)} distinct sizes ({', '.join(f'{w}x{h}' for w, h in sizes)})\n")
    print("| renderer | sizes rendered | ms per render |\n|---|---|---|")
    spec = ",".join(f"{w}x{h}" for w, h in sizes)
    for scheme in ("previous", "current"):
        r = subprocess.run([sys.executable, "-c", _RENDER, scheme, spec], capture_output=True, text=True, env=env)
        last = (r.stdout.strip().splitlines() or ["?"])[-1].split()
        fail = [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL")]
        ok = last[1] if last[0] == "OK" else "?"
        note = f" (then {' '.join(fail[0].split()[2:4])})" if fail else ""
        print(f"| {scheme} | {ok} of {len(sizes)}{note} | {last[2] if len(last) > 2 else '-'} |")

    print("\n| ihmr demo | processes | seconds | images/s | ratio |\n|---|---|---|---|---|")
    base = ["-m", "ihmr", "demo", str(args.out / "in"), "--no-progress"]
    runs = {}
    for n in (1, 2):
        launch = [sys.executable] if n == 1 else [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(n),
                                                  "--master-port", "29541"]
        t = time.perf_counter()
        r = subprocess.run([*launch, *base, "--out", str(args.out / f"out{n}")], capture_output=True, text=True, env=env)
        dt = time.perf_counter() - t
        summary = [ln for ln in r.stdout.splitlines() if " done, " in ln]
        runs[n] = dt
        print(f"exit {r.returncode}: {summary[-1] if summary else r.stderr[-500:]}", file=sys.stderr)
        print(f"| {'python -m ihmr demo' if n == 1 else 'torchrun -m ihmr demo'} | {n} | {dt:.1f} | {len(images) / dt:.2f} | "
              f"{runs[1] / dt:.2f} |")
    same = tree(args.out / "out1") == tree(args.out / "out2")
    print(f"\noutputs of 1 and 2 processes identical: {same}")


if __name__ == "__main__":
    main()
