"""Evaluation masks: the portrait (person vs background: mediapipe selfie segmentation refined with
the frame by backend.face.matte, the same matte the build cuts the person out with) of the frame
being scored, and compositing over a background. The face region (convex hull of the
landmarks) is backend.image_metrics.hull_mask, which the build uses too."""

from __future__ import annotations

import numpy as np

from ...face.matte import refine_matte
from .identity import MetricModelMissing


class PortraitSegmenter:
    """The portrait matte: mediapipe selfie segmentation (general model) refined with the frame
    (backend.face.matte.refine_matte; ``refine=False``: the segmenter's raw mask, as before
    2026-12-01). RGB uint8 -> (H, W) float32 in [0, 1]."""

    def __init__(self, refine: bool = True) -> None:
        self.refine = bool(refine)
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover
            raise MetricModelMissing("portrait masks need mediapipe") from exc
        self._seg = mp.solutions.selfie_segmentation.SelfieSegmentation(model_selection=0)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.ascontiguousarray(rgb[..., :3])
        coarse = self.coarse(rgb)
        return refine_matte(rgb, coarse) if self.refine else coarse

    def coarse(self, rgb: np.ndarray) -> np.ndarray:
        """The segmenter's own mask (H, W) float32, as the build's framing sees it (face/analyze.py)."""
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
