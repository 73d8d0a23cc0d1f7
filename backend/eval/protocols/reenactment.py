"""Protocols 2 and 3: self-reenactment and cross-reenactment on videos.

Self-reenactment (the paper's protocol): frame 0 of a clip is the source photo; the clip is
tracked; every k-th later frame drives the avatar (its tracked expression, joint rotations and
translation), and the render is compared with that real frame (PSNR/SSIM face + full, AKD,
identity to the real frame). Renders and frames share the avatar's own framing: the driving
frames are cut by the source photo's crop, and the clip's landmarks are re-fitted in that crop
with the avatar's identity (``refit_for_avatar``), as the product drives an avatar. Scoring in
the track's clip-median crop with the clip's own identity fit instead left d12's frame 0 with a
shoulder sheet that ended above the frame's bottom edge (the build saw less of the body) and
a head shape that was not the avatar's (landmarks off by its shape difference), and the
shoulders turned by the clip's mean head rotation instead of the photo's.

Cross-reenactment: an avatar built from photo A is driven by video B's track; the render is
scored for identity against A's source crop and for expression and head-pose distance against
B's frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...progress import Progress
from ..results import CrossFrame, CrossReenactment, FrameScores, SelfReenactment, TrackTiming
from ..measure import measure
from .reconstruction import build_options
from ...avatar.rendering import render_frames
from .scoring import FrameScorer, Target

if TYPE_CHECKING:
    from ...head.params import HeadParams


@dataclass
class ReenactmentOptions:
    lods: tuple[int, ...] = (0, 1, 2)
    every: int = 5                  # every k-th frame drives
    max_frames: int = 0             # cap on driving frames per clip (0 = no cap)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    render_backend: str = "auto"
    build: dict[str, Any] = field(default_factory=dict)   # BuildOptions overrides
    track: dict[str, Any] = field(default_factory=dict)   # TrackOptions overrides
    calibrate: bool = False         # self-reenactment: track with the tracker calibrated to the avatar
    tracker_offsets: str = ""       # self-reenactment: the tracker's landmark offsets to the avatar: "", "full", "depth"
    render_passes: int = 1          # render-and-compare passes (face.render_compare) on the kept frames, as the product drives (face.track.DRIVING_PASSES)
    render_pass_mode: str = "upper"  # their TrackOptions.render_pass_mode: "full", "rigid", "similarity", "upper"
    render_pass_threshold_px: float = 1.0   # their TrackOptions.render_pass_threshold_px (all but "full")
    outline_pass: bool = False      # self-reenactment: the neck's pitch from each frame's outline (face.pitch_pass; track --avatar --outline-pass)


@dataclass
class TrackedClip:
    """A tracked clip with the frames the protocols need, already cut to the track's 512 crop."""

    name: str
    track: Any                       # backend.face.track.Track
    frames: dict[int, np.ndarray]    # frame index -> (512, 512, 3) uint8 crop
    timing: TrackTiming
    source_frame: np.ndarray         # frame 0, full resolution (the self-reenactment photo)
    path: Path | None = None         # the clip, for protocols that cut frames with another crop


def driving_indices(n_frames: int, every: int, max_frames: int = 0, start: int | None = None) -> list[int]:
    """Frames that drive: every ``every``-th from ``start`` (default ``every``: frame 0 is the
    source), at most ``max_frames`` (0 = all)."""
    every = max(int(every), 1)
    idx = list(range(every if start is None else start, n_frames, every))
    return idx[:max_frames] if max_frames > 0 else idx


def track_clip(path: str | Path, model, opts: ReenactmentOptions, indices_for=None,
               progress: Progress | None = None) -> TrackedClip:
    """Track a clip (timed, peak memory) and keep frame 0 plus the driving frames' crops.

    ``indices_for(n_frames) -> list[int]`` picks the frames to keep (default: driving_indices)."""
    from ...face.crop import apply_crop
    from ...face.track import TrackOptions, track_video
    from ...face.video import iter_video

    path = Path(path)
    with measure() as m:
        track = track_video(path, model, TrackOptions(**opts.track), progress or Progress())
    n = track.n_frames
    keep = set(indices_for(n) if indices_for else driving_indices(n, opts.every, opts.max_frames))
    frames: dict[int, np.ndarray] = {}
    source = None
    last = max(keep | {0})
    for i, frame in enumerate(iter_video(path)):  # streamed: only the kept frames stay in memory
        if i == 0:
            source = frame
        if i in keep:
            frames[i] = apply_crop(frame, track.crop)
        if i >= last:
            break
    timing = TrackTiming(video=path.name, frames=n, seconds=m.seconds, peak_rss_mb=m.peak_rss_mb)
    return TrackedClip(name=path.name, track=track, frames=frames, timing=timing, source_frame=source,
                       path=path)


