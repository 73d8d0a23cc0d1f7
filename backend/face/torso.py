"""The torso channel: where the driving video's shoulders are, from its portrait matte below the chin.

The face tracker follows the head only; the avatar's body is skinned to the global joint, so it moves
with the head's translation and nothing else. A person's shoulders move on their own (leaning, a
shrug, the camera's framing), and the whole-frame error on the outline follows that. This module
measures, per frame, the 2-D shift of the matte's body region (the rows below the chin, where only
shoulders, neck and hair on them lie) against the clip's first frame, and lifts the part of it the
head's motion does not already give the body to a translation of the global joint's own skinning
transform (``HeadParams.torso``, avatar.posing.with_torso).

Everything comes from the driving video itself: in self-reenactment the driving frame and the
scored frame are the same frame of the same clip (as the head pose is, by the protocol).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams
    from ..render.camera import Camera
    from .crop import CropInfo


@dataclass
class TorsoOptions:
    """work_px: the matte is compared at this width (pixels; shifts are measured at this scale and
    refined to sub-pixel); margin: the body window starts this many face heights (brow to chin)
    below the lower of the two chins, so the chin and jaw never enter it; max_shift: the largest
    shift searched, as a fraction of the frame width; min_pixels: fewer body pixels in the window
    (at work_px) and the frame has no estimate; median_frames: temporal median over this many
    frames (odd), against the matte's frame-to-frame flicker; rise, side_pad: the window also
    holds the rows from ``rise`` face heights above the lower chin down to the body window, outside
    the face's columns widened by ``side_pad`` face widths on each side: shoulders that rise beside
    the jaw (a performer close to a phone) have their outline there, while below the chin the body
    may fill the frame's whole width and leave no outline to read; the widening keeps the face's own
    edge out (since the thirty-sixth session 0.1, not 0.35: a close performer's shoulders rise within
    a third of a face width of the jaw; long hair beside the neck, d3's, now enters the window)."""

    work_px: int = 160
    margin: float = 0.15
    max_shift: float = 0.08
    min_pixels: int = 60
    median_frames: int = 5
    rise: float = 0.15
    # 0.35 before the thirty-sixth session; paired on the four clips (each prepared avatar kept, its
    # track's channel re-read), PSNR full at 0.35 / 0.2 / 0.1: d12 19.313 / 19.406 / 19.466, d0 28.151 /
    # 28.184 / 28.186, d19 25.752 / - / 25.952, d3 23.628 / - / 23.635 dB: a close performer's shoulders
    # rise within a third of a face width of the jaw, and the wider columns left most of them out
    side_pad: float = 0.1


def _resize(mask: np.ndarray, width: int) -> tuple[np.ndarray, float]:
    """(H, W) float mask -> (h, width) float32 by area averaging (PIL), and the factor width / W."""
    from PIL import Image

    H, W = mask.shape
    f = width / W
    h = max(int(round(H * f)), 1)
    img = Image.fromarray(np.clip(mask * 255.0, 0, 255).astype(np.uint8))
    return np.asarray(img.resize((width, h), Image.BOX), np.float32) / 255.0, f


def _face_rows(landmarks: np.ndarray) -> tuple[float, float, float, float]:
    """(478, 2) px -> (chin row, face height (brow top to chin), left and right face columns), in
    the landmarks' pixels."""
    x, y = landmarks[:, 0], landmarks[:, 1]
    return float(y.max()), float(y.max() - y.min()), float(x.min()), float(x.max())


def matte_shift(ref: np.ndarray, cur: np.ndarray, window: np.ndarray, radius: int) -> tuple[float, float]:
    """The (dx, dy) pixels that move ``ref`` (h, w) float onto ``cur``: the integer shift with the
    least mean absolute difference inside ``window`` (h, w) bool (``cur``'s pixels), then the best
    half-pixel shift within 2.5 px of it (``ref`` sampled bilinearly), refined by a parabola through
    its neighbours on each axis. The second search matters where the outline is a shallow slope
    (shoulders): there a fraction of a pixel up or down is matched nearly as well by a few pixels
    sideways, and the integer grid alone picked those (6 px off in tests/face/test_torso.py). The
    whole-pixel costs come from one numba call (torso_kernels.mad_cost_grid); the bilinear samples are
    blends of whole-pixel gathers (at most 49, cached): a few array operations per candidate."""
    from .torso_kernels import mad_cost_grid

    r = int(radius)
    m = r + 1                                   # the half-pixel search's far neighbour stays inside
    pad = np.pad(ref, m, mode="edge")
    ys, xs = np.nonzero(window)
    target = cur[ys, xs]
    gathered: dict[tuple[int, int], np.ndarray] = {}

    def shifted(dx: int, dy: int) -> np.ndarray:
        """ref shifted by whole pixels (dx, dy) at the window's pixels: pixel (y, x) shows
        ref(y - dy, x - dx), the edge repeated beyond it."""
        g = gathered.get((dx, dy))
        if g is None:
            g = gathered[(dx, dy)] = pad[ys + m - dy, xs + m - dx]
        return g

    cost = mad_cost_grid(np.ascontiguousarray(pad, np.float32), ys.astype(np.int64), xs.astype(np.int64),
                         np.ascontiguousarray(target, np.float32), r, m)
    # a flat cost (a window the body fills wholly, no outline in it) must not pick an arbitrary
    # far shift: a tiny pull towards no shift breaks ties
    flat = not np.ptp(cost) > 1e-6
    d = np.arange(-r, r + 1, dtype=np.float64)
    cost += 1e-4 * (d[:, None] ** 2 + d[None, :] ** 2) / max(r * r, 1)
    i, j = np.unravel_index(int(np.argmin(cost)), cost.shape)
    if flat:  # nothing to read: the tie-break's no shift
        return float(j - r), float(i - r)
    step = 0.5
    off = np.arange(-5, 6) * step
    fine = np.full((len(off), len(off)), np.inf)
    for a, v in enumerate(off):
        for b, u in enumerate(off):
            dx, dy = j - r + u, i - r + v
            if abs(dx) > r or abs(dy) > r:
                continue
            x0, y0 = int(np.floor(dx)), int(np.floor(dy))
            fx, fy = dx - x0, dy - y0
            row0 = (1 - fx) * shifted(x0, y0) + (fx * shifted(x0 + 1, y0) if fx else 0.0)
            sampled = row0 if not fy else (1 - fy) * row0 + fy * ((1 - fx) * shifted(x0, y0 + 1)
                                                                 + (fx * shifted(x0 + 1, y0 + 1) if fx else 0.0))
            fine[a, b] = np.abs(sampled - target).mean() + 1e-4 * (dx * dx + dy * dy) / max(r * r, 1)
    a, b = np.unravel_index(int(np.argmin(fine)), fine.shape)

    def refine(c_m: float, c_0: float, c_p: float) -> float:
        den = c_m - 2 * c_0 + c_p
        ok = np.isfinite(den) and den > 1e-12
        return float(np.clip(0.5 * (c_m - c_p) / den, -0.5, 0.5)) if ok else 0.0

    n = len(off) - 1
    sx = refine(fine[a, b - 1], fine[a, b], fine[a, b + 1]) if 0 < b < n else 0.0
    sy = refine(fine[a - 1, b], fine[a, b], fine[a + 1, b]) if 0 < a < n else 0.0
    return float(j - r + off[b] + sx * step), float(i - r + off[a] + sy * step)


class ShoulderTracker:
    """Feed frames in order (``add(matte, landmarks)``); ``shifts()`` then gives (T, 2) float32 the
    body region's shift in the frame's pixels against the first frame with a face and a body
    (frames with no estimate take their neighbours' estimates: see ``shifts``)."""

    def __init__(self, opts: TorsoOptions | None = None) -> None:
        self.opts = opts or TorsoOptions()
        self._ref: tuple | None = None  # matte, factor, chin, face height, real pixels (work scale)
        self._out: list[tuple[float, float]] = []

    def add(self, matte: np.ndarray | None, landmarks: np.ndarray | None,
            valid: np.ndarray | None = None) -> None:
        """matte (H, W) float [0, 1] of the frame (None: no matte), landmarks (478, 2) frame px
        (None: no face); valid (H, W) bool: the frame's real pixels (a crop padded past the video's
        edge repeats its edge there, which the matte reads as anything), None = all."""
        o = self.opts
        if matte is None or landmarks is None:
            self._out.append((np.nan, np.nan))
            return
        small, f = _resize(np.asarray(matte, np.float32), o.work_px)
        real = None if valid is None else _resize(np.asarray(valid, np.float32), o.work_px)[0] > 0.999
        chin, face_h, left, right = _face_rows(np.asarray(landmarks, np.float32))
        if self._ref is None:
            self._ref = (small, f, chin, face_h, real, left, right)
            if self._window(small, chin, face_h, left, right).sum() < o.min_pixels:
                self._ref = None
                self._out.append((np.nan, np.nan))
            else:
                self._out.append((0.0, 0.0))
            return
        ref, f0, chin0, face_h0, real0, left0, right0 = self._ref
        win = self._window(small, max(chin, chin0), max(face_h, face_h0), min(left, left0), max(right, right0))
        for r in (real, real0):  # only where both frames show the video
            if r is not None and r.shape == win.shape:
                win = win & r
        # the window must hold the outline (body and background both), or no shift can be read
        fg = np.count_nonzero(win & (ref > 0.5)) if small.shape == ref.shape else 0
        if min(fg, np.count_nonzero(win) - fg) < o.min_pixels or small.shape != ref.shape:
            self._out.append((np.nan, np.nan))
            return
        dx, dy = matte_shift(ref, small, win, max(1, int(round(o.max_shift * o.work_px))))
        self._out.append((dx / f, dy / f))

    def _window(self, small: np.ndarray, chin: float, face_h: float, left: float, right: float) -> np.ndarray:
        """(h, w) bool at work scale: the rows below chin + margin face heights, outside the face's
        columns [left, right] (frame px): the neck below the face moves with the head, and would
        pull the body's sideways shift towards the head's; and from ``rise`` face heights above the
        chin, outside those columns widened by ``side_pad`` face widths (the shoulders' rise)."""
        h, w = small.shape
        f = self._ref[1]
        o = self.opts
        rows = np.arange(h)[:, None]
        cols = (np.arange(w) + 0.5)[None, :]
        win = (rows >= (chin + o.margin * face_h) * f) & ((cols < left * f) | (cols > right * f))
        pad = o.side_pad * (right - left)
        win |= (rows >= (chin - o.rise * face_h) * f) & ((cols < (left - pad) * f) | (cols > (right + pad) * f))
        real = self._ref[4]
        return win if real is None or real.shape != win.shape else win & real

    def shifts(self) -> np.ndarray:
        """(T, 2) float32 frame px, temporally median-filtered over ``median_frames``; a frame with
        no estimate (no face, or no outline in its window) takes the estimates around it,
        linearly between two and held before the first and after the last: the body has not gone
        back to where it was in the first frame because one frame could not be read (on most of
        d12's frames from 128 on, the shoulders sunk 20-25 px, zero motion had put them back up).
        NaN only when the clip has no estimate at all."""
        s = np.array(self._out, np.float64).reshape(-1, 2)
        ok = np.isfinite(s[:, 0])
        idx = np.flatnonzero(ok)
        if not len(idx):
            return s.astype(np.float32)
        k = int(self.opts.median_frames)
        if k > 1 and len(idx) > 1:
            from scipy.ndimage import median_filter

            s[idx] = median_filter(s[idx], size=(k, 1), mode="nearest")
        t = np.arange(len(s))
        for a in range(2):
            s[:, a] = np.interp(t, idx, s[idx, a])
        return s.astype(np.float32)


def torso_channel(shifts_src: np.ndarray, crop: "CropInfo", camera: "Camera", model: "HeadModel",
                  params: "HeadParams", drop_m: float = 0.10, behind_m: float = 0.02,
                  reference: "HeadParams | None" = None) -> np.ndarray:
    """(T, 3) float32 metres (model frame): the torso channel for ``params`` (T frames, fitted in
    ``camera``, the 512 crop ``crop`` of the clip) from the body region's shifts (T, 2) in the
    clip's source pixels against its first frame (ShoulderTracker.shifts).

    The body is skinned to the global joint, so the head's parameters already move it: a shoulder
    point (``drop_m`` below and ``behind_m`` behind the first frame's neck joint, in the camera)
    posed by each frame's global transform lands ``d_pred`` pixels from where it was. The channel
    is the rest of the observed shift, ``shift - d_pred``, lifted to metres at that point's depth,
    in the image plane (the matte says nothing of depth). NaN shifts (no estimate) give zero.

    ``reference``: the parameters (T=1, same camera) of a photo that shows the clip's first frame,
    e.g. the avatar built from that very frame: the body is then where that photo had it at the
    first frame, instead of where the track's own fit of it (its translation, fitted again from the
    clip's reading) puts the global joint. None: the track's first frame."""
    import torch

    from ..head.lbs import HeadModelTensors, lbs

    T = params.n_frames
    s = np.asarray(shifts_src, np.float64).reshape(T, 2)
    scale = float(crop.scale)
    obs = np.where(np.isfinite(s), s * scale, np.nan)                        # (T, 2) crop px
    def joints(p: "HeadParams") -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():  # neutral expression: the parts' joints (avatar.posing.part_transforms)
            out = lbs(HeadModelTensors.from_model(model, "cpu"), torch.as_tensor(p.shape),
                      torch.zeros_like(torch.as_tensor(p.expr)), torch.as_tensor(p.pose), torch.as_tensor(p.transl))
        return out.joints.numpy().astype(np.float64), out.transforms.numpy().astype(np.float64)  # (T, 5, 3), (T, 5, 4, 4)

    J, A = joints(params)
    J0, A0 = (J[:1], A[:1]) if reference is None else joints(reference)
    R, t = camera.R.astype(np.float64), camera.t.astype(np.float64)
    neck0 = R @ J0[0, 1] + t
    p_cam = neck0 + np.array([0.0, drop_m, behind_m])                        # camera: y down, z forward
    p_world = R.T @ (p_cam - t)
    rest = np.linalg.solve(A0[0, 0, :3, :3], p_world - A0[0, 0, :3, 3])

    def project(c: np.ndarray) -> np.ndarray:  # (..., 3) camera -> (..., 2) crop px
        return np.stack([c[..., 0] / c[..., 2] * camera.fx + camera.cx, c[..., 1] / c[..., 2] * camera.fy + camera.cy], -1)

    posed = np.einsum("tij,j->ti", A[:, 0, :3, :3], rest) + A[:, 0, :3, 3]  # (T, 3) world
    cam = posed @ R.T + t                                                    # (T, 3) camera
    uv = project(cam)
    uv_ref = uv[0] if reference is None else project(p_cam)
    resid = obs - (uv - uv_ref)                                              # (T, 2) crop px
    resid = np.where(np.isfinite(resid), resid, 0.0)
    d_cam = np.stack([resid[:, 0] * cam[:, 2] / camera.fx, resid[:, 1] * cam[:, 2] / camera.fy, np.zeros(T)], 1)
    return (d_cam @ R).astype(np.float32)                                    # R^T d per frame
