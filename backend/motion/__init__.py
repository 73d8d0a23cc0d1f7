"""Track and animation data: per-frame head-model parameters with a frame rate.

    load_motion(path) -> Motion                         (files.py: track / HeadParams .npz, read once)
    slice_frames, resample, smooth, conform_expr        (frames.py: editing in time, pure numpy)
    load_performance(PerformanceRequest) -> Performance (performance.py: video or track -> params)
    keeps_identity(choice, built_from, video) -> bool    (performance.py: drive an avatar with its own identity?)

Tracking a video is backend.face.track_video; saving a track is face.track.Track.save.
"""

from __future__ import annotations

from .files import DEFAULT_FPS, Motion, load_motion
from .frames import conform_expr, resample, slice_frames, smooth
from .performance import Performance, PerformanceRequest, keeps_identity, load_performance

__all__ = ["DEFAULT_FPS", "Motion", "Performance", "PerformanceRequest", "conform_expr", "keeps_identity",
           "load_motion", "load_performance", "resample", "slice_frames", "smooth"]