def refit_for_avatar(clip: TrackedClip, build: Any, opts: ReenactmentOptions) -> tuple[Any, dict[int, np.ndarray]]:
    """The clip tracked for ``build``'s avatar: its landmarks moved from the track's crop into the
    source photo's crop (build.observation.crop), re-fitted there with the avatar's identity
    frozen, and the kept frames cut by that crop. Returns (HeadParams for every frame,
    frame index -> (512, 512, 3) uint8 crop). The global joint (shoulders) is held at the photo's
    rotation, so frame 0 puts the shoulders where the photo had them. No video decoding for the landmarks (the track
    keeps them); the kept frames are decoded once more when the clip's path is known. With
    ``opts.calibrate`` the fit uses the tracker's calibration to the avatar
    (avatar.calibrate.calibrate_tracker, computed here, as ``track --avatar --calibration`` does);
    otherwise, with ``opts.tracker_offsets`` ("full" or "depth"), with the landmark offsets to the
    avatar (avatar.calibrate.landmark_offsets: where mediapipe reads the avatar's features against
    the embedding's points, in 3D from three neck turns; "depth": their depth only), so the fit
    puts the avatar's features, not the embedding's points, on the clip's. Off by default: measured
    on the shared clips they lower AKD but cost whole-frame or mouth PSNR (docs/figures/eval.md).
    With ``opts.render_passes`` the fit is followed by that many render-and-compare passes
    (face.render_compare.track_with_render_passes, avatar.render_compare.AvatarReader at the finest
    LOD scored): only the kept frames are rendered and re-fitted (a frame's fit does not depend on
    the others beyond its warm start, and only those are scored), as the product would with every
    frame."""
    from ...face.crop import apply_crop
    from ...face.track import TrackOptions, avatar_hold, track_landmarks
    from ...face.video import iter_video

    track, crop = clip.track, build.observation.crop
    lm = crop.to_crop(track.crop.to_source(track.landmarks))  # NaN rows (no face) stay NaN
    hold = avatar_hold(build.avatar.params.shape, build.avatar.params.pose,
                       rest_offsets=build.avatar.vertex_offsets)
    if opts.calibrate:
        from ...avatar.calibrate import calibrate_tracker
        hold["calibration"] = calibrate_tracker(build.avatar, build.model, backend=opts.render_backend)
    elif opts.tracker_offsets:
        from ...avatar.calibrate import landmark_offsets
        if opts.tracker_offsets not in ("full", "depth"):
            raise ValueError(f"tracker_offsets must be '', 'full' or 'depth', got {opts.tracker_offsets!r}")
        hold["calibration"] = landmark_offsets(build.avatar, build.model, backend=opts.render_backend,
                                               depth_only=opts.tracker_offsets == "depth")
    if opts.render_passes:
        from ...avatar.render_compare import AvatarReader
        from ...face.track import track_with_render_passes

        reader = AvatarReader(build.avatar, build.model, max(opts.lods), backend=opts.render_backend)
        kept = np.array(sorted(i for i in clip.frames if i > 0), np.int64)
        params, _, _, _ = track_with_render_passes(build.model, lm, track.has_face, build.avatar.camera, track.fps,
                                                   replace(TrackOptions(**opts.track), render_pass_mode=opts.render_pass_mode,
                                                           render_pass_threshold_px=opts.render_pass_threshold_px),
                                                   reader, opts.render_passes,
                                                   frames=kept, crop=crop, **hold)
    else:
        params, _, _ = track_landmarks(build.model, lm, track.has_face, build.avatar.camera, track.fps,
                                       TrackOptions(**opts.track), **hold)
    if getattr(track, "shoulders", None) is not None:  # the torso channel, in the avatar's camera
        from ...face.track import with_torso_channel
        # the clip's frame 0 is the photo the avatar was built from: its body starts where the photo
        # has it (the track's own fit of frame 0 put the global joint 1.5-2.3 px off on d0 and d19)
        params = with_torso_channel(params, track.shoulders, crop, build.avatar.camera, build.model,
                                    reference=build.avatar.params.frame(0))
    frames: dict[int, np.ndarray] = {}
    keep = set(clip.frames)
    if clip.path is not None and keep:
        last = max(keep)
        for i, frame in enumerate(iter_video(clip.path)):
            if i in keep:
                frames[i] = apply_crop(frame, crop)
            if i >= last:
                break
    else:  # no path: keep the track's crops (same frames, the track's framing)
        frames = dict(clip.frames)
    if opts.outline_pass and clip.path is not None:
        params = outline_pass(build, params, lm, frames, opts)
    return params, frames


def outline_pass(build: Any, params: "HeadParams", landmarks: np.ndarray, frames: dict[int, np.ndarray],
                 opts: ReenactmentOptions) -> "HeadParams":
    """The kept frames' neck pitch from their outlines (face.pitch_pass.silhouette_pitch: the
    clip is of the person the avatar was built from), each frame's portrait matte read by the
    tracker's segmenter from its crop in the avatar's framing, its chin the lowest of its
    ``landmarks`` (T, 478, 2) avatar-crop px; frame 0 (the photo itself) keeps the fit's."""
    from ...avatar.render_compare import AvatarAlpha
    from ...face.mediapipe_face import MediapipeFace
    from ...face.pitch_pass import silhouette_pitch, with_offsets

    kept = np.array(sorted(i for i in frames if i > 0), np.int64)
    if not len(kept):
        return params
    with MediapipeFace(static=True) as mp:
        mattes = [mp.segment(np.ascontiguousarray(frames[int(i)])) for i in kept]
    with np.errstate(all="ignore"):
        chins = np.array([np.nanmax(landmarks[int(i), :, 1]) if np.isfinite(landmarks[int(i)]).any() else np.nan
                          for i in kept])
    stats = silhouette_pitch(build.model, params, build.avatar.camera, kept, mattes, chins,
                             AvatarAlpha(build.avatar, build.model, backend=opts.render_backend))
    return with_offsets(build.model, params, build.avatar.camera, kept, stats.offsets_deg)


