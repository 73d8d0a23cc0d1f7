"""Small image helpers shared by sampling, shoulders and refinement (float32 images, pixel units).

Pixel convention (backend.render.camera): pixel (col j, row i) has its centre at (j + 0.5, i + 0.5)
in the continuous coordinates that ``Camera.project`` returns.
"""

from __future__ import annotations

import numpy as np


def to_float(rgb: np.ndarray) -> np.ndarray:
    """uint8 or float image (H, W, C) -> float32 in [0, 1]."""
    a = np.asarray(rgb)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / 255.0
    return a.astype(np.float32)


def bilinear(image: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Sample ``image`` (H, W) or (H, W, C) at continuous pixel coords uv (N, 2) -> (N,) / (N, C).

    Coordinates outside the image clamp to the border pixels.
    """
    H, W = image.shape[:2]
    x = np.clip(uv[:, 0].astype(np.float64) - 0.5, 0.0, W - 1.0)
    y = np.clip(uv[:, 1].astype(np.float64) - 0.5, 0.0, H - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), W - 2 if W > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), H - 2 if H > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = x - x0, y - y0
    if image.ndim == 3:
        fx, fy = fx[:, None], fy[:, None]
    top = image[y0, x0] * (1 - fx) + image[y0, x1] * fx
    bot = image[y1, x0] * (1 - fx) + image[y1, x1] * fx
    return (top * (1 - fy) + bot * fy).astype(np.float32)


def blur(image: np.ndarray, sigma_px: float) -> np.ndarray:
    """Gaussian prefilter per channel (anti-aliasing before sampling at a coarser spacing)."""
    if sigma_px <= 0.3:
        return image
    from scipy.ndimage import gaussian_filter

    sig = (sigma_px, sigma_px, 0) if image.ndim == 3 else sigma_px
    return gaussian_filter(image, sig, mode="nearest").astype(np.float32)




def blurred_samples(image: np.ndarray, sigma_px: float, uv: np.ndarray) -> np.ndarray:
    """``bilinear(blur(image, sigma_px), uv)`` (N, C) with only the window the samples read
    blurred: their bounding box grown by the kernel's radius (scipy's, ``int(4 sigma + 0.5)``) and
    the bilinear footprint. Inside it every blurred pixel the samples read has its whole kernel in
    the window (or at the image's own border, where ``mode="nearest"`` extends the same pixels), and
    the shifted coordinates are exact in float64, so the samples are the same bit for bit. A face
    covers a quarter of the 512x512 photo, an eye or the mouth a few hundred pixels."""
    uv = np.asarray(uv)
    H, W = image.shape[:2]
    if sigma_px <= 0.3 or len(uv) == 0 or H < 2 or W < 2:
        return bilinear(blur(image, sigma_px), uv)
    r = int(4.0 * float(sigma_px) + 0.5)
    u = uv.astype(np.float64)
    top = np.array([W - 1.0, H - 1.0])
    lo = np.floor(np.clip(u.min(0) - 0.5, 0.0, top)).astype(np.int64) - r - 2
    hi = np.floor(np.clip(u.max(0) - 0.5, 0.0, top)).astype(np.int64) + r + 3
    x0, y0 = max(int(lo[0]), 0), max(int(lo[1]), 0)
    x1, y1 = min(int(hi[0]), W), min(int(hi[1]), H)
    if (x1 - x0) * (y1 - y0) * 2 > H * W:  # most of the image: blur it whole
        return bilinear(blur(image, sigma_px), uv)
    window = blur(image[y0:y1, x0:x1], sigma_px)
    return bilinear(window, u - np.array([x0, y0], np.float64))

def points_in_polygons(points: np.ndarray, polys: list[np.ndarray]) -> list[np.ndarray]:
    """[(N,) bool per polygon]: skimage's ``points_in_poly`` of ``points`` (N, 2) in each polygon
    (K, 2) of ``polys``, asked only of the points inside the polygons' common bounding box (grown
    by a hair, so a point on an edge is asked too): the rest are outside either way. The head's
    lid and lip polygons cover a few hundred of LOD 2's 84,000 vertices, and the test costs the
    same per point inside or out."""
    from skimage.measure import points_in_poly

    pts = np.asarray(points)
    outs = [np.zeros(len(pts), bool) for _ in polys]
    if len(pts) == 0 or not polys:
        return outs
    allp = np.concatenate([np.asarray(p, np.float64).reshape(-1, 2) for p in polys])
    if len(allp) == 0:
        return outs
    lo, hi = allp.min(0), allp.max(0)
    pad = 1e-6 * max(float(np.max(hi - lo)), 1e-30)
    x = pts[:, 0]
    near = np.flatnonzero((x >= lo[0] - pad) & (x <= hi[0] + pad))   # one column, then the other
    y = pts[near, 1]
    near = near[(y >= lo[1] - pad) & (y <= hi[1] + pad)]
    if len(near):
        sub = pts[near]
        for out, poly in zip(outs, polys):
            if len(poly):
                out[near] = points_in_poly(sub, poly)
    return outs
