"""Camera conventions: OpenCV axes, look_at / orbit helpers, projection, validation."""

from __future__ import annotations

import numpy as np
import pytest

from backend.render import Camera


def test_look_at_axes_and_projection(small_camera: Camera) -> None:
    cam = small_camera
    uv, z = cam.project(np.array([[0, 0, 0], [0.05, 0, 0], [0, 0.05, 0], [0, 0, 0.1]], np.float32))
    # the target lands on the principal point, at the eye distance
    np.testing.assert_allclose(uv[0], [32.0, 24.0], atol=1e-4)
    np.testing.assert_allclose(z[0], 0.6, atol=1e-6)
    assert uv[1, 0] > 32.0 and abs(uv[1, 1] - 24.0) < 1e-4  # world +X -> image right
    assert uv[2, 1] < 24.0 and abs(uv[2, 0] - 32.0) < 1e-4  # world +Y -> image up (camera y down)
    np.testing.assert_allclose(z[3], 0.5, atol=1e-6)  # +Z is towards the camera
    # pinhole formula with the focal length from the field of view
    f = 0.5 * 48 / np.tan(np.radians(10.0))
    np.testing.assert_allclose(cam.fy, f, rtol=1e-6)
    np.testing.assert_allclose(uv[1, 0], 32.0 + f * 0.05 / 0.6, rtol=1e-5)
    np.testing.assert_allclose(cam.center, [0, 0, 0.6], atol=1e-6)
    np.testing.assert_allclose(cam.fov_y_deg, 20.0, atol=1e-4)


def test_project_behind_camera_is_nan(small_camera: Camera) -> None:
    uv, z = small_camera.project(np.array([[0, 0, 1.0], [0, 0, 0.6]], np.float32))
    assert z[0] < 0 and np.isnan(uv[0]).all()
    assert np.isnan(uv[1]).all()  # exactly at the camera centre (z = 0)


def test_orbit_yaw(small_camera: Camera) -> None:
    cam90 = small_camera.orbit_yaw(90.0)
    np.testing.assert_allclose(cam90.center, [0.6, 0, 0], atol=1e-5)  # +Z camera moves to +X
    uv, z = cam90.project(np.zeros((1, 3), np.float32))
    np.testing.assert_allclose(uv[0], [32.0, 24.0], atol=1e-4)  # still looks at the pivot
    back = cam90.orbit_yaw(-90.0)
    np.testing.assert_allclose(back.viewmat, small_camera.viewmat, atol=1e-5)
    # orbiting about a pivot keeps the distance to it
    piv = np.array([0.0, 0.02, -0.05])
    c = small_camera.orbit_yaw(37.0, pivot=piv)
    np.testing.assert_allclose(
        np.linalg.norm(c.center - piv), np.linalg.norm(small_camera.center - piv), rtol=1e-5
    )


def test_resized_scales_intrinsics(small_camera: Camera) -> None:
    big = small_camera.resized(128, 96)
    pts = np.array([[0.03, -0.02, 0.01]], np.float32)
    np.testing.assert_allclose(big.project(pts)[0], 2.0 * small_camera.project(pts)[0], rtol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(K=np.eye(2), viewmat=np.eye(4), width=4, height=4), r"\(3, 3\)"),
        (dict(K=np.eye(3), viewmat=np.diag([1, 1, -1, 1]), width=4, height=4), "rotation"),
        (dict(K=np.eye(3), viewmat=np.eye(4), width=0, height=4), "positive"),
        (dict(K=np.diag([-1.0, 1, 1]), viewmat=np.eye(4), width=4, height=4), "focal"),
        (dict(K=np.eye(3) * np.nan, viewmat=np.eye(4), width=4, height=4), "finite"),
    ],
)
def test_camera_validation(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        Camera(**kwargs)


def test_look_at_rejects_degenerate() -> None:
    with pytest.raises(ValueError, match="parallel"):
        Camera.look_at((0, 1, 0), (0, 0, 0), up=(0, 1, 0))
    with pytest.raises(ValueError):
        Camera.look_at((0, 0, 0), (0, 0, 0))
