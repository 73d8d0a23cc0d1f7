"""Source-view quality of an avatar: PSNR and SSIM inside the face region.

Face region = convex hull of the photo's 478 mediapipe landmarks (an outside definition: it does
not depend on where our head renders). Images are float32 [0, 1], (H, W, 3).
"""

from __future__ import annotations

import numpy as np


def psnr_masked(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """PSNR (dB, peak 1) over pixels where ``mask`` is True (all three channels)."""
    m = mask.astype(bool)
    if not m.any():
        return float("nan")
    mse = float(np.mean((pred[m].astype(np.float64) - target[m]) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def ssim_masked(pred: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    """Mean of skimage's SSIM map (7x7 Gaussian-free window, data range 1) over the mask."""
    from skimage.metrics import structural_similarity

    m = mask.astype(bool)
    if not m.any():
        return float("nan")
    _, smap = structural_similarity(target.astype(np.float64), pred.astype(np.float64), data_range=1.0,
                                    channel_axis=2, full=True)
    return float(smap[m].mean())
