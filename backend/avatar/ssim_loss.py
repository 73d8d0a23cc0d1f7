"""The refinement's SSIM term as one fused numba forward and backward pass.

The refinement's structural term (refine.py) is the mean-filter SSIM: means, variances and the
covariance over a ``win`` x ``win`` box around each pixel, zero padded with the padding counted
(torch's ``avg_pool2d(x, win, 1, win // 2)``), K1 0.01, K2 0.03, data range 1. Its plain torch
twin is :func:`ssim_map_reference`; autograd through it took about 130 ms forward and 50 ms
backward for a 512 x 512 RGB image on one thread (docs/figures/loop.md), the largest part of a
refinement step. Here the five box filters are running sums (two passes, O(1) a pixel whatever the
window), the SSIM and its derivatives with respect to the three moments of the render (mean,
mean of squares, mean of the product with the target) are formed in the same pass, and the
backward is three more box filters (the zero-padded box is its own adjoint). Accumulation is in
float64, so the result equals the float64 reference to about 1e-7 (tests/avatar/test_ssim_loss.py).

Only the render receives a gradient (the target is data). Pixels whose whole window is zero in
both images have SSIM exactly 1 and add nothing, so the work is limited to the bounding box of the
non-zero pixels grown by twice the window radius (a render over black: the person's box).
"""

from __future__ import annotations

import numba as nb
import numpy as np
import torch

C1 = 0.01 ** 2
C2 = 0.03 ** 2


def ssim_map_reference(x: torch.Tensor, y: torch.Tensor, win: int = 7) -> torch.Tensor:
    """Mean-filter SSIM map of (B, C, H, W) images in [0, 1] -> (B, C, H, W): the plain torch twin
    of :func:`ssim_loss` (autograd through avg_pool2d)."""
    pool = torch.nn.functional.avg_pool2d
    pad = win // 2
    mu_x, mu_y = pool(x, win, 1, pad), pool(y, win, 1, pad)
    sxx = pool(x * x, win, 1, pad) - mu_x ** 2
    syy = pool(y * y, win, 1, pad) - mu_y ** 2
    sxy = pool(x * y, win, 1, pad) - mu_x * mu_y
    return ((2 * mu_x * mu_y + C1) * (2 * sxy + C2)) / ((mu_x ** 2 + mu_y ** 2 + C1) * (sxx + syy + C2))


@nb.njit(cache=True, inline="always")
def _box_rows(src, out, r):
    """out[i, j] = sum of src[i, j - r .. j + r] (zero outside), running sums; (H, W) float64."""
    H, W = src.shape
    for i in range(H):
        s = 0.0
        for j in range(min(r, W)):
            s += src[i, j]
        for j in range(W):
            if j + r < W:
                s += src[i, j + r]
            if j - r - 1 >= 0:
                s -= src[i, j - r - 1]
            out[i, j] = s


@nb.njit(cache=True, inline="always")
def _box_cols(src, out, r, acc):
    """out[i, j] = sum of src[i - r .. i + r, j] (zero outside); acc (W,) float64 scratch."""
    H, W = src.shape
    acc[:] = 0.0
    for i in range(min(r, H)):
        for j in range(W):
            acc[j] += src[i, j]
    for i in range(H):
        if i + r < H:
            for j in range(W):
                acc[j] += src[i + r, j]
        if i - r - 1 >= 0:
            for j in range(W):
                acc[j] -= src[i - r - 1, j]
        for j in range(W):
            out[i, j] = acc[j]


@nb.njit(cache=True, nogil=True)
def _nonzero_box(x, y):
    """(P, H, W) float32 planes -> (row0, row1, col0, col1), the half-open box of the pixels
    non-zero in any plane of x or y; (0, 0, 0, 0) when there are none (one pass, no temporaries:
    torch's boolean reductions over a 512 x 512 x 3 image took about 40 ms)."""
    P, H, W = x.shape
    r0, r1, c0, c1 = H, -1, W, -1
    for p in range(P):
        for i in range(H):
            for j in range(W):
                if x[p, i, j] != 0 or y[p, i, j] != 0:
                    if i < r0:
                        r0 = i
                    if i > r1:
                        r1 = i
                    if j < c0:
                        c0 = j
                    if j > c1:
                        c1 = j
    if r1 < 0:
        return 0, 0, 0, 0
    return r0, r1 + 1, c0, c1 + 1


