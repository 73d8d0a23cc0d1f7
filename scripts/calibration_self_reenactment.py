"""Does the tracker's calibration to the avatar help real clips? Self-reenactment both ways.

    .venv/bin/python scripts/calibration_self_reenactment.py --media /work/shared/media \
        [--clips liveportrait_d12.mp4,liveportrait_d3.mp4] [--every 15] [--lod 2] [--json F]

Per clip, as the eval's self-reenactment protocol (backend/eval/protocols/reenactment.py) does it,
but with ONE build of frame 0 and ONE track of the clip shared by both sides, so the only difference
is the fit: the clip's landmarks re-fitted for the avatar (``refit_for_avatar``) without and with
the tracker calibrated to it (``ReenactmentOptions.calibrate``, what ``eval --calibrate-tracker``
turns on). Prints and writes (``--json``: a figures file for ``python -m backend figures record``)
the mean AKD, PSNR/SSIM full, face PSNR, mouth PSNR (open-mouth frames), lips AKD and AKD shift of
each side. Needs the shared media (skips cleanly when a clip is absent); never writes next to it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEYS = ("akd", "psnr_full", "ssim_full", "psnr_face", "mouth_psnr", "akd_lips", "akd_shift")


def _mean(scores: list, key: str) -> float | None:
    vals = [getattr(s, key, None) for s in scores]
    vals = [float(v) for v in vals if v is not None and np.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--media", type=Path, required=True, help="folder with videos/")
    ap.add_argument("--clips", default="liveportrait_d12.mp4,liveportrait_d3.mp4,liveportrait_d0.mp4,"
                                       "liveportrait_d19.mp4")
    ap.add_argument("--every", type=int, default=15)
    ap.add_argument("--lod", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    from backend.avatar.build import build_avatar
    from backend.eval.protocols.reconstruction import build_options
    from backend.eval.protocols.reenactment import ReenactmentOptions, drive_params, refit_for_avatar, track_clip
    from backend.avatar.rendering import render_frames
    from backend.eval.protocols.scoring import FrameScorer
    from backend.head.loader import load_head_model

    model = load_head_model(None)
    out: dict = {"every": args.every, "lod": args.lod, "clips": {}}
    with FrameScorer(background=(0.0, 0.0, 0.0), identity=False) as scorer:
        for name in [c.strip() for c in args.clips.split(",") if c.strip()]:
            path = args.media / "videos" / name
            if not path.exists():
                print(f"{name}: not under {args.media / 'videos'} (skipped)", file=sys.stderr)
                continue
            t0 = time.perf_counter()
            base = ReenactmentOptions(lods=(args.lod,), every=args.every)
            clip = track_clip(path, model, base)
            build = build_avatar(clip.source_frame, build_options((args.lod,), {}))
            row: dict = {}
            for calibrate in (False, True):
                opts = ReenactmentOptions(lods=(args.lod,), every=args.every, calibrate=calibrate)
                tracked, frames = refit_for_avatar(clip, build, opts)
                idx = sorted(i for i in frames if i > 0)
                params = drive_params(build.avatar.params, tracked, idx, relative_translation=False)
                targets = [scorer.target(frames[i]) for i in idx]
                # exhausted at once: a generator suspended inside torch.no_grad leaves grad off
                renders = list(render_frames(build.avatar, build.model, params, args.lod, camera=build.avatar.camera,
                                             background=(0.0, 0.0, 0.0), with_alpha=True))
                scores = [scorer.score(img, t, alpha=a) for t, (img, a) in zip(targets, renders)]
                row["calibrated" if calibrate else "plain"] = {k: _mean(scores, k) for k in KEYS} | {"n": len(scores)}
            row["seconds"] = time.perf_counter() - t0
            out["clips"][name] = row
            print(name, json.dumps(row), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
