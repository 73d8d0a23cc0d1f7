"""``python -m backend export-ply avatar.omgavatar -o DIR``: standard 3DGS .ply per LOD at a pose."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "avatar -> standard 3DGS .ply per LOD at a chosen pose"


def _expr_item(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        if not sep or not name:
            raise ValueError
        return name, float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--expr expects name=value, got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("avatar", help=".omgavatar file")
    p.add_argument("-o", "--output", default=".", help="output folder")
    p.add_argument("--lod", type=int, action="append", default=None, help="LOD to export (repeatable; default all)")
    p.add_argument("--expr", type=_expr_item, nargs="+", action="extend", default=[], metavar="NAME=VALUE",
                   help="expression coefficients by name (or index), e.g. mouthSmileLeft=0.8 eyeBlinkLeft=1 (stand-in: ARKit-52 names)")
    p.add_argument("--jaw", type=float, default=None, metavar="DEG", help="jaw opening in degrees")
    p.add_argument("--neutral", action="store_true", help="start from the neutral pose, not the photo's")
    p.add_argument("--head-model", default=None,
                   help="head model file the avatar was built on (default: the bundled stand-in; a "
                        "model file named inside the avatar is never opened without this option)")
    p.add_argument("--name", default=None, help="output file stem (default: the avatar's stem)")


def run(args: argparse.Namespace) -> int:
    from ..output_safety import check_output_dir, inside

    out = check_output_dir(args.output, [args.avatar, args.head_model])  # first: before any work
    if args.name is not None:
        inside(out, args.name)
    from ..avatar.expressions import edit_params
    from ..avatar.fileformat import load_avatar
    from ..avatar.outputs import export_plys
    from ..errors import InputError
    from ..head.loader import load_model_for_avatar

    avatar = load_avatar(args.avatar)
    model = load_model_for_avatar(args.avatar, avatar.head_model_name, avatar.head_model_path,
                                  args.head_model)
    if model.n_verts != avatar.vertex_offsets.shape[0]:
        raise InputError(args.head_model or avatar.head_model_path,
                         f"head model has {model.n_verts} vertices but the avatar was built on "
                         f"'{avatar.head_model_name}' with {avatar.vertex_offsets.shape[0]}")
    lods = sorted(set(args.lod)) if args.lod else avatar.levels
    missing = [l for l in lods if l not in avatar.lods]
    if missing:
        raise InputError(args.avatar, f"has no LOD {missing} (it has {avatar.levels})")
    params = edit_params(model, avatar.params, dict(args.expr), args.jaw, args.neutral)
    paths = export_plys(avatar, model, out, args.name or Path(args.avatar).stem, params, lods)
    for p in paths:
        print(p)
    return 0
