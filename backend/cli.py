"""Command-line entry point: ``python -m backend <subcommand> ...``.

Each subcommand lives in ``backend/commands/<module>.py`` and exposes ``HELP: str``,
``add_arguments(parser)`` and ``run(args) -> int``. Command modules import their heavy
dependencies (torch, mediapipe) inside ``run``, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from typing import Sequence

from .errors import CancelledError, OMGError, OMGWarning

# subcommand name -> module under backend.commands
SUBCOMMANDS: dict[str, str] = {
    "build": "build",
    "track": "track",
    "retarget": "retarget",
    "render": "render",
    "export-ply": "export_ply",
    "train": "train",
    "prepare-data": "prepare_data",
    "bench": "bench",
    "eval": "eval",
    "figures": "figures",
    "import-capture": "import_capture",
    "export-capture": "export_capture",
}


def _command_module(name: str):
    return importlib.import_module(f"{__package__}.commands.{SUBCOMMANDS[name]}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m backend",
        description="OMG Avatar backend: one photo -> animatable multi-LOD 3D Gaussian head avatar.",
    )
    sub = parser.add_subparsers(dest="command", metavar="<command>")
    for name in SUBCOMMANDS:
        module = _command_module(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        if isinstance(e, KeyboardInterrupt):
            return True
        seen.add(id(e))
        e = e.__cause__ or e.__context__
    return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, OMGWarning):  # ours: one line, no source location
            print(f"warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        return int(_command_module(args.command).run(args) or 0)
    except (CancelledError, KeyboardInterrupt):
        # Ctrl-C: one line, no traceback; writers have removed their temporary files already
        print("cancelled", file=sys.stderr)
        return 130
    except OMGError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SystemError as exc:
        # Ctrl-C while a numba kernel runs without the GIL surfaces as SystemError("... returned a
        # result with an exception set") caused by the KeyboardInterrupt: still a cancel
        if not _caused_by_interrupt(exc):
            raise
        print("cancelled", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = shown


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
