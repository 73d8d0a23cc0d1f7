"""``python -m backend eval``: quality and speed evaluation report over photos and videos."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

HELP = "quality/speed evaluation report over photos and videos"


def _lods(text: str) -> tuple[int, ...]:
    try:
        lods = tuple(sorted({int(t) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--lods wants comma-separated integers, got {text!r}") from None
    if not lods or min(lods) < 0 or max(lods) > 3:
        raise argparse.ArgumentTypeError(f"LODs must be within 0..3, got {text!r}")
    return lods


def _positive(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--media", type=Path, default=None,
                        help="folder with photos/ and videos/ (default ../shared/media beside the repository; "
                             "skipped cleanly when absent)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report folder: README.md + PNG plots (default: a new folder "
                             "eval-report-<date>-<time> in the current folder)")
    parser.add_argument("--lods", type=_lods, default=(0, 1, 2), help="LODs to evaluate (default 0,1,2)")
    parser.add_argument("--every", type=_positive, default=5,
                        help="self-reenactment: every K-th frame after frame 0 drives (default 5)")
    parser.add_argument("--max-frames", type=int, default=0,
                        help="self-reenactment: at most N driving frames per clip (default 0 = all)")
    parser.add_argument("--cross-frames", type=int, default=8,
                        help="cross-reenactment: driving frames per photo/video pair (default 8)")
    parser.add_argument("--render-frames", type=_positive, default=8,
                        help="frames timed per LOD and backend for render fps (default 8)")
    parser.add_argument("--protocols", default="reconstruction,self,cross,speed",
                        help="comma-separated subset of reconstruction,self,cross,speed,multiview "
                             "(multiview: a build from --views frames of each clip's first 60 %% vs a "
                             "single-photo build from frame 0, scored on every --every-th later frame)")
    parser.add_argument("--views", type=_positive, default=8, help="multiview: views per clip (default 8)")
    parser.add_argument("--refine-seconds", type=float, default=None,
                        help="build: photometric refinement budget (default: the build's own)")
    parser.add_argument("--no-refine", action="store_true", help="build without photometric refinement")
    parser.add_argument("--refine-steps", type=_positive, default=None, metavar="N",
                        help="build: refine for exactly this many steps per LOD, without the time budget unless "
                             "--refine-seconds is given (figures that do not depend on the machine's load)")
    parser.add_argument("--head-model", default=None, help="head model file (default: bundled stand-in)")
    parser.add_argument("--backend", default="auto", choices=("auto", "cpu", "cuda"),
                        help="splatting backend for the quality protocols (default auto)")
    parser.add_argument("--no-identity", action="store_true", help="skip the dlib identity metric")
    parser.add_argument("--calibrate-tracker", action="store_true",
                        help="self-reenactment: fit the clip with the tracker calibrated to the avatar "
                             "(as track --avatar --calibration does; 526 renders + face-mesh readings per clip)")
    parser.add_argument("--tracker-offsets", choices=("full", "depth"), default="",
                        help="self-reenactment: fit the clip with the tracker's landmark offsets to the avatar "
                             "(avatar.calibrate.landmark_offsets: 3 renders + face-mesh readings per clip; "
                             "depth: their depth only); a diagnostic, off by default")
    parser.add_argument("--render-passes", type=int, default=1, metavar="N",
                        help="self-reenactment: N render-and-compare passes after the fit (face.render_compare: "
                             "render the avatar at the fitted parameters, read the renders with face mesh, fit "
                             "again to the clip's landmarks shifted by the render's offset; only the scored "
                             "frames are rendered; default 1, as track --avatar and retarget drive an avatar; 0: "
                             "the plain fit)")
    parser.add_argument("--outline-pass", action="store_true",
                        help="self-reenactment, multi-view: take each scored frame's neck pitch from its outline "
                             "(face.pitch_pass, as track --avatar --outline-pass drives; off by default: it raises "
                             "PSNR and SSIM full and costs AKD and mouth PSNR, docs/figures/eval.md)")
    from .render import add_render_pass_arguments

    add_render_pass_arguments(parser)
    parser.add_argument("--avatar", type=Path, default=None,
                        help="speed only: time rendering of this saved .omgavatar per LOD and backend "
                             "(no media or metric models needed)")
    parser.add_argument("--render-backends", default=None,
                        help="speed: comma-separated splatting backends to time (default: every available one)")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="re-render the report from a figures file written by --json (measures nothing)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure to this JSON file")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="figures file (--json) of an earlier run: its summary is shown beside this run's")
    parser.add_argument("--baseline-label", default=None,
                        help="what the --baseline run was (e.g. 'commit 58100bd'), for the report")


def _command_line() -> str:
    """The command as typed, for the report (only when run as ``python -m backend``)."""
    if Path(sys.argv[0]).name == "__main__.py" and sys.argv[1:2] == ["eval"]:
        return ("python -m backend eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])).strip()
    return "backend.cli.main(['eval', ...])"


def _baseline(path: Path | None, label: str | None) -> dict | None:
    """The ``summary`` block of an earlier figures file, re-computed from its rows (so a file
    written before a metric existed shows n/a for it), labelled for the report."""
    if path is None:
        return None
    import json

    from ..errors import InputError
    from ..eval.results import results_from_dict, summary

    try:
        base = summary(results_from_dict(json.loads(path.read_text())))
    except (OSError, ValueError, KeyError) as exc:
        raise InputError(path, f"not a readable eval figures file ({exc})") from None
    base["_label"] = label or f"the run in {path.name}"
    return base


def run(args: argparse.Namespace) -> int:
    from ..eval.media import default_media_dir, find_media
    from ..eval.report import write_report
    from ..eval.run import EvalOptions, run_eval
    from ..progress import tqdm_progress
    from ..stats import write_json

    from ..output_safety import check_output_dir, check_output_file, fresh_dir_name

    backends = [b.strip() for b in args.render_backends.split(",")] if args.render_backends else None
    if args.out is None:
        args.out = fresh_dir_name(".", "eval-report")
    check_output_dir(args.out, [args.media, args.avatar, args.from_json, args.head_model],
                     what="report folder")
    if args.json:
        check_output_file(args.json, [args.from_json, args.avatar], what="--json file")
    command = _command_line()
    baseline = _baseline(args.baseline, args.baseline_label)
    if args.from_json is not None:
        import json

        from ..eval.results import results_from_dict

        from ..errors import InputError

        try:
            res = results_from_dict(json.loads(args.from_json.read_text()))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(args.from_json, f"not a readable eval figures file ({exc})") from None
        if baseline is not None:
            res.baseline = baseline
        md = write_report(res, args.out, command, rerendered=True)
        print(f"report: {md}")
        return 0
    if args.avatar is not None:
        from ..eval.run import run_speed_only

        res = run_speed_only(args.avatar, EvalOptions(lods=args.lods, render_frames=args.render_frames,
                                                      build={"head_model": args.head_model}),
                             backends, log=lambda m: print(m, file=sys.stderr))
        res.options["command"] = command
        write_json(args.json, res.as_dict())
        md = write_report(res, args.out, command)
        print(f"report: {md}")
        return 0
    media_dir = args.media if args.media is not None else default_media_dir()
    media = find_media(media_dir)
    if media.empty:
        print(f"eval: no photos or videos under {media_dir}: nothing to evaluate (skipped)", file=sys.stderr)
        return 0
    protocols = tuple(p.strip() for p in args.protocols.split(",") if p.strip())
    unknown = set(protocols) - {"reconstruction", "self", "cross", "speed", "multiview"}
    if unknown:
        print(f"eval: unknown protocol(s) {sorted(unknown)}", file=sys.stderr)
        return 2
    build: dict = {}
    if args.head_model:
        build["head_model"] = args.head_model
    if args.no_refine:
        build["refine"] = False
    else:
        if args.refine_seconds is not None:
            build["refine_seconds"] = float(args.refine_seconds)
        if args.refine_steps is not None:
            build["refine"] = True
            build["refine_steps"] = int(args.refine_steps)
            build.setdefault("refine_seconds", 1e6)
    build["render_backend"] = args.backend
    opts = EvalOptions(lods=args.lods, every=args.every, max_frames=args.max_frames,
                       cross_frames=args.cross_frames, render_frames=args.render_frames,
                       render_backend=args.backend, speed_backends=tuple(backends) if backends else None,
                       build=build, identity=not args.no_identity,
                       protocols=protocols, views=args.views, calibrate=args.calibrate_tracker,
                       tracker_offsets=args.tracker_offsets, render_passes=args.render_passes,
                       render_pass_mode=args.render_pass_mode, render_pass_threshold_px=args.render_pass_threshold,
                       outline_pass=args.outline_pass)
    progress, close = tqdm_progress("eval")
    try:
        res = run_eval(media, opts, log=lambda m: print(m, file=sys.stderr), progress=progress)
    finally:
        close()
    res.options["command"] = command
    res.baseline = baseline
    write_json(args.json, res.as_dict())  # first: the figures survive a failing plot
    md = write_report(res, args.out, command)
    print(f"report: {md}")
    return 0
