"""ARKit-52 round trip on the stand-in: random weight sequences -> rendered avatar -> tracker -> weights.

``python -m backend bench arkit [--frames N] [--json out.json]``

1. Random ARKit-52 sequences (:func:`random_weights`): every frame activates a few shapes at
   random weights in [0, 1] (all 52 at once would be a face no capture ever makes), held for a
   few frames so the tracker's temporal smoothing sees motion, not noise.
2. The default mapping (identity onto the stand-in's shape keys; jawOpen/jawLeft/jawRight and
   eyeLook* onto the jaw and eye joints) turns them into head parameters at the avatar's source
   frame, which are rendered by the backend splatter at the source camera (watermarked frames).
3. The renders are tracked (face.track_video, the avatar's identity kept) and the tracked
   parameters mapped back to ARKit weights (arkit.targets_to_sources, bounded to [0, 1]). The
   tracker is calibrated to the avatar first (avatar.calibrate.calibrate_tracker: mediapipe's
   reading of each expression rendered alone), as ``track --calibration`` does; the same frames
   are also tracked without it (``uncalibrated`` in the figures).
4. Per shape: Pearson correlation of recovered vs true weights over the frames, and the mean
   absolute error. Each shape moves in only 10-40 of the 240 frames, so each correlation also gets
   a 90 % bootstrap interval over the frames (:func:`bootstrap_correlation`), and the count of the
   20 most visible shapes at 0.8 or above gets one too: the spread a change has to beat. "Visible" ranks the shapes by how far they move the 478 landmarks at weight 1
   in the source camera's pixels (:func:`visibility_px`); the figure of merit is the correlation
   of the 20 most visible ones.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..avatar.calibrate import MIXTURES
from ..head.arkit_names import ARKIT_NAMES

HELP = "ARKit-52 round trip on the stand-in: render random weights, track the renders, compare"


@dataclass
class RoundTripOptions:
    """frames: rendered frames; active: shapes switched on per key frame; hold: frames per key
    (weights ease linearly between keys); lod: the avatar LOD rendered; seed: the random sequence;
    smoothing: the tracker's smoothing strength (0 = off: every frame stands alone); shapes: the
    shapes that move (a short run on fewer shapes gives each of them enough frames);
    landmarks_only: skip rendering and mediapipe, track the exact projected landmarks of the model
    (the solver's own ceiling: what the render and mediapipe cost is the difference)."""

    frames: int = 240
    active: int = 4
    hold: int = 1
    lod: int = 2
    seed: int = 0
    smoothing: float = 0.0
    backend: str = "auto"
    shapes: tuple[str, ...] | None = None   # only these shapes move (None: all 52)
    landmarks_only: bool = False             # track the model's projected landmarks, no render
    calibrate: bool = True                   # calibrate the tracker to the avatar first
    calibration_mixtures: int = MIXTURES     # mixture renders in that calibration (and its reading floor)
    render_passes: int = 0                   # the tracker's render-and-compare passes (face.render_compare)
    render_pass_mode: str = "full"           # what they fit (TrackOptions.render_pass_mode)
    render_pass_threshold_px: float = 1.0    # the soft threshold of every mode but "full" (TrackOptions)


@dataclass
class RoundTripResult:
    """truth / recovered: (T, 52) ARKit weights; visibility_px (52,): RMS landmark motion at weight 1
    (source camera pixels); corr (52,) Pearson correlation (NaN where a shape never moves);
    mae (52,) mean absolute error; has_face (T,); seconds per stage."""

    truth: np.ndarray
    recovered: np.ndarray
    visibility_px: np.ndarray
    corr: np.ndarray
    mae: np.ndarray
    has_face: np.ndarray
    seconds: dict[str, float] = field(default_factory=dict)
    uncalibrated: "RoundTripResult | None" = None   # the same frames tracked without calibration
    floor: np.ndarray | None = None     # (52,) the calibration's reading floor per shape (None: none)

    def most_visible(self, k: int = 20) -> list[int]:
        """Indices of the k shapes that move the landmarks most (descending)."""
        return [int(i) for i in np.argsort(-self.visibility_px, kind="stable")[:k]]

    def figures(self, k: int = 20) -> dict[str, Any]:
        top = self.most_visible(k)
        ok = self.has_face
        lo, hi, boot = bootstrap_correlation(self.truth[ok], self.recovered[ok])
        count = (np.nan_to_num(boot[:, top], nan=-1.0) >= 0.8).sum(1)
        fin = lambda v: None if not np.isfinite(v) else float(v)  # noqa: E731
        return {
            "frames": int(len(self.truth)),
            "frames_with_face": int(self.has_face.sum()),
            "top": k,
            "top_names": [ARKIT_NAMES[i] for i in top],
            "top_min_corr": float(np.nanmin(self.corr[top])),
            "top_mean_corr": float(np.nanmean(self.corr[top])),
            "top_mae_mean": float(self.mae[top].mean()),
            "mae_all_max": float(self.mae.max()),
            "top_below_0_8": [ARKIT_NAMES[i] for i in top if not self.corr[i] >= 0.8],
            "mae_all_mean": float(self.mae.mean()),
            # 5th and 95th percentile of the number of the top-k shapes at >= 0.8 over bootstrap
            # resamples of the frames (BOOTSTRAP_SEED: the same frames give the same interval)
            "top_at_least_0_8_ci90": [float(np.percentile(count, 5)), float(np.percentile(count, 95))],
            "shapes": [{"rank": r + 1, "name": ARKIT_NAMES[i], "top": r < k,
                        "corr": None if not np.isfinite(self.corr[i]) else float(self.corr[i]),
                        "corr_ci90": [fin(lo[i]), fin(hi[i])],
                        "mae": float(self.mae[i]), "visibility_px": float(self.visibility_px[i]),
                        "frames_moving": int((self.truth[self.has_face, i] > 0).sum()),
                        **({"floor": float(self.floor[i])} if self.floor is not None else {})}
                       for r, i in enumerate(self.most_visible(len(ARKIT_NAMES)))],
            "seconds": self.seconds,
            **({"uncalibrated": {k: v for k, v in self.uncalibrated.figures(k).items()
                                 if k in ("top_min_corr", "top_mean_corr", "top_mae_mean", "mae_all_mean",
                                          "top_below_0_8")}} if self.uncalibrated is not None else {}),
        }


def random_weights(opts: RoundTripOptions) -> np.ndarray:
    """(frames, 52) float32 in [0, 1]: key frames every ``hold`` frames with ``active`` random shapes
    at U(0.3, 1) (never both sides' opposites of one axis: jawLeft+jawRight, mouthLeft+mouthRight,
    eyeLookUp+Down, In+Out of one eye; jawOpen at least mouthClose; both eyes share one gaze), linear in between."""
    rng = np.random.default_rng(opts.seed)
    n_keys = int(np.ceil(opts.frames / opts.hold)) + 1
    # mouthLeft with mouthRight (like jawLeft with jawRight) moves the mouth both ways at once: the
    # render shows only what is left of the two, so no tracker can read either (a capture reports one)
    excl = {"jawLeft": "jawRight", "jawRight": "jawLeft", "mouthLeft": "mouthRight", "mouthRight": "mouthLeft"}
    for s in ("Left", "Right"):
        excl[f"eyeLookUp{s}"], excl[f"eyeLookDown{s}"] = f"eyeLookDown{s}", f"eyeLookUp{s}"
        excl[f"eyeLookIn{s}"], excl[f"eyeLookOut{s}"] = f"eyeLookOut{s}", f"eyeLookIn{s}"
    keys = np.zeros((n_keys, len(ARKIT_NAMES)))
    for k in range(1, n_keys):   # key 0: neutral
        chosen: list[str] = []
        pool = [ARKIT_NAMES.index(n) for n in (opts.shapes or ARKIT_NAMES)]
        for i in rng.permutation(pool):
            n = ARKIT_NAMES[i]
            if excl.get(n) in chosen:
                continue
            chosen.append(n)
            if len(chosen) == opts.active:
                break
        for n in chosen:
            keys[k, ARKIT_NAMES.index(n)] = rng.uniform(0.3, 1.0)
    # mouthClose means "lips together while the jaw is open": ARKit never reports more of it than
    # of jawOpen (alone, it would push the lower lip through the upper one)
    jo, mc = ARKIT_NAMES.index("jawOpen"), ARKIT_NAMES.index("mouthClose")
    keys[:, jo] = np.maximum(keys[:, jo], keys[:, mc])
    # the eyes look one way together (the tracker fits one gaze for both, as people do): the
    # right eye's gaze copies the left one's, in and out swapped
    idx = ARKIT_NAMES.index
    for a, b in (("Up", "Up"), ("Down", "Down"), ("In", "Out"), ("Out", "In")):
        keys[:, idx(f"eyeLook{b}Right")] = np.maximum(keys[:, idx(f"eyeLook{a}Left")], keys[:, idx(f"eyeLook{b}Right")])
    for a, b in (("Up", "Down"), ("In", "Out")):
        for s in ("Left", "Right"):      # opposite directions of one eye cancel: keep the larger
            ka, kb = keys[:, idx(f"eyeLook{a}{s}")], keys[:, idx(f"eyeLook{b}{s}")]
            keys[:, idx(f"eyeLook{a}{s}")], keys[:, idx(f"eyeLook{b}{s}")] = np.where(ka >= kb, ka, 0), np.where(kb > ka, kb, 0)
    for a, b in (("Up", "Up"), ("Down", "Down"), ("In", "Out"), ("Out", "In")):
        keys[:, idx(f"eyeLook{a}Left")] = keys[:, idx(f"eyeLook{b}Right")]
    t = np.arange(opts.frames) / opts.hold
    out = np.stack([np.interp(t, np.arange(n_keys), keys[:, c]) for c in range(keys.shape[1])], 1)
    return out.astype(np.float32)


def weights_to_params(avatar, model, weights: np.ndarray):
    """(T, 52) ARKit weights -> HeadParams at the avatar's source frame (identity, global pose and
    translation kept; expression, jaw and eyes from the default mapping; neck at rest)."""
    from ..head.params import HeadParams
    from ..motion.arkit import default_mapping, sources_to_targets

    expr, pose, _ = sources_to_targets(weights, list(ARKIT_NAMES), default_mapping(), list(model.expr_names))
    src = avatar.params.frame(0)
    T = len(weights)
    full = np.repeat(src.pose, T, 0).copy()
    full[:, 1:] = pose[:, 1:]          # neck (0 here), jaw, eyes from the mapping; global from the photo
    return HeadParams(src.shape, expr, full.astype(np.float32), np.repeat(src.transl, T, 0))


def params_to_weights(model, expr: np.ndarray, pose: np.ndarray) -> np.ndarray:
    """Tracked (T, E) expression and (T, 5, 3) pose -> (T, 52) ARKit weights (default mapping's
    bounded inverse)."""
    from ..motion.arkit import default_mapping, targets_to_sources

    return targets_to_sources(expr, pose, default_mapping(), list(model.expr_names), ARKIT_NAMES)


def visibility_px(avatar, model) -> np.ndarray:
    """(52,) RMS motion of the 478 landmarks (source camera pixels) when each ARKit shape alone goes
    from 0 to 1 at the avatar's source frame, through the default mapping (joints included)."""
    from ..face.landmark_model import LandmarkModel
    from ..face.solver import Projector
    import torch

    E = len(ARKIT_NAMES)
    w = np.concatenate([np.zeros((1, E), np.float32), np.eye(E, dtype=np.float32)])
    p = weights_to_params(avatar, model, w)
    lmm = LandmarkModel.from_model(model, rendered=True)   # as the rendered head moves them
    coeffs = torch.as_tensor(np.concatenate([np.repeat(p.shape[None], len(w), 0), p.expr], 1), dtype=torch.float64)
    pts = lmm.points(coeffs, torch.as_tensor(p.pose, dtype=torch.float64), torch.as_tensor(p.transl, dtype=torch.float64))
    uv, _ = Projector(avatar.camera.K, avatar.camera.viewmat).project(pts)
    d = (uv[1:] - uv[:1]).numpy()[:, lmm.valid]          # (52, L, 2)
    return np.sqrt((d ** 2).sum(-1).mean(-1))


def correlation(a: np.ndarray, b: np.ndarray, axis: int = 0) -> np.ndarray:
    """Column-wise Pearson correlation of (T, C) arrays over the frames (``axis``; stacks of them,
    e.g. (R, T, C) with axis 1, give (R, C)); NaN where either column is constant."""
    a = a - a.mean(axis, keepdims=True)
    b = b - b.mean(axis, keepdims=True)
    den = np.sqrt((a ** 2).sum(axis) * (b ** 2).sum(axis))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, (a * b).sum(axis) / np.where(den > 1e-12, den, 1.0), np.nan)


