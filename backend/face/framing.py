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


# Framing: a margin kept around the head-and-hair region (share of the crop side) and the largest
# crop the region may ask for, as a multiple of the landmark crop's side (beyond that the face gets
# too few pixels; the coverage metric then reports what was left out).
REGION_MARGIN = 0.04
MAX_GROWTH = 2.0


def fit_crop_to_region(crop: CropInfo, region: np.ndarray, region_scale: float = 1.0,
                       margin: float = REGION_MARGIN, max_growth: float = MAX_GROWTH) -> CropInfo:
    """Grow and shift the square ``crop`` (source pixels) as little as needed for the head-and-hair
    ``region`` (H, W) bool (a ``region_scale`` px-per-source-px copy) to lie inside it with
    ``margin`` * side to spare. The crop only grows (at most ``max_growth`` times), keeps its
    centre where the region allows, and moves towards the region otherwise (off-centre heads)."""
    if not region.any():
        return crop
    ys, xs = np.nonzero(region)
    bx0, by0 = xs.min() / region_scale, ys.min() / region_scale
    bx1, by1 = (xs.max() + 1) / region_scale, (ys.max() + 1) / region_scale
    need = max(bx1 - bx0, by1 - by0) / (1.0 - 2.0 * margin)
    side = float(min(max(crop.side, need), max_growth * crop.side))
    m = margin * side
    cx, cy = crop.x0 + crop.side / 2.0, crop.y0 + crop.side / 2.0

    def place(c: float, lo: float, hi: float, keep_start: bool) -> float:
        """Top-left coordinate on one axis: centred on ``c``, shifted to hold [lo, hi] (+ margin).
        A region longer than the side keeps its start (vertically: the hair on top, the body may
        be cut) or its middle (horizontally)."""
        if hi - lo + 2.0 * m > side:
            return lo - m if keep_start else 0.5 * (lo + hi) - side / 2.0
        start = c - side / 2.0
        start = min(start, lo - m)           # the region's start inside
        return max(start, hi + m - side)     # the region's end inside

    x0 = place(cx, bx0, bx1, keep_start=False)
    y0 = place(cy, by0, by1, keep_start=True)
    return CropInfo(int(round(x0)), int(round(y0)), int(round(side)), crop.size, crop.source_size)
