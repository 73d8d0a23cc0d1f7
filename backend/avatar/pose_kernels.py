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
def head_tail(base, indptr, indices, data, offsets, rest_quats, has_offsets, means, quats):
    """Head Gaussians, rows [0, V), with the LOD upsampling fused in: base (B, V_0, 7 | 16) f32
    LBS channels of the LOD-0 mesh (position 0:3, blended quaternion 3:7, blended rotation 7:16
    row-major when ``has_offsets``); the LOD's upsampling matrix in CSR form (indptr (V + 1,),
    indices, data f32); offsets (V, 3) f32 metres, rest_quats (N, 4) f32 unit -> writes means
    (B, N, 3) and quats (B, N, 4). Each head Gaussian's channels are
    summed over its row's entries (at most 3 at LOD 2) in CSR order and used at once, instead of
    torch's sparse product writing a (B, V, 16) temporary (about 5 MB a frame at LOD 2) that the
    tail then reads back: the product was over half of the CPU posing. Same float32 sums as
    scipy's CSR product (row order, from zero)."""
    B = base.shape[0]
    C = base.shape[2]
    V = indptr.shape[0] - 1
    for job in nb.prange(B * V):
        b = job // V
        g = job - b * V
        z = np.float32(0.0)
        c0 = c1 = c2 = c3 = c4 = c5 = c6 = c7 = c8 = c9 = c10 = c11 = c12 = c13 = c14 = c15 = z
        for k in range(indptr[g], indptr[g + 1]):
            w = data[k]
            src = base[b, indices[k]]
            c0 += w * src[0]
            c1 += w * src[1]
            c2 += w * src[2]
            c3 += w * src[3]
            c4 += w * src[4]
            c5 += w * src[5]
            c6 += w * src[6]
            if C == 16:
                c7 += w * src[7]
                c8 += w * src[8]
                c9 += w * src[9]
                c10 += w * src[10]
                c11 += w * src[11]
                c12 += w * src[12]
                c13 += w * src[13]
                c14 += w * src[14]
                c15 += w * src[15]
        x, y, zz = c0, c1, c2
        if has_offsets:
            o0, o1, o2 = offsets[g, 0], offsets[g, 1], offsets[g, 2]
            x += c7 * o0 + c8 * o1 + c9 * o2
            y += c10 * o0 + c11 * o1 + c12 * o2
            zz += c13 * o0 + c14 * o1 + c15 * o2
        means[b, g, 0] = x
        means[b, g, 1] = y
        means[b, g, 2] = zz
        _quat_tail(c3, c4, c5, c6, rest_quats, g, quats, b, g)


@nb.njit(cache=True, parallel=True, nogil=True)
def parts_tail(A12, qj, weights, rest, rest_quats, n_head, means, quats):
    """Part Gaussians, rows [n_head, n_head + P): A12 (B, J, 12) f32 row-major 3x4 joint
    transforms, qj (B, J, 4) f32 their quaternions, weights (P, J) f32, rest (1 | B, P, 3) f32
    rest positions with every shape key applied, linear and clamped (TorchPoser.pose sums them in
    one product a frame; the kernel never sees an expression) -> writes means and quats (see
    ``head_tail``)."""
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
    (with and without identity offsets), so a build's first posing does not pay for it; the build
    runs this on its kernel preload thread."""
    rest_q = np.tile(np.array([[1.0, 0.0, 0.0, 0.0]], np.float32), (2, 1))
    eye = (np.arange(3, dtype=np.int32), np.arange(2, dtype=np.int32), np.ones(2, np.float32))
    for c in (7, 16):
        base = np.zeros((1, 2, c), np.float32)
        base[..., 3] = 1.0
        head_tail(base, *eye, np.zeros((2, 3), np.float32), rest_q, c == 16, np.zeros((1, 2, 3), np.float32),
                  np.zeros((1, 2, 4), np.float32))
    A = np.zeros((1, 5, 12), np.float32)
    q = np.zeros((1, 5, 4), np.float32)
    q[..., 0] = 1.0
    parts_tail(A, q, np.full((1, 5), 0.2, np.float32), np.zeros((1, 1, 3), np.float32), rest_q, 1,
               np.zeros((1, 2, 3), np.float32), np.zeros((1, 2, 4), np.float32))