#: resamples and seed of :func:`bootstrap_correlation` (fixed: a figure is reproducible bit for bit)
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def bootstrap_correlation(truth: np.ndarray, recovered: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                          level: float = 0.9, seed: int = BOOTSTRAP_SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Percentile bootstrap of :func:`correlation` over the frames (rows) of (T, C) ``truth`` and
    ``recovered``: frames drawn with replacement ``resamples`` times. Returns (lo (C,), hi (C,)) the
    central ``level`` interval (NaN where fewer than half of the resamples give a correlation) and
    the (resamples, C) correlations. A shape that moves in n frames has an interval about as wide
    as a correlation from n samples: +-0.1 to 0.2 at the round trip's 10-40."""
    T = len(truth)
    rng = np.random.default_rng(seed)
    boot = np.empty((resamples, truth.shape[1]))
    for s in range(0, resamples, 100):           # 100 resamples at a time: (100, T, C) arrays
        idx = rng.integers(0, T, (min(100, resamples - s), T))
        boot[s:s + len(idx)] = correlation(truth[idx].astype(np.float64), recovered[idx].astype(np.float64), axis=1)
    q = 100 * (1 - level) / 2
    enough = np.isfinite(boot).mean(0) >= 0.5
    with np.errstate(invalid="ignore"):
        lo = np.where(enough, np.nanpercentile(np.where(enough, boot, 0.0), q, axis=0), np.nan)
        hi = np.where(enough, np.nanpercentile(np.where(enough, boot, 0.0), 100 - q, axis=0), np.nan)
    return lo, hi, boot


def round_trip(avatar, model, opts: RoundTripOptions | None = None, workdir: str | Path | None = None
               ) -> RoundTripResult:
    """Render random ARKit-52 sequences of ``avatar`` (built on the stand-in) at its source camera,
    track the renders and compare the recovered weights with the truth. ``workdir``: where the
    watermarked frames go (default: a temporary folder, removed afterwards)."""
    from ..avatar.rendering import render_frames
    from ..face.track import TrackOptions, track_video
    from ..render.watermark import save_png

    opts = opts or RoundTripOptions()
    if tuple(model.expr_names) != ARKIT_NAMES:
        raise ValueError(f"head model '{model.name}' has no ARKit-52 basis (the round trip needs the stand-in)")
    seconds: dict[str, float] = {}
    truth = random_weights(opts)
    params = weights_to_params(avatar, model, truth)
    if opts.landmarks_only:
        return _landmark_round_trip(avatar, model, opts, truth, params)
    vis = visibility_px(avatar, model)
    with tempfile.TemporaryDirectory(prefix="arkit_rt_") as tmp:
        folder = Path(workdir) if workdir is not None else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        for t, img in enumerate(render_frames(avatar, model, params, opts.lod, backend=opts.backend)):
            save_png(folder / f"frame_{t:05d}.png", img)
        seconds["render"] = time.perf_counter() - t0
        calibration = None
        if opts.calibrate:
            from ..avatar.calibrate import calibrate_tracker

            t0 = time.perf_counter()
            calibration = calibrate_tracker(avatar, model, opts.lod, backend=opts.backend,
                                            mixtures=opts.calibration_mixtures)
            seconds["calibrate"] = time.perf_counter() - t0
        results = []
        for cal in ([calibration, None] if calibration is not None else [None]):
            t0 = time.perf_counter()
            # torso=False: the renders' body never moves; only expressions are scored
            # with render passes both tracks get them: the uncalibrated line is then the passes alone
            reader = None
            if opts.render_passes:
                from ..avatar.render_compare import AvatarReader
                reader = AvatarReader(avatar, model, opts.lod, backend=opts.backend)
            track = track_video(folder, model, TrackOptions(smoothing=opts.smoothing, torso=False,
                                                            render_passes=opts.render_passes,
                                                            render_pass_mode=opts.render_pass_mode,
                                                            render_pass_threshold_px=opts.render_pass_threshold_px),
                                identity=avatar.params.shape, calibration=cal, reader=reader,
                                rest_offsets=avatar.vertex_offsets)
            seconds["track" if not results else "track_uncalibrated"] = time.perf_counter() - t0
            recovered = params_to_weights(model, track.params.expr, track.params.pose)
            ok = np.asarray(track.has_face, bool)
            results.append(RoundTripResult(truth=truth, recovered=recovered, visibility_px=vis,
                                           corr=correlation(truth[ok], recovered[ok]),
                                           mae=np.abs(truth[ok] - recovered[ok]).mean(0), has_face=ok,
                                           seconds=seconds, floor=None if cal is None else cal.floor))
    if len(results) == 2:
        results[0].uncalibrated = results[1]
    return results[0]


def _landmark_round_trip(avatar, model, opts: RoundTripOptions, truth: np.ndarray, params) -> RoundTripResult:
    """The round trip without the render: the model's 478 landmarks projected by the avatar's camera
    are tracked directly (track_landmarks, the avatar's identity kept)."""
    import torch

    from ..face.landmark_model import LandmarkModel
    from ..face.solver import Projector
    from ..face.track import TrackOptions, track_landmarks

    t0 = time.perf_counter()
    lmm = LandmarkModel.from_model(model, rendered=True)   # where the rendered head puts them
    T = len(truth)
    f64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    coeffs = torch.cat([f64(params.shape)[None].expand(T, -1), f64(params.expr)], 1)
    uv, _ = Projector(avatar.camera.K, avatar.camera.viewmat).project(
        lmm.points(coeffs, f64(params.pose), f64(params.transl)))
    lms = uv.numpy().astype(np.float32)
    tracked, _, _ = track_landmarks(model, lms, np.ones(T, bool), avatar.camera, 25.0,
                                    TrackOptions(smoothing=opts.smoothing), identity=avatar.params.shape)
    recovered = params_to_weights(model, tracked.expr, tracked.pose)
    return RoundTripResult(truth=truth, recovered=recovered, visibility_px=visibility_px(avatar, model),
                           corr=correlation(truth, recovered), mae=np.abs(truth - recovered).mean(0),
                           has_face=np.ones(T, bool), seconds={"track": time.perf_counter() - t0})


# ------------------------------------------------------------------------------------- bench target
def _count(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return v


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=int, default=RoundTripOptions.frames)
    p.add_argument("--active", type=int, default=RoundTripOptions.active, help="shapes on per key frame")
    p.add_argument("--hold", type=int, default=RoundTripOptions.hold, help="frames per key")
    p.add_argument("--lod", type=int, default=RoundTripOptions.lod, choices=(0, 1, 2))
    p.add_argument("--seed", type=int, default=RoundTripOptions.seed)
    p.add_argument("--smoothing", type=float, default=RoundTripOptions.smoothing,
                   help="the tracker's temporal smoothing (default %(default)s: every frame stands alone; 2 is "
                        "track's default, for sequences that ease between keys: --hold > 1)")
    p.add_argument("--photo", default=None, help="portrait to build the avatar from (default: the astronaut)")
    p.add_argument("--no-calibration", action="store_true",
                   help="track the renders only without the tracker's calibration to the avatar")
    p.add_argument("--calibration-mixtures", type=_count, default=RoundTripOptions.calibration_mixtures, metavar="N",
                   help="the calibration also reads N renders of random mixtures of the shapes, corrects their "
                        "directions by them and takes each shape's reading floor from them (face.calibration."
                        "fit_mixtures, reading_floor; default %(default)s; 0: the single shapes only, no floor)")
    p.add_argument("--render-passes", type=int, default=0, metavar="N",
                   help="track with N render-and-compare passes (face.render_compare; both the calibrated and "
                        "the uncalibrated track)")
    from ..face.render_compare import RENDER_PASS_MODES    # bench loads this module only to run it

    p.add_argument("--render-pass-mode", choices=RENDER_PASS_MODES, default="full",
                   help="what the render passes fit (as track --render-pass-mode)")
    p.add_argument("--render-pass-threshold", type=float, default=1.0, metavar="PX",
                   help="rigid / similarity / upper: the soft threshold, px at 512 (as track --render-pass-threshold)")
    p.add_argument("--json", default=None, help="write the figures here")


def run(args: argparse.Namespace) -> int:
    from ..avatar.build import BuildOptions, build_avatar

    if args.smoothing < 0:
        raise SystemExit("--smoothing must be >= 0")
    t0 = time.perf_counter()
    built = build_avatar(args.photo, BuildOptions(lods=(args.lod,), refine=False, metrics=False))
    build_s = time.perf_counter() - t0
    opts = RoundTripOptions(frames=args.frames, active=args.active, hold=args.hold, lod=args.lod, seed=args.seed,
                            smoothing=args.smoothing, calibrate=not args.no_calibration, calibration_mixtures=args.calibration_mixtures,
                            render_passes=args.render_passes,
                            render_pass_mode=args.render_pass_mode, render_pass_threshold_px=args.render_pass_threshold)
    res = round_trip(built.avatar, built.model, opts)
    res.seconds["build"] = build_s
    fig = res.figures()
    lm = round_trip(built.avatar, built.model, replace(opts, landmarks_only=True)).figures()
    fig["landmarks_only"] = {k: lm[k] for k in ("top_min_corr", "top_mean_corr", "top_mae_mean", "mae_all_mean")}
    fig["options"] = {"frames": opts.frames, "active": opts.active, "hold": opts.hold, "lod": opts.lod,
                      "seed": opts.seed, "smoothing": opts.smoothing, "photo": built.photo_name,
                      "calibrate": opts.calibrate, "calibration_mixtures": opts.calibration_mixtures,
                      "render_passes": opts.render_passes,
                      "render_pass_mode": opts.render_pass_mode, "render_pass_threshold_px": opts.render_pass_threshold_px}
    order = np.argsort(-res.visibility_px, kind="stable")
    ci = {s["name"]: s["corr_ci90"] for s in fig["shapes"]}
    print(f"{'shape':<22}{'visible px':>11}{'corr':>8}{'90% interval':>15}{'mae':>8}")
    for i in order:
        lo, hi = (np.nan if v is None else v for v in ci[ARKIT_NAMES[i]])
        print(f"{ARKIT_NAMES[i]:<22}{res.visibility_px[i]:>11.2f}{res.corr[i]:>8.3f}   [{lo:5.2f}, {hi:5.2f}]"
              f"{res.mae[i]:>8.3f}")
    print(f"landmarks only (no render, no mediapipe): top-20 correlation min {lm['top_min_corr']:.3f}, "
          f"mean {lm['top_mean_corr']:.3f}; MAE over all 52: {lm['mae_all_mean']:.3f}")
    if res.uncalibrated is not None:
        u = fig["uncalibrated"]
        print(f"without the tracker calibration: top-20 correlation min {u['top_min_corr']:.3f}, "
              f"mean {u['top_mean_corr']:.3f}; MAE over all 52: {u['mae_all_mean']:.3f}")
    print(f"top-20 correlation: min {fig['top_min_corr']:.3f}, mean {fig['top_mean_corr']:.3f}; "
          f"MAE over all 52: {fig['mae_all_mean']:.3f}; {fig['frames_with_face']}/{fig['frames']} frames with a face")
    c_lo, c_hi = fig["top_at_least_0_8_ci90"]
    print(f"top-20 at 0.8 or above: {fig['top'] - len(fig['top_below_0_8'])} "
          f"(90% bootstrap interval over the frames: {c_lo:.0f} to {c_hi:.0f})")
    if args.json:
        from ..output_safety import atomic_write_text

        atomic_write_text(args.json, json.dumps(fig, indent=1) + "\n")
    return 0
