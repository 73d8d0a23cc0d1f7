"""Whole-portrait metrics on hand-made inputs whose values can be checked by hand: alpha IoU, the
portrait union mask, mouth opening / inner-lip hull / mouth PSNR, head-and-hair region and crop
coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest

from backend.image_metrics import psnr, ssim, ssim_map
from backend.eval.metrics.portrait import (INNER_LIP, MOUTH_OPEN_THRESHOLD, SSIM_REGIONS, alpha_iou, mouth_mask,
                                           mouth_opening, portrait_union, ssim_loss_split)
from backend.eval.metrics.portrait import ERROR_REGIONS, error_split
from backend.face.crop import CropInfo
from backend.face.framing import crop_coverage, head_region


def test_alpha_iou_counts_pixels():
    alpha = np.zeros((4, 4), np.float32)
    alpha[0, 0:2] = 0.9          # render covers 2 pixels
    mask = np.zeros((4, 4), np.float32)
    mask[0, 1:4] = 1.0           # target covers 3, one shared
    assert alpha_iou(alpha, mask) == pytest.approx(1 / 4)
    assert alpha_iou(mask, mask) == 1.0
    alpha[0, 0:2] = 0.4          # below the 0.5 threshold: nothing rendered
    assert alpha_iou(alpha, mask) == 0.0
    assert math.isnan(alpha_iou(np.zeros((2, 2)), np.zeros((2, 2))))
    union = portrait_union(np.eye(3), np.fliplr(np.eye(3)))
    assert union.sum() == 5      # two diagonals share the centre pixel


def _lips(gap: float, width: float = 40.0, centre=(120.0, 110.0)) -> np.ndarray:
    """Landmarks whose inner-lip hull is a diamond: corners 78/308 ``width`` apart, 13/14 ``gap``
    apart; the other inner-lip points sit at the centre."""
    lm = np.zeros((478, 2), np.float64)
    cx, cy = centre
    lm[list(INNER_LIP)] = centre
    lm[78], lm[308] = (cx - width / 2, cy), (cx + width / 2, cy)
    lm[13], lm[14] = (cx, cy - gap / 2), (cx, cy + gap / 2)
    return lm


def test_mouth_opening_and_hull():
    lm = _lips(gap=24.0)
    assert mouth_opening(lm) == pytest.approx(24 / 40)
    m = mouth_mask(lm, 256, 256)
    # a diamond with diagonals 40 and 24 px: area 480 px
    assert m is not None and abs(int(m.sum()) - 480) <= 24
    assert m[110, 120] and not m[110, 99] and not m[97, 120]
    # a gap under the threshold: no mouth PSNR for this frame
    assert mouth_opening(_lips(gap=0.2 * 40)) < MOUTH_OPEN_THRESHOLD
    assert mouth_mask(_lips(gap=0.2 * 40), 256, 256) is None
    assert mouth_mask(None, 256, 256) is None


def test_mouth_psnr_inside_the_hull_only():
    lm = _lips(gap=24.0)
    m = mouth_mask(lm, 256, 256)
    target = np.zeros((256, 256, 3), np.float32)
    render = np.full((256, 256, 3), 0.8, np.float32)   # wrong everywhere outside the mouth ...
    render[m] = 0.1                                     # ... and off by 0.1 inside it
    assert psnr(render, target, m) == pytest.approx(20.0, abs=1e-4)   # 10 log10(1 / 0.01)


def _portrait(h: int = 200, w: int = 200):
    """A person mask: head disk (centre 100, 90, r 30), tall hair block above it up to row 20,
    shoulders below row 130, and a second blob (someone else) top left; face landmarks on the disk
    with the chin at row 118."""
    yy, xx = np.mgrid[0:h, 0:w] + 0.5
    mask = ((xx - 100) ** 2 + (yy - 90) ** 2 <= 30**2).astype(np.float32)
    mask[20:70, 80:120] = 1.0       # hair
    mask[130:, 40:160] = 1.0        # shoulders
    mask[122:130, 90:110] = 1.0     # neck
    mask[5:15, 5:15] = 1.0          # another person's head, not connected
    t = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    lm = np.stack([100 + 20 * np.cos(t), 98 + 20 * np.sin(t)], 1)   # y in 78..118
    return mask, lm


def test_head_region_is_the_connected_part_above_the_chin():
    mask, lm = _portrait()
    region = head_region(mask, lm)
    assert region[25, 100] and region[90, 100]             # hair top and face
    assert not region[150, 100] and not region[125, 100]   # shoulders / neck are below the chin
    assert not region[10, 10]                              # the other blob is not this head
    assert region[:119].sum() > 0
    assert region[119:].sum() == 0


def test_crop_coverage_counts_the_region_inside_the_crop():
    region = np.zeros((100, 100), bool)
    region[10:30, 40:60] = True                            # 400 px
    assert crop_coverage(region, CropInfo(0, 20, 100, 512, (100, 100))) == pytest.approx(0.5)
    assert crop_coverage(region, CropInfo(-50, -50, 200, 512, (100, 100))) == 1.0
    # the region is a half-size copy of a 200x200 source: crop in source pixels
    assert crop_coverage(region, CropInfo(0, 40, 200, 512, (200, 200)), region_scale=0.5) == pytest.approx(0.5)
    assert math.isnan(crop_coverage(np.zeros((4, 4), bool), CropInfo(0, 0, 4, 512, (4, 4))))


def test_ssim_loss_split_adds_up_and_finds_the_region():
    """A render that differs from its target only inside the face hull loses SSIM only there (and
    in the background/person windows that reach into it); the four shares add up to 1 - SSIM."""
    rng = np.random.default_rng(3)
    target = rng.random((64, 64, 3)).astype(np.float32)
    render = target.copy()
    render[24:40, 24:40] = rng.random((16, 16, 3))  # the face changed
    alpha = np.zeros((64, 64), np.float32)
    alpha[8:56, 8:56] = 1.0
    portrait = alpha.copy()
    portrait[8:56, 50:56] = 0.0  # the render's outline reaches 6 px further right
    face = np.zeros((64, 64), bool)
    face[20:44, 20:44] = True
    split = ssim_loss_split(ssim_map(render, target), alpha, portrait, face)
    assert set(split) == set(SSIM_REGIONS)
    assert sum(split.values()) == pytest.approx(1.0 - ssim(render, target), abs=1e-9)
    assert split["face"] > 0.9 * sum(split.values())  # windows reaching the change from outside: the rest
    assert split["silhouette"] == 0.0 and split["background"] == 0.0


def test_source_coverage_marks_the_padding():
    """A crop reaching past the source's edges is padded there (apply_crop repeats the edge):
    source_coverage is False exactly on those crop pixels."""
    from backend.face.crop import source_coverage

    inside = source_coverage(CropInfo(10, 20, 200, 512, (400, 300)))
    assert inside.shape == (512, 512) and inside.all()
    # a 100x100 source in a 200 px crop starting 50 px before it: the middle 256x256 crop px are real
    half = source_coverage(CropInfo(-50, -50, 200, 512, (100, 100)))
    rows, cols = np.nonzero(half)
    assert rows.min() in (128, 129) and rows.max() in (382, 383)
    assert 254 * 254 <= int(half.sum()) <= 256 * 256  # the edge pixels mixed with padding drop out
    # the bottom only: a 512x400 source cut by a 512 crop from its top-left corner
    bottom = source_coverage(CropInfo(0, 0, 512, 512, (512, 400)))
    assert bottom[:400].all() and not bottom[400:].any()


def test_ssim_loss_split_counts_only_valid_windows():
    """With a valid mask the split ignores windows centred on invalid pixels and still adds up
    to 1 - SSIM over the valid pixels."""
    rng = np.random.default_rng(4)
    target = rng.random((64, 64, 3)).astype(np.float32)
    render = target.copy()
    render[48:] = rng.random((16, 64, 3))  # differs only in the bottom rows
    alpha = np.ones((64, 64), np.float32)
    face = np.zeros((64, 64), bool)
    valid = np.zeros((64, 64), bool)
    valid[:40] = True  # the bottom rows are not real picture (windows of rows < 40 reach row 45 at most)
    split = ssim_loss_split(ssim_map(render, target), alpha, alpha, face, valid=valid)
    assert sum(split.values()) == pytest.approx(1.0 - ssim(render, target, valid), abs=1e-12)
    assert sum(split.values()) == pytest.approx(0.0, abs=1e-12)
    whole = ssim_loss_split(ssim_map(render, target), alpha, alpha, face)
    assert whole["person"] > 0.1  # without the mask the bottom rows' loss counts


def test_frame_scorer_scores_full_frame_only_on_real_pixels():
    """Self-reenactment crops reach past the video's edge (d3's photo crop is 41 % real video):
    the whole-frame figures count only real pixels, and ``*_padded`` keep the old whole-crop
    definition beside them."""
    from skimage import data

    from backend.eval.protocols.scoring import FrameScorer

    rgb = np.ascontiguousarray(data.astronaut()[:, :, :3])  # 512x512
    valid = np.zeros((512, 512), bool)
    valid[:400] = True
    rgb[400:] = rgb[399]  # the crop's padding: the last real row repeated
    with FrameScorer(identity=False) as scorer:
        tgt = scorer.target(rgb, valid=valid)
        render = tgt.full.copy()
        render[420:] = 0.5 * render[420:] + 0.25  # the render differs only below the video's edge
        s = scorer.score(render, tgt, alpha=tgt.portrait)
        assert math.isinf(s.psnr_full) and s.ssim_full == pytest.approx(1.0, abs=1e-9)
        assert s.psnr_full_padded < 40.0 and s.ssim_full_padded < 0.99
        assert s.alpha_iou == pytest.approx(1.0) and s.alpha_iou_padded == pytest.approx(1.0)
        assert sum(getattr(s, f"ssim_loss_{k}") for k in SSIM_REGIONS) == pytest.approx(0.0, abs=1e-9)
        # a target without a mask: the two definitions agree
        whole = scorer.score(render, scorer.target(rgb), alpha=tgt.portrait)
        assert whole.psnr_full == pytest.approx(whole.psnr_full_padded)
        assert whole.ssim_full == pytest.approx(whole.ssim_full_padded)
        assert whole.psnr_full == pytest.approx(s.psnr_full_padded)


def test_error_split_puts_each_change_in_its_region():
    """Squared error split by region: a change in the hair (above the chin, outside the face) and
    one in the body (below it) land in "head" and "body" with their exact shares; an outline that
    differs lands in "silhouette"; invalid pixels count nowhere."""
    target = np.zeros((64, 64, 3), np.float32)
    target[8:56, 8:56] = 0.5
    render = target.copy()
    render[10:14, 10:20] += 0.2        # hair, 40 px: 3 * 0.04 each
    render[50:54, 30:40] += 0.1        # body, 40 px: 3 * 0.01 each
    alpha = np.zeros((64, 64), np.float32)
    alpha[8:56, 8:56] = 1.0
    portrait = alpha.copy()
    face = np.zeros((64, 64), bool)
    face[20:40, 20:44] = True
    split = error_split(render, target, alpha, portrait, face, chin_row=44.0)
    assert set(split) == set(ERROR_REGIONS)
    assert sum(split.values()) == pytest.approx(1.0)
    assert split["head"] == pytest.approx(0.8) and split["body"] == pytest.approx(0.2)
    # the render's outline 4 px wider on the right: those pixels are silhouette, not body
    alpha2 = alpha.copy()
    alpha2[8:56, 56:60] = 1.0
    render2 = render.copy()
    render2[8:56, 56:60] = 0.5
    s2 = error_split(render2, target, alpha2, portrait, face, chin_row=44.0)
    assert s2["silhouette"] > 0.5 and s2["face"] == 0.0 and s2["background"] == 0.0
    # only the top rows valid: the body's change no longer counts
    valid = np.zeros((64, 64), bool)
    valid[:30] = True
    s3 = error_split(render, target, alpha, portrait, face, chin_row=44.0, valid=valid)
    assert s3["head"] == pytest.approx(1.0) and s3["body"] == 0.0
    assert all(np.isnan(v) for v in error_split(target, target, alpha, portrait, face, 44.0).values())


def test_ssim_loss_regions_adds_up_to_the_masked_ssim_loss_and_finds_the_region():
    """SSIM loss over error_split's five regions: the shares add up to 1 - SSIM over the valid
    pixels, and a texture change in the body below the chin lands in "body"."""
    from backend.eval.metrics.portrait import error_regions, ssim_loss_regions

    rng = np.random.default_rng(0)
    target = np.zeros((64, 64, 3))
    target[8:56, 8:56] = 0.4 + 0.2 * rng.random((48, 48, 3))
    render = target.copy()
    render[46:54, 12:40] = 0.5         # body texture flattened (below the chin at row 44)
    alpha = np.zeros((64, 64))
    alpha[8:56, 8:56] = 1.0
    face = np.zeros((64, 64), bool)
    face[20:40, 20:44] = True
    regions = error_regions(alpha, alpha, face, chin_row=44.0)
    smap = ssim_map(render, target)
    valid = np.ones((64, 64), bool)
    valid[:, 60:] = False
    split = ssim_loss_regions(smap, regions, valid)
    assert set(split) == set(ERROR_REGIONS)
    assert sum(split.values()) == pytest.approx(1.0 - ssim(render, target, mask=valid), abs=1e-12)
    assert split["body"] > 0.9 * sum(split.values()) and split["face"] == 0.0


def test_ssim_terms_multiply_to_ssim_and_tell_blur():
    """SSIM's luminance x contrast x structure equals image_metrics.ssim_map on a grey image (all
    channels alike, so the channel means commute with the product); a blurred render has a lower
    local sigma than its target and loses in contrast, a brightened one in luminance only."""
    from scipy.ndimage import gaussian_filter

    from backend.eval.metrics.portrait import ssim_terms

    rng = np.random.default_rng(1)
    grey = gaussian_filter(rng.random((48, 48)), 1.0)
    target = np.repeat(grey[..., None], 3, -1)
    blurred = np.repeat(gaussian_filter(grey, 2.0)[..., None], 3, -1)
    t = ssim_terms(blurred, target)
    np.testing.assert_allclose(t["luminance"] * t["contrast"] * t["structure"], ssim_map(blurred, target), atol=1e-9)
    assert t["sigma_pred"].mean() < 0.7 * t["sigma_target"].mean()
    assert (1 - t["contrast"]).mean() > 0.05
    bright = ssim_terms(np.clip(target + 0.2, 0, 1), target)
    assert (1 - bright["luminance"]).mean() > 0.01
    np.testing.assert_allclose(bright["contrast"], 1.0, atol=1e-6)
    np.testing.assert_allclose(bright["sigma_pred"], bright["sigma_target"], atol=1e-6)
