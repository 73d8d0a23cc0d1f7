"""The data passed between ``splat`` and its backends (splat.py: CPU, cuda.py: gsplat): validated
inputs, the rendered result, and the camera tensors. Both backends import this module; neither
imports the other's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .camera import Camera


@dataclass
class SplatResult:
    """Rendered frames. B = cameras/frames, C = feature channels.

    image:  (B, C, H, W) float32 composited features (+ background * (1 - alpha)).
    alpha:  (B, H, W) float32 accumulated opacity.
    depth:  (B, H, W) float32 expected camera depth sum(w z) / max(alpha, 1e-10) in metres
            (gsplat's "ED"); 0 where nothing was drawn. None when ``splat(depth=False)`` ran on
            the cpu backend.
    backend: "cpu" or "cuda", the backend that ran.
    radii:  (B, N, 2) int32 footprint half-extents in pixels, 0 = culled (not drawn in that view).
    n_intersections: Gaussian-tile overlaps (cpu backend; -1 when unknown).
    """

    image: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor | None
    backend: str
    radii: torch.Tensor | None = None
    n_intersections: int = -1


@dataclass
class SplatInputs:
    """Validated ``splat`` inputs, broadcast to B frames (B = cameras or per-frame inputs)."""

    means: torch.Tensor  # [B, N, 3]
    quats: torch.Tensor  # [B, N, 4]
    scales: torch.Tensor  # [B, N, 3]
    opacities: torch.Tensor  # [B, N]
    features: torch.Tensor  # [B, N, C]
    cameras: list[Camera]  # len B
    background: torch.Tensor | None  # [B, C]
    batched: bool  # any per-Gaussian input had a frame axis


def camera_tensors(cams: Sequence[Camera], device) -> tuple[torch.Tensor, torch.Tensor]:
    """viewmats (B, 4, 4) and Ks (B, 3, 3) float32 of ``cams`` on ``device``."""
    viewmats = torch.from_numpy(np.stack([c.viewmat for c in cams])).to(device)  # [B, 4, 4]
    Ks = torch.from_numpy(np.stack([c.K for c in cams])).to(device)  # [B, 3, 3]
    return viewmats, Ks
