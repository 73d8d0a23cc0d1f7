"""Calibrating the tracker to an avatar: mediapipe's reading of each expression, rendered.

``calibrate_tracker(avatar, model)`` renders the avatar at its source camera once neutral and once
per expression shape alone (weight ``weight``; the jaw and eye joint channels excluded: the tracker
fits them as joints), runs mediapipe's face mesh on the renders as the tracker does (video mode; in
memory, watermarked as every render is), fits the neutral frame's pose with the avatar's identity, and derives a
face.calibration.LandmarkCalibration: what the landmarks do, as mediapipe sees them, per unit of
each expression. Tracking with it (``track_video(..., calibration=...)``, ``track --calibration``,
``retarget --calibration``) solves the expression weights against that response instead of the
landmark embedding's own (see docs/figures/arkit.md for what it buys on the ARKit-52 round trip).

The jaw's joint channels (jawOpen, jawLeft, jawRight) are rendered too, the jaw turned alone by
each channel's angle. The opening becomes a pose corrective of the jaw
(face.calibration.fit_jaw_correctives): what mediapipe reads of a jaw rotation beyond the model's
own landmark motion. The two sideways turns (:data:`SIDE_CHANNELS`) become expression directions of
their own, which the tracker solves in place of the jaw's sideways angle (mediapipe reads left and
right differently: see face.calibration's module doc).

Random mixtures of the shapes (``mixtures``, :data:`MIXTURES`; most with a gaze, :func:`with_gaze`) are
rendered and read too:
face.calibration.fit_mixtures corrects the directions by what mediapipe reads of the shapes together
(and gives the eyes a corrective: what mediapipe reads of a gaze beyond the model's own motion),
and the mixture readings, tracked with the corrected calibration, give each shape its reading floor
(face.calibration.reading_floor: the :data:`FLOOR_QUANTILE` percentile of what is read of it on the
mixtures without it), which the tracker takes off its solved weights (docs/figures/arkit.md, the
twenty-fourth session: the corrected directions alone read the shapes a little high and absent ones
above 0; with the floor both correlation and error improve on the round trip).

The mixtures are rendered a second time with the jaw open (:func:`open_jaw_mixtures`) and give the
calibration its open-jaw part (face.calibration.LandmarkCalibration.open_jaw: the same directions
corrected by those renders, with their own reading floor), which the tracker re-solves the frames it
first read with the jaw open with.

It costs a render and two face-mesh runs per calibrated expression, the neutral face, each base, the
three jaw turns and each mixture, twice (46 + 2 x 240 on the stand-in: about 50 s on two CPU cores at LOD 2);
:func:`calibration_for` keeps it in a file so that happens on first use only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError

if TYPE_CHECKING:
    from ..progress import Progress
    from ..face.calibration import LandmarkCalibration
    from ..head.model import HeadModel
    from .gaussians import GaussianAvatar

#: the fixed-point passes: the neutral pose is fitted again with the calibration of the pass before
PASSES = 2

#: the jaw's joint channels rendered for its pose correctives (face.calibration.fit_jaw_correctives):
#: each turns the jaw alone by its channel's gain (JOINT_CHANNELS) at weight 1
JAW_CHANNELS: tuple[str, ...] = ("jawOpen", "jawLeft", "jawRight")


#: jaw channels calibrated as expressions of their own (face.calibration's joint_channels): mediapipe
#: reads the jaw turned 0.1 rad left and right as motions far from opposite (cosine 0.29 between one
#: and the other's negative on the astronaut, LOD 2), which one signed sideways angle with an odd
#: corrective could not explain (its round trip: jawLeft 0.76, jawRight 0.65, docs/figures/arkit.md);
#: the opening stays the jaw joint's, with its corrective
SIDE_CHANNELS: tuple[str, ...] = ("jawLeft", "jawRight")


def jaw_calibration_turns() -> list[tuple[str, int, float]]:
    """(channel, jaw axis, angle rad) of each jaw render, from head.arkit_names.JOINT_CHANNELS."""
    from ..head.arkit_names import JOINT_CHANNELS

    gains = {name: (axis, gain) for name, joint, axis, gain in JOINT_CHANNELS if joint == "jaw"}
    return [(n, *gains[n]) for n in JAW_CHANNELS if n in gains]


def calibration_shapes(model: "HeadModel") -> np.ndarray:
    """(E,) bool: the expressions calibrated (all but those a joint carries in the tracker)."""
    from ..head.arkit_names import JOINT_CHANNELS

    joint = {name for name, *_ in JOINT_CHANNELS}
    return np.array([n not in joint for n in model.expr_names])


#: mixture renders after the single shapes (face.calibration.fit_mixtures: mediapipe does not read a
#: mixture as the sum of its parts) and for the reading floor; 0 = none (neither). On the ARKit round trip
#: 240 of them raised the top-20 shapes at correlation 0.8 or above from 14 to 17 but the MAE over all 52
#: from 0.049 to 0.058 (the shapes read a little high, absent ones above 0; docs/figures/arkit.md,
#: twenty-third session); with the floor, 18 and 0.043 (twenty-fourth session). Each holds MIXTURE_ACTIVE
#: random calibrated shapes (jawOpen and one sideways jaw channel among them) at U(MIXTURE_WEIGHTS), drawn
#: from MIXTURE_SEED, so a calibration repeats bit for bit
MIXTURES = 240
#: the percentile (of the weights read on mixtures without a shape) that becomes its reading floor:
#: 90 / 95 / 97 gave 18 / 18 / 18 of the round trip's 20 above 0.8 with MAE over 52 0.045 / 0.043 /
#: 0.042 against 0.058 without a floor; 100 (the largest) lost shapes (15), so a high percentile
#: short of the largest reading
FLOOR_QUANTILE = 95.0
MIXTURE_ACTIVE = (2, 5)
MIXTURE_WEIGHTS = (0.2, 1.0)
MIXTURE_SEED = 20_261_205
#: fit_mixtures' ridge (weight^2 units per shape): 1 gave 12 of the 20 on 120 mixtures, 3 gave 16
MIXTURE_RIDGE = 3.0
#: the open-jaw calibration (face.calibration.LandmarkCalibration.open_jaw) reads the same mixtures
#: again with jawOpen raised to at least U(OPEN_JAW_WEIGHTS), drawn from OPEN_JAW_SEED: mediapipe reads
#: the sideways jaw and the mouth's shapes differently over an open jaw. On the ARKit round trip's
#: seeds 0-3 the two calibrations read 20 / 19 / 18 / 20 of the top 20 at 0.8 or above against 20 / 19 /
#: 18 / 19 with the first alone, with a lower MAE on all four (the open one alone: 14 / 16 / 18 / 15;
#: docs/figures/arkit.md, thirty-eighth session)
OPEN_JAW_WEIGHTS = (0.3, 1.0)
OPEN_JAW_SEED = 11
#: the share of mixtures given a gaze (both eyes alike, sideways and/or up or down at U(MIXTURE_WEIGHTS),
#: drawn from GAZE_SEED; :func:`with_gaze`): mediapipe's face mesh moves the mouth and chin with the
#: irises, which the tracker read as a sideways jaw (its error where the jaw is straight correlates
#: 0.4-0.6 with the gaze's yaw on the round trip) and reads a gaze at 0.6 of its angle; the mixtures
#: teach the eyes' corrective (face.calibration.fit_mixtures' gaze). On the round trip's seeds 0-3
#: (cached readings, docs/figures/arkit.md, thirty-eighth session) shares 0.3 / 0.5 / 0.8 / 1.0 read
#: 79 / 78 / 80 / 79 of the 80 top-20 correlations at 0.8 or above (77 without a gaze), MAE over 52
#: 0.0379 / 0.0386 / 0.0380 / 0.0374 (0.0426)
GAZE_SHARE = 0.8
GAZE_SEED = 12


#: shapes whose meaning needs others on (ARKit weights): each is rendered over them and read
#: relative to a render of them alone. mouthClose is "lips together while the jaw is open": alone it
#: pushes the shut lips into each other, which mediapipe reads as nothing
BASES: dict[str, dict[str, float]] = {"mouthClose": {"jawOpen": 1.0}}


def weights_frame(model: "HeadModel", global_rot: np.ndarray, weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """One render's (E,) float32 expression and (5, 3) float32 pose from ARKit-named ``weights``: the
    joint channels (JOINT_CHANNELS) turn their joint by their angle per unit, every other name is its
    expression column; the global rotation ``global_rot`` (3,), the rest at rest."""
    from ..head.arkit_names import JOINT_CHANNELS
    from ..head.model import JOINT_NAMES

    names = list(model.expr_names)
    joint = {name: (JOINT_NAMES.index(j), axis, gain) for name, j, axis, gain in JOINT_CHANNELS}
    expr = np.zeros(model.n_expr, np.float32)
    pose = np.zeros((len(JOINT_NAMES), 3), np.float32)
    pose[0] = global_rot
    for n, w in weights.items():
        if n in joint:
            j, axis, gain = joint[n]
            pose[j, axis] += gain * w
        else:
            expr[names.index(n)] += w
    return expr, pose


def mixture_weights(model: "HeadModel", n: int = MIXTURES, seed: int = MIXTURE_SEED) -> list[dict[str, float]]:
    """``n`` random mixtures of the calibrated shapes, jawOpen and the sideways jaw channels (one at
    most), each ``MIXTURE_ACTIVE`` shapes at U(``MIXTURE_WEIGHTS``); mouthClose never above jawOpen
    (ARKit's meaning: lips together while the jaw is open). The eyes' joint channels stay at rest."""
    names = list(model.expr_names)
    pool = [names[k] for k in np.flatnonzero(calibration_shapes(model))]
    pool += [c for c in ("jawOpen", *SIDE_CHANNELS) if c in names]
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(int(n)):
        k = int(rng.integers(MIXTURE_ACTIVE[0], MIXTURE_ACTIVE[1] + 1))
        chosen = []
        for i in rng.permutation(len(pool)):
            if pool[i] in SIDE_CHANNELS and any(c in SIDE_CHANNELS for c in chosen):
                continue
            chosen.append(pool[i])
            if len(chosen) == k:
                break
        w = {c: float(rng.uniform(*MIXTURE_WEIGHTS)) for c in chosen}
        if "mouthClose" in w:
            w["jawOpen"] = max(w.get("jawOpen", 0.0), w["mouthClose"])
        out.append(w)
    return out


def with_gaze(mixes: list[dict[str, float]], share: float = GAZE_SHARE,
              seed: int = GAZE_SEED) -> list[dict[str, float]]:
    """``mixes`` with a gaze added to about ``share`` of them: a sideways turn, an up or down turn, or
    both (each at U(MIXTURE_WEIGHTS)), the two eyes alike as a capture's are (eyeLookOutLeft with
    eyeLookInRight, ...). Copies; the rest of each mixture unchanged."""
    rng = np.random.default_rng(seed)
    out = []
    for w in mixes:
        w = dict(w)
        on, kind, side, up, a, b = (rng.uniform(), rng.integers(3), rng.integers(2), rng.integers(2),
                                    rng.uniform(*MIXTURE_WEIGHTS), rng.uniform(*MIXTURE_WEIGHTS))
        if on < share:
            if kind in (0, 2):     # sideways: one eye out, the other in
                pair = ("eyeLookOutLeft", "eyeLookInRight") if side else ("eyeLookInLeft", "eyeLookOutRight")
                w.update({n: float(a) for n in pair})
            if kind in (1, 2):
                pair = ("eyeLookUpLeft", "eyeLookUpRight") if up else ("eyeLookDownLeft", "eyeLookDownRight")
                w.update({n: float(b) for n in pair})
        out.append(w)
    return out


def open_jaw_mixtures(mixes: list[dict[str, float]], seed: int = OPEN_JAW_SEED) -> list[dict[str, float]]:
    """``mixes`` (:func:`mixture_weights`) with the jaw open: each one's jawOpen raised to at least
    U(``OPEN_JAW_WEIGHTS``) (drawn from ``seed``, one per mixture; mouthClose stays under it). Copies."""
    rng = np.random.default_rng(seed)
    out = []
    for w in mixes:
        w = dict(w)
        w["jawOpen"] = max(w.get("jawOpen", 0.0), float(rng.uniform(*OPEN_JAW_WEIGHTS)))
        out.append(w)
    return out


def calibration_params(avatar: "GaussianAvatar", model: "HeadModel", weight: float):
    """HeadParams of the calibration renders and, per expression, the frame it is read against
    ((E,) int, -1: not calibrated). Frame 0 is neutral; then each calibrated expression alone at
    ``weight`` (over its BASES, if any, read against a render of the base alone, appended last).
    Identity, global pose and translation of the avatar's source frame; jaw, eyes and neck at rest
    unless a base turns them (JOINT_CHANNELS)."""
    from ..head.params import HeadParams

    names = list(model.expr_names)
    sel = np.flatnonzero(calibration_shapes(model))
    src = avatar.params.frame(0)
    E = model.n_expr

    def frame(weights: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
        return weights_frame(model, src.pose[0, 0], weights)

    frames = [frame({})]
    ref = np.full(E, -1)
    base_frame: dict[tuple, int] = {}
    pending: list[tuple[int, dict[str, float]]] = []
    for k in sel:
        base = {n: w for n, w in BASES.get(names[k], {}).items() if n in names}
        frames.append(frame({**base, names[k]: weight}))
        pending.append((len(frames) - 1, base))
    for i, base in pending:     # the base renders after the shapes: frame 1 + j stays shape sel[j]
        key = tuple(sorted(base.items()))
        if key and key not in base_frame:
            base_frame[key] = len(frames)
            frames.append(frame(base))
        ref[sel[i - 1]] = base_frame.get(key, 0)
    expr = np.stack([f[0] for f in frames])
    pose = np.stack([f[1] for f in frames])
    return HeadParams(src.shape, expr, pose, np.repeat(src.transl, len(frames), 0)), ref


def calibrate_tracker(avatar: "GaussianAvatar", model: "HeadModel", lod: int | None = None, weight: float = 1.0,
                      backend: str = "auto", mixtures: int = MIXTURES, open_jaw: bool = True,
                      progress: "Progress | None" = None) -> "LandmarkCalibration":
    """The tracker's calibration to ``avatar`` (see the module doc). lod: None = the avatar's
    finest; weight: the expression weight rendered; mixtures: renders of random mixtures that
    correct the single shapes' directions (:func:`mixture_weights`, face.calibration.fit_mixtures)
    and give each its reading floor (:func:`mixture_floor`); 0 = none (neither). open_jaw: the
    mixtures rendered again with the jaw open (:func:`open_jaw_mixtures`) for the calibration's
    open-jaw part (twice the mixture renders; none without mixtures). progress: told
    each render read (the renders and readings are nearly all of the time) and can cancel between
    them (CancelledError). InputError when mediapipe finds no face in the neutral render."""
    from ..progress import Progress

    from ..face.crop import crop_from_landmarks
    from ..face.mediapipe_face import MediapipeFace
    from ..render.watermark import stamp_watermark
    from .rendering import render_frames

    if model.expr_bounds is None:
        raise InputError(None, f"head model '{model.name}' has no bounded expression basis to calibrate "
                               "(the tracker calibration is an ARKit-52 stand-in feature)")
    from ..face.calibration import JAW
    from ..head.params import HeadParams

    params, ref = calibration_params(avatar, model, weight)
    turns = jaw_calibration_turns()
    n_expr_frames = len(params.expr)
    if turns:   # the jaw turned alone, appended after the expression (and base) renders
        jpose = np.repeat(params.pose[:1], len(turns), 0).copy()
        for i, (_, axis, angle) in enumerate(turns):
            jpose[i, JAW, axis] += angle
        params = HeadParams(params.shape, np.concatenate([params.expr, np.zeros_like(params.expr[:len(turns)])]),
                            np.concatenate([params.pose, jpose]),
                            np.concatenate([params.transl, params.transl[:len(turns)]]))
    n_before_mix = len(params.expr)
    mixes = with_gaze(mixture_weights(model, mixtures)) if mixtures > 0 else []
    n_closed = len(mixes)
    if mixes and open_jaw and "jawOpen" in model.expr_names:   # the open-jaw set after the first
        mixes = mixes + open_jaw_mixtures(mixes)
    if mixes:   # the mixtures, appended last
        mf = [weights_frame(model, params.pose[0, 0], w) for w in mixes]
        m = len(mf)
        params = HeadParams(params.shape, np.concatenate([params.expr, np.stack([f[0] for f in mf])]),
                            np.concatenate([params.pose, np.stack([f[1] for f in mf])]),
                            np.concatenate([params.transl, np.repeat(params.transl[:1], m, 0)]))
    lod = max(avatar.levels) if lod is None else int(lod)
    if lod not in avatar.lods:
        raise InputError(None, f"the avatar has no LOD {lod} (it has {avatar.levels})")
    lms = []
    # mediapipe in the tracker's own (video) mode, each render read twice and the second reading
    # kept: in that mode a frame's landmarks depend on the region the frame before left, and the
    # second reading is the render's settled one (what a held expression in a clip reads). Static
    # (per-image detection) readings sit 0.9 px from the video mode's on the same frames: a
    # calibration from them bought the round trip's top-20 mean correlation 0.53 -> 0.58, the
    # settled video-mode one 0.53 -> 0.69 (96 frames, docs/figures/arkit.md)
    progress = progress or Progress()
    n_renders = len(params.expr)
    with MediapipeFace(static=False) as mp:
        for img in render_frames(avatar, model, params, lod, background=(0.0, 0.0, 0.0), backend=backend):
            img = stamp_watermark(np.round(img * 255.0).astype(np.uint8))
            mp.landmarks(img)
            lms.append(mp.landmarks(img))
            progress.report(0.95 * len(lms) / n_renders, f"calibration render {len(lms)}/{n_renders}")
    if lms[0] is None:
        raise InputError(None, "tracker calibration: no face found in the avatar's neutral render")
    size = (avatar.camera.width, avatar.camera.height)
    crop = crop_from_landmarks(lms[0][:, :2], size)
    E = model.n_expr
    sel = np.flatnonzero(calibration_shapes(model))
    neutral = crop.to_crop(lms[0][:, :2]).astype(np.float64)
    shapes = np.full((E, len(neutral), 2), np.nan)
    for k, lm in zip(sel, lms[1:]):
        base = lms[ref[k]]
        if lm is not None and base is not None:   # the shape's motion over its base, from the neutral
            shapes[k] = neutral + crop.to_crop(lm[:, :2]) - crop.to_crop(base[:, :2])
    calibrate = calibration_shapes(model)
    readings = []
    names = list(model.expr_names)
    for (channel, axis, angle), lm in zip(turns, lms[n_expr_frames:n_before_mix]):
        px = None if lm is None else crop.to_crop(lm[:, :2]).astype(np.float64)
        if channel in SIDE_CHANNELS and channel in names:
            # the channel's own direction (per unit: the render is the channel at weight 1), which
            # the tracker solves in place of the jaw's sideways angle (LandmarkCalibration.joint_channels)
            if px is not None:     # fit_calibration reads shapes per ``weight``; the turn is at 1
                shapes[names.index(channel)] = neutral + weight * (px - neutral)
                calibrate[names.index(channel)] = True
        else:
            readings.append((axis, angle, px))
    side = tuple(n for n in SIDE_CHANNELS if n in names and calibrate[names.index(n)])
    mixture_readings = [(w, None if lm is None else crop.to_crop(lm[:, :2]).astype(np.float64))
                        for w, lm in zip(mixes, lms[n_before_mix:])]
    progress.report(0.95, "fitting the calibration")
    cal = lift_readings(model, avatar.params.shape, neutral, shapes, weight, calibrate, readings, side,
                        mixtures=mixture_readings[:n_closed], open_mixtures=mixture_readings[n_closed:])
    progress.report(1.0, "calibrated")
    return cal


def lift_readings(model: "HeadModel", identity: np.ndarray, neutral: np.ndarray, shapes: np.ndarray,
                  weight: float, calibrate: np.ndarray, readings: list, side: tuple[str, ...] = (),
                  camera=None, mixtures: list | None = None,
                  open_mixtures: list | None = None) -> "LandmarkCalibration":
    """The calibration from mediapipe's readings of the calibration renders (crop pixels of
    ``camera``, default the 512 px source camera): neutral (L, 2) the neutral render's; shapes
    (E, L, 2) each calibrated expression's (NaN rows: not read), at ``weight``; calibrate (E,) bool;
    readings: [(jaw axis, angle rad, (L, 2) px or None)] of the jaw's corrective turns; side: the
    joint channels calibrated as expressions; mixtures: [(ARKit-named weights, (L, 2) px or None)]
    of the mixture renders (face.calibration.fit_mixtures corrects the directions with them, after
    the passes); open_mixtures: the same of the open-jaw mixture renders (:func:`open_jaw_mixtures`),
    which correct the passes' directions into the calibration's open-jaw part, with its own floor
    (used only with ``mixtures``). The neutral pose is fitted (identity kept, jaw and
    eyes free) :data:`PASSES` times, each with the calibration of the pass before, and the readings
    are lifted at that fit's head pose with the jaw and eyes at rest, as the renders have them."""
    from ..face.calibration import JAW, fit_calibration, fit_jaw_correctives
    from ..face.crop import source_camera
    from ..face.landmark_model import LandmarkModel
    from ..face.solver import Projector
    from ..face.track import TrackOptions, track_landmarks

    cam = source_camera() if camera is None else camera
    # the renders move the landmarks as the rendered head does (HeadModel.landmark_exprdirs aside):
    # their readings are lifted to depth with that motion as the prior
    lmm = LandmarkModel.from_model(model, rendered=True)
    proj = Projector(cam.K, cam.viewmat)
    cal = None
    for _ in range(PASSES):
        fit, _, _ = track_landmarks(model, neutral[None].astype(np.float32), np.ones(1, bool), cam, 25.0,
                                    TrackOptions(smoothing=0.0), identity=identity, calibration=cal)
        # the neutral render's jaw and eyes are at rest (calibration_params): lift at rest, so what
        # mediapipe reads of them goes into the offsets instead of into a fitted jaw or gaze that
        # every later frame would then read back as an expression
        rest = fit.pose[0].copy()
        rest[JAW:] = 0.0
        cal = fit_calibration(lmm, proj, fit.shape, rest, fit.transl[0], neutral, shapes, weight,
                              tuple(model.expr_names), calibrate)
        cal.joint_channels = side
        if readings:
            cal.jawdirs = fit_jaw_correctives(lmm, proj, fit.shape, rest, fit.transl[0], neutral, readings)
    if mixtures:
        single = cal
        cal = _mixture_corrected(model, identity, single, lmm, proj, cam, fit, rest, calibrate, mixtures)
        if open_mixtures:
            cal.open_jaw = _mixture_corrected(model, identity, single, lmm, proj, cam, fit, rest, calibrate,
                                              open_mixtures)
    return cal


