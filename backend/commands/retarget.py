"""``python -m backend retarget avatar.omgavatar video.mp4 -o out.mp4``: track the face in the video
and render the avatar performing it (watermarked mp4; optional PNG frames and track file)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .render import add_common, add_render_pass_arguments, preview_options, render_pass_options, resolved_passes

HELP = "avatar + video -> tracked, rendered reenactment video"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("avatar", help=".omgavatar file (python -m backend build)")
    p.add_argument("video", help="driving clip (mp4/mov/webm/mkv/gif) or a folder of numbered images")
    p.add_argument("-o", "--output", default="retarget.mp4", help="output mp4 (default: retarget.mp4)")
    p.add_argument("--frames", default=None, metavar="DIR", help="also write the PNG frames into DIR")
    p.add_argument("--save-track", default=None, metavar="PATH", help="also write the track (.npz)")
    p.add_argument("--smoothing", type=float, default=2.0,
                   help="temporal smoothing strength: 0 off, 1 light, 2 default, 4 strong")
    p.add_argument("--keep-identity", action=argparse.BooleanOptionalAction, default=None,
                   help="track with the avatar's own identity (fit only pose, expression and camera); "
                        "default: on when the avatar was built from this clip, off otherwise")
    p.add_argument("--calibration", default=None, metavar="NPZ",
                   help="calibrate the tracker to the avatar (stand-in avatars): read this file, or when it does "
                        "not exist yet, render the avatar's expressions, calibrate and write it here")
    p.add_argument("--render-passes", type=int, default=None, metavar="N",
                   help="N render-and-compare passes after the fit: render the avatar at the fitted parameters, "
                        "read the renders with face mesh and fit again to the clip's landmarks shifted by what "
                        "the render's reading lies off the fit (needs the avatar's identity kept; default 1 "
                        "when it is kept, 0 otherwise)")
    add_render_pass_arguments(p, keyframes=True)
    p.add_argument("--outline-pass", action=argparse.BooleanOptionalAction, default=None,
                   help="take each frame's neck pitch from the clip's outline against the avatar's (needs the "
                        "avatar's identity kept: a clip of the person it was built from; off by default: on the "
                        "shared clips it raises PSNR and SSIM full and costs AKD and mouth PSNR)")
    p.add_argument("--start", type=int, default=0, help="first video frame (0-based, default 0)")
    p.add_argument("--end", type=int, default=None, help="last video frame (inclusive, default: the last)")
    add_common(p)


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable outputs before tracking starts: the mp4 must not be the driving clip (or
    any other input), folders must be creatable and writable."""
    from ..output_safety import check_output_dir, check_output_file

    inputs = [args.avatar, args.video, args.head_model, args.checkpoint]
    if args.calibration and Path(args.calibration).exists():
        inputs.append(args.calibration)   # a kept calibration is read: never written over
    check_output_file(args.output, inputs, suffixes=(".mp4", ".m4v", ".mov"), what="output video")
    if args.frames:
        check_output_dir(args.frames, inputs, what="--frames folder")
    if args.save_track:
        check_output_file(args.save_track, [*inputs, args.output], what="--save-track file")
    if args.calibration and not Path(args.calibration).exists():
        check_output_file(args.calibration, [*inputs, args.output, args.save_track], suffixes=(".npz",),
                          what="--calibration file")
    if args.json:
        check_output_file(args.json, [*inputs, args.output, args.save_track], what="--json file")


def hold_for(avatar, video: str, keep: bool | None) -> dict:
    """track_video's keyword arguments that make ``video`` drive ``avatar`` (face.track.avatar_hold,
    as the evaluation drives it): the global joint held at the avatar's photo rotation, and the
    avatar's identity kept when ``keep`` is True, or None and the avatar was built from this very
    clip (otherwise the clip's own identity is fitted)."""
    from ..face.track import avatar_hold
    from ..motion import keeps_identity

    built_from = (avatar.options.get("multiview") or {}).get("source")
    return avatar_hold(avatar.params.shape, avatar.params.pose,
                       keep_identity=keeps_identity(keep, built_from, video), rest_offsets=avatar.vertex_offsets)


def run(args: argparse.Namespace) -> int:
    check_outputs(args)  # first: before the heavy imports and any work
    from ..face.track import TrackOptions, track_video
    from ..preview import render_preview
    from ..preview.renderer import load_avatar_and_model
    from ..progress import Progress, tqdm_progress
    from ..stats import write_json

    if args.smoothing < 0:
        raise SystemExit("--smoothing must be >= 0")
    if args.render_passes is not None and args.render_passes < 0:
        raise SystemExit("--render-passes must be >= 0")
    opts = preview_options(args)
    avatar, model = load_avatar_and_model(args.avatar, args.head_model)
    hold = hold_for(avatar, args.video, args.keep_identity)
    args.render_passes = resolved_passes(args.render_passes, hold["identity"] is not None)
    if args.calibration:
        from .render import tracker_calibration

        hold["calibration"] = tracker_calibration(avatar, model, args.calibration, args.progress)
    if args.outline_pass:
        if hold["identity"] is None:
            # another person's outline says nothing of this avatar's pitch
            raise SystemExit("--outline-pass needs the avatar's identity kept (--keep-identity)")
        from ..avatar.render_compare import AvatarAlpha

        hold["outline"] = AvatarAlpha(avatar, model, backend=args.backend)
    if args.render_passes:
        if hold["identity"] is None:
            # the passes compare the avatar's render with the fitted landmarks of the same head: a
            # clip's own identity would read as an offset of every frame
            raise SystemExit("--render-passes needs the avatar's identity kept (--keep-identity)")
        from ..avatar.render_compare import AvatarReader

        hold["reader"] = AvatarReader(avatar, model, args.lod, backend=args.backend)
    bar, close = tqdm_progress("retarget", args.progress)
    # tracking fills the first half of the bar, rendering the second
    track_progress = Progress(callback=lambda f, m: bar.report(0.5 * f, f"track: {m}"))
    render_progress = Progress(callback=lambda f, m: bar.report(0.5 + 0.5 * f, f"render: {m}"))
    try:
        t0 = time.perf_counter()
        track = track_video(args.video, model, TrackOptions(smoothing=args.smoothing, render_passes=args.render_passes,
                                                            **render_pass_options(args)),
                            track_progress,
                            args.start, args.end, **hold)
        track_seconds = time.perf_counter() - t0
        if args.save_track:
            track.save(args.save_track)
        result = render_preview(avatar, track.params, args.frames, opts, fps=track.fps, video=args.output,
                                model=model, progress=render_progress)
    finally:
        close()
    total = time.perf_counter() - t0
    n = track.n_frames
    figures = {
        "avatar": Path(args.avatar).name, "video": Path(args.video).name, "video_fps": track.fps,
        "frames": n, "frames_without_face": track.frames_without_face,
        "mean_confidence": float(track.confidence.mean()),
        "track_seconds": track_seconds, "track_fps": n / track_seconds if track_seconds > 0 else None,
        "render": result.figures(), "seconds": total, "fps": n / total if total > 0 else None,
    }
    write_json(args.json, figures)
    print(f"{n} frames: tracking {figures['track_fps']:.1f} fps, rendering {result.fps:.2f} fps "
          f"(LOD {result.lod}, {result.backend}), total {total:.1f} s -> {args.output}")
    return 0
