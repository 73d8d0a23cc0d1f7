"""Shared fixtures for the render tests: small cameras and scenes (OpenCV axes, see camera.py)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.render import Camera


@pytest.fixture
def small_camera() -> Camera:
    """64x48 camera at (0, 0, 0.6) looking at the origin, 20 deg vertical field of view."""
    return Camera.look_at((0.0, 0.0, 0.6), (0.0, 0.0, 0.0), width=64, height=48, fov_y_deg=20.0)


def uv_sphere(radius: float = 0.1, n_lon: int = 32, n_lat: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Closed UV sphere around the origin: verts (V, 3) float64, faces (F, 3) int64 (poles merged)."""
    verts = [(0.0, radius, 0.0)]
    for i in range(1, n_lat):
        th = np.pi * i / n_lat
        for j in range(n_lon):
            ph = 2 * np.pi * j / n_lon
            verts.append((radius * np.sin(th) * np.cos(ph), radius * np.cos(th), radius * np.sin(th) * np.sin(ph)))
    verts.append((0.0, -radius, 0.0))
    v = np.array(verts)
    faces = []
    ring = lambda i, j: 1 + (i - 1) * n_lon + (j % n_lon)  # noqa: E731
    for j in range(n_lon):
        faces.append((0, ring(1, j + 1), ring(1, j)))
        faces.append((len(v) - 1, ring(n_lat - 1, j), ring(n_lat - 1, j + 1)))
    for i in range(1, n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = ring(i, j), ring(i, j + 1), ring(i + 1, j), ring(i + 1, j + 1)
            faces += [(a, b, c), (b, d, c)]
    return v, np.array(faces, np.int64)


@pytest.fixture
def sphere_mesh() -> tuple[np.ndarray, np.ndarray]:
    """UV sphere of radius 0.1 m at the origin."""
    return uv_sphere()


@pytest.fixture
def fine_sphere_mesh() -> tuple[np.ndarray, np.ndarray]:
    """Finer UV sphere (48 x 24) of radius 0.1 m at the origin."""
    return uv_sphere(radius=0.1, n_lon=48, n_lat=24)
