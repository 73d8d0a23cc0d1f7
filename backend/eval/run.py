"""Run every protocol over a media folder and collect EvalResults (the ``eval`` command's body)."""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ..errors import CancelledError, OMGError
from ..machine import load_average, machine_info
from ..progress import Progress
from .media import MediaSet
from .results import EvalResults

Log = Callable[[str], None]


@dataclass
class EvalOptions:
    lods: tuple[int, ...] = (0, 1, 2)
    every: int = 5                    # self-reenactment: every k-th frame drives
    max_frames: int = 0               # self-reenactment cap per clip (0 = all)
    cross_frames: int = 8             # cross-reenactment driving frames per pair
    render_frames: int = 8            # frames timed per LOD/backend for render fps
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    render_backend: str = "auto"      # quality protocols
    speed_backends: tuple[str, ...] | None = None  # speed: None = every available backend
    build: dict[str, Any] = field(default_factory=dict)
    track: dict[str, Any] = field(default_factory=dict)
    identity: bool = True
    protocols: tuple[str, ...] = ("reconstruction", "self", "cross", "speed")  # + "multiview" (issue 17)
    views: int = 8                    # multiview: views picked among the clip's first 60 %
    calibrate: bool = False           # self-reenactment: tracker calibrated to the avatar (--calibrate-tracker)
    tracker_offsets: str = ""         # self-reenactment: the tracker's landmark offsets ("", "full", "depth")
    render_passes: int = 1            # self-reenactment, multi-view: the tracker's render-and-compare passes (--render-passes; face.track.DRIVING_PASSES)
    render_pass_mode: str = "upper"   # self-reenactment, multi-view: what the passes fit (--render-pass-mode; TrackOptions)
    render_pass_threshold_px: float = 1.0   # self-reenactment: the soft threshold of the shift and upper modes (--render-pass-threshold)
    outline_pass: bool = False        # self-reenactment, multi-view: the neck's pitch from each frame's outline (--outline-pass; face.pitch_pass)


def utc_now() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())


def _skip(res: EvalResults, what: str, exc: BaseException, log: Log) -> None:
    msg = f"{what}: {type(exc).__name__}: {exc}"
    res.skipped.append(msg)
    log("skipped " + msg)
    if not isinstance(exc, OMGError):
        log(traceback.format_exc(limit=4))


