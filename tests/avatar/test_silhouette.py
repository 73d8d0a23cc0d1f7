"""Silhouette fit (avatar/silhouette.py): carving beyond the matte, shrinking at its edge."""

from __future__ import annotations

import numpy as np

from backend.avatar.gaussians import GaussianSet
from backend.avatar.silhouette import SilhouetteOptions, apply_fit, fit_to_matte
from backend.render import Camera, splat


def _scene():
    cam = Camera.look_at((0.0, 0.0, 1.0), width=96, height=96, fov_y_deg=30.0)
    px = 1.0 / cam.fx                                     # metres per pixel at depth 1
    # pixel positions (u, v) of: deep inside, 3 px inside the edge, outside, off-image (right)
    uv = np.array([[30.0, 48.0], [60.0 - 3.0, 48.0], [75.0, 48.0], [120.0, 48.0]])
    means = np.c_[(uv[:, 0] - cam.cx) * px, (uv[:, 1] - cam.cy) * px, np.zeros(4)]
    # camera looks down -z from +z: image x grows with world x, image y with -world y
    means[:, 1] *= -1
    scales = np.full((4, 3), 4.0 * px)                    # sigma 4 px
    gs = GaussianSet(means, np.tile([1.0, 0, 0, 0], (4, 1)), scales, np.full(4, 0.9), np.full((4, 3), 0.5))
    matte = np.zeros((96, 96), np.float32)
    matte[:, :60] = 1.0                                   # the person fills columns 0..59
    return gs, cam, matte


def test_carves_outside_shrinks_at_the_edge_keeps_the_rest():
    gs, cam, matte = _scene()
    uv, _ = cam.project(gs.means)
    np.testing.assert_allclose(uv[:3, 0], [30.0, 57.0, 75.0], atol=1e-3)
    fit = fit_to_matte(gs, cam, matte)
    assert fit.carved.tolist() == [False, False, True, False]
    assert fit.scale_factor[0] == 1.0 and fit.scale_factor[3] == 1.0
    # 3 px inside: 2 sigma must fit into 2.5 px (distance to the silhouette between pixels)
    sigma_px = 4.0 * fit.scale_factor[1]
    np.testing.assert_allclose(2.0 * sigma_px, 2.5, atol=0.3)
    out = apply_fit(gs, fit)
    assert out.opacities[2] == 0.0 and out.opacities[1] == gs.opacities[1]


def test_the_fitted_render_stays_inside_the_matte():
    gs, cam, matte = _scene()
    before = splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, cam, backend="cpu").alpha[0].numpy()
    out = apply_fit(gs, fit_to_matte(gs, cam, matte, SilhouetteOptions()))
    after = splat(out.means, out.quats, out.scales, out.opacities, out.colors, cam, backend="cpu").alpha[0].numpy()
    outside = matte < 0.5
    assert before[outside].max() > 0.5                    # the raw set spills over the edge
    assert after[outside].max() < 0.15                    # 2 sigma at the edge: exp(-2) * 0.9
    inside = matte > 0.5
    assert after[inside].sum() > 0.5 * before[inside].sum()
