"""Torch LBS against an independent numpy reference; rest pose; skinning locality; devices."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from backend.head import JOINT_NAMES, HeadModelTensors, HeadParams, lbs, lbs_params


def lbs_numpy(m, shape, expr, pose, transl):
    """Plain numpy FLAME LBS for one frame (float64). Rotations via scipy (independent of ours)."""
    v = (m.v_template.astype(np.float64) + m.shapedirs[..., : len(shape)] @ shape
         + m.exprdirs[..., : len(expr)] @ expr)
    J = m.J_regressor.astype(np.float64) @ v
    R = Rotation.from_rotvec(pose).as_matrix()  # (5,3,3)
    feat = (R[1:] - np.eye(3)).reshape(-1)
    v = v + m.posedirs.astype(np.float64) @ feat
    G = np.zeros((5, 4, 4))
    for j in range(5):
        local = np.eye(4)
        local[:3, :3] = R[j]
        p = m.parents[j]
        local[:3, 3] = J[j] - (J[p] if p >= 0 else 0)
        G[j] = local if p < 0 else G[p] @ local
    A = G.copy()
    for j in range(5):
        A[j, :3, 3] -= G[j, :3, :3] @ J[j]
        A[j, :3, 3] += transl
    T = np.einsum("vj,jab->vab", m.weights.astype(np.float64), A)
    out = np.einsum("vab,vb->va", T[:, :3, :3], v) + T[:, :3, 3]
    return out, G[:, :3, 3] + transl, A


def random_params(m, B, seed, scale=0.4):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, (B, m.n_shape)).astype(np.float32),
            rng.normal(0, 0.5, (B, m.n_expr)).astype(np.float32),
            rng.normal(0, scale, (B, 5, 3)).astype(np.float32),
            rng.normal(0, 0.02, (B, 3)).astype(np.float32))


@pytest.mark.parametrize("which", ["tiny", "standin"])
def test_lbs_matches_numpy_reference(request, which):
    m = request.getfixturevalue(which)
    s, e, p, t = random_params(m, 3, seed=7)
    out = lbs(HeadModelTensors.from_model(m), torch.from_numpy(s), torch.from_numpy(e),
              torch.from_numpy(p), torch.from_numpy(t))
    assert out.vertices.shape == (3, m.n_verts, 3) and out.vertices.dtype == torch.float32
    assert out.joints.shape == (3, 5, 3) and out.transforms.shape == (3, 5, 4, 4)
    for b in range(3):
        ref_v, ref_j, ref_a = lbs_numpy(m, s[b].astype(np.float64), e[b].astype(np.float64),
                                        p[b].astype(np.float64), t[b].astype(np.float64))
        np.testing.assert_allclose(out.vertices[b].numpy(), ref_v, atol=2e-6)  # metres
        np.testing.assert_allclose(out.joints[b].numpy(), ref_j, atol=2e-6)
        np.testing.assert_allclose(out.transforms[b].numpy(), ref_a, atol=2e-6)


def test_rest_pose_returns_template(standin):
    m = standin
    T = HeadModelTensors.from_model(m)
    out = lbs(T, torch.zeros(2, m.n_shape), torch.zeros(2, m.n_expr), torch.zeros(2, 5, 3),
              torch.zeros(2, 3))
    np.testing.assert_allclose(out.vertices[1].numpy(), m.v_template, atol=1e-7)
    np.testing.assert_allclose(out.joints[0].numpy(), m.J_regressor @ m.v_template, atol=1e-6)
    eye = np.broadcast_to(np.eye(4, dtype=np.float32), (2, 5, 4, 4))
    np.testing.assert_allclose(out.transforms.numpy(), eye, atol=1e-6)


@pytest.mark.parametrize("joint", ["jaw", "eye_L", "eye_R", "neck"])
def test_joint_rotation_moves_only_skinned_vertices(standin, joint):
    m = standin
    j = JOINT_NAMES.index(joint)
    # vertices influenced by j directly or through a descendant (neck drives jaw and eyes)
    desc = {j} | {k for k in range(5) if m.parents[k] == j}
    skinned = m.weights[:, sorted(desc)].sum(1) > 0
    pose = torch.zeros(1, 5, 3)
    pose[0, j] = torch.tensor([0.3, 0.2, -0.1])
    T = HeadModelTensors.from_model(m)
    out = lbs(T, torch.zeros(1, m.n_shape), torch.zeros(1, m.n_expr), pose)
    moved = np.linalg.norm(out.vertices[0].numpy() - m.v_template, axis=1)
    assert moved[~skinned].max() < 1e-7
    assert (moved[skinned & (m.weights[:, sorted(desc)].sum(1) > 0.5)] > 1e-4).all()


def test_global_and_translation_are_rigid(standin):
    m = standin
    T = HeadModelTensors.from_model(m)
    pose = torch.zeros(1, 5, 3)
    pose[0, 0] = torch.tensor([0.1, 0.7, 0.05])
    t = torch.tensor([[0.01, -0.02, 0.3]])
    out = lbs(T, torch.zeros(1, m.n_shape), torch.zeros(1, m.n_expr), pose, t)
    R = Rotation.from_rotvec([0.1, 0.7, 0.05]).as_matrix()
    J0 = (m.J_regressor @ m.v_template)[0]
    expect = (m.v_template - J0) @ R.T + J0 + t.numpy()
    np.testing.assert_allclose(out.vertices[0].numpy(), expect, atol=2e-6)


def test_batch_equals_single_frames_and_params_helper(standin):
    m = standin
    s, e, p, t = random_params(m, 4, seed=2)
    T = HeadModelTensors.from_model(m)
    hp = HeadParams(s[0], e, p, t)
    batch = lbs_params(T, hp).vertices
    for b in range(4):
        one = lbs(T, torch.from_numpy(s[0]), torch.from_numpy(e[b:b + 1]), torch.from_numpy(p[b:b + 1]),
                  torch.from_numpy(t[b:b + 1])).vertices
        np.testing.assert_allclose(batch[b].numpy(), one[0].numpy(), atol=1e-6)


def test_fewer_coefficients_and_gradients(tiny):
    T = HeadModelTensors.from_model(tiny)
    assert HeadModelTensors.from_model(tiny) is T  # cached per device
    shape = torch.zeros(1, 2, requires_grad=True)
    expr = torch.zeros(1, 1, requires_grad=True)
    pose = torch.full((1, 5, 3), 0.1, requires_grad=True)
    out = lbs(T, shape, expr, pose, torch.zeros(1, 3))
    out.vertices.square().sum().backward()
    assert all(x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
               for x in (shape, expr, pose))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(standin):
    m = standin
    s, e, p, t = (torch.from_numpy(a) for a in random_params(m, 2, seed=5))
    cpu = lbs(HeadModelTensors.from_model(m, "cpu"), s, e, p, t).vertices
    gpu = lbs(HeadModelTensors.from_model(m, "cuda"), s.cuda(), e.cuda(), p.cuda(), t.cuda()).vertices
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu.numpy(), atol=1e-5)