def _mixture_corrected(model: "HeadModel", identity: np.ndarray, cal: "LandmarkCalibration", lmm, proj, cam,
                       fit, rest: np.ndarray, calibrate: np.ndarray, mixtures: list) -> "LandmarkCalibration":
    """``cal`` corrected by the ``mixtures`` [(ARKit-named weights, (L, 2) px or None)]
    (face.calibration.fit_mixtures at the neutral fit ``fit``, jaw and eyes at rest ``rest``),
    with its reading floor from them (:func:`mixture_floor`). A new calibration."""
    from ..face.calibration import fit_mixtures
    from ..face.mediapipe_face import FACE_OVAL
    from ..head.arkit_names import JOINT_CHANNELS

    names = list(model.expr_names)
    gain = {n: g for n, j, axis, g in JOINT_CHANNELS if j == "jaw" and axis == 0}
    # the gaze as eye_L turns it (with_gaze turns both eyes alike): (channel -> axis, radians per unit)
    eye = {n: (axis, g) for n, j, axis, g in JOINT_CHANNELS if j == "eye_L"}
    eye_r = {n for n, j, *_ in JOINT_CHANNELS if j == "eye_R"}
    L = cal.offset.shape[0]
    expr = np.zeros((len(mixtures), model.n_expr))
    jaw = np.zeros(len(mixtures))
    gaze = np.zeros((len(mixtures), 2))
    lm = np.full((len(mixtures), L, 2), np.nan)
    for i, (w, px) in enumerate(mixtures):
        for n, v in w.items():   # as the tracker solves them: the jaw opening and the eyes joints, the rest columns
            if n in gain:
                jaw[i] += gain[n] * v
            elif n in eye:
                gaze[i, eye[n][0]] += eye[n][1] * v
            elif n not in eye_r:
                expr[i, names.index(n)] += v
        if px is not None:
            lm[i] = px
    inner = np.setdiff1d(np.arange(L), list(FACE_OVAL))
    out = fit_mixtures(lmm, proj, cal, fit.shape, rest, fit.transl[0], expr, jaw, lm, calibrate,
                       ridge=MIXTURE_RIDGE, free_motion=inner, gaze=gaze)
    if out is cal:           # fewer than two mixtures read: nothing corrected
        out = replace(cal)
    out.floor = mixture_floor(model, identity, out, cam, expr, lm, calibrate)
    return out


