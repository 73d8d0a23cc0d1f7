"""Hair volume: the portrait's hair silhouette becomes a 3D shell of Gaussians around the skull.

A one-view visual hull with a shape prior, built on a voxel grid in the head's rest frame (the
neck joint's frame, so the hull moves with the head):

- Silhouette: a voxel is a candidate only where it projects (source pose) into hair or head pixels.
- Cross-sections: per rest height, the hair+head silhouette's run through the skull's centre gives
  the half-width ``w`` and centre; the hull's cross-section is an ellipse of that half-width and a
  depth half-axis behind the centre ``skull half-depth + back_ratio * max(w - skull half-width,
  min_thickness)``: the hair shell behind the head is about as thick as the silhouette shows it
  beside the head; in front of the centre the hull reaches the temples' depth plus that thickness (left/right symmetry carried
  round the back), and never thinner than ``min_thickness_m`` (no bald shell). The silhouette's full
  width reaches only ``side_depth`` skull half-depths behind the widest plane; further back the
  cross-section is the skull's own grown by the back thickness, so a turned head's outline hugs
  the skull behind as a real one does. Above the skull (tall hair, buns) the cross-section is
  ``round_ratio`` as deep as it is wide. From half the skull's depth back the hull also covers the
  head model's surface grown by ``min_back_m`` (every row's whole ring, taken on the mesh's faces),
  so no bald head shows through the back of the hair.
- Rows with hair: from the top of the hair down to the lowest hair row of the central run, and at
  least to the nape (mouth level) behind the ears: short sides still have hair at the back; below
  the chin only the half behind the neck is kept (long hair hangs down the back).
- Carving: thin fins along the source rays are opened away; nothing in front of the face (voxels projecting into the head mesh in front of its depth
  buffer, or in front of the ears' plane), so the face is never covered.
Gaussians: the hull's outer shell (``shell_voxels`` thick) at voxel spacing, plus a fine layer on the
visible hair pixels at their hull depth (pixel detail at the source view; hair lying on the body
sits just in front of the torso). Colours: the photo where the source view sees the Gaussian (hair
pixels only: the texture image holds no background); the rest (back, sides) samples the
column-continued hair texture (texture.continue_columns) at the point mirrored front-to-back
through the skull's centre, so the back repeats the strands seen above the face and beside it, over
the hair's regional mean colour (texture.regional_lowpass: no band of the fringe's brightness).
Skinning: the neck joint (the head) above the chin, blending over ``shoulder_blend_m`` below it into
the torso's weights (global with a NECK_FOLLOW share of the neck): hair on the shoulders follows
neck and shoulders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..rotations import matrix_to_quat
from .gaussians import GaussianSet
from .imageops import bilinear, blur
from .posing import NECK_FOLLOW, lbs_numpy, shaped_vertices
from .regions import PortraitRegions
from .skinning import NECK, neck_global_weights, to_rest
from .texture import continue_columns, regional_lowpass

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams
    from ..render.camera import Camera
    from ..render.depth import DepthBuffer


@dataclass
class HairOptions:
    voxel_m: float = 0.003          # hull voxel edge (metres): about 5 px at the source view
    min_thickness_m: float = 0.012  # thinnest hair shell over the skull
    round_ratio: float = 0.9        # depth / width of hair cross-sections above the skull
    # hair thickness behind the skull / beside it: hair lies flatter behind the head than the
    # silhouette shows it beside it; at 0.7 d12's big hair swung out beyond the clip's outline at
    # head turns (self-reenactment, same driving, 0.35 against 0.7: alpha IoU d12 0.8591 -> 0.8604,
    # d3 0.9080 -> 0.9094; PSNR full d12 18.34 -> 18.36, d3 22.95 -> 22.97 dB)
    back_ratio: float = 0.35
    # behind the skull (from half its depth back) the hull covers the head model's surface grown by
    # this much (every row's whole ring, ``surface_points``): the hull keeps a voxel only where its centre is
    # inside (up to a voxel short of the boundary) and the head mesh's Gaussians reach about 3 mm
    # (2 sigma) out of its surface, so at back_ratio * min_thickness_m (4 mm) the bald head showed
    # through the back of the hair at the nape
    min_back_m: float = 0.006
    # the silhouette's width beside the skull (curls, puffs above the ears) reaches only this far
    # (times the skull's half-depth) behind the widest plane; elsewhere behind it the hull is the
    # skull's own cross-section grown by the back thickness. A full ellipse of the silhouette's
    # half-width all round filled the back quadrants, and turned 30 deg the hull stood out 2-3 cm
    # past the clip's outline (d12's curls, d3's far side). 0 = that full ellipse.
    side_depth: float = 0.5
    shell_voxels: int = 1           # shell thickness kept as Gaussians (hidden interior dropped)
    face_plane_m: float = 0.0       # rest z of the ears' plane: no hull in front of it over the head
    fine_step_px: float = 2.0       # fine visible layer: pixel grid step
    # the fine layer's depth map: the shell's nearest voxel per pixel, low-passed by a Gaussian of
    # this many voxels (0: none). Unsmoothed it steps by whole voxels (3 mm), and a head turned
    # 9 deg shifted each step's pixels against its neighbours' (d3, self-reenactment PSNR full
    # +0.03 dB, SSIM +0.0015 with 1 voxel; the source view -0.007 dB)
    fine_depth_smooth: float = 1.0
    # the share of the refinement's colour change the hair keeps (build.refine_avatar): the
    # refinement fits the source view through the hull's overlapping layers (the fine layer's
    # footprints, the shell and the scalp's paint behind it) and overshoots the photo's own colours
    # (57 % of d3's hair Gaussians beyond the colours of the 5x5 pixels around them), a pattern of
    # light and dark that only the source view blends away: turned 9 deg, d3's hair showed braids.
    # 0.5 against 1 with the smoothing above (eval page, thirty-sixth session): self-reenactment PSNR
    # full +0.15 dB (d3 +0.34, d12 +0.10, d19 -0.03, d0 -0.06), SSIM full +0.005; the source view's
    # PSNR full -1.0 dB (-0.07 to -2.3 per photo: what it scored as detail was the overshoot)
    refined_share: float = 0.5
    # ... but all of it in front of the head mesh at the source view, up to over_head_m
    # (build.hair_over_head): the scalp's and a fringe's hair lies on the skull and takes the place of
    # the mesh's paint, which kept all (with half, photo 18's highlighted quiff lost 0.8 dB at the
    # source view once the scalp's light strands were hair; self-reenactment PSNR full -0.013 dB,
    # SSIM full -0.001 with all)
    scalp_refined_share: float = 1.0
    over_head_m: float = 0.06
    on_body_m: float = 0.012        # hair lying on the torso sits this far in front of it
    shoulder_blend_m: float = 0.08  # below the chin, weights blend to the torso's over this drop
    coverage: float = 0.75          # std-dev / spacing (fine layer)
    color_blur: float = 0.25        # fine layer: the photo's low-pass std-dev / grid step before sampling
    strand_width: float = 0.5       # shell Gaussians' std-dev across the strands / voxel
    strand_length: float = 1.2      # ... and along them (down the head) / voxel
    opacity: float = 0.97
    # hair seen over the scalp (regions.scalp) is hair, not paint: the hull may stand in front of
    # the head mesh there, so a head tilted back shows hair above the forehead, not a bald scalp
    scalp_shell: bool = True
    fringe_m: float = 0.005         # a fringe over the forehead lies on it: its hair this far in front at most
    min_hair_px: int = 60           # fewer hair pixels: no hair part
    # the unseen shell's colour: the continued texture's detail (finer than fill_detail_m) over the
    # hair's regional mean (a Gaussian of fill_lowpass_m over the hair texture's pixels)
    fill_lowpass_m: float = 0.022
    fill_detail_m: float = 0.0045


@dataclass
class HairResult:
    """gaussians at rest; weights (N, 5) float32; n_fine: the first n_fine are the visible layer."""

    gaussians: GaussianSet
    weights: np.ndarray
    n_fine: int


def _empty(H: int = 0) -> HairResult:
    z = np.zeros((0, 3), np.float32)
    return HairResult(GaussianSet(z, np.zeros((0, 4)), z, np.zeros(0), z), np.zeros((0, 5), np.float32), 0)


def surface_points(vertices: np.ndarray, faces: np.ndarray, spacing_m: float, max_splits: int = 12) -> np.ndarray:
    """(M, 3) points on the mesh: the vertices and a barycentric grid on every face, fine enough that
    most faces (their 95th percentile edge) get a point at least every ``spacing_m`` metres.
    vertices (V, 3) metres; faces (F, 3) int."""
    tri = vertices[np.asarray(faces, np.int64)]                       # (F, 3, 3)
    edges = np.linalg.norm(tri[:, [1, 2, 0]] - tri, axis=-1)
    n = int(np.clip(np.ceil(np.percentile(edges, 95) / max(spacing_m, 1e-9)), 1, max_splits))
    i, j = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    keep = i + j <= n
    bary = np.stack([i[keep], j[keep], n - i[keep] - j[keep]], 1) / n  # (K, 3)
    return np.concatenate([vertices, np.einsum("kc,fcd->fkd", bary, tri).reshape(-1, 3)])


def _skull_profile(rest: np.ndarray, ys: np.ndarray, bin_m: float) -> tuple[np.ndarray, ...]:
    """Per rest height ys (ny,): half-width, half-depth, centre x, centre z of the head mesh
    (0 half-axes where the mesh has no point), and the front (max z) of its sides (points more
    than 0.6 half-widths off the centre: temples and cheeks, not the nose). rest (M, 3): the mesh's
    vertices, or surface_points for every row's whole ring (the stand-in's vertex rows lie about
    3-7 mm apart, so some ``bin_m`` rows hold part of a ring only, and their half-depth and centre
    are off: the hull's back fell inside the skull there, a line of bald head across the hair)."""
    idx = np.floor((rest[:, 1] - ys[0]) / bin_m + 0.5).astype(int)
    ok = (idx >= 0) & (idx < len(ys))
    idx, r = idx[ok], rest[ok]
    ny = len(ys)
    # per axis on contiguous 1-D rows: numpy's ufunc.at takes its fast path only for a 1-D index
    # into a 1-D array without a cast (exact: a minimum or maximum in any order is the same)
    lo = np.full((2, ny), np.inf)
    hi = np.full((2, ny), -np.inf)
    for k, axis in enumerate((0, 2)):
        np.minimum.at(lo[k], idx, r[:, axis])
        np.maximum.at(hi[k], idx, r[:, axis])
    lo, hi = lo.T, hi.T
    has = np.isfinite(lo[:, 0])
    lo[~has], hi[~has] = 0.0, 0.0
    half = 0.5 * (hi - lo)
    centre = 0.5 * (hi + lo)
    # rows without vertices (above the skull) take the nearest row's centre
    if has.any():
        rows = np.flatnonzero(has)
        near = rows[np.clip(np.searchsorted(rows, np.arange(ny)), 0, len(rows) - 1)]
        centre = np.where(has[:, None], centre, centre[near])
    else:
        centre = np.zeros((ny, 2))
    side = np.abs(r[:, 0] - centre[idx, 0]) > 0.6 * half[idx, 0]
    side_front = np.full(ny, -np.inf)
    np.maximum.at(side_front, idx[side], r[side, 2])
    side_front = np.where(np.isfinite(side_front), side_front, centre[:, 1] + half[:, 1])
    return half[:, 0], half[:, 1], centre[:, 0], centre[:, 1], side_front


