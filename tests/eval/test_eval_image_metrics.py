"""PSNR / SSIM against hand-checkable cases and scikit-image's reference implementation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from backend.image_metrics import as_hwc, hull_mask, psnr, ssim, ssim_map


def _rand(shape, seed=0):
    return np.random.default_rng(seed).random(shape)


def test_psnr_identical_is_inf_and_constant_offset_is_exact():
    a = _rand((32, 40, 3))
    assert psnr(a, a) == float("inf")
    b = np.clip(a, 0.2, 0.8)
    c = b + 0.1  # MSE = 0.01 -> 20 dB exactly
    assert psnr(c, b) == pytest.approx(20.0, abs=1e-9)


def test_psnr_matches_skimage_and_uint8_equals_float():
    a, b = _rand((64, 48, 3), 1), _rand((64, 48, 3), 2)
    ref = peak_signal_noise_ratio(a, b, data_range=1.0)
    assert psnr(a, b) == pytest.approx(ref, abs=1e-9)
    a8, b8 = (a * 255).astype(np.uint8), (b * 255).astype(np.uint8)
    assert psnr(a8, b8) == pytest.approx(peak_signal_noise_ratio(a8, b8), abs=1e-9)


def test_psnr_mask_only_counts_masked_pixels():
    a = np.zeros((20, 20, 3))
    b = a.copy()
    b[:10] = 0.5  # top half wrong
    mask = np.zeros((20, 20), bool)
    mask[10:] = True
    assert psnr(a, b, mask) == float("inf")
    mask[:, :] = False
    mask[:10] = True
    assert psnr(a, b, mask) == pytest.approx(10 * np.log10(1 / 0.25), abs=1e-9)
    # soft mask weights: half weight on an error region of MSE 0.25, full weight on a perfect one
    w = np.ones((20, 20))
    w[:10] = 0.5
    expected_mse = (0.5 * 200 * 0.25) / (0.5 * 200 + 200)  # 10x20 px per half
    assert psnr(a, b, w) == pytest.approx(10 * np.log10(1 / expected_mse), abs=1e-9)
    assert np.isnan(psnr(a, b, np.zeros((20, 20))))


def test_psnr_batched_and_torch_chw():
    a, b = _rand((3, 16, 16, 3), 3), _rand((3, 16, 16, 3), 4)
    batch = psnr(a, b)
    assert batch.shape == (3,)
    assert batch[1] == pytest.approx(psnr(a[1], b[1]), abs=1e-12)
    ta = torch.from_numpy(a[0]).permute(2, 0, 1)
    assert psnr(ta, b[0]) == pytest.approx(psnr(a[0], b[0]), abs=1e-12)
    assert as_hwc(torch.from_numpy(a).permute(0, 3, 1, 2)).shape == a.shape


def test_ssim_identical_is_one():
    a = _rand((40, 40, 3))
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert np.allclose(ssim_map(a, a), 1.0)


def test_ssim_matches_skimage_full_image(face512):
    ref_img = face512.astype(np.float64) / 255.0
    rng = np.random.default_rng(5)
    noisy = np.clip(ref_img + rng.normal(0, 0.05, ref_img.shape), 0, 1)
    shifted = np.roll(ref_img, 3, axis=1)
    for other in (noisy, shifted):
        ref = structural_similarity(
            other, ref_img, channel_axis=2, data_range=1.0,
            gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
        )
        assert ssim(other, ref_img) == pytest.approx(ref, abs=1e-6)
    assert ssim(noisy, ref_img) < 0.95


def test_ssim_mask_selects_region():
    a = _rand((48, 48, 3), 6)
    b = a.copy()
    b[:, 24:] = _rand((48, 24, 3), 7)  # right half replaced with unrelated noise
    left = np.zeros((48, 48))
    left[:, :12] = 1  # well away (> window radius) from the seam
    right = np.zeros((48, 48))
    right[:, 36:] = 1
    assert ssim(a, b, left) == pytest.approx(1.0, abs=1e-9)
    assert ssim(a, b, right) < 0.2
    full = ssim(a, b)
    assert ssim(a, b, right) < full < ssim(a, b, left)


def test_hull_mask_and_composite():
    from backend.eval.metrics.masks import composite

    m = hull_mask(np.array([[2, 2], [8, 2], [8, 6], [2, 6.0]]), 10, 12)
    assert m.sum() == 24 and m[2:6, 2:8].all()  # the 6x4 px rectangle, pixel centres inside
    rgb = np.full((4, 4, 3), 255, np.uint8)
    mask = np.zeros((4, 4))
    mask[:2] = 1.0
    out = composite(rgb, mask, (0.0, 0.5, 0.0))
    assert np.allclose(out[:2], 1.0) and np.allclose(out[2:], [0.0, 0.5, 0.0])


def test_hull_mask_equals_matplotlib_path_off_the_boundary():
    """hull_mask's half-plane test gives matplotlib Path.contains_points' pixels on random point
    clouds (float coordinates: no pixel centre lies exactly on an edge), hulls partly outside the
    image included."""
    from matplotlib.path import Path as MplPath
    from scipy.spatial import ConvexHull

    rng = np.random.default_rng(3)
    H, W = 120, 150
    for k in range(40):
        n = int(rng.integers(3, 60))
        pts = rng.normal(0.0, rng.uniform(5.0, 60.0), (n, 2)) + rng.uniform(-20.0, 170.0, 2)
        ref = np.zeros((H, W), bool)
        hull = pts[ConvexHull(pts).vertices]
        xs, ys = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
        lo = np.floor(hull.min(0)).astype(int).clip(0, [W - 1, H - 1])
        hi = np.ceil(hull.max(0)).astype(int).clip(0, [W - 1, H - 1])
        box = np.zeros((H, W), bool)
        box[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1] = True
        ref[box] = MplPath(hull).contains_points(np.stack([xs[box], ys[box]], 1))
        got = hull_mask(pts, H, W)
        np.testing.assert_array_equal(got, ref, err_msg=f"cloud {k}")
    assert ref.any()
