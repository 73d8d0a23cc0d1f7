"""Mesh depth buffer vs the brute-force torch z-buffer (_reference.rasterize_depth), and the
per-vertex visibility test on a sphere. Depth tolerance 1e-5 m (float64 kernel, float32 output);
face ids equal wherever the nearest face is unique."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.render import Camera, DepthBuffer, rasterize_depth, vertex_visibility
from backend.render import _reference as ref


def _compare(verts, faces, cam: Camera) -> DepthBuffer:
    buf = rasterize_depth(verts, faces, cam)
    d_ref, f_ref = ref.rasterize_depth(verts, faces, cam)
    assert buf.depth.shape == (cam.height, cam.width) and buf.depth.dtype == np.float32
    assert buf.face_id.dtype == np.int64
    np.testing.assert_array_equal(np.isfinite(buf.depth), np.isfinite(d_ref))
    np.testing.assert_array_equal(buf.face_id >= 0, f_ref >= 0)
    fin = np.isfinite(d_ref)
    np.testing.assert_allclose(buf.depth[fin], d_ref[fin], atol=1e-5, rtol=0)
    differ = buf.face_id != f_ref
    # where ids differ, both faces are at the same depth at that pixel (shared edges/vertices)
    assert differ.mean() < 0.01
    return buf


def test_sphere_depth_matches_reference(sphere_mesh, small_camera) -> None:
    v, f = sphere_mesh
    buf = _compare(v, f, small_camera)
    assert 0.2 < buf.mask.mean() < 0.9
    # nearest point of a 0.1 m sphere seen from 0.6 m is at depth 0.5
    assert abs(float(buf.depth.min()) - 0.5) < 2e-3
    assert (buf.depth[buf.mask] < 0.6).all()  # only the front half is visible


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_triangle_soup_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    cam = Camera.look_at((0.1, 0.05, 0.7), (0.0, 0.0, 0.0), width=40, height=30, fov_y_deg=35.0)
    centres = rng.uniform(-0.15, 0.15, size=(60, 1, 3))
    verts = (centres + rng.normal(scale=0.05, size=(60, 3, 3))).reshape(-1, 3)
    verts[:6] += np.array([0.1, 0.05, 0.7]) + rng.normal(scale=0.01, size=(6, 3))  # straddle the camera
    verts[6:9] *= 20.0  # huge triangle
    faces = np.arange(len(verts)).reshape(-1, 3)
    faces[1::2] = faces[1::2, ::-1]  # both windings
    _compare(verts, faces, cam)


def test_depth_buffer_edge_cases(small_camera) -> None:
    empty = rasterize_depth(np.zeros((0, 3)), np.zeros((0, 3), np.int64), small_camera)
    assert np.isinf(empty.depth).all() and (empty.face_id == -1).all()
    behind = rasterize_depth(np.array([[0, 0, 1.0], [0.1, 0, 1.0], [0, 0.1, 1.0]]), [[0, 1, 2]], small_camera)
    assert (behind.face_id == -1).all()
    # torch inputs are accepted
    tbuf = rasterize_depth(torch.tensor([[-1.0, -1, 0], [1, -1, 0], [0, 1, 0]]), torch.tensor([[0, 1, 2]]), small_camera)
    assert (tbuf.face_id == 0).mean() > 0.5 and np.allclose(tbuf.depth[tbuf.mask], 0.6, atol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        rasterize_depth(np.zeros((3, 3)), [[0, 1, 3]], small_camera)
    with pytest.raises(ValueError, match=r"\(V, 3\)"):
        rasterize_depth(np.zeros((3, 2)), [[0, 1, 2]], small_camera)
    with pytest.raises(ValueError, match="NaN"):
        rasterize_depth(np.full((3, 3), np.nan), [[0, 1, 2]], small_camera)


def _facing(v: np.ndarray, cam: Camera) -> np.ndarray:
    """cosine between the sphere normal and the direction to the camera."""
    n = v / np.linalg.norm(v, axis=1, keepdims=True)
    to_cam = cam.center[None] - v
    return (n * to_cam).sum(1) / np.linalg.norm(to_cam, axis=1)


@pytest.mark.parametrize("yaw", [0.0, 60.0, 150.0])
def test_sphere_front_visible_back_hidden(yaw: float, fine_sphere_mesh) -> None:
    v, f = fine_sphere_mesh
    cam = Camera.look_at((0.0, 0.0, 0.6), (0.0, 0.0, 0.0), width=128, height=128, fov_y_deg=25.0).orbit_yaw(yaw)
    vis = vertex_visibility(v, f, cam)
    c = _facing(v, cam)
    front, back = c > 0.25, c < -0.1
    assert front.sum() > 100 and back.sum() > 100
    assert vis[front].all()
    assert not vis[back].any()


def test_occluder_hides_vertices(sphere_mesh) -> None:
    v, f = sphere_mesh
    cam = Camera.look_at((0.0, 0.0, 0.6), (0.0, 0.0, 0.0), width=96, height=96, fov_y_deg=30.0)
    # a square plate at z = 0.2 covering x > 0 (image right half)
    plate = np.array([[0.0, -0.2, 0.2], [0.3, -0.2, 0.2], [0.3, 0.2, 0.2], [0.0, 0.2, 0.2]])
    verts = np.concatenate([v, plate])
    faces = np.concatenate([f, len(v) + np.array([[0, 1, 2], [0, 2, 3]])])
    vis = vertex_visibility(verts, faces, cam)[: len(v)]
    front = _facing(v, cam) > 0.25
    assert not vis[front & (v[:, 0] > 0.02)].any()  # behind the plate (beyond its edge by > 1 px)
    assert vis[front & (v[:, 0] < -0.02)].all()
    # a reusable buffer gives the same answer; tolerance 0 on exact vertex depths still sees the front
    buf = rasterize_depth(verts, faces, cam)
    np.testing.assert_array_equal(vertex_visibility(verts, faces, cam, buffer=buf)[: len(v)], vis)


def test_visibility_outside_image_and_bad_args(sphere_mesh, small_camera) -> None:
    v, f = sphere_mesh
    shifted = v + np.array([1.0, 0.0, 0.0])  # entirely off-screen
    assert not vertex_visibility(shifted, f, small_camera).any()
    with pytest.raises(ValueError):
        vertex_visibility(v, f, small_camera, tol=-1.0)
    with pytest.raises(ValueError, match="buffer"):
        vertex_visibility(v, f, small_camera, buffer=rasterize_depth(v, f, small_camera.resized(32, 24)))
