"""Image metrics: PSNR and SSIM, on the full image or inside a (soft) mask, and the face-hull mask.

Low in the package tree (numpy/torch only) because the build measures its source view with them;
backend.eval re-exports them for the evaluation protocols.

Images are float in [0, 1] (uint8 is converted by /255) laid out (..., H, W, C) for numpy; torch
tensors are taken as (C, H, W) or (B, C, H, W) as in the rest of the backend. Leading batch
dimensions are vectorized: the result has the batch shape (a Python float for a single image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F



def as_hwc(image) -> np.ndarray:
    """Any image (numpy (..., H, W, C) / (H, W), torch (C, H, W) / (B, C, H, W), uint8 or float)
    -> float64 numpy (..., H, W, C) in [0, 1]."""
    if isinstance(image, torch.Tensor):
        t = image.detach().cpu()
        if t.ndim in (3, 4):  # channels-first per the backend contract
            t = t.movedim(-3, -1)
        arr = t.numpy()
    else:
        arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype == np.uint8:
        return arr.astype(np.float64) / 255.0
    return arr.astype(np.float64, copy=False)


def _mask_weights(mask, shape: tuple[int, ...]) -> np.ndarray:
    """(..., H, W) mask (bool or float weights) -> float64 broadcastable to ``shape[:-1]``."""
    m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    m = m.astype(np.float64)
    if m.shape[-2:] != tuple(shape[-3:-1]):
        raise ValueError(f"mask {m.shape} does not match image {shape}")
    return m


def _out(value: np.ndarray):
    return float(value) if np.ndim(value) == 0 else value


def mse(pred, target, mask=None):
    """Mean squared error over pixels and channels; with ``mask`` (H, W), a mask-weighted mean."""
    a, b = as_hwc(pred), as_hwc(target)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    err = ((a - b) ** 2).mean(axis=-1)  # (..., H, W)
    if mask is None:
        return _out(err.mean(axis=(-2, -1)))
    w = np.broadcast_to(_mask_weights(mask, a.shape), err.shape)
    total = w.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _out(np.where(total > 0, (err * w).sum(axis=(-2, -1)) / np.maximum(total, 1e-12), np.nan))


def psnr(pred, target, mask=None, data_range: float = 1.0):
    """Peak signal-to-noise ratio in dB, 10 log10(range^2 / MSE); +inf for identical images,
    NaN for an empty mask."""
    m = np.asarray(mse(pred, target, mask), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 10.0 * np.log10(data_range**2 / m)
    return _out(out)


@dataclass(frozen=True)
class SSIMOptions:
    """The standard (Wang et al. 2004) SSIM: 11x11 Gaussian window with sigma 1.5, K1 0.01,
    K2 0.03, population (not sample) statistics; the map covers the 'valid' region only (no
    padding), as scikit-image's ``structural_similarity(gaussian_weights=True)`` averages it."""

    sigma: float = 1.5
    truncate: float = 3.5  # window radius = int(truncate * sigma + 0.5) = 5 -> 11 taps
    k1: float = 0.01
    k2: float = 0.03
    data_range: float = 1.0

    @property
    def radius(self) -> int:
        return int(self.truncate * self.sigma + 0.5)


def _gauss_kernel(opts: SSIMOptions) -> torch.Tensor:
    r = opts.radius
    x = torch.arange(-r, r + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (x / opts.sigma) ** 2)
    return g / g.sum()  # (2r+1,)


