"""The crop's padding (where the head-and-shoulders crop reaches past the photo's edges) continues
the photo's own texture: texture.continue_padding against a plain reference, and a build from a
photo cut off at the chest, whose torso below the cut shows mirrored clothes, not streaks."""

from __future__ import annotations

import numpy as np
import pytest

from backend.avatar.texture import continue_padding
from tests.avatar.test_portrait_parts import _continue_rows_reference

# Vertical over horizontal mean |gradient| of the source-view render on the torso below the photo's
# cut, as a share of the same ratio on the torso's real pixels (LOD 0, unrefined). Astronaut cut at
# row 220: 0.86; the crop's padding as it is made (the edge row repeated) gave 0.06 (streaks down
# the columns: almost no vertical change).
STREAK_FLOOR = 0.5


def _padding_reference(image, real, source):
    """continue_padding's rule with the plain per-pixel loops of the rows' reference: rows beside
    the photo first, then the columns above and below it."""
    out = image.astype(np.float32).copy()
    src = source & real
    in_rows = real.any(1)
    rows_done = _continue_rows_reference(out, src)
    side = ~real & in_rows[:, None] & src.any(1)[:, None]
    out[side] = rows_done[side]
    src_rows = source & in_rows[:, None] & (real | side)
    cols_done = np.swapaxes(_continue_rows_reference(np.swapaxes(out, 0, 1), src_rows.T), 0, 1)
    ends = ~real & ~in_rows[:, None] & src_rows.any(0)[None, :]
    out[ends] = cols_done[ends]
    return out


def test_continue_padding_matches_reference():
    rng = np.random.default_rng(5)
    img = rng.random((37, 29, 3)).astype(np.float32)
    real = np.zeros((37, 29), bool)
    real[6:25, 4:22] = True                      # a photo inside the crop: padding on all four sides
    source = rng.random((37, 29)) < 0.6
    source[10] = False                           # a real row without source: its side padding stays
    out = continue_padding(img, real, source)
    np.testing.assert_allclose(out, _padding_reference(img, real, source), atol=1e-6)
    np.testing.assert_array_equal(out[real], img[real])
    np.testing.assert_array_equal(out[10, :4], img[10, :4])


def test_padding_below_the_photo_mirrors_its_last_rows():
    rng = np.random.default_rng(1)
    img = rng.random((40, 16, 3)).astype(np.float32)
    real = np.zeros((40, 16), bool)
    real[:30] = True
    img[30:] = img[29]                           # the crop's padding: the edge row repeated
    out = continue_padding(img, real, np.ones_like(real))
    np.testing.assert_allclose(out[30:], img[28:18:-1], atol=1e-6)  # row 29 + d takes row 29 - d
    assert np.abs(np.diff(out[28:], axis=0)).mean() > 0.2  # no streaks: the rows differ


def test_nothing_changes_without_padding_or_source():
    img = np.random.default_rng(2).random((8, 8, 3)).astype(np.float32)
    real = np.ones((8, 8), bool)
    np.testing.assert_array_equal(continue_padding(img, real, real), img)
    real[6:] = False
    np.testing.assert_array_equal(continue_padding(img, real, np.zeros_like(real)), img)


def _vertical_share(img: np.ndarray, sel: np.ndarray) -> float:
    g = img.mean(-1)
    gy = np.abs(np.diff(g, axis=0))[:, :-1]
    gx = np.abs(np.diff(g, axis=1))[:-1, :]
    s = sel[:-1, :-1] & sel[1:, :-1] & sel[:-1, 1:]
    return float(gy[s].mean() / max(gx[s].mean(), 1e-9))


@pytest.fixture(scope="module")
def cut_astronaut():
    """The astronaut cut off at row 220 (the collar ring): the crop reaches below the cut."""
    from skimage.data import astronaut

    from backend.avatar.build import BuildOptions, build_avatar, render_source

    res = build_avatar(astronaut()[:220], BuildOptions(lods=(0,), refine=False, metrics=False))
    img, alpha = render_source(res.avatar, res.model, 0, backend="cpu")
    return res, img, alpha


def test_a_torso_cut_off_by_the_photo_continues_its_texture(cut_astronaut):
    from backend.avatar.regions import CHIN
    from backend.face.crop import source_coverage

    res, img, alpha = cut_astronaut
    obs = res.observation
    real = source_coverage(obs.crop)
    below = (np.arange(512) + 0.5 > obs.landmarks[CHIN, 1] + 20)[:, None]
    torso = (alpha > 0.9) & below
    padded, seen = torso & ~real, torso & real
    assert padded.sum() > 5000 and seen.sum() > 5000
    share = _vertical_share(img, padded) / _vertical_share(img, seen)
    print(f"torso below the cut: vertical/horizontal gradient {share:.2f} of the real torso's")
    assert share >= STREAK_FLOOR


def test_the_padding_takes_no_face_colour(cut_astronaut):
    """The continuation's source lies below the chin: the face above never reaches the torso."""
    from backend.avatar.build import padding_continued
    from backend.avatar.imageops import to_float
    from backend.avatar.regions import CHIN
    from backend.face.crop import source_coverage

    obs = cut_astronaut[0].observation
    photo = to_float(obs.image512).copy()
    chin = int(np.ceil(obs.landmarks[CHIN, 1]))
    photo[:chin] = (1.0, 0.0, 1.0)               # magenta above the chin
    mask = np.asarray(obs.refine_mask(), np.float32)
    out = padding_continued(photo, obs, mask)
    pad = ~source_coverage(obs.crop) & (mask > 0.0) & (np.arange(512)[:, None] > chin)
    assert pad.sum() > 1000
    assert not np.any(np.linalg.norm(out[pad] - (1.0, 0.0, 1.0), axis=1) < 0.1)
    np.testing.assert_array_equal(out[:chin], photo[:chin])  # above the chin: the crop as it was
