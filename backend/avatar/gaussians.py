"""Gaussian containers: one set of 3D Gaussians and the animatable multi-LOD avatar.

Shapes follow docs/CONTRACTS.md ("backend/avatar"): N Gaussians, means in metres in the head-model
frame (+Y up, +Z towards the viewer), quaternions w,x,y,z, linear scales in metres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # only for annotations: keeps this module importable without torch
    from ..head.params import HeadParams
    from ..render.camera import Camera


@dataclass
class GaussianSet:
    """N 3D Gaussians.

    means: (N, 3) float32 metres; quats: (N, 4) float32 unit w,x,y,z; scales: (N, 3) float32 metres
    (linear, not log); opacities: (N,) float32 in [0, 1]; colors: (N, 3) float32 RGB in [0, 1];
    features: (N, C) float32 or None (the learned path's feature vectors; colours stay the RGB).
    """

    means: np.ndarray
    quats: np.ndarray
    scales: np.ndarray
    opacities: np.ndarray
    colors: np.ndarray
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.means = np.ascontiguousarray(self.means, dtype=np.float32).reshape(-1, 3)
        n = self.means.shape[0]
        self.quats = np.ascontiguousarray(self.quats, dtype=np.float32).reshape(n, 4)
        self.scales = np.ascontiguousarray(self.scales, dtype=np.float32).reshape(n, 3)
        self.opacities = np.ascontiguousarray(self.opacities, dtype=np.float32).reshape(n)
        self.colors = np.ascontiguousarray(self.colors, dtype=np.float32).reshape(n, 3)
        if self.features is not None:
            self.features = np.ascontiguousarray(self.features, dtype=np.float32).reshape(n, -1)

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @property
    def n(self) -> int:
        return len(self)

    def with_means(self, means: np.ndarray) -> "GaussianSet":
        """Same attributes at other positions (posing moves positions only, as the paper does)."""
        return GaussianSet(means, self.quats, self.scales, self.opacities, self.colors, self.features)

    @staticmethod
    def concat(sets: list["GaussianSet"]) -> "GaussianSet":
        """Concatenate sets in order; features are kept only when every set has the same width."""
        feats = [s.features for s in sets]
        keep = all(f is not None for f in feats) and len({f.shape[1] for f in feats}) == 1
        return GaussianSet(
            np.concatenate([s.means for s in sets]),
            np.concatenate([s.quats for s in sets]),
            np.concatenate([s.scales for s in sets]),
            np.concatenate([s.opacities for s in sets]),
            np.concatenate([s.colors for s in sets]),
            np.concatenate(feats) if keep else None,
        )

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"means": self.means, "quats": self.quats, "scales": self.scales,
               "opacities": self.opacities, "colors": self.colors}
        if self.features is not None:
            out["features"] = self.features
        return out


@dataclass
class GaussianAvatar:
    """An animatable head + shoulder Gaussian avatar built from one photo.

    head_model_name / head_model_path: which HeadModel the avatar binds to (path None = stand-in).
    params: HeadParams with T=1, the fitted source frame (identity in ``params.shape``).
    camera: the source Camera (512x512 crop camera the photo was fitted with).
    vertex_offsets: (V, 3) float32 identity detail added to the shaped template (LOD 0 vertices).
    lods: {level: GaussianSet} head Gaussians at rest (neutral expression, zero pose); N_l = V_l.
    lod_offsets: {level: (N_l, 3) float32} per-Gaussian offset from the subdivided surface, in the
        rest frame (posing rotates it with the surface, see posing.py).
    shoulders: GaussianSet at rest, rigidly bound to the global joint (plus a fraction of the neck).
    options: the creation options (JSON-able), stored in the file header.
    """

    head_model_name: str
    head_model_path: str | None
    params: "HeadParams"
    camera: "Camera"
    vertex_offsets: np.ndarray
    lods: dict[int, GaussianSet]
    lod_offsets: dict[int, np.ndarray]
    shoulders: GaussianSet
    options: dict[str, Any] = field(default_factory=dict)
    method: str = "analytic"

    def __post_init__(self) -> None:
        self.vertex_offsets = np.ascontiguousarray(self.vertex_offsets, dtype=np.float32).reshape(-1, 3)
        self.lods = {int(k): v for k, v in self.lods.items()}
        self.lod_offsets = {int(k): np.ascontiguousarray(v, dtype=np.float32).reshape(-1, 3)
                            for k, v in self.lod_offsets.items()}
        if set(self.lods) != set(self.lod_offsets):
            raise ValueError(f"lods {sorted(self.lods)} and lod_offsets {sorted(self.lod_offsets)} differ")

    @property
    def levels(self) -> list[int]:
        return sorted(self.lods)

    def counts(self) -> dict[int, dict[str, int]]:
        """Per LOD: head, shoulders and total Gaussian counts."""
        return {lvl: {"head": len(g), "shoulders": len(self.shoulders),
                      "total": len(g) + len(self.shoulders)} for lvl, g in sorted(self.lods.items())}

    def rest_set(self, lod: int) -> GaussianSet:
        """Head (rest positions + offsets) followed by shoulders: the order pose() returns."""
        head = self.lods[lod]
        head = head.with_means(head.means + self.lod_offsets[lod])
        return GaussianSet.concat([head, self.shoulders])
