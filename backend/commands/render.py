"""``python -m backend render avatar.omgavatar track.npz -o out/``: avatar + track -> watermarked
PNG frames (out/frame_00000.png ...) and out/preview.mp4, with the achieved frames per second."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

HELP = "avatar + track -> watermarked preview frames / video"


def add_common(p: argparse.ArgumentParser) -> None:
    """Options shared with ``retarget``."""
    p.add_argument("--lod", type=int, default=None, help="level of detail (default: the avatar's finest)")
    p.add_argument("--size", type=int, default=512, help="square frame size in pixels (default 512)")
    p.add_argument("--backend", choices=("auto", "cpu", "cuda"), default="auto", help="splatting backend")
    p.add_argument("--checkpoint", default=None,
                   help="OMG checkpoint: splat the avatar's learned features through its refiner")
    p.add_argument("--head-model", default=None,
                   help="head model file the avatar was built on (default: the bundled stand-in; a "
                        "model file named inside the avatar is never opened without this option)")
    p.add_argument("--batch", type=int, default=None,
                   help="frames posed and splatted per call (default: PreviewOptions.batch, 4)")
    p.add_argument("--json", default=None, metavar="PATH", help="write figures (frames, seconds, fps)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show a progress bar (default: when stderr is a terminal)")


#: face.render_compare.RENDER_PASS_MODES, written out so that building the parser imports no torch
#: (tests/preview/test_render_passes.py checks they are the same)
RENDER_PASS_MODES = ("full", "rigid", "similarity", "upper")


def _threshold_px(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not math.isfinite(v) or v < 0:
        raise argparse.ArgumentTypeError(f"expected a number of px >= 0, got {text!r}")
    return v


def _frames(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = 0
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of frames >= 1, got {text!r}")
    return v


def add_render_pass_arguments(p: argparse.ArgumentParser, keyframes: bool = False) -> None:
    """--render-pass-mode and --render-pass-threshold, beside --render-passes (track, retarget,
    eval, bench arkit), and with ``keyframes`` --render-pass-every (track, retarget: the commands
    whose passes render the whole clip); :func:`render_pass_options` turns them into TrackOptions
    fields."""
    p.add_argument("--render-pass-mode", choices=RENDER_PASS_MODES, default="upper",
                   help="what of the render's offset the render passes fit: upper (one 2-D shift a frame, and "
                        "above the nose each landmark's own offset beyond it: the head's turn and depth as the "
                        "render reads them, the mouth as the clip's; the default), rigid (the shift only: moves "
                        "the head, keeps the clip's expression), full (every landmark's own) or similarity (a "
                        "shift, rotation and scale in the image)")
    p.add_argument("--render-pass-threshold", type=_threshold_px, default=1.0, metavar="PX",
                   help="rigid / similarity / upper: a frame's shift (and in upper each landmark's own offset) "
                        "is shrunk by this many px (at 512), the render reading's own noise, so an offset within "
                        "it moves nothing (default 1)")
    if keyframes:
        p.add_argument("--render-pass-every", type=_frames, default=6, metavar="N",
                       help="render and read every N-th frame only and interpolate the passes' offsets "
                            "between (default 6; 1: every frame)")


def render_pass_options(args: argparse.Namespace) -> dict:
    """TrackOptions keyword arguments from :func:`add_render_pass_arguments`' flags."""
    return {"render_pass_mode": args.render_pass_mode, "render_pass_threshold_px": args.render_pass_threshold,
            "render_pass_every": getattr(args, "render_pass_every", 1)}


def resolved_passes(requested: int | None, identity_kept: bool) -> int:
    """--render-passes as given, or by default (None) face.track.DRIVING_PASSES' one pass when the
    avatar's identity is kept (the passes compare the avatar's render with its own fitted head) and
    none otherwise."""
    if requested is not None:
        return int(requested)
    return 1 if identity_kept else 0


def tracker_calibration(avatar, model, path: str | Path, bar: bool | None):
    """avatar.calibrate.calibration_for(avatar, model, path) for --calibration (track, retarget),
    with a "calibrate" progress bar while a calibration is made (about 50 s; ``bar``: tqdm's
    enabled, None = on a terminal); a kept file is read without one."""
    from ..avatar.calibrate import calibration_for
    from ..progress import tqdm_progress

    progress, close = tqdm_progress("calibrate", False if Path(path).exists() else bar)
    try:
        return calibration_for(avatar, model, path, progress=progress)
    finally:
        close()


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("avatar", help=".omgavatar file (python -m backend build)")
    p.add_argument("motion", help="track .npz (python -m backend track) or a HeadParams .npz")
    p.add_argument("-o", "--output", default="out", help="output folder (default: out)")
    p.add_argument("--fps", type=float, default=None,
                   help="output frame rate; the track is resampled to it (default: the track's)")
    p.add_argument("--start", type=int, default=0, help="first track frame to render (default 0)")
    p.add_argument("--end", type=int, default=None, help="last track frame to render (inclusive)")
    p.add_argument("--no-video", action="store_true", help="PNG frames only (no preview.mp4)")
    add_common(p)


def preview_options(args: argparse.Namespace):
    from ..preview import PreviewOptions

    from ..preview.renderer import MIN_SIZE

    if args.size < MIN_SIZE or args.size % 2:
        raise SystemExit(f"--size must be an even number of pixels >= {MIN_SIZE}")
    return PreviewOptions(lod=args.lod, width=args.size, height=args.size, backend=args.backend,
                          checkpoint=args.checkpoint,
                          **({} if args.batch is None else {"batch": max(1, args.batch)}))


def run(args: argparse.Namespace) -> int:
    from ..output_safety import check_output_dir, check_output_file

    # first: before the heavy imports and any work
    inputs = [args.avatar, args.motion, args.head_model, args.checkpoint]
    out = check_output_dir(args.output, inputs)
    if not args.no_video:
        check_output_file(out / "preview.mp4", inputs, what="preview video")
    if args.json:
        check_output_file(args.json, [*inputs, args.output], what="--json file")
    from ..errors import InputError
    from ..motion import load_motion, resample
    from ..preview import render_preview
    from ..progress import tqdm_progress
    from ..stats import write_json

    from ..preview.renderer import load_avatar_and_model

    avatar, model = load_avatar_and_model(args.avatar, args.head_model)
    motion = load_motion(args.motion)
    params = motion.params
    end = params.n_frames - 1 if args.end is None else min(args.end, params.n_frames - 1)
    if args.start < 0 or args.start > end:
        raise InputError(args.motion, f"frame range {args.start}..{args.end} is outside the track's "
                                      f"{params.n_frames} frames")
    params = params.sliced(slice(args.start, end + 1))  # every channel, the torso included
    fps = motion.fps
    if args.fps is not None:
        if args.fps <= 0:
            raise SystemExit("--fps must be positive")
        params, fps = resample(params, motion.fps, args.fps), args.fps
    progress, close = tqdm_progress("render", args.progress)
    try:
        result = render_preview(avatar, params, out, preview_options(args), fps=fps,
                                video=None if args.no_video else out / "preview.mp4", model=model,
                                progress=progress)
    finally:
        close()
    figures = {"avatar": Path(args.avatar).name, "motion": motion.source, "video_fps": fps, **result.figures()}
    write_json(args.json, figures)
    print(f"{result.n_frames} frames at {result.size[0]}x{result.size[1]}, LOD {result.lod} "
          f"({result.n_gaussians} Gaussians, {result.backend}) in {result.seconds:.1f} s = "
          f"{result.fps:.2f} fps -> {out}")
    return 0
