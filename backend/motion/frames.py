"""Editing a motion in time: frame ranges, frame-rate resampling, smoothing, expression width.
Pure numpy; every function returns a new HeadParams and leaves its input as it was."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from ..face.smoothing import smooth_track
from ..head.params import HeadParams
from ..rotations import axis_angle_to_quat, quat_to_axis_angle, slerp


def slice_frames(params: HeadParams, start: int, end: int = -1) -> HeadParams:
    """Frames ``start..end`` (inclusive, 0-based; end -1 or past the last frame = to the last).
    InputError when the range holds no frame."""
    T = params.n_frames
    stop = T - 1 if end < 0 else min(end, T - 1)
    if start < 0 or start > stop:
        raise InputError(None, f"frame range {start}..{end} is outside the {T} frames")
    return params.sliced(slice(start, stop + 1))


def smooth(params: HeadParams, fps: float, strength: float) -> HeadParams:
    """Expression, pose, translation and the torso channel smoothed over time with the tracker's
    zero-phase one-euro filter (face.smoothing) at ``strength`` (0 = unchanged)."""
    if strength <= 0:
        return params
    torso = None if params.torso is None else smooth_track(params.torso, fps, strength)
    return HeadParams(params.shape, smooth_track(params.expr, fps, strength),
                      smooth_track(params.pose, fps, strength), smooth_track(params.transl, fps, strength), torso)


def conform_expr(params: HeadParams, n_expr: int) -> HeadParams:
    """``params`` with exactly ``n_expr`` expression columns (extra ones dropped, missing ones 0):
    tracks may hold fewer components than the head model has."""
    E = params.expr.shape[1]
    if E == n_expr:
        return params
    expr = np.zeros((params.n_frames, n_expr), np.float32)
    k = min(E, n_expr)
    expr[:, :k] = params.expr[:, :k]
    return HeadParams(params.shape, expr, params.pose, params.transl, params.torso)


def resample(params: HeadParams, src_fps: float, dst_fps: float) -> HeadParams:
    """The same motion sampled at ``dst_fps``: T' = floor((T - 1) * dst / src) + 1 frames covering
    the same duration. Expression and translation are interpolated linearly, joint rotations by
    quaternion slerp (so a turn keeps its axis)."""
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive, got {src_fps} -> {dst_fps}")
    T = params.n_frames
    if T == 1 or abs(src_fps - dst_fps) < 1e-9:
        return HeadParams(params.shape, params.expr.copy(), params.pose.copy(), params.transl.copy(),
                          None if params.torso is None else params.torso.copy())
    n = int(np.floor((T - 1) * dst_fps / src_fps + 1e-9)) + 1
    x = np.arange(n, dtype=np.float64) * (src_fps / dst_fps)     # source frame position of each output
    i0 = np.clip(np.floor(x).astype(int), 0, T - 1)
    i1 = np.minimum(i0 + 1, T - 1)
    u = (x - i0).astype(np.float64)

    def lerp(a: np.ndarray) -> np.ndarray:
        a = a.astype(np.float64)
        uu = u.reshape((-1,) + (1,) * (a.ndim - 1))
        return ((1 - uu) * a[i0] + uu * a[i1]).astype(np.float32)

    q = axis_angle_to_quat(params.pose)                                # (T, 5, 4)
    pose = quat_to_axis_angle(slerp(q[i0], q[i1], np.repeat(u[:, None], q.shape[1], 1)))
    torso = None if params.torso is None else lerp(params.torso)
    return HeadParams(params.shape, lerp(params.expr), pose.astype(np.float32), lerp(params.transl), torso)
