"""The preview render loop as it was when issue 19 was filed (main at 93f1557), kept only so that
``bench preview`` can time today's loop against it in one paired run.

What "then" ran, part by part, and how it is reproduced here:
- posing: numpy, ``batch`` = 2 frames per call (the old ``PreviewOptions.batch``): positions by
  ``avatar.posing.pose`` (the old arithmetic plus the parts' shape keys). The old loop left every
  Gaussian at its rest rotation; here the rotations are posed too, by the numpy reference twin
  (``avatar.pose_reference.pose_quats_reference``), so that both paths draw the same frames: the
  reference does the work today's loop does, the old way (its cost is in ``pose_ms``); so are the
  Gaussians' per-frame growth factors (``avatar.posed.pose_growth``, numpy), which today's loop
  applies too.
- input checks: boolean tensors per check (``torch.isfinite(x).all()``, ``(scales < 0).any()``, ...).
- projection: one serial numba loop over every (camera, Gaussian) (``_project_fwd_serial`` with
  the old per-Gaussian body ``_project_one``; today's parallel ``projection.project_fwd`` does the
  same arithmetic, operation for operation, in its chunks).
- tile binning: serial counting and filling in index order, then a mergesort of each tile's list
  by depth (``_bin_tiles_sort``: the old ``bin_tiles``).
- compositing: ``_kernels.rasterize_fwd`` at gsplat's exact stop (no transmittance stop; the
  kernel's arithmetic is unchanged since then).
- background and depth: the torch expressions; uint8 by ``clamp * 255 round`` in torch.
- writing, synchronous on the render thread: the whole frame converted to float32 for the
  watermark (``_stamp_whole_frame``), Pillow's PNG encoder at its default level 6, ffmpeg's
  libx264 at its default preset (medium).

The frames equal today's within one 8-bit level (today's loop stops compositing at transmittance
1/255), up to a rare second level where the float32 numpy and torch posings round apart, and they
differ more in a few pixels where that 1e-7 m difference swaps overlapping Gaussians of exactly equal depth
(tests/preview/test_legacy.py bounds both). Nothing here is used outside the benchmark.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numba as nb
import numpy as np

from ..render import _kernels
from ..render.projection import ALPHA_THRESHOLD, EXTEND, _camera_terms
from ..render.watermark import WATERMARK_TEXT, _text_mask, watermark_scale
from .output import FrameWriter

LEGACY_BATCH = 2  # PreviewOptions.batch at the time


@nb.njit(cache=True, inline="always")
def _project_one(means, quats, scales, opacities, Ks, Rv, tv, b, g, width, height, eps2d, near, far, use_opacity,
             R, mc, Mc, means2d, conics, depths, radii, extents):
    """Project Gaussian g into camera b (see ``projection.project_fwd``); writes its row of the outputs."""
    _camera_terms(means, quats, scales, Rv, tv, b, g, R, mc, Mc)
    tx, ty, tz = mc[0], mc[1], mc[2]
    depths[b, g] = tz
    if not (tz > near and tz < far):
        return
    fx, fy, cx, cy = np.float64(Ks[b, 0, 0]), np.float64(Ks[b, 1, 1]), np.float64(Ks[b, 0, 2]), np.float64(Ks[b, 1, 2])
    lim_xp = (width - cx) / fx + 0.3 * (0.5 * width / fx)
    lim_xn = cx / fx + 0.3 * (0.5 * width / fx)
    lim_yp = (height - cy) / fy + 0.3 * (0.5 * height / fy)
    lim_yn = cy / fy + 0.3 * (0.5 * height / fy)
    txc = tz * min(max(tx / tz, -lim_xn), lim_xp)
    tyc = tz * min(max(ty / tz, -lim_yn), lim_yp)
    J00, J02 = fx / tz, -fx * txc / (tz * tz)
    J11, J12 = fy / tz, -fy * tyc / (tz * tz)
    u0 = J00 * Mc[0, 0] + J02 * Mc[2, 0]
    u1 = J00 * Mc[0, 1] + J02 * Mc[2, 1]
    u2 = J00 * Mc[0, 2] + J02 * Mc[2, 2]
    w0 = J11 * Mc[1, 0] + J12 * Mc[2, 0]
    w1 = J11 * Mc[1, 1] + J12 * Mc[2, 1]
    w2 = J11 * Mc[1, 2] + J12 * Mc[2, 2]
    a0 = u0 * u0 + u1 * u1 + u2 * u2
    bb = u0 * w0 + u1 * w1 + u2 * w2
    c0 = w0 * w0 + w1 * w1 + w2 * w2
    m0 = u0 * w1 - u1 * w0
    m1 = u0 * w2 - u2 * w0
    m2 = u1 * w2 - u2 * w1
    det = m0 * m0 + m1 * m1 + m2 * m2 + eps2d * (a0 + c0) + eps2d * eps2d
    a = a0 + eps2d
    c = c0 + eps2d
    if not (det > 0) or not math.isfinite(det) or not math.isfinite(a) or not math.isfinite(c):
        return
    mx = fx * tx / tz + cx
    my = fy * ty / tz + cy
    ext = EXTEND
    if use_opacity:
        op = opacities[b, g]
        if op < ALPHA_THRESHOLD:
            return
        ext = min(ext, math.sqrt(2.0 * math.log(op / ALPHA_THRESHOLD)))
    ex = ext * math.sqrt(a)
    ey = ext * math.sqrt(c)
    rx = math.ceil(ex)
    ry = math.ceil(ey)
    if rx <= 0 and ry <= 0:
        return
    if mx + rx <= 0 or mx - rx >= width or my + ry <= 0 or my - ry >= height:
        return
    means2d[b, g, 0] = mx
    means2d[b, g, 1] = my
    conics[b, g, 0] = c / det
    conics[b, g, 1] = -bb / det
    conics[b, g, 2] = a / det
    radii[b, g, 0] = min(rx, 2**30)
    radii[b, g, 1] = min(ry, 2**30)
    extents[b, g, 0] = ex
    extents[b, g, 1] = ey


@nb.njit(cache=True)
def _project_fwd_serial(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near, far):
    """The old ``projection.project_fwd``: one serial loop, one set of scratch arrays. Same outputs
    as today's ``project_fwd`` (means2d, conics, depths, radii, extents)."""
    B, N = means.shape[0], means.shape[1]
    means2d = np.zeros((B, N, 2), np.float32)
    conics = np.zeros((B, N, 3), np.float32)
    depths = np.zeros((B, N), np.float32)
    radii = np.zeros((B, N, 2), np.int32)
    extents = np.zeros((B, N, 2), np.float32)
    Rv = viewmats[:, :3, :3].astype(np.float64)
    tv = viewmats[:, :3, 3].astype(np.float64)
    R = np.empty((3, 3))
    mc = np.empty(3)
    Mc = np.empty((3, 3))
    for job in range(B * N):
        _project_one(means, quats, scales, opacities, Ks, Rv, tv, job // N, job - (job // N) * N, width, height,
                     eps2d, near, far, True, R, mc, Mc, means2d, conics, depths, radii, extents)
    return means2d, conics, depths, radii, extents


