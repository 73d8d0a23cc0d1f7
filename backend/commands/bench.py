"""``python -m backend bench <target> [options]``: dispatch to a benchmark module per area.

Each target module exposes ``HELP`` (optional), ``add_arguments(parser)`` and ``run(args) -> int``.
Targets are imported only when chosen, so ``--help`` stays light; a target whose module does not
exist yet says so. Add a target by adding a line to ``BENCHMARKS``.
"""

from __future__ import annotations

import argparse
import importlib

HELP = "benchmarks (splat, lbs, model, build, fit, preview, refine; arkit: the ARKit-52 round trip)"

# target -> module path relative to the backend package
BENCHMARKS: dict[str, str] = {
    "splat": "render.bench",
    "lbs": "head.bench",
    "model": "model.bench",
    "fit": "face.bench",
    "build": "avatar.bench",
    "preview": "preview.bench",
    "refine": "eval.refine_bench",
    "arkit": "eval.arkit_roundtrip",
}


def _backend_package() -> str:
    return __package__.rsplit(".", 1)[0]  # "backend" or "<extension>.backend"


def load_benchmark(name: str):
    """Import the target's module (imported only when its target runs: they pull in torch etc.)."""
    return importlib.import_module(f"{_backend_package()}.{BENCHMARKS[name]}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", choices=sorted(BENCHMARKS), help="what to benchmark")
    parser.add_argument("target_args", nargs=argparse.REMAINDER,
                        help="options of the target (see: bench <target> --help)")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    module = load_benchmark(args.target)
    parser = argparse.ArgumentParser(
        prog=f"python -m backend bench {args.target}", description=getattr(module, "HELP", None)
    )
    module.add_arguments(parser)
    target_args = parser.parse_args(args.target_args)
    return int(module.run(target_args) or 0)
