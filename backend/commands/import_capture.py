"""``python -m backend import-capture capture.csv -o take.npz``: a face capture (Live Link Face CSV,
or a plain CSV/JSON of ARKit weights) mapped onto the head model's expressions and joints, written
as a take file that Apply Track and load_motion read."""

from __future__ import annotations

import argparse
import sys

HELP = "face capture (Live Link Face CSV, ARKit CSV/JSON) -> take .npz for Apply Track"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("capture", help="Live Link Face CSV, or a CSV / JSON of ARKit-52 weights per frame")
    p.add_argument("-o", "--output", default="take.npz", help="take file to write (default: take.npz)")
    p.add_argument("--mapping", default=None, metavar="JSON",
                   help="source -> shape key / joint channel mapping (default: ARKit-52 onto the stand-in)")
    p.add_argument("--write-mapping", default=None, metavar="JSON",
                   help="also write the mapping used (a starting point for editing)")
    p.add_argument("--fps", type=float, default=None, help="resample the take to this rate (default: the capture's)")
    p.add_argument("--capture-fps", type=float, default=None,
                   help="the capture's rate (default: from its timecodes; 30 for a plain file without times)")
    p.add_argument("--timecode-fps", type=float, default=None,
                   help="Live Link Face timecode rate (default: from the frame field when the take "
                        "crosses a second, else 30)")
    p.add_argument("--head-model", default=None, help="head model (.npz); default: the built-in stand-in")


def run(args: argparse.Namespace) -> int:
    from ..output_safety import check_output_file

    check_output_file(args.output, [args.capture, args.mapping, args.head_model], suffixes=(".npz",), what="take file")
    if args.write_mapping:
        check_output_file(args.write_mapping, [args.capture, args.mapping, args.output], suffixes=(".json",),
                          what="--write-mapping file")
    for name in ("fps", "capture_fps", "timecode_fps"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise SystemExit(f"--{name.replace('_', '-')} must be > 0")
    from ..head.loader import load_head_model
    from ..motion.arkit import default_mapping, load_mapping, save_mapping, upgrade_mapping
    from ..motion.capture import read_capture
    from ..motion.takes import capture_to_motion, save_take

    mapping = load_mapping(args.mapping) if args.mapping else default_mapping()
    cap = read_capture(args.capture, args.capture_fps, args.timecode_fps, tuple(e.source for e in mapping))
    model = load_head_model(args.head_model)
    mapping, converted = upgrade_mapping(mapping, list(model.expr_names))
    motion, unused = capture_to_motion(cap, mapping, list(model.expr_names), model.n_shape, args.fps, args.mapping)
    out = save_take(motion, args.output, cap.start_seconds)
    if args.write_mapping:
        save_mapping(mapping, args.write_mapping)
    note = " (interpolated onto a uniform grid)" if cap.resampled else ""
    print(f"{out}: {motion.n_frames} frames at {motion.fps:g} fps from {cap.n_frames} capture frames at "
          f"{cap.fps:g} fps{note}")
    if converted:
        print(f"{args.mapping}: old stand-in targets carried over to ARKit-52 ({', '.join(converted)})",
              file=sys.stderr)
    if unused:
        print(f"not mapped ({len(unused)}): {', '.join(unused)}", file=sys.stderr)
    return 0