def run_eval(media: MediaSet, opts: EvalOptions, log: Log = print,
             progress: Progress | None = None) -> EvalResults:
    """All protocols over ``media``: photos -> reconstruction (+ speed on the first avatar), videos
    -> tracking + self-reenactment, every photo x video pair -> cross-reenactment. A failure on one
    input is recorded under ``skipped`` and the rest goes on."""
    from .protocols.reconstruction import ReconstructionOptions, evaluate_photo
    from .protocols.multiview import multiview_frames, multiview_reenactment
    from .protocols.reenactment import (ReenactmentOptions, cross_reenactment, driving_indices,
                                        self_reenactment, track_clip)
    from .protocols.scoring import FrameScorer
    from .protocols.speed import render_speed

    t0 = time.perf_counter()
    progress = progress or Progress()
    mi = machine_info()
    res = EvalResults(machine=dict(mi.as_dict(), one_line=mi.one_line()),
                      media_root=str(media.root) if media.root else None,
                      options={k: v for k, v in opts.__dict__.items() if k not in ("build", "track")}
                      | {"build": opts.build, "track": opts.track}, started_utc=utc_now())
    if media.empty:
        res.skipped.append(f"media: no photos or videos under {media.root}")
        return res
    rec_opts = ReconstructionOptions(lods=opts.lods, background=opts.background,
                                     render_backend=opts.render_backend, build=opts.build)
    ren_opts = ReenactmentOptions(lods=opts.lods, every=opts.every, max_frames=opts.max_frames,
                                  background=opts.background, render_backend=opts.render_backend,
                                  build=opts.build, track=opts.track, calibrate=opts.calibrate,
                                  tracker_offsets=opts.tracker_offsets, render_passes=opts.render_passes,
                                  render_pass_mode=opts.render_pass_mode,
                                  render_pass_threshold_px=opts.render_pass_threshold_px,
                                  outline_pass=opts.outline_pass)
    want = set(opts.protocols)
    n_steps = len(media.photos) + 2 * len(media.videos) + 1
    step = 0

    def tick(msg: str) -> None:
        nonlocal step
        progress.report(step / n_steps, msg)
        step += 1
        log(msg)

    with FrameScorer(background=opts.background, identity=opts.identity) as scorer:
        res.skipped += scorer.notes
        photo_builds: list[tuple[str, Any, Any]] = []  # (name, BuildResult, source Target)
        if want & {"reconstruction", "cross", "speed"}:
            for photo in media.photos:
                tick(f"photo {photo.name}: build + source view")
                try:
                    out = evaluate_photo(photo, scorer, rec_opts, name=photo.name)
                except CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 - one bad input must not end the report
                    _skip(res, f"photo {photo.name}", exc, log)
                    continue
                res.reconstruction += out.rows
                res.build_timing.append(out.timing)
                photo_builds.append((photo.name, out.build, out.target))

        if "speed" in want and photo_builds:
            tick("render speed")
            name, build, _ = photo_builds[0]
            try:
                res.render_timing = render_speed(build.avatar, build.model, opts.lods, backends=opts.speed_backends,
                                                 frames=opts.render_frames)
            except Exception as exc:  # noqa: BLE001
                _skip(res, f"render speed ({name})", exc, log)

        model = photo_builds[0][1].model if photo_builds else None
        for video in media.videos if want & {"self", "cross", "multiview"} else []:
            tick(f"video {video.name}: tracking")
            cross_idx: list[int] = []

            def keep(n: int) -> list[int]:
                nonlocal cross_idx
                self_idx = driving_indices(n, opts.every, opts.max_frames) if "self" in want else []
                cross_idx = driving_indices(n, opts.every, opts.cross_frames, start=0) if "cross" in want else []
                held = multiview_frames(n, opts.every) if "multiview" in want else []
                return sorted(set(self_idx) | set(cross_idx) | set(held))

            try:
                clip = track_clip(video, model, ren_opts, indices_for=keep)
            except CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                _skip(res, f"video {video.name}", exc, log)
                continue
            res.track_timing.append(clip.timing)
            if "multiview" in want:
                tick(f"video {video.name}: multi-view vs single-photo build")
                try:
                    mv = multiview_reenactment(clip, video, scorer, ren_opts, opts.views)
                    res.multiview += mv.multi
                    res.multiview_single += mv.single
                    res.multiview_source += mv.multi_source
                    res.multiview_source_single += mv.single_source
                    res.multiview_seconds.append(mv.seconds)
                    res.multiview_breakdown.append(mv.breakdown)
                except CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    _skip(res, f"multiview {video.name}", exc, log)
            if "self" in want:
                tick(f"video {video.name}: self-reenactment")
                try:
                    runs, _ = self_reenactment(clip, scorer, ren_opts)
                    res.self_reenactment += runs
                except CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001
                    _skip(res, f"self-reenactment {video.name}", exc, log)
            if "cross" in want:
                driving_cache: dict = {}
                for name, build, target in photo_builds:
                    try:
                        res.cross_reenactment += cross_reenactment(build, target, name, clip, scorer, ren_opts,
                                                                   cross_idx, driving_cache)
                    except CancelledError:
                        raise
                    except Exception as exc:  # noqa: BLE001
                        _skip(res, f"cross-reenactment {name} x {video.name}", exc, log)
    res.total_seconds = time.perf_counter() - t0
    res.machine["load_average_end"] = load_average()
    progress.report(1.0, "done")
    return res


def run_speed_only(avatar_path: str | Path, opts: EvalOptions, backends: list[str] | None = None,
                   log: Log = print) -> EvalResults:
    """Render speed of a saved avatar (``.omgavatar``) per LOD and backend: no media and no metric
    models needed (e.g. on a GPU machine)."""
    from ..avatar.fileformat import load_avatar
    from ..head.loader import load_model_for_avatar
    from .protocols.speed import render_speed

    t0 = time.perf_counter()
    mi = machine_info()
    res = EvalResults(machine=dict(mi.as_dict(), one_line=mi.one_line()), media_root=None,
                      options={"avatar": Path(avatar_path).name, "lods": opts.lods,
                               "render_frames": opts.render_frames, "backends": backends or "available"},
                      started_utc=utc_now())
    avatar = load_avatar(avatar_path)
    # never the model file the avatar's header names (a shared file could name a hostile one)
    model = load_model_for_avatar(avatar_path, avatar.head_model_name, avatar.head_model_path,
                                  opts.build.get("head_model"))
    lods = [l for l in opts.lods if l in avatar.lods]
    for l in set(opts.lods) - set(lods):
        res.skipped.append(f"LOD {l}: not in {Path(avatar_path).name} (it has {avatar.levels})")
    log(f"render speed of {Path(avatar_path).name}: LODs {lods}")
    res.render_timing = render_speed(avatar, model, lods, backends=backends, frames=opts.render_frames)
    res.total_seconds = time.perf_counter() - t0
    res.machine["load_average_end"] = load_average()
    return res
