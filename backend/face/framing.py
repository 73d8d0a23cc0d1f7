"""The portrait's head-and-hair region and how much of it a square crop holds.

Head-and-hair region (a documented definition, shared by the framing and the evaluation): the
portrait-mask pixels (person vs background) above the chin line, in the mask's connected piece
that holds the face. Everything of the person above the chin is head, hair or hat (raised hands
aside); hair hanging below the chin is counted with the body. The chin line is the lowest
face-oval landmark, so a tilted head keeps its whole face inside the region.
"""

from __future__ import annotations

import numpy as np

from .crop import CropInfo

MASK_THRESHOLD = 0.5


def head_region(mask: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(H, W) bool head-and-hair region of a portrait mask (H, W) float [0, 1] with the face's
    (478, 2+) landmarks in the mask's pixels."""
    from scipy import ndimage

    h, w = mask.shape
    person = np.asarray(mask) > MASK_THRESHOLD
    lm = np.asarray(landmarks, np.float64)[:, :2]
    chin = float(lm[:, 1].max())
    rows = np.arange(h)[:, None] + 0.5
    above = person & (rows <= chin)
    # the face's bounding box (landmarks) picks the connected piece(s) that are this person's head
    lo = np.clip(np.floor(lm.min(0)).astype(int), 0, [w - 1, h - 1])
    hi = np.clip(np.ceil(lm.max(0)).astype(int), 0, [w - 1, h - 1])
    labels, _ = ndimage.label(above)
    face_labels = np.unique(labels[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1])
    face_labels = face_labels[face_labels > 0]
    if face_labels.size == 0:  # the mask missed the face: its bounding box is the region
        region = np.zeros((h, w), bool)
        region[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = True
        return region
    return np.isin(labels, face_labels)


def crop_coverage(region: np.ndarray, crop: CropInfo, region_scale: float = 1.0) -> float:
    """Share of ``region`` (H, W) bool pixels that lie inside ``crop`` (in source pixels; the region
    may be a downscaled copy of the source: ``region_scale`` = region px per source px).
    An empty region -> NaN."""
    total = np.count_nonzero(region)
    if total == 0:
        return float("nan")
    x0, y0 = crop.x0 * region_scale, crop.y0 * region_scale
    x1, y1 = (crop.x0 + crop.side) * region_scale, (crop.y0 + crop.side) * region_scale
    ys, xs = np.nonzero(region)
    cx, cy = xs + 0.5, ys + 0.5  # pixel centres
    inside = (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)
    return float(np.count_nonzero(inside) / total)
