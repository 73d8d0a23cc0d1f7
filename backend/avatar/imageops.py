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
