"""Skinned avatar parts: posing against a plain per-point reference, the body's old transform, the
rotations offered for part Gaussians, and the data model's checks (stand-in head, no photo)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.rotations import axis_angle_to_matrix, quat_to_matrix
from backend.avatar.gaussians import GaussianAvatar, GaussianSet, SkinnedPart
from backend.avatar.posed import posed_set
from backend.avatar.posing import (body_transforms, body_weights, lbs_numpy, model_lods, pose, pose_parts,
                                   shaped_vertices)
from backend.head.loader import load_head_model
from backend.head.params import HeadParams
from backend.render.camera import Camera


def _set(rng, n: int, centre) -> GaussianSet:
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return GaussianSet(rng.normal(scale=0.02, size=(n, 3)) + centre, q, np.full((n, 3), 2e-3),
                       np.full(n, 0.9), rng.uniform(0, 1, (n, 3)))


@pytest.fixture(scope="module")
def rigged():
    model = load_head_model(None)
    rng = np.random.default_rng(4)
    shape = (rng.normal(size=model.n_shape) * 0.5).astype(np.float32)
    params = HeadParams(shape, np.zeros((1, model.n_expr)), np.zeros((1, 5, 3)), np.zeros((1, 3)))
    lod = model_lods(model, [0])[0]
    head = GaussianSet(lod.upsample @ shaped_vertices(model, shape), np.tile([1.0, 0, 0, 0], (lod.n_verts, 1)),
                       np.full((lod.n_verts, 3), 2e-3), np.full(lod.n_verts, 0.8), np.full((lod.n_verts, 3), 0.5))
    parts = [SkinnedPart("body", _set(rng, 50, (0, -0.2, -0.05)), body_weights(50)),
             SkinnedPart.rigid("teeth_lower", _set(rng, 20, (0, -0.05, 0.06)), {2: 1.0}),
             SkinnedPart("cavity", _set(rng, 30, (0, -0.04, 0.03)), rng.dirichlet(np.ones(5), 30)),
             SkinnedPart.rigid("eye_L", _set(rng, 15, (0.03, 0.03, 0.05)), {3: 1.0})]
    av = GaussianAvatar("standin", None, params, Camera.look_at((0, 0, 0.6), width=64, height=64),
                        np.zeros((model.n_verts, 3), np.float32), {0: head},
                        {0: np.zeros((lod.n_verts, 3), np.float32)}, parts)
    T = 3
    p = HeadParams(shape, rng.normal(scale=0.8, size=(T, model.n_expr)), rng.normal(scale=0.2, size=(T, 5, 3)),
                   rng.normal(scale=0.02, size=(T, 3)))
    return model, av, p


def _reference(model, av: GaussianAvatar, p: HeadParams) -> np.ndarray:
    """Plain per-point blended skinning with the neutral-expression joint transforms."""
    neutral = HeadParams(av.params.shape, np.zeros_like(p.expr), p.pose, p.transl)
    A = lbs_numpy(model, neutral)[2].astype(np.float64)  # (T, 5, 4, 4)
    rest = av.parts_set().means.astype(np.float64)
    W = av.part_weights().astype(np.float64)
    out = np.zeros((p.n_frames, len(rest), 3))
    for t in range(p.n_frames):
        for i in range(len(rest)):
            M = sum(W[i, j] * A[t, j] for j in range(5))
            out[t, i] = M[:3, :3] @ rest[i] + M[:3, 3]
    return out


def test_parts_pose_like_a_per_point_reference(rigged):
    model, av, p = rigged
    n = len(av.lods[0])
    got = pose(av, model, p, 0)
    assert got.shape == (3, n + 115, 3)
    ref = _reference(model, av, p)
    np.testing.assert_allclose(got[:, n:], ref, atol=2e-6)
    means, _ = pose_parts(av, model, p)
    np.testing.assert_allclose(means, got[:, n:], atol=1e-7)
    # order: head, then each part in list order (as rest_set)
    sl = av.part_slices(0)
    assert [sl[k] for k in ("body", "teeth_lower", "cavity", "eye_L")] == [
        slice(n, n + 50), slice(n + 50, n + 70), slice(n + 70, n + 100), slice(n + 100, n + 115)]
    np.testing.assert_allclose(pose(av, model, HeadParams.zeros(model), 0)[0], av.rest_set(0).means, atol=1e-6)


def test_body_part_is_the_old_shoulder_transform_and_expressions_move_no_part(rigged):
    model, av, p = rigged
    n = len(av.lods[0])
    neutral = HeadParams(av.params.shape, np.zeros_like(p.expr), p.pose, p.transl)
    M = body_transforms(lbs_numpy(model, neutral)[2])  # (T, 4, 4): (1 - a) A_global + a A_neck
    body = av.part("body").gaussians.means
    old = np.einsum("nc,trc->tnr", body, M[:, :3, :3]) + M[:, None, :3, 3]
    np.testing.assert_allclose(pose(av, model, p, 0)[:, n:n + 50], old, atol=1e-6)
    np.testing.assert_allclose(pose(av, model, p, 0)[:, n:], pose(av, model, neutral, 0)[:, n:], atol=1e-7)


def test_jaw_moves_the_lower_teeth_only_and_eyes_turn_the_eyeball(rigged):
    model, av, _ = rigged
    sl = av.part_slices(0)
    zero = HeadParams.zeros(model)
    zero.shape[:] = av.params.shape
    rest = pose(av, model, zero, 0)[0]
    jaw = HeadParams(zero.shape, zero.expr, zero.pose.copy(), zero.transl)
    jaw.pose[0, 2, 0] = 0.3
    out = pose(av, model, jaw, 0)[0]
    assert np.abs(out[sl["teeth_lower"]] - rest[sl["teeth_lower"]]).max() > 5e-3
    for name in ("body", "eye_L"):
        np.testing.assert_allclose(out[sl[name]], rest[sl[name]], atol=1e-7)
    eye = HeadParams(zero.shape, zero.expr, zero.pose.copy(), zero.transl)
    eye.pose[0, 3, 1] = 0.4
    out = pose(av, model, eye, 0)[0]
    assert np.abs(out[sl["eye_L"]] - rest[sl["eye_L"]]).max() > 1e-3
    np.testing.assert_allclose(out[sl["teeth_lower"]], rest[sl["teeth_lower"]], atol=1e-7)
    # rigidly: distances within the eyeball are kept
    e0, e1 = rest[sl["eye_L"]], out[sl["eye_L"]]
    np.testing.assert_allclose(np.linalg.norm(e1[1:] - e1[:-1], axis=1), np.linalg.norm(e0[1:] - e0[:-1], axis=1),
                               atol=1e-6)


def test_posed_rotations_turn_part_gaussians_with_their_joint(rigged):
    model, av, p = rigged
    means, quats = pose_parts(av, model, p, rotations=True)
    assert quats.shape == (3, 115, 4)
    np.testing.assert_allclose(np.linalg.norm(quats, axis=-1), 1.0, atol=1e-5)
    # the eyeball is bound to eye_L alone: its rotation is the chain global @ neck @ eye_L
    R = axis_angle_to_matrix(p.pose[0].astype(np.float64))
    chain = R[0] @ R[1] @ R[3]
    sl = av.part_slices(0)["eye_L"]
    n = len(av.lods[0])
    rest_q = av.rest_set(0).quats[sl]
    np.testing.assert_allclose(quat_to_matrix(quats[0, sl.start - n:sl.stop - n]),
                               chain[None] @ quat_to_matrix(rest_q), atol=2e-5)
    gs = posed_set(av, model, p, 0, frame=1, rotate_parts=True)
    np.testing.assert_allclose(gs.quats[n:], quats[1], atol=1e-6)
    np.testing.assert_array_equal(gs.quats[:n], av.rest_set(0).quats[:n])
    assert np.array_equal(posed_set(av, model, p, 0).quats, av.rest_set(0).quats)


def test_part_data_model_checks():
    g = _set(np.random.default_rng(0), 4, (0, 0, 0))
    with pytest.raises(ValueError, match="sum to 1"):
        SkinnedPart("x", g, np.full((4, 5), 0.1))
    with pytest.raises(ValueError, match="do not match"):
        SkinnedPart("x", g, np.full((3, 5), 0.2))
    p = SkinnedPart.rigid("x", g, {0: 0.75, 1: 0.25})
    np.testing.assert_array_equal(p.weights, body_weights(4))
    with pytest.raises(ValueError, match="unique"):
        GaussianAvatar("standin", None, HeadParams.zeros(load_head_model(None)), None, np.zeros((1, 3)), {}, {},
                       [p, p])


def test_part_shape_keys_move_a_part_before_skinning(rigged):
    """A part's shape keys (SkinnedPart.shapes) are added to its rest positions with the frame's
    expression weights and then skinned (per-point reference); keys the head model lacks do
    nothing, and parts without keys stay as they were."""
    from backend.avatar.gaussians import parts_shapes

    model, av, p = rigged
    rng = np.random.default_rng(11)
    teeth = av.part("teeth_lower")
    keys = {"tongueOut": rng.normal(scale=0.01, size=(20, 3)), "jawOpen": rng.normal(scale=0.01, size=(20, 3)),
            "notAKey": rng.normal(scale=0.01, size=(20, 3))}
    shaped = SkinnedPart("teeth_lower", teeth.gaussians, teeth.weights, keys)
    av2 = GaussianAvatar(av.head_model_name, None, av.params, av.camera, av.vertex_offsets, av.lods,
                         av.lod_offsets, [shaped if q.name == "teeth_lower" else q for q in av.parts])
    idx, D = parts_shapes(av2.parts, model.expr_names)
    assert [model.expr_names[i] for i in idx] == ["jawOpen", "tongueOut"] and D.shape == (115, 3, 2)
    n = len(av.lods[0])
    got = pose(av2, model, p, 0)
    ref = _reference(model, av, p)
    # reference: the shaped rest positions, skinned point by point
    neutral = HeadParams(av.params.shape, np.zeros_like(p.expr), p.pose, p.transl)
    A = lbs_numpy(model, neutral)[2].astype(np.float64)
    e = {k: p.expr[:, model.expr_names.index(k)] for k in ("tongueOut", "jawOpen")}
    for t in range(p.n_frames):
        x = teeth.gaussians.means + e["tongueOut"][t] * keys["tongueOut"] + e["jawOpen"][t] * keys["jawOpen"]
        for i in range(20):
            M = sum(teeth.weights[i, j] * A[t, j] for j in range(5))
            ref[t, 50 + i] = M[:3, :3] @ x[i] + M[:3, 3]
    np.testing.assert_allclose(got[:, n:], ref, atol=2e-6)
    assert np.abs(got[:, n + 50:n + 70] - pose(av, model, p, 0)[:, n + 50:n + 70]).max() > 1e-3
    np.testing.assert_array_equal(got[:, :n + 50], pose(av, model, p, 0)[:, :n + 50])
    means, _ = pose_parts(av2, model, p)
    np.testing.assert_allclose(means, got[:, n:], atol=1e-7)
    with pytest.raises(ValueError, match="shape 'x'"):
        SkinnedPart("teeth", teeth.gaussians, teeth.weights, {"x": np.zeros((3, 3))})
