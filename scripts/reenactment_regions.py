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
before rendering, to compare interior changes on one avatar. ``--flow`` also warps each render onto
its target by optical flow (OpenCV's DIS, blurred by an 8 px Gaussian so it carries the motion of
whole regions, not texture) and prints SSIM full with the whole person warped and with one region
warped at a time (face = the target's landmark hull; above it, beside it left and right, and the
body below the chin): what SSIM loses to things drawn in the wrong place, not in the wrong colour.
A diagnostic (issue 14), not a benchmark: nothing here gates.
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


FLOW_BLUR_PX = 8.0  # the flow's Gaussian blur: whole regions' motion, not texture
FLOW_REGIONS = ("face", "above", "left", "right", "body")


def flow_gains(render: np.ndarray, target, alpha: np.ndarray, valid: np.ndarray) -> dict[str, float]:
    """SSIM full of ``render`` (H, W, 3) float [0, 1] against ``target`` (eval Target) as rendered,
    with the person (target's portrait or the render's alpha, dilated 7 px) warped onto the target
    by the smoothed flow ("all"), and its gain with each of FLOW_REGIONS alone warped."""
    import cv2
    from scipy.ndimage import gaussian_filter

    from backend.image_metrics import ssim

    def gray(x: np.ndarray) -> np.ndarray:
        return cv2.cvtColor((np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)

    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(gray(target.full), gray(render), None)
    flow = np.stack([gaussian_filter(flow[..., k], FLOW_BLUR_PX) for k in range(2)], -1)
    h, w = valid.shape
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    warped = cv2.remap(render.astype(np.float32), xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_REPLICATE)
    person = (np.asarray(target.portrait) > 0.5) | (np.asarray(alpha) > 0.5)
    person = cv2.dilate(person.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool)
    face = np.asarray(target.face_mask, bool)
    out = {"ssim": ssim(render, target.full, valid)}
    out["all"] = ssim(np.where(person[..., None], warped, render), target.full, valid)
    if not face.any():
        return out | {k: float("nan") for k in FLOW_REGIONS}
    rows, cols = np.where(face.any(1))[0], np.where(face.any(0))[0]
    top, chin, left, right = rows.min(), rows.max(), cols.min(), cols.max()
    beside = person & ~face & (yy >= top) & (yy <= chin)
    regions = {"face": face, "above": person & ~face & (yy < top), "left": beside & (xx < left),
               "right": beside & (xx > right), "body": person & ~face & (yy > chin)}
    for k, m in regions.items():
        out[k] = ssim(np.where(m[..., None], warped, render), target.full, valid) - out["ssim"]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="d3", help="liveportrait_<clip>.mp4, prepared in --work")
    ap.add_argument("--work", type=Path, default=Path("out/mouth_reenactment"))
    ap.add_argument("--maps", type=Path, default=None, help="save target | render | difference here")
    ap.add_argument("--rebuild-interior", action="store_true")
    ap.add_argument("--flow", action="store_true", help="SSIM full with the render warped onto the target by flow")
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
    rows, flows = [], []
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
            if a.flow:
                g = flow_gains(img, tg, alpha, v)
                flows.append([g["all"]] + [g[k] for k in FLOW_REGIONS])
                print(f"           warped by flow: ssim_full {g['all']:.3f}; one region warped: "
                      + " ".join(f"{k} {g[k]:+.3f}" for k in FLOW_REGIONS), flush=True)
    m = np.nanmean(np.array(rows, float), 0)
    names = ["psnr_full", "ssim_full", "akd", "alpha_iou"] + [f"error_{k}" for k in ERROR_REGIONS] + \
            [f"ssim_loss_{k}" for k in SSIM_REGIONS]
    print("mean " + "  ".join(f"{k} {x:.4f}" for k, x in zip(names, m)))
    if flows:
        f = np.nanmean(np.array(flows, float), 0)
        print(f"mean warped by flow: ssim_full {f[0]:.4f}; one region warped: "
              + " ".join(f"{k} {x:+.4f}" for k, x in zip(FLOW_REGIONS, f[1:])))


if __name__ == "__main__":
    main()
