"""Synthetic Gaussian scenes for tests, benchmarks and the GPU check (deterministic per seed).

Convention: the scene sits around the world origin (the head's place, see docs/CONTRACTS.md) and
``default_camera`` looks at it from +Z (``Camera.look_at((0, 0, 0.6), (0, 0, 0))``, 20 deg vertical
field of view: a 0.2 m head fills most of the frame).

- ``random_scene``: Gaussians uniformly in a box in front of the camera (random rotations,
  log-uniform scales, uniform opacities): exercises every code path.
- ``head_scene``: a head-like workload for benchmarks: N Gaussians on an ellipsoid shell (about
  0.16 x 0.2 x 0.18 m), sized to tile the surface (scale ~ surface spacing, flattened along the
  normal) like an avatar's LOD; opacities 0.5-1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..rotations import matrix_to_quat
from .camera import Camera


@dataclass
class GaussianScene:
    """means (N, 3), quats (N, 4) wxyz unit, scales (N, 3) metres, opacities (N,), features (N, C)."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    features: torch.Tensor

    def requires_grad_(self) -> "GaussianScene":
        for t in (self.means, self.quats, self.scales, self.opacities, self.features):
            t.requires_grad_(True)
        return self


def default_camera(width: int = 512, height: int = 512, distance: float = 0.6, fov_y_deg: float = 20.0) -> Camera:
    return Camera.look_at((0.0, 0.0, distance), (0.0, 0.0, 0.0), width=width, height=height, fov_y_deg=fov_y_deg)


def _random_quats(rng: np.random.Generator, n: int) -> np.ndarray:
    q = rng.normal(size=(n, 4))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def random_scene(
    n: int,
    channels: int = 3,
    seed: int = 0,
    extent: float = 0.12,
    scale_range: tuple[float, float] = (0.002, 0.02),
    opacity_range: tuple[float, float] = (0.05, 0.99),
) -> GaussianScene:
    """n Gaussians uniformly in [-extent, extent]^3 around the origin."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(-extent, extent, size=(n, 3)).astype(np.float32)
    lo, hi = np.log(scale_range[0]), np.log(scale_range[1])
    scales = np.exp(rng.uniform(lo, hi, size=(n, 3))).astype(np.float32)
    opac = rng.uniform(*opacity_range, size=n).astype(np.float32)
    feats = rng.uniform(0.0, 1.0, size=(n, channels)).astype(np.float32)
    return GaussianScene(
        torch.from_numpy(means), torch.from_numpy(_random_quats(rng, n)), torch.from_numpy(scales),
        torch.from_numpy(opac), torch.from_numpy(feats),
    )  # fmt: skip


def head_scene(n: int, channels: int = 3, seed: int = 0) -> GaussianScene:
    """n surface Gaussians on a head-sized ellipsoid shell (see module docstring)."""
    rng = np.random.default_rng(seed)
    radii = np.array([0.08, 0.10, 0.09])
    d = rng.normal(size=(n, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    means = d * radii * (1.0 + rng.normal(scale=0.01, size=(n, 1)))
    normal = d / radii**2
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    # rotation whose local z is the surface normal (flat disc-like splats, like a fitted avatar)
    helper = np.where(np.abs(normal[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    t1 = np.cross(normal, helper)
    t1 /= np.linalg.norm(t1, axis=1, keepdims=True)
    t2 = np.cross(normal, t1)
    Rm = np.stack([t1, t2, normal], axis=2)  # columns = local axes
    quats = matrix_to_quat(Rm)
    area = 4 * np.pi * (np.prod(radii) ** (2 / 3))  # close to the ellipsoid's area
    spacing = np.sqrt(area / max(n, 1))
    s_t = spacing * rng.uniform(0.6, 1.0, size=(n, 2))
    scales = np.concatenate([s_t, 0.1 * s_t[:, :1]], axis=1)
    opac = rng.uniform(0.5, 1.0, size=n)
    feats = rng.uniform(0.0, 1.0, size=(n, channels))
    f32 = lambda a: torch.from_numpy(np.ascontiguousarray(a, np.float32))  # noqa: E731
    return GaussianScene(f32(means), f32(quats), f32(scales), f32(opac), f32(feats))


