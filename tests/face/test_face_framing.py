"""Framing: the crop holds the portrait's whole head-and-hair region (tall hair, off-centre heads)
on synthetic portraits whose region is known, and on the real astronaut photo through the
analyzer."""

from __future__ import annotations

import numpy as np
import pytest

from backend.face.crop import CropInfo, crop_from_landmarks
from backend.face.framing import MAX_GROWTH, REGION_MARGIN, crop_coverage, fit_crop_to_region, head_region
from backend.face.mediapipe_face import LEFT_EYE_CORNERS, MOUTH_CORNERS, RIGHT_EYE_CORNERS


def synthetic_portrait(w: int, h: int, face_c: tuple[float, float], iod: float, hair_up: float,
                       hair_wide: float = 1.3):
    """(mask (h, w) float32, landmarks (478, 2)): a face ellipse (half-width 1.1 iod, half-height
    1.6 iod) centred at ``face_c``, hair reaching ``hair_up`` iod above the eyes and ``hair_wide``
    iod to each side, a neck and shoulders below. Landmarks: the face oval, eye and mouth corners
    where the crop recipe reads them."""
    cx, cy = face_c
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    eye_y = cy - 0.3 * iod
    face = ((xx - cx) / (1.1 * iod)) ** 2 + ((yy - cy) / (1.6 * iod)) ** 2 <= 1.0
    hair = (np.abs(xx - cx) <= hair_wide * iod) & (yy >= eye_y - hair_up * iod) & (yy <= cy)
    neck = (np.abs(xx - cx) <= 0.5 * iod) & (yy >= cy) & (yy <= cy + 2.2 * iod)
    shoulders = (np.abs(xx - cx) <= 2.5 * iod) & (yy >= cy + 2.2 * iod)
    mask = (face | hair | neck | shoulders).astype(np.float32)
    t = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    lm = np.stack([cx + 1.05 * iod * np.cos(t), cy + 1.55 * iod * np.sin(t)], 1)
    lm[list(RIGHT_EYE_CORNERS)] = [(cx - 0.3 * iod, eye_y), (cx - 0.7 * iod, eye_y)]
    lm[list(LEFT_EYE_CORNERS)] = [(cx + 0.3 * iod, eye_y), (cx + 0.7 * iod, eye_y)]
    lm[list(MOUTH_CORNERS)] = [(cx - 0.35 * iod, cy + 0.8 * iod), (cx + 0.35 * iod, cy + 0.8 * iod)]
    return mask, lm


@pytest.mark.parametrize("name, size, centre, hair_up", [
    ("tall hair", (800, 1000), (400, 600), 3.5),      # a beehive: hair 3.5 eye distances above the eyes
    ("off-centre", (1000, 700), (170, 300), 1.6),     # head near the left edge, normal hair
    ("off-centre tall", (900, 900), (650, 620), 3.0),  # right of centre and low, tall hair
])
def test_crop_holds_the_head_and_hair(name, size, centre, hair_up):
    w, h = size
    mask, lm = synthetic_portrait(w, h, centre, iod=80.0, hair_up=hair_up)
    region = head_region(mask, lm)
    assert region.any() and not region[int(centre[1] + 2.5 * 80):].any()  # shoulders are not head
    base = crop_from_landmarks(lm, (w, h))
    crop = fit_crop_to_region(base, region)
    assert crop_coverage(region, crop) >= 0.98
    assert base.side <= crop.side <= MAX_GROWTH * base.side + 1
    if hair_up >= 3.0:  # the landmark crop alone loses the top of tall hair: the test can fail
        assert crop_coverage(region, base) < 0.95
    # the region keeps the stated margin from the crop's edges
    ys, xs = np.nonzero(region)
    m = REGION_MARGIN * crop.side - 1.5
    assert ys.min() - crop.y0 >= m and crop.x0 + crop.side - xs.max() >= m


def test_fit_only_grows_and_keeps_a_fitting_crop():
    mask, lm = synthetic_portrait(600, 600, (300, 300), iod=60.0, hair_up=1.2)
    region = head_region(mask, lm)
    base = CropInfo(0, 0, 600, 512, (600, 600))   # already holds everything: unchanged
    assert fit_crop_to_region(base, region) == base
    tiny = CropInfo(270, 270, 60, 512, (600, 600))  # far too small: grows at most MAX_GROWTH times
    grown = fit_crop_to_region(tiny, region)
    assert grown.side == int(MAX_GROWTH * 60)
    assert crop_coverage(region, grown) < 1.0     # capped: the metric reports what is left out
    assert fit_crop_to_region(base, np.zeros((600, 600), bool)) == base


def test_astronaut_crop_holds_head_and_shoulders(analyzer, astronaut):
    """The real photo: the whole head-and-hair region inside, the shoulders in the picture."""
    from backend.eval.metrics.masks import PortraitSegmenter
    from backend.eval.protocols.reconstruction import photo_crop_coverage

    obs = analyzer.analyze(astronaut)
    segmenter = PortraitSegmenter()
    try:
        assert photo_crop_coverage(obs, segmenter) >= 0.98
    finally:
        segmenter.close()
    # head-and-shoulders: the chin sits in the upper ~2/3 of the crop, below it the body
    chin = obs.landmarks[:, 1].max()
    assert 0.45 * 512 < chin < 0.78 * 512
    assert obs.mask[-20:].mean() > 0.3  # the bottom rows show the body
