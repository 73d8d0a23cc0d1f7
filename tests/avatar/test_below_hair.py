"""The skin below the hair is filled from skin (below_hair.py), not from the hair over the ears."""

from __future__ import annotations

import numpy as np
import pytest

SKIN = np.array([0.80, 0.62, 0.52])
HAIR = np.array([0.35, 0.24, 0.12])
CLOTH = np.array([0.05, 0.05, 0.06])


@pytest.fixture(scope="module")
def head():
    from backend.avatar.synthesis import FACE_OVAL
    from backend.avatar.regions import CHIN, NOSE_TIP
    from backend.head.loader import load_head_model

    model = load_head_model(None)
    rest = model.shaped(np.zeros(model.n_shape, np.float32))
    lm = model.landmarks.points(rest, model.faces)
    return rest, lm[list(FACE_OVAL)], float(lm[NOSE_TIP, 1]), float(lm[CHIN, 1])


def _painted(rest, oval, nose_y, chin_y, scalp=HAIR, seed=0):
    """Synthetic samples: skin on the face and the jaw's sides, ``scalp`` above the face oval, hair
    hanging over the sides below the nose (|x| > 6 cm, behind the face), clothes below the chin."""
    rng = np.random.default_rng(seed)
    col = np.tile(SKIN, (len(rest), 1))
    col[rest[:, 1] > oval[:, 1].max()] = scalp
    hanging = (np.abs(rest[:, 0]) > 0.06) & (rest[:, 2] < 0.02) & (rest[:, 1] < nose_y) & (rest[:, 1] > chin_y)
    col[hanging] = HAIR
    cloth = rest[:, 1] < chin_y - 0.02
    col[cloth] = CLOTH
    return np.clip(col + rng.normal(0, 0.02, col.shape), 0, 1), hanging, cloth


def test_hair_hanging_below_the_nose_is_left_out_clothes_and_skin_stay(head):
    from backend.avatar.below_hair import hair_coloured_below

    rest, oval, nose_y, chin_y = head
    col, hanging, cloth = _painted(rest, oval, nose_y, chin_y)
    observed = np.ones(len(rest), bool)
    res = hair_coloured_below(col, observed, rest, oval, nose_y, chin_y, 0.005)
    assert hanging.sum() > 50
    assert res.excluded[hanging].mean() > 0.95
    assert not res.excluded[cloth].any()                      # a turtleneck stays data
    assert not res.excluded[rest[:, 1] >= nose_y].any()       # hair above the nose tip stays data
    skin = ~hanging & ~cloth & (rest[:, 1] <= oval[:, 1].max())
    assert res.excluded[skin].mean() < 0.01
    np.testing.assert_allclose(res.skin, SKIN, atol=0.03)
    # unobserved samples are never judged
    assert not hair_coloured_below(col, np.zeros(len(rest), bool), rest, oval, nose_y, chin_y, 0.005).excluded.any()


def test_a_bald_head_has_nothing_to_tell_apart(head):
    from backend.avatar.below_hair import hair_coloured_below

    rest, oval, nose_y, chin_y = head
    col, hanging, _ = _painted(rest, oval, nose_y, chin_y, scalp=SKIN)
    col[hanging] = SKIN   # no hair anywhere
    res = hair_coloured_below(col, np.ones(len(rest), bool), rest, oval, nose_y, chin_y, 0.005)
    assert res.skin is None and not res.excluded.any()


def test_skin_band_runs_from_the_nose_to_below_the_chin():
    from backend.avatar.below_hair import CLOTHES_FADE, skin_band

    nose, chin = 0.0, -0.08
    nape = -0.04
    y = np.array([0.01, nose, -0.02, nape, -0.06, chin, chin - 0.5 * CLOTHES_FADE * 0.04, chin - 0.02])
    np.testing.assert_allclose(skin_band(y, nose, chin), [0, 0, 0.5, 1, 1, 1, 0.5, 0], atol=1e-9)


def test_the_astronauts_jaw_side_and_neck_are_filled_with_skin(astronaut_fit):
    """The astronaut's hair hangs over her ears: the fill below them had the hair's colour (the
    jaw's side (0.61, 0.52, 0.42) and the back of the neck (0.32, 0.27, 0.21) at LOD 0 against the
    cheeks' (0.80, 0.65, 0.55)); it is the skin's now (0.78, 0.65, 0.55 and 0.69, 0.57, 0.49)."""
    from backend.avatar.below_hair import BelowHairOptions
    from backend.avatar.build import BuildOptions, analytic_head

    model, fit, photo, mask = astronaut_fit

    def regions_colour(enabled: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        opts = BuildOptions(lods=(0,))
        opts.sampling.below_hair = BelowHairOptions(enabled=enabled)
        opts.sampling.shading.enabled = False   # the fill's source, unshaded (test_skin_shading.py shades it)
        head = analytic_head(model, fit.params, fit.camera, photo, mask, [0], opts)[0]
        x, y, z = head.means.T
        jaw = (np.abs(x) > 0.045) & (z > -0.02) & (z < 0.04) & (y < -0.03) & (y > -0.08)
        nape = (z < -0.02) & (y < -0.06) & (y > -0.10)
        cheeks = (np.abs(x) < 0.04) & (np.abs(x) > 0.02) & (z > 0.06) & (y > -0.04) & (y < 0.0)
        return tuple(np.median(head.colors[m], 0) for m in (jaw, nape, cheeks))

    jaw, nape, cheeks = regions_colour(True)
    jaw0, nape0, _ = regions_colour(False)
    assert np.abs(jaw - cheeks).max() < 0.05 and np.abs(nape - cheeks).max() < 0.15
    assert np.abs(jaw0 - cheeks).max() > 0.15 and np.abs(nape0 - cheeks).max() > 0.3
