"""The torso's sides continued beyond what the photo sees (backend/avatar/torso_texture.py): the
seen band kept, a feature leaving the band at a slant not mirrored, a level stripe continued
level, the fabric's grain kept, and the left side the right one's mirror image."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

from backend.avatar.torso_texture import side_map

H, W, U_END, WIDTH, FIRST = 200, 300, 200.0, 60.0, 20


def _map(img: np.ndarray, outward: float = 1.0, u_end: float = U_END, pitch: float = 1.5):
    rows_ok = np.arange(H) >= FIRST
    return side_map(img.astype(np.float32), rows_ok, np.full(H, u_end), outward, np.full(H, WIDTH),
                    np.full(H, 150.0), float(FIRST), pitch)


def _grain(seed: int, amplitude: float) -> np.ndarray:
    """(H, W, 3) light fabric: 0.75 grey with a fine random grain of about ``amplitude`` std-dev."""
    noise = gaussian_filter(np.random.default_rng(seed).normal(size=(H, W)), 1.0)
    return np.repeat((0.75 + amplitude * noise / noise.std())[..., None], 3, axis=2)


def test_the_seen_band_is_the_photo_s_and_the_left_side_mirrors_the_right():
    img = _grain(0, 0.05)
    img[..., 0] += np.linspace(0, 0.1, W)[None]               # a horizontal gradient tells the sides apart
    m = _map(img)
    rows = np.arange(60, 180) + 0.5
    for k in (2.0, 10.0, 30.0):                                 # pixels inside the end point
        got = m.sample(rows, np.full(len(rows), -k))
        want = img[rows.astype(int), int(U_END - k)]
        assert np.abs(got - want).mean() < 0.02, k
    left = _map(img[:, ::-1], outward=-1.0, u_end=W - U_END)
    np.testing.assert_allclose(left.colors, m.colors, atol=1e-5)
    assert m.colors.min() >= 0.0 and m.colors.max() <= 1.0


def test_a_slanted_line_is_not_mirrored_beyond_the_side():
    """A dark line leaving the band at 45 deg (the sample's neck ring): reflection through the band
    drew its mirror image beyond the end point, an X on the shoulder. The continuation keeps the
    line's rows light there (measured: mean 0.74 on a 0.75 background, the line 0.10; reflection put
    the line itself there, 0.10)."""
    img = _grain(1, 0.02)
    r, c = np.mgrid[0:H, 0:W]
    line = (np.abs((U_END - c) - (120 - r)) <= 2) & (c <= U_END)   # meets the end point at row 120
    img[line] = 0.1
    m = _map(img)
    rows = np.arange(60, 110)                                     # the line 10-60 px inside the end
    mirrored = m.sample(rows + 0.5, (120 - rows).astype(float))   # where reflection put it
    assert mirrored.mean() > 0.6, mirrored.mean()
    inside = m.sample(rows + 0.5, -(120 - rows).astype(float))    # the line itself, in the band
    assert inside.mean() < 0.35, inside.mean()


def test_a_level_stripe_runs_on_level_and_the_grain_is_kept():
    """A dark stripe across the band (a ring, a yoke) runs on round the side at its height, and the
    rest keeps a grain like the band's (the level continuation alone is flat: std-dev 0). Measured: the
    stripe 0.15 beyond the side as in the band; the light rows' mean 0.752, their std-dev 0.022 against
    the band's 0.038."""
    img = _grain(2, 0.04)
    img[100:116] = 0.15
    m = _map(img)
    beyond = np.linspace(5.0, 140.0, 60)
    stripe = np.stack([m.sample(np.full(60, v + 0.5), beyond) for v in range(104, 112)])
    assert stripe.mean() < 0.35, stripe.mean()
    light_rows = list(range(40, 90)) + list(range(130, 190))
    light = np.stack([m.sample(np.full(60, v + 0.5), beyond) for v in light_rows])[..., 0]
    assert abs(light.mean() - 0.75) < 0.05, light.mean()
    band_grain = img[40:90, int(U_END - WIDTH) + 5:int(U_END), 0].std()
    assert light.std() > 0.5 * band_grain, (light.std(), band_grain)


def test_a_one_row_torso_and_odd_shapes_still_give_colours():
    """A torso of one image row (a collar's top) on a map whose rows span 3 image rows reads that
    row's band; random shapes, bands off the image and empty rows give finite colours in [0, 1]."""
    img = np.full((30, 40, 3), 0.2, np.float32)
    img[12, :20] = 0.6
    one = np.zeros(30, bool)
    one[12] = True                                             # not the centre row of the map's first row
    m = side_map(img, one, np.full(30, 20.0), 1.0, np.full(30, 8.0), np.full(30, 20.0), 12.0, 3.0)
    np.testing.assert_allclose(m.sample(np.array([12.5]), np.array([5.0])), [[0.6, 0.6, 0.6]], atol=1e-5)
    rng = np.random.default_rng(3)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(4, 80, 2))
        rows = rng.random(h) < rng.random()
        m = side_map(rng.random((h, w, 3)).astype(np.float32), rows, rng.uniform(-10, w + 10, h),
                     float(rng.choice([-1.0, 1.0])), rng.uniform(0, 40, h), rng.uniform(0, 150, h),
                     float(rng.integers(0, h)), float(rng.uniform(0.5, 5.0)))
        c = m.sample(rng.uniform(0, h, 40), rng.uniform(-20, 200, 40))
        assert np.isfinite(c).all() and c.min() >= 0.0 and c.max() <= 1.0
