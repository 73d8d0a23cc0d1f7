"""The splat display's numpy side (no bpy): depth sorting, quad indices, the worker sorter, the
splat arrays from 3DGS columns and the blended skinning of their covariances."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from backend.rotations import quat_to_matrix
from backend.avatar.ply import C0
from backend.render.camera import Camera


@pytest.fixture(scope="module")
def mods():
    """splat_sort and splat_data imported from the tree as the extension package (relative
    imports, as inside Blender)."""
    import build_addon

    build_addon.load_tree("omg_avatar")
    return (importlib.import_module("omg_avatar.omg_blender_addon.splat_sort"),
            importlib.import_module("omg_avatar.omg_blender_addon.splat_data"))


def test_two_overlapping_splats_swap_order_when_the_view_flips(mods) -> None:
    sort, _ = mods
    means = np.array([[0.0, 0.0, 0.1], [0.0, 0.0, -0.1]], np.float32)  # overlap on the z axis
    front = Camera.look_at(eye=(0, 0, 1.0), target=(0, 0, 0))
    back = Camera.look_at(eye=(0, 0, -1.0), target=(0, 0, 0))
    # back to front: from +z the splat at z=-0.1 is farther, so it is drawn first
    assert sort.depth_order(means, front.viewmat).tolist() == [1, 0]
    assert sort.depth_order(means, back.viewmat).tolist() == [0, 1]
    d = sort.view_depths(means, front.viewmat)
    np.testing.assert_allclose(d, [0.9, 1.1], atol=1e-6)


def test_depth_order_is_back_to_front_for_many_points(mods) -> None:
    sort, _ = mods
    rng = np.random.default_rng(1)
    means = rng.normal(size=(5000, 3)).astype(np.float32)
    cam = Camera.look_at(eye=(3.0, 1.0, 4.0), target=(0, 0, 0))
    order = sort.depth_order(means, cam.viewmat)
    z = cam.to_camera(means)[:, 2]
    assert sorted(order.tolist()) == list(range(5000))
    assert np.all(np.diff(z[order]) <= 0)


def test_quad_indices_draw_each_splat_as_two_triangles_in_order(mods) -> None:
    sort, _ = mods
    idx = sort.quad_indices(np.array([2, 0], np.int32))
    assert idx.tolist() == [[8, 9, 10], [8, 10, 11], [0, 1, 2], [0, 2, 3]]


def test_sorter_runs_on_a_worker_and_hands_the_result_over_once(mods) -> None:
    import threading

    sort, _ = mods
    means = np.random.default_rng(2).normal(size=(20000, 3)).astype(np.float32)
    cam = Camera.look_at(eye=(0, 0, 5.0), target=(0, 0, 0))
    done = threading.Event()
    s = sort.Sorter()
    try:
        assert s.request(("view", 1), means, cam.viewmat, on_done=done.set)
        assert done.wait(30)
        key, order = s.take()
        assert key == ("view", 1)
        np.testing.assert_array_equal(order, sort.depth_order(means, cam.viewmat))
        assert s.take() is None
    finally:
        s.shutdown()


def _columns(rng, n):
    q = rng.normal(size=(n, 4))
    return {**{f"rot_{i}": q[:, i].astype(np.float32) for i in range(4)},
            **{f"scale_{i}": rng.uniform(-6, -3, n).astype(np.float32) for i in range(3)},
            **{f"f_dc_{i}": rng.normal(size=n).astype(np.float32) for i in range(3)},
            "opacity": rng.normal(size=n).astype(np.float32)}, q


def test_rest_splats_match_the_3dgs_conventions(mods) -> None:
    _, data = mods
    rng = np.random.default_rng(3)
    cols, q = _columns(rng, 200)
    rest = data.rest_splats(cols)
    s = np.exp(np.stack([cols[f"scale_{i}"] for i in range(3)], 1).astype(np.float64))
    R = quat_to_matrix(q)
    cov = R @ (s[:, :, None] ** 2 * np.eye(3)) @ R.transpose(0, 2, 1)
    got = rest.RS.astype(np.float64) @ rest.RS.transpose(0, 2, 1).astype(np.float64)
    np.testing.assert_allclose(got, cov, rtol=1e-4, atol=1e-12)
    f_dc = np.stack([cols[f"f_dc_{i}"] for i in range(3)], 1)
    np.testing.assert_allclose(rest.colors, np.clip(0.5 + C0 * f_dc, 0, 1), atol=1e-6)
    np.testing.assert_allclose(rest.opacity, 1 / (1 + np.exp(-cols["opacity"])), atol=1e-6)


def test_blended_skinning_matches_a_per_point_reference(mods) -> None:
    _, data = mods
    rng = np.random.default_rng(4)
    n, J = 300, 5
    w = rng.uniform(0, 1, (n, J)).astype(np.float32) * (rng.uniform(size=(n, J)) > 0.4)
    w[0] = 0.0  # a point no bone deforms keeps its rest orientation
    qs = rng.normal(size=(J, 4))
    qs[:, 0] = np.abs(qs[:, 0]) + 2.0  # joint rotations within 180 degrees of rest (w >= 0)
    skin = quat_to_matrix(qs).astype(np.float32)
    world = quat_to_matrix(rng.normal(size=(1, 4)))[0] * 2.0
    B = data.blended_matrices(w, skin, world)
    for i in range(n):
        if w[i].sum() > 0:  # the normalized weighted sum of the joints' unit quaternions
            q = sum(w[i, j] * qs[j] / np.linalg.norm(qs[j]) for j in range(J))
            ref = quat_to_matrix(q[None])[0] @ world
        else:
            ref = world
        np.testing.assert_allclose(B[i], ref, rtol=1e-5, atol=1e-5)
    # one joint: exactly its rotation; the backend's definition (posing.blended_quats) agrees
    from backend.avatar.posing import blended_quats

    A = np.tile(np.eye(4), (1, J, 1, 1))
    A[0, :, :3, :3] = skin
    wn = np.where(w.sum(1, keepdims=True) > 0, w, 1.0 / J)
    np.testing.assert_allclose(data.blended_matrices(wn, skin, np.eye(3)),
                               quat_to_matrix(blended_quats(wn, A)[0]), atol=1e-5)
    cols, _ = _columns(rng, n)
    rest = data.rest_splats(cols)
    means = rng.normal(size=(n, 3)).astype(np.float32)
    posed = data.posed_splats(rest, means, B)
    np.testing.assert_allclose(posed.factors, B @ rest.RS, rtol=1e-5, atol=1e-9)
    assert np.array_equal(posed.means, means)
    # no skinning: the world matrix alone
    np.testing.assert_allclose(data.blended_matrices(None, None, world)[0], world, rtol=1e-6)