@nb.njit(cache=True, parallel=True)
def _bin_tiles_sort(means2d, extents, depths, width, height, tile_size):
    """The old ``_kernels.bin_tiles``: serial count and fill in index order, then a stable
    mergesort of each tile's list by depth (parallel over tiles). Same bins as today's."""
    B, N = means2d.shape[0], means2d.shape[1]
    tiles_x = (width + tile_size - 1) // tile_size
    tiles_y = (height + tile_size - 1) // tile_size
    n_tiles = tiles_x * tiles_y
    rect = np.full((B, N, 4), -1, np.int32)
    for job in range(B * N):
        b = job // N
        g = job - b * N
        if extents[b, g, 0] <= 0:
            continue
        gx0, gx1, gy0, gy1 = _kernels._pixel_box(
            means2d[b, g, 0], means2d[b, g, 1], extents[b, g, 0], extents[b, g, 1], 0, 0, width, height
        )
        if gx0 > gx1 or gy0 > gy1:
            continue
        rect[b, g, 0] = gx0 // tile_size
        rect[b, g, 1] = gx1 // tile_size
        rect[b, g, 2] = gy0 // tile_size
        rect[b, g, 3] = gy1 // tile_size
    counts = np.zeros(B * n_tiles + 1, np.int64)
    for b in range(B):
        for g in range(N):
            if rect[b, g, 0] < 0:
                continue
            for ty in range(rect[b, g, 2], rect[b, g, 3] + 1):
                for tx in range(rect[b, g, 0], rect[b, g, 1] + 1):
                    counts[b * n_tiles + ty * tiles_x + tx + 1] += 1
    offsets = np.cumsum(counts)
    ids = np.empty(offsets[-1], np.int32)
    cursor = offsets[:-1].copy()
    for b in range(B):
        for g in range(N):
            if rect[b, g, 0] < 0:
                continue
            for ty in range(rect[b, g, 2], rect[b, g, 3] + 1):
                for tx in range(rect[b, g, 0], rect[b, g, 1] + 1):
                    t = b * n_tiles + ty * tiles_x + tx
                    ids[cursor[t]] = g
                    cursor[t] += 1
    for job in nb.prange(B * n_tiles):
        start = offsets[job]
        end = offsets[job + 1]
        if end - start < 2:
            continue
        b = job // n_tiles
        seg = ids[start:end].copy()
        key = np.empty(end - start, np.float32)
        for i in range(end - start):
            key[i] = depths[b, seg[i]]
        order = np.argsort(key, kind="mergesort")
        for i in range(end - start):
            ids[start + i] = seg[order[i]]
    return offsets, ids


