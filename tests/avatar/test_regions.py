"""The portrait's pixel split (avatar/regions.py) on a synthetic head-and-shoulders picture: a collar
that rises beside the neck above the chin is body, an ear beside the face stays head-attached."""

from __future__ import annotations

import numpy as np
import pytest

from backend.avatar.regions import BROWS, CHIN, NOSE_TIP, RegionOptions, portrait_regions

H = W = 512
SKIN = (0.80, 0.60, 0.50)
HAIR = (0.25, 0.16, 0.10)
CLOTH = (0.85, 0.85, 0.80)   # a light hood, as in the clip d19


def _ellipse(cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W] + 0.5
    return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0


def _box(x0: int, x1: int, y0: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


@pytest.fixture(scope="module")
def portrait():
    """photo (H, W, 3), mask, head mask, landmarks (478, 2) and the painted collar and ear masks."""
    rng = np.random.default_rng(0)
    # face landmarks: an ellipse of points (the hull), with the chin, nose tip and brows placed
    t = np.linspace(0, 2 * np.pi, 478, endpoint=False)
    lm = np.stack([256 + 70 * np.cos(t), 255 + 95 * np.sin(t)], 1).astype(np.float32)
    lm[CHIN] = (256, 350)
    lm[NOSE_TIP] = (256, 262)
    lm[list(BROWS)] = np.stack([np.linspace(205, 307, len(BROWS)), np.full(len(BROWS), 205.0)], 1)
    head = _ellipse(256, 235, 84, 125) | _box(218, 294, 300, H)           # skull and neck
    hair = _ellipse(256, 200, 104, 118) & ~head & (np.mgrid[0:H, 0:W][0] < 300)
    body = _box(70, 442, 380, H)
    collar = (_box(186, 218, 322, 380) | _box(294, 326, 322, 380)) & ~head  # rising beside the neck
    ear = _box(164, 176, 240, 290) & ~head & ~hair
    photo = np.zeros((H, W, 3), np.float32) + (0.3, 0.5, 0.6)               # background
    for m, c in ((body, CLOTH), (collar, CLOTH), (hair, HAIR), (head, SKIN), (ear, SKIN)):
        photo[m] = c
    photo = np.clip(photo + rng.normal(0.0, 0.02, photo.shape).astype(np.float32), 0.0, 1.0)
    mask = (head | hair | body | collar | ear).astype(np.float32)
    return photo, mask, head, lm, collar, ear, hair


def test_a_collar_beside_the_neck_is_body_and_an_ear_stays_side(portrait):
    photo, mask, head, lm, collar, ear, hair = portrait
    r = portrait_regions(photo, mask, head, lm, RegionOptions())
    free_collar = collar & ~r.head
    assert free_collar.sum() > 1000
    assert (r.body & free_collar).sum() / free_collar.sum() > 0.9
    assert not (r.side & free_collar).any() or (r.side & free_collar).sum() / free_collar.sum() < 0.05
    free_ear = ear & ~r.head
    assert (r.side & free_ear).sum() / free_ear.sum() > 0.9               # skin-coloured: head-attached
    assert (r.hair & hair & ~r.head).sum() / (hair & ~r.head).sum() > 0.95
    # the regions stay a partition of the person outside the head
    free = r.person & ~r.head
    assert not (r.hair & r.body).any() and not (r.side & r.body).any() and not (r.hair & r.side).any()
    assert np.array_equal(r.hair | r.body | r.side, free)


def test_without_the_option_the_collar_rides_with_the_head(portrait):
    photo, mask, head, lm, collar, ear, _ = portrait
    r = portrait_regions(photo, mask, head, lm, RegionOptions(collar_to_body=False))
    free_collar = collar & ~r.head & (np.mgrid[0:H, 0:W][0] + 0.5 < r.chin_row)
    assert (r.side & free_collar).sum() / free_collar.sum() > 0.9


def test_a_cloth_coloured_patch_away_from_the_body_stays_side(portrait):
    """Clothes-coloured pixels beside the head that do not reach the body (a hat's brim, a
    headphone) are not torso: they keep riding with the head."""
    photo, mask, head, lm, _, _, hair = portrait
    patch = _box(150, 166, 300, 330) & ~head & ~hair
    photo, mask = photo.copy(), mask.copy()
    photo[patch] = CLOTH
    mask[patch] = 1.0
    r = portrait_regions(photo, mask, head, lm, RegionOptions())
    assert (r.side & patch).sum() / patch.sum() > 0.9


def test_a_bald_head_s_collar_is_body_too(portrait):
    """Without hair there is no hair colour model: every sure-body cluster counts as clothes."""
    photo, mask, head, lm, collar, ear, hair = portrait
    photo, mask = photo.copy(), mask.copy()
    photo[hair & ~head] = (0.3, 0.5, 0.6)
    mask[hair & ~head] = 0.0
    r = portrait_regions(photo, mask, head, lm, RegionOptions())
    assert not r.hair.any()
    free_collar = collar & ~r.head
    assert (r.body & free_collar).sum() / free_collar.sum() > 0.9
    free_ear = ear & ~r.head
    assert (r.side & free_ear).sum() / free_ear.sum() > 0.9


def test_a_shirt_over_the_model_s_neck_is_clothes_and_the_neck_s_skin_is_not(portrait):
    """The head model's neck runs on below the collar (the fixture's neck box reaches the crop's
    bottom), so a shirt's front lies over it: those head pixels are ``neck_clothes`` (the torso
    carries them); the neck's skin above the collar and the face are not."""
    photo, mask, head, lm, _, _, _ = portrait
    rows = np.mgrid[0:H, 0:W][0]
    shirt = head & (rows >= 380)
    skin_neck = head & (rows >= 356) & (rows < 374)    # between the chin (350) and the collar (380)
    photo = photo.copy()
    photo[shirt] = CLOTH
    r = portrait_regions(photo, mask, head, lm, RegionOptions())
    assert r.neck_clothes is not None
    assert (r.neck_clothes & shirt).sum() / shirt.sum() > 0.9
    assert not (r.neck_clothes & skin_neck).any()
    assert not (r.neck_clothes & (rows < r.chin_row)).any()


def test_a_skin_neck_to_the_crop_s_bottom_carries_no_clothes(portrait):
    """A bare neck and chest (the fixture as painted: skin down the whole neck box) stay head."""
    photo, mask, head, lm, _, _, _ = portrait
    r = portrait_regions(photo, mask, head, lm, RegionOptions())
    assert r.neck_clothes is None or not r.neck_clothes.any()
    r = portrait_regions(photo, mask, head, lm, RegionOptions(collar_to_body=False))
    assert r.neck_clothes is None


def test_a_shirt_and_tie_between_dark_lapels_are_clothes_too(portrait):
    """A suit's shirt front and tie lie on the model's neck column only: the sure-body clusters
    (outside the head) see the dark jacket alone. The chest's pixels under the column that are not
    skin add their own clothes clusters (``RegionOptions.chest_not_skin``), so shirt and tie go to
    the torso as well; with the option off (an infinite distance) they stayed on the head."""
    photo, mask, head, lm, collar, _, hair = portrait
    rows = np.mgrid[0:H, 0:W][0]
    cols = np.mgrid[0:H, 0:W][1]
    suit = (0.10, 0.11, 0.16)
    photo = photo.copy()
    for m in (_box(70, 442, 380, H) & ~head, collar):
        photo[m] = suit
    shirt = head & (rows >= 390)
    tie = shirt & (np.abs(cols - 256) < 10)
    photo[shirt] = (0.95, 0.95, 0.96)
    photo[tie] = (0.15, 0.25, 0.65)
    r = portrait_regions(photo, mask, head, lm, RegionOptions())
    assert (r.neck_clothes & shirt & ~tie).sum() / (shirt & ~tie).sum() > 0.9
    assert (r.neck_clothes & tie).sum() / tie.sum() > 0.8
    skin_neck = head & (rows >= 356) & (rows < 384)
    assert not (r.neck_clothes & skin_neck).any()
    off = portrait_regions(photo, mask, head, lm, RegionOptions(chest_not_skin=np.inf))
    assert (off.neck_clothes & shirt & ~tie).sum() / (shirt & ~tie).sum() < 0.1


def test_a_bare_chest_below_the_neck_is_the_torso_s_and_the_neck_is_not(portrait):
    """Bare shoulders from row 420 down (a low neckline): the skin on the head model's neck column
    there is ``bare_chest``, down to the crop's bottom; the neck above, beside which the body is
    clothes, is not; a clothed body (the fixture as painted) has no bare chest at all."""
    photo, mask, head, lm, _, _, _ = portrait
    assert portrait_regions(photo, mask, head, lm, RegionOptions()).bare_chest is None
    rows = np.mgrid[0:H, 0:W][0]
    photo = photo.copy()
    shoulders = _box(70, 442, 420, H) & ~head
    photo[shoulders] = np.asarray(SKIN) + 0.02 * np.random.default_rng(1).normal(size=(int(shoulders.sum()), 3))
    r = portrait_regions(photo, mask, head, lm, RegionOptions())
    assert r.bare_chest is not None
    chest = head & (rows >= 424)
    assert (r.bare_chest & chest).sum() / chest.sum() > 0.95
    assert not (r.bare_chest & (rows < 416)).any()
