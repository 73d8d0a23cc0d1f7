"""Evaluation masks: the portrait (person vs background, mediapipe selfie segmentation) of the
frame being scored, and compositing over a background. The face region (convex hull of the
landmarks) is backend.image_metrics.hull_mask, which the build uses too."""

from __future__ import annotations

import numpy as np

from .identity import MetricModelMissing


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


def composite(rgb: np.ndarray, mask: np.ndarray, background) -> np.ndarray:
    """(H, W, 3) float in [0, 1]: ``rgb`` over a constant ``background`` (3,) with alpha ``mask``."""
    arr = np.asarray(rgb)
    img = arr.astype(np.float32) / (255.0 if arr.dtype == np.uint8 else 1.0)
    a = np.asarray(mask, np.float32)[..., None]
    return img * a + np.asarray(background, np.float32) * (1.0 - a)
