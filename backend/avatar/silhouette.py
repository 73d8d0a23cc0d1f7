"""Hold the avatar inside the portrait's silhouette at the source view (issue 14).

The photo's matte is a one-view visual hull: along a ray through a background pixel there is
nothing. Two rules follow, applied to every Gaussian (head and parts) at the source pose:

- a Gaussian whose centre projects onto background (matte < ``carve_below``) inside the image gets
  opacity 0: it would be seen against the background there (seen at the source view or peeking out
  at the silhouette from behind);
- a Gaussian whose centre lies inside but whose footprint reaches over the silhouette is shrunk
  (all three axes by one factor, so its shape is kept) until ``reach_sigmas`` projected standard
  deviations fit within its centre's distance to the silhouette (never below ``min_sigma_px``).

Without these rules the Gaussians along the outline (hair hull, torso shell, head mesh) draw a
halo 3-6 px wide beyond the person, which the photo shows as background. Gaussians projecting
outside the image are left alone (the photo says nothing there).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from .gaussians import GaussianSet

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..render.camera import Camera
    from .gaussians import GaussianAvatar


@dataclass(frozen=True)
class SilhouetteOptions:
    carve_below: float = 0.5     # matte value under which a pixel is background
    reach_sigmas: float = 2.0    # this many projected std-devs must fit inside the silhouette
    min_sigma_px: float = 0.5    # shrinking stops at this projected std-dev (px)
    carve_head: bool = True      # head-mesh Gaussians are carved too (else only shrunk to min_sigma_px)


@dataclass
class SilhouetteFit:
    """scale_factor (N,) float32 in (0, 1]; carved (N,) bool (opacity to 0)."""

    scale_factor: np.ndarray
    carved: np.ndarray


def fit_to_matte(gs: GaussianSet, camera: "Camera", matte: np.ndarray,
                 opts: SilhouetteOptions | None = None) -> SilhouetteFit:
    """Per-Gaussian shrink factors and carving for ``gs`` (world frame, source pose) against
    ``matte`` (H, W) float in [0, 1] at ``camera``'s resolution."""
    from scipy.ndimage import distance_transform_edt

    o = opts or SilhouetteOptions()
    H, W = matte.shape
    uv, z = camera.project(np.asarray(gs.means, np.float32))          # (N, 2) px, (N,) metres
    uv, z = np.nan_to_num(np.asarray(uv, np.float64), nan=-1.0), np.asarray(z, np.float64)
    inside_img = (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H) & (z > 0)
    iu = np.clip(uv[:, 0].astype(int), 0, W - 1)
    iv = np.clip(uv[:, 1].astype(int), 0, H - 1)
    person = np.asarray(matte) >= o.carve_below
    # distance (px) from each person pixel's centre to the nearest background pixel's centre,
    # minus half a pixel: the silhouette runs between them
    d_in = distance_transform_edt(person) - 0.5
    carved = inside_img & ~person[iv, iu]
    sigma_px = np.asarray(gs.scales, np.float64).max(1) * camera.fx / np.maximum(z, 1e-6)
    allowed = np.maximum(d_in[iv, iu] / o.reach_sigmas, o.min_sigma_px)
    factor = np.where(inside_img & ~carved, np.minimum(1.0, allowed / np.maximum(sigma_px, 1e-9)), 1.0)
    return SilhouetteFit(factor.astype(np.float32), carved)


def apply_fit(gs: GaussianSet, fit: SilhouetteFit) -> GaussianSet:
    """``gs`` with shrunk scales and carved opacities (a new set; everything else kept)."""
    return replace(gs, scales=(gs.scales * fit.scale_factor[:, None]).astype(np.float32),
                   opacities=np.where(fit.carved, 0.0, gs.opacities).astype(np.float32))


def fit_avatar_to_matte(avatar: "GaussianAvatar", model: "HeadModel", matte: np.ndarray, levels: list[int],
                        opts: SilhouetteOptions | None = None) -> dict[str, int]:
    """Apply :func:`fit_to_matte` in place to every LOD's head Gaussians and (once, at the finest
    LOD: parts are shared by the LODs) to the parts, at the avatar's source pose. Scales and
    opacities are pose-independent, so the rest-frame sets take them as they are.
    Returns counts {"carved": ..., "shrunk": ...} over everything changed."""
    from .posing import posed_set

    carved = shrunk = 0
    for l in sorted(levels):
        gs = posed_set(avatar, model, avatar.params, l)
        fit = fit_to_matte(gs, avatar.camera, matte, opts)
        n = len(avatar.lods[l])
        head_fit = SilhouetteFit(fit.scale_factor[:n], fit.carved[:n])
        if not (opts or SilhouetteOptions()).carve_head:
            head_fit = _shrink_instead(gs.means[:n], gs.scales[:n], head_fit, avatar.camera,
                                       opts or SilhouetteOptions())
        avatar.lods[l] = apply_fit(avatar.lods[l], head_fit)
        carved += int(fit.carved[:n].sum())
        shrunk += int((fit.scale_factor[:n] < 1).sum())
        if l == max(levels):
            for part, sl in zip(avatar.parts, avatar.part_slices(l).values()):
                part.gaussians = apply_fit(part.gaussians, SilhouetteFit(fit.scale_factor[sl], fit.carved[sl]))
                carved += int(fit.carved[sl].sum())
                shrunk += int((fit.scale_factor[sl] < 1).sum())
    return {"carved": carved, "shrunk": shrunk}


def _shrink_instead(means: np.ndarray, scales: np.ndarray, fit: SilhouetteFit, camera: "Camera",
                    o: SilhouetteOptions) -> SilhouetteFit:
    """Carved Gaussians (posed ``means`` (n, 3), ``scales`` (n, 3)) kept, shrunk to
    ``min_sigma_px`` instead (a closed surface keeps its points)."""
    _, z = camera.project(np.asarray(means, np.float32))
    sigma_px = np.asarray(scales, np.float64).max(1) * camera.fx / np.maximum(np.asarray(z, np.float64), 1e-6)
    f = np.where(fit.carved, np.minimum(1.0, o.min_sigma_px / np.maximum(sigma_px, 1e-9)), fit.scale_factor)
    return SilhouetteFit(f.astype(np.float32), np.zeros_like(fit.carved))
