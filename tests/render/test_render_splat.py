"""CPU splatter (numba tile kernels) vs the brute-force torch compositor in _reference.py.

Forward: image / alpha / depth within 2e-5 (float32 kernels vs float64 reference). Backward:
gradients of a random linear loss w.r.t. every input within 1e-3 of the largest gradient
magnitude (reference = autograd through the same projection and the brute-force compositor).
Finite differences on a scene free of the alpha-threshold / early-stop discontinuities: 2%.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.render import Camera, SplatResult, splat
from backend.render import _reference as ref
from backend.render.scenes import GaussianScene, head_scene, random_scene


def reference_splat(means, quats, scales, opacities, features, cams: list[Camera], background=None,
                    transmittance_stop: float = ref.T_EPS):
    """Plain-torch twin of splat(backend="cpu"): _reference projection and brute-force compositing,
    differentiated by autograd."""
    B = len(cams)
    W, H = cams[0].width, cams[0].height
    m, q, s, f = (t if t.dim() == 3 else t.expand((B,) + t.shape) for t in (means, quats, scales, features))
    o = opacities if opacities.dim() == 2 else opacities.expand(B, -1)
    vm = torch.from_numpy(np.stack([c.viewmat for c in cams]))
    K = torch.from_numpy(np.stack([c.K for c in cams]))
    p = ref.project_gaussians(m, q, s, vm, K, W, H, opacities=o)
    cols = torch.cat([f, p.depths[..., None]], -1)
    img, alpha = ref.rasterize_to_pixels(p.means2d, p.conics, o, cols, p.extents, p.depths, W, H,
                                         transmittance_stop)
    image = img[..., :-1]
    if background is not None:
        image = image + (1 - alpha)[..., None] * background
    return image.permute(0, 3, 1, 2), alpha, img[..., -1] / alpha.clamp(min=1e-10)


def _cams(width=40, height=32, n=2) -> list[Camera]:
    base = Camera.look_at((0.0, 0.0, 0.6), (0.0, 0.0, 0.0), width=width, height=height, fov_y_deg=30.0)
    return [base.orbit_yaw(35.0 * i) for i in range(n)]


def _inputs(sc: GaussianScene, grad: bool = False):
    ts = [t.clone().requires_grad_(grad) for t in (sc.means, sc.quats, sc.scales, sc.opacities, sc.features)]
    return ts


def _assert_result_close(res: SplatResult, image, alpha, depth, tol=2e-5) -> None:
    torch.testing.assert_close(res.image, image, atol=tol, rtol=0)
    torch.testing.assert_close(res.alpha, alpha, atol=tol, rtol=0)
    # expected depth is a ratio: compare where something was drawn
    drawn = alpha > 1e-3
    torch.testing.assert_close(res.depth[drawn], depth[drawn], atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("channels, n, seed", [(3, 300, 0), (32, 120, 1), (1, 200, 2)])
def test_forward_matches_reference(channels: int, n: int, seed: int) -> None:
    sc = random_scene(n, channels, seed=seed, scale_range=(0.001, 0.05))
    cams = _cams()
    bg = torch.rand(channels, generator=torch.Generator().manual_seed(seed))
    res = splat(*_inputs(sc), cams, background=bg, backend="cpu")
    assert res.backend == "cpu"
    assert res.image.shape == (2, channels, 32, 40) and res.alpha.shape == (2, 32, 40) and res.depth.shape == (2, 32, 40)
    assert res.alpha.max() > 0.9 and res.alpha.min() < 0.5  # a real scene, not empty or saturated
    _assert_result_close(res, *reference_splat(*_inputs(sc), cams, bg))


def test_forward_dense_scene_early_termination() -> None:
    """Opaque overlapping splats: many pixels stop at T <= 1e-4 (the exclusive early stop)."""
    sc = head_scene(300, 3, seed=4)
    sc.opacities = torch.full_like(sc.opacities, 0.99)
    cams = _cams(48, 48, 1)
    res = splat(*_inputs(sc), cams, backend="cpu")
    assert (res.alpha > 0.9998).float().mean() > 0.1
    _assert_result_close(res, *reference_splat(*_inputs(sc), cams))


def test_transmittance_stop_matches_reference_within_its_bound_and_gradients() -> None:
    """The previews' inclusive early stop (a pixel stops once its transmittance reaches t): the
    kernel equals the brute-force reference with the same rule, differs from the exact render by
    at most t x max|feature - background| while skipping composites somewhere, and its backward
    pass matches autograd through the reference."""
    t = 1.0 / 255.0
    sc = head_scene(300, 3, seed=4)
    sc.opacities = torch.full_like(sc.opacities, 0.9)
    cams = _cams(48, 48, 2)
    bg = torch.tensor([0.9, 0.1, 0.5])
    fast = splat(*_inputs(sc), cams, background=bg, backend="cpu", transmittance_stop=t)
    _assert_result_close(fast, *reference_splat(*_inputs(sc), cams, bg, transmittance_stop=t))
    exact = splat(*_inputs(sc), cams, background=bg, backend="cpu")
    bound = t * float((sc.features[:, None, :] - bg).abs().max())
    diff = (fast.image - exact.image).abs()
    assert 0 < float(diff.max()) <= bound + 1e-6
    assert (fast.alpha < exact.alpha).any() and float((exact.alpha - fast.alpha).max()) <= t + 1e-6
    with pytest.raises(ValueError, match="transmittance_stop"):
        splat(*_inputs(sc), cams, backend="cpu", transmittance_stop=1.5)

    g = torch.Generator().manual_seed(3)
    weights = (torch.randn(2, 3, 48, 48, generator=g), torch.randn(2, 48, 48, generator=g),
               torch.randn(2, 48, 48, generator=g))  # fmt: skip
    inputs = _inputs(sc, grad=True) + [bg.clone().requires_grad_(True)]

    def ours(ts):
        r = splat(*ts[:5], cams, background=ts[5], backend="cpu", transmittance_stop=t)
        return r.image, r.alpha, r.depth

    def theirs(ts):
        return reference_splat(*ts[:5], cams, ts[5], transmittance_stop=t)

    for name, a, b in zip(["means", "quats", "scales", "opacities", "features", "background"],
                          _grads(ours, inputs, weights), _grads(theirs, inputs, weights)):
        scale = b.abs().max()
        assert scale > 0, name
        torch.testing.assert_close(a / scale, b / scale, atol=1e-3, rtol=0, msg=name)


def _grads(fn, inputs, weights):
    image, alpha, depth = fn(inputs)
    w_img, w_a, w_d = weights
    drawn = (alpha > 1e-3).detach()
    loss = (image * w_img).sum() + (alpha * w_a).sum() + (torch.where(drawn, depth, 0.0) * w_d).sum()
    return torch.autograd.grad(loss, inputs)


@pytest.mark.parametrize("channels, seed", [(3, 0), (32, 1)])
def test_backward_matches_reference_autograd(channels: int, seed: int) -> None:
    sc = random_scene(100, channels, seed=seed, scale_range=(0.002, 0.04))
    cams = _cams()
    bg = torch.rand(channels, generator=torch.Generator().manual_seed(7)).requires_grad_(True)
    g = torch.Generator().manual_seed(seed)
    weights = (torch.randn(2, channels, 32, 40, generator=g), torch.randn(2, 32, 40, generator=g),
               torch.randn(2, 32, 40, generator=g))  # fmt: skip

    def ours(ts):
        r = splat(*ts[:5], cams, background=ts[5], backend="cpu")
        return r.image, r.alpha, r.depth

    def theirs(ts):
        return reference_splat(*ts[:5], cams, ts[5])

    inputs = _inputs(sc, grad=True) + [bg]
    g_ours = _grads(ours, inputs, weights)
    g_ref = _grads(theirs, inputs, weights)
    for name, a, b in zip(["means", "quats", "scales", "opacities", "features", "background"], g_ours, g_ref):
        scale = b.abs().max()
        assert scale > 0, name
        torch.testing.assert_close(a / scale, b / scale, atol=1e-3, rtol=0, msg=name)


def test_backward_per_frame_gaussians_and_shared_features() -> None:
    """(B, N, 3) means with (N, C) features: gradients of shared inputs sum over frames."""
    sc = random_scene(80, 4, seed=5)
    cams = _cams(n=2)
    means = torch.stack([sc.means, sc.means + 0.01]).requires_grad_(True)  # [2, N, 3]
    feats = sc.features.clone().requires_grad_(True)
    r = splat(means, sc.quats, sc.scales, sc.opacities, feats, cams, backend="cpu")
    r.image.sum().backward()
    g_means, g_feats = means.grad.clone(), feats.grad.clone()
    means.grad = feats.grad = None
    img, _, _ = reference_splat(means, sc.quats, sc.scales, sc.opacities, feats, cams)
    img.sum().backward()
    torch.testing.assert_close(g_means / means.grad.abs().max(), means.grad / means.grad.abs().max(), atol=1e-3, rtol=0)
    torch.testing.assert_close(g_feats, feats.grad, atol=1e-3 * feats.grad.abs().max(), rtol=0)


def test_gradients_vs_finite_differences() -> None:
    """Few soft splats; the loss only weighs pixels near the centres, where every Gaussian's alpha
    is far above 1/255 and transmittance far above 1e-4, so the rendering is smooth there."""
    cam = Camera.look_at((0.0, 0.0, 0.6), (0.0, 0.0, 0.0), width=24, height=24, fov_y_deg=20.0)
    means = torch.tensor([[0.0, 0.0, 0.0], [0.004, -0.003, 0.01], [-0.005, 0.002, -0.01]], dtype=torch.float64)
    quats = torch.tensor([[1.0, 0.1, 0.2, 0.0], [0.9, 0.0, 0.3, 0.1], [1.0, 0.0, 0.0, 0.4]], dtype=torch.float64)
    scales = 4 * torch.tensor([[0.010, 0.007, 0.005], [0.008, 0.011, 0.006], [0.012, 0.009, 0.01]], dtype=torch.float64)
    opac = torch.tensor([0.6, 0.5, 0.4], dtype=torch.float64)
    feats = torch.tensor([[0.9, 0.2, 0.1], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9]], dtype=torch.float64)
    yy, xx = torch.meshgrid(torch.arange(24.0) + 0.5, torch.arange(24.0) + 0.5, indexing="ij")
    window = torch.exp(-((xx - 12) ** 2 + (yy - 12) ** 2) / (2 * 2.5**2))  # [H, W], ~0 at the edges
    wc = torch.tensor([0.3, -0.7, 1.1])

    def loss_of(ts):
        r = splat(*ts, cam, backend="cpu")
        return ((r.image[0] * wc[:, None, None]).sum(0) * window).sum() + (r.depth[0] * window).sum()

    inputs = [t.clone().requires_grad_(True) for t in (means, quats, scales, opac, feats)]
    grads = torch.autograd.grad(loss_of(inputs), inputs)
    steps = [1e-4, 1e-3, 1e-4, 1e-3, 1e-3]
    for k, (name, g, h) in enumerate(zip(["means", "quats", "scales", "opacities", "features"], grads, steps)):
        flat = inputs[k].detach().flatten()
        fd = torch.zeros_like(flat)
        for i in range(flat.numel()):
            plus, minus = flat.clone(), flat.clone()
            plus[i] += h
            minus[i] -= h
            ts_p = [t.detach() for t in inputs]
            ts_m = [t.detach() for t in inputs]
            ts_p[k] = plus.reshape(inputs[k].shape)
            ts_m[k] = minus.reshape(inputs[k].shape)
            fd[i] = (loss_of(ts_p) - loss_of(ts_m)) / (2 * h)
        g = g.flatten().double()
        scale = fd.abs().max()
        assert scale > 0
        torch.testing.assert_close(g / scale, fd / scale, atol=0.02, rtol=0, msg=name)


def test_empty_behind_and_offscreen_scenes() -> None:
    cams = _cams(n=2)
    bg = torch.tensor([0.2, 0.4, 0.6])
    empty = GaussianScene(torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3))
    sc = random_scene(50, 3, seed=3)
    behind = GaussianScene(sc.means + torch.tensor([0.0, 0.0, 2.0]), sc.quats, sc.scales, sc.opacities, sc.features)
    off = GaussianScene(sc.means + torch.tensor([5.0, 0.0, 0.0]), sc.quats, sc.scales, sc.opacities, sc.features)
    for scene in (empty, behind, off):
        ts = _inputs(scene, grad=True)
        r = splat(*ts, cams, background=bg, backend="cpu")
        assert r.n_intersections == 0
        assert (r.alpha == 0).all() and (r.depth == 0).all()
        torch.testing.assert_close(r.image, bg[None, :, None, None].expand(2, 3, 32, 40))
        if scene is not empty:
            assert (r.radii == 0).all()
            r.image.sum().backward()
            for t in ts:
                assert t.grad is not None and torch.isfinite(t.grad).all() and (t.grad == 0).all()


def test_near_plane_culls_gaussians_at_the_camera() -> None:
    cam = _cams(n=1)[0]
    means = torch.tensor([[0.0, 0.0, 0.595], [0.0, 0.0, 0.0]])  # 5 mm from the eye (< near 0.01 m), origin
    r = splat(means, torch.tensor([[1.0, 0, 0, 0]] * 2), torch.full((2, 3), 0.01), torch.tensor([0.9, 0.9]),
              torch.eye(2), cam, backend="cpu")  # fmt: skip
    assert r.radii[0, 0].tolist() == [0, 0] and (r.radii[0, 1] > 0).all()
    assert r.image[0, 0].max() == 0 and r.image[0, 1].max() > 0.5


def test_huge_and_tiny_scales() -> None:
    cams = _cams(n=1)
    sc = random_scene(60, 3, seed=6)
    sc.scales[:3] = 5.0  # each covers the whole image
    sc.scales[3:30] = 1e-7  # footprint = the 0.3 px^2 low-pass only
    ts = _inputs(sc, grad=True)
    res = splat(*ts, cams, backend="cpu")
    assert torch.isfinite(res.image).all() and torch.isfinite(res.depth).all()
    assert res.alpha.min() > 0.05  # the huge ones reach every pixel
    assert (res.radii[0, 3:30] == 2).all()  # ceil(3.33 sqrt(0.3)) for opaque ones, tighter otherwise
    _assert_result_close(res, *reference_splat(*_inputs(sc), cams))
    res.image.sum().backward()
    assert all(torch.isfinite(t.grad).all() for t in ts)


def test_batched_equals_separate_calls() -> None:
    sc = random_scene(100, 5, seed=8)
    cams = _cams(n=3)
    batched = splat(*_inputs(sc), cams, backend="cpu")
    for i, cam in enumerate(cams):
        one = splat(*_inputs(sc), cam, backend="cpu")
        torch.testing.assert_close(batched.image[i], one.image[0], atol=0, rtol=0)
        torch.testing.assert_close(batched.depth[i], one.depth[0], atol=0, rtol=0)
    # per-frame means with one camera broadcast
    means = torch.stack([sc.means, sc.means * 0.5])
    r = splat(means, sc.quats, sc.scales, sc.opacities, sc.features, cams[0], backend="cpu")
    half = splat(sc.means * 0.5, sc.quats, sc.scales, sc.opacities, sc.features, cams[0], backend="cpu")
    torch.testing.assert_close(r.image[1], half.image[0], atol=0, rtol=0)


def test_numpy_inputs_and_auto_backend() -> None:
    sc = random_scene(30, 3, seed=9)
    arrays = [t.numpy() for t in (sc.means, sc.quats, sc.scales, sc.opacities, sc.features)]
    r = splat(*arrays, _cams(n=1), backend="auto")
    assert r.backend == ("cuda" if torch.cuda.is_available() else "cpu")
    assert r.image.dtype == torch.float32


def test_bad_inputs_raise_clear_errors() -> None:
    sc = random_scene(10, 3, seed=10)
    cams = _cams(n=2)
    good = [sc.means, sc.quats, sc.scales, sc.opacities, sc.features]

    def call(**over):
        args = dict(zip(["means", "quats", "scales", "opacities", "features"], good))
        args.update(over)
        cam = args.pop("camera", cams)
        return splat(args["means"], args["quats"], args["scales"], args["opacities"], args["features"], cam, backend="cpu")

    with pytest.raises(ValueError, match="NaN"):
        call(means=torch.full((10, 3), float("nan")))
    with pytest.raises(ValueError, match="scales"):
        call(scales=-sc.scales)
    with pytest.raises(ValueError, match="opacities"):
        call(opacities=sc.opacities + 1.0)
    with pytest.raises(ValueError, match="Gaussians"):
        call(features=sc.features[:5])
    with pytest.raises(ValueError, match="quats"):
        call(quats=torch.zeros(10, 4))
    one_zero = sc.quats.expand(2, -1, -1).clone()  # per frame: one zero quaternion in the second frame
    one_zero[1, 7] = 0.0
    with pytest.raises(ValueError, match="quats"):
        call(quats=one_zero)
    one_zero[1, 7, 0] = 1e-3  # a short quaternion is normalized, not refused
    assert call(quats=one_zero).image.shape[0] == 2
    with pytest.raises(ValueError, match="components"):
        call(quats=sc.quats[:, :3])
    with pytest.raises(ValueError, match="share width"):
        call(camera=[cams[0], cams[0].resized(20, 16)])
    with pytest.raises(ValueError, match="frame counts"):
        call(camera=cams + cams[:1], means=torch.stack([sc.means] * 2))
    with pytest.raises(TypeError):
        call(camera="front")
    with pytest.raises(ValueError, match="backend"):
        splat(*good, cams, backend="metal")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cuda"):
            splat(*good, cams, backend="cuda")


@pytest.mark.parametrize("background", [False, True])
def test_no_grad_finish_is_bit_identical_to_the_autograd_path(background: bool) -> None:
    """Without gradients the image and depth come from one numba pass (_kernels.finish_image):
    the same numbers, bit for bit, as the torch expressions the autograd path runs."""
    sc = random_scene(200, 3, seed=9, scale_range=(0.002, 0.05))
    cams = _cams()
    bg = torch.tensor([0.2, 0.7, 1.0]) if background else None
    with torch.no_grad():
        fast = splat(*_inputs(sc), cams, background=bg, backend="cpu")
    slow = splat(*_inputs(sc, grad=True), cams, background=bg, backend="cpu")
    assert slow.image.requires_grad and not fast.image.requires_grad
    torch.testing.assert_close(fast.image, slow.image.detach(), atol=0, rtol=0)
    torch.testing.assert_close(fast.depth, slow.depth.detach(), atol=0, rtol=0)
    torch.testing.assert_close(fast.alpha, slow.alpha.detach(), atol=0, rtol=0)
    assert (fast.alpha > 0.5).any() and (fast.alpha < 0.01).any()


def _project_for_kernels(sc: GaussianScene, cams: list[Camera]):
    """Projected, binned inputs of the compositing kernels (numpy), as splat._splat_cpu builds them."""
    from backend.render.projection import project_gaussians
    from backend.render.splat_data import camera_tensors

    B = len(cams)
    vm, K = camera_tensors(cams, "cpu")
    ex = lambda t: t.expand((B,) + tuple(t.shape)).contiguous()  # noqa: E731
    with torch.no_grad():
        p = project_gaussians(ex(sc.means), ex(sc.quats), ex(sc.scales), vm, K, cams[0].width, cams[0].height,
                              opacities=ex(sc.opacities))
        cols = torch.cat([ex(sc.features), p.depths[..., None]], -1)
    op = ex(sc.opacities).numpy()
    return p.means2d.numpy(), p.conics.numpy(), op, cols.numpy(), p.extents.numpy(), p.depths.numpy()


@pytest.mark.parametrize("channels, tile, size, t_stop, threads", [
    (3, 16, (40, 32), 1.0 / 255.0, 2), (3, 16, (53, 37), None, 1), (32, 16, (40, 32), 1.0 / 255.0, 2),
    (1, 8, (45, 29), 0.05, 2), (3, 64, (130, 70), 1.0 / 255.0, 2), (3, 32, (40, 32), 1.0 / 255.0, 3),
])  # fmt: skip
def test_forward_only_kernel_is_bit_identical_to_rasterize_fwd(channels, tile, size, t_stop, threads) -> None:
    """_kernels.rasterize_image (no-gradient renders: previews) gives rasterize_fwd's image and
    alpha bit for bit: 4-channel (RGB + depth) and generic channel counts, tiles cut by the image
    edge, tiles of 8 to 64 px, with and without a transmittance stop, any block count; on a
    dense scene where most footprint pixels are already done (its row masks skip them)."""
    import numba

    from backend.render import _kernels
    from backend.render.rasterize import bin_gaussians

    W, H = size
    sc = head_scene(400, channels, seed=11)
    sc.opacities = torch.full_like(sc.opacities, 0.95)
    m2, co, op, cols, ext, dp = _project_for_kernels(sc, _cams(W, H, 2))
    bins = bin_gaussians(m2, ext, dp, W, H, tile)
    smax = _kernels.sigma_max(op)
    t = _kernels.T_EPS if t_stop is None else t_stop
    n = min(threads, numba.config.NUMBA_NUM_THREADS)
    order = _kernels.tile_order(bins.offsets.shape[0] - 1, n)
    out, T_final, _ = _kernels.rasterize_fwd(m2, co, op, smax, cols, ext, bins.offsets, bins.ids, W, H, tile, order, t)
    out2, alpha2 = _kernels.rasterize_image(m2, co, op, smax, cols, ext, bins.offsets, bins.ids, W, H, tile, order, n, t)
    assert out2.shape == out.shape == (2, H, W, channels + 1)
    np.testing.assert_array_equal(out2, out)
    np.testing.assert_array_equal(alpha2, (1.0 - T_final).astype(np.float32))
    assert (alpha2 > 0.9).mean() > 0.02 and (alpha2 == 0).any()  # opaque pixels and empty ones


def test_no_grad_splat_uses_the_forward_only_kernel_for_any_channel_count() -> None:
    """splat under torch.no_grad (32 feature channels, the refiner's input, and a transmittance
    stop) equals the autograd path bit for bit."""
    sc = random_scene(150, 32, seed=5, scale_range=(0.002, 0.05))
    cams = _cams()
    with torch.no_grad():
        fast = splat(*_inputs(sc), cams, backend="cpu", transmittance_stop=1.0 / 255.0)
    slow = splat(*_inputs(sc, grad=True), cams, backend="cpu", transmittance_stop=1.0 / 255.0)
    torch.testing.assert_close(fast.image, slow.image.detach(), atol=0, rtol=0)
    torch.testing.assert_close(fast.alpha, slow.alpha.detach(), atol=0, rtol=0)
    torch.testing.assert_close(fast.depth, slow.depth.detach(), atol=0, rtol=0)


@pytest.mark.parametrize("channels, background, t_stop", [
    (3, True, 1.0 / 255.0), (3, False, None), (1, True, None), (4, True, 1.0 / 255.0), (32, True, 1.0 / 255.0),
])  # fmt: skip
def test_depth_free_splat_is_bit_identical_to_the_depth_path(channels, background, t_stop) -> None:
    """splat(depth=False) (previews: no depth channel, the background added in the compositing
    kernel as each tile is written, empty tiles filled with it) gives the same image and alpha,
    bit for bit, as the default path (depth channel composited, then _kernels.finish_image), under
    torch.no_grad and through autograd; its depth is None and gradients still flow."""
    sc = head_scene(300, channels, seed=21)
    sc.opacities = torch.full_like(sc.opacities, 0.9)
    cams = _cams(53, 37, 2)
    bg = torch.linspace(0.1, 0.9, channels) if background else None
    with torch.no_grad():
        ref = splat(*_inputs(sc), cams, background=bg, backend="cpu", transmittance_stop=t_stop)
        fast = splat(*_inputs(sc), cams, background=bg, backend="cpu", transmittance_stop=t_stop, depth=False)
    assert fast.depth is None and fast.image.shape == ref.image.shape == (2, channels, 37, 53)
    torch.testing.assert_close(fast.image, ref.image, atol=0, rtol=0)
    torch.testing.assert_close(fast.alpha, ref.alpha, atol=0, rtol=0)
    assert (ref.alpha > 0.9).any() and (ref.alpha == 0).any()  # opaque pixels and empty tiles
    inputs = _inputs(sc, grad=True)
    slow = splat(*inputs, cams, background=bg, backend="cpu", transmittance_stop=t_stop, depth=False)
    assert slow.depth is None and slow.image.requires_grad
    torch.testing.assert_close(slow.image.detach(), ref.image, atol=0, rtol=0)
    slow.image.square().sum().backward()
    assert inputs[0].grad is not None and inputs[0].grad.abs().max() > 0
