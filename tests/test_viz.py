"""Mesh export round trips and the offscreen renderer's geometry."""

import json
import struct

import numpy as np
import pytest
import trimesh

from ihmr.errors import InputError
from ihmr.io.files import atomic_write
from ihmr.viz.export import HAND_COLORS, export_hand, export_hands


@pytest.fixture
def two_spheres():
    a = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    v = np.stack([a.vertices, a.vertices + [0.2, 0, 0]])
    return v, np.stack([a.faces, a.faces])


@pytest.mark.parametrize("suffix", [".obj", ".ply", ".glb"])
def test_two_hand_export_round_trip(tmp_path, two_spheres, suffix):
    v, f = two_spheres
    p = export_hands(tmp_path / f"hands{suffix}", v, f)
    if suffix == ".obj":  # two named objects, global 1-based indices
        text = p.read_text().splitlines()
        assert [ln for ln in text if ln.startswith("o ")] == ["o right", "o left"]
        loaded = trimesh.load(p, process=False, force="mesh")
        np.testing.assert_allclose(loaded.vertices, v.reshape(-1, 3), atol=1e-6)
        np.testing.assert_array_equal(loaded.faces, np.concatenate([f[0], f[1] + v.shape[1]]))
        return
    loaded = trimesh.load(p, process=False, force="scene" if suffix != ".ply" else "mesh")
    if suffix == ".ply":
        np.testing.assert_allclose(loaded.vertices, v.reshape(-1, 3), atol=1e-6)
        cols = loaded.visual.vertex_colors
        np.testing.assert_array_equal(cols[0], HAND_COLORS[0])
        np.testing.assert_array_equal(cols[-1], HAND_COLORS[1])
    else:
        geoms = list(loaded.geometry.values())
        assert len(geoms) == 2
        allv = np.concatenate([g.vertices for g in geoms])
        assert allv.shape == (2 * v.shape[1], 3)
        np.testing.assert_allclose(np.sort(allv[:, 0]), np.sort(v.reshape(-1, 3)[:, 0]), atol=1e-6)
        if suffix == ".glb":
            colors = {tuple(g.visual.vertex_colors[0]) for g in geoms}
            assert colors == {tuple(HAND_COLORS[0]), tuple(HAND_COLORS[1])}
            data = p.read_bytes()  # the glTF JSON chunk: every primitive has normals
            n = struct.unpack_from("<I", data, 12)[0]
            prims = [pr for m in json.loads(data[20:20 + n])["meshes"] for pr in m["primitives"]]
            assert len(prims) == 2 and all("NORMAL" in pr["attributes"] for pr in prims)
    assert not list(tmp_path.glob(".*.tmp"))


def test_single_export_and_errors(tmp_path, two_spheres):
    v, f = two_spheres
    p = export_hand(tmp_path / "right.obj", v[0], f[0])
    m = trimesh.load(p, process=False)
    np.testing.assert_allclose(m.vertices, v[0], atol=1e-6)
    np.testing.assert_array_equal(m.faces, f[0])
    with pytest.raises(InputError, match="unsupported mesh format"):
        export_hand(tmp_path / "x.stl", v[0], f[0])
    bad = v[0].copy()
    bad[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        export_hand(tmp_path / "x.obj", bad, f[0])


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError):
        with atomic_write(target) as fh:
            fh.write(b"half")
            raise RuntimeError("interrupted")
    assert not target.exists() and not list(tmp_path.iterdir())


def test_render_sphere_projects_where_expected():
    from ihmr.viz.render import MeshSpec, render_meshes

    s = trimesh.creation.icosphere(subdivisions=4, radius=0.05)
    c = np.array([0.03, -0.02, 0.5])
    K = np.array([[500.0, 0, 160], [0, 500.0, 120], [0, 0, 1]])
    rgb, depth, mask = render_meshes([MeshSpec(s.vertices + c, s.faces)], K, (320, 240))
    assert rgb.shape == (240, 320, 3) and mask.dtype == bool
    ys, xs = np.nonzero(mask)
    u, v = K[0, 0] * c[0] / c[2] + K[0, 2], K[1, 1] * c[1] / c[2] + K[1, 2]
    assert abs(xs.mean() + 0.5 - u) < 1.0 and abs(ys.mean() + 0.5 - v) < 1.0
    r_px = np.sqrt(mask.sum() / np.pi)
    expected = K[0, 0] * 0.05 / np.sqrt(c[2] ** 2 - 0.05**2)  # apparent radius of a sphere
    assert abs(r_px - expected) < 2.0
    assert depth[int(round(v)), int(round(u))] == pytest.approx(np.linalg.norm(c) - 0.05, abs=2e-3)


def test_render_from_other_threads():
    """The one GL context serves every thread in turn (a web server's jobs run on pool threads;
    without releasing the context after each render the second thread got EGL_BAD_ACCESS)."""
    import threading

    from ihmr.viz.render import MeshSpec, render_meshes

    s = trimesh.creation.icosphere(subdivisions=2, radius=0.05)
    K = np.array([[500.0, 0, 80], [0, 500.0, 60], [0, 0, 1]])
    spec = [MeshSpec(s.vertices + [0, 0, 0.5], s.faces)]
    ref = render_meshes(spec, K, (160, 120))[2].sum()
    assert ref > 0
    sums = []
    for _ in range(3):  # one new thread after another, then several at once
        t = threading.Thread(target=lambda: sums.append(render_meshes(spec, K, (160, 120))[2].sum()))
        t.start()
        t.join()
    threads = [threading.Thread(target=lambda: sums.append(render_meshes(spec, K, (160, 120))[2].sum())) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sums == [ref] * 7
    assert render_meshes(spec, K, (160, 120))[2].sum() == ref  # and the main thread again


def test_render_background_and_two_colours():
    from ihmr.viz.render import MeshSpec, render_meshes

    s = trimesh.creation.icosphere(subdivisions=3, radius=0.04)
    K = np.array([[400.0, 0, 100], [0, 400.0, 50], [0, 0, 1]])
    bg = np.zeros((100, 200, 3), np.uint8)
    bg[..., 1] = 77
    meshes = [MeshSpec(s.vertices + [-0.06, 0, 0.5], s.faces, (255, 0, 0, 255)), MeshSpec(s.vertices + [0.06, 0, 0.5], s.faces, (0, 0, 255, 255))]
    rgb, _, mask = render_meshes(meshes, K, (200, 100), background=bg)
    np.testing.assert_array_equal(rgb[~mask], bg[~mask])
    left, right = rgb[50, 52].astype(int), rgb[50, 148].astype(int)
    assert left[0] > left[2] + 50 and right[2] > right[0] + 50
