"""Batched torch posing (backend.avatar.pose_torch) against its numpy reference twin
(backend.avatar.pose_reference): positions and Gaussian rotations at every LOD on random
parameters, bit-stability across batch sizes, and CUDA == CPU when a GPU is present."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.avatar.gaussians import ClampedShape, GaussianAvatar, GaussianSet, SkinnedPart
from backend.avatar.pose_reference import (part_rest_reference, pose_growth_reference, pose_means_reference,
                                           pose_quats_reference)
from backend.avatar.pose_torch import TorchPoser
from backend.avatar.posing import model_lods, shaped_part_means, shaped_vertices
from backend.avatar.posed import pose_growth
from backend.head.loader import load_head_model
from backend.head.params import HeadParams
from backend.render.camera import Camera

LODS = (0, 1, 2)
MEANS_ATOL = 2e-6    # metres: float32 rounding of sums of ~0.1 m terms in a different order
QUATS_ATOL = 2e-6    # unit quaternion components (the reference runs in float64)


def _random_set(rng, n: int, means: np.ndarray | None = None) -> GaussianSet:
    q = rng.normal(size=(n, 4)).astype(np.float32)
    return GaussianSet(rng.normal(size=(n, 3)) * 0.1 if means is None else means, q,
                       rng.uniform(0.001, 0.01, (n, 3)), rng.uniform(0.1, 1, n), rng.uniform(0, 1, (n, 3)))


@pytest.fixture(scope="module")
def model():
    return load_head_model(None)


@pytest.fixture(scope="module")
def avatar(model) -> GaussianAvatar:
    """A random avatar on the stand-in: random identity, identity offsets, per-LOD offsets,
    rotations and parts (rigid body, an eye on one joint with clamped keys, hair with random
    skinning weights, shape keys (two the stand-in has, one it lacks) and clamped keys (starts
    within the random expressions' spread, so frames fall on both sides; one shared with the eye,
    one it lacks)), so every term of the posing is exercised."""
    rng = np.random.default_rng(7)
    shape = rng.normal(size=model.n_shape).astype(np.float32)
    rest0 = shaped_vertices(model, shape)
    lods = model_lods(model, LODS)
    heads = {l: _random_set(rng, lods[l].n_verts, lods[l].upsample @ rest0) for l in LODS}
    params = HeadParams(shape, np.zeros((1, model.n_expr)), np.zeros((1, 5, 3)), np.zeros((1, 3)))
    return GaussianAvatar(
        head_model_name=model.name, head_model_path=None, params=params,
        camera=Camera.look_at((0, 0, 0.6)),
        vertex_offsets=rng.normal(size=(model.n_verts, 3)).astype(np.float32) * 1e-3,
        lods=heads, lod_offsets={l: rng.normal(size=(len(g), 3)).astype(np.float32) * 1e-3 for l, g in heads.items()},
        parts=[SkinnedPart.rigid("body", _random_set(rng, 400, rng.normal(size=(400, 3)) * 0.1 + [0, -0.2, 0]),
                                 {0: 0.75, 1: 0.25}),
               SkinnedPart("eye_L", _random_set(rng, 30, rng.normal(size=(30, 3)) * 0.01), _joint(30, 3),
                           clamped={"mouthFunnel": ClampedShape(0.2, rng.normal(size=(30, 3)) * 0.01),
                                    "tongueOut": ClampedShape(0.7, rng.normal(size=(30, 3)) * 0.01)}),
               SkinnedPart("hair", _random_set(rng, 200), rng.dirichlet(np.ones(5), 200).astype(np.float32),
                           {k: rng.normal(size=(200, 3)) * 0.01 for k in ("tongueOut", "mouthFunnel", "notAKey")},
                           {"mouthFunnel": ClampedShape(0.2, rng.normal(size=(200, 3)) * 0.01),
                            "jawOpen": ClampedShape(-0.5, rng.normal(size=(200, 3)) * 0.01),
                            "notAKey": ClampedShape(0.0, rng.normal(size=(200, 3)) * 0.01)})])


def _joint(n: int, j: int) -> np.ndarray:
    w = np.zeros((n, 5), np.float32)
    w[:, j] = 1.0
    return w


def _params(model, T: int, seed: int, torso: bool = False) -> HeadParams:
    rng = np.random.default_rng(seed)
    return HeadParams(np.zeros(model.n_shape), rng.normal(size=(T, model.n_expr)) * 0.8,
                      rng.normal(size=(T, 5, 3)) * 0.25, rng.normal(size=(T, 3)) * 0.02,
                      rng.normal(size=(T, 3)) * 0.02 if torso else None)


def _same_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Max component difference between unit quaternions up to sign."""
    s = np.sign(np.sum(a * b, -1, keepdims=True))
    return np.abs(a - s * b).max()


