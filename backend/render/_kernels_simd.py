"""The previews' compositing kernel in 8-pixel SIMD lanes (float32, approximate exp).

``_kernels.rasterize_image`` composites one pixel at a time: float64 transmittance, glibc's
``expf`` per pixel and a branch per test, which LLVM cannot vectorize. ``rasterize_image_simd``
draws the same Gaussians in the same order with the same tests, but each Gaussian's row of its
footprint box is visited in chunks of 8 pixels whose body is branch-free (every test a select),
so LLVM turns it into 8-lane AVX2 code (vmulps/vfmadd on ymm registers):

- transmittance is float32 (the exact kernel keeps float64 for the backward pass's divisions;
  a preview has none);
- exp(-sigma) is a polynomial: e^(-s/16) by its degree-6 Taylor series, squared 4 times
  (sigma is clamped to [0, ln(255 opacity)] <= 5.54 first, so |s/16| <= 0.35 and the relative
  error is below 5e-6, float32 round-off included);
- a pixel that is done (transmittance stop) has its live transmittance set to 0, which makes
  every later Gaussian's lane inert without a test; its final transmittance is kept aside;
- the per-row uint64 mask of done pixels still skips rows (and 8-pixel chunks) that lie wholly
  behind the opaque surface, as in the exact kernel.

The result is not bit-identical to ``rasterize_image``: colours and alpha differ by float32
round-off of the transmittance product and the exp's error (about 1e-6), and a Gaussian whose
alpha lies within that error of the 1/255 cut-off, or a pixel whose transmittance lies within it
of the stop, can flip (a change of at most about 1/255 x transmittance in that pixel). The
tolerance is tested in tests/render/test_render_simd.py against the exact kernel and against
``_reference.py``.
"""

from __future__ import annotations

import numba as nb
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.core.extending import intrinsic

from ._kernels import (ALPHA_THRESHOLD, MAX_ALPHA, T_EPS, _clz, _ctz, _low_bits, _pixel_box, _reset_done,
                       _tile_bounds, _write_empty_tile)

LANES = 8  # AVX2: 8 float32 per ymm register


def _vec_ptr(context, builder, arrty, arr, index):
    """Pointer to LANES float32 of a contiguous 1-D array from element ``index`` on."""
    data = context.make_array(arrty)(context, builder, value=arr).data
    return builder.bitcast(builder.gep(data, [index]), ir.VectorType(ir.FloatType(), LANES).as_pointer())


