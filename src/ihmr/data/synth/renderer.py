"""One ``ihmr synth`` sample rendered: the pair of hands posed by its pose chunk, placed in the world
frame, with forearms, its random camera, skin shading (lighter palms), key/fill/ambient light, a
procedural background and sometimes blur and noise (see :mod:`ihmr.data.synth.format` for the
frames and the files).

Sample ``idx`` of run ``seed`` depends only on ``(seed, idx)``: its pose on pose chunk
``idx // chunk``, everything else on ``numpy.random.default_rng([seed, idx])``. Meshes get distinct
node poses so pyrender's draw order (and so every pixel where meshes intersect) does not depend on
memory addresses.

pyrender (the optional ``render`` extra, via :func:`ihmr.viz.render.load_pyrender`) is loaded only
when a renderer is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from ihmr.data.synth.appearance import light_pose, photograph, random_background, random_color, skin, srgb_to_linear, tint
from ihmr.data.synth.camera import random_camera
from ihmr.data.synth.forearms import arm_meshes, arm_sees_camera, random_forearms
from ihmr.data.synth.format import POSE_CHUNK, sample_record
from ihmr.data.synth.poses import pose_chunk
from ihmr.handmodel.two_hands import TwoHands
from ihmr.viz.render import CV_TO_GL, load_pyrender, release_renderer, render_scene

__all__ = ["RenderedSample", "SampleRenderer"]


@dataclass
class RenderedSample:
    """One sample: ``image (S, S, 3)`` uint8, the JPEG bytes written, the per-sample ``record`` (what
    the annotation files hold for it) and, with ``buffers=True``, hands-only buffers (forearms left
    out): ``hand_label (S, S)`` int8 (-1 empty, 0 right, 1 left) and ``hand_depth (S, S)`` float32
    (metres along the camera z, 0 where empty)."""

    image: np.ndarray
    record: dict
    jpeg: bytes = b""
    hand_label: Optional[np.ndarray] = None
    hand_depth: Optional[np.ndarray] = None
    extra: dict = field(default_factory=dict)


class SampleRenderer:
    """Renders samples; one per process (it owns a hand model and an offscreen GL context).

    Args:
        size: image side ``S`` (pixels, square images).
        model: the hand model (``"open"`` or a folder with the MANO pickles, see :class:`TwoHands`).
        quality: JPEG quality (1-100).
    """

    def __init__(self, size: int = 256, model: str = "open", quality: int = 92) -> None:
        self.pyrender = load_pyrender()  # loads torch's triton before Mesa (see ihmr.viz.render)
        self.size = int(size)
        self.quality = int(quality)
        self.hands = TwoHands(model, dtype=torch.float64)
        self.faces = self.hands.faces.numpy()
        self.model_name = self.hands.model_name
        self._palm, self._ring = self._rest_features()
        # The MANO-style finger pose of the records is relative to the model's mean pose, if any.
        self._hands_mean = [layer.data.hands_mean if layer.data.hands_mean is not None else np.zeros(45)
                            for layer in (self.hands.right, self.hands.left)]
        self._chunk_cache: dict = {}

    def _rest_features(self) -> tuple[np.ndarray, np.ndarray]:
        """From the flat rest hand: per-vertex palm-side weight in [0, 1] (rest pose: back +y, palm
        -y) and the indices of the vertices around the wrist opening (the last 12 mm along the
        middle-finger-base -> wrist direction)."""
        import trimesh  # lazy: heavy (0.4 s), needed only to write or render meshes

        z = torch.zeros
        out = self.hands.right(z(1, 10, dtype=torch.float64), z(1, 3, dtype=torch.float64), z(1, 45, dtype=torch.float64))
        v, j = out.vertices[0].numpy(), out.joints[0].numpy()
        tm = trimesh.Trimesh(v, self.faces[0], process=False)
        ny = np.asarray(tm.vertex_normals)[:, 1]
        palm = np.clip((-ny + 0.2) / 0.8, 0.0, 1.0) ** 1.5
        a = (j[0] - j[4]) / np.linalg.norm(j[0] - j[4])
        s = (v - j[0]) @ a
        return palm, np.nonzero(s > s.max() - 0.012)[0]

    def close(self) -> None:
        """Release the process's offscreen GL context (a later render opens a new one)."""
        release_renderer()

    def gt(self, seed: int, idx: int, chunk: int) -> dict[str, np.ndarray]:
        """Ground truth of sample ``idx`` (its pose chunk is cached)."""
        c = idx // chunk
        key = (seed, c, chunk)
        if key not in self._chunk_cache:
            self._chunk_cache.clear()
            self._chunk_cache[key] = pose_chunk(seed, c, chunk, self.hands)
        g = self._chunk_cache[key]
        j = idx % chunk
        return {k: v[j] for k, v in g.items()}

    def render(self, seed: int, idx: int, chunk: int = POSE_CHUNK, buffers: bool = False) -> RenderedSample:
        """Render sample ``idx`` of ``seed`` and build its annotation record (``buffers``: also the
        hands-only label and depth maps, one more render pass)."""
        import trimesh  # lazy: heavy (0.4 s), needed only to write or render meshes

        pyrender = self.pyrender
        S = self.size
        gt = self.gt(seed, idx, chunk)
        rng = np.random.default_rng([int(seed), int(idx)])
        V = gt["vertices"]  # (2, V, 3) model frame, metres
        J = gt["joints"]  # (2, 21, 3) MANO order
        centre = J.reshape(-1, 3).mean(0)
        target_m = rng.uniform(-0.1, 0.1, 3)
        origin_m = target_m - centre
        Vw = V + origin_m
        Jw = J + origin_m
        # Forearms (most samples) first: the camera then looks along them rather than against them.
        arms = random_forearms(rng, Vw, Jw, self._ring) if rng.random() < 0.95 else []
        away = None
        if arms:
            m = np.mean([arm["a"] for arm in arms], 0)
            away = m / np.linalg.norm(m) if np.linalg.norm(m) > 0.3 else None
        R, eye, focal, princpt = random_camera(rng, Vw.reshape(-1, 3), target_m, S, away)
        arms = [arm for arm in arms if arm_sees_camera(arm, eye, target_m)]

        # Appearance.
        skin_lin, tone = skin(rng)
        skin_srgb = np.clip(skin_lin.mean(0), 0, 1) ** (1 / 2.4)
        background = random_background(rng, S, skin_srgb)
        E = np.eye(4)
        E[:3, :3] = R
        E[:3, 3] = -R @ eye
        cv_to_world = np.linalg.inv(E)
        cam_pose = cv_to_world @ CV_TO_GL
        ambient = rng.uniform(0.1, 0.4) * tint(rng, 0.05)
        scene = pyrender.Scene(bg_color=[0.0, 0.0, 0.0, 0.0], ambient_light=ambient)
        palm_gain = rng.uniform(1.03, 1.15)
        hand_nodes = []
        roughness = rng.uniform(0.45, 0.8, 2)
        view_dir = (target_m - eye) / np.linalg.norm(target_m - eye)
        count = [0]

        def add(vertices: np.ndarray, faces: np.ndarray, mat, colors: Optional[np.ndarray] = None):
            # pyrender draws opaque nodes sorted by the distance of their pose from the camera and
            # breaks ties by set order (memory addresses): meshes that intersect (hand and forearm)
            # then share depth values and the winner changes from run to run. Distinct poses (the
            # vertices compensate) make the draw order, and so the pixels, deterministic.
            t = eye + view_dir * (1.0 + 1e-3 * count[0])
            count[0] += 1
            tm = trimesh.Trimesh(vertices - t, faces, process=False)
            if colors is not None:
                tm.visual.vertex_colors = colors
            pose = np.eye(4)
            pose[:3, 3] = t
            return scene.add(pyrender.Mesh.from_trimesh(tm, material=mat, smooth=True), pose=pose)

        for h in range(2):
            w = self._palm[:, None]
            mult = (1 - w) * np.array([0.93, 0.93, 0.95]) + w * palm_gain * np.array([1.0, 0.97, 0.95])
            mult = mult / mult.max()
            colors = np.concatenate([np.round(mult * 255), np.full((len(mult), 1), 255)], 1).astype(np.uint8)
            mat = pyrender.MetallicRoughnessMaterial(
                baseColorFactor=[*skin_lin[h], 1.0], metallicFactor=0.0, roughnessFactor=float(roughness[h]),
            )
            hand_nodes.append(add(Vw[h], self.faces[h], mat, colors))
        # Forearm skin a touch darker than the back of the hand; sometimes sleeves.
        sleeve_lin = srgb_to_linear(random_color(rng))
        for arm in arms:
            for av, af, kind in arm_meshes(arm):
                if kind == "skin":
                    mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=[*(skin_lin[arm["hand"]] * 0.93), 1.0],
                                                             metallicFactor=0.0, roughnessFactor=float(roughness[arm["hand"]]))
                else:
                    mat = pyrender.MetallicRoughnessMaterial(baseColorFactor=[*sleeve_lin, 1.0], metallicFactor=0.0, roughnessFactor=0.95)
                add(av, af, mat)
        scene.add(pyrender.IntrinsicsCamera(fx=focal[0], fy=focal[1], cx=princpt[0], cy=princpt[1], znear=0.02, zfar=20.0), pose=cam_pose)
        _add_lights(pyrender, scene, rng, cv_to_world)
        color, _ = render_scene(scene, self.size, self.size, flags=pyrender.RenderFlags.RGBA)
        label = hdepth = None
        if buffers:
            seg, hdepth = render_scene(scene, self.size, self.size, flags=pyrender.RenderFlags.SEG,
                                       seg_node_map={hand_nodes[0]: (255, 0, 0), hand_nodes[1]: (0, 255, 0)})
            label = np.full((S, S), -1, dtype=np.int8)
            label[seg[..., 0] > 127] = 0
            label[seg[..., 1] > 127] = 1
            hdepth = np.where(label >= 0, hdepth, 0.0).astype(np.float32)
        img, jpeg = photograph(rng, color, background, self.quality)
        record = sample_record(idx, S, gt, Jw, origin_m, R, eye, focal, princpt, tone, self._hands_mean, self.model_name)
        return RenderedSample(image=img, record=record, jpeg=jpeg, hand_label=label, hand_depth=hdepth,
                              extra=dict(world_to_cam=E, vertices_world_m=Vw, forearms=len(arms)))


def _add_lights(pyrender, scene, rng: np.random.Generator, cv_to_world: np.ndarray) -> None:
    """Key light from the camera side, random direction and strength; sometimes a fill light.
    ``cv_to_world (4, 4)``: the inverse of the OpenCV extrinsics."""
    key_dir = np.array([rng.normal(0, 0.6), rng.normal(0, 0.6), 1.0])
    key = rng.uniform(1.8, 4.5)
    scene.add(pyrender.DirectionalLight(color=tint(rng, 0.08), intensity=key), pose=light_pose(key_dir, cv_to_world))
    if rng.random() < 0.7:
        fill_dir = np.array([rng.normal(0, 1.0), rng.normal(0, 1.0), rng.uniform(-0.3, 1.0)])
        scene.add(pyrender.DirectionalLight(color=tint(rng, 0.1), intensity=key * rng.uniform(0.15, 0.5)),
                  pose=light_pose(fill_dir, cv_to_world))
