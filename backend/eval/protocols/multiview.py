"""Issue 17's protocol: a multi-view build against a single-photo build of the same clip.

The multi-view avatar is built from views picked among the clip's first MULTIVIEW_BUILD_SHARE of
frames (``build clip.mp4 --views N --views-from 0:B``), the single-photo avatar from frame 0. Both
are driven by the clip (re-fitted with each avatar's identity in its own framing, as the
self-reenactment protocol does) and scored on the held-out frames (every k-th of the rest, frames
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
from .reenactment import ReenactmentOptions, TrackedClip, drive_params, real_pixels, refit_for_avatar
from ...avatar.rendering import render_frames
from .scoring import FrameScorer, Target

# the multi-view protocol builds from views among this share of the clip and scores the rest
MULTIVIEW_BUILD_SHARE = 0.6
SOURCE_FRAME = 0


@dataclass
class MultiviewRuns:
    """One clip's results, one SelfReenactment per LOD in each list.

    multi / single: held-out frames; multi_source / single_source: the source frame (frame 0)
    alone; seconds: {"video", "views", "multi_build_s", "single_build_s"} (wall seconds) and
    "registered_deg": each view's camera correction (multiview.register_views; 0 for the primary)."""

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


def _score(build: Any, clip: TrackedClip, idx: list[int], scorer: FrameScorer,
           opts: ReenactmentOptions) -> list[SelfReenactment]:
    """``build``'s avatar driven at frames ``idx`` as the product drives it (the self-reenactment
    protocol's framing: the clip's landmarks re-fitted in the avatar's own crop with its identity,
    ``refit_for_avatar``), rendered at its camera and scored against the frames cut by its crop
    over their real pixels (as self-reenactment: where the crop reaches past the video's edge the
    target is that edge repeated, nothing a viewer compares; ``*_padded`` keep the whole crop);
    one run per LOD."""
    tracked, frames = refit_for_avatar(clip, build, opts)
    idx = [i for i in idx if i in frames]
    valid = real_pixels(clip, build)
    targets: list[Target] = [scorer.target(frames[i], valid=valid) for i in idx]
    params = drive_params(build.avatar.params, tracked, idx, relative_translation=False)
    out = []
    for lod in opts.lods:
        res = SelfReenactment(video=clip.name, lod=lod, every=opts.every)
        renders = render_frames(build.avatar, build.model, params, lod, camera=build.avatar.camera,
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
    # anchored on the single photo's frame: both avatars share framing, body and rest pose there
    mv = MultiViewOptions(views=views, views_from=(0, last_view), anchor_frame=SOURCE_FRAME)
    if "refine_seconds" in opts.build:  # the same refinement budget as the single-photo build
        mv.refine_seconds = float(opts.build["refine_seconds"])
    multi = build_from_views([path], build_options(opts.lods, opts.build), mv, progress)
    t_multi = time.perf_counter() - t0

    held = sorted(i for i in clip.frames if i > last_view)
    src = [SOURCE_FRAME] if SOURCE_FRAME in clip.frames else []
    seconds = {"video": clip.name, "views": len(multi.avatar.options.get("views", [])),
               "multi_build_s": t_multi, "single_build_s": t_single,
               "registered_deg": [v.get("registered_deg", 0.0) for v in multi.avatar.options.get("views", [])]}
    runs = {key: _score(build, clip, src + held, scorer, opts) for key, build in (("multi", multi), ("single", single))}

    def part(key: str, frames: list[int]) -> list[SelfReenactment]:
        return [SelfReenactment(r.video, r.lod, r.every, [f for f in r.frames if f.frame in frames]) for r in runs[key]]

    return MultiviewRuns(multi=part("multi", held), single=part("single", held),
                         multi_source=part("multi", src), single_source=part("single", src), seconds=seconds)