def mixture_floor(model: "HeadModel", identity: np.ndarray, cal: "LandmarkCalibration", camera,
                  expr: np.ndarray, readings: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """(E,) float32 reading floor of ``cal`` (face.calibration.reading_floor at :data:`FLOOR_QUANTILE`):
    the mixtures' readings (K, L, 2) crop pixels of ``camera`` (NaN rows: no face) tracked as a clip's
    frames are (identity kept, no smoothing) with ``cal``, each expression column read back before
    the joint channels fold into their joint, against the mixtures' true (K, E) columns ``expr``
    (joint channels in their columns); ``columns`` (E,) bool: the shapes that get a floor (the
    calibrated ones, the sideways jaw's channels among them)."""
    from ..face.calibration import reading_floor, unfold_joint_channels
    from ..face.track import TrackOptions, track_landmarks

    ok = np.all(np.isfinite(readings.reshape(len(readings), -1)), axis=1)
    if not ok.any():
        return np.zeros(model.n_expr, np.float32)
    lm = np.where(ok[:, None, None], readings, 0.0).astype(np.float32)
    fit, _, _ = track_landmarks(model, lm, ok, camera, 25.0, TrackOptions(smoothing=0.0), identity=identity,
                                calibration=cal)
    read = unfold_joint_channels(cal, fit.expr, fit.pose, model.expr_names)
    read[~ok] = np.nan
    return reading_floor(expr, read, columns, FLOOR_QUANTILE)


def calibration_for(avatar: "GaussianAvatar", model: "HeadModel", path: str | Path,
                    lod: int | None = None, progress: "Progress | None" = None) -> "LandmarkCalibration":
    """The calibration kept in ``path``: read when the file exists (InputError when it was made
    for another expression basis; an OMGWarning when it predates the reading floor), else computed
    by :func:`calibrate_tracker` (``progress`` told and able to cancel, before anything is written) and
    written there. A kept file without the open-jaw part or the eye corrective is read with an
    OMGWarning too."""
    from ..face.calibration import LandmarkCalibration

    path = Path(path)
    if path.exists():
        cal = LandmarkCalibration.load(path)
        if tuple(cal.expr_names) != tuple(model.expr_names):
            raise InputError(path, f"calibration of {len(cal.expr_names)} expressions "
                                   f"({', '.join(cal.expr_names[:3])}, ...) is not for head model '{model.name}'")
        if cal.floor is None and not cal.offset_only:
            # the user's file: read as it is, never rewritten; say what a new one would add
            import warnings

            from ..errors import OMGWarning

            warnings.warn(f"{path.name}: made before the calibration read mixtures of the shapes (no reading "
                          "floor); tracking with it reads absent shapes above 0. Delete it or give another "
                          "--calibration path to calibrate again", OMGWarning, stacklevel=2)
        elif (cal.open_jaw is None or cal.eyedirs is None) and not cal.offset_only:
            import warnings

            from ..errors import OMGWarning

            warnings.warn(f"{path.name}: made before the calibration read the shapes over an open jaw and with a "
                          "gaze (no open-jaw part or eye corrective); tracking with it reads the sideways jaw less "
                          "well. Delete it or give another --calibration path to calibrate again", OMGWarning,
                          stacklevel=2)
        return cal
    cal = calibrate_tracker(avatar, model, lod, progress=progress)
    cal.save(path)
    return cal


#: neck turns (degrees) of the views :func:`landmark_offsets` reads: the photo's own view and the
#: head turned both ways, so the offsets get their depth
OFFSET_YAWS_DEG: tuple[float, ...] = (-20.0, 0.0, 20.0)


def landmark_offsets(avatar: "GaussianAvatar", model: "HeadModel", yaws_deg: tuple[float, ...] = OFFSET_YAWS_DEG,
                     lod: int | None = None, backend: str = "auto", depth_only: bool = False,
                     outline: bool = False, rigid: bool = True, lips: str = "all") -> "LandmarkCalibration":
    """An offset-only tracker calibration to ``avatar``: where mediapipe reads the avatar's
    landmarks against the landmark embedding's, in 3D (face.calibration.fit_offset).

    Renders the avatar at its photo's parameters (identity, expression, pose; its camera) with the
    neck turned by each of ``yaws_deg`` (degrees, about the head's vertical axis), reads each render
    with mediapipe's static face mesh (as eval's AKD does), and fits per-landmark rest-frame offsets
    over the views. Tracking with it (``track_landmarks(calibration=...)``) fits the clip's
    landmarks with the embedding moved to where the avatar shows each feature, so the fitted pose and
    expression put the avatar's painted features, not the embedding's points, on the clip's. The
    expression basis is the model's own. The face outline's in-plane offsets are left out unless
    ``outline`` (see the code). ``depth_only`` keeps only the offsets' depth (what makes the
    features slide against the embedding when the head turns): the in-plane part alone moved
    d19's fitted head 6 mm in depth (its whole body with it). ``lips`` ("all", "inner", "none"):
    which lip landmarks keep their offsets (:func:`lip_landmarks`); ``rigid=False`` removes the
    offsets' similarity part (:func:`without_similarity`: a common shift, turn or scale, which
    the fit would take up as head pose on every frame). Measured on real clips, none is a
    default (docs/figures/eval.md, "Where the AKD comes from" and "What the tracker offsets
    trade": the AKD they buy is mostly that similarity part, which also costs mouth PSNR).
    InputError when no view shows a face."""
    from ..face.calibration import fit_offset, offset_calibration
    from ..face.fit import JOINT_NECK
    from ..face.landmark_model import LandmarkModel
    from ..face.mediapipe_face import FACE_OVAL, MediapipeFace
    from ..face.solver import Projector
    from ..head.params import HeadParams
    from ..render.watermark import stamp_watermark
    from .rendering import render_frames

    lod = max(avatar.levels) if lod is None else int(lod)
    if lod not in avatar.lods:
        raise InputError(None, f"the avatar has no LOD {lod} (it has {avatar.levels})")
    src = avatar.params.frame(0)
    V = len(yaws_deg)
    pose = np.repeat(src.pose[:1], V, 0).astype(np.float32)
    pose[:, JOINT_NECK, 1] += np.radians(np.asarray(yaws_deg, np.float32))
    params = HeadParams(src.shape, np.repeat(src.expr[:1], V, 0), pose, np.repeat(src.transl[:1], V, 0))
    obs = np.full((V, 478, 2), np.nan)
    with MediapipeFace(static=True) as mp:
        for v, img in enumerate(render_frames(avatar, model, params, lod, camera=avatar.camera,
                                              background=(0.0, 0.0, 0.0), backend=backend)):
            lm = mp.landmarks(stamp_watermark(np.round(img * 255.0).astype(np.uint8)))
            if lm is not None:
                obs[v] = lm[:, :2]
    if not np.isfinite(obs).any():
        raise InputError(None, "tracker offsets: no face found in the avatar's renders")
    lmm = LandmarkModel.from_model(model)
    cam = avatar.camera
    off = fit_offset(lmm, Projector(cam.K, cam.viewmat), src.shape, src.expr[0], pose, src.transl[0], obs)
    if depth_only:
        off[:, :2] = 0.0
    elif not outline:
        # the face outline keeps only its depth: mediapipe places it by the render's silhouette
        # (hair, the shell's edge), and its in-plane offsets rescale the whole head in the fit
        # (d19: 9 mm nearer on average, 2.8 mm without them; frame 0, the photo, 6.7 mm vs 0.1 mm)
        off[list(FACE_OVAL), :2] = 0.0
    if lips != "all":
        off[list(lip_landmarks(lips)), :] = 0.0
    if not rigid:
        import torch
        coeffs = torch.cat([torch.as_tensor(src.shape[None, :lmm.n_shape], dtype=lmm.template.dtype),
                            torch.as_tensor(src.expr[:1, :lmm.n_expr], dtype=lmm.template.dtype)], 1)
        rest = lmm.rest(coeffs)[0][0].double().numpy()
        free = np.ones(off.shape, bool)
        if depth_only:
            free[:, :2] = False
        elif not outline:
            free[list(FACE_OVAL), :2] = False
        if lips != "all":
            free[list(lip_landmarks(lips)), :] = False
        free[~np.asarray(lmm.valid, bool)] = False
        off = without_similarity(off, rest, free)
    return offset_calibration(lmm, off, tuple(model.expr_names))


def lip_landmarks(which: str) -> tuple[int, ...]:
    """Mediapipe's lip landmarks that :func:`landmark_offsets` ``lips`` leaves without an offset:
    "inner" the inner lip contour (face.mediapipe_face.INNER_LIP), "none" every lip landmark
    (eval.metrics.landmarks.regions().lips), "all" none of them."""
    from ..face.mediapipe_face import INNER_LIP
    if which == "all":
        return ()
    if which == "inner":
        return tuple(INNER_LIP)
    if which == "none":
        from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LIPS
        return tuple(sorted({int(i) for edge in FACEMESH_LIPS for i in edge}))
    raise ValueError(f"lips must be 'all', 'inner' or 'none', got {which!r}")


def without_similarity(offset: np.ndarray, rest: np.ndarray, free: np.ndarray) -> np.ndarray:
    """``offset`` (L, 3) m less its least-squares similarity part over the ``free`` (L, 3) bool
    entries: a translation t, a small rotation w and a uniform scale s about the free landmarks'
    centre c (offset_i ~ t + w x (rest_i - c) + s (rest_i - c), rest (L, 3) m the landmarks' rest
    positions), subtracted from the free entries only (the others stay as they are, zero or not).
    A common shift, turn or size change of the landmarks is what the fit's head pose and distance
    take up: left in, it moves the fitted head on every frame, the photo's own included."""
    off = np.asarray(offset, np.float64).copy()
    rows = free.any(1)
    if rows.sum() < 3:
        return off
    q = rest - rest[rows].mean(0)                                   # (L, 3)
    L = len(q)
    A = np.zeros((L, 3, 7))
    A[:, :, :3] = np.eye(3)
    # w x q = -[q]x w
    A[:, 0, 4], A[:, 0, 5] = q[:, 2], -q[:, 1]
    A[:, 1, 3], A[:, 1, 5] = -q[:, 2], q[:, 0]
    A[:, 2, 3], A[:, 2, 4] = q[:, 1], -q[:, 0]
    A[:, :, 6] = q
    sel = np.asarray(free, bool)
    x, *_ = np.linalg.lstsq(A[sel], off[sel], rcond=None)
    off[sel] -= A[sel] @ x
    return off
