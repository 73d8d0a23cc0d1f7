"""Self-reenactment's whole-frame error, split by region: which part of the portrait to fix first.

    nice python scripts/mouth_reenactment.py prepare --media /work/shared/media --clip d3 --every 15
    nice python scripts/reenactment_regions.py --clip d3 [--maps DIR] [--rebuild-interior]

Reads the avatar, track and cut frames that ``mouth_reenactment.py prepare`` keeps in ``--work``,
renders LOD 2 on every kept frame and prints per frame PSNR full, SSIM full, AKD and alpha IoU
(eval's FrameScorer, real pixels only), the share of the squared error in each region
(eval.metrics.portrait.error_split: background, silhouette, face, head above the chin outside
the face, body below the chin) and eval's SSIM-loss split; then the means. ``--maps`` saves
target | render | |difference| x3 per frame (padding, which no metric counts, in dark blue).
``--rebuild-interior`` rebuilds the mouth and eye parts with the current code's defaults (unrefined)
before rendering, to compare interior changes on one avatar. A diagnostic (issue 14), not a
benchmark: nothing here gates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.avatar.rendering import render_frames  # noqa: E402
from backend.eval.metrics.portrait import ERROR_REGIONS, SSIM_REGIONS, error_split  # noqa: E402
from backend.eval.protocols.reenactment import drive_params  # noqa: E402
from backend.eval.protocols.scoring import FrameScorer  # noqa: E402
from mouth_reenactment import _load, _rebuild_mouth  # noqa: E402


def _save_map(path: Path, target: np.ndarray, render: np.ndarray, valid: np.ndarray) -> None:
    from PIL import Image

    d = np.repeat(np.abs(render - target).mean(-1, keepdims=True), 3, -1) * 3.0
    d[~valid] = (0.0, 0.0, 0.3)
    both = np.concatenate([target, render, d], 1)
    Image.fromarray((np.clip(both, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="d3", help="liveportrait_<clip>.mp4, prepared in --work")
    ap.add_argument("--work", type=Path, default=Path("out/mouth_reenactment"))
    ap.add_argument("--maps", type=Path, default=None, help="save target | render | difference here")
    ap.add_argument("--rebuild-interior", action="store_true")
    a = ap.parse_args()
    if not (a.work / f"{a.clip}.npz").exists():
        raise SystemExit(f"{a.work / (a.clip + '.npz')}: not found (run mouth_reenactment.py prepare first)")
    build, tracked, frames, valid = _load(a.work, a.clip)
    if a.rebuild_interior:
        _rebuild_mouth(build, {})
    if a.maps is not None:
        a.maps.mkdir(parents=True, exist_ok=True)
    av = build.avatar
    v = np.ones((512, 512), bool) if valid is None else np.asarray(valid, bool)
    idx = sorted(i for i in frames if i > 0)
    params = drive_params(av.params, tracked, idx, relative_translation=False)
    rows = []
    with FrameScorer(identity=False) as scorer:
        for i, (img, alpha) in zip(idx, render_frames(av, build.model, params, 2, camera=av.camera,
                                                        with_alpha=True)):
            tg = scorer.target(frames[i], valid=v)
            s = scorer.score(img, tg, alpha=alpha)
            chin = float(np.max(tg.landmarks[:, 1])) if tg.landmarks is not None else float(img.shape[0])
            split = error_split(img, tg.full, alpha, tg.portrait, tg.face_mask, chin, valid=v)
            ssim_loss = [getattr(s, f"ssim_loss_{k}") for k in SSIM_REGIONS]
            row = [s.psnr_full, s.ssim_full, s.akd, s.alpha_iou] + [split[k] for k in ERROR_REGIONS] + ssim_loss
            rows.append(row)
            print(f"frame {i:4d}  psnr_full {s.psnr_full:6.2f}  ssim_full {s.ssim_full:.3f}  akd {s.akd:5.2f}"
                  f"  alpha_iou {s.alpha_iou:.3f}  error share " + " ".join(f"{k} {split[k]:.2f}" for k in ERROR_REGIONS)
                  + "  ssim lost " + " ".join(f"{k} {x:.3f}" for k, x in zip(SSIM_REGIONS, ssim_loss)), flush=True)
            if a.maps is not None:
                _save_map(a.maps / f"{a.clip}_{i:04d}.png", tg.full, img, v)
    m = np.nanmean(np.array(rows, float), 0)
    names = ["psnr_full", "ssim_full", "akd", "alpha_iou"] + [f"error_{k}" for k in ERROR_REGIONS] + \
            [f"ssim_loss_{k}" for k in SSIM_REGIONS]
    print("mean " + "  ".join(f"{k} {x:.4f}" for k, x in zip(names, m)))


if __name__ == "__main__":
    main()
