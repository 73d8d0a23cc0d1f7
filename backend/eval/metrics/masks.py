"""Evaluation masks: the face region (convex hull of the target's landmarks) and the portrait
(person vs background, mediapipe selfie segmentation), both for the frame being scored."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .identity import MetricModelMissing


def hull_mask(points: np.ndarray, height: int, width: int) -> np.ndarray:
    """(H, W) bool: pixels whose centre lies inside the convex hull of (N, 2+) px points."""
    from matplotlib.path import Path as MplPath
    from scipy.spatial import ConvexHull

    pts = np.asarray(points, np.float64)[:, :2]
    hull = pts[ConvexHull(pts).vertices]
    lo = np.floor(hull.min(0)).astype(int).clip(0, [width - 1, height - 1])
    hi = np.ceil(hull.max(0)).astype(int).clip(0, [width - 1, height - 1])
    # Test only the bounding box's pixel centres (pixel i covers [i, i+1): centre i + 0.5).
    xs, ys = np.meshgrid(np.arange(lo[0], hi[0] + 1) + 0.5, np.arange(lo[1], hi[1] + 1) + 0.5)
    inside = MplPath(hull).contains_points(np.stack([xs.ravel(), ys.ravel()], 1)).reshape(xs.shape)
    mask = np.zeros((height, width), bool)
    mask[lo[1] : hi[1] + 1, lo[0] : hi[0] + 1] = inside
    return mask


class PortraitSegmenter:
    """mediapipe selfie segmentation (general model): RGB uint8 -> (H, W) float32 in [0, 1]."""

    def __init__(self) -> None:
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover
            raise MetricModelMissing("portrait masks need mediapipe") from exc
        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        res = self._seg.process(np.ascontiguousarray(rgb[..., :3]))
        return np.clip(np.asarray(res.segmentation_mask, np.float32), 0.0, 1.0)

    def close(self) -> None:
        self._seg.close()


@lru_cache(maxsize=1)
def default_segmenter() -> PortraitSegmenter:
    return PortraitSegmenter()


def composite(rgb: np.ndarray, mask: np.ndarray, background) -> np.ndarray:
    """(H, W, 3) float in [0, 1]: ``rgb`` over a constant ``background`` (3,) with alpha ``mask``."""
    arr = np.asarray(rgb)
    img = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
    a = np.asarray(mask, np.float32)[..., None]
    return img * a + np.asarray(background, np.float32) * (1.0 - a)