def legacy_splat_rgb(means, quats, scales, opacities, colors, cameras, background,
                     near: float = 0.01, far: float = 1e10, eps2d: float = 0.3):
    """The old CPU ``splat`` without gradients: means (B, N, 3), quats (N, 4) or (B, N, 4), scales (N, 3) or (B, N, 3),
    opacities (N,), colors (N, C) torch float32 tensors, cameras: B Cameras of one size,
    background (C,) -> (B, H, W, 3) uint8 numpy frames."""
    import torch

    from ..render.rasterize import TILE_SIZE

    B = means.shape[0]
    t = {"means": means, "quats": quats if quats.dim() == 3 else quats.expand((B,) + tuple(quats.shape)),
         "scales": scales if scales.dim() == 3 else scales.expand((B,) + tuple(scales.shape)),
         "opacities": opacities.expand((B,) + tuple(opacities.shape)),
         "features": colors.expand((B,) + tuple(colors.shape))}
    for name, x in t.items():  # the old checks: one boolean tensor each
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf")
    if (t["scales"] < 0).any():
        raise ValueError("scales must be >= 0")
    if ((t["opacities"] < 0) | (t["opacities"] > 1)).any():
        raise ValueError("opacities must be in [0, 1]")
    if (t["quats"].norm(dim=-1) < 1e-12).any():
        raise ValueError("quats must be non-zero")
    W, H = cameras[0].width, cameras[0].height
    viewmats = torch.from_numpy(np.stack([c.viewmat for c in cameras]))
    Ks = torch.from_numpy(np.stack([c.K for c in cameras]))
    np32 = lambda x: x.detach().to(torch.float32).contiguous().numpy()  # noqa: E731
    op = np32(t["opacities"])
    m2, co, dp, _radii, ext = _project_fwd_serial(np32(t["means"]), np32(t["quats"]), np32(t["scales"]), op,
                                                  np32(viewmats), np32(Ks), W, H, eps2d, near, far)
    cols = torch.cat([t["features"], torch.from_numpy(dp)[..., None]], dim=-1)
    offsets, ids = _bin_tiles_sort(m2, ext, dp, W, H, TILE_SIZE)
    order = _kernels.tile_order(offsets.shape[0] - 1, nb.get_num_threads())
    out, T_final, _last = _kernels.rasterize_fwd(m2, co, op, _kernels.sigma_max(op), np32(cols), ext, offsets, ids,
                                                 W, H, TILE_SIZE, order, _kernels.T_EPS)
    out_t = torch.from_numpy(out)
    alpha = torch.from_numpy((1.0 - T_final).astype(np.float32))
    image = out_t[..., :-1] + (1.0 - alpha)[..., None] * background[None, None, None, :]
    _depth = out_t[..., -1] / alpha.clamp(min=1e-10)  # the old splat computed it for every frame
    img = image.permute(0, 3, 1, 2)
    return (img[:, :3].clamp(0, 1) * 255.0).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def _stamp_whole_frame(image: np.ndarray, box_opacity: float = 0.6) -> np.ndarray:
    """The old ``stamp_watermark`` (bottom-right, 512-px-class frames): the whole frame goes to
    float32 and back. Same pixels as today's ``render.stamp_watermark``."""
    H, W = image.shape[:2]
    s = watermark_scale(H)
    mask = _text_mask(WATERMARK_TEXT)
    mask = np.repeat(np.repeat(mask, s, axis=0), s, axis=1)
    pad = 3 * s
    bh, bw = mask.shape[0] + 2 * pad, mask.shape[1] + 2 * pad
    margin = 2 * s
    y0, x0 = H - margin - bh, W - margin - bw
    out = image.astype(np.float32)
    region = out[y0 : y0 + bh, x0 : x0 + bw]
    region *= 1.0 - box_opacity
    text_alpha = np.zeros((bh, bw), np.float32)
    text_alpha[pad : pad + mask.shape[0], pad : pad + mask.shape[1]] = mask
    region += text_alpha[..., None] * (255.0 - region)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


