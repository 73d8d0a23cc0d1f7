"""Rotation maths, written once: numpy functions and their torch twins (``*_torch``).

Conventions everywhere in the project: axis-angle vectors are (..., 3) radians (direction = axis,
length = angle, right-handed); quaternions are (..., 4) in (w, x, y, z) order; matrices are
(..., 3, 3) and act on column vectors (``R @ p``). Quaternions are normalised on input; outputs of
``*_to_quat`` have w >= 0 (the same rotation has two quaternions, q and -q).

The numpy functions compute in float64 and return float64; the torch twins keep the input's dtype
and device and are differentiable everywhere, including at the zero rotation (Taylor series for
small angles instead of an epsilon). tests/test_rotations.py compares each twin with the other and
with known rotations. torch is imported inside the twins so that numpy-only callers (the Blender
UI thread, keyframe planning) never load it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# Below this squared angle (rad^2) sin(t)/t and (1 - cos t)/t^2 use their Taylor series: exact to
# float64 rounding there and smooth through zero.
_SMALL_ANGLE2 = 1e-6


# -- numpy ----------------------------------------------------------------------------------------
def skew(v: np.ndarray) -> np.ndarray:
    """(..., 3) vectors -> (..., 3, 3) cross-product matrices [v]x (float64)."""
    v = np.asarray(v, np.float64)
    x, y, z = np.moveaxis(v, -1, 0)
    zero = np.zeros_like(x)
    return np.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(v.shape[:-1] + (3, 3))


def axis_angle_to_matrix(aa: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle (radians) -> (..., 3, 3) rotation matrices (Rodrigues), float64.

    R = I + a K + b K^2 with K = [aa]x, a = sin(t)/t, b = (1 - cos t)/t^2."""
    aa = np.asarray(aa, np.float64)
    t2 = np.sum(aa * aa, -1)[..., None, None]  # (..., 1, 1)
    small = t2 < _SMALL_ANGLE2
    t2s = np.where(small, 1.0, t2)
    t = np.sqrt(t2s)
    a = np.where(small, 1.0 - t2 / 6.0, np.sin(t) / t)
    b = np.where(small, 0.5 - t2 / 24.0, (1.0 - np.cos(t)) / t2s)
    K = skew(aa)
    return np.eye(3) + a * K + b * (K @ K)


def quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions w,x,y,z (any non-zero norm) -> (..., 3, 3) rotation matrices, float64."""
    q = np.asarray(q, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-300)
    w, x, y, z = np.moveaxis(q, -1, 0)
    return np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
                    -1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions w,x,y,z with w >= 0, float64.

    Shepperd's method without branches: four candidate (unnormalised) quaternions, each accurate
    where its own diagonal term is largest; the best is picked per matrix."""
    R = np.asarray(R, np.float64)
    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    m01, m02, m10, m12, m20, m21 = R[..., 0, 1], R[..., 0, 2], R[..., 1, 0], R[..., 1, 2], R[..., 2, 0], R[..., 2, 1]
    diag = np.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    cand = np.stack([
        np.stack([diag[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
        np.stack([m21 - m12, diag[..., 1], m01 + m10, m02 + m20], -1),
        np.stack([m02 - m20, m01 + m10, diag[..., 2], m12 + m21], -1),
        np.stack([m10 - m01, m02 + m20, m12 + m21, diag[..., 3]], -1),
    ], -2)  # (..., 4 candidates, 4)
    best = np.argmax(diag, -1)[..., None, None]
    q = np.take_along_axis(cand, best, -2)[..., 0, :]
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    return q * np.where(q[..., :1] < 0, -1.0, 1.0)


def axis_angle_to_quat(aa: np.ndarray) -> np.ndarray:
    """(..., 3) axis-angle (radians) -> (..., 4) unit quaternions w,x,y,z (identity at zero), float64.

    w = cos(t/2) >= 0 for angles up to pi."""
    aa = np.asarray(aa, np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    axis = np.divide(aa, angle, out=np.zeros_like(aa), where=angle > 1e-12)
    return np.concatenate([np.cos(angle / 2), axis * np.sin(angle / 2)], -1)


def quat_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions w,x,y,z -> (..., 3) axis-angle with the angle in [0, pi], float64."""
    q = np.asarray(q, np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=-1, keepdims=True), 1e-300)
    q = q * np.where(q[..., :1] < 0, -1.0, 1.0)
    s = np.linalg.norm(q[..., 1:], axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, q[..., :1])
    return np.divide(q[..., 1:] * angle, s, out=np.zeros_like(q[..., 1:]), where=s > 1e-12)


def matrix_to_axis_angle(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) axis-angle with the angle in [0, pi], float64."""
    return quat_to_axis_angle(matrix_to_quat(R))


def quat_multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product of (..., 4) w,x,y,z quaternions: R(a b) = R(a) R(b) (b applied first), float64."""
    aw, ax, ay, az = np.moveaxis(np.asarray(a, np.float64), -1, 0)
    bw, bx, by, bz = np.moveaxis(np.asarray(b, np.float64), -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], -1)


def slerp(q0: np.ndarray, q1: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Spherical interpolation of (..., 4) unit quaternions at fractions u (...,) in [0, 1] along the
    shorter arc; (..., 4) float64."""
    q0, q1 = np.asarray(q0, np.float64), np.asarray(q1, np.float64)
    d = np.sum(q0 * q1, -1, keepdims=True)
    q1 = np.where(d < 0, -q1, q1)  # shortest arc
    d = np.abs(d)
    u = np.asarray(u, np.float64)[..., None]
    th = np.arccos(np.clip(d, -1.0, 1.0))
    s = np.sin(th)
    near = s < 1e-6  # (almost) the same rotation: linear interpolation is exact to rounding
    s_safe = np.where(near, 1.0, s)
    w0 = np.where(near, 1.0 - u, np.sin((1.0 - u) * th) / s_safe)
    w1 = np.where(near, u, np.sin(u * th) / s_safe)
    q = w0 * q0 + w1 * q1
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


# -- torch twins ----------------------------------------------------------------------------------
def skew_torch(v: "torch.Tensor") -> "torch.Tensor":
    """Twin of :func:`skew`: (..., 3) -> (..., 3, 3)."""
    import torch

    x, y, z = v.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*v.shape[:-1], 3, 3)


def axis_angle_to_matrix_torch(aa: "torch.Tensor") -> "torch.Tensor":
    """Twin of :func:`axis_angle_to_matrix`: (..., 3) radians -> (..., 3, 3), differentiable at zero."""
    import torch

    t2 = (aa * aa).sum(-1)[..., None, None]  # (..., 1, 1)
    small = t2 < _SMALL_ANGLE2
    t2s = torch.where(small, torch.ones_like(t2), t2)
    t = torch.sqrt(t2s)
    a = torch.where(small, 1 - t2 / 6, torch.sin(t) / t)
    b = torch.where(small, 0.5 - t2 / 24, (1 - torch.cos(t)) / t2s)
    K = skew_torch(aa)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device)
    return eye + a * K + b * (K @ K)


def quat_to_matrix_torch(q: "torch.Tensor") -> "torch.Tensor":
    """Twin of :func:`quat_to_matrix`: (..., 4) w,x,y,z (any non-zero norm) -> (..., 3, 3)."""
    import torch

    q = q / q.norm(dim=-1, keepdim=True)
    w, x, y, z = q.unbind(-1)
    R = torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
                     2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
                     2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)
    return R.reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat_torch(R: "torch.Tensor") -> "torch.Tensor":
    """Twin of :func:`matrix_to_quat`: (..., 3, 3) -> (..., 4) w,x,y,z unit quaternions, w >= 0."""
    import torch

    m00, m11, m22 = R[..., 0, 0], R[..., 1, 1], R[..., 2, 2]
    m01, m02, m10, m12, m20, m21 = R[..., 0, 1], R[..., 0, 2], R[..., 1, 0], R[..., 1, 2], R[..., 2, 0], R[..., 2, 1]
    diag = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    cand = torch.stack([
        torch.stack([diag[..., 0], m21 - m12, m02 - m20, m10 - m01], -1),
        torch.stack([m21 - m12, diag[..., 1], m01 + m10, m02 + m20], -1),
        torch.stack([m02 - m20, m01 + m10, diag[..., 2], m12 + m21], -1),
        torch.stack([m10 - m01, m02 + m20, m12 + m21, diag[..., 3]], -1),
    ], -2)  # (..., 4 candidates, 4)
    best = diag.argmax(-1)[..., None, None].expand(*diag.shape[:-1], 1, 4)
    q = torch.gather(cand, -2, best)[..., 0, :]
    q = q / q.norm(dim=-1, keepdim=True)
    return q * torch.where(q[..., :1] < 0, -1.0, 1.0).to(q.dtype)


def axis_angle_to_quat_torch(aa: "torch.Tensor") -> "torch.Tensor":
    """Twin of :func:`axis_angle_to_quat`: (..., 3) radians -> (..., 4) w,x,y,z, differentiable at zero
    (sin(t/2)/t by its Taylor series for small angles)."""
    import torch

    t2 = (aa * aa).sum(-1, keepdim=True)
    small = t2 < _SMALL_ANGLE2
    t = torch.sqrt(torch.where(small, torch.ones_like(t2), t2))
    half_sinc = torch.where(small, 0.5 - t2 / 48, torch.sin(t / 2) / t)  # sin(t/2) / t
    w = torch.where(small, 1 - t2 / 8, torch.cos(t / 2))
    return torch.cat([w, aa * half_sinc], -1)


def quat_multiply_torch(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """Twin of :func:`quat_multiply`: Hamilton product of (..., 4) w,x,y,z quaternions."""
    import torch

    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)
