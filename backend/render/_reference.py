"""Plain-torch brute-force twins of the fast kernels, for tests (slow: small scenes only).

- ``rasterize_to_pixels``: PyTorch implementation of ``rasterize.rasterize_to_pixels`` (the numba
  tile compositor): every Gaussian is evaluated at every pixel, composited front to back with the
  same rules, and differentiated by autograd.
- ``bin_gaussians``: plain-numpy twin of ``rasterize.bin_gaussians`` (the numba tile binning with
  its radix depth sort): every tile's list by testing every Gaussian's pixel box against it, then a
  stable argsort by depth.
- ``rasterize_depth``: PyTorch implementation of ``depth.rasterize_depth`` (every face tested at
  every pixel centre).
- ``project_gaussians``: PyTorch implementation of ``projection.project_gaussians`` (the numba
  EWA projection with its hand-written backward); differentiated by autograd. It follows gsplat
  1.5.3's ``_torch_impl._fully_fused_projection`` and is tested against it.
"""

from __future__ import annotations

import numpy as np
import torch

from ..rotations import quat_to_matrix_torch
from .camera import Camera
from .projection import EXTEND, Projection

ALPHA_THRESHOLD = 1.0 / 255.0
T_EPS = 1e-4


def rasterize_to_pixels(
    means2d: torch.Tensor,  # [B, N, 2]
    conics: torch.Tensor,  # [B, N, 3]
    opacities: torch.Tensor,  # [B, N]
    colors: torch.Tensor,  # [B, N, D]
    extents: torch.Tensor,  # [B, N, 2] (0 = culled)
    depths: torch.Tensor,  # [B, N]
    width: int,
    height: int,
    transmittance_stop: float = T_EPS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Brute-force front-to-back compositing in float64 -> image (B, H, W, D), alpha (B, H, W).

    ``transmittance_stop`` > T_EPS: a pixel also stops after the Gaussian that brings its
    transmittance to that value or below (inclusive), as ``rasterize_to_pixels``."""
    B, N, D = colors.shape
    dt = torch.float64
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=dt) + 0.5, torch.arange(width, dtype=dt) + 0.5, indexing="ij"
    )  # [H, W]
    images, alphas = [], []
    for b in range(B):
        visible = (extents[b, :, 0] > 0).nonzero().flatten()
        order = visible[torch.argsort(depths[b, visible].detach(), stable=True)]
        T = torch.ones(height, width, dtype=dt)
        acc = torch.zeros(height, width, D, dtype=dt)
        done = torch.zeros(height, width, dtype=torch.bool)
        for g in order.tolist():
            dx = means2d[b, g, 0].to(dt) - xs
            dy = means2d[b, g, 1].to(dt) - ys
            a, bb, c = conics[b, g].to(dt)
            sigma = 0.5 * (a * dx * dx + c * dy * dy) + bb * dx * dy
            alpha = torch.clamp(opacities[b, g].to(dt) * torch.exp(-sigma), max=0.999)
            use = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD) & ~done
            next_T = T * (1.0 - alpha)
            stop = use & (next_T <= T_EPS)  # exclusive: this Gaussian is not composited
            done = done | stop
            use = use & ~stop
            w = torch.where(use, alpha * T, torch.zeros_like(T))
            acc = acc + w[..., None] * colors[b, g].to(dt)
            T = torch.where(use, next_T, T)
            done = done | (use & (next_T <= transmittance_stop))  # inclusive: composited, then stop
        images.append(acc)
        alphas.append(1.0 - T)
    return torch.stack(images).float(), torch.stack(alphas).float()


def bin_gaussians(
    means2d: np.ndarray, extents: np.ndarray, depths: np.ndarray, width: int, height: int, tile_size: int
) -> list[list[np.ndarray]]:
    """Per camera, per tile (row-major): the ids of the Gaussians whose footprint box covers a pixel
    centre of the tile, front to back (stable). means2d/extents (B, N, 2), depths (B, N)."""
    tiles_x = -(-width // tile_size)
    tiles_y = -(-height // tile_size)
    out = []
    for b in range(means2d.shape[0]):
        mx, my = means2d[b, :, 0].astype(np.float64), means2d[b, :, 1].astype(np.float64)
        ex, ey = extents[b, :, 0].astype(np.float64), extents[b, :, 1].astype(np.float64)
        # pixels whose centres (p + 0.5) lie within [m - e, m + e], clipped to the image
        gx0 = np.maximum(0, np.ceil(mx - ex - 0.5)); gx1 = np.minimum(width - 1, np.floor(mx + ex - 0.5))
        gy0 = np.maximum(0, np.ceil(my - ey - 0.5)); gy1 = np.minimum(height - 1, np.floor(my + ey - 0.5))
        ok = (extents[b, :, 0] > 0) & (gx0 <= gx1) & (gy0 <= gy1)
        order = np.argsort(depths[b], kind="stable")
        tiles = []
        for ty in range(tiles_y):
            for tx in range(tiles_x):
                x0, y0 = tx * tile_size, ty * tile_size
                hit = ok & (gx0 < x0 + tile_size) & (gx1 >= x0) & (gy0 < y0 + tile_size) & (gy1 >= y0)
                tiles.append(order[hit[order]].astype(np.int32))
        out.append(tiles)
    return out


def rasterize_depth(
    verts: np.ndarray, faces: np.ndarray, camera: Camera, near_plane: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force z-buffer: (H, W) float32 depth (inf = empty), (H, W) int64 face id (-1 = empty).

    Same rules as ``depth.rasterize_depth``: faces with a vertex at or before the near plane are
    skipped, a pixel centre is covered when all barycentrics are >= -1e-9 (inclusive edges),
    depth is perspective-correct (1/z interpolated linearly in screen space), nearest wins and
    equal depths keep the lower face id.
    """
    pc = torch.from_numpy(camera.to_camera(verts).astype(np.float64))  # [V, 3]
    z = pc[:, 2]
    K = torch.from_numpy(camera.K.astype(np.float64))
    zs = torch.where(z > near_plane, z, torch.ones_like(z))
    uv = torch.stack([K[0, 0] * pc[:, 0] / zs + K[0, 2], K[1, 1] * pc[:, 1] / zs + K[1, 2]], -1)
    f = torch.from_numpy(np.asarray(faces, np.int64))
    H, W = camera.height, camera.width
    ys, xs = torch.meshgrid(torch.arange(H, dtype=torch.float64) + 0.5, torch.arange(W, dtype=torch.float64) + 0.5, indexing="ij")
    px, py = xs.reshape(-1, 1), ys.reshape(-1, 1)  # [P, 1]
    v0, v1, v2 = uv[f[:, 0]], uv[f[:, 1]], uv[f[:, 2]]  # [F, 2]
    z0, z1, z2 = z[f[:, 0]], z[f[:, 1]], z[f[:, 2]]
    area = (v1[:, 0] - v0[:, 0]) * (v2[:, 1] - v0[:, 1]) - (v1[:, 1] - v0[:, 1]) * (v2[:, 0] - v0[:, 0])
    ok = (z0 > near_plane) & (z1 > near_plane) & (z2 > near_plane) & (area.abs() > 1e-12)
    area = torch.where(ok, area, torch.ones_like(area))

    def edge(a, b):  # [P, F] signed area of (a, b, pixel)
        return (b[:, 0] - a[:, 0]) * (py - a[:, 1]) - (b[:, 1] - a[:, 1]) * (px - a[:, 0])

    w0 = edge(v1, v2) / area
    w1 = edge(v2, v0) / area
    w2 = edge(v0, v1) / area
    inside = (w0 >= -1e-9) & (w1 >= -1e-9) & (w2 >= -1e-9) & ok
    depth = 1.0 / (w0 / z0 + w1 / z1 + w2 / z2)
    depth = torch.where(inside, depth, torch.full_like(depth, float("inf")))  # [P, F]
    best, fid = depth.min(dim=1)  # first minimum = lowest face id among equal depths
    fid = torch.where(torch.isfinite(best), fid, torch.full_like(fid, -1))
    return best.reshape(H, W).float().numpy(), fid.reshape(H, W).numpy()


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
    """Project B x N Gaussians into B cameras (each batch row has its own Gaussians)."""
    Rv = viewmats[:, None, :3, :3]  # [B, 1, 3, 3]
    tv = viewmats[:, None, :3, 3]  # [B, 1, 3]
    means_c = (Rv @ means[..., None]).squeeze(-1) + tv  # [B, N, 3]
    # camera-frame square root of the covariance: M_c = Rv R diag(s); cov_c = M_c M_c^T
    M_c = Rv @ (quat_to_matrix_torch(quats) * scales[..., None, :])  # [B, N, 3, 3]

    tx, ty, tz = means_c.unbind(-1)  # [B, N]
    depth_ok = (tz > near_plane) & (tz < far_plane)
    tz_safe = torch.where(depth_ok, tz, torch.ones_like(tz))
    fx = Ks[:, None, 0, 0]  # [B, 1]
    fy = Ks[:, None, 1, 1]
    cx = Ks[:, None, 0, 2]
    cy = Ks[:, None, 1, 2]
    tan_fovx = 0.5 * width / fx
    tan_fovy = 0.5 * height / fy
    lim_x_pos = (width - cx) / fx + 0.3 * tan_fovx
    lim_x_neg = cx / fx + 0.3 * tan_fovx
    lim_y_pos = (height - cy) / fy + 0.3 * tan_fovy
    lim_y_neg = cy / fy + 0.3 * tan_fovy
    txc = tz_safe * torch.maximum(torch.minimum(tx / tz_safe, lim_x_pos), -lim_x_neg)
    tyc = tz_safe * torch.maximum(torch.minimum(ty / tz_safe, lim_y_pos), -lim_y_neg)

    # Jacobian rows of (fx x/z, fy y/z) at the clamped mean
    zero = torch.zeros_like(tz)
    J = torch.stack(
        [fx / tz_safe, zero, -fx * txc / tz_safe**2, zero, fy / tz_safe, -fy * tyc / tz_safe**2], dim=-1
    ).reshape(tz.shape + (2, 3))  # [B, N, 2, 3]
    JM = J @ M_c  # [B, N, 2, 3]
    cov2d = JM @ JM.transpose(-1, -2)  # [B, N, 2, 2]
    a0 = cov2d[..., 0, 0]
    c0 = cov2d[..., 1, 1]
    a = a0 + eps2d
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    c = c0 + eps2d
    # det(JM JM^T) by Cauchy-Binet (sum of squared 2x2 minors of JM): no cancellation, unlike
    # a*c - b^2, which loses most float32 digits for needle-like Gaussians. Same value in exact math.
    u, w = JM[..., 0, :], JM[..., 1, :]  # [B, N, 3]
    minors = torch.stack(
        [u[..., 0] * w[..., 1] - u[..., 1] * w[..., 0],
         u[..., 0] * w[..., 2] - u[..., 2] * w[..., 0],
         u[..., 1] * w[..., 2] - u[..., 2] * w[..., 1]], dim=-1,
    )  # fmt: skip
    det = minors.square().sum(-1) + eps2d * (a0 + c0) + eps2d * eps2d
    det_ok = det > 0
    det_safe = torch.where(det_ok, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], dim=-1)  # [B, N, 3]

    means2d = torch.stack([fx * tx / tz_safe + cx, fy * ty / tz_safe + cy], dim=-1)  # [B, N, 2]

    with torch.no_grad():
        extend = torch.full_like(tz, EXTEND)
        valid = depth_ok & det_ok & torch.isfinite(a) & torch.isfinite(c) & torch.isfinite(means2d).all(-1)
        if opacities is not None:
            op = opacities.detach()
            valid &= op >= ALPHA_THRESHOLD
            extend = torch.minimum(
                extend, torch.sqrt(2.0 * torch.log(op.clamp(min=ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
            )
        ext = torch.stack([extend * a.clamp(min=0).sqrt(), extend * c.clamp(min=0).sqrt()], dim=-1)  # [B, N, 2]
        radius = torch.ceil(ext)
        m2 = means2d.detach()
        inside = (
            (m2[..., 0] + radius[..., 0] > 0)
            & (m2[..., 0] - radius[..., 0] < width)
            & (m2[..., 1] + radius[..., 1] > 0)
            & (m2[..., 1] - radius[..., 1] < height)
        )
        valid &= inside & (radius > 0).any(-1)
        radius = torch.where(valid[..., None], radius, torch.zeros_like(radius))
        ext = torch.where(valid[..., None], ext, torch.zeros_like(ext))
        # radii can be astronomically large for huge Gaussians: clip before the int cast
        radii = radius.clamp(max=2**30).to(torch.int32)
    return Projection(means2d=means2d, conics=conics, depths=tz, radii=radii, extents=ext.float())