def ssim_moments(pred, target, opts: SSIMOptions = SSIMOptions()) -> tuple[torch.Tensor, ...]:
    """SSIM's local moments under its Gaussian window, valid region only: (mu_p, mu_t, var_p,
    var_t, cov), each (N * C, 1, H - 2r, W - 2r) float64 with every channel of every image (leading
    dims of ``pred`` (..., H, W, C)) as its own plane; the variances are not clamped."""
    a, b = as_hwc(pred), as_hwc(target)
    if a.shape != b.shape:
        raise ValueError(f"shape mismatch {a.shape} vs {b.shape}")
    h, w, c = a.shape[-3:]
    # (N, 1, H, W) with every channel of every image as its own plane: one depthwise pass.
    ta = torch.from_numpy(np.ascontiguousarray(a.reshape(-1, h, w, c))).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    tb = torch.from_numpy(np.ascontiguousarray(b.reshape(-1, h, w, c))).permute(0, 3, 1, 2).reshape(-1, 1, h, w)
    g = _gauss_kernel(opts)
    kx, ky = g.view(1, 1, 1, -1), g.view(1, 1, -1, 1)

    def blur(x: torch.Tensor) -> torch.Tensor:  # separable Gaussian, valid region only
        return F.conv2d(F.conv2d(x, kx), ky)

    stack = torch.cat([ta, tb, ta * ta, tb * tb, ta * tb], dim=0)
    mu_a, mu_b, e_aa, e_bb, e_ab = blur(stack).chunk(5, dim=0)
    return mu_a, mu_b, e_aa - mu_a**2, e_bb - mu_b**2, e_ab - mu_a * mu_b


def ssim_map(pred, target, opts: SSIMOptions = SSIMOptions()) -> np.ndarray:
    """Per-pixel SSIM averaged over channels: (..., H - 2r, W - 2r) float64 (r = window radius)."""
    a = as_hwc(pred)
    batch, c = a.shape[:-3], a.shape[-1]
    mu_a, mu_b, var_a, var_b, cov = ssim_moments(pred, target, opts)
    c1, c2 = (opts.k1 * opts.data_range) ** 2, (opts.k2 * opts.data_range) ** 2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    hh, ww = s.shape[-2:]
    s = s.reshape(-1, c, hh, ww).mean(dim=1)  # average channels
    return s.numpy().reshape(*batch, hh, ww)


def ssim(pred, target, mask=None, opts: SSIMOptions = SSIMOptions()):
    """Mean SSIM. Without ``mask``: mean of the valid-region map (matches scikit-image).
    With ``mask`` (H, W): mask-weighted mean of the map, the mask cropped to the same valid region
    (a window centred at a masked pixel counts; its neighbourhood may reach outside the mask)."""
    s = ssim_map(pred, target, opts)
    if mask is None:
        return _out(s.mean(axis=(-2, -1)))
    r = opts.radius
    shape = as_hwc(target).shape
    m = _mask_weights(mask, shape)[..., r : shape[-3] - r, r : shape[-2] - r]
    m = np.broadcast_to(m, s.shape)
    total = m.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return _out(np.where(total > 0, (s * m).sum(axis=(-2, -1)) / np.maximum(total, 1e-12), np.nan))


def hull_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies inside the convex hull of (N, 2+) px points.

    A pixel centre is inside when it lies on the inner side of every hull edge (half-plane tests
    over the hull's bounding box, vectorized; centres exactly on an edge count as inside). This
    equals matplotlib's ``Path.contains_points`` on the hull off the boundary
    (tests/eval/test_eval_image_metrics.py) without importing matplotlib (about 0.25 s of CPU
    in a build)."""
    from scipy.spatial import ConvexHull

    pts = np.asarray(points, np.float64)[:, :2]
    hull = pts[ConvexHull(pts).vertices]  # (K, 2) in order round the hull
    lo = np.floor(hull.min(0)).astype(int).clip(0, [width - 1, height - 1])
    hi = np.ceil(hull.max(0)).astype(int).clip(0, [width - 1, height - 1])
    # Test only the bounding box's pixel centres (pixel i covers [i, i+1): centre i + 0.5).
    xs, ys = np.meshgrid(np.arange(lo[0], hi[0] + 1) + 0.5, np.arange(lo[1], hi[1] + 1) + 0.5)
    a, d = hull, np.roll(hull, -1, axis=0) - hull                     # edge starts and directions
    area2 = float((a[:, 0] * np.roll(a[:, 1], -1) - np.roll(a[:, 0], -1) * a[:, 1]).sum())
    side = np.sign(area2) if area2 != 0.0 else 1.0                   # the interior's side of each edge
    inside = np.ones(xs.shape, bool)
    for (ax, ay), (dx, dy) in zip(a, d):  # K hull edges (tens), each a vectorized test of the box
        inside &= side * (dx * (ys - ay) - dy * (xs - ax)) >= 0.0
    mask = np.zeros((height, width), bool)
    mask[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1] = inside
    return mask
