"""backend.rotations: each numpy function against known rotations and scipy, and against its torch twin."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from backend import rotations as rot


@pytest.fixture(scope="module")
def rng() -> np.random.Generator:
    return np.random.default_rng(7)


def _random_aa(rng: np.random.Generator, n: int) -> np.ndarray:
    """Axis-angle vectors with angles spread over [0, pi), plus zero and tiny angles."""
    axis = rng.normal(size=(n, 3))
    axis /= np.linalg.norm(axis, axis=1, keepdims=True)
    angle = rng.uniform(0, np.pi * 0.999, n)
    angle[:3] = [0.0, 1e-9, 3e-4]  # zero, below and around the Taylor switch
    return axis * angle[:, None]


def test_known_rotations() -> None:
    quarter_z = rot.axis_angle_to_matrix([0, 0, np.pi / 2])
    np.testing.assert_allclose(quarter_z @ [1, 0, 0], [0, 1, 0], atol=1e-15)  # right-handed
    np.testing.assert_allclose(rot.axis_angle_to_quat([np.pi / 2, 0, 0]), [np.sqrt(0.5), np.sqrt(0.5), 0, 0], atol=1e-15)
    np.testing.assert_allclose(rot.quat_to_matrix([0, 0, 1, 0]), np.diag([-1.0, 1, -1]), atol=1e-15)  # half turn about Y
    np.testing.assert_allclose(rot.matrix_to_quat(np.eye(3)), [1, 0, 0, 0])
    np.testing.assert_allclose(rot.matrix_to_axis_angle(np.diag([1.0, -1, -1])), [np.pi, 0, 0], atol=1e-12)
    # Hamilton order: (a b) rotates by b first. Z quarter turn then X quarter turn maps x -> y -> z.
    qz, qx = rot.axis_angle_to_quat([0, 0, np.pi / 2]), rot.axis_angle_to_quat([np.pi / 2, 0, 0])
    np.testing.assert_allclose(rot.quat_to_matrix(rot.quat_multiply(qx, qz)) @ [1, 0, 0], [0, 0, 1], atol=1e-15)
    np.testing.assert_allclose(rot.skew([1, 2, 3]) @ [4, 5, 6], np.cross([1, 2, 3], [4, 5, 6]))


def test_numpy_matches_scipy(rng) -> None:
    aa = _random_aa(rng, 200)
    ref = Rotation.from_rotvec(aa)
    R = rot.axis_angle_to_matrix(aa)
    np.testing.assert_allclose(R, ref.as_matrix(), atol=1e-14)
    xyzw = ref.as_quat()
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3]], 1)
    wxyz *= np.where(wxyz[:, :1] < 0, -1.0, 1.0)
    np.testing.assert_allclose(rot.axis_angle_to_quat(aa), wxyz, atol=1e-14)
    np.testing.assert_allclose(rot.matrix_to_quat(R), wxyz, atol=1e-12)
    np.testing.assert_allclose(rot.quat_to_matrix(wxyz * 3.0), R, atol=1e-14)  # any norm
    np.testing.assert_allclose(rot.matrix_to_axis_angle(R), aa, atol=1e-10)
    np.testing.assert_allclose(rot.quat_to_axis_angle(-wxyz), aa, atol=1e-12)  # q and -q alike
    q2 = rot.axis_angle_to_quat(_random_aa(rng, 200))
    prod = (Rotation.from_quat(np.concatenate([wxyz[:, 1:], wxyz[:, :1]], 1))
            * Rotation.from_quat(np.concatenate([q2[:, 1:], q2[:, :1]], 1))).as_matrix()
    np.testing.assert_allclose(rot.quat_to_matrix(rot.quat_multiply(wxyz, q2)), prod, atol=1e-13)


def test_matrix_to_quat_every_branch_and_batch_shape(rng) -> None:
    # Half turns about x, y, z and near-identity each pick a different Shepperd candidate.
    aa = np.array([[np.pi, 0, 0], [0, np.pi, 0], [0, 0, np.pi], [1e-3, 0, 0], [2.0, -1.0, 0.5]])
    R = rot.axis_angle_to_matrix(aa)
    np.testing.assert_allclose(rot.quat_to_matrix(rot.matrix_to_quat(R)), R, atol=1e-14)
    batch = rot.axis_angle_to_matrix(_random_aa(rng, 24).reshape(2, 3, 4, 3))
    q = rot.matrix_to_quat(batch)
    assert q.shape == (2, 3, 4, 4) and (q[..., 0] >= 0).all()
    np.testing.assert_allclose(rot.quat_to_matrix(q), batch, atol=1e-14)


def test_slerp_halfway_and_shortest_arc() -> None:
    q0 = rot.axis_angle_to_quat([0, 0, 0])
    q1 = rot.axis_angle_to_quat([0, 1.2, 0])
    np.testing.assert_allclose(rot.quat_to_axis_angle(rot.slerp(q0, q1, np.array(0.25))), [0, 0.3, 0], atol=1e-14)
    np.testing.assert_allclose(rot.slerp(q0, -q1, np.array(1.0)), q1, atol=1e-14)  # -q1 is the same rotation
    np.testing.assert_allclose(rot.slerp(q1, q1, np.array(0.5)), q1, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_torch_twins_match_numpy(rng, dtype) -> None:
    tol = 1e-12 if dtype == torch.float64 else 2e-6
    aa = _random_aa(rng, 300)
    t = torch.tensor(aa, dtype=dtype)
    R = rot.axis_angle_to_matrix(aa)
    out = rot.axis_angle_to_matrix_torch(t)
    assert out.dtype == dtype
    np.testing.assert_allclose(out.double().numpy(), R, atol=tol)
    q = rot.axis_angle_to_quat(aa)
    np.testing.assert_allclose(rot.axis_angle_to_quat_torch(t).double().numpy(), q, atol=tol)
    np.testing.assert_allclose(rot.quat_to_matrix_torch(torch.tensor(q * 2, dtype=dtype)).double().numpy(), R, atol=tol)
    np.testing.assert_allclose(rot.matrix_to_quat_torch(torch.tensor(R, dtype=dtype)).double().numpy(), q,
                               atol=tol * 10)
    q2 = rot.axis_angle_to_quat(_random_aa(rng, 300))
    np.testing.assert_allclose(
        rot.quat_multiply_torch(torch.tensor(q, dtype=dtype), torch.tensor(q2, dtype=dtype)).double().numpy(),
        rot.quat_multiply(q, q2), atol=tol)
    np.testing.assert_allclose(rot.skew_torch(t).double().numpy(), rot.skew(aa), atol=tol)


def test_torch_twins_are_smooth_at_zero() -> None:
    # d R / d aa at zero is [e_k]x: gradients through the Taylor branch are exact, not NaN.
    aa = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(rot.axis_angle_to_matrix_torch, aa)
    for k in range(3):
        e = np.zeros(3)
        e[k] = 1.0
        np.testing.assert_allclose(jac[..., k].numpy(), rot.skew(e), atol=1e-15)
    jq = torch.autograd.functional.jacobian(rot.axis_angle_to_quat_torch, aa)
    np.testing.assert_allclose(jq.numpy(), np.vstack([np.zeros(3), 0.5 * np.eye(3)]), atol=1e-15)
    assert torch.autograd.gradcheck(rot.axis_angle_to_matrix_torch,
                                    (torch.tensor([[0.3, -0.2, 0.9], [1e-5, 0, 2e-5]], dtype=torch.float64,
                                                  requires_grad=True),))
