"""One pixel convention on the whole path from a fitted 3D point to the pixel the metric reads.

Pixel (col j, row i) covers [j, j + 1) x [i, i + 1) and has its centre at (j + 0.5, i + 0.5), the
coordinates ``Camera.project`` returns and mediapipe's normalized landmarks use (x_px = x * W).
Issue 14 looked for a constant half-pixel offset between these modules as the cause of the avatar
being read lower than the clip: each module on the path is pinned here to the same convention
(the offset turned out to be the gaze fit, tests/face/test_face_fit.py), so a future change to any
of them that shifts the image by a fraction of a pixel fails here instead of in the eval's AKD.
"""

from __future__ import annotations

import numpy as np
import pytest

from backend.avatar.imageops import bilinear
from backend.face.crop import CropInfo, apply_crop, source_camera
from backend.render.splat import splat


def _centroid(weight: np.ndarray) -> np.ndarray:
    """(x, y) continuous pixel coordinates of the weighted centre of an (H, W) image."""
    ii, jj = np.mgrid[: weight.shape[0], : weight.shape[1]]
    w = weight.astype(np.float64)
    return np.array([(w * (jj + 0.5)).sum(), (w * (ii + 0.5)).sum()]) / w.sum()


@pytest.mark.parametrize("point", [(0.013, -0.021, 0.05), (-0.03, 0.04, -0.02), (0.0, 0.0, 0.0)])
def test_splatted_gaussian_lands_where_the_camera_projects_it(point) -> None:
    """A small isotropic Gaussian's rendered footprint is centred on ``Camera.project`` of its
    mean (the source camera of every avatar, 512 px)."""
    cam = source_camera()
    p = np.asarray([point], np.float32)
    uv, _ = cam.project(p)
    res = splat(p, np.array([[1.0, 0, 0, 0]], np.float32), np.full((1, 3), 4e-4, np.float32),
                np.array([0.9], np.float32), np.ones((1, 1), np.float32), cam, backend="cpu")
    alpha = res.alpha[0].numpy()
    assert alpha.max() > 0.5
    np.testing.assert_allclose(_centroid(alpha), uv[0], atol=0.02)


@pytest.mark.parametrize("side", [128, 300, 1000])  # upsampled (linear), downsampled (area) crops
def test_crop_keeps_a_dot_where_to_crop_maps_it(side: int) -> None:
    """``apply_crop`` (the image) and ``CropInfo.to_crop`` (landmarks) agree to a few hundredths
    of a pixel: a blob at a source point lands at that point's crop coordinates."""
    H, W = 1100, 1300
    crop = CropInfo(x0=137, y0=-41, side=side, size=512, source_size=(W, H))
    centre = np.array([137 + 0.437 * side, -41 + 0.61 * side])  # continuous source px
    ii, jj = np.mgrid[:H, :W]
    sigma = 0.02 * side
    img = np.exp(-(((jj + 0.5) - centre[0]) ** 2 + ((ii + 0.5) - centre[1]) ** 2) / (2 * sigma**2))
    out = apply_crop(img.astype(np.float32), crop, border="zero")
    np.testing.assert_allclose(_centroid(out), crop.to_crop(centre[None])[0], atol=0.05)


def test_bilinear_reads_pixel_centres_exactly() -> None:
    """The colour sampler (avatar.imageops.bilinear) returns pixel (i, j) at (j + 0.5, i + 0.5)
    and the mean of two neighbours on their shared edge."""
    rng = np.random.default_rng(0)
    img = rng.random((7, 9, 3)).astype(np.float32)
    ii, jj = np.mgrid[1:6, 1:8]
    uv = np.stack([jj.ravel() + 0.5, ii.ravel() + 0.5], 1).astype(np.float32)
    np.testing.assert_allclose(bilinear(img, uv), img[ii.ravel(), jj.ravel()], atol=1e-6)
    edge = bilinear(img, np.array([[4.0, 3.5]], np.float32))[0]  # between columns 3 and 4, row 3
    np.testing.assert_allclose(edge, 0.5 * (img[3, 3] + img[3, 4]), atol=1e-6)


def test_colour_painted_at_a_projection_renders_back_there() -> None:
    """The build's path in one: a photo's dot is sampled (bilinear) at the projection of a 3D
    point, a Gaussian at that point carries it, and the render's colour-weighted centre sits on
    the dot. (Faint Gaussians: compositing is then nearly a sum, so the equal-depth grid's
    sorting order, which decides which of two opaque overlapping Gaussians shows, cannot move
    the centre.)"""
    cam = source_camera()
    pts = np.array([[x, y, 0.0] for x in np.linspace(-0.02, 0.02, 41) for y in np.linspace(-0.02, 0.02, 41)],
                   np.float32)
    uv, _ = cam.project(pts)
    dot = np.array([256.3, 243.8])
    ii, jj = np.mgrid[:512, :512]
    photo = np.exp(-(((jj + 0.5) - dot[0]) ** 2 + ((ii + 0.5) - dot[1]) ** 2) / (2 * 6.0**2))
    col = bilinear(photo.astype(np.float32), uv)[:, None]  # (N, 1)
    n = len(pts)
    res = splat(pts, np.tile([[1.0, 0, 0, 0]], (n, 1)).astype(np.float32), np.full((n, 3), 7e-4, np.float32),
                np.full(n, 0.02, np.float32), col, cam, backend="cpu")
    img = res.image[0, 0].numpy()
    np.testing.assert_allclose(_centroid(img), dot, atol=0.03)