class LegacyFrameWriter(FrameWriter):
    """The old synchronous writer: whole-frame stamping, Pillow PNG at level 6, x264 preset medium
    (ffmpeg's default). Same atomic file handling as :class:`FrameWriter`."""

    def __init__(self, png_dir: Path | None, video: Path | None, fps: float) -> None:
        super().__init__(png_dir, video, fps, png_compress_level=6, x264_preset=None)

    def write(self, frame: np.ndarray) -> None:
        from PIL import Image
        from PIL.PngImagePlugin import PngInfo

        from ..output_safety import AtomicFile
        from ..render.watermark import PNG_TEXT
        from .output import FRAME_PATTERN

        stamped = _stamp_whole_frame(frame)
        if self.png_dir is not None:
            f = AtomicFile(Path(self.png_dir) / FRAME_PATTERN.format(self.first_number + self.n_frames))
            self._pending.append(f)
            info = PngInfo()
            for k, v in PNG_TEXT.items():
                info.add_text(k, v)
            Image.fromarray(stamped).save(f.tmp, format="PNG", pnginfo=info)
            self.pngs.append(f.target)
        if self.video is not None:
            self._send(stamped)
        self.n_frames += 1


def render_legacy(avatar, model, params, lod: int, size: int, out_dir: Path,
                  background=(1.0, 1.0, 1.0)) -> dict[str, Any]:
    """Render every frame of ``params`` (HeadParams) the old way at ``lod``, ``size`` x ``size``,
    into ``out_dir``/png and ``out_dir``/preview.mp4. Returns {"seconds", "stage_seconds" (pose,
    splat, write), "n_gaussians", "backend"}."""
    import torch

    from ..avatar.pose_reference import pose_quats_reference
    from ..avatar.posing import pose as pose_numpy
    from ..avatar.posed import pose_growth
    from ..head.params import HeadParams
    from ..motion import conform_expr

    params = conform_expr(params, model.n_expr)
    rest = avatar.rest_set(lod)
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a))  # noqa: E731
    scales, opac, cols = as_t(rest.scales), as_t(rest.opacities), as_t(rest.colors)
    bg = as_t(np.asarray(background, np.float32))
    cam = avatar.camera.resized(size, size)
    secs = {"pose": 0.0, "splat": 0.0, "write": 0.0}
    T = params.n_frames
    t_start = time.perf_counter()
    writer = LegacyFrameWriter(out_dir / "png", out_dir / "preview.mp4", 25.0)
    try:
        for t0 in range(0, T, LEGACY_BATCH):
            sl = slice(t0, min(T, t0 + LEGACY_BATCH))
            sub = HeadParams(params.shape, params.expr[sl], params.pose[sl], params.transl[sl])
            t = time.perf_counter()
            posed = np.ascontiguousarray(pose_numpy(avatar, model, sub, lod), np.float32)
            means = torch.from_numpy(posed)
            quats = torch.from_numpy(pose_quats_reference(avatar, model, sub, lod).astype(np.float32))
            grown = scales[None] * torch.from_numpy(pose_growth(avatar, model, sub, lod, posed))[..., None]
            secs["pose"] += time.perf_counter() - t
            t = time.perf_counter()
            with torch.no_grad():
                rgb = legacy_splat_rgb(means, quats, grown, opac, cols, [cam] * means.shape[0], bg)
            secs["splat"] += time.perf_counter() - t
            t = time.perf_counter()
            for frame in rgb:
                writer.write(frame)
            secs["write"] += time.perf_counter() - t
        t = time.perf_counter()
        writer.close()
        secs["write"] += time.perf_counter() - t
    except BaseException:
        writer.discard()
        raise
    return {"seconds": time.perf_counter() - t_start, "stage_seconds": secs, "n_gaussians": len(rest),
            "backend": "cpu"}
