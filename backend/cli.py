"""Command-line entry point: ``python -m backend <subcommand> ...``.

Each subcommand lives in ``backend/commands/<name>.py`` and exposes
``HELP: str``, ``add_arguments(parser)`` and ``run(args) -> int``. Modules are imported only when
their subcommand runs, so ``--help`` stays fast and works without torch or mediapipe loaded.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Sequence

from .errors import CancelledError, OMGError

# name -> (module under backend.commands, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "build": ("build", "photo -> multi-LOD Gaussian avatar (.omgavatar, .ply per LOD, previews)"),
    "track": ("track", "video -> per-frame head-model parameters (track .npz)"),
    "retarget": ("retarget", "avatar + video -> tracked, rendered reenactment video"),
    "render": ("render", "avatar + track -> watermarked preview frames / video"),
    "export-ply": ("export_ply", "avatar -> standard 3DGS .ply per LOD at a chosen pose"),
    "train": ("train", "train the learned OMG network on a prepared dataset"),
    "prepare-data": ("prepare_data", "videos -> training dataset with our face tracker"),
    "bench": ("bench", "speed benchmarks (splat, lbs, build, track)"),
    "eval": ("eval", "quality/speed evaluation report over photos and videos"),
}


def _command_module(name: str):
    module_name = f"{__package__}.commands.{SUBCOMMANDS[name][0]}"
    if importlib.util.find_spec(module_name) is None:
        return None
    return importlib.import_module(module_name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backend",
        description="OMG Avatar backend: one photo -> animatable multi-LOD 3D Gaussian head avatar.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name, (module, help_text) in SUBCOMMANDS.items():
        available = importlib.util.find_spec(f"{__package__}.commands.{module}") is not None
        p = sub.add_parser(name, help=help_text if available else f"{help_text} [not built yet]")
        p.set_defaults(_available=available)
        if available:
            _command_module(name).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if not args._available:
        print(f"python -m backend {args.command}: not built yet in this version", file=sys.stderr)
        return 2
    try:
        return int(_command_module(args.command).run(args) or 0)
    except CancelledError:
        print("cancelled", file=sys.stderr)
        return 130
    except OMGError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