@pytest.mark.parametrize("lod", LODS)
@pytest.mark.parametrize("torso", (False, True))
def test_torch_posing_matches_numpy_reference(model, avatar, lod: int, torso: bool) -> None:
    params = _params(model, 4, seed=lod, torso=torso)
    out = TorchPoser(avatar, model, lod).pose_params(params)
    means_ref = pose_means_reference(avatar, model, params, lod)
    quats_ref = pose_quats_reference(avatar, model, params, lod)
    assert out.means.shape == means_ref.shape == (4, len(avatar.rest_set(lod)), 3)
    np.testing.assert_allclose(out.means.numpy(), means_ref, atol=MEANS_ATOL, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(out.quats.numpy(), axis=-1), 1.0, atol=1e-6)
    assert _same_rotation(out.quats.numpy(), quats_ref) < QUATS_ATOL
    # the rotations really move: posed Gaussians are not at their rest rotation
    rest = avatar.rest_set(lod).quats / np.linalg.norm(avatar.rest_set(lod).quats, axis=1, keepdims=True)
    assert _same_rotation(out.quats.numpy()[0], rest) > 0.05


def test_part_shape_keys_match_the_plain_reference_on_both_sides_of_the_start(model, avatar) -> None:
    """The parts' shape keys, linear and clamped (max(e - start, 0) * delta), posed by the numpy
    posing (shaped_part_means), the torch twin and the numba tail (at zero pose the parts' skinning
    is the identity, so the posed parts are the shaped rest) all equal the plain per-key loops of
    pose_reference; random expressions put frames on both sides of every start, and a frame just
    below and at each start leaves its clamped keys flat."""
    basis = avatar.part_shape_basis(model.expr_names)
    names = list(model.expr_names)
    assert basis.clamped.sum() == 3  # mouthFunnel 0.2 (one column: hair and eye share it), tongueOut 0.7, jawOpen -0.5
    params = _params(model, 8, seed=99)
    e = params.expr
    for k in np.flatnonzero(basis.clamped):  # frames on both sides of every start
        col = e[:, basis.idx[k]]
        assert (col < basis.start[k]).any() and (col > basis.start[k]).any(), names[basis.idx[k]]
    z = HeadParams(np.zeros(model.n_shape), e, np.zeros((8, 5, 3)), np.zeros((8, 3)))
    ref = part_rest_reference(avatar, model, e)
    n_head = len(avatar.lods[0])
    np.testing.assert_allclose(shaped_part_means(avatar.parts, model, e), ref, atol=1e-6, rtol=0)
    poser = TorchPoser(avatar, model, 0)
    fused = poser.pose_params(z).means.numpy()[:, n_head:]
    poser.fused_cpu = False
    twin = poser.pose_params(z).means.numpy()[:, n_head:]
    np.testing.assert_allclose(fused, ref, atol=1e-6, rtol=0)
    np.testing.assert_allclose(twin, ref, atol=1e-6, rtol=0)
    # at and just below a start the clamped key is flat: the same as with the key removed
    eye = avatar.part("eye_L")
    flat = HeadParams.zeros(model, 2)
    flat.expr[0, names.index("mouthFunnel")], flat.expr[0, names.index("tongueOut")] = 0.2, 0.7
    flat.expr[1, names.index("mouthFunnel")], flat.expr[1, names.index("tongueOut")] = -1.0, 0.69
    sl = avatar.part_slices(0)["eye_L"]
    got = TorchPoser(avatar, model, 0).pose_params(flat).means.numpy()[:, sl]
    # float32 rounding of the zero-pose skinning, not the key: up to 3.7e-9 m on one CPU
    # (exact on another); a clamped key that moved would move it by 1e-4 m or more
    np.testing.assert_allclose(got, np.broadcast_to(eye.gaussians.means, got.shape), atol=1e-7, rtol=0)
    above = HeadParams.zeros(model)
    above.expr[0, names.index("tongueOut")] = 0.9
    got = TorchPoser(avatar, model, 0).pose_params(above).means.numpy()[0, sl]
    np.testing.assert_allclose(got, eye.gaussians.means + 0.2 * eye.clamped["tongueOut"].delta, atol=1e-6)


def test_zero_pose_keeps_rest_rotations(model, avatar) -> None:
    """At the rest pose every joint rotation is the identity: posed quats = rest quats."""
    z = HeadParams.zeros(model, 2)
    out = TorchPoser(avatar, model, 1).pose_params(z)
    rest = avatar.rest_set(1).quats
    rest = rest / np.linalg.norm(rest, axis=1, keepdims=True)
    assert _same_rotation(out.quats.numpy()[1], rest) < 1e-6


@pytest.mark.parametrize("lod", LODS)
def test_torch_posing_is_bit_stable_across_batch_sizes(model, avatar, lod: int) -> None:
    params = _params(model, 6, seed=10 + lod)
    poser = TorchPoser(avatar, model, lod)
    whole = poser.pose_params(params)
    for b in (1, 2, 4):
        parts = [poser.pose(params.expr[i:i + b], params.pose[i:i + b], params.transl[i:i + b])
                 for i in range(0, 6, b)]
        assert torch.equal(torch.cat([p.means for p in parts]), whole.means), b
        assert torch.equal(torch.cat([p.quats for p in parts]), whole.quats), b
        assert torch.equal(torch.cat([p.growth for p in parts]), whole.growth), b


