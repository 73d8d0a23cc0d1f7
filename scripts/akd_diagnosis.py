"""Where self-reenactment AKD comes from: the tracker's fit, the avatar's render, the detector.

    nice python scripts/akd_diagnosis.py prepare --media /work/shared/media --clips d0,d19,d3,d12 --every 15
    nice python scripts/akd_diagnosis.py score --clips d0,d19,d3,d12 [--track '{"smoothing": 0}'] [--frames]
        [--offsets full [--offset-opts '{"rigid": false, "lips": "inner"}']] [--ssim] [--post-blur 0.7]
        [--render-passes N [--track '{"render_pass_mode": "upper"}']] [--dump DIR]

``prepare`` does what eval's self-reenactment protocol does up to the fit (backend/eval/protocols/
reenactment.py): tracks the clip, builds the avatar from frame 0 (LOD 2) and keeps, in ``--work``
(default out/akd_diagnosis; existing files kept unless ``--force``), the avatar (``<clip>.omgavatar``)
and plain arrays (``<clip>.npz``, read without pickle): the clip's mediapipe landmarks moved into the
photo's crop, the kept frames cut by that crop and their real-pixel mask. ``score`` re-fits the
landmarks for the avatar as ``refit_for_avatar`` does (``--track``: TrackOptions overrides, JSON),
renders LOD 2, scores it with eval's FrameScorer and splits each driving frame's AKD (render's
mediapipe landmarks R vs the frame's D, both static-image mediapipe on the 512 crops) into

    fit     |M - O|  the tracked parameters' stand-in landmarks M (the landmark model projected by
                     the avatar's camera) against the tracker's own observation O (mediapipe in
                     tracking mode on the whole frame, before smoothing);
    render  |R - M|  what mediapipe finds on the avatar's render against where the rig puts those
                     landmarks (the Gaussians' look, the embedding, the detector on renders);
    detect  |O - D|  the two mediapipe runs on the same real frame (tracking vs static mode);
    smooth  |S - O|  the temporal smoothing's move of the observation (S: what the fit saw);

each as mean 2-D distance (px at 512) over all 478 landmarks and over mediapipe's groups (lips, outline,
brows, eyes, irises), with the AKD shift (length of the mean offset R - D); ``--dump DIR`` saves each
driving frame's render beside the frame with both readings drawn (R red, D green). ``--ssim`` adds SSIM full's loss over error_split's five regions
(ssim_<region>, shares of 1 - SSIM) and per region SSIM's factors (<region>_1-l, _1-c, _1-s:
mean loss in luminance, contrast, structure; <region>_sharp: the render's mean local sigma over
the target's). ``--post-blur`` blurs each render before scoring (a diagnostic of excess detail). A diagnostic for issue 14, not a benchmark: nothing here gates.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from backend.avatar.rendering import render_frames  # noqa: E402
from backend.eval.protocols.reenactment import (ReenactmentOptions, drive_params, real_pixels,  # noqa: E402
                                                track_clip)
from backend.eval.protocols.scoring import FrameScorer  # noqa: E402
from prepared_clip import claim_prepared_files, load_prepared  # noqa: E402

PARTS = ("akd", "fit", "render", "detect", "smooth")


def prepare(media: Path, clip: str, every: int, work: Path, force: bool) -> None:
    from backend.avatar.build import build_avatar
    from backend.avatar.fileformat import save_avatar
    from backend.eval.protocols.reconstruction import build_options
    from backend.face.crop import apply_crop
    from backend.face.video import iter_video

    avatar_file, arrays_file = claim_prepared_files(work, clip, force)
    path = media / "videos" / f"liveportrait_{clip}.mp4"
    opts = ReenactmentOptions(lods=(2,), every=every)
    tc = track_clip(path, None, opts)
    build = build_avatar(tc.source_frame, build_options((2,), {}))
    crop = build.observation.crop
    lm = crop.to_crop(tc.track.crop.to_source(tc.track.landmarks))
    idx = sorted(i for i in tc.frames if i > 0)
    frames = {}
    for i, frame in enumerate(iter_video(path)):
        if i in idx:
            frames[i] = apply_crop(frame, crop)
        if i >= idx[-1]:
            break
    work.mkdir(parents=True, exist_ok=True)
    save_avatar(build.avatar, avatar_file)
    np.savez(arrays_file, landmarks=np.asarray(lm, np.float32), has_face=tc.track.has_face,
             fps=np.float64(tc.track.fps), valid=real_pixels(tc, build), frame_index=np.asarray(idx, np.int64),
             frames=np.stack([frames[i] for i in idx]))


def model_landmarks(model, params, camera) -> np.ndarray:
    """(T, 478, 2) px: the landmark model of ``model`` posed by HeadParams ``params`` (T frames)
    and projected by ``camera`` (where the rig puts mediapipe's landmarks)."""
    import torch

    from backend.face.landmark_model import LandmarkModel
    from backend.face.solver import Projector, State

    lmm = LandmarkModel.from_model(model)
    f64 = lambda x: torch.as_tensor(np.asarray(x, np.float64))  # noqa: E731
    st = State(f64(params.shape)[: lmm.n_shape], f64(params.expr)[:, : lmm.n_expr], f64(params.pose),
               f64(params.transl))
    with torch.inference_mode():
        uv, _ = Projector(camera.K, camera.viewmat).project(lmm.points(st.coeffs(), st.pose, st.transl))
    return uv.numpy()


def _dist(a: np.ndarray, b: np.ndarray, idx=None) -> float:
    a, b = np.asarray(a, np.float64)[:, :2], np.asarray(b, np.float64)[:, :2]
    d = np.linalg.norm(a - b, axis=-1)
    d = d if idx is None else d[idx]
    return float(np.nanmean(d))


def lip_hull_geometry(a: np.ndarray, b: np.ndarray, size: int = 512) -> dict:
    """How inner-lip hull ``a`` lies against ``b`` (both (478, 2+) landmarks, px at ``size``):
    iou of the two hulls, dy = a's hull centroid below b's (px; + = a lower), and the openings
    (gap / inner width, portrait.mouth_opening) of a and b."""
    from backend.eval.metrics.portrait import mouth_opening
    from backend.face.mediapipe_face import INNER_LIP
    from backend.image_metrics import hull_mask

    ha = hull_mask(np.asarray(a)[list(INNER_LIP), :2], size, size)
    hb = hull_mask(np.asarray(b)[list(INNER_LIP), :2], size, size)
    union = np.count_nonzero(ha | hb)
    ya, yb = np.nonzero(ha)[0], np.nonzero(hb)[0]
    return {"iou": float(np.count_nonzero(ha & hb) / union) if union else float("nan"),
            "dy": float(ya.mean() - yb.mean()) if len(ya) and len(yb) else float("nan"),
            "open_a": mouth_opening(a), "open_b": mouth_opening(b)}


def fit_geometry(model, drive, M: np.ndarray, lm: np.ndarray, idx: list[int], has_face: np.ndarray,
                 show_frames: bool, clip: str) -> dict:
    """``score --mouth --fit-only``: no render; per open-mouth frame (the tracker's reading O opened
    past the metric's threshold) the fitted landmarks M against O: hull IoU and offset (dy), the
    upper and lower inner-lip midpoints' vertical offsets (up, lo; px, + = M lower), the inner
    width's ratio (wid), the mean landmark error over every landmark (fit), the jaw and lip weights."""
    from backend.eval.metrics.portrait import MOUTH_OPEN_THRESHOLD, mouth_opening
    from backend.face.mediapipe_face import INNER_CORNER_L, INNER_CORNER_R, LOWER_INNER_MID, UPPER_INNER_MID

    names = list(model.expr_names)
    rows = []
    for k, i in enumerate(idx):
        O, m = np.asarray(lm[i], np.float64)[:, :2], M[k]
        if not has_face[i] or not mouth_opening(O) >= MOUTH_OPEN_THRESHOLD:
            continue
        g = lip_hull_geometry(m, O)
        row = {"frame": i, "iou": g["iou"], "dy": g["dy"], "open_O": g["open_b"], "open_M": g["open_a"],
               "up": m[UPPER_INNER_MID, 1] - O[UPPER_INNER_MID, 1], "lo": m[LOWER_INNER_MID, 1] - O[LOWER_INNER_MID, 1],
               "wid": float(np.linalg.norm(m[INNER_CORNER_L] - m[INNER_CORNER_R])
                            / np.linalg.norm(O[INNER_CORNER_L] - O[INNER_CORNER_R])),
               "fit": _dist(m, O), "jaw": float(drive.pose[k, 2, 0])}
        for key in ("mouthFunnel", "mouthLowerDownLeft", "mouthUpperUpLeft", "mouthPucker", "mouthClose"):
            if key in names:
                row[key] = float(drive.expr[k, names.index(key)])
        rows.append(row)
        if dump is not None:
            dump_frame(dump / f"{clip}_{i:04d}.png", img, tg.full, R, D)
        if show_frames:
            print(f"  {clip} {i:4d} " + " ".join(f"{key} {v:6.2f}" for key, v in row.items() if key != "frame"),
                  flush=True)
    keys = [k for k in (rows[0] if rows else {}) if k != "frame"]
    summary = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
    summary["frames"] = len(rows)
    return summary


def ssim_regions(img: np.ndarray, alpha: np.ndarray, tg, valid: np.ndarray) -> dict:
    """One frame's SSIM loss over error_split's five regions (shares of 1 - SSIM full) and, per
    region, the mean loss in each SSIM factor (1 - luminance, 1 - contrast, 1 - structure) and the
    render's mean local sigma over the target's (below 1: smoother than the target)."""
    from backend.eval.metrics.portrait import ERROR_REGIONS, error_regions, ssim_loss_regions, ssim_terms
    from backend.image_metrics import ssim_map

    chin = float(np.max(tg.landmarks[:, 1])) if tg.landmarks is not None else float(img.shape[0])
    reg = error_regions(alpha, tg.portrait, tg.face_mask, chin)
    out = {f"ssim_{k}": v for k, v in ssim_loss_regions(ssim_map(img, tg.full), reg, valid).items()}
    terms = ssim_terms(img, tg.full)
    r = (img.shape[0] - terms["luminance"].shape[0]) // 2
    crop = (slice(r, img.shape[0] - r), slice(r, img.shape[1] - r))
    for k in ERROR_REGIONS:
        m = reg[k][crop] & valid[crop]
        if not m.any():
            continue
        for t in ("luminance", "contrast", "structure"):
            out[f"{k}_1-{t[0]}"] = float((1.0 - terms[t][m]).mean())
        out[f"{k}_sharp"] = float(terms["sigma_pred"][m].mean() / max(terms["sigma_target"][m].mean(), 1e-9))
        out[f"{k}_px"] = float(m.sum())
    return out


def dump_frame(path: Path, render: np.ndarray, target: np.ndarray, R: np.ndarray, D: np.ndarray) -> None:
    """``score --dump``: the render (left) beside the frame (right), each with the render's reading R
    (red) and the frame's D (green) drawn on it, as one PNG."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    panels = []
    for im in (render, target):
        pil = Image.fromarray((np.clip(im[..., :3], 0, 1) * 255).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        for pts, colour in ((D, (0, 255, 0)), (R, (255, 0, 0))):
            for x, y in np.asarray(pts)[:, :2]:
                draw.point((float(x), float(y)), fill=colour)
        panels.append(pil)
    out = Image.new("RGB", (panels[0].width * 2, panels[0].height))
    out.paste(panels[0], (0, 0))
    out.paste(panels[1], (panels[0].width, 0))
    out.save(path)


def photo_crop(media: Path, clip: str):
    """The crop the clip's frame-0 build cut (build.observation.crop; face detection and landmarks
    are deterministic), which the render passes' reader widens to the whole video frame."""
    from backend.face.analyze import FaceAnalyzer
    from backend.face.video import iter_video

    frame0 = next(iter(iter_video(media / "videos" / f"liveportrait_{clip}.mp4")))
    return FaceAnalyzer().analyze(frame0, refine_mask=False).crop


