"""The body: a curved torso shell fitted to the portrait's body region (replaces the image plane).

Model, in the source camera (x right, y down, z forward): per image row below the neck joint, the
body's cross-section is an ellipse in the x-z plane. Its x extent is the row's silhouette (body,
hair lying on the body and the head's neck, smoothed over rows); its depth half-axis is
``depth_ratio`` times the half-width (a torso is about half as deep as it is wide), clamped to
[min_depth_m, max_depth_m]; its centre lies ``behind_neck_m`` behind the neck joint. The torso
faces the camera: one photo says nothing about the chest's turn, and portraits face the lens.

Gaussians:
- front: a pixel grid over the body pixels (and the pixels where hair covers the body, which are
  hidden behind the hair at the source view and keep the torso whole when the hair moves), each on
  the ellipse's front at its pixel ray, coloured from the photo;
- back: the rest of each ellipse (beyond the silhouette, round the back) at twice the spacing,
  coloured from the front pixel of the same column (a front-back mirror), so side views show a body.
Colours come only from body pixels: anywhere else (under hair, beside the neck) the nearest body
pixel's colour is used, so no face or hair colour reaches the body.
Skinning: the neck joint's share is NECK_FOLLOW at the neck, fading to 0 ``neck_fade_m`` below it
(global only): turning the head turns the collar a little and leaves the torso.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .gaussians import GaussianSet
from .imageops import bilinear, blur
from .posing import NECK_FOLLOW
from .regions import PortraitRegions
from .skinning import neck_global_weights, quats_to_rest, to_rest

if TYPE_CHECKING:
    from ..render.camera import Camera


@dataclass
class BodyOptions:
    target_count: int = 9000      # front Gaussians (the paper's shoulder set is about 9K)
    behind_neck_m: float = 0.02   # ellipse centre depth = neck joint depth + this (camera z)
    depth_ratio: float = 0.5      # depth half-axis / half-width
    min_depth_m: float = 0.04
    max_depth_m: float = 0.12
    back_spacing: float = 2.0     # back Gaussians' spacing / the front grid's
    coverage: float = 0.7         # in-plane std-dev as a fraction of the spacing
    # the photo's low-pass before the front grid samples it (std-dev / grid step): the Gaussians'
    # own footprint (coverage) already smooths, so a half-step pre-blur on top of it cost the
    # source view's body SSIM 0.019 (astronaut) and 0.014 (d19) against this quarter step
    color_blur: float = 0.25
    flatness: float = 0.2
    max_tilt_deg: float = 45.0    # front discs tilt at most this far from facing the camera
    opacity: float = 0.97
    neck_fade_m: float = 0.12
    smooth_rows: int = 9          # median filter over rows of the silhouette extents


@dataclass
class BodyResult:
    """gaussians at rest; weights (N, 5) float32; front_depth (H, W) float32 camera z of the
    torso's front surface (inf where no torso): hair lying on the body is placed in front of it."""

    gaussians: GaussianSet
    weights: np.ndarray
    front_depth: np.ndarray
    n_front: int


