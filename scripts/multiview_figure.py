"""The multi-view figure: single-photo and multi-view avatars side by side at yaw -60, 0 and +60 deg.

    .venv/bin/python scripts/multiview_figure.py [-o docs/figures/multiview_turnaround.png] [--json F]

Everything is synthetic (no shared media): a known avatar is built from the bundled sample photo
(skimage's public-domain astronaut) and its two sides are painted with stripes the front view barely
shows (red/yellow on the head's left, blue/cyan on its right: Gaussians whose surface faces sideways);
its view data are dropped, so like a real head its colours do not depend on the view (with them the
single-photo rebuild, which makes the same view data from the frontal frame, matched the known head's
turned colours by construction: the forty-fourth session measured 21.73 / 20.87 dB at -60 / +60 deg
for it without them, 23.84 / 22.85 with them).
That avatar is rendered turning from -60 to +60 deg yaw (13 frames, 512 px) into an image-sequence
folder; then it is rebuilt twice: from the frontal frame alone (``build frame.png``) and from the
folder (``build folder/ --views 8``, the multi-view build, anchored on the same frontal frame). The figure's rows: the known avatar, the
single-photo rebuild, the multi-view rebuild; columns: yaw -60, 0, +60 (each avatar at its own
source camera, its own source pose turned). Stamped "AI-generated" (backend.render.save_png).

Also prints each rebuild's PSNR against the known head's frames at the shown yaws (cut by the
rebuild's crop), the same over the pixels the painted stripes show (the only colours the frontal
frame cannot tell: the rest of the known head is what the single-photo build itself synthesizes from
that frame, which a single-photo rebuild repeats by construction) and the mean colour error (0..1, RGB mean absolute) of the painted Gaussians
against the known paint (``--json``: a figures file for ``python -m backend figures record``).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

YAWS = tuple(float(y) for y in np.linspace(-60.0, 60.0, 13))   # the turn-around clip (degrees)
SHOWN = (-60.0, 0.0, 60.0)                                    # the figure's columns
LOD = 2
SIDE_NX = 0.55          # a head Gaussian is on a side when its surface normal's |x| exceeds this
STRIPE_M = 0.012        # stripe height (metres, rest frame)
FRAME_MARK_CORNER = "top-left"  # where the turn-around's frames carry the watermark (background there)
PAINT = {+1: ((0.85, 0.15, 0.1), (0.95, 0.85, 0.2)), -1: ((0.1, 0.25, 0.9), (0.2, 0.85, 0.9))}


def painted_truth(avatar, model, lod: int = LOD) -> np.ndarray:
    """Paint ``avatar``'s head Gaussians of ``lod`` in place: those on the sides of the head (rest
    pose surface facing sideways, |normal x| > SIDE_NX, behind the head's middle depth and above its
    lowest third: cheeks behind the face, temples, ears; not the nose or the neck) get horizontal
    stripes, red/yellow on +x, blue/cyan on -x. Returns the (N_head,) bool mask of painted Gaussians."""
    from backend.avatar.attributes import vertex_normals
    from backend.avatar.posing import model_lods

    head = avatar.lods[lod]
    normals = vertex_normals(head.means, model_lods(model, [lod])[lod].faces)
    band = (np.floor(head.means[:, 1] / STRIPE_M).astype(np.int64) % 2).astype(bool)
    painted = np.zeros(len(head), bool)
    region = (head.means[:, 2] < np.median(head.means[:, 2])) & (head.means[:, 1] > np.percentile(head.means[:, 1], 33))
    for sign, (c0, c1) in PAINT.items():
        side = (sign * normals[:, 0] > SIDE_NX) & region
        head.colors[side & ~band] = c0
        head.colors[side & band] = c1
        painted |= side
    return painted


def turned(avatar, yaws) -> "object":
    """HeadParams (T = len(yaws)): ``avatar``'s source frame with the head turned by each yaw (deg)."""
    from backend.head.params import HeadParams

    p = avatar.params.frame(0)
    T = len(yaws)
    pose = np.repeat(p.pose, T, 0).copy()
    pose[:, 0, 1] += np.radians(np.asarray(yaws, np.float32))
    return HeadParams(p.shape, np.repeat(p.expr, T, 0), pose, np.repeat(p.transl, T, 0))


