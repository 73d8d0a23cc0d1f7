"""Whole-portrait source-view figures with and without the hair volume and torso parts (issue 14).

    .venv/bin/python scripts/bench_portrait_parts.py [photos...] [--lod 2] [--json out.json]

Per photo (default: the sample astronaut, plus ../shared/media/photos/17_*, 18_*, 19_* when that
folder exists, see --media): face analysis and fit once, the analytic head at ``--lod`` without refinement, then
two renders at the source camera on black: "before" = head + the former image-plane shoulders
(avatar/shoulders.py), "after" = head + the "body" and "hair" parts (avatar/portrait.py). Prints
alpha IoU against the portrait mask, PSNR over the whole crop against the photo matted on black
(eval's ``psnr_full``) and PSNR inside the portrait-or-render union (eval's ``psnr_portrait``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def measure(photo, lod: int) -> dict[str, dict[str, float]]:
    from backend.avatar.build import BuildOptions, analytic_head
    from backend.avatar.gaussians import GaussianSet
    from backend.avatar.imageops import to_float
    from backend.avatar.portrait import portrait_parts
    from backend.avatar.posing import lbs_numpy, model_lods, part_transforms, skin_points
    from backend.avatar.shoulders import build_shoulders
    from backend.eval.metrics.masks import composite
    from backend.eval.metrics.portrait import alpha_iou, portrait_union
    from backend.face.analyze import FaceAnalyzer
    from backend.face.fit import fit_image
    from backend.head.loader import load_head_model
    from backend.image_metrics import psnr
    from backend.render.depth import rasterize_depth
    from backend.render.splat import splat

    model = load_head_model(None)
    with FaceAnalyzer() as an:
        obs = an.analyze(photo)
    fit = fit_image(model, obs)
    img, mask = to_float(obs.image512), np.asarray(obs.mask, np.float32)
    head = analytic_head(model, fit.params, fit.camera, img, mask, [lod], BuildOptions(lods=(lod,)))[lod]
    verts, joints, _ = lbs_numpy(model, fit.params)
    A = part_transforms(model, fit.params)
    head = head.with_means(np.asarray(model_lods(model, [lod])[lod].upsample @ verts[0], np.float32))
    plane = build_shoulders(img, mask, rasterize_depth(verts[0], model.faces, fit.camera).mask, fit.camera,
                            joints[0, 1])
    parts = [g.with_means(skin_points(g.means, w, A)[0])
             for _, g, w in portrait_parts(model, fit.params, fit.camera, img, mask, obs.landmarks).parts]
    target = composite(img, mask, (0.0, 0.0, 0.0))
    out = {}
    for tag, sets in (("before", [head, plane]), ("after", [head] + parts)):
        gs = GaussianSet.concat(sets)
        r = splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, fit.camera,
                  background=np.zeros(3, np.float32))
        render = np.clip(r.image[0].detach().cpu().numpy().transpose(1, 2, 0), 0, 1)
        alpha = r.alpha[0].detach().cpu().numpy()
        out[tag] = {"gaussians": len(gs), "alpha_iou": alpha_iou(alpha, mask), "psnr_full": psnr(render, target),
                    "psnr_portrait": psnr(render, target, portrait_union(alpha, mask))}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="*", help="photo files (default: astronaut + shared photos 17-19)")
    ap.add_argument("--lod", type=int, default=2)
    ap.add_argument("--media", type=Path, default=None, help="shared media folder (default ../shared/media)")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    from skimage.data import astronaut

    from backend.eval.media import default_media_dir

    photos = {Path(p).stem: p for p in args.photos}
    if not photos:
        photos = {"astronaut": astronaut()}
        media = (args.media or default_media_dir()) / "photos"
        for n in ("17", "18", "19"):  # long, tall and curly hair; skipped when the media are absent
            photos.update({p.stem: str(p) for p in sorted(media.glob(f"{n}_*"))})
    rows = {}
    for name, p in photos.items():
        rows[name] = measure(p, args.lod)
        for tag, m in rows[name].items():
            print(f"{name:28s} {tag:6s} LOD {args.lod}: {m['gaussians']:7d} Gaussians  alpha IoU {m['alpha_iou']:.3f}"
                  f"  psnr_full {m['psnr_full']:.2f}  psnr_portrait {m['psnr_portrait']:.2f}")
    for tag in ("before", "after"):
        print(f"mean {tag:6s}: alpha IoU {np.mean([r[tag]['alpha_iou'] for r in rows.values()]):.3f}"
              f"  psnr_full {np.mean([r[tag]['psnr_full'] for r in rows.values()]):.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"lod": args.lod, "photos": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