def _row_extents(sil: np.ndarray, first_row: int, smooth: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(H, W) bool -> per-row left, right pixel edges (H,) float and valid rows (H,) bool."""
    from scipy.ndimage import median_filter

    H, W = sil.shape
    any_ = sil.any(1) & (np.arange(H) >= first_row)
    left = np.where(any_, np.argmax(sil, 1), 0).astype(np.float64)
    right = np.where(any_, W - np.argmax(sil[:, ::-1], 1), 0).astype(np.float64)
    if any_.sum() >= smooth:
        idx = np.flatnonzero(any_)
        left[idx] = median_filter(left[idx], smooth, mode="nearest")
        right[idx] = median_filter(right[idx], smooth, mode="nearest")
    return left, right, any_


def _fill_from(photo: np.ndarray, source: np.ndarray) -> np.ndarray:
    """photo with every pixel outside ``source`` replaced by the nearest source pixel's colour."""
    from scipy.ndimage import distance_transform_edt

    if not source.any():
        return photo
    _, (iy, ix) = distance_transform_edt(~source, return_indices=True)
    return photo[iy, ix]


def _ellipse_frames(phi: np.ndarray, a: np.ndarray, b: np.ndarray, max_tilt: float | None) -> np.ndarray:
    """Camera-frame (N, 3, 3) Gaussian frames on the ellipse (columns: tangent, up, normal)."""
    n = np.stack([np.sin(phi) / a, np.zeros_like(phi), -np.cos(phi) / b], 1)
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    if max_tilt is not None:  # towards the camera (-z) by at most max_tilt
        ang = np.arctan2(n[:, 0], -n[:, 2])
        ang = np.clip(ang, -max_tilt, max_tilt)
        n = np.stack([np.sin(ang), np.zeros_like(ang), -np.cos(ang)], 1)
    up = np.tile(np.array([[0.0, 1.0, 0.0]]), (len(phi), 1))
    tan = np.cross(up, n)
    return np.stack([tan, up, n], 2)


def build_body(photo: np.ndarray, mask: np.ndarray, regions: PortraitRegions, camera: "Camera",
               neck_joint: np.ndarray, A: np.ndarray, opts: BodyOptions | None = None) -> BodyResult:
    """Torso Gaussians at rest.

    photo (H, W, 3) float32 [0, 1]; mask (H, W) float32 portrait mask; regions from
    portrait_regions; neck_joint (3,) world metres at the source pose; A (5, 4, 4) the source
    frame's skinning transforms. Returns an empty set when the crop shows no body.
    """
    opts = opts or BodyOptions()
    H, W = mask.shape
    R, t = camera.R.astype(np.float64), camera.t.astype(np.float64)
    nj_cam = R @ np.asarray(neck_joint, np.float64) + t
    neck_row = float(nj_cam[1] / nj_cam[2] * camera.fy + camera.cy)
    zc = float(nj_cam[2]) + opts.behind_neck_m
    rows = np.arange(H)[:, None] + 0.5
    first = int(np.clip(np.ceil(neck_row), 0, H))
    if regions.body.any():  # a collar reaching above the neck joint's row (regions.collar_to_body) stays whole
        first = min(first, int(np.flatnonzero(regions.body.any(1))[0]))
    covered = regions.body | (regions.hair & (rows >= regions.chin_row))
    left, right, valid = _row_extents(covered | (regions.head & (rows >= neck_row)), first, opts.smooth_rows)
    front = covered & valid[:, None]
    area = int(front.sum())
    empty = BodyResult(_empty(), np.zeros((0, 5), np.float32), np.full((H, W), np.inf, np.float32), 0)
    if area == 0 or not regions.body.any():
        return empty
    px_m = zc / camera.fx                                          # metres per pixel at the torso
    half = 0.5 * (right - left) * px_m                             # (H,) half-width, metres
    xc = (0.5 * (left + right) - camera.cx) * px_m                 # (H,) centre x, camera metres
    depth = np.clip(opts.depth_ratio * half, opts.min_depth_m, opts.max_depth_m)

    # front depth map: the ellipse's near side on every pixel of a valid row inside its extent
    x_pix = (np.arange(W)[None, :] + 0.5 - camera.cx) * px_m
    s = (x_pix - xc[:, None]) / np.maximum(half[:, None], 1e-6)
    inside = valid[:, None] & (np.abs(s) < 1.0)
    front_depth = np.where(inside, zc - depth[:, None] * np.sqrt(np.clip(1 - s * s, 0, 1)), np.inf)

    # front Gaussians on a pixel grid over the covered pixels; the grid's spacing comes from the
    # body below the chin, so a collar above it (regions.collar_to_body) adds Gaussians at the same
    # density instead of thinning the whole torso
    below_chin = int((front & (rows >= regions.chin_row)).sum())
    step = max(1.0, float(np.sqrt((below_chin if below_chin > 0 else area) / max(opts.target_count, 1))))
    uu, vv = np.meshgrid(np.arange(step / 2, W, step), np.arange(step / 2, H, step))
    uv = np.stack([uu.ravel(), vv.ravel()], 1)
    iu, iv = np.minimum(uv[:, 0].astype(int), W - 1), np.minimum(uv[:, 1].astype(int), H - 1)
    keep = front[iv, iu] & np.isfinite(front_depth[iv, iu])
    uv, iu, iv = uv[keep], iu[keep], iv[keep]
    z = front_depth[iv, iu].astype(np.float64)
    p_front = np.stack([(uv[:, 0] - camera.cx) / camera.fx * z, (uv[:, 1] - camera.cy) / camera.fy * z, z], 1)
    phi_f = np.arcsin(np.clip(s[iv, iu], -1, 1))
    fr_front = _ellipse_frames(phi_f, half[iv], depth[iv], np.radians(opts.max_tilt_deg))
    colors_img = blur(_fill_from(photo, regions.body), opts.color_blur * step)
    c_front = bilinear(colors_img, uv.astype(np.float32))
    o_front = np.clip(bilinear(mask.astype(np.float32), uv.astype(np.float32)), 0, 1) * opts.opacity

    # back Gaussians: the rest of each ellipse, every back_spacing * step rows and metres
    bstep = opts.back_spacing * step
    brow = np.arange(first + bstep / 2, H, bstep)
    # only rows that show body (or hair on it): above the collar the neck's rows would get the
    # nearest body pixel's colour, a band of clothing round the back of the neck up to the neck
    # joint (the dark strip behind the astronaut's neck at +60 deg yaw); the head's neck is there
    brow = brow[front.any(1)[np.minimum(brow.astype(int), H - 1)]]
    pts, phis, rr = [], [], []
    for v in brow:  # one row of the ellipse at a time: a few dozen rows
        r = min(int(v), H - 1)
        # the back ellipse is narrower by its Gaussians' reach, so they end at the silhouette
        a, b = max(half[r] - opts.coverage * bstep * px_m, 0.5 * half[r]), depth[r]
        perim = np.pi * (3 * (a + b) - np.sqrt((3 * a + b) * (a + 3 * b)))  # Ramanujan
        n = max(int(perim / (bstep * px_m)), 8)
        phi = np.linspace(-np.pi, np.pi, n, endpoint=False)
        phi = phi[np.abs(phi) > np.pi / 2]                      # beyond the silhouette
        phis.append(phi)
        rr.append(np.full(len(phi), r))
        pts.append(np.stack([xc[r] + a * np.sin(phi), np.full(len(phi), (v - camera.cy) / camera.fy * zc),
                             zc - b * np.cos(phi)], 1))
    if pts:
        p_back, phi_b, r_b = np.concatenate(pts), np.concatenate(phis), np.concatenate(rr)
    else:
        p_back, phi_b, r_b = np.zeros((0, 3)), np.zeros(0), np.zeros(0, int)
    fr_back = _ellipse_frames(phi_b, half[r_b], depth[r_b], None)
    u_mirror = p_back[:, 0] / px_m + camera.cx                  # the front pixel of the same column
    c_back = bilinear(blur(colors_img, 0.5 * bstep), np.stack([u_mirror, r_b + 0.5], 1).astype(np.float32))
    # (the back mirrors the front at twice its spacing: its colours keep a half-step low-pass)

    p_cam = np.concatenate([p_front, p_back])
    frames_cam = np.concatenate([fr_front, fr_back])
    world = (p_cam - t) @ R                                     # R^T (p - t)
    frames_world = np.einsum("ij,njk->nik", R.T, frames_cam)
    below = (p_cam[:, 1] / p_cam[:, 2] * camera.fy + camera.cy - neck_row) * px_m  # metres below the neck
    weights = neck_global_weights(NECK_FOLLOW * np.clip(1.0 - below / opts.neck_fade_m, 0.0, 1.0))
    rest = to_rest(world, weights, A)
    quats = quats_to_rest(frames_world, weights, A)
    sb = opts.coverage * bstep * px_m
    # front Gaussians near the silhouette shrink to half their distance from it (no halo)
    from scipy.ndimage import distance_transform_edt

    edge = distance_transform_edt(front)[iv, iu]
    sf = np.clip(0.5 * edge, 0.35 * step, opts.coverage * step) * z / camera.fx
    scales = np.concatenate([
        np.stack([sf, sf, opts.flatness * sf], 1),
        np.tile([[sb, sb, opts.flatness * sb]], (len(p_back), 1))])
    opac = np.concatenate([o_front, np.full(len(p_back), opts.opacity, np.float32)])
    colors = np.clip(np.concatenate([c_front, c_back]), 0.0, 1.0)
    return BodyResult(GaussianSet(rest, quats, scales, opac, colors), weights,
                      front_depth.astype(np.float32), len(p_front))


def _empty() -> GaussianSet:
    z = np.zeros((0, 3), np.float32)
    return GaussianSet(z, np.zeros((0, 4)), z, np.zeros(0), z)
