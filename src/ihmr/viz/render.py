"""A tiny offscreen renderer (pyrender over EGL) for hand meshes.

Cameras use the OpenCV convention everywhere in ihmr: x right, y down, z forward (into the scene),
intrinsics ``K`` ``(3, 3)`` in pixels, extrinsics as a ``(4, 4)`` world-to-camera matrix. The
conversion to OpenGL's convention happens only here (:data:`CV_TO_GL`).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from ihmr.errors import IhmrError, InputError
from ihmr.geometry.camera import intrinsics, look_at
from ihmr.geometry.rotations import axis_angle_to_matrix

__all__ = ["CV_TO_GL", "MeshSpec", "load_pyrender", "offscreen_renderer", "release_renderer", "render_scene", "render_meshes", "orbit_views", "render_views", "tile"]

#: OpenCV camera axes (x right, y down, z forward) -> OpenGL camera axes (x right, y up, z backward),
#: ``(4, 4)``: a camera-to-world pose in OpenCV convention times this is pyrender's camera pose.
CV_TO_GL = np.diag([1.0, -1.0, -1.0, 1.0])


@dataclass
class MeshSpec:
    """A mesh to draw: ``vertices (V, 3)`` metres, ``faces (F, 3)``, colour RGBA ``(4,)`` uint8 or
    per-vertex ``(V, 4)``; ``face_colors (F, 4)`` overrides it when given."""

    vertices: np.ndarray
    faces: np.ndarray
    color: Sequence[int] | np.ndarray = (235, 150, 100, 255)
    face_colors: Optional[np.ndarray] = None


def load_pyrender():
    """Import pyrender (optional heavy dependency, hence lazy) for offscreen EGL rendering.

    Sets ``PYOPENGL_PLATFORM=egl`` unless already set and loads triton first (see below).

    Returns:
        the ``pyrender`` module.

    Raises:
        IhmrError: pyrender or EGL is missing (the message says what to install).
    """
    os.environ.setdefault("PYOPENGL_PLATFORM", "egl")
    # torch's optimisers import torch._dynamo and with it triton, whose bundled LLVM crashes when it
    # is loaded after Mesa's (llvmpipe) EGL driver: load triton first (0.1 s; all of torch._dynamo
    # takes ~1.4 s, which the first image paid even when nothing was refined). Checked: render, then
    # an Adam step, crashes without this and runs with it.
    try:
        import triton  # noqa: F401
    except Exception:  # pragma: no cover - no triton installed: nothing to protect
        pass
    try:
        import pyrender  # noqa: F401
    except Exception as e:  # ImportError, or OpenGL failing to find EGL
        raise IhmrError(
            "offscreen rendering needs pyrender with EGL: `pip install pyrender==0.1.45 --no-deps "
            "PyOpenGL==3.1.10` and Mesa's EGL (`apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri`); "
            f"import failed with {type(e).__name__}: {e}"
        ) from e
    return pyrender


_SHARED: dict = {}
_GL_LOCK = threading.RLock()  # the one GL context: one thread at a time


def offscreen_renderer(W: int, H: int):
    """The process's one offscreen renderer (pyrender), its framebuffer sized ``W x H`` pixels.

    Every ihmr render in a process goes through this one GL context, created on first use and
    resized (EGL renders into framebuffer objects, so any size works without a new context).
    Never more than one: pyrender's EGL ``delete_context`` calls ``eglTerminate`` on the display
    that all contexts of a process share, which invalidates every other live context
    (``EGL_BAD_CONTEXT`` on the next render). :func:`release_renderer` frees it.
    """
    pyrender = load_pyrender()
    r = _SHARED.get("renderer")
    if r is None:
        r = _SHARED["renderer"] = pyrender.OffscreenRenderer(int(W), int(H))
    r.viewport_width, r.viewport_height = int(W), int(H)
    return r


def release_renderer() -> None:
    """Free the process's offscreen renderer (a later render creates a new one)."""
    with _GL_LOCK:
        r = _SHARED.pop("renderer", None)
        if r is not None:
            r.delete()


