"""Plain numpy reference twin of ``pose_torch.TorchPoser`` (tests compare the two).

Positions: ``posing.pose`` (numpy, frames in chunks). Rotations: every Gaussian's posed quaternion
``q * q_rest`` with q the normalized weighted blend of the joints' quaternions (head: the LOD's
upsampled skinning weights and the expression-shaped LBS transforms; parts: their weights and the
neutral-expression transforms), the matrix-to-quaternion cases written out in numpy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .gaussians import GaussianAvatar

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams


def matrix_to_quat_reference(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 4) w,x,y,z, w >= 0, normalized; the case with the largest pivot."""
    R = np.asarray(R, np.float64)
    m = lambda i, j: R[..., i, j]  # noqa: E731
    tr = m(0, 0) + m(1, 1) + m(2, 2)
    piv = np.stack([1 + tr, 1 + m(0, 0) - m(1, 1) - m(2, 2), 1 - m(0, 0) + m(1, 1) - m(2, 2),
                    1 - m(0, 0) - m(1, 1) + m(2, 2)], -1)
    case = piv.argmax(-1)
    q = np.empty(R.shape[:-2] + (4,))
    c = case == 0
    q[c] = np.stack([piv[c, 0], m(2, 1)[c] - m(1, 2)[c], m(0, 2)[c] - m(2, 0)[c], m(1, 0)[c] - m(0, 1)[c]], -1)
    c = case == 1
    q[c] = np.stack([m(2, 1)[c] - m(1, 2)[c], piv[c, 1], m(1, 0)[c] + m(0, 1)[c], m(0, 2)[c] + m(2, 0)[c]], -1)
    c = case == 2
    q[c] = np.stack([m(0, 2)[c] - m(2, 0)[c], m(1, 0)[c] + m(0, 1)[c], piv[c, 2], m(2, 1)[c] + m(1, 2)[c]], -1)
    c = case == 3
    q[c] = np.stack([m(1, 0)[c] - m(0, 1)[c], m(2, 0)[c] + m(0, 2)[c], m(2, 1)[c] + m(1, 2)[c], piv[c, 3]], -1)
    q *= np.where(q[..., :1] < 0, -1.0, 1.0)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def quat_multiply_reference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz, aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx, aw * bz + ax * by - ay * bx + az * bw], -1)


def pose_means_reference(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams", lod: int) -> np.ndarray:
    """(T, N, 3) float32: today's numpy posing."""
    from .posing import pose

    return pose(avatar, model, params, lod)


def pose_quats_reference(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams", lod: int) -> np.ndarray:
    """(T, N, 4) float64 posed unit quaternions w,x,y,z for every frame of ``params``."""
    from ..head.params import HeadParams
    from .pose_torch import skinned_parts
    from .posing import lbs_numpy, model_lods

    U = model_lods(model, [lod])[lod].upsample
    W = np.asarray(U @ model.weights, np.float64)                                     # (V_l, J)
    p = HeadParams(avatar.params.shape, params.expr, params.pose, params.transl)
    A = lbs_numpy(model, p)[2].astype(np.float64)                                    # (T, J, 4, 4)
    neutral = HeadParams(avatar.params.shape, np.zeros_like(params.expr), params.pose, params.transl)
    An = lbs_numpy(model, neutral)[2].astype(np.float64)
    Wp = np.concatenate([w for _, w in skinned_parts(avatar, W.shape[1])]).astype(np.float64)  # (P, J)
    qj, qn = matrix_to_quat_reference(A[:, :, :3, :3]), matrix_to_quat_reference(An[:, :, :3, :3])  # (T, J, 4)
    q = np.concatenate([np.einsum("nj,tjc->tnc", W, qj), np.einsum("nj,tjc->tnc", Wp, qn)], 1)  # (T, N, 4)
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    rest = avatar.rest_set(lod).quats.astype(np.float64)
    rest /= np.linalg.norm(rest, axis=1, keepdims=True)
    return quat_multiply_reference(q, rest[None])
