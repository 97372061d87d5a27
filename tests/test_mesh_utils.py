"""ihmr.geometry.mesh: boundary loops, hole capping without new vertices, closedness, volume."""

import numpy as np
import pytest
import trimesh

from ihmr.errors import InputError
from ihmr.geometry.mesh import (
    boundary_loops,
    cap_holes,
    face_areas,
    face_normals,
    is_watertight,
    signed_volume,
)


def _remove_faces(mesh, drop):
    """Faces of ``mesh`` without the ``drop`` mask, vertices re-indexed to the used ones."""
    f = np.asarray(mesh.faces)[~drop]
    used = np.unique(f)
    remap = -np.ones(len(mesh.vertices), dtype=np.int64)
    remap[used] = np.arange(len(used))
    return np.asarray(mesh.vertices)[used], remap[f]


def _check_closed(v, f_open, f_closed, n_loops):
    assert not is_watertight(f_open)
    assert is_watertight(f_closed)
    np.testing.assert_array_equal(f_closed[: len(f_open)], f_open)  # input faces kept first
    assert f_closed.max() < len(v)  # no vertex added
    loops = boundary_loops(f_open)
    assert len(loops) == n_loops
    assert len(f_closed) - len(f_open) == sum(len(lp) - 2 for lp in loops)
    m = trimesh.Trimesh(v, f_closed, process=False)
    assert m.is_watertight and m.is_winding_consistent and m.is_volume
    assert boundary_loops(f_closed) == []


def test_icosphere_with_removed_cap():
    sphere = trimesh.creation.icosphere(subdivisions=3, radius=1.0)
    v_all = np.asarray(sphere.vertices)
    drop = (v_all[sphere.faces][:, :, 2] > 0.8).all(1)
    v, f = _remove_faces(sphere, drop)
    closed = cap_holes(v, f)
    _check_closed(v, f, closed, 1)
    vol = signed_volume(v, closed)
    # The cap is a flat-ish polygon slightly inside the removed spherical cap.
    assert 0.97 * sphere.volume < vol <= sphere.volume + 1e-9
    np.testing.assert_allclose(vol, trimesh.Trimesh(v, closed, process=False).volume, rtol=1e-12)


def test_cylinder_with_both_caps_removed_is_restored_exactly():
    cyl = trimesh.creation.cylinder(radius=0.5, height=2.0, sections=24)
    drop = np.abs(cyl.face_normals[:, 2]) > 0.99  # the two caps (fans from centre vertices)
    v, f = _remove_faces(cyl, drop)
    assert len(v) == 48  # the centre vertices of the caps are gone
    closed = cap_holes(v, f)
    _check_closed(v, f, closed, 2)
    # Planar loops: the minimum-area caps lie in the cap planes, the volume is the prism's.
    np.testing.assert_allclose(signed_volume(v, closed), cyl.volume, rtol=1e-12)
    caps = closed[len(f):]
    n = face_normals(v, caps)
    assert np.allclose(np.abs(n[:, 2]), 1.0)
    z = v[caps[:, 0], 2]
    assert np.all(np.sign(n[:, 2]) == np.sign(z))  # outward: +z at the top, -z at the bottom
    np.testing.assert_allclose(face_areas(v, caps).sum(), 2 * 24 / 2 * 0.25 * np.sin(2 * np.pi / 24), rtol=1e-12)


def test_boundary_loop_order_follows_half_edges():
    cyl = trimesh.creation.cylinder(radius=0.5, height=2.0, sections=12)
    drop = cyl.face_normals[:, 2] > 0.99  # top cap
    v, f = _remove_faces(cyl, drop)
    (loop,) = boundary_loops(f)
    assert len(loop) == 12 and loop[0] == loop.min()
    he = {tuple(e) for e in np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]]).tolist()}
    for a, b in zip(loop, np.roll(loop, -1)):
        assert (a, b) in he and (b, a) not in he
    assert np.allclose(v[loop, 2], 1.0)


def test_inward_input_stays_inward_and_closed_input_unchanged():
    cyl = trimesh.creation.cylinder(radius=0.5, height=2.0, sections=16)
    drop = cyl.face_normals[:, 2] > 0.99
    v, f = _remove_faces(cyl, drop)
    inward = cap_holes(v, f[:, ::-1])
    assert is_watertight(inward)
    np.testing.assert_allclose(signed_volume(v, inward), -cyl.volume, rtol=1e-12)
    closed = np.asarray(cyl.faces)
    np.testing.assert_array_equal(cap_holes(cyl.vertices, closed), closed)
    assert boundary_loops(closed) == []


def test_cap_never_reuses_an_existing_edge():
    # A folded square of two triangles sharing the diagonal 0-2; its other side must use 1-3
    # even though 0-2 is the shorter (smaller-area) diagonal.
    v = np.array([[0, 0, 0], [1.2, -0.2, 0.6], [1, 1, 0], [-0.2, 1.2, 0.6]])  # 0-2 short, 1-3 long
    f = np.array([[0, 1, 2], [0, 2, 3]])
    from ihmr.geometry.mesh import min_area_triangulation

    assert sorted(map(sorted, min_area_triangulation(v))) == [[0, 1, 2], [0, 2, 3]]  # unconstrained: 0-2
    closed = cap_holes(v, f)
    caps = closed[2:]
    assert {frozenset(t) for t in caps.tolist()} == {frozenset((1, 2, 3)), frozenset((0, 1, 3))}
    assert is_watertight(closed)


def test_volume_and_normals_of_a_box_and_batching():
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    v, f = np.asarray(box.vertices), np.asarray(box.faces)
    np.testing.assert_allclose(signed_volume(v, f), 6.0)
    np.testing.assert_allclose(face_areas(v, f).sum(), 2 * (2 + 3 + 6))
    batch = np.stack([v, 2 * v + 5.0])  # scaled and translated
    np.testing.assert_allclose(signed_volume(batch, f), [6.0, 48.0])
    n = face_normals(batch, f)
    assert n.shape == (2, len(f), 3)
    np.testing.assert_allclose(n[0], n[1])
    np.testing.assert_allclose(n[0], box.face_normals)


def test_errors():
    # Two squares sharing only vertex 0: a non-manifold boundary vertex.
    f = np.array([[0, 1, 2], [0, 2, 3], [0, 4, 5], [0, 5, 6]])
    with pytest.raises(InputError, match="non-manifold"):
        boundary_loops(f)
    with pytest.raises(InputError, match="integer"):
        cap_holes(np.zeros((3, 3)), np.zeros((1, 3)))
    with pytest.raises(InputError, match="index vertex"):
        cap_holes(np.zeros((3, 3)), np.array([[0, 1, 3]]))
    assert not is_watertight(np.zeros((0, 3), dtype=np.int64))
    assert boundary_loops(np.zeros((0, 3), dtype=np.int64)) == []