def _project(points: np.ndarray, C: np.ndarray, camera: "Camera") -> tuple[np.ndarray, np.ndarray]:
    """Rest points (..., 3) through the 4x4 rest->camera matrix C -> pixel uv (..., 2), depth (...)."""
    pc = points @ C[:3, :3].T + C[:3, 3]
    z = pc[..., 2]
    uv = np.stack([pc[..., 0] / z * camera.fx + camera.cx, pc[..., 1] / z * camera.fy + camera.cy], -1)
    return uv, z


def _lookup(img: np.ndarray, uv: np.ndarray, fill) -> np.ndarray:
    """Nearest-pixel lookup of (H, W) ``img`` at uv (..., 2); ``fill`` outside the image."""
    H, W = img.shape[:2]
    iu = np.floor(uv[..., 0]).astype(np.int64)
    iv = np.floor(uv[..., 1]).astype(np.int64)
    inside = (iu >= 0) & (iu < W) & (iv >= 0) & (iv < H)
    # one gather at flat indices (pixel 0 stands in outside) and one select, instead of boolean-mask
    # gathers and a masked scatter over the (ny, nx, nz) grid: the same values, half the CPU
    flat = np.where(inside, iv * W + iu, 0)
    return np.where(inside, img.reshape(H * W)[flat], np.asarray(fill, img.dtype))


