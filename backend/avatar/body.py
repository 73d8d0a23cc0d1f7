"""The body: a curved torso shell fitted to the portrait's body region (replaces the image plane).

Model, in the source camera (x right, y down, z forward): per image row below the neck joint, the
body's cross-section is an ellipse in the x-z plane. Its x extent is the row's silhouette (body,
hair lying on the body and the head's neck, smoothed over rows); its depth half-axis is
``depth_ratio`` times the half-width (a torso is about half as deep as it is wide), clamped to
[min_depth_m, max_depth_m]; its centre lies ``behind_neck_m`` behind the neck joint. The torso
faces the camera: one photo says nothing about the chest's turn, and portraits face the lens.

Gaussians:
- front: a pixel grid over the body pixels (and the pixels where hair covers the body, which are
  hidden behind the hair at the source view and keep the torso whole when the hair moves, and the
  clothes or bare chest the photo shows over the head model's neck, which runs on below the collar), each on
  the ellipse's front at its pixel ray, coloured from the photo;
- ring: the rest of each ellipse, its sides and back, at twice the spacing: from where the front
  grid's pixel columns start to stretch over the turning surface (SIDE_STRETCH) round the back,
  a little inside the surface, coloured by continuing each side's clothes round the ring
  (torso_texture.py: the flank's band of columns beside each side, level and quilted, the two sides
  cross-faded at the back), so side views show a whole torso with its texture, not the silhouette's
  pixels stretched or the background through a gap, and the back carries the flanks' fabric, not
  the chest's neckline. The texture it
  continues is the clothes' interior: their outline's rim (the matte's soft edge, which mixes in
  the background) is filled from inside (RIM_PX), and away from the source view the ring shows
  the colours it is built with (PortraitParts.sides): at the outline the photo refinement paints
  it with that edge.
Colours come only from body pixels (and that chest over the neck): anywhere else (under hair,
beside the neck) the nearest such pixel's colour is used, so no face or hair colour reaches the body.
Side colours (view_colors.py): the front grid's columns beyond SIDE_VIEW_DEG round the ellipse are
the photo's pixels at the silhouette, seen at a grazing angle (the fabric's edge shading, the matte's
blur): turned towards the camera they spread into vertical streaks. Those Gaussians also carry the
texture the ring continues (the same side's continuation, from SIDE_VIEW_DEG outwards), shown once the
view has turned away from the photo's; the ring continues from there too, so it does not repeat
the grazing band round the back.
Skinning: the neck joint's share is NECK_FOLLOW at the neck, fading to 0 ``neck_fade_m`` below it
(global only): turning the head turns the collar a little and leaves the torso.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .gaussians import GaussianSet
from .imageops import bilinear, blur
from .posing import NECK_FOLLOW
from .regions import PortraitRegions
from .skinning import neck_global_weights, quats_to_rest, to_rest
from .torso_texture import SideMap, side_map

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
    # the front Gaussians whose look depends on the view: (K,) int64 rows into ``gaussians`` and their
    # (K, 3) float32 side colours (view_colors.ViewColors.side), seen away from the source view
    side_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    side_colors: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))

    def view_sides(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows (K,) int64 increasing, colours (K, 3) float32): what a view away from the source one
        shows instead of the refined colours (view_colors.py): the grazing columns' side colours,
        then the ring (rows n_front..N) with the colours it is built with. The ring is hidden at
        the source view but at the outline, where the photo refinement paints it with the matte's
        soft edge; turned, that edge's background showed along the shoulders' top."""
        ring = np.arange(self.n_front, len(self.gaussians), dtype=np.int64)
        return (np.concatenate([self.side_rows, ring]),
                np.concatenate([self.side_colors, self.gaussians.colors[ring]]).astype(np.float32))

    def take(self, keep: np.ndarray) -> "BodyResult":
        """The result with only the ``keep`` (N,) bool Gaussians (the side rows renumbered)."""
        new_index = np.cumsum(keep) - 1
        ok = keep[self.side_rows]
        return BodyResult(self.gaussians.take(keep), self.weights[keep], self.front_depth,
                          int(keep[: self.n_front].sum()), new_index[self.side_rows[ok]].astype(np.int64),
                          self.side_colors[ok])


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