def render_scene(scene, W: int, H: int, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    """``pyrender``'s ``OffscreenRenderer.render(scene, **kwargs)`` at ``W x H`` pixels on the
    process's one renderer (:func:`offscreen_renderer`), from any thread.

    An EGL context can be current in one thread only (another thread's ``eglMakeCurrent`` fails
    with ``EGL_BAD_ACCESS``, e.g. the second job of a web server whose jobs run on pool threads),
    so renders are serialised by a lock and the context is released from the thread after each.
    """
    with _GL_LOCK:
        r = offscreen_renderer(W, H)
        try:
            return r.render(scene, **kwargs)
        finally:
            _release_current(r)


def _release_current(r) -> None:
    display = getattr(getattr(r, "_platform", None), "_egl_display", None)
    if display is None:  # not EGL (e.g. OSMesa): nothing thread-bound to release
        return
    from OpenGL.EGL import EGL_NO_CONTEXT, EGL_NO_SURFACE, eglMakeCurrent

    eglMakeCurrent(display, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT)


def render_meshes(
    meshes: Sequence[MeshSpec],
    K: np.ndarray,
    size: tuple[int, int],
    world_to_cam: Optional[np.ndarray] = None,
    background: Optional[np.ndarray] = None,
    bg_color: Sequence[float] = (1.0, 1.0, 1.0),
    light_intensity: float = 3.0,
    smooth: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render meshes with a pinhole camera.

    Args:
        meshes: what to draw (world coordinates, metres).
        K: ``(3, 3)`` intrinsics (pixels).
        size: ``(W, H)`` image size.
        world_to_cam: ``(4, 4)`` OpenCV extrinsics (default identity: world = camera frame).
        background: optional ``(H, W, 3)`` uint8 image; rendered pixels are composited over it.
        bg_color: RGB in [0, 1] where nothing is drawn and no background is given.

    Returns:
        colour ``(H, W, 3)`` uint8, depth ``(H, W)`` float32 (metres along z, 0 where empty),
        mask ``(H, W)`` bool.
    """
    import trimesh  # lazy: heavy (0.4 s), needed only to write or render meshes

    pyrender = load_pyrender()
    W, H = int(size[0]), int(size[1])
    K = np.asarray(K, dtype=np.float64)
    if K.shape != (3, 3):
        raise InputError(f"K must be (3, 3), got {K.shape}")
    if background is not None and np.asarray(background).shape[:2] != (H, W):
        raise InputError(f"background must be ({H}, {W}, 3), got {np.asarray(background).shape}")
    E = np.eye(4) if world_to_cam is None else np.asarray(world_to_cam, dtype=np.float64)
    scene = pyrender.Scene(bg_color=[*bg_color, 0.0], ambient_light=[0.35, 0.35, 0.35])
    for m in meshes:
        v = np.asarray(m.vertices, dtype=np.float64)
        tm = trimesh.Trimesh(v, np.asarray(m.faces), process=False)
        if m.face_colors is not None:
            tm.visual.face_colors = np.asarray(m.face_colors, dtype=np.uint8)
            smooth_m = False
        else:
            c = np.asarray(m.color, dtype=np.uint8)
            tm.visual.vertex_colors = np.broadcast_to(c, (len(v), 4)).copy() if c.ndim == 1 else c
            smooth_m = smooth
        scene.add(pyrender.Mesh.from_trimesh(tm, smooth=smooth_m))
    cam = pyrender.IntrinsicsCamera(fx=K[0, 0], fy=K[1, 1], cx=K[0, 2], cy=K[1, 2], znear=0.01, zfar=100.0)
    cam_pose = np.linalg.inv(E) @ CV_TO_GL  # camera-to-world in OpenGL convention
    scene.add(cam, pose=cam_pose)
    # Key light from the camera, fill light from above-left.
    scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=light_intensity), pose=cam_pose)
    fill = cam_pose.copy()
    fill[:3, :3] = cam_pose[:3, :3] @ _rotation([-0.6, 0.0, 0.0]) @ _rotation([0.0, -0.5, 0.0])
    scene.add(pyrender.DirectionalLight(color=np.ones(3), intensity=light_intensity * 0.4), pose=fill)
    color, depth = render_scene(scene, W, H, flags=pyrender.RenderFlags.RGBA)
    mask = depth > 0
    rgb = color[..., :3].copy()
    if background is not None:
        rgb = np.where(mask[..., None], rgb, np.asarray(background, dtype=np.uint8)[..., :3])
    return rgb, depth.astype(np.float32), mask


def _rotation(axis_angle) -> np.ndarray:
    return axis_angle_to_matrix(torch.tensor(axis_angle, dtype=torch.float64)).numpy()


# Viewing directions (from the camera towards the scene) and image-up vectors, world frame.
_VIEWS = {
    "front": (np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])),
    "back": (np.array([0.0, 0.0, -1.0]), np.array([0.0, -1.0, 0.0])),
    "side": (np.array([-1.0, 0.0, 0.0]), np.array([0.0, -1.0, 0.0])),
    "top": (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])),
}


def orbit_views(
    vertices: np.ndarray, views: Sequence[str] = ("front", "side", "top"), size: int = 400, fov: float = 0.6,
    margin: float = 1.15,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cameras framing a point set ``(N, 3)`` from named views; returns ``(K, world_to_cam)`` each.

    Views (world frame, OpenCV-like: y down): ``front`` looks along +z, ``back`` along -z,
    ``side`` along -x, ``top`` along +y.
    """
    pts = np.asarray(vertices, dtype=np.float64).reshape(-1, 3)
    centre = 0.5 * (pts.min(0) + pts.max(0))
    radius = max(float(np.linalg.norm(pts - centre, axis=1).max()), 1e-6)
    dist = margin * radius / np.tan(fov / 2)
    f = 0.5 * size / np.tan(fov / 2)
    K = intrinsics(size, size, f)
    out = []
    for name in views:
        if name not in _VIEWS:
            raise InputError(f"unknown view {name!r}; known: {', '.join(_VIEWS)}")
        d, up = _VIEWS[name]
        out.append((K, look_at(centre - d * dist, centre, up)))
    return out


def tile(images: Sequence[np.ndarray], cols: Optional[int] = None, pad: int = 0, pad_value: int = 255) -> np.ndarray:
    """Tile equally sized ``(H, W, 3)`` images row-major into one image."""
    if not images:
        raise InputError("tile: no images")
    cols = cols or len(images)
    H, W = images[0].shape[:2]
    rows = -(-len(images) // cols)
    out = np.full((rows * H + (rows - 1) * pad, cols * W + (cols - 1) * pad, 3), pad_value, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[r * (H + pad) : r * (H + pad) + H, c * (W + pad) : c * (W + pad) + W] = im[..., :3]
    return out


def render_views(
    meshes: Sequence[MeshSpec], views: Sequence[str] = ("front", "side", "top"), size: int = 400, frame_points: Optional[np.ndarray] = None,
) -> np.ndarray:
    """Render ``meshes`` from several named views framed automatically; returns one tiled image."""
    pts = frame_points if frame_points is not None else np.concatenate([np.asarray(m.vertices) for m in meshes])
    imgs = [render_meshes(meshes, K, (size, size), E)[0] for K, E in orbit_views(pts, views, size)]
    return tile(imgs)
