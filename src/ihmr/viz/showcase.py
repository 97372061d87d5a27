"""The hand-model showcase of ``ihmr example``: load the hand models, render the mean pair, a pose
and a shape sweep, export the meshes and write facts about the models (``example.json``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from ihmr.geometry.camera import intrinsics
from ihmr.geometry.mesh import is_watertight, signed_volume
from ihmr.geometry.rotations import matrix_to_axis_angle, mirror_axis_angle
from ihmr.handmodel import TwoHands
from ihmr.handmodel.limits import JointLimits
from ihmr.io.files import atomic_write
from ihmr.version import __version__
from ihmr.viz.export import HAND_COLORS, export_hand, export_hands
from ihmr.viz.render import MeshSpec, orbit_views, render_meshes, render_views, tile

__all__ = ["write_showcase", "DISPLAY_ORIENT"]

#: Rotation taking MANO's rest frame (fingers -x, back +y, thumb +z) to a camera-facing right hand in
#: OpenCV camera coordinates: fingers up (-y), palm towards the camera (-z), thumb to the image right.
DISPLAY_ORIENT = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def _save_png(path: Path, image: np.ndarray) -> None:
    with atomic_write(path) as fh:
        Image.fromarray(image).save(fh, format="PNG")


def _poses(limits) -> dict[str, torch.Tensor]:
    """Named right-hand finger poses ``(1, 45)`` built in the joint-limit frames."""
    q0 = torch.zeros(1, 15, 3, dtype=limits.lower.dtype)
    up = limits.upper

    def bend(frac: torch.Tensor) -> torch.Tensor:
        q = q0.clone()
        q[..., 2] = up[:, 2] * frac
        return limits.from_local(q)

    ones = torch.ones(15, dtype=up.dtype)
    point = ones.clone() * 0.9
    point[0:3] = 0.0  # index straight (MANO joints 1-3 -> rows 0-2)
    thumbs_up = ones.clone() * 0.9
    thumbs_up[12:15] = 0.0
    spread = q0.clone()
    spread[:, :12, 1] = torch.tensor([-1.0, -1, -1, 0, 0, 0, 1, 1, 1, 0.5, 0.5, 0.5], dtype=up.dtype)[:, None].squeeze(-1) * up[:12, 1]
    return {
        "flat": limits.from_local(q0),
        "spread": limits.from_local(spread),
        "relaxed": bend(ones * 0.3),
        "half fist": bend(ones * 0.6),
        "fist": bend(ones * 0.92),
        "pointing": bend(point),
        "thumbs up": bend(thumbs_up),
    }


def write_showcase(out: str | Path = "out", model: str = "open", size: int = 480, docs: str | Path | None = None) -> dict:
    """Render and export the hand models to ``out``; returns the summary written to ``example.json``.

    Writes ``mean_hands.png`` (the mean pair, camera-facing), ``views.png`` (front / side / top),
    ``pose_sweep.png`` (named finger poses and a shape sweep, ``size // 2`` pixel tiles),
    ``hands.glb`` / ``hands.ply`` / ``right.obj`` / ``left.obj`` and ``example.json``; with ``docs``
    also copies the two showcase PNGs there.
    """

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()
    hands = TwoHands(model, dtype=torch.float64)
    timings["load_models_s"] = time.perf_counter() - t
    faces = hands.faces.numpy()
    steps = tqdm(total=5, desc="ihmr example", unit="step")

    # 1. The mean pair, camera-facing, side by side.
    t = time.perf_counter()
    phi_r = matrix_to_axis_angle(torch.as_tensor(DISPLAY_ORIENT))
    phi = torch.stack([phi_r, mirror_axis_angle(phi_r)])[None]
    tau = torch.tensor([[-0.24, 0.0, 0.0]], dtype=torch.float64)
    pair = hands(torch.zeros(1, 2, 10, dtype=torch.float64), phi, torch.zeros(1, 2, 45, dtype=torch.float64), tau)
    verts = pair.vertices[0].numpy()
    K, E = orbit_views(verts.reshape(-1, 3), ("front",), size, margin=1.0)[0]
    W = int(size * 1.5)
    K = K.copy()
    K[0, 2] = W / 2
    img, _, _ = render_meshes([MeshSpec(verts[h], faces[h], HAND_COLORS[h]) for h in range(2)], K, (W, size), E)
    _save_png(out / "mean_hands.png", img)
    views = render_views([MeshSpec(verts[h], faces[h], HAND_COLORS[h]) for h in range(2)], ("front", "side", "top"), size=size // 2)
    _save_png(out / "views.png", views)
    timings["render_mean_pair_s"] = time.perf_counter() - t
    steps.update()

    # 2. Pose sweep (right hand) and shape sweep.
    t = time.perf_counter()
    limits = JointLimits(hands.right.data, dtype=torch.float64)
    poses = _poses(limits)
    theta = torch.cat(list(poses.values()))
    n = theta.shape[0]
    go = phi_r.expand(n, 3)
    posed = hands.right(global_orient=go, hand_pose=theta)
    betas = torch.zeros(6, 10, dtype=torch.float64)
    shape_labels = []
    for i, (k, s) in enumerate([(0, -2.5), (0, 2.5), (1, -2.5), (1, 2.5), (2, -2.5), (2, 2.5)]):
        betas[i, k] = s
        shape_labels.append(f"beta{k}={s:+.1f}")
    shaped = hands.right(betas=betas, global_orient=phi_r.expand(6, 3))
    pv = posed.vertices - posed.joints[:, :1]
    sv = shaped.vertices - shaped.joints[:, :1]
    allv = torch.cat([pv, sv]).numpy()
    tiles_px = size // 2
    centre = 0.5 * (allv.reshape(-1, 3).min(0) + allv.reshape(-1, 3).max(0))
    radius = float(np.linalg.norm(allv.reshape(-1, 3) - centre, axis=1).max())
    f = tiles_px * 0.5 / np.tan(0.3)
    Kt = intrinsics(tiles_px, tiles_px, f)
    shift = -centre + np.array([0.0, 0.0, 1.15 * radius / np.tan(0.3)])
    imgs = [render_meshes([MeshSpec(v + shift, faces[0], HAND_COLORS[0])], Kt, (tiles_px, tiles_px))[0] for v in allv]
    cols = max(n, 6)
    imgs += [np.full_like(imgs[0], 255)] * ((-len(imgs)) % cols)
    _save_png(out / "pose_sweep.png", tile(imgs, cols=cols, pad=4))
    timings["render_sweeps_s"] = time.perf_counter() - t
    steps.update()

    # 3. Meshes.
    t = time.perf_counter()
    export_hands(out / "hands.glb", verts, faces)
    export_hands(out / "hands.ply", verts, faces)
    export_hand(out / "right.obj", verts[0], faces[0])
    export_hand(out / "left.obj", verts[1], faces[1])
    timings["export_s"] = time.perf_counter() - t
    steps.update()

    # 4. Facts about the models.
    rest = hands(torch.zeros(1, 2, 10, dtype=torch.float64), torch.zeros(1, 2, 3, dtype=torch.float64),
                 torch.zeros(1, 2, 45, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64))
    per_hand = []
    for h, side in enumerate(("right", "left")):
        v = rest.vertices[0, h].numpy()
        J = rest.joints[0, h].numpy()
        per_hand.append(dict(
            side=side, vertices=int(v.shape[0]), faces=int(faces[h].shape[0]), watertight=is_watertight(faces[h]),
            volume_cm3=round(float(signed_volume(v, faces[h])) * 1e6, 2),
            wrist_to_middle_tip_mm=round(float(np.linalg.norm(J[18] - J[0])) * 1e3, 1),
        ))
    steps.update()
    summary = dict(
        ihmr=__version__, model=hands.model_name, model_meta=hands.right.data.meta, hands=per_hand,
        pose_sweep=list(poses) + shape_labels,
        files=sorted({p.name for p in out.iterdir() if p.is_file() and not p.name.startswith(".")} | {"example.json"}),
        timings_s={k: round(v, 3) for k, v in timings.items()},
    )

    with atomic_write(out / "example.json", "w") as fh:
        json.dump(summary, fh, indent=2, default=str)
    if docs is not None:
        Path(docs).mkdir(parents=True, exist_ok=True)
        for name in ("mean_hands.png", "pose_sweep.png"):
            shutil.copyfile(out / name, Path(docs) / name)
    steps.update()
    steps.close()
    return summary
