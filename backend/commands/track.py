"""``python -m backend track video.mp4 -o track.npz [--json stats.json]``: video -> track file."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

HELP = "video -> per-frame head-model parameters (track .npz)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from .render import add_render_pass_arguments

    parser.add_argument("video", help="clip (mp4/mov/webm/mkv/gif) or a folder of numbered images")
    parser.add_argument("-o", "--output", required=True, help="track file to write (.npz)")
    parser.add_argument("--json", metavar="PATH", help="write figures (frames, fps, ...) as JSON")
    parser.add_argument("--head-model", metavar="PATH",
                        help="FLAME .pkl or head-model .npz (default: the bundled stand-in)")
    parser.add_argument("--smoothing", type=float, default=2.0,
                        help="temporal smoothing strength: 0 off, 1 light, 2 default, 4 strong")
    parser.add_argument("--avatar", metavar="PATH",
                        help="track for this .omgavatar: keep its identity (fit only pose, expression and "
                             "camera) and hold the head's global joint at its photo's rotation, as "
                             "retarget and the evaluation drive an avatar")
    parser.add_argument("--calibration", metavar="NPZ",
                        help="calibrate the tracker to --avatar (a stand-in avatar): read this file, or when it "
                             "does not exist yet, render the avatar's expressions, calibrate and write it here")
    parser.add_argument("--offsets", choices=("full", "depth"), default=None,
                        help="with --avatar and no --calibration: fit with the landmark offsets to the avatar "
                             "(3 renders read by face mesh: where the avatar shows each landmark against the "
                             "head model's embedding; depth: their depth only), as eval --tracker-offsets")
    parser.add_argument("--render-passes", type=int, default=None, metavar="N",
                        help="with --avatar: N render-and-compare passes after the fit (render the avatar at the "
                             "fitted parameters, read the renders with face mesh, fit again to the clip's "
                             "landmarks shifted by what the render's reading lies off the fit; default 1 with "
                             "--avatar, 0 without)")
    add_render_pass_arguments(parser, keyframes=True)
    parser.add_argument("--outline-pass", action=argparse.BooleanOptionalAction, default=None,
                        help="with --avatar: take each frame's neck pitch from the clip's outline (render the "
                             "avatar's alpha tilted by a few degrees each way, keep the tilt whose outline above the "
                             "chin matches the frame's portrait matte best; the landmarks barely see the pitch). "
                             "For a clip of the person the avatar was built from; off by default: on the shared "
                             "clips it raises PSNR and SSIM full and costs AKD and mouth PSNR (docs/figures/eval.md)")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of image-sequence folders")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..output_safety import check_output_file

    inputs = [args.video, args.head_model, args.avatar]  # first: before the heavy imports and any work
    if args.calibration and Path(args.calibration).exists():
        inputs.append(args.calibration)   # a kept calibration is read: never written over
    check_output_file(args.output, inputs, what="track file")
    if args.calibration and not args.avatar:
        raise SystemExit("--calibration needs --avatar (the avatar the tracker is calibrated to)")
    if args.calibration and not Path(args.calibration).exists():
        check_output_file(args.calibration, [*inputs, args.output], suffixes=(".npz",), what="--calibration file")
    if args.json:
        check_output_file(args.json, [*inputs, args.output], what="--json file")
    from ..errors import InputError
    from ..face.track import TrackOptions, avatar_hold, track_video
    from .render import render_pass_options, resolved_passes
    from ..head.loader import load_head_model
    from ..progress import tqdm_progress
    from ..stats import write_json

    if args.smoothing < 0:
        raise InputError(None, f"--smoothing must be >= 0, got {args.smoothing}")
    args.render_passes = resolved_passes(args.render_passes, bool(args.avatar))
    if args.render_passes < 0:
        raise InputError(None, f"--render-passes must be >= 0, got {args.render_passes}")
    if args.render_passes and not args.avatar:
        raise InputError(None, "--render-passes needs --avatar (the avatar that is rendered and read)")
    if args.outline_pass and not args.avatar:
        raise InputError(None, "--outline-pass needs --avatar (the avatar whose outline is rendered)")
    model = load_head_model(args.head_model)
    hold = {}
    if args.offsets and args.calibration:
        # both replace the tracker's landmark embedding: one would silently win
        raise InputError(args.calibration, "--offsets and --calibration both calibrate the tracker; pass one")
    if args.avatar:
        from ..avatar import load_avatar

        avatar = load_avatar(args.avatar)
        if avatar.head_model_name != model.name or len(avatar.params.shape) != model.n_shape:
            raise InputError(args.avatar, f"was built on head model '{avatar.head_model_name}', not on "
                                          f"'{model.name}' (pass the same --head-model)")
        hold = avatar_hold(avatar.params.shape, avatar.params.pose, rest_offsets=avatar.vertex_offsets)
        if args.calibration:
            from .render import tracker_calibration

            hold["calibration"] = tracker_calibration(avatar, model, args.calibration,
                                                      False if args.no_progress else None)
        elif args.offsets:
            from ..avatar.calibrate import landmark_offsets

            hold["calibration"] = landmark_offsets(avatar, model, depth_only=args.offsets == "depth")
        if args.outline_pass:
            from ..avatar.render_compare import AvatarAlpha

            hold["outline"] = AvatarAlpha(avatar, model)
        if args.render_passes:
            from ..avatar.render_compare import AvatarReader

            hold["reader"] = AvatarReader(avatar, model)
    elif args.offsets:
        raise InputError(None, "--offsets needs --avatar (the avatar the offsets are measured on)")
    t0 = time.perf_counter()  # decode, landmarks, fit, smoothing and writing; not the model load
    progress, close = tqdm_progress("track", enabled=False if args.no_progress else None)
    try:
        track = track_video(args.video, model,
                            TrackOptions(smoothing=args.smoothing, sequence_fps=args.fps,
                                         render_passes=args.render_passes, **render_pass_options(args)),
                            progress, **hold)
    finally:
        close()
    track.save(args.output)
    seconds = time.perf_counter() - t0
    figures = {
        "frames": track.n_frames,
        "frames_without_face": track.frames_without_face,
        "seconds": seconds,
        "fps": track.n_frames / seconds if seconds > 0 else None,
        "video_fps": track.fps,
        "model": track.model,
        "mean_confidence": float(track.confidence.mean()),
    }
    write_json(args.json, figures)
    print(f"{track.n_frames} frames ({len(track.frames_without_face)} without a face) in "
          f"{seconds:.2f} s = {figures['fps']:.1f} fps -> {args.output}")
    return 0
