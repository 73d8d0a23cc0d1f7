"""Mouth interior and eyes on the sample photo (the astronaut), as figures for a record.

    nice python -m backend figures record mouth_eyes_cpu -- python scripts/bench_mouth_eyes.py --json {json}

Builds LOD 2 without refinement twice (mouth and eyes off = the head mesh alone, then on) and
measures: source-view face PSNR/SSIM (inside the landmark hull) of both; with the jaw opened 0.35 rad,
the share of pixels inside the posed inner-lip ring (shrunk 20%) that are cavity-dark (luma < 0.3)
or tooth-white (luma > 0.55, saturation < 0.25), and the share within 0.1 (RGB) of the photo's lip
colour; with both blink keys at 1, the share of pixels inside each photo lid contour (shrunk 20%)
nearer the photo's upper-lid skin than its iris; Gaussian counts per part; the parts stage time.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.avatar.build import BuildOptions, build_avatar, render_source  # noqa: E402
from backend.avatar.eyes import IRIS, LID_LOOP, EyeOptions  # noqa: E402
from backend.avatar.mouth import INNER_LIP, MouthOptions  # noqa: E402
from backend.avatar.posing import lbs_numpy  # noqa: E402

OUTER_LIP = (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146)
LUMA = np.array([0.299, 0.587, 0.114])


def polygon_pixels(poly: np.ndarray, shrink: float, size: int = 512) -> np.ndarray:
    """(size, size) bool: pixel centres inside ``poly`` (K, 2) shrunk towards its centre."""
    from skimage.measure import points_in_poly

    c = poly.mean(0)
    yy, xx = np.mgrid[0:size, 0:size]
    pix = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    return points_in_poly(pix, c + shrink * (poly - c)).reshape(size, size)


def mouth_figures(av, model, obs, lod: int) -> dict[str, float]:
    photo = obs.image512.astype(np.float32) / 255.0
    lips = polygon_pixels(obs.landmarks[list(OUTER_LIP)], 1.0) & ~polygon_pixels(obs.landmarks[list(INNER_LIP)], 1.0)
    lip = np.median(photo[lips], 0)
    p = av.params.frame(0)
    p.pose[0, 2] = (0.35, 0.0, 0.0)
    lm = model.landmarks.points(lbs_numpy(model, p)[0][0], model.faces)
    hull = polygon_pixels(av.camera.project(lm[list(INNER_LIP)])[0], 0.8)
    img, alpha = render_source(av, model, lod, params=p, background=(0.0, 1.0, 0.0))
    px = img[hull]
    luma, sat = px @ LUMA, px.max(1) - px.min(1)
    return {"hull_px": int(hull.sum()),
            "interior_share": float(((luma < 0.3) | ((luma > 0.55) & (sat < 0.25))).mean()),
            "lip_like_share": float((np.linalg.norm(px - lip, axis=1) < 0.1).mean()),
            "min_alpha": float(alpha[hull].min())}


def blink_figures(av, model, obs, lod: int) -> dict[str, float]:
    photo = obs.image512.astype(np.float32) / 255.0
    p = av.params.frame(0)
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):
        p.expr[0, model.expr_names.index(name)] = 1.0
    img, _ = render_source(av, model, lod, params=p)
    yy, xx = np.mgrid[0:512, 0:512]
    out = {}
    for eye in ("eye_L", "eye_R"):
        loop = obs.landmarks[list(LID_LOOP[eye])]
        opening = polygon_pixels(loop, 0.8)
        c = obs.landmarks[IRIS[eye][0]]
        r = np.linalg.norm(obs.landmarks[list(IRIS[eye][1:])] - c, axis=1).mean()
        iris = np.median(photo[opening & ((xx + 0.5 - c[0]) ** 2 + (yy + 0.5 - c[1]) ** 2 < (0.8 * r) ** 2)], 0)
        skin = np.median(photo[polygon_pixels(loop, 1.9) & ~polygon_pixels(loop, 1.3) & (yy < c[1])], 0)
        closed = img[opening]
        d_skin, d_iris = np.linalg.norm(closed - skin, axis=1), np.linalg.norm(closed - iris, axis=1)
        out[eye] = {"skin_nearer_share": float((d_skin < d_iris).mean()), "mean_dist_skin": float(d_skin.mean())}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True)
    ap.add_argument("--lod", type=int, default=2)
    args = ap.parse_args()
    lod = args.lod
    res = {}
    for tag, opts in (("without", BuildOptions(lods=(lod,), refine=False, mouth=MouthOptions(enabled=False),
                                               eyes=EyeOptions(enabled=False))),
                      ("with", BuildOptions(lods=(lod,), refine=False))):
        r = build_avatar(None, opts)
        av, model, obs = r.avatar, r.model, r.observation
        res[tag] = {"psnr_face": r.metrics[lod]["psnr_face_raw"], "ssim_face": r.metrics[lod]["ssim_face_raw"],
                    "parts": av.part_counts(), "parts_seconds": r.seconds.get("parts"),
                    "mouth_open": mouth_figures(av, model, obs, lod), "blink": blink_figures(av, model, obs, lod)}
        print(tag, json.dumps(res[tag]), flush=True)
    Path(args.json).write_text(json.dumps({"lod": lod, "photo": "astronaut", "jaw_rad": 0.35, **res}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