def _inner_fill(photo: np.ndarray, source: np.ndarray, rim_px: int, sigma_px: float) -> np.ndarray:
    """(H, W, 3) float32: ``photo`` inside ``source`` eroded by ``rim_px`` (>= 1) pixels, and elsewhere (the
    rim and everything outside) the nearest such inner pixel's colour low-passed by ``sigma_px``. A
    portrait matte's edge is soft: its outermost pixels mix in the background (d12's orange cabinet
    over the sweater's shoulders); the nearest-pixel fill alone repeats one pixel along its line
    to the boundary (stripes across a turned flank), the low-pass keeps only the interior's shade.
    Falls back to ``_fill_from(photo, source)`` when the erosion leaves nothing."""
    from scipy.ndimage import binary_erosion

    # the crop's own border is no outline (a torso cut off by the frame runs on beyond it)
    inner = binary_erosion(source, iterations=max(int(rim_px), 1), border_value=1)
    if not inner.any():
        return _fill_from(photo, source)
    smooth = blur(_fill_from(photo, inner), sigma_px)
    return np.where(inner[..., None], photo, smooth).astype(np.float32)


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


# where the ring takes over from the front grid: the angle round the ellipse (0 = facing the
# camera) past which one of the grid's pixel columns spans more than SIDE_STRETCH times its own
# width of the surface: tan(phi) = sqrt(SIDE_STRETCH^2 - 1) * half-width / depth
SIDE_STRETCH = 1.5
# the ring lies this many of its Gaussians' std-devs inside the surface: the front grid's discs,
# shrunk and soft at the silhouette, let a ring on the surface through at the source view (the
# astronaut's body SSIM there, behind the head, 0.867 without the ring; 0.857 at 1, 0.869 at 2,
# 0.871 at 3; no gaps at +-60 deg and behind at any of them)
RING_INSET = 2.0
# the share of the seen columns, from each side inwards, that the ring's texture continues: the
# whole row carried a V-neck's skin and the chest's print round to the middle of the back
RING_SOURCE = 0.25


# the texture the ring and the side colours continue is taken this many pixels (at the 512 crop)
# inside the clothes' outline: on the short rows of the shoulders' top the continued columns are
# all outline, whose soft matte edge mixed in the background (a beige-orange ridge along d12's
# shoulders at +-30-45 deg, brown stripes from its wall; the turtleneck's rim by the sample's neck
# a patch of skin colour); RIM_BLUR_PX low-passes what fills the rim and beyond from inside
RIM_PX = 3
RIM_BLUR_PX = 3.0


# the front grid's columns beyond this angle round the ellipse (0 = facing the camera) carry side
# colours, and the texture the ring and they continue is taken from inside it: a column there spans
# 1.6 times its width of the surface or more (the ring takes over at 1.5 times its own spacing,
# SIDE_STRETCH, about 66 deg on a torso half as deep as wide)
SIDE_VIEW_DEG = 50.0


def _arc(a: np.ndarray, b: np.ndarray, phi0: np.ndarray, phi1: np.ndarray, n: int = 33) -> np.ndarray:
    """Arc length (metres) along ellipses x = a sin(phi), z = -b cos(phi) from phi0 to phi1 (all
    broadcast to one shape), by the trapezoid rule over ``n`` points."""
    a, b, phi0, phi1 = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (a, b, phi0, phi1)))
    t = phi0[..., None] + (phi1 - phi0)[..., None] * np.linspace(0.0, 1.0, n)
    ds = np.hypot(a[..., None] * np.cos(t), b[..., None] * np.sin(t))
    return (0.5 * (ds[..., 1:] + ds[..., :-1]) * np.diff(t, axis=-1)).sum(-1)


def _side_angles(a, b) -> tuple[np.ndarray, np.ndarray]:
    """(phi_s, phi_v) for ellipses of half-width ``a`` and depth ``b`` (metres, scalars or arrays):
    where the ring takes over from the front grid (SIDE_STRETCH) and where the photo's texture stops
    being trusted (SIDE_VIEW_DEG, never beyond phi_s), radians round the ellipse from facing the camera."""
    phi_s = np.arctan(np.sqrt(SIDE_STRETCH ** 2 - 1.0) * np.asarray(a, np.float64) / np.maximum(b, 1e-9))
    return phi_s, np.minimum(np.radians(SIDE_VIEW_DEG), phi_s)


# the two sides' continuations (torso_texture.py) meet at the back of each ring row, cross-faded over
# this share of the ring's arc either side of its middle (each side's map reaches that far)
BACK_BLEND = 0.25


