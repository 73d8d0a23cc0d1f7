"""The add-on's pure-numpy side (no bpy): axis conversion and the scene layout of an avatar.

The scene layout is checked by re-implementing what Blender does with it (shape keys, then linear
blend skinning by the Armature modifier with bones whose rest axes are the model axes) and
comparing with the backend's ``pose``: identical for LOD 0 and the skinned parts, up to the joints' small
shift with expression (the backend regresses joints from the expressive mesh, a rig's are fixed).
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from backend.avatar.gaussians import ClampedShape, GaussianAvatar, GaussianSet, SkinnedPart
from backend.avatar.posing import body_weights, lbs_numpy, model_lods, pose, shaped_vertices
from backend.head import HeadParams, load_head_model
from backend.render.camera import Camera
from backend.rotations import axis_angle_to_matrix, quat_to_matrix


@pytest.fixture(scope="module")
def addon():
    """The add-on's numpy modules, imported from the tree as the extension package (they use
    relative imports into the backend, as inside Blender)."""
    import build_addon

    build_addon.load_tree("omg_avatar")
    return (importlib.import_module("omg_avatar.omg_blender_addon.axes"),
            importlib.import_module("omg_avatar.omg_blender_addon.scene_data"))


def test_axes_points_and_quaternions_agree(addon) -> None:
    axes, _ = addon
    rng = np.random.default_rng(0)
    p = rng.normal(size=(50, 3))
    C = axes.MODEL_TO_BLENDER
    assert np.allclose(axes.points_to_blender(p), p @ C.T, atol=1e-6)
    assert np.allclose(axes.points_to_model(axes.points_to_blender(p)), p, atol=1e-6)
    assert np.allclose(axes.points_to_blender([[0, 1, 0], [0, 0, 1]]), [[0, 0, 1], [0, -1, 0]])  # up, face -> -Y
    q = rng.normal(size=(50, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    qb = axes.quats_to_blender(q)
    assert np.allclose(quat_to_matrix(qb), C @ quat_to_matrix(q), atol=1e-5)  # covariance C S C^T
    assert np.allclose(axes.quats_to_model(qb), q, atol=1e-6)


@pytest.fixture(scope="module")
def synthetic():
    """A stand-in avatar with identity, offsets and skinned parts (body, jaw-bound teeth with a
    clamped mouthFunnel key, a blended cavity), without running the photo pipeline."""
    model = load_head_model(None)
    rng = np.random.default_rng(1)
    shape = rng.normal(size=model.n_shape).astype(np.float32) * 0.5
    params = HeadParams(shape, np.zeros((1, model.n_expr)), np.zeros((1, 5, 3)), np.zeros((1, 3)))
    rest0 = shaped_vertices(model, shape)
    lods, offs = {}, {}
    for l, lod in model_lods(model, [0, 1]).items():
        n = lod.n_verts
        lods[l] = GaussianSet(lod.upsample @ rest0, np.tile([1.0, 0, 0, 0], (n, 1)), np.full((n, 3), 2e-3),
                              rng.uniform(0.1, 0.9, n), rng.uniform(0, 1, (n, 3)))
        offs[l] = rng.normal(scale=1e-3, size=(n, 3)).astype(np.float32)
    sh = GaussianSet(rng.normal(scale=0.1, size=(300, 3)) + [0, -0.2, -0.05], np.tile([1.0, 0, 0, 0], (300, 1)),
                     np.full((300, 3), 4e-3), np.full(300, 0.9), np.full((300, 3), 0.3))
    teeth = GaussianSet(rng.normal(scale=0.01, size=(40, 3)) + [0, -0.05, 0.06], np.tile([1.0, 0, 0, 0], (40, 1)),
                        np.full((40, 3), 1e-3), np.full(40, 0.9), np.full((40, 3), 0.9))
    cavity = GaussianSet(rng.normal(scale=0.01, size=(30, 3)) + [0, -0.04, 0.03], np.tile([1.0, 0, 0, 0], (30, 1)),
                         np.full((30, 3), 2e-3), np.full(30, 0.9), np.full((30, 3), 0.05))
    jaw = np.zeros((40, 5), np.float32)
    jaw[:, 2] = 1.0
    parts = [SkinnedPart("body", sh, body_weights(300)),
             SkinnedPart("teeth_lower", teeth, jaw, clamped={"mouthFunnel": ClampedShape(0.25, rng.normal(
                 scale=0.005, size=(40, 3)))}),
             SkinnedPart("cavity", cavity, rng.dirichlet(np.ones(5), 30),
                         {"tongueOut": rng.normal(scale=0.005, size=(30, 3)),
                          "jawOpen": rng.normal(scale=0.005, size=(30, 3))})]
    cam = Camera(np.eye(3, dtype=np.float32), np.eye(4, dtype=np.float32), 512, 512)
    av = GaussianAvatar("standin", None, params, cam, np.zeros((model.n_verts, 3), np.float32), lods, offs, parts)
    return model, av


def _blender_skinning(axes, data, lod, model, p: HeadParams) -> np.ndarray:
    """What Blender evaluates: rest + shape keys (expressions, correctives), then LBS with the rig."""
    R = axis_angle_to_matrix(p.pose[0])  # (5, 3, 3) = bone local rotations
    feats = np.array([(R[j] - np.eye(3))[r, c] for j, r, c in data.pose_features])
    pts = lod.positions + np.einsum("e,enc->nc", p.expr[0], lod.expr_deltas)
    for name, expr, start, d in zip(lod.clamped_names, lod.clamped_exprs, lod.clamped_starts, lod.clamped_deltas):
        pts = pts + max(float(p.expr[0, model.expr_names.index(expr)]) - start, 0.0) * d  # its driver
    if len(feats):
        pts = pts + np.einsum("k,knc->nc", feats, lod.pose_deltas)
    C = axes.MODEL_TO_BLENDER
    # bone rest = [C | J]; deform matrix D_j = M_j B_j^-1 built down the chain, with the root's location
    J = data.joints.astype(np.float64)
    M = []
    for j, parent in enumerate(data.parents):
        local = np.eye(4)
        local[:3, :3] = R[j]
        if j == 0:
            local[:3, 3] = p.transl[0]
            B = np.eye(4)
            B[:3, :3], B[:3, 3] = C, J[0]
            M.append(B @ local)
        else:
            rel = np.eye(4)
            rel[:3, 3] = C.T @ (J[j] - J[parent])  # parent-bone space offset of the child's head
            M.append(M[parent] @ rel @ local)
    D = []
    for j in range(len(M)):
        B = np.eye(4)
        B[:3, :3], B[:3, 3] = C, J[j]
        D.append(M[j] @ np.linalg.inv(B))
    D = np.stack(D)
    T = np.einsum("nj,jrc->nrc", lod.weights, D)
    return np.einsum("nrc,nc->nr", T[:, :3, :3], pts) + T[:, :3, 3]


def test_scene_layout_reproduces_backend_pose(addon, synthetic) -> None:
    axes, sd = addon
    ATTRIBUTE_NAMES, scene_data = sd.ATTRIBUTE_NAMES, sd.scene_data
    model, av = synthetic
    data = scene_data(av, model, "Test")
    assert sorted(data.lods) == [0, 1]
    assert data.expr_names == model.expr_names and data.head_expr_deltas.shape == (model.n_expr, model.n_verts, 3)
    for l, lod in data.lods.items():
        assert lod.n == len(av.lods[l]) + 370 and lod.n_parts == 370
        assert lod.part_names == ["body", "teeth_lower", "cavity"] and lod.part_counts == [300, 40, 30]
        assert set(lod.columns) == set(ATTRIBUTE_NAMES)
        assert np.allclose(lod.weights.sum(1), 1.0, atol=1e-5)
        # the parts move with expressions only through their own shape keys (the cavity's here)
        moved = [model.expr_names[e] for e in np.flatnonzero(np.abs(lod.expr_deltas[:, lod.n_head:]).max((1, 2)))]
        assert moved == ["jawOpen", "tongueOut"]
        assert np.all(lod.expr_deltas[:, lod.n_head:lod.n_head + 340] == 0)
        np.testing.assert_allclose(lod.expr_deltas[model.expr_names.index("tongueOut"), lod.n_head + 340:],
                                   axes.points_to_blender(av.parts[2].shapes["tongueOut"]), atol=1e-7)
        np.testing.assert_array_equal(lod.weights[lod.n_head:], av.part_weights())
        # the teeth's clamped key: one shape key of its own, zero on every other point
        assert lod.clamped_names == ["mouthFunnel beyond 0.2500"] and lod.clamped_exprs == ["mouthFunnel"]
        assert lod.clamped_starts == [0.25] and lod.clamped_deltas.shape == (1, lod.n, 3)
        np.testing.assert_array_equal(lod.clamped_deltas[0, lod.n_head + 300:lod.n_head + 340],
                                      axes.points_to_blender(av.parts[1].clamped["mouthFunnel"].delta))
        assert not np.any(lod.clamped_deltas[0, :lod.n_head + 300])
        assert not np.any(lod.clamped_deltas[0, lod.n_head + 340:])
    rng = np.random.default_rng(2)
    expr = (rng.normal(size=(1, model.n_expr)) * 0.5).astype(np.float32)
    pz = np.zeros((1, 5, 3), np.float32)
    pz[0, 0] = (0.1, 0.4, -0.05)
    pz[0, 1] = (0.15, -0.2, 0.1)
    pz[0, 2] = (0.25, 0.02, 0.0)
    pz[0, 3] = pz[0, 4] = (0.0, 0.2, 0.0)
    p = HeadParams(av.params.shape, expr, pz, np.array([[0.01, -0.02, 0.03]], np.float32))
    p_neutral = HeadParams(p.shape, np.zeros_like(expr), pz, p.transl)
    for l, lod in data.lods.items():
        rest = axes.points_to_blender(pose(av, model, HeadParams.zeros(model), l)[0])
        got = _blender_skinning(axes, data, lod, model, p)
        exp = axes.points_to_blender(pose(av, model, p, l)[0])
        motion = np.abs(exp - rest).max()
        # the backend regresses joints from the expressive mesh, the rig's joints are fixed: with
        # expression and rotation together the two differ a little (second order)
        assert np.abs(got - exp).max() < 0.02 * motion, (l, np.abs(got - exp).max(), motion)
        got0 = _blender_skinning(axes, data, lod, model, p_neutral)
        exp0 = axes.points_to_blender(pose(av, model, p_neutral, l)[0])
        err0 = np.abs(got0 - exp0).max(axis=1)
        assert err0[lod.n_head:].max() < 1e-5  # parts: the backend's blended skinning of each part
        if l == 0:
            assert err0.max() < 1e-5  # LOD 0: identical, pose correctives included
    # expression alone (no rotation): identical on every LOD, the funnel below and above the
    # clamped key's start
    f = model.expr_names.index("mouthFunnel")
    for funnel in (0.1, 0.9):
        e = expr.copy()
        e[0, f] = funnel
        p_expr = HeadParams(p.shape, e, np.zeros_like(pz), p.transl)
        for l, lod in data.lods.items():
            assert np.abs(_blender_skinning(axes, data, lod, model, p_expr)
                          - axes.points_to_blender(pose(av, model, p_expr, l)[0])).max() < 1e-5
    # the rest joints are the backend's, for the fitted identity
    _, joints, _ = lbs_numpy(model, HeadParams(av.params.shape, np.zeros((1, model.n_expr)), np.zeros((1, 5, 3)),
                                               np.zeros((1, 3))))
    assert np.allclose(data.joints, axes.points_to_blender(joints[0]), atol=1e-6)


def test_scene_columns_decode_with_the_backend_codec(addon) -> None:
    """gaussian_columns (backend set -> scene attributes, Blender-frame rotations) and
    scene_gaussians (back, via backend.avatar.ply) are inverses."""
    _, scene_data = addon
    rng = np.random.default_rng(4)
    n = 64
    q = rng.normal(size=(n, 4))
    gs = GaussianSet(rng.normal(scale=0.1, size=(n, 3)), q / np.linalg.norm(q, axis=1, keepdims=True),
                     rng.uniform(1e-4, 1e-2, (n, 3)), rng.uniform(0.01, 0.99, n), rng.uniform(0, 1, (n, 3)))
    back = scene_data.scene_gaussians(gs.means, scene_data.gaussian_columns(gs))
    np.testing.assert_allclose(back.colors, gs.colors, atol=1e-6)
    np.testing.assert_allclose(back.opacities, gs.opacities, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(back.scales, gs.scales, rtol=1e-6)
    np.testing.assert_allclose(np.abs((back.quats * gs.quats).sum(1)), 1.0, atol=1e-6)
