"""The previews' 8-lane compositing kernel (backend/render/_kernels_simd.py): its exp, its
tolerance against the exact forward-only kernel and the brute-force reference, and that the
vector code really is vector code."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from backend.render import _kernels, _kernels_simd, splat
from backend.render.rasterize import bin_gaussians
from backend.render.scenes import head_scene, random_scene

from test_render_splat import _cams, _inputs, _project_for_kernels, reference_splat

# The stated tolerance of rasterize_image_simd against the exact kernels: float32 transmittance
# and a 5e-6 exp keep ordinary values within TOL; a Gaussian whose alpha sits on the 1/255
# cut-off (or a pixel on the 1e-4 stop) can flip, which changes a pixel by at most about
# 1/255 of its feature range: FLIP_TOL, in at most FLIP_FRACTION of the values.
TOL = 2e-5
FLIP_TOL = 1.05 / 255.0
FLIP_FRACTION = 2e-3


def _assert_within_tolerance(got: np.ndarray, want: np.ndarray, scale: float = 1.0) -> None:
    d = np.abs(np.asarray(got, np.float64) - np.asarray(want, np.float64))
    assert d.max() <= FLIP_TOL * scale, d.max()
    assert (d > TOL * scale).mean() <= FLIP_FRACTION, (d > TOL * scale).mean()


def test_exp_neg_matches_exp_over_the_composited_range() -> None:
    """exp_neg(s) = exp(-s) within 5e-6 relative for s in [0, ln(255 x 0.999)] (every sigma that
    can composite), and 1 at s = 0."""
    from numba import njit

    f = njit(lambda x: np.array([_kernels_simd.exp_neg(v) for v in x], np.float32))
    s = np.linspace(0.0, math.log(255 * 0.999), 200_001).astype(np.float32)
    got = f(s).astype(np.float64)
    want = np.exp(-s.astype(np.float64))
    assert np.abs(got / want - 1).max() < 5e-6
    assert got[0] == 1.0


def _composite8_probe():
    """An uncached njit wrapper of one _composite8 + _axpy8 call (uncached so its assembly can be
    inspected)."""
    from numba import njit

    @njit
    def probe(Tl, Ts, wv, acc, n, dx0, ha, bdy, hc, op, smax):
        newly = _kernels_simd._composite8(Tl, Ts, wv, 0, n, dx0, ha, bdy, hc, op, smax, np.float32(1e-4),
                                          np.float32(1.0 / 255.0))
        _kernels_simd._axpy8(acc, 0, np.float32(0.5), wv)
        return newly

    return probe


def test_lane_code_is_avx_vector_code_and_matches_the_scalar_rules() -> None:
    """_composite8 compiles to 8-wide float vector instructions (ymm registers on AVX2 machines,
    which is the point of the module), and its lanes follow the exact kernel's rules: the lanes
    past n are untouched, sigma < 0 or > ln(255 op) and alpha < 1/255 composite nothing, a pixel
    that would fall to T <= 1e-4 is done without compositing (T kept aside), one falling to
    <= t_stop is composited and done."""
    probe = _composite8_probe()
    f = np.float32
    Tl = np.array([1.0, 1.0, 1.2e-4, 0.003, 0.0, 1.0, 1.0, 1.0, 1.0], np.float32)
    Ts = np.zeros(9, np.float32)
    Ts[4] = 0.25  # a pixel already done
    wv = np.full(8, -1.0, np.float32)
    acc = np.zeros(8, np.float32)
    # sigma = 0.25 dx^2 with dx = -j: 0, 0.25, 1, 2.25, 4, 6.25 (> smax), then lanes past n = 6
    op, smax = f(0.9), f(math.log(255 * 0.9))
    newly = probe(Tl, Ts, wv, acc, 6, f(0.0), f(0.25), f(0.0), f(0.0), op, smax)
    sig = 0.25 * np.arange(8.0) ** 2
    alpha = np.minimum(0.999, 0.9 * np.exp(-sig))
    assert newly == 0b1100  # lanes 2 (exclusive stop) and 3 (inclusive) became done
    np.testing.assert_allclose(wv[:2], alpha[:2], rtol=1e-5)
    np.testing.assert_allclose(Tl[:2], 1 - alpha[:2], rtol=1e-5)
    assert wv[2] == 0 and Tl[2] == 0 and Ts[2] == f(1.2e-4)  # exclusive stop: done, T kept
    assert wv[3] == pytest.approx(alpha[3] * 0.003, rel=1e-5) and Tl[3] == 0  # inclusive stop
    assert Ts[3] == pytest.approx(0.003 * (1 - alpha[3]), rel=1e-5)
    assert alpha[4] > 1 / 255 and wv[4] == 0 and Tl[4] == 0 and Ts[4] == f(0.25)  # done stays done
    assert wv[5] == 0 and Tl[5] == 1  # sigma > smax: nothing
    assert np.all(wv[6:] == 0) and np.all(Tl[6:] == 1)  # lanes past n
    np.testing.assert_allclose(acc, 0.5 * wv, rtol=0, atol=0)
    asm = "\n".join(probe.inspect_asm().values())
    if "avx2" in open("/proc/cpuinfo").read():
        assert "ymm" in asm and ("vmulps" in asm or "vfmadd" in asm)
    llvm = "\n".join(probe.inspect_llvm().values())
    assert "<8 x float>" in llvm


@pytest.mark.parametrize("channels, tile, size, t_stop, threads, background", [
    (3, 16, (40, 32), 1.0 / 255.0, 2, True), (3, 16, (53, 37), None, 1, False),
    (4, 16, (40, 32), 1.0 / 255.0, 2, False),
    (32, 16, (40, 32), 1.0 / 255.0, 2, True), (1, 8, (45, 29), 0.05, 2, True), (3, 64, (130, 70), 1.0 / 255.0, 2, True),
    (3, 32, (40, 32), None, 3, True),
])  # fmt: skip
def test_simd_kernel_is_within_tolerance_of_the_exact_kernel(channels, tile, size, t_stop, threads, background) -> None:
    """rasterize_image_simd against _kernels.rasterize_image (the exact forward-only kernel) on a
    dense head scene (most footprint pixels end done, rows skipped by the masks): tiles cut by
    the image edge, 8 to 64 px tiles (a chunk reaching past the tile's last column), with and
    without a transmittance stop and a background, any block count; colours in [0, 1]."""
    import numba

    W, H = size
    sc = head_scene(400, channels, seed=11)
    sc.opacities = torch.full_like(sc.opacities, 0.95)
    m2, co, op, cols, ext, dp = _project_for_kernels(sc, _cams(W, H, 2))
    cols = np.ascontiguousarray(cols[..., :channels])
    bins = bin_gaussians(m2, ext, dp, W, H, tile)
    smax = _kernels.sigma_max(op)
    t = _kernels.T_EPS if t_stop is None else t_stop
    n = min(threads, numba.config.NUMBA_NUM_THREADS)
    order = _kernels.tile_order(bins.offsets.shape[0] - 1, n)
    bg = np.random.default_rng(3).random((2, channels)).astype(np.float32) if background else None
    args = (m2, co, op, smax, cols, ext, bins.offsets, bins.ids, W, H, tile, order, n, t, bg)
    out, alpha = _kernels.rasterize_image(*args)
    out2, alpha2 = _kernels_simd.rasterize_image_simd(*args)
    assert out2.shape == out.shape == (2, H, W, channels) and alpha2.shape == alpha.shape
    assert (alpha > 0.9).mean() > 0.02 and (alpha == 0).any()
    _assert_within_tolerance(alpha2, alpha)
    _assert_within_tolerance(out2, out)
    if bg is not None:  # empty tiles and uncovered pixels get the background exactly
        empty = alpha == 0
        np.testing.assert_array_equal(out2[empty], np.broadcast_to(bg[:, None, None, :], out.shape)[empty])


@pytest.mark.parametrize("channels, n, seed", [(3, 300, 0), (32, 120, 1), (1, 200, 2)])
def test_simd_splat_matches_the_reference(channels: int, n: int, seed: int) -> None:
    """splat(simd=True) under no_grad against _reference.py's brute-force float64 compositing
    (image with a background, alpha), and depth=False gives the same image."""
    sc = random_scene(n, channels, seed=seed, scale_range=(0.001, 0.05))
    cams = _cams()
    bg = torch.rand(channels, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        res = splat(*_inputs(sc), cams, background=bg, backend="cpu", simd=True)
        res2 = splat(*_inputs(sc), cams, background=bg, backend="cpu", simd=True, depth=False)
        image, alpha, _ = reference_splat(*_inputs(sc), cams, bg)
    assert res.alpha.max() > 0.9 and res.alpha.min() < 0.5
    _assert_within_tolerance(res.alpha.numpy(), alpha.numpy())
    _assert_within_tolerance(res.image.numpy(), image.numpy())
    _assert_within_tolerance(res2.image.numpy(), image.numpy())


def test_simd_is_ignored_when_gradients_flow() -> None:
    """With gradients the autograd path runs whatever simd says: the same image bit for bit as
    simd=False, and gradients reach the inputs."""
    sc = random_scene(150, 3, seed=5, scale_range=(0.002, 0.05))
    cams = _cams()
    a = splat(*_inputs(sc, grad=True), cams, backend="cpu", simd=True)
    b = splat(*_inputs(sc, grad=True), cams, backend="cpu", simd=False)
    torch.testing.assert_close(a.image, b.image, atol=0, rtol=0)
    ins = _inputs(sc, grad=True)
    splat(*ins, cams, backend="cpu", simd=True).image.sum().backward()
    assert ins[0].grad is not None and ins[0].grad.abs().sum() > 0