def _ring_row(xc: float, a: float, b: float, zc: float, y: float, spacing: float,
              inset: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One row of the torso's ring: the ellipse (centre (xc, zc), half-axes a across and b deep,
    camera metres, at height y) beyond the front grid's reach, from +phi_s (where a grid column
    spans SIDE_STRETCH times its width of the surface) round the back to -phi_s, at ``spacing``
    metres of arc, ``inset`` metres inside the surface (so the front grid covers it at the source
    view and its Gaussians end at the silhouette). Where its colours come from: each point lies
    ``beyond`` metres of arc past the right side's SIDE_VIEW_DEG point (+phi_v, where the photo's
    texture stops being trusted: the grazing band up to phi_s is the front grid's, continued the
    same way) and past the left one's, and takes the right side's continuation with weight w_r (1
    up to BACK_BLEND of the arc before the back's middle, 0 as far after it).
    -> points (n, 3), angles phi (n,) (0 = facing the camera, -pi..pi), arcs beyond the right and the
    left end (n,) metres, w_r (n,)."""
    phi_s, phi_v = (float(v) for v in _side_angles(a, b))
    inset = min(inset, 0.5 * min(a, b))  # a row narrower than the inset keeps its own ellipse's shape
    # arc length along the ellipse from phi_s round the back to -phi_s (2 pi - phi_s): dense table
    t = np.linspace(phi_s, 2 * np.pi - phi_s, 721)
    ds = np.hypot(a * np.cos(t), b * np.sin(t))
    arc = np.concatenate([[0.0], np.cumsum(0.5 * (ds[1:] + ds[:-1]) * np.diff(t))])
    n = max(int(arc[-1] / max(spacing, 1e-9)), 2)
    s = (np.arange(n) + 0.5) * arc[-1] / n
    phi = np.interp(s, arc, t)
    phi = np.where(phi > np.pi, phi - 2 * np.pi, phi)
    band = float(_arc(a, b, phi_v, phi_s))
    half_blend = max(BACK_BLEND * arc[-1], 1e-12)
    x = np.clip((s - 0.5 * arc[-1] + half_blend) / (2 * half_blend), 0.0, 1.0)
    w_r = 1.0 - x * x * (3 - 2 * x)                                # smoothstep across the back's middle
    pts = np.stack([xc + (a - inset) * np.sin(phi), np.full(n, y), zc - (b - inset) * np.cos(phi)], 1)
    return pts, phi, band + s, band + (arc[-1] - s), w_r


def _side_maps(img: np.ndarray, rows_ok: np.ndarray, xc: np.ndarray, half: np.ndarray, depth: np.ndarray,
               cx: float, px_m: float, first: float, pitch: float) -> tuple[SideMap, SideMap]:
    """The right and the left side's continuations (torso_texture.side_map) of the clothes ``img``
    (H, W, 3) on the ``rows_ok`` (H,) rows of the torso, whose ellipses have centres ``xc``, half-widths
    ``half`` and depths ``depth`` (H,) camera metres: each from its SIDE_VIEW_DEG point outwards,
    continuing the outer RING_SOURCE of the row's seen columns, as far round as the ring takes
    it (past the back's middle by BACK_BLEND of the ring's arc)."""
    a, b = np.maximum(half, 1e-6), np.maximum(depth, 1e-6)
    phi_s, phi_v = _side_angles(a, b)
    end = a * np.sin(phi_v) / px_m                                   # (H,) centre to the end point, pixels
    width = np.maximum(RING_SOURCE * 2.0 * end, 1.0)
    reach = (_arc(a, b, phi_v, phi_s) + (0.5 + BACK_BLEND) * _arc(a, b, phi_s, 2 * np.pi - phi_s)) / px_m
    centre = xc / px_m + cx
    return tuple(side_map(img, rows_ok, centre + side * end, side, width, reach, first, pitch)
                 for side in (1.0, -1.0))


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
    # clothes the photo shows over the head model's neck (a shirt's front: the model's neck runs on
    # below the collar), and a bare chest there, belong to the torso; painted on the head's neck
    # column they parted from the torso at every turned view, a flat band with a seam down each side
    clothes = regions.torso_pixels()
    covered = clothes | (regions.hair & (rows >= regions.chin_row))
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
    # body below the chin outside the head, so a collar above it (regions.collar_to_body) and the
    # chest over the head's neck add Gaussians at the same density instead of thinning the torso
    below_chin = int((front & (rows >= regions.chin_row) & ~regions.head).sum())
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
    colors_img = blur(_fill_from(photo, clothes), opts.color_blur * step)
    c_front = bilinear(colors_img, uv.astype(np.float32))
    # what the ring and the side colours continue: the same, but the outline's rim filled from inside
    scale = W / 512.0
    continued_img = blur(_inner_fill(photo, clothes, round(RIM_PX * scale), RIM_BLUR_PX * scale),
                         opts.color_blur * step)
    # each side's clothes continued beyond its SIDE_VIEW_DEG point (torso_texture.py), one map a side
    maps = _side_maps(continued_img, front.any(1), xc, half, depth, camera.cx, px_m, float(first), step)
    # the grazing columns' side colours: their side's continuation over the arc beyond its end
    _, phi_v = _side_angles(half[iv], depth[iv])
    side_rows = np.flatnonzero(np.abs(phi_f) > phi_v)
    r_s, right = iv[side_rows], phi_f[side_rows] > 0
    beyond = _arc(half[r_s], depth[r_s], phi_v[side_rows], np.abs(phi_f[side_rows])) / px_m
    side_colors = np.zeros((len(side_rows), 3), np.float32)
    for on_side, continued in ((right, maps[0]), (~right, maps[1])):
        side_colors[on_side] = continued.sample(uv[side_rows[on_side], 1], beyond[on_side])
    o_front = np.clip(bilinear(mask.astype(np.float32), uv.astype(np.float32)), 0, 1) * opts.opacity

    # the ring: the rest of each ellipse (its sides and back), every back_spacing * step rows and
    # metres of arc. The front grid samples the photo's columns, which near the silhouette span
    # ever more of the surface (SIDE_STRETCH times its own width from phi_s on): from there the ring
    # takes over, so a side view shows a whole torso, not the stretched silhouette pixels
    bstep = opts.back_spacing * step
    brow = np.arange(first + bstep / 2, H, bstep)
    # only rows that show body (or hair on it): above the collar the neck's rows would get the
    # nearest body pixel's colour, a band of clothing round the back of the neck up to the neck
    # joint (the dark strip behind the astronaut's neck at +60 deg yaw); the head's neck is there
    brow = brow[front.any(1)[np.minimum(brow.astype(int), H - 1)]]
    # the ring's spacing is twice the front's: its maps low-passed by half a ring step
    ring_maps = [dataclasses.replace(m, colors=blur(m.colors, 0.5 * opts.back_spacing)) for m in maps]
    sb = opts.coverage * bstep * px_m
    ring = [_ring_row(xc[r], half[r], depth[r], zc, (v - camera.cy) / camera.fy * zc, bstep * px_m, RING_INSET * sb)
            for v, r in zip(brow, np.minimum(brow.astype(int), H - 1))]  # one row of the ellipse at a time
    if ring:
        p_back, phi_b, d_r, d_l, w_r = (np.concatenate(part) for part in zip(*ring))
        v_b = np.repeat(brow, [len(row[1]) for row in ring])
        r_b = np.minimum(v_b.astype(int), H - 1)
        w_r = w_r[:, None]
        c_back = w_r * ring_maps[0].sample(v_b, d_r / px_m) + (1 - w_r) * ring_maps[1].sample(v_b, d_l / px_m)
    else:
        p_back, phi_b, r_b, c_back = np.zeros((0, 3)), np.zeros(0), np.zeros(0, int), np.zeros((0, 3))
    fr_back = _ellipse_frames(phi_b, half[r_b], depth[r_b], None)

    p_cam = np.concatenate([p_front, p_back])
    frames_cam = np.concatenate([fr_front, fr_back])
    world = (p_cam - t) @ R                                     # R^T (p - t)
    frames_world = np.einsum("ij,njk->nik", R.T, frames_cam)
    below = (p_cam[:, 1] / p_cam[:, 2] * camera.fy + camera.cy - neck_row) * px_m  # metres below the neck
    weights = neck_global_weights(NECK_FOLLOW * np.clip(1.0 - below / opts.neck_fade_m, 0.0, 1.0))
    rest = to_rest(world, weights, A)
    quats = quats_to_rest(frames_world, weights, A)
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
                      front_depth.astype(np.float32), len(p_front), side_rows.astype(np.int64),
                      np.clip(side_colors, 0.0, 1.0).astype(np.float32))


def _empty() -> GaussianSet:
    z = np.zeros((0, 3), np.float32)
    return GaussianSet(z, np.zeros((0, 4)), z, np.zeros(0), z)
