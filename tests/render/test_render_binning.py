"""Tile binning (numba, one radix depth sort per camera) vs the plain-numpy twin in _reference.py:
the same Gaussians in every tile, in the same front-to-back order, ties in index order."""

from __future__ import annotations

import numpy as np
import pytest

from backend.render import _reference as ref
from backend.render._kernels import depth_order
from backend.render.rasterize import bin_gaussians


def _random_screen(seed: int, B: int, N: int, W: int, H: int):
    rng = np.random.default_rng(seed)
    means2d = np.stack([rng.uniform(-20, W + 20, (B, N)), rng.uniform(-20, H + 20, (B, N))], -1).astype(np.float32)
    extents = rng.uniform(0.2, 30.0, (B, N, 2)).astype(np.float32)
    extents[rng.random((B, N)) < 0.1] = 0.0  # culled
    depths = rng.uniform(-1.0, 5.0, (B, N)).astype(np.float32)
    depths[:, ::7] = 2.5  # many exact ties
    means2d[:, 0] = (W / 2, H / 2)  # at least one Gaussian on screen
    extents[:, 0] = 3.0
    return means2d, extents, depths


@pytest.mark.parametrize("seed, B, N, W, H, tile", [(0, 1, 500, 64, 48, 16), (1, 3, 2000, 100, 70, 16),
                                                   (2, 2, 300, 37, 53, 8), (3, 1, 1, 16, 16, 16)])
def test_bins_match_reference(seed, B, N, W, H, tile):
    means2d, extents, depths = _random_screen(seed, B, N, W, H)
    bins = bin_gaussians(means2d, extents, depths, W, H, tile)
    want = ref.bin_gaussians(means2d, extents, depths, W, H, tile)
    n_tiles = len(want[0])
    assert bins.offsets.shape == (B * n_tiles + 1,)
    for b in range(B):
        for t in range(n_tiles):
            got = bins.ids[bins.offsets[b * n_tiles + t]: bins.offsets[b * n_tiles + t + 1]]
            np.testing.assert_array_equal(got, want[b][t], err_msg=f"camera {b} tile {t}")
    assert bins.n_intersections == sum(len(x) for w in want for x in w) > 0


def test_depth_order_is_a_stable_sort_over_the_visible_entries():
    rng = np.random.default_rng(4)
    d = rng.choice(np.array([-np.inf, -3.5, -1e-30, -0.0, 0.0, 1e-30, 0.25, 7.0, 3e38, np.inf], np.float32), 4000)
    visible = rng.random(4000) < 0.8
    got = depth_order(d, visible)
    keep = np.flatnonzero(visible)
    # -0.0 sorts before +0.0 (documented); otherwise exactly numpy's stable sort
    key = d[keep].astype(np.float64) - np.where(np.signbit(d[keep]) & (d[keep] == 0), 1e-300, 0.0)
    np.testing.assert_array_equal(got, keep[np.argsort(key, kind="stable")])
    assert depth_order(d[:0], visible[:0]).shape == (0,)
