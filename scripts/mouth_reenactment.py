"""Self-reenactment inside the mouth: the clip beside the render in the clip's inner-lip hull.

    nice python scripts/mouth_reenactment.py prepare --media /work/shared/media --clip d12 --every 5
        [--refine-steps 56] [--lens FOCAL DISTANCE]
    nice python scripts/mouth_reenactment.py score --clip d12 [--rebuild-mouth '{"teeth_color": [0.7, 0.5, 0.5]}']
        [--all] [--crops DIR]

``prepare`` builds the avatar from the clip's frame 0 and drives it as eval's self-reenactment
protocol does (backend/eval/protocols/reenactment.py), keeping the avatar (``<clip>.omgavatar``)
and the photo's observation, the re-fitted track and the cut frames (``<clip>.npz``, plain arrays,
read without pickle; the torso channel too) in ``--work`` (default out/mouth_reenactment; existing files are kept unless
``--force``), so variants of the mouth parts can be scored on the same avatar and driving. ``score`` renders LOD 2 on the open-mouth frames (``--all``: every
kept frame) and prints per frame PSNR full, SSIM full, AKD, mouth PSNR, the mean colour inside the
clip's inner-lip hull in clip and render, and the overlap of the two hulls; ``--rebuild-mouth``
rebuilds the mouth and eye parts with MouthOptions overrides (JSON) instead of the build's own
(refined) ones; ``--crops`` saves clip | render crops round the mouth with the hull drawn in green.
A diagnostic (issue 14), not a benchmark: nothing here gates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.avatar.rendering import render_frames  # noqa: E402
from backend.eval.metrics.portrait import mouth_mask, mouth_opening  # noqa: E402
from backend.eval.protocols.reenactment import (ReenactmentOptions, real_pixels, drive_params,  # noqa: E402
                                                refit_for_avatar, track_clip)
from backend.eval.protocols.scoring import FrameScorer  # noqa: E402
from prepared_clip import claim_prepared_files, load_prepared  # noqa: E402


def prepare(media: Path, clip: str, every: int, work: Path, force: bool, refine_steps: int = 0,
            lens: tuple[float, float] | None = None) -> None:
    """refine_steps > 0: that many refinement steps (as eval --refine-steps: builds that do not
    depend on the load) instead of the time budget. lens (focal, distance): a diagnostic source
    camera, fx = focal * 256 px at ``distance`` m (the product's is (12, 2): face/crop.py), set for
    the whole process (build, tracking, renders)."""
    from backend.avatar.build import build_avatar
    from backend.avatar.fileformat import save_avatar
    from backend.eval.protocols.reconstruction import build_options

    if lens is not None:
        from backend.face import crop as crop_module

        crop_module.crop_intrinsics.__defaults__ = (crop_module.CROP_SIZE, float(lens[0]))
        crop_module.crop_viewmat.__defaults__ = (float(lens[1]),)
    avatar_file, arrays_file = claim_prepared_files(work, clip, force)
    opts = ReenactmentOptions(lods=(2,), every=every)
    tc = track_clip(media / "videos" / f"liveportrait_{clip}.mp4", None, opts)
    fixed = {"refine_steps": refine_steps, "refine_seconds": 1e6} if refine_steps > 0 else {}
    build = build_avatar(tc.source_frame, build_options((2,), fixed))
    tracked, frames = refit_for_avatar(tc, build, opts)
    idx = sorted(frames)
    obs = build.observation
    work.mkdir(parents=True, exist_ok=True)
    save_avatar(build.avatar, avatar_file)
    np.savez(arrays_file, image512=np.asarray(obs.image512), mask=np.asarray(obs.mask, np.float32),
             landmarks=np.asarray(obs.landmarks, np.float32), valid=real_pixels(tc, build),
             frame_index=np.asarray(idx, np.int64), frames=np.stack([frames[i] for i in idx]),
             shape=tracked.shape, expr=tracked.expr, pose=tracked.pose, transl=tracked.transl,
             **({} if tracked.torso is None else {"torso": tracked.torso}))


def _load(work: Path, clip: str):
    """-> (build-like namespace: avatar, model, observation), tracked HeadParams, frames, valid."""
    from types import SimpleNamespace

    from backend.head.params import HeadParams

    avatar, model, a = load_prepared(work, clip)
    obs = SimpleNamespace(image512=a["image512"], mask=a["mask"], landmarks=a["landmarks"])
    # the torso channel as eval drives it (files prepared before it was kept have none: the body
    # then moves with the head's translation alone)
    tracked = HeadParams(a["shape"], a["expr"], a["pose"], a["transl"], a.get("torso"))
    frames = {int(i): f for i, f in zip(a["frame_index"], a["frames"])}
    return SimpleNamespace(avatar=avatar, model=model, observation=obs), tracked, frames, a["valid"]


def _rebuild_mouth(build, overrides: dict) -> None:
    from backend.avatar.build import BuildOptions, foreground_colors
    from backend.avatar.imageops import to_float
    from backend.avatar.interior import interior_parts

    av, obs = build.avatar, build.observation
    opts = BuildOptions(lods=(2,))
    mouth = dataclasses.replace(opts.mouth, **{k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()})
    photo = foreground_colors(to_float(obs.image512), np.asarray(obs.mask, np.float32))
    inner = interior_parts(build.model, av.params, av.camera, photo, np.asarray(obs.landmarks, np.float32),
                           mouth, opts.eyes)
    names = {p.name for p in inner}
    av.parts = [p for p in av.parts if p.name not in names] + inner


def _save_crop(path: Path, target: np.ndarray, render: np.ndarray, hull: np.ndarray) -> None:
    from PIL import Image

    ys, xs = np.nonzero(hull)
    cy, cx = int(ys.mean()), int(xs.mean())
    sl = (slice(max(cy - 60, 0), cy + 60), slice(max(cx - 80, 0), cx + 80))
    edge = hull ^ np.roll(hull, 1, 0)
    t, r = target.copy(), render.copy()
    t[edge] = r[edge] = (0.0, 1.0, 0.0)
    both = np.concatenate([t[sl], r[sl]], 1)
    Image.fromarray((np.clip(both, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def score(clip: str, work: Path, rebuild: dict | None, all_frames: bool, crops: Path | None) -> None:
    build, tracked, frames, valid = _load(work, clip)
    if rebuild is not None:
        _rebuild_mouth(build, rebuild)
    av = build.avatar
    scorer = FrameScorer(identity=False)
    idx = sorted(i for i in frames if i > 0)
    targets = {i: scorer.target(frames[i], valid=valid) for i in idx}
    if not all_frames:
        idx = [i for i in idx if mouth_mask(targets[i].landmarks, 512, 512) is not None]
    params = drive_params(av.params, tracked, idx, relative_translation=False)
    rows = []
    renders = render_frames(av, build.model, params, 2, camera=av.camera, with_alpha=True)
    for i, (img, alpha) in zip(idx, renders):
        tg = targets[i]
        s = scorer.score(img, tg, alpha=alpha)
        hull = mouth_mask(tg.landmarks, 512, 512)
        line = (f"frame {i:4d}  psnr_full {s.psnr_full:6.2f}  ssim_full {s.ssim_full:.3f}  akd {s.akd:5.2f}"
                f"  mouth_psnr {s.mouth_psnr:6.2f}")
        if hull is not None:
            line += (f"  opening {mouth_opening(tg.landmarks):.2f}  clip rgb {np.round(tg.image[hull].mean(0), 2)}"
                     f"  render rgb {np.round(img[hull].mean(0), 2)}")
            lm = scorer.render_landmarks(img)
            if lm is not None:
                rh = mouth_mask(lm, 512, 512, threshold=0.0)
                line += f"  hull overlap {np.count_nonzero(rh & hull) / max(np.count_nonzero(rh | hull), 1):.2f}"
            if crops is not None:
                _save_crop(crops / f"frame{i:04d}.png", tg.image, img, hull)
        print(line, flush=True)
        rows.append(s)
    for k in ("psnr_full", "ssim_full", "akd", "alpha_iou", "mouth_psnr"):
        v = np.array([getattr(s, k) for s in rows], float)
        print(f"mean {k}: {np.nanmean(v):.4f} over {np.count_nonzero(np.isfinite(v))} frames")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "score"))
    ap.add_argument("--clip", default="d12", help="liveportrait_<clip>.mp4")
    ap.add_argument("--media", type=Path, default=Path("../shared/media"))
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--rebuild-mouth", default=None, help="JSON MouthOptions overrides ('{}': the defaults)")
    ap.add_argument("--all", action="store_true", help="score every kept frame, not only open-mouth ones")
    ap.add_argument("--crops", type=Path, default=None)
    ap.add_argument("--work", type=Path, default=Path("out/mouth_reenactment"),
                    help="where prepare keeps the avatar, track and frames that score reads")
    ap.add_argument("--force", action="store_true", help="prepare: replace an earlier prepare's files")
    ap.add_argument("--refine-steps", type=int, default=0, help="prepare: fixed refinement steps (0: time budget)")
    ap.add_argument("--lens", type=float, nargs=2, default=None, metavar=("FOCAL", "DISTANCE"),
                    help="prepare: a diagnostic source camera, fx = FOCAL * 256 px at DISTANCE m (product: 12 2)")
    a = ap.parse_args()
    if a.step == "prepare":
        if not (a.media / "videos").is_dir():
            print(f"{a.media}: no videos/ folder (shared media absent), nothing to do")
            return
        prepare(a.media, a.clip, a.every, a.work, a.force, a.refine_steps, a.lens)
    else:
        if a.crops is not None:
            a.crops.mkdir(parents=True, exist_ok=True)
        score(a.clip, a.work, None if a.rebuild_mouth is None else json.loads(a.rebuild_mouth), a.all, a.crops)


if __name__ == "__main__":
    main()
