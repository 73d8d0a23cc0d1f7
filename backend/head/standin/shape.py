"""The stand-in's rest surface: a smooth signed-distance head, sampled as a radial function.

Primitives (metres, head frame) are combined with smooth unions; every large primitive contains
the ray centre ``CENTER`` so the head is star-shaped from it and one radius per direction
describes the surface. The face is then bent through the mediapipe landmark template with a
compactly supported RBF on the direction sphere (see :func:`radius`).
"""

from __future__ import annotations

import numpy as np

CENTER = np.array([0.0, 0.015, -0.012])  # ray origin inside the skull


def _ellipsoid(p: np.ndarray, c, r) -> np.ndarray:
    # approximate SDF (scaled by the smallest radius): exact enough for smooth blending
    q = (p - np.asarray(c)) / np.asarray(r)
    return (np.sqrt(np.einsum("...k,...k->...", q, q)) - 1.0) * np.min(r)


def _capsule_y(p: np.ndarray, x: float, z: float, y0: float, y1: float, rad: float) -> np.ndarray:
    y = np.clip(p[..., 1], y0, y1)
    d = p - np.stack([np.full_like(y, x), y, np.full_like(y, z)], -1)
    return np.linalg.norm(d, axis=-1) - rad


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b * (1 - h) + a * h - k * h * (1 - h)


def head_sdf(p: np.ndarray) -> np.ndarray:
    """Signed distance (approx.) of the procedural head+neck at points (..., 3); < 0 inside."""
    d = _ellipsoid(p, (0.0, 0.040, -0.014), (0.076, 0.098, 0.102))            # cranium
    d = _smin(d, _ellipsoid(p, (0.0, 0.055, 0.020), (0.064, 0.052, 0.074)), 0.02)    # forehead
    d = _smin(d, _ellipsoid(p, (0.0, 0.000, 0.028), (0.068, 0.066, 0.070)), 0.02)    # mid face
    d = _smin(d, _ellipsoid(p, (0.0, -0.042, 0.030), (0.056, 0.046, 0.062)), 0.02)   # jaw
    d = _smin(d, _ellipsoid(p, (0.0, -0.066, 0.066), (0.022, 0.016, 0.024)), 0.015)  # chin
    d = _smin(d, _capsule_y(p, 0.0, -0.022, -0.20, -0.02, 0.056), 0.03)             # neck
    d = _smin(d, _ellipsoid(p, (0.0, 0.005, 0.100), (0.011, 0.028, 0.016)), 0.008)   # nose
    for s in (-1.0, 1.0):                                                           # ears
        d = _smin(d, _ellipsoid(p, (s * 0.075, 0.012, -0.010), (0.011, 0.030, 0.018)), 0.006)
    return d


def ray_radius(dirs: np.ndarray, sdf=head_sdf, r_max: float = 0.32, steps: int = 64,
               refine: int = 22) -> np.ndarray:
    """Distance from CENTER to the outermost surface crossing along unit ``dirs`` (N,3) -> (N,)."""
    t = np.linspace(0.0, r_max, steps)
    pts = CENTER + dirs[:, None, :] * t[None, :, None]
    inside = sdf(pts) < 0
    last = steps - 1 - np.argmax(inside[:, ::-1], axis=1)  # last inside sample
    lo, hi = t[last], t[np.minimum(last + 1, steps - 1)]
    for _ in range(refine):  # bisection between the last inside and the next sample
        mid = 0.5 * (lo + hi)
        ins = sdf(CENTER + dirs * mid[:, None]) < 0
        lo, hi = np.where(ins, mid, lo), np.where(ins, hi, mid)
    return 0.5 * (lo + hi)


def wendland(r: np.ndarray, support: float) -> np.ndarray:
    """Wendland C2 kernel (positive definite in 3D), zero beyond ``support``."""
    q = np.clip(r / support, 0.0, 1.0)
    return (1 - q) ** 4 * (4 * q + 1)


class RadialFace:
    """Radius function r(dir) = procedural head + RBF correction through landmark points.

    Two scales: a wide, regularised fit takes the smooth difference between the procedural face
    and the landmarks (so no crease forms where the correction ends), then a narrow exact fit puts
    the surface through every landmark."""

    SCALES = ((1.0, 3e-2), (0.3, 1e-7))  # (support on the unit direction sphere, ridge)

    def __init__(self, targets: np.ndarray) -> None:
        off = targets - CENTER
        self.dirs = off / np.linalg.norm(off, axis=1, keepdims=True)
        resid = np.linalg.norm(off, axis=1) - ray_radius(self.dirs)
        dd = np.linalg.norm(self.dirs[:, None] - self.dirs[None], axis=-1)
        self.weights = []
        for support, ridge in self.SCALES:
            K = wendland(dd, support)
            w = np.linalg.solve(K + ridge * np.eye(len(K)), resid)
            resid = resid - K @ w
            self.weights.append(w)

    def correction(self, dirs: np.ndarray) -> np.ndarray:
        # |a - b| on the unit sphere from the dot product: no (N, 468, 3) temporary
        d = np.sqrt(np.clip(2.0 - 2.0 * dirs @ self.dirs.T, 0.0, None))
        return sum(wendland(d, s) @ w for (s, _), w in zip(self.SCALES, self.weights))

    def __call__(self, dirs: np.ndarray) -> np.ndarray:
        return ray_radius(dirs) + self.correction(dirs)