def _central_runs(S: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S (ny, nx) bool, c (ny,) centre column -> left, right (inclusive) of the run through c and
    whether c is in a run at all."""
    ny, nx = S.shape
    cols = np.arange(nx)[None, :]
    gap_left = np.where(~S & (cols <= c[:, None]), cols, -1).max(1)
    gap_right = np.where(~S & (cols >= c[:, None]), cols, nx).min(1)
    on = S[np.arange(ny), c]
    return gap_left + 1, gap_right - 1, on


def build_hair(photo: np.ndarray, mask: np.ndarray, regions: PortraitRegions, camera: "Camera",
               model: "HeadModel", params: "HeadParams", head_depth: "DepthBuffer",
               body_front_depth: np.ndarray, opts: HairOptions | None = None) -> HairResult:
    """Hair Gaussians at rest.

    photo (H, W, 3) float32 [0, 1]; mask (H, W) float32 portrait mask; regions: portrait_regions;
    params: the source frame (T=1); head_depth: the head mesh's source-view depth buffer;
    body_front_depth (H, W) float32 camera z of the torso front (inf: none). Empty when the photo
    shows (almost) no hair.
    """
    from scipy.ndimage import binary_dilation, binary_erosion, binary_opening, distance_transform_edt

    from ..head.params import HeadParams

    opts = opts or HairOptions()
    H, W = mask.shape
    if regions.hair.sum() < opts.min_hair_px:
        return _empty()
    neutral = HeadParams(params.shape, np.zeros_like(params.expr), params.pose, params.transl)
    A = lbs_numpy(model, neutral)[2][0].astype(np.float64)          # (5, 4, 4)
    An = A[NECK]
    C = camera.viewmat.astype(np.float64) @ An                       # rest (head frame) -> camera
    rest = shaped_vertices(model, params.shape).astype(np.float64)
    vox = opts.voxel_m

    # grid bounds: the hair+head silhouette's box unprojected at the head's depth, in the head frame
    S_img = binary_dilation(regions.hair | regions.side | regions.head, iterations=1)
    vs, us = np.nonzero(S_img)
    zh = float(np.median(head_depth.depth[np.isfinite(head_depth.depth)]))
    box_uv = np.array([[us.min(), vs.min()], [us.max() + 1, vs.min()], [us.min(), vs.max() + 1],
                       [us.max() + 1, vs.max() + 1]], np.float64)
    cam_pts = np.stack([(box_uv[:, 0] - camera.cx) / camera.fx * zh, (box_uv[:, 1] - camera.cy) / camera.fy * zh,
                        np.full(4, zh)], 1)
    Cinv = np.linalg.inv(C)
    box_rest = cam_pts @ Cinv[:3, :3].T + Cinv[:3, 3]
    pad = 3 * vox
    x0, x1 = box_rest[:, 0].min() - pad, box_rest[:, 0].max() + pad
    y0, y1 = box_rest[:, 1].min() - pad, box_rest[:, 1].max() + pad
    ys = np.arange(y0, y1, vox)
    xs = np.arange(x0, x1, vox)
    hx, hz, cx, cz, side_front = _skull_profile(rest, ys, vox)
    # the same from the mesh's surface: every row's whole ring (the vertices' rows leave some of the
    # grid's rows with part of one). Only the cover behind the skull (below) uses it: the hull's
    # shape keeps the vertices' profile, which the clips' figures and the tracker's reading of the
    # face beside the hair were measured with (the surface's everywhere cost the turned clips
    # 0.1 dB and moved the calibrated smile reading on an open jaw, eval page, twenty-seventh session)
    s_hx, s_hz, s_cx, s_cz, _ = _skull_profile(surface_points(rest, model.faces, 0.5 * vox), ys, vox)

    # frontal slice (z = the skull centre of the row): the silhouette run through the skull axis
    head_cx = float(np.median(rest[:, 0]))
    gx, gy = np.meshgrid(xs, ys)                                     # (ny, nx)
    front_pts = np.stack([gx, gy, np.broadcast_to(cz[:, None], gx.shape)], -1)
    uv_f, _ = _project(front_pts, C, camera)
    S = _lookup(S_img, uv_f, False)
    # the scalp's hair counts too: a photo cut at the top of the head shows no hair beyond the head
    # model in its top rows, and those rows had no hull (photo 17's crown stayed paint)
    scalp_hair = regions.scalp if opts.scalp_shell and regions.scalp is not None else False
    hair_f = _lookup(regions.hair | scalp_hair, uv_f, False)
    c_idx = np.full(len(ys), int(np.clip(np.searchsorted(xs, head_cx), 0, len(xs) - 1)))
    left, right, on = _central_runs(S, c_idx)
    col = np.arange(len(xs))[None]
    run_hair = on & np.where((col >= left[:, None]) & (col <= right[:, None]), hair_f, False).any(1)
    if not run_hair.any():
        return _empty()
    # rows with hair: from the top of the hair to the lowest hair row of the central run
    rows_on = np.zeros(len(ys), bool)
    lo_row, hi_row = np.flatnonzero(run_hair).min(), np.flatnonzero(run_hair).max()
    # hair behind the head reaches down to the nape even where the sides are cut short
    if np.isfinite(regions.nape_row):
        nape_y = _chin_height(regions.nape_row, Cinv, camera, zh)
        lo_row = min(lo_row, int(np.clip(np.searchsorted(ys, nape_y), 0, lo_row)))
    rows_on[lo_row:hi_row + 1] = on[lo_row:hi_row + 1]
    half_w = np.where(rows_on, 0.5 * (right - left + 1) * vox, 0.0)
    mid_x = np.where(rows_on, x0 + 0.5 * (left + right) * vox, head_cx)
    thick = np.maximum(half_w - hx, opts.min_thickness_m)
    depth = np.where(hx > 0, hz + opts.back_ratio * thick, opts.round_ratio * half_w)
    # in front of the skull's centre the hull reaches the temples/cheeks plus the hair's thickness,
    # not the nose: the silhouette of a head lies about at its widest plane
    depth_front = np.where(hx > 0, np.maximum(side_front - cz, 0.0) + thick, opts.round_ratio * half_w)
    from scipy.ndimage import uniform_filter1d

    depth = np.where(rows_on, uniform_filter1d(depth, 5, mode="nearest"), 0.0)
    depth_front = np.where(rows_on, uniform_filter1d(depth_front, 5, mode="nearest"), 0.0)
    scalp = regions.scalp if opts.scalp_shell and regions.scalp is not None else np.zeros((H, W), bool)
    # over the scalp (above the brows) the hair lies on the skull's own front, not the temples', the
    # thinnest shell's depth in front of it (hair lies along the scalp: the silhouette's width beyond
    # the skull stood out as a visor over the forehead at +-60 deg); only voxels seen over scalp hair
    # take this reach (below)
    brow_y = _chin_height(regions.brow_row, Cinv, camera, zh)
    scalp_rows = rows_on & (hx > 0) & (ys > brow_y) if scalp.any() else np.zeros(len(ys), bool)
    front_scalp = np.where(scalp_rows, np.maximum(depth_front, hz + opts.min_thickness_m), depth_front)
    zmin = float(min(np.min(np.where(rows_on, cz - depth, np.inf)),
                     np.min(np.where(rows_on & (s_hx > 0), s_cz - s_hz - opts.min_back_m, np.inf)))) - pad
    zmax = float(np.max(np.where(rows_on, cz + front_scalp, -np.inf))) + pad
    zs = np.arange(zmin, zmax, vox)

    # occupancy on the (ny, nx, nz) grid. The cross-sections below need only the grid's axes
    # (broadcast, not meshgrids); the projection and the image look-ups run on the voxels inside
    # them alone (a fraction of the grid): the same values per voxel, a fraction of the work
    X, Y, Z = xs[None, :, None], ys[:, None, None], zs[None, None, :]
    # voxel centres stay inside the silhouette by about their Gaussians' reach (longer down the
    # strands): the render's edge stays at the photo's edge
    vox_px = vox * camera.fx / zh
    rx = max(1, int(round(0.8 * opts.strand_width * vox_px)))
    ry = max(1, int(round(0.8 * opts.strand_length * vox_px)))
    S_in = binary_erosion(regions.hair | regions.side | regions.head, structure=np.ones((2 * ry + 1, 2 * rx + 1), bool))
    r = np.arange(len(ys))[:, None, None]
    dz = np.where(Z > cz[r], depth_front[r], depth[r])
    ell = ((X - mid_x[r]) / np.maximum(half_w[r], 1e-6)) ** 2 + ((Z - cz[r]) / np.maximum(dz, 1e-6)) ** 2 <= 1.0
    # the scalp's reach: in front of the centre only, in the scalp rows
    reach = scalp_rows[r] & (Z > cz[r]) & ~ell & (((X - mid_x[r]) / np.maximum(half_w[r], 1e-6)) ** 2 + (
        (Z - cz[r]) / np.maximum(front_scalp[r], 1e-6)) ** 2 <= 1.0)
    if opts.side_depth > 0:
        # behind the skull: its cross-section grown by the back thickness (the same depth as the
        # full ellipse, ``depth``), joined with the silhouette's width near the widest plane
        t_b = opts.back_ratio * thick
        core = ((X - cx[r]) / np.maximum(hx + t_b, 1e-6)[r]) ** 2 + (
            (Z - cz[r]) / np.maximum(depth, 1e-6)[r]) ** 2 <= 1.0
        puff = ((X - mid_x[r]) / np.maximum(half_w[r], 1e-6)) ** 2 + (
            (Z - cz[r]) / np.maximum(opts.side_depth * hz, 1e-6)[r]) ** 2 <= 1.0
        # behind the widest plane only: narrowing the front too gained more on d3 (PSNR full +0.33
        # against +0.06 dB) but cost AKD 0.10-0.17 px on d3 and d12 (the face's outline as
        # mediapipe reads it beside a thinner temple)
        ell = np.where((hx > 0)[r] & (Z <= cz[r]), ell & (core | puff), ell)
    # behind the skull the hull covers the head's surface grown by min_back_m: where the vertices'
    # profile saw part of a ring the hull's back fell up to 5 cm inside the skull, a band of bald
    # head across the back of the hair. Only from half the skull's depth back (30 deg behind its
    # widest plane): further forward the cover made the outline of the source view and of heads
    # turned up to 30 deg (photo 09: -0.33 dB at the source view; the clips -0.04 dB)
    cover = (s_hx > 0)[r] & (Z <= (s_cz - 0.5 * s_hz)[r]) & (
        ((X - s_cx[r]) / np.maximum(s_hx + opts.min_back_m, 1e-6)[r]) ** 2 + (
            (Z - s_cz[r]) / np.maximum(s_hz + opts.min_back_m, 1e-6)[r]) ** 2 <= 1.0)
    cand = (ell | reach | cover) & rows_on[r]
    iy, ix, iz = np.nonzero(cand)                                     # the candidate voxels, C order
    P = np.stack([xs[ix], ys[iy], zs[iz]], -1)                        # (M, 3) their rest centres
    uv, zc_cam = _project(P, C, camera)
    occ_c = _lookup(S_in, uv, False)
    # voxels whose strands stay on the scalp's hair (two standard deviations off the forehead's skin;
    # the background beyond the scalp's top edge is no skin: a photo cut at the top of the head)
    on_scalp = _lookup(binary_erosion(scalp | ~regions.person, structure=np.ones((4 * ry + 1, 2 * rx + 1), bool))
                       & scalp, uv, False)
    occ_c &= ~reach[iy, ix, iz] | on_scalp
    hd = _lookup(head_depth.depth.astype(np.float64), uv, np.inf)
    if regions.fringe is not None and opts.scalp_shell:
        on_fringe = _lookup(regions.fringe, uv, False)
        occ_c &= ~(on_fringe & (zc_cam < hd - opts.fringe_m))
    # below the chin: only the half behind the neck (hair down the back)
    below_chin = uv[..., 1] > regions.chin_row
    occ_c &= ~(below_chin & (zs[iz] > cz[iy]))
    # carve the face: nothing in front of the head mesh or the ears' plane where the head is seen
    in_head = _lookup(regions.head, uv, False) & ~on_scalp
    occ_c &= ~(in_head & ((zc_cam < hd + vox) | (zs[iz] > opts.face_plane_m)))
    occ = np.zeros(cand.shape, bool)
    occ[iy, ix, iz] = occ_c
    # thin fins along the source rays (single strands, gaps beside the face) are no volume
    occ = binary_opening(occ, iterations=1)
    if not occ.any():
        return _empty()

    # outer shell; which shell voxels the source view sees (per-pixel nearest depth)
    shell = occ & ~binary_erosion(occ, iterations=opts.shell_voxels, border_value=0)
    # the opening and the shell only remove voxels: every shell voxel is a candidate
    row = np.full(cand.shape, -1, np.int64)
    row[iy, ix, iz] = np.arange(len(iy))
    k = row[shell]
    sp = P[k]
    s_uv, s_z = uv[k], zc_cam[k]
    zflat = np.full(H * W, np.inf)      # ufunc.at's fast path wants 1-D indices into a 1-D array
    zbuf = zflat.reshape(H, W)          # a view: both names are the same buffer
    foot = max(1, int(np.ceil(0.6 * vox / (zh / camera.fx))))      # voxel footprint radius, px
    iu0, iv0 = np.floor(s_uv[:, 0]).astype(int), np.floor(s_uv[:, 1]).astype(int)
    for du in range(-foot, foot + 1):                                # a few dozen offsets
        for dv in range(-foot, foot + 1):
            iu, iv = iu0 + du, iv0 + dv
            ok = (iu >= 0) & (iu < W) & (iv >= 0) & (iv < H)
            # flat 1-D pixel indices into the buffer's 1-D view: ufunc.at's fast path (a 2-D index
            # tuple takes the slow one); the same minimum
            np.minimum.at(zflat, iv[ok] * W + iu[ok], s_z[ok])
    seen_px = (regions.hair | scalp) & np.isfinite(zbuf)
    vis = _lookup(seen_px, s_uv, False) & (s_z <= _lookup(zbuf, s_uv, np.inf) + 1.5 * vox)

    # colours: photo where seen, else the column-continued hair texture at the front-back mirror,
    # its low frequencies the hair's regional mean (texture.regional_lowpass): the back's middle
    # mirrors the face's columns, where the continuation ping-pongs through the fringe alone and
    # painted a light band of it down the back of the head
    px_per_m = camera.fx / zh
    tex = regional_lowpass(continue_columns(photo, regions.hair_texture), photo, regions.hair_texture,
                           opts.fill_lowpass_m * px_per_m, opts.fill_detail_m * px_per_m)
    tex_v = blur(tex, 0.2 * vox * camera.fx / zh)
    mirror = sp.copy()
    ri = np.clip(np.round((sp[:, 1] - ys[0]) / vox).astype(int), 0, len(ys) - 1)
    mirror[:, 2] = 2 * cz[ri] - sp[:, 2]
    m_uv, _ = _project(mirror, C, camera)
    colors = np.where(vis[:, None], bilinear(tex_v, s_uv.astype(np.float32)),
                      bilinear(tex_v, m_uv.astype(np.float32)))
    seen_scalp = vis & _lookup(scalp & ~(regions.hair | regions.side), s_uv, False)
    if seen_scalp.any():  # over the scalp: the photo itself (no background to keep out)
        colors[seen_scalp] = bilinear(blur(photo, 0.2 * vox * camera.fx / zh), s_uv[seen_scalp].astype(np.float32))
    n_shell = len(sp)

    # fine layer: visible hair pixels at the hull's depth (in front of the torso where hair lies on it)
    zfill = zbuf.copy()
    if np.isfinite(zfill).any():
        _, (iy, ix) = distance_transform_edt(~np.isfinite(zfill), return_indices=True)
        zfill = zfill[iy, ix]
        if opts.fine_depth_smooth > 0:
            zfill = smooth_depth(zfill, np.isfinite(zbuf), opts.fine_depth_smooth * vox * camera.fx / zh)
    on_body = np.isfinite(body_front_depth) & (np.arange(H)[:, None] + 0.5 > regions.chin_row)
    zpix = np.where(on_body, np.minimum(zfill, body_front_depth - opts.on_body_m), zfill)
    st = opts.fine_step_px
    uu, vv = np.meshgrid(np.arange(st / 2, W, st), np.arange(st / 2, H, st))
    fuv = np.stack([uu.ravel(), vv.ravel()], 1)
    fi, fj = np.minimum(fuv[:, 1].astype(int), H - 1), np.minimum(fuv[:, 0].astype(int), W - 1)
    attached = regions.hair | regions.side                           # ears beside the head ride along
    # the scalp's hair where the hull stands in front of the head mesh
    attached = attached | (scalp & (zbuf < head_depth.depth))
    keep = attached[fi, fj] & np.isfinite(zpix[fi, fj])
    fuv, fi, fj = fuv[keep], fi[keep], fj[keep]
    fz = zpix[fi, fj]
    f_cam = np.stack([(fuv[:, 0] - camera.cx) / camera.fx * fz, (fuv[:, 1] - camera.cy) / camera.fy * fz, fz], 1)
    f_rest = f_cam @ Cinv[:3, :3].T + Cinv[:3, 3]
    f_col = bilinear(blur(continue_columns(photo, regions.hair_texture | regions.side), opts.color_blur * st),
                     fuv.astype(np.float32))                         # hair/side pixels only: no background
    # over the scalp no background is near: the photo itself, as the head mesh's paint takes it
    over_scalp = scalp[fi, fj] & ~(regions.hair | regions.side)[fi, fj]
    if over_scalp.any():
        f_col[over_scalp] = bilinear(blur(photo, opts.color_blur * st), fuv[over_scalp].astype(np.float32))
    f_op = np.clip(bilinear(mask.astype(np.float32), fuv.astype(np.float32)), 0, 1) * opts.opacity

    # skinning: head above the chin, the torso's neck share below (by the head-frame height)
    head_pts = np.concatenate([f_rest, sp])
    chin_y = _chin_height(regions.chin_row, Cinv, camera, zh)
    drop = np.clip((chin_y - head_pts[:, 1]) / opts.shoulder_blend_m, 0.0, 1.0)
    weights = neck_global_weights(1.0 - (1.0 - NECK_FOLLOW) * drop)
    world = head_pts @ An[:3, :3].T + An[:3, 3]
    means = to_rest(world, weights, A)

    # shell Gaussians are strands: long down the head (rest y), thin across it (x, z)
    sv = np.array([[opts.strand_width * vox, opts.strand_length * vox, opts.strand_width * vox]])
    # fine Gaussians are needles along the source ray: a solid layer seen from the side too
    edge = distance_transform_edt(attached)[fi, fj]                  # fine Gaussians shrink at the edge
    s_fe = np.clip(0.5 * edge, 0.5, opts.coverage * st) * zh / camera.fx
    scales = np.concatenate([np.stack([s_fe, s_fe, np.full(len(s_fe), 0.5 * vox)], 1),
                             np.tile(sv, (n_shell, 1))])
    ray_frame = matrix_to_quat(Cinv[None, :3, :3])                  # camera axes in the head frame
    quats = np.concatenate([np.tile(ray_frame, (len(f_rest), 1)),
                            np.tile(matrix_to_quat(np.eye(3)[None]), (n_shell, 1))])
    opac = np.concatenate([f_op, np.full(n_shell, opts.opacity, np.float32)])
    cols = np.clip(np.concatenate([f_col, colors]), 0.0, 1.0)
    return HairResult(GaussianSet(means, quats, scales, opac, cols), weights, len(f_rest))


def smooth_depth(depth: np.ndarray, known: np.ndarray, sigma_px: float) -> np.ndarray:
    """(H, W) float64 ``depth`` (metres, finite everywhere) low-passed by a Gaussian of ``sigma_px``
    over the ``known`` (H, W) bool pixels only (normalised convolution); pixels with no known
    pixel near keep their depth."""
    from scipy.ndimage import gaussian_filter

    w = known.astype(np.float64)
    num = gaussian_filter(np.where(known, depth, 0.0), sigma_px, mode="nearest")
    den = gaussian_filter(w, sigma_px, mode="nearest")
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), depth)


def _chin_height(chin_row: float, Cinv: np.ndarray, camera: "Camera", z: float) -> float:
    """Head-frame height of the chin row (the image row unprojected at the head's depth)."""
    p = np.array([0.0, (chin_row - camera.cy) / camera.fy * z, z])
    return float((Cinv[:3, :3] @ p + Cinv[:3, 3])[1])
