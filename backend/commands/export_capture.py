"""``python -m backend export-capture track.npz -o take.csv``: a track or take written as a Live Link
Face CSV (ARKit-52 weights + head/eye angles) by inverting the mapping. Lossy where the mapping is:
unmapped ARKit shapes are written 0, shapes sharing a target get an even split."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "track / take .npz -> Live Link Face CSV (ARKit-52 weights by the inverse mapping)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("track", help="track .npz (python -m backend track) or take .npz (import-capture)")
    p.add_argument("-o", "--output", default="take.csv", help="CSV to write (default: take.csv)")
    p.add_argument("--mapping", default=None, metavar="JSON", help="mapping to invert (default: the stand-in's)")
    p.add_argument("--head-model", default=None,
                   help="head model whose expression order a file without names uses (default: the stand-in)")


def run(args: argparse.Namespace) -> int:
    from ..output_safety import check_output_file

    check_output_file(args.output, [args.track, args.mapping, args.head_model], suffixes=(".csv",),
                      what="output CSV")
    from ..motion import load_motion
    from ..motion.arkit import default_mapping, load_mapping, upgrade_mapping
    from ..motion.capture import write_llf_csv
    from ..motion.takes import motion_to_capture

    motion = load_motion(args.track)
    names = motion.expr_names
    if not names:
        from ..head.loader import load_head_model

        names = list(load_head_model(args.head_model).expr_names)
    mapping = load_mapping(args.mapping) if args.mapping else default_mapping()
    mapping, _ = upgrade_mapping(mapping, list(names))   # old stand-in targets -> ARKit-52
    if not any(e.target in names for e in mapping):
        import warnings

        from ..errors import OMGWarning

        warnings.warn(OMGWarning(f"{Path(args.track).name}: no expression column of the track is a mapping "
                                 f"target ({', '.join(names[:3])}, ...): only the jaw, eye and neck channels "
                                 f"are written (a FLAME track needs a --mapping onto its exp_* columns)"))
    cap = motion_to_capture(motion, mapping, list(names))
    write_llf_csv(args.output, cap.values, cap.names, cap.fps, cap.start_seconds)
    print(f"{args.output}: {cap.n_frames} frames at {cap.fps:g} fps (Live Link Face CSV)")
    return 0
