"""Whole-portrait refinement on the astronaut (issue 14): the source view matches the cut-out person
(the photo over black by the portrait matte, as the eval scores it) better after refinement, no
halo of background colour rings the silhouette, and the synthesized back of the head (yaw 180) keeps
its colours."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from backend.avatar.build import BuildOptions, build_avatar, refine_avatar, render_source
from backend.avatar.outputs import head_pivot
from backend.eval.metrics.portrait import alpha_iou
from backend.image_metrics import psnr
from backend.progress import Progress

# Measured on the astronaut at LOD 0 (stand-in head model), 40 refinement steps (2026-12-01, Adam
# alone): psnr_full 26.30 -> 32.97 dB, halo share 0.00167, person covered 0.9977, alpha IoU 0.9942, back
# of the head's mean colour change 0.0019. With the fast path (photo_refine_options, 2026-12-03):
# 26.55 -> 34.35 dB, 0.00053, 0.9991, 0.9980, back 0.0031 (0.0154 before its visible-share colour
# trust). With that hold only behind the head's middle (refine.behind_head_middle, 2026-12-03): 26.55 ->
# 34.53 dB, 0.00050, 0.9991, 0.9981, back 0.0031. Floors set a little below, ceilings a little above:
REFINE_STEPS = 40
MIN_PSNR_FULL_GAIN_DB = 5.0     # psnr_full after - before
MAX_HALO_SHARE = 0.003          # share of pixels with render alpha > 0.5 where the matte is < 0.5
MIN_ALPHA_IOU = 0.98            # source view, render alpha vs the portrait matte
MAX_BACK_CHANGE = 0.005         # mean |colour change| over the yaw-180 render's covered pixels


@pytest.fixture(scope="module")
def refined():
    built = build_avatar(None, BuildOptions(lods=(0,), refine=False, metrics=False))
    before = copy.deepcopy(built.avatar)
    after = built.avatar
    photo = built.observation.image512.astype(np.float32) / 255.0
    mask = np.asarray(built.observation.mask, np.float32)
    steps = refine_avatar(after, built.model, photo, mask, [0],
                          BuildOptions(lods=(0,), refine_seconds=1e4, refine_steps=REFINE_STEPS), Progress())
    assert steps[0] == REFINE_STEPS
    return dict(model=built.model, before=before, after=after, photo=photo, mask=mask)


def _source(avatar, model, camera=None):
    img, alpha = render_source(avatar, model, 0, camera=camera)  # over black
    return img, alpha


def test_refinement_improves_the_whole_portrait(refined):
    d = refined
    target = d["photo"] * d["mask"][..., None]           # the cut-out person over black (eval's full)
    img0, _ = _source(d["before"], d["model"])
    img1, _ = _source(d["after"], d["model"])
    p0, p1 = psnr(img0, target), psnr(img1, target)
    print(f"psnr_full before {p0:.2f} after {p1:.2f} dB")
    assert p1 >= p0 + MIN_PSNR_FULL_GAIN_DB, (p0, p1)


def test_no_halo_beyond_the_matte(refined):
    d = refined
    _, alpha = _source(d["after"], d["model"])
    halo = (alpha > 0.5) & (d["mask"] < 0.5)
    iou = alpha_iou(alpha, d["mask"])
    print(f"halo share {halo.mean():.5f}; person covered {(alpha[d['mask'] > 0.5] > 0.5).mean():.4f}; "
          f"alpha IoU {iou:.4f}")
    assert halo.mean() <= MAX_HALO_SHARE, halo.mean()
    # and the render still covers the person
    person = d["mask"] > 0.5
    assert (alpha[person] > 0.5).mean() > 0.99
    assert iou >= MIN_ALPHA_IOU


def test_refinement_keeps_the_synthesized_back_of_the_head(refined):
    d = refined
    cam = d["before"].camera.orbit_yaw(180.0, pivot=head_pivot(d["before"], d["model"]))
    img0, a0 = _source(d["before"], d["model"], cam)
    img1, a1 = _source(d["after"], d["model"], cam)
    seen = (a0 > 0.5) & (a1 > 0.5)
    print(f"back of head: covered {seen.mean():.3f}, mean colour change {np.abs(img1 - img0)[seen].mean():.4f}")
    assert seen.mean() > 0.1                                # the back of the head fills the view
    assert np.abs(img1 - img0)[seen].mean() <= MAX_BACK_CHANGE
