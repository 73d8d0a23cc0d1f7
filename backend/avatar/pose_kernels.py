"""Numba kernels for the per-Gaussian tail of the batched CPU posing (pose_torch.TorchPoser).

The torch expressions of that tail (identity offsets turned by the blended rotation, parts skinned
by their blended 3x4 matrix, quaternion blend normalized and multiplied onto the rest rotation,
then the head and parts concatenated) each make a (B, N, 3, 3) or (B, N, 4) temporary: memory
traffic that cost more CPU than the LBS itself at LOD 2 (135K Gaussians). Here each Gaussian is
computed in registers and written once into the output rows. Same float32 operations as the torch
twin (which still runs on other devices); tests/avatar/test_pose_torch.py compares the two and the
numpy reference. Per frame and Gaussian, so results do not depend on the batch size.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np


@nb.njit(cache=True, inline="always")
def _quat_tail(qw, qx, qy, qz, rest, g, quats, b, row):
    """Normalize the blended quaternion and write (q * rest[g]) into quats[b, row] (w,x,y,z)."""
    n = np.float32(math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz))
    qw, qx, qy, qz = qw / n, qx / n, qy / n, qz / n
    bw, bx, by, bz = rest[g, 0], rest[g, 1], rest[g, 2], rest[g, 3]
    quats[b, row, 0] = qw * bw - qx * bx - qy * by - qz * bz
    quats[b, row, 1] = qw * bx + qx * bw + qy * bz - qz * by
    quats[b, row, 2] = qw * by - qx * bz + qy * bw + qz * bx
    quats[b, row, 3] = qw * bz + qx * by - qy * bx + qz * bw


@nb.njit(cache=True, parallel=True, nogil=True)
def head_tail(up, offsets, rest_quats, has_offsets, means, quats):
    """Head Gaussians, rows [0, V): up (B, V, 7 | 16) f32 upsampled LBS channels (position 0:3,
    blended quaternion 3:7, blended rotation 7:16 row-major when ``has_offsets``), offsets (V, 3)
    f32 metres, rest_quats (N, 4) f32 unit -> writes means (B, N, 3) and quats (B, N, 4)."""
    B, V = up.shape[0], up.shape[1]
    for job in nb.prange(B * V):
        b = job // V
        g = job - b * V
        x, y, z = up[b, g, 0], up[b, g, 1], up[b, g, 2]
        if has_offsets:
            o0, o1, o2 = offsets[g, 0], offsets[g, 1], offsets[g, 2]
            x += up[b, g, 7] * o0 + up[b, g, 8] * o1 + up[b, g, 9] * o2
            y += up[b, g, 10] * o0 + up[b, g, 11] * o1 + up[b, g, 12] * o2
            z += up[b, g, 13] * o0 + up[b, g, 14] * o1 + up[b, g, 15] * o2
        means[b, g, 0] = x
        means[b, g, 1] = y
        means[b, g, 2] = z
        _quat_tail(up[b, g, 3], up[b, g, 4], up[b, g, 5], up[b, g, 6], rest_quats, g, quats, b, g)


@nb.njit(cache=True, parallel=True, nogil=True)
def parts_tail(A12, qj, weights, rest, rest_quats, n_head, means, quats):
    """Part Gaussians, rows [n_head, n_head + P): A12 (B, J, 12) f32 row-major 3x4 joint
    transforms, qj (B, J, 4) f32 their quaternions, weights (P, J) f32, rest (1 | B, P, 3) f32
    rest positions (with shape keys) -> writes means and quats (see ``head_tail``)."""
    B, J = A12.shape[0], A12.shape[1]
    P = weights.shape[0]
    shared = rest.shape[0] == 1
    for job in nb.prange(B * P):
        b = job // P
        p = job - b * P
        rb = 0 if shared else b
        px, py, pz = rest[rb, p, 0], rest[rb, p, 1], rest[rb, p, 2]
        z = np.float32(0.0)
        m0 = m1 = m2 = m3 = m4 = m5 = m6 = m7 = m8 = m9 = m10 = m11 = z  # blended 3x4, in registers
        qw = qx = qy = qz = z
        for j in range(J):
            w = weights[p, j]
            if w == 0:
                continue
            a = A12[b, j]
            m0 += w * a[0]
            m1 += w * a[1]
            m2 += w * a[2]
            m3 += w * a[3]
            m4 += w * a[4]
            m5 += w * a[5]
            m6 += w * a[6]
            m7 += w * a[7]
            m8 += w * a[8]
            m9 += w * a[9]
            m10 += w * a[10]
            m11 += w * a[11]
            qw += w * qj[b, j, 0]
            qx += w * qj[b, j, 1]
            qy += w * qj[b, j, 2]
            qz += w * qj[b, j, 3]
        row = n_head + p
        means[b, row, 0] = m0 * px + m1 * py + m2 * pz + m3
        means[b, row, 1] = m4 * px + m5 * py + m6 * pz + m7
        means[b, row, 2] = m8 * px + m9 * py + m10 * pz + m11
        _quat_tail(qw, qx, qy, qz, rest_quats, row, quats, b, row)


def preload() -> None:
    """Load both kernels (from the numba cache) on tiny inputs of the layouts ``TorchPoser`` passes
    (contiguous, and the permuted view the LOD upsampling returns), so a build's first posing does
    not pay for it; the build runs this on its kernel preload thread."""
    rest_q = np.tile(np.array([[1.0, 0.0, 0.0, 0.0]], np.float32), (2, 1))
    for up in (np.zeros((1, 2, 16), np.float32), np.zeros((2, 1, 16), np.float32).transpose(1, 0, 2)):
        up[..., 3] = 1.0
        head_tail(up, np.zeros((2, 3), np.float32), rest_q, True, np.zeros((1, 2, 3), np.float32),
                  np.zeros((1, 2, 4), np.float32))
    A = np.zeros((1, 5, 12), np.float32)
    q = np.zeros((1, 5, 4), np.float32)
    q[..., 0] = 1.0
    parts_tail(A, q, np.full((1, 5), 0.2, np.float32), np.zeros((1, 1, 3), np.float32), rest_q, 1,
               np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 4), np.float32))
