"""Animation input for previews: a track file (``python -m backend track``) or a HeadParams .npz,
plus frame-rate resampling and expression-width conforming. Pure numpy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..head.params import HeadParams
from ..rotations import axis_angle_to_quat, quat_to_axis_angle, slerp

DEFAULT_FPS = 25.0


@dataclass
class Motion:
    """params: HeadParams (T frames); fps: frames per second; source: where it came from (clip or
    file name); camera: the track's source Camera, or None for a bare HeadParams file;
    confidence: (T,) float32 in [0, 1] (ones when unknown)."""

    params: HeadParams
    fps: float
    source: str
    camera: object | None = None
    confidence: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return self.params.n_frames


def load_motion(path: str | Path, fps: float = DEFAULT_FPS) -> Motion:
    """Read a track file (format "omg-track") or a HeadParams file ("omg-head-params");
    ``fps`` is used for the latter, which stores no frame rate. InputError names the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "motion file not found (expected a track .npz)")
    from ..filekind import describe, wrong_kind

    if describe(path) != "a zip/.npz archive":
        raise InputError(path, wrong_kind(path, "a motion file: expected a track .npz "
                                          "(python -m backend track VIDEO -o track.npz)"))
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            meta = json.loads(str(z["metadata"])) if "metadata" in keys else (
                json.loads(str(z["meta"])) if "meta" in keys else {})
    except Exception as exc:  # noqa: BLE001 - zip/json problems: not an npz we understand
        raise InputError(path, f"not a readable .npz file ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        meta = {}
    kind = meta.get("format")
    if kind == "omg-track":
        from ..face.track import Track

        track = Track.load(path)
        return Motion(track.params, float(track.fps), track.source or path.name, track.camera,
                      np.asarray(track.confidence, np.float32))
    if kind == "omg-head-params" or {"shape", "expr", "pose", "transl"} <= keys:
        params = HeadParams.load(path)
        return Motion(params, float(fps), path.name, None, np.ones(params.n_frames, np.float32))
    raise InputError(path, f"not a track or head-parameter file (format {kind!r}, arrays {sorted(keys)})")


def conform_expr(params: HeadParams, n_expr: int) -> HeadParams:
    """``params`` with exactly ``n_expr`` expression columns (extra ones dropped, missing ones 0):
    tracks may hold fewer components than the head model has."""
    E = params.expr.shape[1]
    if E == n_expr:
        return params
    expr = np.zeros((params.n_frames, n_expr), np.float32)
    k = min(E, n_expr)
    expr[:, :k] = params.expr[:, :k]
    return HeadParams(params.shape, expr, params.pose, params.transl)


def resample(params: HeadParams, src_fps: float, dst_fps: float) -> HeadParams:
    """The same motion sampled at ``dst_fps``: T' = floor((T - 1) * dst / src) + 1 frames covering
    the same duration. Expression and translation are interpolated linearly, joint rotations by
    quaternion slerp (so a turn keeps its axis)."""
    if src_fps <= 0 or dst_fps <= 0:
        raise ValueError(f"frame rates must be positive, got {src_fps} -> {dst_fps}")
    T = params.n_frames
    if T == 1 or abs(src_fps - dst_fps) < 1e-9:
        return HeadParams(params.shape, params.expr.copy(), params.pose.copy(), params.transl.copy())
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
    return HeadParams(params.shape, lerp(params.expr), pose.astype(np.float32), lerp(params.transl))