def drive_params(source: "HeadParams", driving: "HeadParams", indices: list[int],
                 relative_translation: bool = True) -> "HeadParams":
    """Parameters that drive an avatar with ``source`` identity by frames ``indices`` of ``driving``.

    Expression, every joint rotation and the torso channel come from the driving frames (absolute head pose, so the
    render's pose can be compared with the driving frame's). Translation: with
    ``relative_translation`` the source's own translation plus the driving clip's motion relative
    to its frame 0 (another person's absolute position would misplace a differently sized head);
    otherwise the driving translation itself (self-reenactment: same person, same camera).
    """
    from ...head.params import HeadParams

    idx = np.asarray(indices, dtype=np.int64)
    e_src, e_drv = source.expr.shape[1], driving.expr.shape[1]
    expr = np.zeros((len(idx), max(e_src, e_drv)), np.float32)  # LBS zero-fills missing components
    expr[:, :e_drv] = driving.expr[idx]
    transl = driving.transl[idx]
    if relative_translation:
        transl = source.transl[0][None] + (driving.transl[idx] - driving.transl[0][None])
    # the torso channel is already relative to the driving clip's first frame (face/torso.py)
    torso = None if driving.torso is None else driving.torso[idx]
    return HeadParams(source.shape, expr, driving.pose[idx], transl, torso)


def real_pixels(clip: TrackedClip, build: Any) -> np.ndarray:
    """(512, 512) bool: the pixels of the frames refit_for_avatar cut (by the photo's crop, or
    by the track's own crop when the clip's path is unknown) that show the video, not its edge
    repeated past it."""
    from ...face.crop import source_coverage

    return source_coverage(build.observation.crop if clip.path is not None else clip.track.crop)


def self_reenactment(clip: TrackedClip, scorer: FrameScorer, opts: ReenactmentOptions,
                     progress: Progress | None = None) -> tuple[list[SelfReenactment], Any]:
    """Protocol 2 on a tracked clip; returns one result per LOD and the BuildResult of frame 0."""
    from ...avatar.build import build_avatar

    build = build_avatar(clip.source_frame, build_options(opts.lods, opts.build), progress or Progress())
    avatar, model = build.avatar, build.model
    tracked, frames = refit_for_avatar(clip, build, opts)
    idx = sorted(i for i in frames if i > 0)
    params = drive_params(avatar.params, tracked, idx, relative_translation=False)
    valid = real_pixels(clip, build)
    targets: list[Target] = [scorer.target(frames[i], valid=valid) for i in idx]
    out = []
    for lod in opts.lods:
        res = SelfReenactment(video=clip.name, lod=lod, every=opts.every)
        renders = render_frames(avatar, model, params, lod, camera=avatar.camera,
                                background=opts.background, backend=opts.render_backend, with_alpha=True)
        for i, tgt, (img, alpha) in zip(idx, targets, renders):
            res.frames.append(FrameScores(frame=i, scores=scorer.score(img, tgt, alpha=alpha)))
        out.append(res)
    return out, build


def cross_reenactment(build: Any, source_target: Target, photo_name: str, clip: TrackedClip,
                      scorer: FrameScorer, opts: ReenactmentOptions, indices: list[int],
                      driving_targets: dict[int, Target] | None = None) -> list[CrossReenactment]:
    """Protocol 3: the avatar of ``build`` (photo A) driven by ``clip`` (video B) frames
    ``indices``; identity vs A's crop, expression and pose distance vs B's frames."""
    avatar, model = build.avatar, build.model
    idx = [i for i in indices if i in clip.frames]
    params = drive_params(avatar.params, clip.track.params, idx, relative_translation=True)
    cache = driving_targets if driving_targets is not None else {}
    for i in idx:
        if i not in cache:
            cache[i] = scorer.target(clip.frames[i])
    out = []
    for lod in opts.lods:
        res = CrossReenactment(photo=photo_name, video=clip.name, lod=lod)
        renders = render_frames(avatar, model, params, lod, camera=avatar.camera,
                                background=opts.background, backend=opts.render_backend)
        for i, img in zip(idx, renders):
            expr_d, pose_d = scorer.motion(img, cache[i])
            ident = scorer.identity(img, source_target, box_hint=source_target)
            res.frames.append(CrossFrame(frame=i, identity_to_source=ident, expression_distance=expr_d,
                                         pose_distance_deg=pose_d))
        out.append(res)
    return out
