"""Colours that depend on the view, for the head Gaussians the photo sees edge-on.

The photo sees the sides of the face, the jaw's edge and the ears at a grazing angle: a disc there
covers a sliver of the source view's pixels, and those pixels mix the face's edge with the hair or
background beside it (and the refinement fits them through that sliver). Turned towards the
camera, the same disc covers skin, and the photo's edge colours showed as orange-brown streaks on
the cheek's side (the thirty-seventh session's diagnosis; every view-independent colour tried
there cost the source view ~0.5 dB or left the streaks).

So such a Gaussian carries two colours: its ordinary colour, seen from the source camera's
direction, and a *side* colour (the smooth fill of its neighbours, as if the photo had not seen
it), seen once the view has turned away from that direction. ``toward`` is the unit direction
from the Gaussian to the source camera in the Gaussian's own frame (its rotation's axes), so a
posed Gaussian's source direction turns with its posed rotation. A view whose direction to the
Gaussian lies within ``NEAR_DEG`` of it shows the ordinary colour, beyond ``FAR_DEG`` the side
colour, a smoothstep between. Every other Gaussian has one colour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NEAR_DEG = 5.0    # within this angle of the source direction: the photo's colour alone
FAR_DEG = 20.0    # beyond it: the side colour alone


@dataclass
class ViewColors:
    """The view-dependent Gaussians of one head LOD.

    rows: (K,) int64 strictly increasing indices into the LOD's head Gaussians.
    side: (K, 3) float32 RGB in [0, 1], the colour seen away from the source direction.
    toward: (K, 3) float32 unit vectors, the direction to the source camera in each Gaussian's own
        frame (the columns of its rest rotation's matrix are that frame's axes).
    """

    rows: np.ndarray
    side: np.ndarray
    toward: np.ndarray

    def __post_init__(self) -> None:
        self.rows = np.ascontiguousarray(self.rows, dtype=np.int64).reshape(-1)
        k = len(self.rows)
        self.side = np.ascontiguousarray(self.side, dtype=np.float32).reshape(k, 3)
        self.toward = np.ascontiguousarray(self.toward, dtype=np.float32).reshape(k, 3)
        if k and np.any(np.diff(self.rows) <= 0):
            raise ValueError("view colours: rows must be strictly increasing")
        if not (np.isfinite(self.side).all() and np.isfinite(self.toward).all()):
            raise ValueError("view colours: non-finite values")
        if k and (self.side.min() < 0.0 or self.side.max() > 1.0):
            raise ValueError("view colours: side colours must lie in [0, 1]")
        if k and np.abs(np.linalg.norm(self.toward, axis=1) - 1.0).max() > 1e-3:
            raise ValueError("view colours: toward must be unit vectors")

    def __len__(self) -> int:
        return int(len(self.rows))

    def check(self, n: int) -> None:
        """Raise ValueError unless every row indexes one of ``n`` Gaussians."""
        if len(self.rows) and (self.rows[0] < 0 or self.rows[-1] >= n):
            raise ValueError(f"view colours: rows reach beyond the LOD's {n} head Gaussians")


def _smoothstep(x):
    return x * x * (3.0 - 2.0 * x)


def source_weights(toward_world: np.ndarray, means: np.ndarray, center: np.ndarray) -> np.ndarray:
    """(..., K) float32 in [0, 1]: how much of the photo's colour a view shows (1 within NEAR_DEG of
    the source direction, 0 beyond FAR_DEG). toward_world (..., K, 3) the posed source directions,
    means (..., K, 3) metres, center (..., 3) the view's camera centre, metres."""
    d = np.asarray(center, np.float32)[..., None, :] - np.asarray(means, np.float32)
    d /= np.maximum(np.linalg.norm(d, axis=-1, keepdims=True), 1e-12)
    c = (d * toward_world).sum(-1)
    lo, hi = np.cos(np.radians(FAR_DEG)), np.cos(np.radians(NEAR_DEG))
    return _smoothstep(np.clip((c - lo) / (hi - lo), 0.0, 1.0)).astype(np.float32)


def colors_for_views(colors, view: ViewColors | None, quats, means, centers):
    """Per-frame colours of a LOD's Gaussians (head first, then anything after it) seen from each
    frame's camera: torch (B, N, 3), or ``colors`` itself when ``view`` is None or empty.

    colors (N, 3) torch float32; quats (B, N, 4) posed unit w,x,y,z and means (B, N, 3) metres
    (torch, on the colours' device); centers (B, 3) the cameras' centres, metres."""
    import torch

    from ..rotations import quat_to_matrix_torch

    if view is None or not len(view):
        return colors
    dev = colors.device
    rows = torch.as_tensor(view.rows, device=dev)
    R = quat_to_matrix_torch(quats[:, rows])                                  # (B, K, 3, 3)
    tw = torch.einsum("bkij,kj->bki", R, torch.as_tensor(view.toward, device=dev))
    d = torch.as_tensor(np.asarray(centers, np.float32), device=dev)[:, None, :] - means[:, rows]
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    lo, hi = float(np.cos(np.radians(FAR_DEG))), float(np.cos(np.radians(NEAR_DEG)))
    w = _smoothstep(((d * tw).sum(-1) - lo).div(hi - lo).clamp(0.0, 1.0))[..., None]   # (B, K, 1)
    out = colors.expand(quats.shape[0], -1, -1).clone()
    side = torch.as_tensor(view.side, device=dev)
    out[:, rows] = w * colors[rows] + (1.0 - w) * side
    return out


def source_toward(posed_quats: np.ndarray, posed_means: np.ndarray, center: np.ndarray) -> np.ndarray:
    """(K, 3) float32 unit: the direction from each Gaussian to the source camera ``center`` (3,)
    metres, in the Gaussian's own frame; posed_quats (K, 4) unit w,x,y,z and posed_means (K, 3)
    metres at the source frame (so toward = R_posed^T (center - mean) / |...|)."""
    from ..rotations import quat_to_matrix

    R = quat_to_matrix(np.asarray(posed_quats, np.float64))                     # (K, 3, 3) local -> world
    d = np.asarray(center, np.float64)[None] - np.asarray(posed_means, np.float64)
    d /= np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    t = np.einsum("kji,kj->ki", R, d)
    return (t / np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-12)).astype(np.float32)
