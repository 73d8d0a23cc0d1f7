"""The splat display's numpy side (no bpy): depth sorting, quad indices, the worker sorter, the
splat arrays from 3DGS columns, the blended skinning of their covariances and the view-dependent
splats' blend against the backend's."""

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


def _view_case(rng, n=400, k=250):
    """A random LOD's view data (backend ViewColors, model frame), its means, colours, scales, the
    global and neck joints' world rotations and the rows' global shares, and a camera centre."""
    from backend.avatar.view_colors import ViewColors

    rows = np.sort(rng.choice(n, k, replace=False))
    toward = rng.normal(size=(k, 3))
    toward /= np.linalg.norm(toward, axis=1, keepdims=True)
    view = ViewColors(rows, rng.uniform(0, 1, (k, 3)), toward, rng.uniform(1.0, 3.0, k))
    means = rng.normal(scale=0.1, size=(n, 3)).astype(np.float32)
    joints = rng.normal(size=(2, 4))
    joints[:, 0] = np.abs(joints[:, 0]) + 1.5  # within 180 degrees of rest (w >= 0), as the rig's
    joints /= np.linalg.norm(joints, axis=1, keepdims=True)
    share = rng.uniform(0, 1, k).astype(np.float32)
    share[: k // 4] = 1.0  # the body's rows
    share[k // 4: k // 2] = 0.0  # the head's
    return view, means, rng.uniform(0, 1, (n, 3)).astype(np.float32), rng.uniform(0.002, 0.02, (n, 3)), joints, share


def test_view_dependent_splats_match_the_backends_blend(mods) -> None:
    """The scene's view blend (view columns in the Blender frame, directions turned by the bones'
    world rotations and the object's world matrix, weights from the eye) equals the backend's
    for_views on random inputs, for cameras all around the splats, with and without an object
    transform; seen_from blends colours and covariance factors as the backend blends colours and
    scales."""
    import torch

    from backend.avatar.view_colors import for_views
    from omg_avatar.omg_blender_addon.axes import MODEL_TO_BLENDER
    from omg_avatar.omg_blender_addon.scene_data import view_columns, view_from_columns

    _, data = mods
    rng = np.random.default_rng(11)
    view, means, colors, scales, joints, share = _view_case(rng)
    n = len(means)
    side, toward_b, grow = view_columns(view, colors)
    back = view_from_columns(side, toward_b, grow)  # the columns hold the view data exactly
    assert np.array_equal(back.rows, view.rows)
    np.testing.assert_allclose(back.toward, view.toward, atol=1e-7)
    assert np.array_equal(back.side, view.side) and np.array_equal(back.grow, view.grow)
    assert view_from_columns(colors, np.zeros((n, 3), np.float32), np.ones(n, np.float32)) is None
    weights = np.zeros((n, 5), np.float32)  # share of the global bone among five, rows summing to 2
    weights[view.rows, 0] = 2.0 * share
    weights[view.rows, 1] = 2.0 * (1.0 - share)
    rest = data.rest_view(side, toward_b, grow, weights, 0)
    np.testing.assert_allclose(rest.share, share, atol=1e-6)
    C = MODEL_TO_BLENDER
    J = np.zeros((1, 5, 4), np.float32)
    J[0, :2] = joints
    R = quat_to_matrix(joints)
    checked = 0
    for world in (np.eye(3), quat_to_matrix(rng.normal(size=(1, 4)))[0] * 1.7):
        skins = [world @ C @ R[j] @ C.T @ np.linalg.inv(world) for j in range(2)]  # world axes, as skin_matrices
        from backend.rotations import matrix_to_quat

        posed = data.posed_view(rest, n, matrix_to_quat(skins[0]), matrix_to_quat(skins[1]), world)
        assert np.array_equal(np.flatnonzero(np.abs(posed.toward).max(1) > 0), view.rows)
        for centre in rng.normal(scale=0.6, size=(6, 3)):
            ref_c, ref_s = for_views(torch.as_tensor(colors), torch.as_tensor(scales, dtype=torch.float32), view,
                                     torch.as_tensor(means)[None], torch.as_tensor(J), share, centre[None])
            placed = (means.astype(np.float64) @ C.T) @ world.T          # the splats in the scene's world
            eye = world @ C @ centre
            w = data.view_weights(posed.toward, placed, eye)
            assert ((w > 0.01) & (w < 0.99)).any() and (w[view.rows] < 0.01).any()  # blends, and sides
            splats = data.SplatData(placed.astype(np.float32), np.tile(np.eye(3, dtype=np.float32), (n, 1, 1)),
                                    colors, np.ones(n, np.float32), posed.side, posed.toward, posed.grow)
            seen = data.seen_from(splats, eye)
            np.testing.assert_allclose(seen.colors, ref_c[0].numpy(), atol=2e-5)
            np.testing.assert_allclose(seen.factors[:, 0, 0] * scales[:, 0], ref_s[0, :, 0].numpy(), rtol=2e-5)
            checked += 1
    assert checked == 12
    # the orthographic limit: the direction towards a camera far away
    d = rng.normal(size=3)
    d /= np.linalg.norm(d)
    far = data.view_weights(posed.toward, placed, placed.mean(0) + 1e6 * d)
    np.testing.assert_allclose(data.view_weights(posed.toward, placed, d, ortho=True), far, atol=1e-4)


def test_view_columns_a_user_edited_are_drawn_view_independent(mods) -> None:
    _, data = mods
    rng = np.random.default_rng(12)
    n = 50
    side = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    toward = np.zeros((n, 3), np.float32)
    toward[::5] = (0.0, 1.0, 0.0)
    grow = np.ones(n, np.float32)
    assert data.rest_view(side, toward, grow, None, None).rows.tolist() == list(range(0, n, 5))
    assert data.rest_view(side, 0.5 * toward, grow, None, None) is None            # not unit
    assert data.rest_view(side, toward, 0.5 * grow, None, None) is None            # shrinks
    assert data.rest_view(side, np.zeros_like(toward), grow, None, None) is None   # no view data
    bad = grow.copy()
    bad[3] = np.nan
    assert data.rest_view(side, toward, bad, None, None) is None
    # a splat of a scene without view data keeps its colour and size; concat fills it in
    plain = data.SplatData(np.zeros((2, 3), np.float32), np.tile(np.eye(3, dtype=np.float32), (2, 1, 1)),
                           np.full((2, 3), 0.3, np.float32), np.ones(2, np.float32))
    viewed = data.SplatData(np.ones((1, 3), np.float32), np.eye(3, dtype=np.float32)[None],
                            np.zeros((1, 3), np.float32), np.ones(1, np.float32), np.ones((1, 3), np.float32),
                            np.float32([[0.0, 0.0, 1.0]]), np.float32([2.0]))
    both = data.SplatData.concat([plain, viewed])
    np.testing.assert_array_equal(both.toward, [[0, 0, 0], [0, 0, 0], [0, 0, 1]])
    np.testing.assert_array_equal(both.side[:2], plain.colors)
    np.testing.assert_array_equal(both.grow, [1, 1, 2])
    seen = data.seen_from(both, np.float32([5.0, 0.0, 1.0]))      # 90 deg off: the side alone
    np.testing.assert_allclose(seen.colors, [[0.3] * 3, [0.3] * 3, [1, 1, 1]], atol=1e-7)
    np.testing.assert_allclose(seen.factors[2], 2.0 * np.eye(3))
    assert data.seen_from(plain, np.zeros(3)) is plain