def _splat(builder, x):
    """<LANES x float> with every lane x."""
    undef = ir.Constant(ir.VectorType(x.type, LANES), ir.Undefined)
    v = builder.insert_element(undef, x, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(v, v, ir.Constant(ir.VectorType(ir.IntType(32), LANES), [0] * LANES))


def _fma(builder, a, b, c):
    """a * b + c in one rounding (llvm.fma: vfmadd on FMA machines)."""
    name = f"llvm.fma.v{a.type.count}f32" if isinstance(a.type, ir.VectorType) else "llvm.fma.f32"
    fn = builder.module.declare_intrinsic(name, (), ir.FunctionType(a.type, [a.type] * 3))
    return builder.call(fn, [a, b, c])


def _exp_neg_ir(builder, s):
    """IR of ``exp_neg`` on a vector (its operations in its order, each multiply-add as one fma)."""
    vt = s.type
    c = lambda x: ir.Constant(vt, [float(np.float32(x))] * LANES)  # noqa: E731
    y = builder.fmul(s, c(-1.0 / 16.0))
    p = c(1.0 / 720.0)
    for coef in (1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5, 1.0, 1.0):
        p = _fma(builder, p, y, c(coef))
    for _ in range(4):
        p = builder.fmul(p, p)
    return p


@intrinsic
def _composite8(typingctx, Tl, Ts, wv, base, n, dx0, ha, bdy, hc, op, smax, t_eps, t_stop):
    """One Gaussian over LANES consecutive pixels of a tile row, as LLVM vector code.

    Tl, Ts, wv: 1-D contiguous float32 scratch (live and done-pixel transmittance, weights out);
    pixel j of the chunk is Tl[base + j] (all LANES in bounds), lanes j >= n are left unchanged.
    dx0 = mean x - centre x of the chunk's first pixel; ha, bdy, hc: the row's quadratic in dx
    (sigma = (ha dx + bdy) dx + hc); op, smax = opacity, ln(255 opacity); t_eps, t_stop: the
    exclusive and inclusive transmittance stops. Writes wv[j] = alpha T (0 where nothing is
    composited), updates Tl / Ts, returns a uint64 with bit j set where pixel j became done."""
    f32 = types.float32
    arr = types.Array(f32, 1, "C")
    if not (Tl == Ts == wv == arr) or not all(
        isinstance(x, types.Float) for x in (dx0, ha, bdy, hc, op, smax, t_eps, t_stop)
    ):
        return None

    def codegen(context, builder, sig, args):
        Tl_, Ts_, wv_, base_, n_, dx0_, ha_, bdy_, hc_, op_, smax_, teps_, tstop_ = args
        ft = ir.FloatType()
        vt = ir.VectorType(ft, LANES)
        scal = [context.cast(builder, a, t, f32) for a, t in zip(args[5:], sig.args[5:])]
        dx0v, hav, bdyv, hcv, opv, smaxv, tepsv, tstopv = (_splat(builder, x) for x in scal)
        zero = ir.Constant(vt, [0.0] * LANES)
        onev = ir.Constant(vt, [1.0] * LANES)
        dx = builder.fsub(dx0v, ir.Constant(vt, [float(j) for j in range(LANES)]))
        sigma = _fma(builder, _fma(builder, hav, dx, bdyv), dx, hcv)
        s = builder.select(builder.fcmp_ordered(">", sigma, zero), sigma, zero)
        s = builder.select(builder.fcmp_ordered("<", s, smaxv), s, smaxv)
        a0 = builder.fmul(opv, _exp_neg_ir(builder, s))
        amax = ir.Constant(vt, [float(MAX_ALPHA)] * LANES)
        alpha = builder.select(builder.fcmp_ordered("<", a0, amax), a0, amax)
        it = ir.IntType(32)
        nv = _splat(builder, builder.trunc(n_, it))
        inb = builder.icmp_signed("<", ir.Constant(ir.VectorType(it, LANES), list(range(LANES))), nv)
        ok = builder.and_(inb, builder.fcmp_ordered(">=", sigma, zero))
        ok = builder.and_(ok, builder.fcmp_ordered("<=", sigma, smaxv))
        ok = builder.and_(ok, builder.fcmp_ordered(">=", alpha, ir.Constant(vt, [float(ALPHA_THRESHOLD)] * LANES)))
        pT = _vec_ptr(context, builder, sig.args[0], Tl_, base_)
        pS = _vec_ptr(context, builder, sig.args[1], Ts_, base_)
        pW = _vec_ptr(context, builder, sig.args[2], wv_, ir.Constant(ir.IntType(64), 0))
        Tp = builder.load(pT, align=4)
        S = builder.load(pS, align=4)
        nT = builder.fmul(Tp, builder.fsub(onev, alpha))
        above = builder.fcmp_ordered(">", nT, tepsv)
        comp = builder.and_(ok, above)
        stop = builder.and_(builder.and_(ok, builder.not_(above)), builder.fcmp_ordered(">", Tp, zero))
        fin = builder.and_(comp, builder.fcmp_ordered("<=", nT, tstopv))
        builder.store(builder.select(comp, builder.fmul(alpha, Tp), zero), pW, align=4)
        builder.store(builder.select(stop, Tp, builder.select(fin, nT, S)), pS, align=4)
        newly = builder.or_(stop, fin)
        builder.store(builder.select(newly, zero, builder.select(comp, nT, Tp)), pT, align=4)
        return builder.zext(builder.bitcast(newly, ir.IntType(LANES)), ir.IntType(64))  # vmovmskps

    return types.uint64(Tl, Ts, wv, base, n, dx0, ha, bdy, hc, op, smax, t_eps, t_stop), codegen


@intrinsic
def _axpy8(typingctx, acc, base, c, wv):
    """acc[base : base + LANES] += c * wv[0 : LANES] as one vector multiply-add (float32)."""
    arr = types.Array(types.float32, 1, "C")
    if not (acc == wv == arr) or not isinstance(c, types.Float):
        return None

    def codegen(context, builder, sig, args):
        acc_, base_, c_, wv_ = args
        pa = _vec_ptr(context, builder, sig.args[0], acc_, base_)
        pw = _vec_ptr(context, builder, sig.args[3], wv_, ir.Constant(ir.IntType(64), 0))
        cv = _splat(builder, context.cast(builder, c_, sig.args[2], types.float32))
        builder.store(_fma(builder, cv, builder.load(pw, align=4), builder.load(pa, align=4)), pa, align=4)
        return context.get_dummy_value()

    return types.none(acc, base, c, wv), codegen


@nb.njit(cache=True, inline="always")
def exp_neg(s):
    """exp(-s) for float32 s in [0, 5.6]: e^(-s/16) by its Taylor series to degree 6 (truncation
    below (0.35^7 / 7!) = 1.2e-7 relative), raised to the 16th power by squaring; relative error
    < 5e-6 (float32 round-off, times 16 by the squarings). The scalar twin (without fma) of the
    vector code in ``_composite8``; tested against exp."""
    y = s * np.float32(-1.0 / 16.0)
    p = np.float32(1.0 / 720.0)
    p = p * y + np.float32(1.0 / 120.0)
    p = p * y + np.float32(1.0 / 24.0)
    p = p * y + np.float32(1.0 / 6.0)
    p = p * y + np.float32(0.5)
    p = p * y + np.float32(1.0)
    p = p * y + np.float32(1.0)
    p = p * p
    p = p * p
    p = p * p
    return p * p


@nb.njit(cache=True, parallel=True, fastmath=False, nogil=True)
def rasterize_image_simd(means2d, conics, opacities, sigma_max, colors, extents, offsets, ids, width, height,
                         tile_size, tile_order, n_blocks, t_stop=T_EPS, background=None):  # fmt: skip
    """``_kernels.rasterize_image``'s contract (same arguments, out (B, H, W, D) f32 and alpha
    (B, H, W) f32) within the tolerance stated in the module docstring; any channel count D.
    Needs tile_size <= 64 (one uint64 done-mask per tile row)."""
    B = means2d.shape[0]
    D = colors.shape[2]
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y
    n_jobs = B * n_tiles
    out = np.empty((B, height, width, D), np.float32)
    alpha_out = np.empty((B, height, width), np.float32)
    rs = tile_size + LANES  # row stride: a chunk starting at the row's last pixel stays in the row
    npad = tile_size * rs
    all_done = ~np.uint64(0)
    t_stop32 = np.float32(t_stop)
    t_eps32 = np.float32(T_EPS)
    for blk in nb.prange(n_blocks):
        Tl = np.empty(npad, np.float32)  # live transmittance; 0 once the pixel is done
        Ts = np.empty(npad, np.float32)  # transmittance of a done pixel
        acc = np.empty(D * npad, np.float32)
        wv = np.empty(LANES, np.float32)
        done = np.empty(tile_size, np.uint64)
        for i in range(blk * n_jobs // n_blocks, (blk + 1) * n_jobs // n_blocks):
            job = tile_order[i]
            b, x0, y0, x1, y1 = _tile_bounds(job, n_tiles, tiles_x, tile_size, width, height)
            start = offsets[job]
            end = offsets[job + 1]
            if start == end:
                _write_empty_tile(out, alpha_out, b, x0, y0, x1, y1, background)
                continue
            Tl[:] = 1.0
            Ts[:] = 0.0
            acc[:] = 0.0
            _reset_done(done, tile_size, x1 - x0, y1 - y0)
            rows_left = y1 - y0
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
                ha = np.float32(0.5) * ca
                box = _low_bits(gx1 - gx0 + 1) << np.uint64(gx0 - x0)
                for py in range(gy0, gy1 + 1):
                    r = py - y0
                    dr = done[r]
                    todo = box & ~dr
                    if todo == 0:
                        continue
                    sx1 = x0 + 63 - np.int64(_clz(todo))
                    dy = my - (np.float32(py) + np.float32(0.5))
                    hc = np.float32(0.5) * cc * dy * dy
                    bdy = cb * dy
                    dr0 = dr
                    while todo != 0:
                        cx = x0 + np.int64(_ctz(todo))  # first pixel of the chunk not done
                        n = min(LANES, sx1 - cx + 1)
                        base = r * rs + (cx - x0)
                        dx0 = mx - (np.float32(cx) + np.float32(0.5))
                        newly = _composite8(Tl, Ts, wv, base, n, dx0, ha, bdy, hc, op, smax, t_eps32, t_stop32)
                        dr |= newly << np.uint64(cx - x0)
                        for d in range(D):
                            _axpy8(acc, d * npad + base, colors[b, g, d], wv)
                        if cx + LANES > sx1:
                            break
                        todo &= ~_low_bits(cx + LANES - x0)
                    if dr != dr0:
                        done[r] = dr
                        if dr == all_done:
                            rows_left -= 1
                if rows_left == 0:
                    break
            for py in range(y0, y1):
                for px in range(x0, x1):
                    p = (py - y0) * rs + (px - x0)
                    Tf = Tl[p] if Tl[p] > np.float32(0.0) else Ts[p]
                    a = np.float32(1.0) - Tf
                    alpha_out[b, py, px] = a
                    if background is None:
                        for d in range(D):
                            out[b, py, px, d] = acc[d * npad + p]
                    else:
                        for d in range(D):
                            out[b, py, px, d] = acc[d * npad + p] + Tf * background[b, d]
    return out, alpha_out