def render(avatar, model, yaws, background=(1.0, 1.0, 1.0)) -> list[np.ndarray]:
    """(512, 512, 3) float32 renders of ``avatar`` at its source camera, turned by ``yaws``."""
    from backend.avatar.rendering import render_frames

    return list(render_frames(avatar, model, turned(avatar, yaws), LOD, background=background, backend="cpu"))


def paint_error(rebuilt, model, truth_colors: np.ndarray, painted: np.ndarray) -> float:
    """Mean |colour - known paint| over the painted head Gaussians (same topology: LOD ``LOD``)."""
    c = rebuilt.lods[LOD].colors[: len(painted)]
    return float(np.abs(c[painted] - truth_colors[painted]).mean())


def painted_masks(truth, model, painted: np.ndarray) -> list[np.ndarray]:
    """(512, 512) bool per SHOWN yaw, in the known head's frames: the pixels whose colour the
    painted Gaussians give more than half of (the known head rendered with them white and all
    else black, without view data)."""
    import dataclasses

    head = truth.lods[LOD]
    white = dataclasses.replace(head, colors=np.repeat(painted[:, None], 3, 1).astype(np.float32))
    parts = [dataclasses.replace(p, gaussians=dataclasses.replace(
        p.gaussians, colors=np.zeros_like(p.gaussians.colors))) for p in truth.parts]
    coded = dataclasses.replace(truth, lods={**truth.lods, LOD: white}, parts=parts, lod_views={})
    return [r[..., 0] > 0.5 for r in render(coded, model, SHOWN, background=(0.0, 0.0, 0.0))]


def shown_psnr(result, renders: list[np.ndarray], frames: list[np.ndarray],
               masks: list[np.ndarray] | None = None) -> list[float]:
    """PSNR (dB) of a rebuild's renders at SHOWN yaws against the known head's turn-around frames
    at those yaws, cut by the rebuild's own crop (its renders are in that framing); with ``masks``
    (painted_masks, in the frames' framing) over those pixels only (NaN where none is left)."""
    from backend.face.crop import apply_crop

    out = []
    for k, (yaw, img) in enumerate(zip(SHOWN, renders)):
        frame = (np.clip(frames[YAWS.index(yaw)], 0, 1) * 255 + 0.5).astype(np.uint8)
        target = apply_crop(frame, result.observation.crop).astype(np.float64) / 255.0
        err = (np.clip(img, 0, 1).astype(np.float64) - target) ** 2
        if masks is not None:
            keep = apply_crop(masks[k].astype(np.uint8) * 255, result.observation.crop) > 127
            if not keep.any():
                out.append(float("nan"))
                continue
            err = err[keep]
        mse = float(np.mean(err))
        out.append(10.0 * np.log10(1.0 / max(mse, 1e-12)))
    return out