@nb.njit(cache=True, parallel=True, nogil=True)
def _ssim_fwd(x, y, w, plane_w, win):
    """x, y (P, H, W) float32 planes; w (Q, H, W) float32 weights, plane p weighted by
    w[plane_w[p]]. -> (sum over pixels of w (1 - SSIM) per plane as (P,) float64,
    gradient maps (P, 3, H, W) float32 of that sum with respect to the render's box means of
    x, x^2 and x y). The row pass sums the five moments straight from x and y; the column pass
    keeps one row of running sums and evaluates SSIM as each row of windows completes."""
    P, H, W = x.shape
    r = win // 2
    inv = 1.0 / (win * win)
    total = np.zeros(P, np.float64)
    grads = np.empty((P, 3, H, W), np.float32)
    for p in nb.prange(P):
        rows = np.empty((5, H, W), np.float64)     # window sums along each row
        for i in range(H):
            s0 = s1 = s2 = s3 = s4 = 0.0
            for j in range(-r, W):
                jn = j + r
                if jn < W:
                    a = np.float64(x[p, i, jn])
                    b = np.float64(y[p, i, jn])
                    s0 += a
                    s1 += b
                    s2 += a * a
                    s3 += b * b
                    s4 += a * b
                jo = j - r - 1
                if jo >= 0:
                    a = np.float64(x[p, i, jo])
                    b = np.float64(y[p, i, jo])
                    s0 -= a
                    s1 -= b
                    s2 -= a * a
                    s3 -= b * b
                    s4 -= a * b
                if j >= 0:
                    rows[0, i, j] = s0
                    rows[1, i, j] = s1
                    rows[2, i, j] = s2
                    rows[3, i, j] = s3
                    rows[4, i, j] = s4
        acc = np.zeros((5, W), np.float64)
        for i in range(min(r, H)):
            for k in range(5):
                for j in range(W):
                    acc[k, j] += rows[k, i, j]
        q = plane_w[p]
        s_tot = 0.0
        for i in range(H):
            if i + r < H:
                for k in range(5):
                    for j in range(W):
                        acc[k, j] += rows[k, i + r, j]
            if i - r - 1 >= 0:
                for k in range(5):
                    for j in range(W):
                        acc[k, j] -= rows[k, i - r - 1, j]
            for j in range(W):
                mx = acc[0, j] * inv
                my = acc[1, j] * inv
                exx = acc[2, j] * inv
                eyy = acc[3, j] * inv
                exy = acc[4, j] * inv
                a1 = 2.0 * mx * my + C1
                a2 = 2.0 * (exy - mx * my) + C2
                b1 = mx * mx + my * my + C1
                b2 = (exx - mx * mx) + (eyy - my * my) + C2
                den = b1 * b2
                s = a1 * a2 / den
                wt = np.float64(w[q, i, j])
                s_tot += wt * (1.0 - s)
                # d(w (1 - S)) / d(moment) = -w dS/d(moment), moments mu_x, E[x^2], E[xy]
                ds_a1 = a2 / den
                ds_a2 = a1 / den
                ds_b1 = -s / b1
                ds_b2 = -s / b2
                grads[p, 0, i, j] = -wt * (2.0 * my * (ds_a1 - ds_a2) + 2.0 * mx * (ds_b1 - ds_b2))
                grads[p, 1, i, j] = -wt * ds_b2
                grads[p, 2, i, j] = -wt * 2.0 * ds_a2
        total[p] = s_tot
    return total, grads


@nb.njit(cache=True, parallel=True, nogil=True)
def _ssim_bwd(x, y, grads, win, scale):
    """(P, H, W) float32 gradient of the summed loss with respect to the render x: the moments'
    gradients carried back through their box filters (each its own adjoint), times ``scale``."""
    P, H, W = x.shape
    r = win // 2
    inv = scale / (win * win)
    out = np.empty((P, H, W), np.float32)
    for p in nb.prange(P):
        tmp = np.empty((H, W), np.float64)
        acc = np.empty(W, np.float64)
        src = np.empty((H, W), np.float64)
        bx = np.empty((3, H, W), np.float64)
        for k in range(3):
            for i in range(H):
                for j in range(W):
                    src[i, j] = grads[p, k, i, j]
            _box_rows(src, tmp, r)
            _box_cols(tmp, bx[k], r, acc)
        for i in range(H):
            for j in range(W):
                a = np.float64(x[p, i, j])
                out[p, i, j] = inv * (bx[0, i, j] + 2.0 * a * bx[1, i, j] + np.float64(y[p, i, j]) * bx[2, i, j])
    return out


class _SSIMLoss(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, win: int) -> torch.Tensor:  # type: ignore[override]
        B, C, H, W = x.shape
        xp = x.detach().reshape(B * C, H, W).contiguous().numpy()
        yp = y.detach().to(torch.float32).reshape(B * C, H, W).contiguous().numpy()
        wq = w.detach().to(torch.float32).expand(B, w.shape[1], H, W)
        planes_per_w = C // wq.shape[1]
        wp = wq.reshape(-1, H, W).contiguous().numpy()
        plane_w = (np.arange(B * C) // planes_per_w).astype(np.int64)
        total, grads = _ssim_fwd(xp, yp, wp, plane_w, win)
        ctx.saved = (xp, yp, grads, win, x.shape)
        return torch.tensor(float(total.sum()), dtype=x.dtype)

    @staticmethod
    def backward(ctx, go: torch.Tensor):  # type: ignore[override]
        xp, yp, grads, win, shape = ctx.saved
        g = _ssim_bwd(xp, yp, grads, win, float(go))
        return torch.from_numpy(g).reshape(shape), None, None, None


def ssim_loss(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor, win: int = 7) -> torch.Tensor:
    """Scalar sum over every pixel and channel of w (1 - SSIM(x, y)), the mean-filter SSIM of
    :func:`ssim_map_reference`; x (B, C, H, W) float32 render (receives the gradient), y (B, C, H, W)
    target (none), w (B, 1 or C, H, W) weights. Computed over the bounding box of the pixels
    non-zero in x or y, grown by 2 (win // 2): beyond it SSIM is exactly 1 and its gradient 0."""
    if x.shape != y.shape:
        raise ValueError(f"ssim_loss: render {tuple(x.shape)} and target {tuple(y.shape)} differ")
    H, W = x.shape[-2:]
    w = w.expand(x.shape[0], w.shape[1], H, W)
    B, C = x.shape[:2]
    r0, r1, c0, c1 = _nonzero_box(x.detach().reshape(B * C, H, W).contiguous().numpy(),
                                  y.detach().to(torch.float32).reshape(B * C, H, W).contiguous().numpy())
    if r1 == 0:
        return (x * 0).sum()
    m = 2 * (win // 2)  # SSIM differs from 1 within win // 2 of them, its gradient within twice that
    r0, r1 = max(r0 - m, 0), min(r1 + m, H)
    c0, c1 = max(c0 - m, 0), min(c1 + m, W)
    return _SSIMLoss.apply(x[..., r0:r1, c0:c1], y[..., r0:r1, c0:c1], w[..., r0:r1, c0:c1], win)