def score(clip: str, work: Path, track: dict, show_frames: bool, scorer: FrameScorer, offsets: str = "",
          offset_opts: dict | None = None, ssim: bool = False, post_blur: float = 0.0,
          render_passes: int = 0, media: Path = Path("../shared/media"), outline: bool = False,
          mouth: bool = False, fit_only: bool = False, dump: Path | None = None) -> dict:
    from backend.eval.metrics.landmarks import regions
    from backend.eval.metrics.portrait import mouth_opening
    from backend.face.track import TrackOptions, avatar_hold, smooth_landmarks, track_landmarks

    avatar, model, a = load_prepared(work, clip)
    topts = TrackOptions(**track)
    lm, has_face, fps = a["landmarks"], a["has_face"].astype(bool), float(a["fps"])
    hold = avatar_hold(avatar.params.shape, avatar.params.pose, rest_offsets=avatar.vertex_offsets)
    if offsets:
        from backend.avatar.calibrate import landmark_offsets
        hold["calibration"] = landmark_offsets(avatar, model, depth_only=offsets == "depth", **(offset_opts or {}))
    idx = [int(i) for i in a["frame_index"]]
    if render_passes:   # as eval --render-passes: only the scored frames are rendered and re-fitted
        from backend.avatar.render_compare import AvatarReader
        from backend.face.track import track_with_render_passes

        params, _, _, st = track_with_render_passes(model, lm, has_face, avatar.camera, fps, topts,
                                                    AvatarReader(avatar, model, 2), render_passes,
                                                    frames=np.asarray(idx), crop=photo_crop(media, clip),
                                                    outline=outline, **hold)
        print(f"  {clip} render passes: |R - O| " + " -> ".join(f"{v:.2f}" for v in st.render_to_obs)
              + ", |R - M| " + " -> ".join(f"{v:.2f}" for v in st.render_to_model), flush=True)
    else:
        params, _, _ = track_landmarks(model, lm, has_face, avatar.camera, fps, topts, **hold)
    seen = lm.copy()
    if topts.smoothing > 0:
        seen[has_face] = smooth_landmarks(lm[has_face], fps, topts.smoothing, topts.smooth_max_px)
    drive = drive_params(avatar.params, params, idx, relative_translation=False)
    M = model_landmarks(model, drive, avatar.camera)
    if fit_only:
        return fit_geometry(model, drive, M, lm, idx, has_face, show_frames, clip)
    reg = regions()
    groups = {"lips": reg.lips, "oval": reg.face_oval, "brows": np.r_[reg.left_brow, reg.right_brow],
              "eyes": np.r_[reg.left_eye, reg.right_eye], "iris": np.arange(468, 478)}
    rows = []
    renders = render_frames(avatar, model, drive, 2, camera=avatar.camera, with_alpha=True)
    for k, (i, (img, alpha)) in enumerate(zip(idx, renders)):
        if post_blur > 0:   # diagnostic: how much of the loss is the render's detail beyond the video's
            from scipy.ndimage import gaussian_filter
            img = gaussian_filter(img, (post_blur, post_blur, 0))
        tg = scorer.target(a["frames"][k], valid=a["valid"])
        s = scorer.score(img, tg, alpha=alpha)
        R, D, O, S = scorer.render_landmarks(img), tg.landmarks, lm[i], seen[i]
        if R is None or D is None or not has_face[i]:
            continue
        row = {"frame": i, "psnr_full": s.psnr_full, "ssim_full": s.ssim_full, "mouth_psnr": s.mouth_psnr,
               "akd": _dist(R, D), "fit": _dist(M[k], O), "render": _dist(R, M[k]), "detect": _dist(O, D),
               "smooth": _dist(S, O), "shift": float(np.linalg.norm((R[:, :2] - D[:, :2]).mean(0))),
               "opening": mouth_opening(D), "yaw": float(np.degrees(drive.pose[k, 1, 1] + drive.pose[k, 0, 1]))}
        if mouth:   # the inner-lip opening: fit M, render's reading R, tracker's reading O vs the frame's D
            from backend.eval.metrics.portrait import mouth_mask

            if mouth_mask(D, 512, 512) is None:
                continue
            for name, X in (("M", M[k]), ("R", R), ("O", O)):
                g = lip_hull_geometry(X, D)
                row |= {f"iou_{name}": g["iou"], f"dy_{name}": g["dy"], f"open_{name}": g["open_a"]}
            row["open_D"] = mouth_opening(D)
            names = list(model.expr_names)
            row["jaw"] = float(drive.pose[k, 2, 0])
            for key in ("mouthFunnel", "mouthLowerDownLeft", "mouthUpperUpLeft", "mouthPucker", "mouthStretchLeft"):
                if key in names:
                    row[key[5:9] if key != "mouthPucker" else "Puck"] = float(drive.expr[k, names.index(key)])
        if ssim:
            row |= ssim_regions(img, alpha, tg, np.asarray(a["valid"], bool))
        for p in ("akd", "fit", "render", "detect"):
            pair = {"akd": (R, D), "fit": (M[k], O), "render": (R, M[k]), "detect": (O, D)}[p]
            for name, group in groups.items():
                row[f"{p}_{name}"] = _dist(*pair, group)
        rows.append(row)
        if dump is not None:
            dump_frame(dump / f"{clip}_{i:04d}.png", img, tg.full, R, D)
        if show_frames:
            keys = ("akd", "fit", "render", "detect", "smooth", "shift", "akd_lips", "fit_lips", "render_lips",
                    "akd_oval", "fit_oval", "render_oval", "detect_oval", "akd_brows", "fit_brows", "render_brows",
                    "akd_iris", "fit_iris", "render_iris", "opening", "yaw", "psnr_full", "mouth_psnr")
            if mouth:
                keys = ("akd", "akd_lips", "fit_lips", "mouth_psnr", "iou_M", "iou_R", "iou_O", "dy_M", "dy_R",
                        "dy_O", "open_D", "open_O", "open_M", "open_R", "jaw", "Funn", "Lowe", "Uppe", "Puck", "Stre")
            print(f"  {clip} {i:4d} " + " ".join(f"{key} {row.get(key, np.nan):6.2f}" for key in keys), flush=True)
    keys = list(dict.fromkeys(k for r in rows for k in r if k != "frame"))
    summary = {k: float(np.nanmean([r.get(k, np.nan) for r in rows])) for k in keys}
    summary["frames"] = len(rows)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("step", choices=("prepare", "score"))
    ap.add_argument("--clips", default="d0,d19,d3,d12", help="liveportrait_<clip>.mp4, comma-separated")
    ap.add_argument("--media", type=Path, default=Path("../shared/media"))
    ap.add_argument("--every", type=int, default=15)
    ap.add_argument("--track", default="{}", help="TrackOptions overrides (JSON) for the re-fit")
    ap.add_argument("--offsets",
                    choices=("full", "depth"), default="",
                    help="re-fit with the tracker's landmark offsets to the avatar (avatar.calibrate.landmark_offsets; depth: their depth only)")
    ap.add_argument("--offset-opts", default="{}",
                    help="with --offsets: landmark_offsets keyword overrides (JSON), e.g. '{\"rigid\": false, \"lips\": \"inner\"}'")
    ap.add_argument("--ssim", action="store_true",
                    help="also split SSIM full's loss over error_split's five regions, with SSIM's factors per region")
    ap.add_argument("--post-blur", type=float, default=0.0,
                    help="diagnostic: blur each render by this Gaussian sigma (px) before scoring")
    ap.add_argument("--render-passes", type=int, default=0,
                    help="score: re-fit with this many render-and-compare passes (face.render_compare), as eval --render-passes")
    ap.add_argument("--outline", action="store_true", help="score --render-passes: the face outline gets its offset too")
    ap.add_argument("--frames", action="store_true", help="print every driving frame's split")
    ap.add_argument("--mouth", action="store_true",
                    help="score only open-mouth frames and add the inner-lip hulls' IoU, vertical offset (dy, px) and"
                         " opening of the fit M, the render's reading R and the tracker's O against the frame's D,"
                         " with the fitted jaw (rad) and lip weights")
    ap.add_argument("--fit-only", action="store_true",
                    help="with --mouth: no render, the fit M against the tracker's reading O (fit_geometry)")
    ap.add_argument("--work", type=Path, default=Path("out/akd_diagnosis"))
    ap.add_argument("--force", action="store_true", help="prepare: replace an earlier prepare's files")
    ap.add_argument("--json", type=Path, default=None, help="score: write the per-clip means here")
    ap.add_argument("--dump", type=Path, default=None,
                    help="score: save each driving frame's render beside the frame, both readings drawn (PNG)")
    a = ap.parse_args()
    clips = [c for c in a.clips.split(",") if c]
    if a.step == "prepare":
        if not (a.media / "videos").is_dir():
            print(f"{a.media}: no videos/ folder (shared media absent), nothing to do")
            return
        for c in clips:
            prepare(a.media, c, a.every, a.work, a.force)
        return
    if a.dump is not None and a.dump.exists() and any(a.dump.iterdir()):
        # its PNGs are named by clip and frame: an earlier dump's (or anything else's) would be overwritten
        raise SystemExit(f"{a.dump}: exists and is not empty; give --dump a new or empty folder")
    track = json.loads(a.track)
    out = {}
    with FrameScorer(identity=False) as scorer:
        for c in clips:
            out[c] = score(c, a.work, track, a.frames, scorer, a.offsets, json.loads(a.offset_opts), a.ssim, a.post_blur,
                           a.render_passes, a.media, a.outline, a.mouth, a.fit_only, a.dump)
            print(f"{c}: " + " ".join(f"{k} {v:.3f}" for k, v in out[c].items()), flush=True)
    keys = [k for k in out[clips[0]] if k != "frames"]
    out["mean"] = {k: float(np.nanmean([out[c].get(k, np.nan) for c in clips])) for k in keys}
    print("mean over clips: " + " ".join(f"{k} {v:.3f}" for k, v in out["mean"].items()))
    if a.json is not None:
        a.json.write_text(json.dumps({"track": track, "offsets": a.offsets, "render_passes": a.render_passes, "offset_opts": json.loads(a.offset_opts),
                                      "clips": out}, indent=1))


if __name__ == "__main__":
    main()
