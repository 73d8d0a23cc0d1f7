"""``python -m backend prepare-data videos/ -o DIR``: videos -> OMG training dataset (our face tracker)."""

from __future__ import annotations

import argparse

HELP = "videos -> training dataset with our face tracker"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("videos", help="folder of videos / image-sequence folders (or one video)")
    parser.add_argument("-o", "--out", required=True, help="dataset folder to write")
    parser.add_argument("--head-model", default=None, help="FLAME model file (default: the bundled stand-in)")
    parser.add_argument("--frame-format", choices=("jpg", "png"), default="jpg", help="frame image format")
    parser.add_argument("--min-confidence", type=float, default=0.3, help="drop frames tracked worse than this")
    parser.add_argument("--smoothing", type=float, default=None, help="tracking smoothing strength (default 2)")
    parser.add_argument("--json", default=None, help="write a summary (clips, frames) to this JSON file")


def run(args: argparse.Namespace) -> int:
    from ..face.track import TrackOptions
    from ..head.loader import load_head_model
    from ..model.prepare import prepare_dataset
    from ..progress import tqdm_progress
    from ..stats import write_json

    model = load_head_model(args.head_model)
    opts = TrackOptions()
    if args.smoothing is not None:
        opts.smoothing = args.smoothing
    progress, close = tqdm_progress("prepare-data")
    try:
        summary = prepare_dataset(args.videos, args.out, model, args.head_model, opts, args.frame_format,
                                  args.min_confidence, progress)
    finally:
        close()
    print(f"{summary['clips']} clips, {summary['frames']} frames written to {args.out} "
          f"({summary['dropped']} frames dropped; skipped: {summary['skipped'] or 'none'})")
    write_json(args.json, summary)
    return 0