@pytest.mark.parametrize("lod", (0, 2))
@pytest.mark.parametrize("torso", (False, True))
def test_growth_matches_the_plain_reference(model, avatar, lod: int, torso: bool) -> None:
    """Per-frame growth (stretch_growth) three ways: numpy posing (pose_growth), the torch poser
    (the numba tail and its torch twin) and the plain per-edge loops of pose_reference. The random
    expressions stretch the skin well past the build's allowance, so the factors span [1, cap]."""
    params = _params(model, 3, seed=50 + lod, torso=torso)
    ref = pose_growth_reference(avatar, model, params, lod)
    poser = TorchPoser(avatar, model, lod)
    posed = poser.pose_params(params)
    fused = posed.growth.numpy()
    poser.fused_cpu = False
    twin = poser.pose_params(params).growth.numpy()
    n_head = len(avatar.lods[lod])
    assert ref.shape == fused.shape == (3, n_head + avatar.n_parts)
    assert (ref[:, :n_head] > 1.05).mean() > 0.05 and ref.max() == pytest.approx(poser.growth_cap)
    np.testing.assert_array_equal(ref[:, n_head:], 1.0)
    for got in (pose_growth(avatar, model, params, lod), fused, twin):
        np.testing.assert_allclose(got, ref, atol=1e-4, rtol=0)
    # a poser that does not grow reports no growth, and its positions are the same
    plain = TorchPoser(avatar, model, lod, grow=False).pose_params(params)
    assert plain.growth is None
    np.testing.assert_array_equal(plain.means.numpy(), posed.means.numpy())


@pytest.mark.parametrize("lod", LODS)
@pytest.mark.parametrize("torso", (False, True))
def test_fused_cpu_tail_equals_the_torch_twin(model, avatar, lod: int, torso: bool) -> None:
    """The numba tail (pose_kernels, the CPU default) and the torch expressions (other devices)
    pose the same Gaussians: same float32 arithmetic, summed in another order."""
    params = _params(model, 3, seed=30 + lod, torso=torso)
    poser = TorchPoser(avatar, model, lod)
    assert poser.fused_cpu
    fused = poser.pose_params(params)
    poser.fused_cpu = False
    twin = poser.pose_params(params)
    assert fused.means.shape == twin.means.shape and fused.quats.shape == twin.quats.shape
    np.testing.assert_allclose(fused.means.numpy(), twin.means.numpy(), atol=2e-6, rtol=0)
    np.testing.assert_allclose(fused.quats.numpy(), twin.quats.numpy(), atol=2e-6, rtol=0)
    assert avatar.n_parts and poser.n_gaussians > poser.n_head  # both kernels ran


@pytest.mark.parametrize("lod", (0, 2))
def test_torso_channel_moves_each_gaussian_by_its_root_weight(model, avatar, lod: int) -> None:
    """The torso channel translates the global joint's own skinning transform only: every Gaussian
    moves by its global weight times the channel (head: the LOD's upsampled weights; parts: their
    own), rotations do not change, and the head's neck-bound and jaw-bound points stay."""
    without = _params(model, 3, seed=40 + lod)
    torso = np.array([[0.01, -0.02, 0.005], [0.0, 0.0, 0.0], [-0.03, 0.01, 0.0]], np.float32)
    withit = HeadParams(without.shape, without.expr, without.pose, without.transl, torso)
    poser = TorchPoser(avatar, model, lod)
    a, b = poser.pose_params(without), poser.pose_params(withit)
    U = model_lods(model, [lod])[lod].upsample
    w0 = np.concatenate([np.asarray(U @ model.weights, np.float32)[:, 0], avatar.part_weights()[:, 0]])
    expected = w0[None, :, None] * torso[:, None, :]
    np.testing.assert_allclose(b.means.numpy() - a.means.numpy(), expected, atol=MEANS_ATOL, rtol=0)
    assert np.count_nonzero(w0 > 0.5) and np.count_nonzero(w0 == 0)  # both kinds of point exist
    np.testing.assert_array_equal(b.quats.numpy(), a.quats.numpy())
    # the numpy reference agrees, and slicing/frame() keep the channel
    np.testing.assert_allclose(pose_means_reference(avatar, model, withit.frame(2), lod)[0], b.means.numpy()[2],
                               atol=MEANS_ATOL, rtol=0)
    np.testing.assert_array_equal(withit.sliced(slice(1, 3)).torso, torso[1:3])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("lod", LODS)
def test_torch_posing_on_cuda_equals_cpu(model, avatar, lod: int) -> None:
    params = _params(model, 3, seed=20 + lod, torso=True)
    cpu = TorchPoser(avatar, model, lod, "cpu").pose_params(params)
    gpu = TorchPoser(avatar, model, lod, "cuda").pose_params(params)
    assert gpu.means.device.type == "cuda"
    np.testing.assert_allclose(gpu.means.cpu().numpy(), cpu.means.numpy(), atol=MEANS_ATOL, rtol=0)
    np.testing.assert_allclose(gpu.growth.cpu().numpy(), cpu.growth.numpy(), atol=1e-4, rtol=0)
    assert _same_rotation(gpu.quats.cpu().numpy(), cpu.quats.numpy()) < QUATS_ATOL
