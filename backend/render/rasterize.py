"""Differentiable CPU tile rasterizer: screen-space Gaussians -> images (torch.autograd.Function).

The CPU twin of gsplat's ``isect_tiles`` + ``rasterize_to_pixels``; kernels in ``_kernels.py``,
plain-torch reference in ``_reference.py`` (``rasterize_to_pixels``).
Memory: the intersection list (one int32 per Gaussian-tile overlap) plus per-pixel state; nothing
scales with Gaussians x pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import torch

from . import _kernels, _kernels_simd

TILE_SIZE = 16


@dataclass
class TileBins:
    """Depth-sorted Gaussian ids per (camera, tile). offsets (B * n_tiles + 1,) int64, ids (M,) int32."""

    offsets: np.ndarray
    ids: np.ndarray
    width: int
    height: int
    tile_size: int

    @property
    def n_intersections(self) -> int:
        return int(self.ids.shape[0])


def bin_gaussians(
    means2d: np.ndarray, extents: np.ndarray, depths: np.ndarray, width: int, height: int,
    tile_size: int = TILE_SIZE,
) -> TileBins:  # fmt: skip
    """Bin visible Gaussians (extents > 0) into tiles, each tile's list sorted front to back.

    means2d (B, N, 2) f32, extents (B, N, 2) f32, depths (B, N) f32. At most 65,535 tiles a side
    (the kernel packs tile indices into 16 bits).
    """
    if max(-(-int(width) // int(tile_size)), -(-int(height) // int(tile_size))) > 0xFFFF:
        raise ValueError(f"{width}x{height} pixels in {tile_size}-pixel tiles: more than 65,535 tiles a side")
    offsets, ids = _kernels.bin_tiles(
        np.ascontiguousarray(means2d, np.float32), np.ascontiguousarray(extents, np.float32),
        np.ascontiguousarray(depths, np.float32), int(width), int(height), int(tile_size),
    )  # fmt: skip
    return TileBins(offsets, ids, int(width), int(height), int(tile_size))


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float32).contiguous().numpy()


class RasterizeToPixels(torch.autograd.Function):
    """(means2d, conics, opacities, colors) -> (image (B, H, W, D), alpha (B, H, W)), no background."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, extents, bins: TileBins,  # type: ignore[override]
                transmittance_stop: float = _kernels.T_EPS):
        m2, co, op, col, ex = _np(means2d), _np(conics), _np(opacities), _np(colors), _np(extents)
        smax = _kernels.sigma_max(op)
        order = _kernels.tile_order(bins.offsets.shape[0] - 1, numba.get_num_threads())
        out, T_final, last = _kernels.rasterize_fwd(
            m2, co, op, smax, col, ex, bins.offsets, bins.ids, bins.width, bins.height, bins.tile_size, order,
            float(transmittance_stop),
        )
        ctx.arrays = (m2, co, op, smax, col, ex, T_final, last, order)
        ctx.bins = bins
        alpha = (1.0 - T_final).astype(np.float32)
        return torch.from_numpy(out), torch.from_numpy(alpha)

    @staticmethod
    def backward(ctx, v_out, v_alpha):  # type: ignore[override]
        m2, co, op, smax, col, ex, T_final, last, order = ctx.arrays
        bins: TileBins = ctx.bins
        B, N = op.shape
        v_out_np = np.zeros(col.shape[:1] + T_final.shape[1:] + col.shape[2:], np.float32) if v_out is None else _np(v_out)
        v_alpha_np = np.zeros(T_final.shape, np.float32) if v_alpha is None else _np(v_alpha)
        g_geo, g_col = _kernels.rasterize_bwd(
            m2, co, op, smax, col, ex, bins.offsets, bins.ids, T_final, last, v_out_np, v_alpha_np,
            bins.width, bins.height, bins.tile_size, order,
        )  # fmt: skip
        geo, colg = _kernels.reduce_isect(bins.ids, bins.offsets, g_geo, g_col, B, N)
        geo_t = torch.from_numpy(geo)  # [B, N, 6]
        return geo_t[..., 0:2], geo_t[..., 2:5], geo_t[..., 5], torch.from_numpy(colg), None, None, None


def rasterize_to_pixels(
    means2d: torch.Tensor,  # [B, N, 2]
    conics: torch.Tensor,  # [B, N, 3]
    opacities: torch.Tensor,  # [B, N]
    colors: torch.Tensor,  # [B, N, D]
    extents: torch.Tensor,  # [B, N, 2] (0 = culled)
    depths: torch.Tensor,  # [B, N] sort key
    width: int,
    height: int,
    tile_size: int = TILE_SIZE,
    transmittance_stop: float = _kernels.T_EPS,
    background: torch.Tensor | None = None,  # [B, D]
    simd: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, TileBins]:
    """Composite front to back; returns image (B, H, W, D), alpha (B, H, W) and the tile bins.
    ``transmittance_stop``: see ``_kernels.rasterize_fwd`` (t_stop). ``background``: None, or
    (B, D): the image is composited over it, image + (1 - alpha) background. When no gradient can
    flow (torch.no_grad, or no input requires one) the forward-only ``_kernels.rasterize_image``
    runs instead: the same image and alpha, bit for bit, without the backward pass's bookkeeping
    (and the background added as each tile is written, not in a pass of its own). ``simd``: without
    gradients, run ``_kernels_simd.rasterize_image_simd`` instead (8-pixel float32 vectors, a
    polynomial exp: within about 1e-6 of that image but for rare flips at the alpha cut-off, see
    its module docstring; about half the compositing CPU at LOD 2); ignored when gradients flow."""
    bins = bin_gaussians(
        _np(means2d), _np(extents), _np(depths), width, height, tile_size
    )
    inputs = (means2d, conics, opacities, colors) + (() if background is None else (background,))
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
    if not needs_grad and tile_size <= _kernels.MAX_MASK_TILE:
        op = _np(opacities)
        n_blocks = numba.get_num_threads()
        order = _kernels.tile_order(bins.offsets.shape[0] - 1, n_blocks)
        kernel = _kernels_simd.rasterize_image_simd if simd else _kernels.rasterize_image
        out, alpha = kernel(
            _np(means2d), _np(conics), op, _kernels.sigma_max(op), _np(colors), _np(extents), bins.offsets,
            bins.ids, bins.width, bins.height, bins.tile_size, order, n_blocks, float(transmittance_stop),
            None if background is None else _np(background),
        )  # fmt: skip
        return torch.from_numpy(out), torch.from_numpy(alpha), bins
    image, alpha = RasterizeToPixels.apply(means2d, conics, opacities, colors, extents, bins, transmittance_stop)
    if background is not None:
        image = image + (1.0 - alpha)[..., None] * background[:, None, None, :]
    return image, alpha, bins
