"""Shoulder Gaussians from the portrait mask (the paper's multi-region part, made analytic).

Shoulder pixels = portrait mask, in the part of the image below the neck joint, minus the head
mesh's rendered mask. A regular pixel grid over them (spacing chosen for about ``target_count``
points) is lifted onto an image-aligned plane (constant camera depth) just behind the neck joint,
coloured from the prefiltered photo, and given flat Gaussians lying in that plane. Positions are
returned in the world frame at the source pose; build.py maps them to rest with the inverse of the
source shoulder transform (posing.shoulder_transforms).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..rotations import matrix_to_quat
from .gaussians import GaussianSet
from .imageops import bilinear, blur

if TYPE_CHECKING:
    from ..render.camera import Camera


@dataclass
class ShoulderOptions:
    target_count: int = 9000      # the paper's shoulder set is on the order of 9K Gaussians
    behind_neck_m: float = 0.03   # plane depth = neck joint depth + this (metres, camera z)
    coverage: float = 0.6         # in-plane std-dev as a fraction of the grid spacing
    flatness: float = 0.15
    opacity: float = 0.97
    head_erode_px: int = 2        # keep a thin overlap under the head's silhouette: no seam
    mask_threshold: float = 0.5


def shoulder_pixels(portrait_mask: np.ndarray, head_mask: np.ndarray, neck_row: float,
                    opts: ShoulderOptions) -> np.ndarray:
    """(H, W) bool: portrait pixels below ``neck_row`` that the head mesh does not cover."""
    from scipy.ndimage import binary_erosion

    H, W = portrait_mask.shape
    head = head_mask
    if opts.head_erode_px > 0 and head.any():
        head = binary_erosion(head, iterations=opts.head_erode_px)
    rows = np.arange(H)[:, None] >= neck_row
    return (portrait_mask >= opts.mask_threshold) & rows & ~head


def build_shoulders(photo: np.ndarray, portrait_mask: np.ndarray, head_mask: np.ndarray,
                    camera: "Camera", neck_joint: np.ndarray, opts: ShoulderOptions | None = None
                    ) -> GaussianSet:
    """Shoulder Gaussians (world frame, source pose).

    photo (H, W, 3) float32 [0, 1] and portrait_mask (H, W) float32 at the camera's resolution;
    head_mask (H, W) bool (head mesh coverage at the source view); neck_joint (3,) world metres.
    Returns an empty set when no shoulder pixels exist (e.g. a tight face crop).
    """
    opts = opts or ShoulderOptions()
    H, W = portrait_mask.shape
    neck_uv, neck_z = camera.project(np.asarray(neck_joint, np.float32)[None])
    neck_row = float(neck_uv[0, 1]) if np.isfinite(neck_uv[0, 1]) else H / 2
    region = shoulder_pixels(portrait_mask, head_mask, neck_row, opts)
    area = int(region.sum())
    if area == 0 or opts.target_count <= 0:
        return _empty()
    step = max(1.0, float(np.sqrt(area / opts.target_count)))  # pixels between neighbours
    gx = np.arange(step / 2, W, step)
    gy = np.arange(step / 2, H, step)
    uu, vv = np.meshgrid(gx, gy)
    uv = np.stack([uu.ravel(), vv.ravel()], 1)  # continuous pixel coords of grid points
    keep = region[np.minimum(uv[:, 1].astype(int), H - 1), np.minimum(uv[:, 0].astype(int), W - 1)]
    uv = uv[keep]
    depth = float(neck_z[0]) + opts.behind_neck_m
    # unproject onto the plane z_cam = depth, then camera -> world
    x = (uv[:, 0] - camera.cx) / camera.fx * depth
    y = (uv[:, 1] - camera.cy) / camera.fy * depth
    p_cam = np.stack([x, y, np.full_like(x, depth)], 1)
    R, t = camera.R.astype(np.float64), camera.t.astype(np.float64)
    means = (p_cam - t) @ R  # R^T (p - t), row form
    colors = np.clip(bilinear(blur(photo, 0.5 * step), uv.astype(np.float32)), 0.0, 1.0)
    s = opts.coverage * step * depth / camera.fx  # pixel spacing -> metres on the plane
    n = len(uv)
    scales = np.tile(np.array([[s, s, max(opts.flatness * s, 1e-6)]], np.float32), (n, 1))
    # local frame = camera axes in world (columns of R^T): the Gaussians face the source camera
    quats = np.tile(matrix_to_quat(R.T[None]).astype(np.float32), (n, 1))
    soft = bilinear(portrait_mask.astype(np.float32), uv.astype(np.float32))
    opac = np.clip(soft, 0.0, 1.0) * opts.opacity
    return GaussianSet(means, quats, scales, opac, colors)


def _empty() -> GaussianSet:
    z = np.zeros((0, 3), np.float32)
    return GaussianSet(z, np.zeros((0, 4)), z, np.zeros(0), z)