def grid(rows: list[list[np.ndarray]], labels: list[str], tile: int = 256) -> np.ndarray:
    """(rows * tile + tile // 4, cols * tile, 3) uint8: the renders resized to ``tile``, a label per row,
    a white band at the bottom for the watermark."""
    from PIL import Image, ImageDraw

    out = []
    for row, label in zip(rows, labels):
        tiles = [Image.fromarray((np.clip(f, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((tile, tile), Image.LANCZOS)
                 for f in row]
        ImageDraw.Draw(tiles[0]).text((6, 6), label, fill=(0, 0, 0))
        out.append(np.concatenate([np.asarray(t) for t in tiles], axis=1))
    strip = np.concatenate(out, axis=0)
    band = np.full((tile // 4, strip.shape[1], 3), 255, np.uint8)  # room for the watermark below the renders
    img = Image.fromarray(np.concatenate([strip, band], axis=0))
    draw = ImageDraw.Draw(img)
    for j, yaw in enumerate(SHOWN):
        draw.text((j * tile + tile - 70, 6), f"yaw {yaw:+.0f}", fill=(0, 0, 0))
    return np.asarray(img)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-o", "--out", type=Path, default=ROOT / "out" / "multiview_turnaround.png")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--views", type=int, default=8)
    parser.add_argument("--refine-seconds", type=float, default=10.0, help="refinement budget of both rebuilds")
    parser.add_argument("--registration-px", type=float, default=None,
                        help="multi-view MultiViewOptions.registration_px (default: the build's; 0: off)")
    args = parser.parse_args(argv)

    from backend.avatar.build import BuildOptions, build_avatar
    from backend.avatar.multiview import MultiViewOptions, build_from_views
    from backend.render import save_png, to_uint8

    t0 = time.perf_counter()
    known = build_avatar(None, BuildOptions(lods=(LOD,), refine=False, metrics=False))
    truth, model = known.avatar, known.model
    painted = painted_truth(truth, model)
    # a real head's colours do not depend on the view; a build's view data (view_colors.py) model
    # its one photo's smear, and a single-photo rebuild of the frontal frame would repeat them
    truth.lod_views = {}
    truth_colors = truth.lods[LOD].colors.copy()
    frames = render(truth, model, YAWS)
    opts = BuildOptions(lods=(LOD,), refine=True, refine_seconds=args.refine_seconds, metrics=False)
    with tempfile.TemporaryDirectory(prefix="omg_turnaround_") as tmp:
        folder = Path(tmp) / "turnaround"
        folder.mkdir()
        for i, f in enumerate(frames):  # the clip the rebuilds see, watermarked like every render
            # in the corner the head leaves empty: bottom-right, the rebuilds fused the mark into the torso
            save_png(folder / f"frame_{i:02d}.png", f, corner=FRAME_MARK_CORNER)
        front = folder / f"frame_{YAWS.index(0.0):02d}.png"
        single_res = build_avatar(front, opts)
        # the mixture-of-people check runs as in any build (one known head must pass it)
        mv = MultiViewOptions(views=args.views, refine_seconds=args.refine_seconds, anchor_frame=YAWS.index(0.0))
        if args.registration_px is not None:
            mv.registration_px = args.registration_px or None
        multi_res = build_from_views([folder], opts, mv)  # the same refinement budget, over all views
    single, multi = single_res.avatar, multi_res.avatar
    rows = [render(a, model, SHOWN) for a in (truth, single, multi)]
    masks = painted_masks(truth, model, painted)
    builds = (("single", single_res, rows[1]), ("multi", multi_res, rows[2]))
    psnr = {key: shown_psnr(res, row, frames) for key, res, row in builds}
    psnr_painted = {key: shown_psnr(res, row, frames, masks) for key, res, row in builds}
    img = grid(rows, ["known avatar", "single photo (yaw 0)", f"multi-view ({len(multi.options['views'])} views)"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_png(args.out, img)
    figures = {
        "yaws_clip_deg": list(YAWS), "shown_deg": list(SHOWN), "lod": LOD,
        "painted_gaussians": int(painted.sum()),
        "views": multi.options["views"],
        "psnr_single": psnr["single"], "psnr_multi": psnr["multi"],   # per shown yaw
        # the same over the pixels the painted stripes show in the known head's frames
        "psnr_painted_single": psnr_painted["single"], "psnr_painted_multi": psnr_painted["multi"],
        "painted_px": [int(m.sum()) for m in masks],
        "paint_error_single": paint_error(single, model, truth_colors, painted),
        "paint_error_multi": paint_error(multi, model, truth_colors, painted),
        "seen_share": multi.options["multiview"]["seen_share"],
        "identity_spread": multi.options["multiview"]["identity_spread"],
        "skin_spread": multi.options["multiview"].get("skin_spread"),
        "seconds": time.perf_counter() - t0,
        "png": str(args.out),
    }
    print("PSNR vs the known head's frames at yaw " + ", ".join(f"{y:+.0f}" for y in SHOWN) + ": single photo "
          + ", ".join(f"{p:.2f}" for p in psnr["single"]) + " dB; multi-view " + ", ".join(f"{p:.2f}" for p in psnr["multi"]))
    print("PSNR over the painted stripes' pixels at yaw " + ", ".join(f"{y:+.0f}" for y in SHOWN) + ": single photo "
          + ", ".join(f"{p:.2f}" for p in psnr_painted["single"]) + " dB; multi-view "
          + ", ".join(f"{p:.2f}" for p in psnr_painted["multi"]) + f" ({figures['painted_px']} px)")
    print(f"painted sides: mean colour error single photo {figures['paint_error_single']:.3f}, "
          f"multi-view {figures['paint_error_multi']:.3f} ({figures['painted_gaussians']} Gaussians)")
    print(f"figure -> {args.out}")
    if args.json:
        from backend.output_safety import atomic_write_text

        atomic_write_text(args.json, json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
