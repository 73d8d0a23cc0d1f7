"""EWA projection of 3D Gaussians to screen-space conics: numba forward + hand-written backward.

Mirrors gsplat 1.5.3's ``fully_fused_projection`` for the pinhole model (``_torch_impl.py``
``_fully_fused_projection`` and the CUDA kernel ``ProjectionEWA3DGSFused.cu``); the plain-torch
twin is ``_reference.project_gaussians`` (autograd), tested against gsplat and against this file.

- world -> camera, covariance ``R diag(s)^2 R^T`` rotated into the camera frame;
- the projection Jacobian is evaluated at the mean clamped to 1.3x the field of view (keeps
  Gaussians far outside the frustum from producing huge footprints);
- ``eps2d`` (0.3 px^2) is added to the 2D covariance (the EWA low-pass filter);
- radius = ceil(extend * sqrt(diag(cov2d))) per axis, extend = 3.33, tightened to
  sqrt(2 ln(255 opacity)) when opacities are given (beyond it alpha < 1/255 anyway);
- culled (radius 0): depth <= near_plane or >= far_plane, det <= 0, opacity < 1/255, or the
  footprint box entirely off the image.

Unlike gsplat the 2D determinant is computed by Cauchy-Binet (sum of squared 2x2 minors of the
2x3 matrix J R_cam R diag(s)) instead of a c - b^2, which cancels catastrophically in float32 for
needle-like Gaussians; the kernels work in float64 internally. Culled Gaussians get zero outputs
and zero gradients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
import torch

from ._kernels import _ceil

ALPHA_THRESHOLD = 1.0 / 255.0
EXTEND = 3.33


@dataclass
class Projection:
    """Per-camera screen-space Gaussians. B = cameras, N = Gaussians.

    means2d: (B, N, 2) pixels (pixel centres at +0.5).
    conics:  (B, N, 3) upper triangle (a, b, c) of the inverse 2D covariance, px^-2:
             sigma = 0.5 (a dx^2 + c dy^2) + b dx dy.
    depths:  (B, N) camera z of the mean, metres.
    radii:   (B, N, 2) int32 pixel half-extent of the footprint box; 0 = culled.
    extents: (B, N, 2) float32 exact half-extent (before ceil) used for per-pixel bounding boxes;
             0 where culled. No gradient.
    """

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor
    extents: torch.Tensor


@nb.njit(cache=True, inline="always")
def _camera_terms(means, quats, scales, Rv, tv, b, g, R, mc, Mc):
    """Shared forward terms for one (camera, Gaussian), written into the scratch arrays R (3, 3)
    rotation of the normalized quaternion, mc (3,) camera-frame mean, Mc (3, 3) = Rv R diag(s).
    Returns the normalized quaternion (w, x, y, z) and the raw quaternion's norm.
    (Scratch arrays are allocated once per call: per-Gaussian allocations dominated the time.)"""
    qw, qx, qy, qz = np.float64(quats[b, g, 0]), np.float64(quats[b, g, 1]), np.float64(quats[b, g, 2]), np.float64(quats[b, g, 3])
    n = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
    w, x, y, z = qw / n, qx / n, qy / n, qz / n
    R[0, 0] = 1 - 2 * (y * y + z * z)
    R[0, 1] = 2 * (x * y - w * z)
    R[0, 2] = 2 * (x * z + w * y)
    R[1, 0] = 2 * (x * y + w * z)
    R[1, 1] = 1 - 2 * (x * x + z * z)
    R[1, 2] = 2 * (y * z - w * x)
    R[2, 0] = 2 * (x * z - w * y)
    R[2, 1] = 2 * (y * z + w * x)
    R[2, 2] = 1 - 2 * (x * x + y * y)
    for i in range(3):
        mc[i] = Rv[b, i, 0] * means[b, g, 0] + Rv[b, i, 1] * means[b, g, 1] + Rv[b, i, 2] * means[b, g, 2] + tv[b, i]
    for i in range(3):
        for j in range(3):
            Mc[i, j] = (Rv[b, i, 0] * R[0, j] + Rv[b, i, 1] * R[1, j] + Rv[b, i, 2] * R[2, j]) * scales[b, g, j]
    return w, x, y, z, n


# Gaussians per parallel chunk: each chunk allocates its own scratch arrays once (per-Gaussian
# allocations dominated the time), and a few dozen chunks keep both cores busy
CHUNK = 4096


@nb.njit(cache=True, parallel=True, nogil=True)
def project_fwd(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near, far, use_opacity):
    """-> means2d (B,N,2) f32, conics (B,N,3) f32, depths (B,N) f32, radii (B,N,2) i32, extents f32.

    The issue-time per-Gaussian body's arithmetic (``preview.legacy._project_one``), operation for
    operation (bit-identical outputs, tested against that frozen serial copy), with the per-camera terms (view rotation,
    intrinsics, field-of-view limits) read once per chunk and the per-Gaussian terms kept in
    scalars instead of scratch arrays: about half the time at 135K Gaussians."""
    B, N = means.shape[0], means.shape[1]
    means2d = np.zeros((B, N, 2), np.float32)
    conics = np.zeros((B, N, 3), np.float32)
    depths = np.zeros((B, N), np.float32)
    radii = np.zeros((B, N, 2), np.int32)
    extents = np.zeros((B, N, 2), np.float32)
    Rv_all = viewmats[:, :3, :3].astype(np.float64)
    tv_all = viewmats[:, :3, 3].astype(np.float64)
    chunks_per_cam = (N + CHUNK - 1) // CHUNK
    for chunk in nb.prange(B * chunks_per_cam):
        b = chunk // chunks_per_cam
        g0 = (chunk - b * chunks_per_cam) * CHUNK
        v00, v01, v02 = Rv_all[b, 0, 0], Rv_all[b, 0, 1], Rv_all[b, 0, 2]
        v10, v11, v12 = Rv_all[b, 1, 0], Rv_all[b, 1, 1], Rv_all[b, 1, 2]
        v20, v21, v22 = Rv_all[b, 2, 0], Rv_all[b, 2, 1], Rv_all[b, 2, 2]
        t0, t1, t2 = tv_all[b, 0], tv_all[b, 1], tv_all[b, 2]
        fx, fy, cx, cy = np.float64(Ks[b, 0, 0]), np.float64(Ks[b, 1, 1]), np.float64(Ks[b, 0, 2]), np.float64(Ks[b, 1, 2])
        lim_xp = (width - cx) / fx + 0.3 * (0.5 * width / fx)
        lim_xn = cx / fx + 0.3 * (0.5 * width / fx)
        lim_yp = (height - cy) / fy + 0.3 * (0.5 * height / fy)
        lim_yn = cy / fy + 0.3 * (0.5 * height / fy)
        # the opacity-aware extent needs a log and a sqrt, but most Gaussians of an avatar share
        # one opacity (0.97 at LOD 2): reuse the last one's (same operands, same value)
        last_op = np.float32(np.nan)
        last_ext = EXTEND
        for g in range(g0, min(N, g0 + CHUNK)):
            m0, m1, m2 = means[b, g, 0], means[b, g, 1], means[b, g, 2]
            tx = v00 * m0 + v01 * m1 + v02 * m2 + t0
            ty = v10 * m0 + v11 * m1 + v12 * m2 + t1
            tz = v20 * m0 + v21 * m1 + v22 * m2 + t2
            depths[b, g] = tz
            if not (tz > near and tz < far):
                continue
            qw, qx, qy, qz = np.float64(quats[b, g, 0]), np.float64(quats[b, g, 1]), np.float64(quats[b, g, 2]), np.float64(quats[b, g, 3])
            n = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
            w, x, y, z = qw / n, qx / n, qy / n, qz / n
            r00 = 1 - 2 * (y * y + z * z)
            r01 = 2 * (x * y - w * z)
            r02 = 2 * (x * z + w * y)
            r10 = 2 * (x * y + w * z)
            r11 = 1 - 2 * (x * x + z * z)
            r12 = 2 * (y * z - w * x)
            r20 = 2 * (x * z - w * y)
            r21 = 2 * (y * z + w * x)
            r22 = 1 - 2 * (x * x + y * y)
            s0, s1, s2 = scales[b, g, 0], scales[b, g, 1], scales[b, g, 2]
            # Mc = Rv R diag(s), rows 0..2
            M00 = (v00 * r00 + v01 * r10 + v02 * r20) * s0
            M01 = (v00 * r01 + v01 * r11 + v02 * r21) * s1
            M02 = (v00 * r02 + v01 * r12 + v02 * r22) * s2
            M10 = (v10 * r00 + v11 * r10 + v12 * r20) * s0
            M11 = (v10 * r01 + v11 * r11 + v12 * r21) * s1
            M12 = (v10 * r02 + v11 * r12 + v12 * r22) * s2
            M20 = (v20 * r00 + v21 * r10 + v22 * r20) * s0
            M21 = (v20 * r01 + v21 * r11 + v22 * r21) * s1
            M22 = (v20 * r02 + v21 * r12 + v22 * r22) * s2
            txc = tz * min(max(tx / tz, -lim_xn), lim_xp)
            tyc = tz * min(max(ty / tz, -lim_yn), lim_yp)
            J00, J02 = fx / tz, -fx * txc / (tz * tz)
            J11, J12 = fy / tz, -fy * tyc / (tz * tz)
            u0 = J00 * M00 + J02 * M20
            u1 = J00 * M01 + J02 * M21
            u2 = J00 * M02 + J02 * M22
            w0 = J11 * M10 + J12 * M20
            w1 = J11 * M11 + J12 * M21
            w2 = J11 * M12 + J12 * M22
            a0 = u0 * u0 + u1 * u1 + u2 * u2
            bb = u0 * w0 + u1 * w1 + u2 * w2
            c0 = w0 * w0 + w1 * w1 + w2 * w2
            k0 = u0 * w1 - u1 * w0
            k1 = u0 * w2 - u2 * w0
            k2 = u1 * w2 - u2 * w1
            det = k0 * k0 + k1 * k1 + k2 * k2 + eps2d * (a0 + c0) + eps2d * eps2d
            a = a0 + eps2d
            c = c0 + eps2d
            if not (det > 0) or not math.isfinite(det) or not math.isfinite(a) or not math.isfinite(c):
                continue
            mx = fx * tx / tz + cx
            my = fy * ty / tz + cy
            ext = EXTEND
            if use_opacity:
                op = opacities[b, g]
                if op < ALPHA_THRESHOLD:
                    continue
                if op != last_op:
                    last_op = op
                    last_ext = min(EXTEND, math.sqrt(2.0 * math.log(op / ALPHA_THRESHOLD)))
                ext = last_ext
            ex = ext * math.sqrt(a)
            ey = ext * math.sqrt(c)
            rx = int(_ceil(ex))  # math.ceil without a libm call
            ry = int(_ceil(ey))
            if rx <= 0 and ry <= 0:
                continue
            if mx + rx <= 0 or mx - rx >= width or my + ry <= 0 or my - ry >= height:
                continue
            means2d[b, g, 0] = mx
            means2d[b, g, 1] = my
            conics[b, g, 0] = c / det
            conics[b, g, 1] = -bb / det
            conics[b, g, 2] = a / det
            radii[b, g, 0] = min(rx, 2**30)
            radii[b, g, 1] = min(ry, 2**30)
            extents[b, g, 0] = ex
            extents[b, g, 1] = ey
    return means2d, conics, depths, radii, extents


@nb.njit(cache=True, parallel=True, nogil=True)
def project_bwd(means, quats, scales, viewmats, Ks, radii, width, height, eps2d, v_means2d, v_conics, v_depths):
    """Gradients of (means2d, conics, depths) w.r.t. (means, quats, scales), each (B, N, .) f32.
    Culled Gaussians (radii 0) get zero, except the depth output, which is defined for all."""
    B, N = means.shape[0], means.shape[1]
    v_means = np.zeros((B, N, 3), np.float32)
    v_quats = np.zeros((B, N, 4), np.float32)
    v_scales = np.zeros((B, N, 3), np.float32)
    Rv_all = viewmats[:, :3, :3].astype(np.float64)
    tv = viewmats[:, :3, 3].astype(np.float64)
    n_chunks = (B * N + CHUNK - 1) // CHUNK
    for chunk in nb.prange(n_chunks):
        R = np.empty((3, 3))
        mc = np.empty(3)
        Mc = np.empty((3, 3))
        v_mc = np.empty(3)
        u = np.empty(3)
        wv = np.empty(3)
        v_u = np.empty(3)
        v_w = np.empty(3)
        v_Mc = np.empty((3, 3))
        v_R = np.empty((3, 3))
        for job in range(chunk * CHUNK, min(B * N, (chunk + 1) * CHUNK)):
            b = job // N
            g = job - b * N
            qw, qx, qy, qz, qn = _camera_terms(means, quats, scales, Rv_all, tv, b, g, R, mc, Mc)
            Rv = Rv_all[b]
            v_mc[0] = 0.0
            v_mc[1] = 0.0
            v_mc[2] = v_depths[b, g]
            if radii[b, g, 0] > 0 or radii[b, g, 1] > 0:
                tx, ty, tz = mc[0], mc[1], mc[2]
                fx, fy, cx, cy = np.float64(Ks[b, 0, 0]), np.float64(Ks[b, 1, 1]), np.float64(Ks[b, 0, 2]), np.float64(Ks[b, 1, 2])
                lim_xp = (width - cx) / fx + 0.3 * (0.5 * width / fx)
                lim_xn = cx / fx + 0.3 * (0.5 * width / fx)
                lim_yp = (height - cy) / fy + 0.3 * (0.5 * height / fy)
                lim_yn = cy / fy + 0.3 * (0.5 * height / fy)
                ux = tx / tz
                uy = ty / tz
                clamp_x = ux < -lim_xn or ux > lim_xp
                clamp_y = uy < -lim_yn or uy > lim_yp
                uxc = min(max(ux, -lim_xn), lim_xp)
                uyc = min(max(uy, -lim_yn), lim_yp)
                txc = tz * uxc
                tyc = tz * uyc
                J00, J02 = fx / tz, -fx * txc / (tz * tz)
                J11, J12 = fy / tz, -fy * tyc / (tz * tz)
                for j in range(3):
                    u[j] = J00 * Mc[0, j] + J02 * Mc[2, j]
                    wv[j] = J11 * Mc[1, j] + J12 * Mc[2, j]
                a0 = u[0] * u[0] + u[1] * u[1] + u[2] * u[2]
                bb = u[0] * wv[0] + u[1] * wv[1] + u[2] * wv[2]
                c0 = wv[0] * wv[0] + wv[1] * wv[1] + wv[2] * wv[2]
                m0 = u[0] * wv[1] - u[1] * wv[0]
                m1 = u[0] * wv[2] - u[2] * wv[0]
                m2 = u[1] * wv[2] - u[2] * wv[1]
                det = m0 * m0 + m1 * m1 + m2 * m2 + eps2d * (a0 + c0) + eps2d * eps2d
                a = a0 + eps2d
                c = c0 + eps2d
                # conics = (c, -b, a) / det
                g0, g1, g2 = np.float64(v_conics[b, g, 0]), np.float64(v_conics[b, g, 1]), np.float64(v_conics[b, g, 2])
                v_det = -(g0 * c - g1 * bb + g2 * a) / (det * det)
                v_a0 = g2 / det + eps2d * v_det
                v_c0 = g0 / det + eps2d * v_det
                v_b = -g1 / det
                vm0, vm1, vm2 = 2 * m0 * v_det, 2 * m1 * v_det, 2 * m2 * v_det
                for j in range(3):
                    v_u[j] = 2 * v_a0 * u[j] + v_b * wv[j]
                    v_w[j] = 2 * v_c0 * wv[j] + v_b * u[j]
                v_u[0] += vm0 * wv[1] + vm1 * wv[2]
                v_u[1] += -vm0 * wv[0] + vm2 * wv[2]
                v_u[2] += -vm1 * wv[0] - vm2 * wv[1]
                v_w[0] += -vm0 * u[1] - vm1 * u[2]
                v_w[1] += vm0 * u[0] - vm2 * u[2]
                v_w[2] += vm1 * u[0] + vm2 * u[1]
                # u = J0 Mc, w = J1 Mc (J0 = (J00, 0, J02), J1 = (0, J11, J12))
                v_J00 = v_J02 = v_J11 = v_J12 = 0.0
                for j in range(3):
                    v_J00 += v_u[j] * Mc[0, j]
                    v_J02 += v_u[j] * Mc[2, j]
                    v_J11 += v_w[j] * Mc[1, j]
                    v_J12 += v_w[j] * Mc[2, j]
                for j in range(3):
                    v_Mc[0, j] = J00 * v_u[j]
                    v_Mc[1, j] = J11 * v_w[j]
                    v_Mc[2, j] = J02 * v_u[j] + J12 * v_w[j]
                tz2 = tz * tz
                v_tz = -fx / tz2 * v_J00 + 2 * fx * txc / (tz2 * tz) * v_J02
                v_tz += -fy / tz2 * v_J11 + 2 * fy * tyc / (tz2 * tz) * v_J12
                v_txc = -fx / tz2 * v_J02
                v_tyc = -fy / tz2 * v_J12
                v_tx = 0.0
                v_ty = 0.0
                if clamp_x:
                    v_tz += v_txc * uxc
                else:
                    v_tx += v_txc
                if clamp_y:
                    v_tz += v_tyc * uyc
                else:
                    v_ty += v_tyc
                # means2d = (fx tx / tz + cx, fy ty / tz + cy)
                gx, gy = np.float64(v_means2d[b, g, 0]), np.float64(v_means2d[b, g, 1])
                v_tx += gx * fx / tz
                v_ty += gy * fy / tz
                v_tz += -(gx * fx * tx + gy * fy * ty) / tz2
                v_mc[0] += v_tx
                v_mc[1] += v_ty
                v_mc[2] += v_tz
                # Mc = Rv M, M = R diag(s)
                for j in range(3):
                    sj = np.float64(scales[b, g, j])
                    vs = 0.0
                    for i in range(3):
                        vM = Rv[0, i] * v_Mc[0, j] + Rv[1, i] * v_Mc[1, j] + Rv[2, i] * v_Mc[2, j]
                        v_R[i, j] = vM * sj
                        vs += vM * R[i, j]
                    v_scales[b, g, j] = vs
                w, x, y, z = qw, qx, qy, qz
                vw = 2 * (-z * v_R[0, 1] + y * v_R[0, 2] + z * v_R[1, 0] - x * v_R[1, 2] - y * v_R[2, 0] + x * v_R[2, 1])
                vx = 2 * (y * v_R[0, 1] + z * v_R[0, 2] + y * v_R[1, 0] - 2 * x * v_R[1, 1] - w * v_R[1, 2]
                          + z * v_R[2, 0] + w * v_R[2, 1] - 2 * x * v_R[2, 2])  # fmt: skip
                vy = 2 * (-2 * y * v_R[0, 0] + x * v_R[0, 1] + w * v_R[0, 2] + x * v_R[1, 0] + z * v_R[1, 2]
                          - w * v_R[2, 0] + z * v_R[2, 1] - 2 * y * v_R[2, 2])  # fmt: skip
                vz = 2 * (-2 * z * v_R[0, 0] - w * v_R[0, 1] + x * v_R[0, 2] + w * v_R[1, 0] - 2 * z * v_R[1, 1]
                          + y * v_R[1, 2] + x * v_R[2, 0] + y * v_R[2, 1])  # fmt: skip
                # q = raw / |raw|: project out the radial component
                dot = w * vw + x * vx + y * vy + z * vz
                v_quats[b, g, 0] = (vw - w * dot) / qn
                v_quats[b, g, 1] = (vx - x * dot) / qn
                v_quats[b, g, 2] = (vy - y * dot) / qn
                v_quats[b, g, 3] = (vz - z * dot) / qn
            for j in range(3):  # mc = Rv m + t
                v_means[b, g, j] = Rv[0, j] * v_mc[0] + Rv[1, j] * v_mc[1] + Rv[2, j] * v_mc[2]
    return v_means, v_quats, v_scales


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


class ProjectGaussians(torch.autograd.Function):
    """(means, quats, scales) -> (means2d, conics, depths, radii, extents); see project_gaussians."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near, far):  # type: ignore[override]
        arrays = (_np(means), _np(quats), _np(scales), _np(viewmats), _np(Ks))
        use_op = opacities is not None
        op = _np(opacities) if use_op else np.zeros(means.shape[:2], np.float32)
        m2, co, dp, radii, ext = project_fwd(
            arrays[0], arrays[1], arrays[2], op, arrays[3], arrays[4], int(width), int(height),
            float(eps2d), float(near), float(far), use_op,
        )  # fmt: skip
        ctx.arrays = arrays + (radii,)
        ctx.consts = (int(width), int(height), float(eps2d))
        radii_t, ext_t = torch.from_numpy(radii), torch.from_numpy(ext)
        ctx.mark_non_differentiable(radii_t, ext_t)
        return torch.from_numpy(m2), torch.from_numpy(co), torch.from_numpy(dp), radii_t, ext_t

    @staticmethod
    def backward(ctx, v_m2, v_co, v_dp, _v_radii, _v_ext):  # type: ignore[override]
        means, quats, scales, viewmats, Ks, radii = ctx.arrays
        width, height, eps2d = ctx.consts
        z = lambda shape: np.zeros(shape, np.float32)  # noqa: E731
        B, N = means.shape[:2]
        v_means, v_quats, v_scales = project_bwd(
            means, quats, scales, viewmats, Ks, radii, width, height, eps2d,
            z((B, N, 2)) if v_m2 is None else _np(v_m2),
            z((B, N, 3)) if v_co is None else _np(v_co),
            z((B, N)) if v_dp is None else _np(v_dp),
        )  # fmt: skip
        return (torch.from_numpy(v_means), torch.from_numpy(v_quats), torch.from_numpy(v_scales),
                None, None, None, None, None, None, None, None)  # fmt: skip


def project_gaussians(
    means: torch.Tensor,  # [B, N, 3] world
    quats: torch.Tensor,  # [B, N, 4] wxyz
    scales: torch.Tensor,  # [B, N, 3] metres
    viewmats: torch.Tensor,  # [B, 4, 4]
    Ks: torch.Tensor,  # [B, 3, 3]
    width: int,
    height: int,
    opacities: torch.Tensor | None = None,  # [B, N]
    eps2d: float = 0.3,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
) -> Projection:
    """Project B x N Gaussians into B cameras (each batch row has its own Gaussians).

    Differentiable w.r.t. means, quats and scales (float32 outputs, float64 inside).
    """
    m2, co, dp, radii, ext = ProjectGaussians.apply(
        means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane
    )
    return Projection(means2d=m2, conics=co, depths=dp, radii=radii, extents=ext)
