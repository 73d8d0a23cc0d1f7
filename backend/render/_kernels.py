"""Numba kernels of the CPU tile splatter: tile binning, forward and backward compositing.

Conventions follow gsplat 1.5.3 (``RasterizeToPixels3DGSFwd.cu`` / ``...Bwd.cu``): pixel centres at
+0.5, sigma = 0.5 (a dx^2 + c dy^2) + b dx dy with d = mean - pixel, alpha = min(0.999,
opacity exp(-sigma)), Gaussians with sigma < 0 or alpha < 1/255 are skipped, and a pixel stops
(exclusively: the Gaussian that would push it there is not composited) when its transmittance
would fall to 1e-4 or below.

Layout differs from the GPU: a tile is one CPU task (``prange`` over camera x tile), and inside a
tile the loop runs over the tile's depth-sorted Gaussians, each visiting only the pixels of its own
footprint box (``extents``: beyond it alpha < 1/255, see projection.py), so the work is the summed
footprint area rather than Gaussians x tile pixels. Along a row sigma is updated as a quadratic
in dx, and pixels with sigma > ln(255 opacity) are rejected before the exp (clipping each row to
the exact ellipse was measured slower than testing the box's pixels). Transmittance is kept in
float64 so the backward pass can undo it by division without float32 round-off blow-up.

Gradients of Gaussians that touch several tiles are written per intersection and summed
afterwards (deterministic, no atomics).

The kernels release the GIL (``nogil``): the preview's background writer thread (PNG, ffmpeg)
runs while a frame is being splatted instead of waiting for the kernel to return.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.core.extending import intrinsic

ALPHA_THRESHOLD = np.float32(1.0 / 255.0)
T_EPS = 1e-4
MAX_ALPHA = np.float32(0.999)


def tile_order(n_jobs: int, n_threads: int) -> np.ndarray:
    """Job permutation for numba's static prange split into n_threads contiguous blocks: block r
    gets jobs r, r + n_threads, r + 2 n_threads, ... so every thread samples the whole image
    (tile costs vary a lot: background vs face). numba's dynamic chunking was measured far
    slower (hundreds of ms of scheduling overhead per call with small chunks)."""
    n_threads = max(1, int(n_threads))
    return np.concatenate([np.arange(r, n_jobs, n_threads) for r in range(n_threads)]).astype(np.int64)


def sigma_max(opacities: np.ndarray) -> np.ndarray:
    """(B, N) f32 ln(255 opacity): the largest sigma with opacity exp(-sigma) >= 1/255 (negative
    for opacity < 1/255, which then never composites). Shared by forward and backward so both
    skip exactly the same (Gaussian, pixel) pairs."""
    return np.log(np.maximum(opacities, 1e-30) / ALPHA_THRESHOLD).astype(np.float32)


def _rounding_intrinsic(name: str):
    """A numba intrinsic x -> llvm.<name>(x) (floor or ceil) for float32 and float64 scalars.

    numba lowers ``math.floor`` / ``math.ceil`` to calls into libm, which LLVM leaves as calls in
    scalar loops; the intrinsic compiles to one rounding instruction (roundsd) and gives the same
    value. The tile splatter rounds four of them per Gaussian-tile pair (``_pixel_box``)."""

    def impl(typingctx, x):
        if not isinstance(x, types.Float):
            return None

        def codegen(context, builder, signature, args):
            fn = builder.module.declare_intrinsic(f"llvm.{name}", [args[0].type])
            return builder.call(fn, [args[0]])

        return x(x), codegen

    impl.__name__ = f"_{name}"
    return intrinsic(impl)


_floor = _rounding_intrinsic("floor")
_ceil = _rounding_intrinsic("ceil")


def _zero_bits_intrinsic(op: str, doc: str):
    """A numba intrinsic x -> llvm ``op`` (cttz / ctlz) of a non-zero uint64: one tzcnt / lzcnt."""

    def impl(typingctx, x):
        if x != types.uint64:
            return None

        def codegen(context, builder, signature, args):
            return getattr(builder, op)(args[0], ir.Constant(ir.IntType(1), 0))

        return types.uint64(types.uint64), codegen

    impl.__name__ = f"_{op}"
    impl.__doc__ = doc
    return intrinsic(impl)


_ctz = _zero_bits_intrinsic("cttz", "Trailing zero bits of a non-zero uint64.")
_clz = _zero_bits_intrinsic("ctlz", "Leading zero bits of a non-zero uint64.")


@nb.njit(cache=True, inline="always")
def _pixel_box(mx, my, ex, ey, x0, y0, x1, y1):
    """Pixels [gx0, gx1] x [gy0, gy1] (inclusive) whose centres lie within the footprint, clipped
    to the tile [x0, x1) x [y0, y1). (``_ceil``/``_floor``: math.ceil/math.floor without a libm call.)"""
    gx0 = max(x0, int(_ceil(mx - ex - 0.5)))
    gx1 = min(x1 - 1, int(_floor(mx + ex - 0.5)))
    gy0 = max(y0, int(_ceil(my - ey - 0.5)))
    gy1 = min(y1 - 1, int(_floor(my + ey - 0.5)))
    return gx0, gx1, gy0, gy1


@nb.njit(cache=True, nogil=True)
def depth_order(depths, visible):
    """Indices (int32) of the ``visible`` entries of ``depths`` (N,) f32, sorted front to back and
    stable (equal depths keep index order, like gsplat's radix sort).

    A least-significant-digit radix sort (two 16-bit passes) of the depths' IEEE bits mapped onto
    order-preserving unsigned integers: linear in N, about a millisecond for 140K Gaussians,
    where sorting every tile's list separately cost ten times more. (-0.0 sorts before +0.0.)"""
    bits = depths.view(np.uint32)
    n = 0
    for i in range(bits.shape[0]):
        if visible[i]:
            n += 1
    idx = np.empty(n, np.int32)
    key = np.empty(n, np.uint32)
    j = 0
    for i in range(bits.shape[0]):
        if visible[i]:
            u = bits[i]
            # negative floats: flip every bit (larger magnitude = smaller); positive: set the sign bit
            key[j] = ~u if u & np.uint32(0x80000000) else u | np.uint32(0x80000000)
            idx[j] = i
            j += 1
    idx2 = np.empty(n, np.int32)
    key2 = np.empty(n, np.uint32)
    for shift in (0, 16):
        cnt = np.zeros(65537, np.int64)
        for i in range(n):
            cnt[((key[i] >> shift) & np.uint32(0xFFFF)) + 1] += 1
        for d in range(65536):
            cnt[d + 1] += cnt[d]
        for i in range(n):
            dgt = (key[i] >> shift) & np.uint32(0xFFFF)
            pos = cnt[dgt]
            cnt[dgt] = pos + 1
            idx2[pos] = idx[i]
            key2[pos] = key[i]
        idx, idx2 = idx2, idx
        key, key2 = key2, key
    return idx


@nb.njit(cache=True, parallel=True, nogil=True)
def bin_tiles(means2d, extents, depths, width, height, tile_size):
    """Depth-ordered Gaussian lists per (camera, tile).

    means2d (B, N, 2) f32, extents (B, N, 2) f32 (0 = culled), depths (B, N) f32.
    Returns offsets (B * n_tiles + 1,) int64 into ids (n_isect,) int32 (Gaussian index within its
    camera); tile t of camera b holds ids[offsets[b * n_tiles + t] : offsets[b * n_tiles + t + 1]],
    front to back (stable: equal depths keep index order, like gsplat's radix sort).

    Each camera's Gaussians are sorted by depth once (``depth_order``) and then appended to their
    tiles in that order, so every tile's list comes out sorted without sorting it.
    """
    B, N = means2d.shape[0], means2d.shape[1]
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y
    # tile rectangle per Gaussian packed into one int64 as 4 x 16 bits (tx0, tx1, ty0, ty1; tile
    # indices < 65536), counted as it is made: the depth-ordered fill below reads it at random,
    # one load instead of four (the rectangles of 4 x 135K Gaussians were 8.6 MB as int32 x 4)
    rect = np.empty((B, N), np.int64)
    vis = np.empty((B, N), np.bool_)  # touches a pixel centre
    counts = np.zeros(B * n_tiles + 1, np.int64)
    for b in nb.prange(B):
        for g in range(N):
            vis[b, g] = False
            if extents[b, g, 0] <= 0:
                continue
            gx0, gx1, gy0, gy1 = _pixel_box(
                means2d[b, g, 0], means2d[b, g, 1], extents[b, g, 0], extents[b, g, 1], 0, 0, width, height
            )
            if gx0 > gx1 or gy0 > gy1:
                continue
            tx0 = gx0 // tile_size
            tx1 = gx1 // tile_size
            ty0 = gy0 // tile_size
            ty1 = gy1 // tile_size
            rect[b, g] = np.int64(tx0) | (np.int64(tx1) << 16) | (np.int64(ty0) << 32) | (np.int64(ty1) << 48)
            vis[b, g] = True
            for ty in range(ty0, ty1 + 1):
                for tx in range(tx0, tx1 + 1):
                    counts[b * n_tiles + ty * tiles_x + tx + 1] += 1
    offsets = np.cumsum(counts)
    ids = np.empty(offsets[-1], np.int32)
    for b in nb.prange(B):
        order = depth_order(depths[b], vis[b])
        cursor = offsets[b * n_tiles : (b + 1) * n_tiles].copy()
        for i in range(order.shape[0]):
            g = order[i]
            r = rect[b, g]
            tx0 = r & 0xFFFF
            tx1 = (r >> 16) & 0xFFFF
            ty0 = (r >> 32) & 0xFFFF
            ty1 = (r >> 48) & 0xFFFF
            for ty in range(ty0, ty1 + 1):
                for tx in range(tx0, tx1 + 1):
                    t = ty * tiles_x + tx
                    ids[cursor[t]] = g
                    cursor[t] += 1
    return offsets, ids


@nb.njit(cache=True, parallel=True, fastmath=False, nogil=True)
def rasterize_fwd(means2d, conics, opacities, sigma_max, colors, extents, offsets, ids, width, height, tile_size, tile_order,
                  t_stop=T_EPS):
    """Front-to-back compositing. colors (B, N, D) f32, sigma_max (B, N) f32 = ln(255 opacity)
    (see ``sigma_max``), tile_order: a permutation of the B * n_tiles jobs (see ``tile_order``).

    t_stop: besides gsplat's exclusive stop at T_EPS, a pixel stops after the Gaussian that brings
    its transmittance to t_stop or below (inclusive: that Gaussian is composited). The Gaussians
    it skips would have added weights summing to at most t_stop, so every channel differs from the
    exact composite (background included) by at most t_stop x max |colour - background|. Inert for
    t_stop <= T_EPS (the default). The backward pass needs no change: it follows ``last`` and
    ``T_final``.

    Returns out (B, H, W, D) f32 (no background), T_final (B, H, W) f64 (transmittance after the
    last composited Gaussian), last (B, H, W) int64 (index into ids of that Gaussian, -1 = none).
    """
    B = means2d.shape[0]
    D = colors.shape[2]
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y
    out = np.zeros((B, height, width, D), np.float32)
    T_final = np.ones((B, height, width), np.float64)
    last = np.full((B, height, width), -1, np.int64)
    for i in nb.prange(B * n_tiles):
        job = tile_order[i]
        b, x0, y0, x1, y1 = _tile_bounds(job, n_tiles, tiles_x, tile_size, width, height)
        npix = (x1 - x0) * (y1 - y0)
        start = offsets[job]
        end = offsets[job + 1]
        if start == end:
            continue
        T = np.ones(tile_size * tile_size, np.float64)
        acc = np.zeros((tile_size * tile_size, D), np.float32)
        lst = np.full(tile_size * tile_size, -1, np.int64)
        done = np.zeros(tile_size * tile_size, np.bool_)
        ndone = 0
        for k in range(start, end):
            g = ids[k]
            mx = means2d[b, g, 0]
            my = means2d[b, g, 1]
            gx0, gx1, gy0, gy1 = _pixel_box(mx, my, extents[b, g, 0], extents[b, g, 1], x0, y0, x1, y1)
            if gx0 > gx1 or gy0 > gy1:
                continue
            ca = conics[b, g, 0]
            cb = conics[b, g, 1]
            cc = conics[b, g, 2]
            op = opacities[b, g]
            smax = sigma_max[b, g]
            for py in range(gy0, gy1 + 1):
                dy = my - (np.float32(py) + np.float32(0.5))
                row = (py - y0) * tile_size - x0
                sx0, sx1 = gx0, gx1
                # sigma along the row as a quadratic in dx (dx drops by 1 per pixel)
                dx = mx - (np.float32(sx0) + np.float32(0.5))
                hc = np.float32(0.5) * cc * dy * dy
                bdy = cb * dy
                ha = np.float32(0.5) * ca
                for px in range(sx0, sx1 + 1):
                    p = row + px
                    sigma = (ha * dx + bdy) * dx + hc
                    dx -= np.float32(1.0)
                    if done[p]:
                        continue
                    if sigma < 0 or sigma > smax:  # sigma > smax <=> opacity exp(-sigma) < 1/255
                        continue
                    alpha = min(MAX_ALPHA, op * np.float32(math.exp(-sigma)))
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    nT = T[p] * (1.0 - alpha)
                    if nT <= T_EPS:
                        done[p] = True
                        ndone += 1
                        continue
                    w = np.float32(alpha * T[p])
                    for d in range(D):
                        acc[p, d] += colors[b, g, d] * w
                    T[p] = nT
                    lst[p] = k
                    if nT <= t_stop:  # inclusive early stop (never when t_stop <= T_EPS)
                        done[p] = True
                        ndone += 1
            if ndone == npix:
                break
        for py in range(y0, y1):
            for px in range(x0, x1):
                p = (py - y0) * tile_size + (px - x0)
                T_final[b, py, px] = T[p]
                last[b, py, px] = lst[p]
                for d in range(D):
                    out[b, py, px, d] = acc[p, d]
    return out, T_final, last


@nb.njit(cache=True, inline="always")
def _low_bits(n):
    """uint64 with the n lowest bits set (0 <= n <= 64)."""
    return ~np.uint64(0) if n >= 64 else (np.uint64(1) << np.uint64(n)) - np.uint64(1)


@nb.njit(cache=True, inline="always")
def _tile_bounds(job, n_tiles, tiles_x, tile_size, width, height):
    """(b, x0, y0, x1, y1): tile job ``job``'s frame b and pixel box [x0, x1) x [y0, y1)."""
    b = job // n_tiles
    t = job - b * n_tiles
    ty = t // tiles_x
    tx = t - ty * tiles_x
    x0 = tx * tile_size
    y0 = ty * tile_size
    return b, x0, y0, min(x0 + tile_size, width), min(y0 + tile_size, height)


@nb.njit(cache=True, inline="always")
def _write_empty_tile(out, alpha_out, b, x0, y0, x1, y1, background):
    """A tile nothing is drawn in: alpha 0, out 0 (or the background: T = 1)."""
    for py in range(y0, y1):
        for px in range(x0, x1):
            alpha_out[b, py, px] = np.float32(0.0)
            for d in range(out.shape[3]):
                out[b, py, px, d] = np.float32(0.0) if background is None else background[b, d]


@nb.njit(cache=True, inline="always")
def _reset_done(done, tile_size, w, h):
    """Row masks of a w x h tile: columns past the image edge, and rows past it, count as done."""
    outside = ~_low_bits(w)
    for r in range(tile_size):
        done[r] = outside if r < h else ~np.uint64(0)


MAX_MASK_TILE = 64  # rasterize_image keeps one uint64 "done" bit mask per tile row


@nb.njit(cache=True, parallel=True, fastmath=False, nogil=True)
def rasterize_image(means2d, conics, opacities, sigma_max, colors, extents, offsets, ids, width, height, tile_size,
                    tile_order, n_blocks, t_stop=T_EPS, background=None):
    """``rasterize_fwd`` for renders that need no gradient (previews): the same image, bit for
    bit, with less work. Returns out (B, H, W, D) f32 (no background unless given) and alpha (B, H, W) f32
    (= float32(1 - T_final) of ``rasterize_fwd``); no T_final / last for a backward pass.

    Same float operations in the same order per pixel; what differs is only the bookkeeping:
    - a pixel's "done" flag is one bit of its row's uint64 mask, and a Gaussian's row is skipped
      whole when every pixel of its box in that row is done (behind the opaque surface at LOD 2,
      over half of all footprint pixels visited are already done), else visited only from its
      first to its last pixel not done;
    - 3 or 4 channels (RGB, or RGB + the depth channel) are accumulated from scalars held in
      registers instead of reloading the Gaussian's colours for every pixel;
    - scratch arrays are allocated once per block of tiles, not per tile.
    tile_order: as ``rasterize_fwd`` (``tile_order(n_jobs, n_blocks)``); n_blocks: contiguous
    blocks of it run in parallel (the numba thread count). Needs tile_size <= MAX_MASK_TILE.

    background: None, or (B, D) f32: then ``out`` is composited over it as each tile is written,
    out + (1 - alpha) background with ``finish_image``'s float32 operations (bit-identical to it),
    which saves previews a separate pass over the frames.
    """
    B = means2d.shape[0]
    D = colors.shape[2]
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y
    n_jobs = B * n_tiles
    out = np.empty((B, height, width, D), np.float32)  # every pixel is written below
    alpha_out = np.empty((B, height, width), np.float32)
    ts2 = tile_size * tile_size
    all_done = ~np.uint64(0)
    one = np.uint64(1)
    for blk in nb.prange(n_blocks):
        T = np.empty(ts2, np.float64)
        acc = np.empty((ts2, D), np.float32)
        done = np.empty(tile_size, np.uint64)
        for i in range(blk * n_jobs // n_blocks, (blk + 1) * n_jobs // n_blocks):
            job = tile_order[i]
            b, x0, y0, x1, y1 = _tile_bounds(job, n_tiles, tiles_x, tile_size, width, height)
            start = offsets[job]
            end = offsets[job + 1]
            if start == end:
                _write_empty_tile(out, alpha_out, b, x0, y0, x1, y1, background)
                continue
            T[:] = 1.0
            acc[:, :] = 0.0
            _reset_done(done, tile_size, x1 - x0, y1 - y0)
            rows_left = y1 - y0  # rows with a pixel not done yet
            for k in range(start, end):
                g = ids[k]
                mx = means2d[b, g, 0]
                my = means2d[b, g, 1]
                gx0, gx1, gy0, gy1 = _pixel_box(mx, my, extents[b, g, 0], extents[b, g, 1], x0, y0, x1, y1)
                if gx0 > gx1 or gy0 > gy1:
                    continue
                ca = conics[b, g, 0]
                cb = conics[b, g, 1]
                cc = conics[b, g, 2]
                op = opacities[b, g]
                smax = sigma_max[b, g]
                c0 = c1 = c2 = c3 = np.float32(0.0)
                if D == 3 or D == 4:
                    c0 = colors[b, g, 0]
                    c1 = colors[b, g, 1]
                    c2 = colors[b, g, 2]
                    if D == 4:
                        c3 = colors[b, g, 3]
                box = _low_bits(gx1 - gx0 + 1) << np.uint64(gx0 - x0)
                for py in range(gy0, gy1 + 1):
                    r = py - y0
                    dr = done[r]
                    todo = box & ~dr
                    if todo == 0:
                        continue
                    # visit only the span from the first to the last pixel not done yet
                    sx0 = x0 + np.int64(_ctz(todo))
                    sx1 = x0 + 63 - np.int64(_clz(todo))
                    dy = my - (np.float32(py) + np.float32(0.5))
                    row = r * tile_size - x0
                    # sigma along the row as a quadratic in dx, exactly as rasterize_fwd (dx
                    # stepped from gx0 by the same float32 subtractions, so bit for bit)
                    dx = mx - (np.float32(gx0) + np.float32(0.5))
                    for _ in range(sx0 - gx0):
                        dx -= np.float32(1.0)
                    hc = np.float32(0.5) * cc * dy * dy
                    bdy = cb * dy
                    ha = np.float32(0.5) * ca
                    for px in range(sx0, sx1 + 1):
                        sigma = (ha * dx + bdy) * dx + hc
                        dx -= np.float32(1.0)
                        bit = one << np.uint64(px - x0)
                        if dr & bit:
                            continue
                        if sigma < 0 or sigma > smax:
                            continue
                        alpha = min(MAX_ALPHA, op * np.float32(math.exp(-sigma)))
                        if alpha < ALPHA_THRESHOLD:
                            continue
                        p = row + px
                        Tp = T[p]
                        nT = Tp * (1.0 - alpha)
                        if nT <= T_EPS:
                            dr |= bit
                            continue
                        w = np.float32(alpha * Tp)
                        if D == 4:
                            acc[p, 0] += c0 * w
                            acc[p, 1] += c1 * w
                            acc[p, 2] += c2 * w
                            acc[p, 3] += c3 * w
                        elif D == 3:
                            acc[p, 0] += c0 * w
                            acc[p, 1] += c1 * w
                            acc[p, 2] += c2 * w
                        else:
                            for d in range(D):
                                acc[p, d] += colors[b, g, d] * w
                        T[p] = nT
                        if nT <= t_stop:
                            dr |= bit
                    if dr != done[r]:
                        done[r] = dr
                        if dr == all_done:
                            rows_left -= 1
                if rows_left == 0:
                    break
            for py in range(y0, y1):
                for px in range(x0, x1):
                    p = (py - y0) * tile_size + (px - x0)
                    a = np.float32(1.0 - T[p])
                    alpha_out[b, py, px] = a
                    if background is None:
                        for d in range(D):
                            out[b, py, px, d] = acc[p, d]
                    else:
                        tr = np.float32(1.0) - a
                        for d in range(D):
                            out[b, py, px, d] = acc[p, d] + tr * background[b, d]
    return out, alpha_out


@nb.njit(cache=True, parallel=True, fastmath=False, nogil=True)
def rasterize_bwd(
    means2d, conics, opacities, sigma_max, colors, extents, offsets, ids, T_final, last, v_out, v_alpha,
    width, height, tile_size, tile_order,
):  # fmt: skip
    """Back-to-front gradients of ``rasterize_fwd`` given dL/d out (B, H, W, D) and dL/d alpha
    (B, H, W) (alpha = 1 - T_final).

    Returns per-intersection gradients g_geo (n_isect, 6) f32 = (d mean2d x, y, d conic a, b, c,
    d opacity) and g_col (n_isect, D) f32; ``reduce_isect`` sums them per Gaussian.
    """
    B = means2d.shape[0]
    D = colors.shape[2]
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y
    n_isect = ids.shape[0]
    g_geo = np.zeros((n_isect, 6), np.float32)
    g_col = np.zeros((n_isect, D), np.float32)
    for i in nb.prange(B * n_tiles):
        job = tile_order[i]
        b, x0, y0, x1, y1 = _tile_bounds(job, n_tiles, tiles_x, tile_size, width, height)
        start = offsets[job]
        if start == offsets[job + 1]:
            continue
        T = np.ones(tile_size * tile_size, np.float64)
        Tf = np.ones(tile_size * tile_size, np.float64)
        lst = np.full(tile_size * tile_size, -1, np.int64)
        buf = np.zeros((tile_size * tile_size, D), np.float64)
        kmax = -1
        for py in range(y0, y1):
            for px in range(x0, x1):
                p = (py - y0) * tile_size + (px - x0)
                T[p] = T_final[b, py, px]
                Tf[p] = T_final[b, py, px]
                lst[p] = last[b, py, px]
                kmax = max(kmax, lst[p])
        vcol = np.zeros(D, np.float64)
        for k in range(kmax, start - 1, -1):
            g = ids[k]
            mx = means2d[b, g, 0]
            my = means2d[b, g, 1]
            gx0, gx1, gy0, gy1 = _pixel_box(mx, my, extents[b, g, 0], extents[b, g, 1], x0, y0, x1, y1)
            if gx0 > gx1 or gy0 > gy1:
                continue
            ca = conics[b, g, 0]
            cb = conics[b, g, 1]
            cc = conics[b, g, 2]
            op = opacities[b, g]
            vmx = 0.0
            vmy = 0.0
            va = 0.0
            vb = 0.0
            vc = 0.0
            vop = 0.0
            vcol[:] = 0.0
            touched = False
            smax = sigma_max[b, g]
            for py in range(gy0, gy1 + 1):
                dy = my - (np.float32(py) + np.float32(0.5))
                row = (py - y0) * tile_size - x0
                sx0, sx1 = gx0, gx1
                dx = mx - (np.float32(sx0) + np.float32(0.5))
                hc = np.float32(0.5) * cc * dy * dy
                bdy = cb * dy
                ha = np.float32(0.5) * ca
                for px in range(sx0, sx1 + 1):
                    p = row + px
                    sigma = (ha * dx + bdy) * dx + hc  # bit-identical to the forward pass
                    dxp = dx
                    dx -= np.float32(1.0)
                    if k > lst[p]:
                        continue
                    if sigma < 0 or sigma > smax:
                        continue
                    vis = np.float32(math.exp(-sigma))
                    a0 = op * vis
                    alpha = min(MAX_ALPHA, a0)
                    if alpha < ALPHA_THRESHOLD:
                        continue
                    touched = True
                    ra = 1.0 / (1.0 - alpha)
                    T[p] *= ra  # transmittance in front of this Gaussian
                    Tp = T[p]
                    fac = alpha * Tp
                    v_a = 0.0
                    for d in range(D):
                        vo = v_out[b, py, px, d]
                        vcol[d] += fac * vo
                        c = colors[b, g, d]
                        v_a += (c * Tp - buf[p, d] * ra) * vo
                        buf[p, d] += c * fac
                    v_a += Tf[p] * ra * v_alpha[b, py, px]
                    if a0 <= MAX_ALPHA:  # alpha not clamped: gradient flows to sigma and opacity
                        v_sigma = -a0 * v_a
                        va += 0.5 * v_sigma * dxp * dxp
                        vb += v_sigma * dxp * dy
                        vc += 0.5 * v_sigma * dy * dy
                        vmx += v_sigma * (ca * dxp + cb * dy)
                        vmy += v_sigma * (cb * dxp + cc * dy)
                        vop += vis * v_a
            if touched:
                g_geo[k, 0] = vmx
                g_geo[k, 1] = vmy
                g_geo[k, 2] = va
                g_geo[k, 3] = vb
                g_geo[k, 4] = vc
                g_geo[k, 5] = vop
                for d in range(D):
                    g_col[k, d] = vcol[d]
    return g_geo, g_col


@nb.njit(cache=True, nogil=True)
def reduce_isect(ids, offsets, g_geo, g_col, B, N):
    """Sum per-intersection gradients per Gaussian: -> (B, N, 6) f32, (B, N, D) f32.

    Serial (memory-bound, about a millisecond for 200K intersections), deterministic order.
    """
    D = g_col.shape[1]
    n_tiles = (offsets.shape[0] - 1) // B
    geo = np.zeros((B, N, 6), np.float32)
    col = np.zeros((B, N, D), np.float32)
    for b in range(B):
        for k in range(offsets[b * n_tiles], offsets[(b + 1) * n_tiles]):
            g = ids[k]
            for j in range(6):
                geo[b, g, j] += g_geo[k, j]
            for d in range(D):
                col[b, g, d] += g_col[k, d]
    return geo, col


@nb.njit(cache=True, parallel=True, nogil=True)
def finish_image(out, alpha, background, has_background):
    """The splatter's last step without autograd, in one pass: out (B, H, W, C + 1) f32 composited
    features + expected-depth channel, alpha (B, H, W) f32, background (B, C) f32 ->
    image (B, H, W, C) = features + (1 - alpha) background (when ``has_background``) and
    depth (B, H, W) = depth channel / max(alpha, 1e-10). The same float32 operations in the same
    order as the torch expressions in ``splat._splat_cpu`` (which run when gradients are needed),
    so the results are bit-identical."""
    B, H, W, D = out.shape
    C = D - 1
    image = np.empty((B, H, W, C), np.float32)
    depth = np.empty((B, H, W), np.float32)
    for row in nb.prange(B * H):
        b = row // H
        y = row - b * H
        for x in range(W):
            a = alpha[b, y, x]
            t = np.float32(1.0) - a
            for c in range(C):
                v = out[b, y, x, c]
                if has_background:
                    v = v + t * background[b, c]
                image[b, y, x, c] = v
            depth[b, y, x] = out[b, y, x, C] / max(a, np.float32(1e-10))
    return image, depth


@nb.njit(cache=True, parallel=True, nogil=True)
def to_uint8(image):
    """(B, H, W, 3) float image in [0, 1] (any strides) -> (B, H, W, 3) uint8, clamped and rounded
    half to even: torch's ``(x.clamp(0, 1) * 255).round().to(uint8)`` in one pass."""
    B, H, W, C = image.shape
    out = np.empty((B, H, W, C), np.uint8)
    for row in nb.prange(B * H):
        b = row // H
        y = row - b * H
        for x in range(W):
            for c in range(C):
                v = min(max(image[b, y, x, c], np.float32(0.0)), np.float32(1.0))
                out[b, y, x, c] = np.uint8(np.rint(v * np.float32(255.0)))
    return out
