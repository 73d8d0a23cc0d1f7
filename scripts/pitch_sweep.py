"""Self-reenactment with the driven head pitched by fixed offsets: is the track's pitch what the
whole frame wants?

    nice python scripts/mouth_reenactment.py prepare --media /work/shared/media --clip d12 --every 15 --refine-steps 56
    nice python scripts/pitch_sweep.py --clip d12 [--deltas=-12,-8,-4,-2,0,2,4,8,12] [--akd]

Reads the avatar, track and cut frames that ``mouth_reenactment.py prepare`` keeps in ``--work``
and, on every kept frame after the first, renders LOD 2 with the neck's pitch changed by each
offset (degrees about the head's x axis; negative tilts the head back) while the face stays where
the track put it: the translation moves the head's front back onto its projected place and the
torso channel takes the opposite shift, so the body does not move either. A pitch that the
landmarks cannot see (the face is nearly flat) still moves the hair's top and the neck against
the face: this shows whether those regions would be better placed at another pitch. Prints per
frame SSIM full (and PSNR full, AKD with ``--akd``: mediapipe on every render, slower) for every
offset, the best offset, then the means. A diagnostic (issue 14), not a benchmark: nothing here
gates.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from backend.avatar.rendering import render_frames  # noqa: E402
from backend.eval.protocols.reenactment import drive_params  # noqa: E402
from backend.eval.protocols.scoring import FrameScorer  # noqa: E402
from backend.head.params import HeadParams  # noqa: E402
from backend.face.pitch_pass import PitchPassOptions, front_vertices, pitched  # noqa: E402
from backend.image_metrics import ssim as ssim_of  # noqa: E402
from mouth_reenactment import _load  # noqa: E402

FRONT_SHARE = PitchPassOptions.front_share  # the head mesh's frontmost share of vertices: the face kept in place


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clip", default="d12", help="liveportrait_<clip>.mp4, prepared in --work")
    ap.add_argument("--work", type=Path, default=Path("out/mouth_reenactment"))
    ap.add_argument("--deltas", default="-12,-8,-4,-2,0,2,4,8,12",
                    help="pitch offsets, degrees (write --deltas=-8,0,8: a leading minus reads as an option)")
    ap.add_argument("--akd", action="store_true", help="also read every render's landmarks (AKD)")
    a = ap.parse_args()
    if not (a.work / f"{a.clip}.npz").exists():
        raise SystemExit(f"{a.work / (a.clip + '.npz')}: not found (run mouth_reenactment.py prepare first)")
    deltas = [float(x) for x in a.deltas.split(",")]
    if 0.0 not in deltas:
        deltas.append(0.0)
    build, tracked, frames, valid = _load(a.work, a.clip)
    av, model = build.avatar, build.model
    v = np.ones((512, 512), bool) if valid is None else np.asarray(valid, bool)
    front = front_vertices(model, FRONT_SHARE)
    idx = sorted(i for i in frames if i > 0)
    driven = drive_params(av.params, tracked, idx, relative_translation=False)
    ssim = np.zeros((len(idx), len(deltas)))
    with FrameScorer(identity=False) as scorer:
        for n, i in enumerate(idx):
            p = driven.frame(n)
            ps = [pitched(model, p, av.camera, d, front) for d in deltas]
            both = HeadParams(p.shape, np.concatenate([q.expr for q in ps]), np.concatenate([q.pose for q in ps]),
                              np.concatenate([q.transl for q in ps]), np.concatenate([q.torso for q in ps]))
            tg = scorer.target(frames[i], valid=v)
            cells = []
            for k, (img, alpha) in enumerate(render_frames(av, model, both, 2, camera=av.camera, with_alpha=True)):
                if a.akd:
                    s = scorer.score(img, tg, alpha=alpha)
                    ssim[n, k] = s.ssim_full
                    cells.append(f"{deltas[k]:+.0f}: {s.ssim_full:.4f} {s.psnr_full:5.2f} dB {s.akd:4.2f} px")
                else:
                    ssim[n, k] = ssim_of(img, tg.full, v)
                    cells.append(f"{deltas[k]:+.0f}: {ssim[n, k]:.4f}")
            best = int(np.argmax(ssim[n]))
            print(f"frame {i:4d}  " + "  ".join(cells) + f"  | best {deltas[best]:+.0f} deg "
                  f"(+{ssim[n, best] - ssim[n, deltas.index(0.0)]:.4f})", flush=True)
    print("mean SSIM full  " + "  ".join(f"{d:+.0f}: {x:.4f}" for d, x in zip(deltas, ssim.mean(0))))
    print(f"mean of each frame's best {ssim.max(1).mean():.4f} (at the track's pitch {ssim[:, deltas.index(0.0)].mean():.4f})")


if __name__ == "__main__":
    main()
