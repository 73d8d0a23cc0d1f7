"""A performance for retargeting: a video tracked (or a saved track read) over a frame range,
smoothed, and resampled to a target frame rate. No bpy: the Blender add-on's Retarget Video and
Apply Track run it in their worker thread and only plan and write keyframes themselves."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..head.params import HeadParams
from ..progress import Progress
from .files import load_motion
from .frames import resample, slice_frames, smooth


def keeps_identity(choice: bool | None, built_from: str | None, video: str | Path) -> bool:
    """Whether tracking ``video`` to drive an avatar keeps the avatar's identity (fits only pose,
    expression and camera): ``choice`` True / False decides; None (the default) keeps it when the
    avatar was built from this very clip (``built_from``: the file or folder name its multi-view
    build recorded, avatar.options["multiview"]["source"]), since then both are one person, and
    fits the clip's own identity otherwise (another person's clip would be squeezed into the
    avatar's face shape)."""
    if choice is not None:
        return bool(choice)
    return bool(built_from) and built_from == Path(video).name


@dataclass
class PerformanceRequest:
    """path: a video, or a track / HeadParams .npz when ``is_track_file``; frame_start, frame_end:
    the source frames to use (0-based, inclusive; -1 = the last); smoothing: the tracker's strength
    for a video, extra smoothing on top of a track file's own; fps: resample to this rate (None =
    keep the source's); head_model_path: the head model to track with (None = the stand-in);
    avatar_shape (S,), avatar_pose (5, 3): the avatar the video will drive (its identity and its
    photo's joints), so tracking holds it as the CLI's retarget and the evaluation do
    (face.track.avatar_hold; the identity only with keep_identity); None = track the clip alone.
    render_reader: renders and reads that avatar (a face.render_compare.RenderReader, e.g.
    avatar.render_compare.AvatarReader of the rig's Gaussians in Blender): with keep_identity, the
    tracker's render-and-compare pass uses it as ``track --avatar`` and ``retarget`` do
    (face.track.DRIVING_PASSES); None = the plain fit.
    avatar_head (V, 3) float32 metres, model frame: that avatar's rest head (the rig's head-mesh
    basis: shaped template + its vertex_offsets), whose offsets are kept with the identity; None =
    none."""

    path: str
    is_track_file: bool = False
    frame_start: int = 0
    frame_end: int = -1
    smoothing: float = 0.0
    fps: float | None = None
    head_model_path: str | None = None
    avatar_shape: np.ndarray | None = None
    avatar_pose: np.ndarray | None = None
    keep_identity: bool = False
    avatar_head: np.ndarray | None = None
    render_reader: object | None = None


@dataclass
class Performance:
    """params: HeadParams at ``fps``; source_fps and n_source_frames: the source's rate and the
    frames used; expr_names: each expression column's name (None = the head model's order);
    frames_without_face: source frames the tracker filled in; track: the face.track.Track when a
    video was tracked (to save), else None; seconds: {"track" | "load", "resample"}."""

    params: HeadParams
    fps: float
    source_fps: float
    n_source_frames: int
    source: str
    expr_names: list[str] | None = None
    frames_without_face: list[int] = field(default_factory=list)
    track: object | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def _rest_offsets(model, req: PerformanceRequest) -> np.ndarray | None:
    """(V, 3) the driven avatar's vertex offsets (its rest head less the shaped template), or None
    without a rest head or when it does not fit ``model`` (another head model's mesh)."""
    if req.avatar_head is None or req.avatar_shape is None or np.size(req.avatar_shape) == 0:
        return None
    head = np.asarray(req.avatar_head, np.float32)
    if head.shape != (model.n_verts, 3) or np.size(req.avatar_shape) != model.n_shape:
        return None
    return (head - model.shaped(req.avatar_shape)).astype(np.float32)


def load_performance(req: PerformanceRequest, progress: Progress | None = None) -> Performance:
    """Track or read ``req.path`` and prepare its parameters (see :class:`PerformanceRequest`).
    InputError names the file on unreadable input or an empty frame range; honours cancellation."""
    progress = progress or Progress()
    t0 = time.perf_counter()
    secs: dict[str, float] = {}
    track = None
    if req.is_track_file:
        motion = load_motion(req.path)
        params = smooth(slice_frames(motion.params, req.frame_start, req.frame_end), motion.fps, req.smoothing)
        fps, source, expr_names, missing = motion.fps, motion.source, motion.expr_names, []
        secs["load"] = time.perf_counter() - t0
    else:
        from ..face.track import DRIVING_PASSES, TrackOptions, avatar_hold, track_video
        from ..head.loader import load_head_model

        model = load_head_model(req.head_model_path)
        end = None if req.frame_end < 0 else req.frame_end
        hold = {} if req.avatar_pose is None else avatar_hold(req.avatar_shape, req.avatar_pose, req.keep_identity,
                                                               _rest_offsets(model, req))
        passes = {}
        if req.render_reader is not None and hold.get("identity") is not None:
            # the pass compares the avatar's render with its own fitted head: only with its identity
            passes = dict(DRIVING_PASSES)
            hold["reader"] = req.render_reader
        # torso=False: the rig these keys go to has no torso bone, so the per-frame segmentation
        # the torso channel needs would only slow the tracking down
        track = track_video(req.path, model, TrackOptions(smoothing=req.smoothing, torso=False, **passes), progress,
                            req.frame_start, end, **hold)
        params, fps, source = track.params, track.fps, track.source
        expr_names, missing = list(track.expr_names), track.frames_without_face
        secs["track"] = time.perf_counter() - t0
    progress.check_cancel()
    n_source, out_fps = params.n_frames, fps
    if req.fps is not None and abs(req.fps - fps) > 1e-6:
        t1 = time.perf_counter()
        params, out_fps = resample(params, fps, req.fps), req.fps
        secs["resample"] = time.perf_counter() - t1
    return Performance(params, out_fps, fps, n_source, source, expr_names, missing, track, secs)
