"""The sample avatar seen turned: plain, and with each part in a flat code colour (issue 14).

    nice python scripts/turned_views.py OUT.png [--yaws -60 -30 0 30 60 180] [--photo P]
        [--refine-steps 56] [--no-codes] [--avatar A.omgavatar] [--compare-view-data]

Builds the bundled sample (or ``--photo``) at LOD 2 with a fixed number of refinement steps (a
build that does not depend on the machine's load), or loads ``--avatar``, and renders it with the
backend splatter at the source pose turned by each yaw (``preview.turntable.turntable_params``) on
black (the picture stamped "AI-generated"). The second row paints the head grey, the torso green, the hair magenta and the mouth and
eye parts blue, which tells which part draws what a turned view shows (the thirty-fourth and
thirty-fifth sessions traced the suit's loop on the neck and the shirt's band on the neck column
this way). Run it in two checkouts to compare a change; ``--compare-view-data`` adds the plain views
without the avatar's view-dependent colours and sizes (view_colors.py) under the first row. A diagnostic picture; nothing here gates.
Never overwrites an existing OUT.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from itertools import islice
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PART_CODES = {"body": (0.1, 0.8, 0.1), "hair": (0.9, 0.1, 0.9)}   # the rest of the parts: blue
OTHER_PART = (0.2, 0.4, 1.0)
HEAD = (0.7, 0.7, 0.7)


def coded(avatar, level: int):
    """A copy of ``avatar`` whose LOD ``level`` head is HEAD grey and whose parts are their code colours."""
    g = avatar.lods[level]
    parts = [dataclasses.replace(p, gaussians=dataclasses.replace(
        p.gaussians, colors=np.broadcast_to(np.asarray(PART_CODES.get(p.name, OTHER_PART), np.float32),
                                            p.gaussians.colors.shape).copy()))
        for p in avatar.parts]
    lods = dict(avatar.lods)
    lods[level] = dataclasses.replace(g, colors=np.broadcast_to(np.asarray(HEAD, np.float32), g.colors.shape).copy())
    return dataclasses.replace(avatar, lods=lods, parts=parts, lod_views={})  # one colour from every view


def turned_views(avatar, model, yaws: tuple[float, ...], level: int = 2, codes: bool = True) -> np.ndarray:
    """(rows * 512, len(yaws) * 512, 3) float32 [0, 1]: the plain views, then (``codes``) the coded ones."""
    from backend.avatar.rendering import render_frames
    from backend.preview.turntable import turntable_params

    rows = []
    for a in (avatar, coded(avatar, level)) if codes else (avatar,):
        views = islice(render_frames(a, model, turntable_params(a, model, yaws), level, background=(0.0, 0.0, 0.0)),
                       len(yaws))
        rows.append(np.concatenate([np.asarray(v, np.float32)[..., :3] for v in views], 1))
    return np.concatenate(rows, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--yaws", type=float, nargs="+", default=[-60.0, -30.0, 0.0, 30.0, 60.0, 180.0])
    ap.add_argument("--photo", type=Path, default=None, help="a portrait (default: the bundled sample)")
    ap.add_argument("--avatar", type=Path, default=None, help="an .omgavatar to render instead of building")
    ap.add_argument("--refine-steps", type=int, default=56)
    ap.add_argument("--no-codes", action="store_true", help="only the plain row")
    ap.add_argument("--compare-view-data", action="store_true",
                    help="a second plain row without the avatar's view data (GaussianAvatar.lod_views: the side "
                         "colours and the silhouette fit's shrink undone away from the source view)")
    a = ap.parse_args()
    if a.out.exists():
        raise SystemExit(f"{a.out}: exists; choose another name (this script never overwrites a file)")
    from PIL import Image

    if a.avatar is not None:
        from backend.avatar.fileformat import load_avatar
        from backend.head.loader import load_model_for_avatar

        avatar = load_avatar(a.avatar)
        model = load_model_for_avatar(a.avatar, avatar.head_model_name, avatar.head_model_path)
    else:
        from backend.avatar.build import BuildOptions, build_avatar

        fixed = {"refine_steps": a.refine_steps, "refine_seconds": 1e6} if a.refine_steps > 0 else {"refine": False}
        result = build_avatar(None if a.photo is None else str(a.photo), BuildOptions(lods=(2,), **fixed))
        avatar, model = result.avatar, result.model
    picture = turned_views(avatar, model, tuple(a.yaws), codes=not a.no_codes)
    if a.compare_view_data:
        import dataclasses

        plain = turned_views(dataclasses.replace(avatar, lod_views={}), model, tuple(a.yaws), codes=False)
        picture = np.concatenate([picture[:512], plain, picture[512:]], 0)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    from backend.render.watermark import stamp_watermark

    Image.fromarray(stamp_watermark((np.clip(picture, 0, 1) * 255 + 0.5).astype(np.uint8))).save(a.out)
    print(f"wrote {a.out} ({picture.shape[1]} x {picture.shape[0]} px, yaws {a.yaws})")


if __name__ == "__main__":
    main()
