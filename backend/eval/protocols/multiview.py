"""Issue 17's protocol: a multi-view build against a single-photo build of the same clip.

The multi-view avatar is built from views picked among the clip's first MULTIVIEW_BUILD_SHARE of
frames (``build clip.mp4 --views N --views-from 0:B``), the single-photo avatar from frame 0. Both
are driven by the clip's track and scored on the held-out frames (every k-th of the rest, frames
neither build saw) and at the source frame (frame 0, the single-photo build's own photo: the
multi-view build must be no worse there).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ...progress import Progress
from ..results import FrameScores, SelfReenactment
from .reconstruction import build_options
from .reenactment import ReenactmentOptions, TrackedClip, drive_params
from .rendering import render_frames
from .scoring import FrameScorer, Target

# the multi-view protocol builds from views among this share of the clip and scores the rest
MULTIVIEW_BUILD_SHARE = 0.6
SOURCE_FRAME = 0


@dataclass
class MultiviewRuns:
    """One clip's results, one SelfReenactment per LOD in each list.

    multi / single: held-out frames; multi_source / single_source: the source frame (frame 0)
    alone; seconds: {"video", "views", "multi_build_s", "single_build_s"} (wall seconds)."""

    multi: list[SelfReenactment]
    single: list[SelfReenactment]
    multi_source: list[SelfReenactment]
    single_source: list[SelfReenactment]
    seconds: dict[str, Any]


def held_out_indices(n_frames: int, every: int, build_share: float = MULTIVIEW_BUILD_SHARE) -> list[int]:
    """The multi-view protocol's scored frames: every ``every``-th frame of the clip's last
    ``1 - build_share`` (the views are picked among the first ``build_share``)."""
    first = int(np.ceil(build_share * n_frames))
    return list(range(first, n_frames, max(int(every), 1)))


def multiview_frames(n_frames: int, every: int) -> list[int]:
    """Every frame the protocol scores: the source frame and the held-out frames."""
    return [SOURCE_FRAME] + held_out_indices(n_frames, every)


def _score(build: Any, clip: TrackedClip, idx: list[int], targets: list[Target], scorer: FrameScorer,
           opts: ReenactmentOptions) -> list[SelfReenactment]:
    """``build``'s avatar driven by the track at frames ``idx`` (its own identity, the track's
    expression, pose, translation and camera), scored against ``targets``; one run per LOD."""
    params = drive_params(build.avatar.params, clip.track.params, idx, relative_translation=False)
    out = []
    for lod in opts.lods:
        res = SelfReenactment(video=clip.name, lod=lod, every=opts.every)
        renders = render_frames(build.avatar, build.model, params, lod, camera=clip.track.camera,
                                background=opts.background, backend=opts.render_backend, with_alpha=True)
        for i, tgt, (img, alpha) in zip(idx, targets, renders):
            res.frames.append(FrameScores(frame=i, scores=scorer.score(img, tgt, alpha=alpha)))
        out.append(res)
    return out


def multiview_reenactment(clip: TrackedClip, path: str | Path, scorer: FrameScorer, opts: ReenactmentOptions,
                          views: int = 8, progress: Progress | None = None) -> MultiviewRuns:
    """The protocol on a tracked clip whose kept frames include frame 0 and the held-out frames
    (``multiview_frames``): builds both avatars (timed) and scores both the same way."""
    from ...avatar.build import build_avatar
    from ...avatar.multiview import MultiViewOptions, build_from_views

    progress = progress or Progress()
    n = clip.track.n_frames
    last_view = int(np.ceil(MULTIVIEW_BUILD_SHARE * n)) - 1
    t0 = time.perf_counter()
    single = build_avatar(clip.source_frame, build_options(opts.lods, opts.build), progress)
    t_single = time.perf_counter() - t0
    t0 = time.perf_counter()
    mv = MultiViewOptions(views=views, views_from=(0, last_view))
    if "refine_seconds" in opts.build:  # the same refinement budget as the single-photo build
        mv.refine_seconds = float(opts.build["refine_seconds"])
    multi = build_from_views([path], build_options(opts.lods, opts.build), mv, progress)
    t_multi = time.perf_counter() - t0

    held = sorted(i for i in clip.frames if i > last_view)
    held_targets = [scorer.target(clip.frames[i]) for i in held]
    src = [SOURCE_FRAME] if SOURCE_FRAME in clip.frames else []
    src_targets = [scorer.target(clip.frames[i]) for i in src]
    seconds = {"video": clip.name, "views": len(multi.avatar.options.get("views", [])),
               "multi_build_s": t_multi, "single_build_s": t_single}
    return MultiviewRuns(multi=_score(multi, clip, held, held_targets, scorer, opts),
                         single=_score(single, clip, held, held_targets, scorer, opts),
                         multi_source=_score(multi, clip, src, src_targets, scorer, opts),
                         single_source=_score(single, clip, src, src_targets, scorer, opts),
                         seconds=seconds)
