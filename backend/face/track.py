"""Video -> per-frame head-model parameters (a Track), streamed, offline-smoothed.

Passes:
1. decode + landmarks: frames are streamed one at a time through mediapipe's face mesh in tracking
   mode (one model instance; it re-detects only when the face is lost). Only the 478 landmarks per
   frame are kept (4 KB), never the frames;
2. framing: one fixed square crop for the whole clip (median of the per-frame FFHQ crops), hence
   one fixed source camera (crop.py); landmarks are mapped into that 512x512 crop;
3. identity: shape (and each frame's pose/expression) fitted jointly on ``identity_frames`` frames
   spread over the clip, then frozen;
4. per frame: rotations (global, neck, jaw, eyes), translation and expression by a few
   Levenberg-Marquardt steps. Frames are solved in batches (block-diagonal normal equations, one
   batched Cholesky, per-frame damping) warm-started from the previous batch's last frame.
   ``global`` is held near the identity frames' rotation so that per-frame head turns go to
   ``neck`` (see fit.py);
5. smoothing happens before the fit, on the observed landmarks: a zero-phase one-euro filter
   (smoothing.py) of user-set strength, whose change to any landmark is capped at SMOOTH_MAX_PX
   (jitter goes, fast motion stays); frames without a face are filled by interpolation between
   tracked neighbours.
Per-frame confidence = 1 / (1 + (rmse / 3 px)^2), 0 where no face was found.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..progress import Progress
from .crop import CROP_SIZE, CropInfo, crop_from_landmarks, source_camera
from .fit import (FROZEN_PRIOR, JOINT_GLOBAL, JOINT_JAW, JOINT_NECK, FitOptions, fit_joints, frame_prior_weights,
                  landmark_weights, pnp_init, to_head_params)
from .image import downscale
from .landmark_model import LandmarkModel
from .mediapipe_face import MediapipeFace
from .smoothing import fill_gaps, smooth_track
from .solver import (Layout, Priors, Projector, State, empty_state, pack_frame, single_thread, solve,
                     solve_frames)
from .video import iter_video

TRACK_FORMAT = "omg-track"
TRACK_VERSION = 1
CONFIDENCE_PX = 3.0
# Largest change the temporal smoothing may make to an observed landmark coordinate (crop px at 512).
# 1.5 px moved d12's landmarks by the full cap on most frames (its motion comes in steps: every
# third frame repeats), a shift of the whole face that self-reenactment AKD measured; at 0.5 px
# d12's AKD was 3.29 px against 3.67 (unsmoothed 3.34), d0's 1.80 against 1.82 and d3's 2.83
# against 2.82 (every 15th frame, builds kept fixed; docs/figures/eval.md).
SMOOTH_MAX_PX = 0.5


@dataclass
class TrackOptions:
    """Video tracking settings.

    smoothing: temporal smoothing strength (0 = off, 1 light, 2 default, 4 strong); fast motion is
               preserved at any strength (one-euro filter).
    smooth_max_px: the most the smoothing may move an observed landmark (crop px at 512).
    identity_frames: frames fitted jointly for the identity shape.
    iterations: LM iterations every frame gets; frames still improving continue alone, up to 3x.
    batch: frames solved together (one batched solve, warm-started from the previous batch's
           last frame); larger batches amortise the per-call overhead.
    n_expr: expression components tracked.
    global_prior: pull of the global rotation towards the identity frames' rotation.
    neck_prior: prior on the neck rotation during tracking (small: it carries head turns).
    jaw_from_lips: weight (px^2 per rad^2) pulling the jaw to the opening the observed inner-lip gap
               calls for (jaw_from_lip_gap; 0 = off), on wide-open frames only (jaw_gate) and only
               where the plain fit left the jaw JAW_SLACK_RAD short of it (those frames are solved
               again). Without it the fit opens a wide "O" with the lip components over a nearly
               closed jaw (the jaw turns the whole lower face, which the cheek landmarks resist), so
               the render shows a band of closed teeth where the clip shows the dark cavity (d3:
               mouth PSNR 7.2 -> 18.8 dB on its wide frames). Applied to every frame it also
               opened the jaw of d0's toothy smile (teeth together, lips apart) and cost d0 2-3 dB
               of PSNR full; gated, d0's and d19's frames keep the plain fit.
    jaw_gate: inner-lip opening (gap / inner width, mediapipe 13-14 over 78-308) from which the
               jaw coupling starts and at which it reaches full weight: a smile showing closed
               teeth stays below the first (d0: up to 0.24), a wide "O" reaches 0.5 and more.
    jaw_hold_head: in that second solve, hold the head's rotations and translation at the plain
               fit (measured: costs d3's wide frames 3.5 dB of mouth PSNR, so off).
    lips_only_gap: share of that gap (in eye-to-upper-lip units) left to the lips alone.
    projected_bounds: bounded (ARKit-52) weights are solved by projected Newton steps (weights a
               bound holds are taken out of the step) instead of clipped whole steps; None = only
               when tracking with a calibration. Converged that way, the calibrated round trip
               fits mediapipe's landmarks to 0.67 px instead of 1.38 (top-20 mean correlation 0.79
               -> 0.81, MAE over 52 0.069 -> 0.059), but on real clips, whose landmarks the
               uncalibrated stand-in basis explains less truly, the closer fit raised
               self-reenactment AKD (d0 2.30 -> 2.69 px, d12 3.19 -> 3.40, every 30th frame;
               docs/figures/arkit.md), so uncalibrated tracking keeps the clipped steps.
    settle: read each frame twice with mediapipe's face mesh (video mode) and keep the second
               reading, whose region comes from the frame itself rather than from the frame before
               (the settled reading the calibration is made of: avatar.calibrate); None = only when
               tracking with a calibrated basis (not an offset-only one), so the clip is read as
               the calibration's renders were.
               On the ARKit-52 round trip's 240 frames (every frame a new random expression) the
               settled readings sit 0.82 px from the single ones and the calibrated top-20 mean
               correlation rises 0.83 -> 0.87 (docs/figures/arkit.md). Costs a second face-mesh
               run per frame.
    max_side: frames larger than this are downscaled for mediapipe (landmarks mapped back).
    torso: measure the torso channel (face/torso.py: the portrait matte's shoulders below the
               chin against the first frame) and put it into the parameters (HeadParams.torso),
               so the avatar's body follows the video's shoulders, not only the head's motion.
    sequence_fps: frame rate for image-sequence folders.
    render_passes: render-and-compare passes after the fit (face.render_compare; needs the avatar
               the clip drives, track_video's ``reader``): each renders the avatar at every frame's
               fitted parameters, reads the renders with mediapipe and fits the frames again with
               their target shifted by what the render's reading lies off the fitted landmarks, so
               the avatar's render, not the head model's landmarks, lands where the clip was read.
               0 = off (the default; docs/figures/eval.md and arkit.md say what they buy and cost).
    render_pass_mode: what of the render's offset the passes fit (face.render_compare.RENDER_PASS_MODES):
               "full" every landmark's own offset (the outline's kept at the plain target); "rigid"
               one 2-D shift a frame, the offset's mean over the landmarks inside the outline, for
               every landmark (render_compare.rigid_offsets): the pass moves the head, not the
               expression, so the mouth keeps the clip's opening; "similarity" that shift plus a
               rotation and uniform scale in the image; "upper" that shift, and for the landmarks
               above the nose (eyes, brows, nose, upper cheeks: on the skull) each one's own offset
               beyond it (render_compare.upper_face_offsets): the head's turn, depth and scale are
               corrected as the render reads them while the mouth keeps the shift only (with a
               calibration, which already places each landmark where the render is read, the
               shift only, as "rigid").
               docs/figures/eval.md has the figures.
    render_pass_threshold_px: "rigid" / "similarity" / "upper": the shift is soft-thresholded by this
               many px at 512 (render_compare.soft_threshold), and so is, in "upper", each landmark's
               own offset beyond it: mediapipe reads a render of a fit that is already right about
               1 px off it (d0 frame 75: AKD 0.85 -> 1.16 px with the whole shift), so only what
               exceeds that moves the target.
    render_pass_every: the passes render and read every this-many-th frame with a face (and the
               last) and give the frames between the offset interpolated linearly over time: the
               offset follows the head's turn, which a clip changes slowly, and each render and
               reading costs far more than a fit (``track_with_render_passes``). 1 = every frame.
               Only where the passes choose the frames (``frames`` None: track, retarget). The
               outline pass (track_video's ``outline``) renders the same keyframes.
    fit: the photo-fit settings used for the identity frames (priors, weights, components).
    """

    smoothing: float = 2.0
    smooth_max_px: float = SMOOTH_MAX_PX
    identity_frames: int = 5
    iterations: int = 3
    batch: int = 64
    n_expr: int = 50
    global_prior: float = 1e4
    jaw_from_lips: float = 4e5
    jaw_gate: tuple[float, float] = (0.25, 0.40)
    jaw_hold_head: bool = False
    lips_only_gap: float = 0.0
    neck_prior: float = 20.0
    projected_bounds: bool | None = None
    settle: bool | None = None
    max_side: int = 1280
    torso: bool = True
    sequence_fps: float = 25.0
    render_passes: int = 0
    render_pass_mode: str = "full"
    render_pass_threshold_px: float = 1.0
    render_pass_every: int = 1
    fit: FitOptions = field(default_factory=FitOptions)


#: How the product drives an avatar that keeps its identity (track --avatar, retarget, Blender's
#: Retarget Video, eval's self-reenactment and multi-view protocols): one render-and-compare pass over
#: every 6th frame, interpolated between, in the "upper" mode (the render's mean offset inside the
#: outline moves the head, and above the nose each landmark's own offset beyond it corrects the
#: skull's placement; each beyond the reading's 1 px noise). Measured on self-reenactment against the
#: rigid pass (the twenty-second session's default): AKD 2.13 -> 1.98 px, PSNR full 23.36 -> 23.59 dB,
#: SSIM full 0.790 -> 0.795, mouth PSNR 21.19 -> 21.33 dB; against the plain fit the track of d3 takes
#: about twice as long (docs/figures/eval.md, twenty-second and twenty-third sessions). TrackOptions'
#: own defaults stay the plain fit: the passes need the avatar to render.
DRIVING_PASSES = {"render_passes": 1, "render_pass_mode": "upper", "render_pass_threshold_px": 1.0,
                  "render_pass_every": 6}


@dataclass
class Track:
    """Tracked parameters of a clip.

    params: HeadParams with T = frames (shape shared); fps; confidence (T,) in [0, 1];
    has_face (T,) bool (False = filled by interpolation); landmarks (T, 478, 2) px in the crop
    (NaN where no face); camera: the fixed source Camera; crop: CropInfo in source pixels;
    model: head-model name; expr_names: expression component names; source: clip file name;
    smoothing: strength used; seconds: wall time of the tracking; stage_seconds: its split;
    shoulders: (T, 2) float32 the body region's shift in source pixels against the first frame
    (face/torso.py; a frame with no estimate takes its neighbours', NaN only when no frame had
    one) or None (not measured), from which params.torso was made.
    """

    params: object
    fps: float
    confidence: np.ndarray
    has_face: np.ndarray
    landmarks: np.ndarray
    camera: object
    crop: CropInfo
    model: str
    expr_names: list[str]
    source: str = ""
    smoothing: float = 0.0
    seconds: float = 0.0
    stage_seconds: dict = field(default_factory=dict)  # "decode+landmarks", "fit" (not saved)
    shoulders: np.ndarray | None = None

    @property
    def n_frames(self) -> int:
        return int(self.params.n_frames)

    @property
    def frames_without_face(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.has_face)]

    def metadata(self) -> dict:
        """JSON-able description: fps, frames, model, parameter names, gaps."""
        from ..head.model import JOINT_NAMES

        return {
            "format": TRACK_FORMAT,
            "version": TRACK_VERSION,
            "fps": float(self.fps),
            "frames": self.n_frames,
            "model": self.model,
            "source": self.source,
            "smoothing": float(self.smoothing),
            "frames_without_face": self.frames_without_face,
            "parameter_names": {
                "shape": [f"shape_{i:03d}" for i in range(len(self.params.shape))],
                "expr": list(self.expr_names),
                "pose": [f"{j}_{a}" for j in JOINT_NAMES for a in "xyz"],
                "transl": ["x", "y", "z"],
            },
            "units": {"pose": "axis-angle radians", "transl": "metres", "landmarks": "pixels at 512"},
        }

    def save(self, path: str | Path) -> None:
        """Write ``path`` (.npz): arrays plus the JSON metadata under key 'metadata'."""
        from ..output_safety import atomic_path

        p = self.params
        target = Path(path) if str(path).endswith(".npz") else Path(f"{path}.npz")  # numpy's rule
        extra = {} if p.torso is None else {"torso": p.torso}
        if self.shoulders is not None:
            extra["shoulders"] = np.asarray(self.shoulders, np.float32)
        with atomic_path(target) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(
                fh, shape=p.shape, expr=p.expr, pose=p.pose, transl=p.transl, **extra,
                confidence=self.confidence.astype(np.float32), has_face=self.has_face.astype(bool),
                landmarks=self.landmarks.astype(np.float32), K=self.camera.K, viewmat=self.camera.viewmat,
                image_size=np.array([self.camera.width, self.camera.height], np.int64),
                crop=self.crop.as_array(), metadata=np.array(json.dumps(self.metadata())),
            )

    @staticmethod
    def load(path: str | Path) -> "Track":
        """Read a file written by :meth:`save`; InputError naming the file when it is not one."""
        path = Path(path)
        if not path.is_file():
            raise InputError(path, "track file not found")
        try:
            with np.load(path, allow_pickle=False) as z:
                return Track.from_npz(z, json.loads(str(z["metadata"])), path)
        except InputError:
            raise
        except Exception as exc:  # noqa: BLE001 - zip/key/json/shape problems: all a bad file
            raise InputError(path, f"not a readable track file ({type(exc).__name__}: "
                                   f"{str(exc)[:120]})") from None

    @staticmethod
    def from_npz(z, meta: dict, path: str | Path) -> "Track":
        """The track in an open .npz ``z`` whose parsed 'metadata' is ``meta`` (so a caller that
        already opened the file reads it once). ValueError/KeyError on a bad layout; InputError
        naming ``path`` when the frame counts disagree."""
        from ..head.params import HeadParams
        from ..render.camera import Camera

        if meta.get("format") != TRACK_FORMAT:
            raise ValueError(f"format is {meta.get('format')!r}, expected {TRACK_FORMAT!r}")
        params = HeadParams(z["shape"], z["expr"], z["pose"], z["transl"],
                            z["torso"] if "torso" in z.files else None)  # older tracks: none
        w, h = (int(v) for v in z["image_size"])
        track = Track(
            params=params, fps=float(meta["fps"]), confidence=z["confidence"],
            has_face=z["has_face"].astype(bool), landmarks=z["landmarks"],
            camera=Camera(z["K"], z["viewmat"], w, h), crop=CropInfo.from_array(z["crop"]),
            model=str(meta["model"]), expr_names=list(meta["parameter_names"]["expr"]),
            source=str(meta.get("source", "")), smoothing=float(meta.get("smoothing", 0.0)),
            shoulders=z["shoulders"] if "shoulders" in z.files else None,
        )
        if track.n_frames != int(meta["frames"]) or np.shape(track.confidence) != (track.n_frames,):
            raise InputError(path, "track file is inconsistent (frame counts disagree)")
        return track


# ---- pass 1: landmarks ------------------------------------------------------------------------

#: the longer side of the portrait mattes kept for the outline pass (face.pitch_pass), pixels
OUTLINE_MATTE_PX = 256


def _stream_landmarks(path: Path, opts: TrackOptions, progress: Progress, start: int = 0, end: int | None = None,
                      settle: bool = False, mattes: list | None = None):
    """Decode frames ``start..end`` (inclusive; None = to the end) and run face mesh on each:
    (reader, list of (478, 2) source px | None, (T, 2) float32 shoulder shifts in source px or None
    without ``opts.torso``). Decoding stops after ``end``. settle: each frame read twice, the
    second reading kept (TrackOptions.settle). ``mattes``: when a list, each frame's portrait matte
    is appended to it, (h, w) uint8 (255 = person) over the whole frame with its longer side at most
    OUTLINE_MATTE_PX (None where the frame has no face)."""
    from .torso import ShoulderTracker

    reader = iter_video(path, opts.sequence_fps)
    shoulders = ShoulderTracker() if opts.torso else None
    shoulder_scale = 1.0
    stop = (reader.n_frames - 1 if reader.n_frames else start) if end is None else end
    n_est = max(stop - start + 1, 1)
    out: list[np.ndarray | None] = []
    with MediapipeFace(static=False) as mp:
        for i, frame in enumerate(reader):
            if i < start:
                continue
            if end is not None and i > end:
                break  # closes the decoder: the rest of the clip is never read
            small, s = downscale(frame, opts.max_side)
            lm = mp.landmarks(small)
            if settle:
                lm = mp.landmarks(small)
            out.append(None if lm is None else lm[:, :2] / s)
            matte = mp.segment(small) if lm is not None and (shoulders is not None or mattes is not None) else None
            if shoulders is not None:  # matte and landmarks at mediapipe's scale s (one per clip)
                shoulders.add(matte, None if lm is None else lm[:, :2])
                shoulder_scale = s
            if mattes is not None:
                mattes.append(None if matte is None else _small_matte(matte))
            if len(out) % 4 == 1:
                progress.report(0.8 * min(len(out) / n_est, 1.0), f"landmarks {len(out)}/{n_est}")
    if not out:
        raise InputError(path, "the video has no frames" if start == 0 and end is None
                         else f"the clip has no frames in the range {start}..{end}")
    if shoulders is None:
        return reader, out, None
    return reader, out, shoulders.shifts() / shoulder_scale  # measured at mediapipe's scale


def _small_matte(matte: np.ndarray) -> np.ndarray:
    """(h, w) uint8 of a (H, W) float [0, 1] matte, its longer side at most OUTLINE_MATTE_PX."""
    import cv2

    H, W = matte.shape
    f = min(1.0, OUTLINE_MATTE_PX / float(max(H, W)))
    if f < 1.0:
        matte = cv2.resize(matte, (max(1, round(W * f)), max(1, round(H * f))), interpolation=cv2.INTER_AREA)
    return np.round(np.clip(matte, 0.0, 1.0) * 255.0).astype(np.uint8)


def matte_in_crop(matte: np.ndarray, source_size: tuple[int, int], crop: CropInfo) -> np.ndarray:
    """(crop.size, crop.size) float32 [0, 1]: a frame's matte (h, w) over the whole source frame of
    ``source_size`` (W, H) px, at any scale, cut by ``crop`` (zero past the frame's edge)."""
    import cv2

    h, w = matte.shape
    f = w / float(source_size[0])
    k = crop.side * f / crop.size           # matte px per crop px
    c = 0.5 * k - 0.5                       # pixel centres: (x + 0.5) crop px -> (u + 0.5) matte px
    M = np.array([[k, 0.0, crop.x0 * f + c], [0.0, k, crop.y0 * f + c]], np.float64)
    m = np.asarray(matte, np.float32) / (255.0 if matte.dtype == np.uint8 else 1.0)
    return cv2.warpAffine(m, M, (crop.size, crop.size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)


def _fixed_crop(landmarks: list[np.ndarray | None], size: tuple[int, int]) -> CropInfo:
    crops = np.array([crop_from_landmarks(lm, size).as_array() for lm in landmarks if lm is not None])
    med = np.median(crops[:, :3], axis=0).round().astype(int)
    return CropInfo(int(med[0]), int(med[1]), int(med[2]), CROP_SIZE, (int(size[0]), int(size[1])))


# ---- passes 3-4: fitting ------------------------------------------------------------------------

def fit_identity(lmm: LandmarkModel, proj: Projector, obs: np.ndarray, w: np.ndarray,
                 fopts: FitOptions, shape: torch.Tensor | None = None) -> State:
    """Joint fit of K frames (obs (K, 478, 2)) with one shared shape; returns the K-frame state.
    With ``shape`` (the leading ``lmm.n_shape`` identity coefficients) the identity is given and
    held fixed: only each frame's pose and expression are fitted."""
    K = obs.shape[0]
    state = empty_state(lmm, K)
    if shape is not None:
        state.shape = torch.as_tensor(shape, dtype=torch.float64)[: lmm.n_shape].clone()
    for k in range(K):
        aa, tr = pnp_init(lmm, proj, obs[k], w)
        state.pose[k, JOINT_GLOBAL] = torch.as_tensor(aa)
        state.transl[k] = torch.as_tensor(tr)
    o = torch.as_tensor(obs)
    wt = torch.as_tensor(w)[None].expand(K, -1)
    rigid = Layout([(JOINT_GLOBAL,)], 0, 0)
    state, _ = solve(lmm, proj, state, o, wt, rigid,
                     Priors(torch.zeros(rigid.per_frame, dtype=torch.float64), pack_frame(state, rigid),
                            torch.zeros(0, dtype=torch.float64)), fopts.pose_iterations)
    layout = Layout(fit_joints(lmm, fopts), lmm.n_expr if fopts.fit_expr else 0,
                    0 if shape is not None else lmm.n_shape, lmm.expr_bounds, coupled=lmm.coupled)
    mu = torch.zeros(K, layout.per_frame, dtype=torch.float64)
    pri = Priors(frame_prior_weights(lmm, layout, fopts), mu,
                 torch.full((layout.n_shape,), fopts.shape_prior, dtype=torch.float64))
    state, _ = solve(lmm, proj, state, o, wt, layout, pri, fopts.iterations)
    return state


# jaw angle (rad) at which the model's inner-lip gap per radian is measured (jaw_from_lip_gap)
JAW_RATE_PROBE = 0.2
# a wide-open frame's fitted jaw this far (rad) below the lip gap's estimate is pulled open; the
# estimate's own error on model-made openings at any yaw is under 0.03
JAW_SLACK_RAD = 0.05
# prior weight holding the head's rotations (px^2/rad^2) and translation (px^2/m^2) at the plain fit
# while a wide-open frame's jaw is re-fitted: far above what the landmarks can pull
HOLD_HEAD_WEIGHT = 1e9



def smooth_landmarks(raw: np.ndarray, fps: float, strength: float, max_px: float = SMOOTH_MAX_PX) -> np.ndarray:
    """(T, L, 2) landmark track smoothed (zero-phase one-euro, smoothing.py) with every coordinate
    kept within ``max_px`` of the observed one."""
    raw = np.asarray(raw, np.float64)
    smooth = smooth_track(raw, fps, strength)
    return raw + np.clip(smooth - raw, -max_px, max_px)


def track_landmarks(model, landmarks: np.ndarray, has_face: np.ndarray, camera, fps: float,
                    opts: TrackOptions | None = None, progress: Progress | None = None,
                    identity: np.ndarray | None = None, global_rotation: np.ndarray | None = None,
                    calibration=None, target_offset: np.ndarray | None = None,
                    fitted_out: np.ndarray | None = None, rest_offsets: np.ndarray | None = None):
    """Fit per-frame parameters to (T, 478, 2) crop-pixel landmarks (rows with has_face False are
    ignored and filled). ``identity``: the head's shape coefficients (e.g. an avatar's) to keep
    instead of fitting one from the clip. ``global_rotation``: (3,) axis-angle the global joint is
    held near (e.g. the avatar's photo pose, so its shoulders stay where the photo had them and
    head turns go to the neck); None = the identity frames' mean rotation. ``calibration``: a
    face.calibration.LandmarkCalibration of the model's expression basis to what mediapipe sees
    (solved with instead of the embedding's own landmark response; its reading floor, if any, is
    taken off the solved weights: face.calibration.apply_floor; frames first read with the jaw
    open past its ``open_jaw_from`` are solved again, from that fit, with its open-jaw part and
    floored with that part's floor); None = the embedding's.
    ``target_offset``: (T, 478, 2) px subtracted from the (smoothed) landmarks before the fit, so
    each frame is fitted to ``landmarks - target_offset`` (face.render_compare: where mediapipe
    reads the avatar's render against the fitted landmarks; NaN entries count as 0).
    ``fitted_out``: a (T, 478, 2) float array filled with the fitted landmark model's projection
    (what this fit put each landmark at, the calibration's basis included; NaN where no face).
    ``rest_offsets``: (V, 3) metres, the avatar's ``vertex_offsets`` (identity detail its head
    carries: avatar.landmark_detail), fitted with the ``identity`` they belong to; None = none;
    ignored without an ``identity`` and with a ``calibration``, whose neutral offsets already
    measure them.
    Returns (HeadParams, confidence (T,), rmse (T,))."""
    opts = opts or TrackOptions()
    progress = progress or Progress()
    fopts = opts.fit
    T = len(landmarks)
    idx = np.flatnonzero(has_face)
    if opts.smoothing > 0 and len(idx) >= 3:
        # Smooth what was observed, then fit every frame to it, and never move a landmark further
        # than SMOOTH_MAX_PX from where mediapipe saw it: the smoothing removes detector jitter
        # (about a pixel), not motion. Smoothing the fitted parameters instead left d12 (fast head
        # turns, a wide mouth, every third frame a duplicate) 11 px from its landmarks, against
        # 2 px unsmoothed: that was its 13 px self-reenactment AKD (docs/figures/eval.md).
        landmarks = landmarks.copy()
        landmarks[idx] = smooth_landmarks(landmarks[idx], fps, opts.smoothing, opts.smooth_max_px)
    if fitted_out is not None:
        fitted_out[...] = np.nan
    if target_offset is not None:
        # the offset goes after the smoothing: it is the render's reading against the fit at
        # those very parameters, not something the clip observed
        off = np.asarray(target_offset, np.float64)
        if off.shape != (T, *np.shape(landmarks)[1:]):
            raise ValueError(f"target_offset has shape {off.shape}, expected {(T, *np.shape(landmarks)[1:])}")
        landmarks = np.asarray(landmarks, np.float64) - np.nan_to_num(off, nan=0.0)
    proj = Projector(camera.K, camera.viewmat)
    with torch.inference_mode(), single_thread():
        # identity on frames spread over the clip
        # a bounded (ARKit-52) basis is tracked whole: its shapes are not ordered by importance
        full = LandmarkModel.from_model(model, fopts.n_shape if fopts.fit_shape else 0,
                                        None if model.expr_bounds is not None else opts.n_expr)
        if rest_offsets is not None and identity is not None and calibration is None:
            # the offsets belong to the identity they were made with (a clip's own identity has
            # none); a calibration is measured against the plain model (avatar.calibrate): its
            # neutral offsets already hold where the avatar's render puts each landmark
            full = full.with_rest_offsets(model, rest_offsets)
        plain = full
        if calibration is not None:
            full = calibration.apply(full)
        w_np = landmark_weights(full, fopts.contour_weight, fopts.iris_weight)
        pick = idx[np.linspace(0, len(idx) - 1, min(opts.identity_frames, len(idx))).round().astype(int)]
        ident = fit_identity(full, proj, landmarks[pick].astype(np.float64), w_np, fopts, identity)
        shape = ident.shape.clone()
        ref_global = ident.pose[:, JOINT_GLOBAL].mean(0)
        if global_rotation is not None:
            ref_global = torch.as_tensor(np.asarray(global_rotation, np.float64).reshape(3))
            _hand_turn_to_neck(ident, ref_global)  # warm start there too

        # per-frame tracking on the same landmark model with the shape frozen
        calibrated_basis = calibration is not None and not getattr(calibration, "offset_only", False)
        projected = calibrated_basis if opts.projected_bounds is None else bool(opts.projected_bounds)
        layout = Layout(fit_joints(full, fopts), full.n_expr, 0, full.expr_bounds, projected, full.coupled)
        frame_w = frame_prior_weights(full, layout, _tracking_fit_options(fopts, opts),
                                      global_prior=opts.global_prior)
        if calibration is not None:   # joint channels solved as calibrated expressions (face.calibration)
            from .calibration import joint_channel_priors

            frame_w = joint_channel_priors(calibration, layout, frame_w, model.expr_names, fopts.expr_prior,
                                           FROZEN_PRIOR)
        base_mu = torch.zeros(1, layout.per_frame, dtype=torch.float64)
        base_mu[0, :3] = ref_global  # global is the first joint group in the layout
        jaw_mu = None
        lead = [g[0] for g in layout.joints]
        if opts.jaw_from_lips > 0 and JOINT_JAW in lead:
            jc = 3 * lead.index(JOINT_JAW)
            jaw_mu = jaw_from_lip_gap(full, shape, landmarks, opts.lips_only_gap)
            jaw_w = float(frame_w[jc]) + opts.jaw_from_lips * jaw_gate_weight(landmarks, opts.jaw_gate)
            nj = 3 * len(layout.joints)
            head_cols = [3 * k + a for k, g in enumerate(layout.joints) if g[0] in (JOINT_GLOBAL, JOINT_NECK)
                         for a in range(3)] + list(range(nj, nj + 3))
        wt_all = torch.as_tensor(w_np)[None]

        pose = np.zeros((T, 5, 3))
        transl = np.zeros((T, 3))
        expr = np.zeros((T, full.n_expr))
        rmse = np.full(T, np.nan)
        f32 = torch.float32

        def fit_chunk(lmm: LandmarkModel, ts: np.ndarray, start: State) -> State:
            """Frames ``ts`` solved on ``lmm`` from ``start`` (B frames, float32), the wide-open jaw
            re-solve included; written into pose, transl, expr, rmse (and fitted_out)."""
            B = len(ts)
            obs = torch.as_tensor(landmarks[ts].astype(np.float64))
            wt = wt_all.expand(B, -1)
            mu = base_mu.expand(B, -1).clone()
            state, _ = solve_frames(lmm, proj, start, obs, wt, layout, Priors(frame_w, mu, shape[:0]), opts.iterations)
            if jaw_mu is not None:
                # wide-open frames whose plain fit left the jaw well short of the opening the
                # lips show are solved again from there with the jaw pulled open (one-sided: a
                # jaw the landmarks already open is kept, talking frames are never touched)
                need = (jaw_w[ts] > frame_w[jc].item()) & (
                    state.pose[:, JOINT_JAW, 0].double().numpy() < jaw_mu[ts] - JAW_SLACK_RAD)
                sel = torch.as_tensor(np.flatnonzero(need))
                if len(sel):
                    sub = State(state.shape, state.expr[sel], state.pose[sel], state.transl[sel])
                    w_b = frame_w.expand(len(sel), -1).clone()
                    w_b[:, jc] = torch.as_tensor(jaw_w[ts][need], dtype=w_b.dtype)
                    mu_b = mu[sel].clone()
                    if opts.jaw_hold_head:
                        mu_b[:, head_cols] = pack_frame(sub, layout).to(mu.dtype)[:, head_cols]
                        w_b[:, head_cols] = HOLD_HEAD_WEIGHT
                    mu_b[:, jc] = torch.as_tensor(jaw_mu[ts][need], dtype=mu_b.dtype)
                    sub, _ = solve_frames(lmm, proj, sub, obs[sel], wt[sel], layout,
                                          Priors(w_b, mu_b, shape[:0]), opts.iterations)
                    state.expr[sel], state.pose[sel], state.transl[sel] = sub.expr, sub.pose, sub.transl
            state = State(shape, state.expr.double(), state.pose.double(), state.transl.double())
            pose[ts] = state.pose.numpy()
            transl[ts] = state.transl.numpy()
            expr[ts] = state.expr.numpy()
            uv, _ = proj.project(lmm.points(state.coeffs(), state.pose, state.transl))
            d2 = ((uv - obs) ** 2).sum(-1).numpy()  # (B, L)
            if fitted_out is not None:
                fitted_out[ts] = uv.numpy()
            rmse[ts] = np.sqrt((d2[:, w_np > 0]).mean(1))
            return state

        # warm start: the first chunk from the identity fit of the first face frame (pick[0]),
        # every later chunk from the last frame of the chunk before it
        warm = State(shape, ident.expr[:1].clone(), ident.pose[:1].clone(), ident.transl[:1].clone())
        for c0 in range(0, len(idx), opts.batch):
            progress.report(0.8 + 0.18 * c0 / len(idx), f"fitting {c0 + 1}/{len(idx)}")
            ts = idx[c0: c0 + opts.batch]
            B = len(ts)
            start = State(shape.to(f32), warm.expr.expand(B, -1).to(f32), warm.pose.expand(B, -1, -1).to(f32),
                          warm.transl.expand(B, -1).to(f32))
            state = fit_chunk(full, ts, start)
            warm = State(shape, state.expr[-1:].clone(), state.pose[-1:].clone(), state.transl[-1:].clone())
        # frames first read with the jaw open are solved again with the calibration's open-jaw part
        # (face.calibration's module doc), each from its own first fit
        open_rows = np.zeros(T, bool)
        if calibration is not None and getattr(calibration, "open_jaw", None) is not None and JOINT_JAW in lead:
            from .calibration import open_jaw_rows

            open_rows[idx] = open_jaw_rows(calibration, pose[idx, JOINT_JAW, 0])
            full_open = calibration.open_jaw.apply(plain)
            opened = np.flatnonzero(open_rows)
            for c0 in range(0, len(opened), opts.batch):
                ts = opened[c0: c0 + opts.batch]
                start = State(shape.to(f32), torch.as_tensor(expr[ts], dtype=f32), torch.as_tensor(pose[ts], dtype=f32),
                              torch.as_tensor(transl[ts], dtype=f32))
                fit_chunk(full_open, ts, start)
    pose = fill_gaps(pose, has_face)
    transl = fill_gaps(transl, has_face)
    expr = fill_gaps(expr, has_face)
    # every fit keeps mouthClose under the jaw; a gap interpolated across a jaw shut past rest (the
    # cap is flat below 0) and the reading floor, which may take more off the jaw's channel than off
    # mouthClose, could lift it over: the weights returned are capped once, after both
    if calibration is None:
        if full.coupled is not None:
            expr = full.coupled.capped(expr, pose)
    else:
        from .calibration import apply_floor, fold_joint_channels

        floored = apply_floor(calibration, expr)
        if open_rows.any():
            floored = np.array(floored, copy=True)
            floored[open_rows] = apply_floor(calibration.open_jaw, expr[open_rows])
        if full.coupled is not None:
            floored = full.coupled.capped(floored, pose)
        if fitted_out is not None and floored is not expr:
            # render passes compare the render of what is returned with these: the floored weights'
            shut = np.asarray(has_face, bool) & ~open_rows
            for rows, lmm in ((shut, full), (open_rows, full_open if open_rows.any() else None)):
                ts_all = np.flatnonzero(rows)
                for c0 in range(0, len(ts_all), opts.batch):
                    ts = ts_all[c0: c0 + opts.batch]
                    st_f = State(shape, torch.as_tensor(floored[ts]), torch.as_tensor(pose[ts]),
                                 torch.as_tensor(transl[ts]))
                    uv, _ = proj.project(lmm.points(st_f.coeffs(), st_f.pose, st_f.transl))
                    fitted_out[ts] = uv.numpy()
        expr, pose = fold_joint_channels(calibration, floored, pose, model.expr_names)
    st = State(shape, torch.as_tensor(expr), torch.as_tensor(pose), torch.as_tensor(transl))
    params = to_head_params(st, model, full)
    conf = np.where(has_face, 1.0 / (1.0 + (np.nan_to_num(rmse, nan=1e9) / CONFIDENCE_PX) ** 2), 0.0)
    return params, conf.astype(np.float32), rmse


def check_render_pass_options(opts: TrackOptions) -> None:
    """InputError unless ``opts``' render-pass settings are usable (mode one of RENDER_PASS_MODES,
    threshold a finite number >= 0)."""
    from .render_compare import RENDER_PASS_MODES

    if opts.render_pass_mode not in RENDER_PASS_MODES:
        raise InputError(None, f"render pass mode must be one of {', '.join(RENDER_PASS_MODES)}, "
                               f"got {opts.render_pass_mode!r}")
    if int(opts.render_pass_every) < 1:
        raise InputError(None, f"render pass interval must be >= 1 frame, got {opts.render_pass_every}")
    t = opts.render_pass_threshold_px
    if not isinstance(t, (int, float)) or not np.isfinite(t) or t < 0:
        raise InputError(None, f"render pass threshold must be a number of px >= 0, got {t!r}")


def track_with_render_passes(model, landmarks: np.ndarray, has_face: np.ndarray, camera, fps: float,
                             opts, reader, passes: int, progress: Progress | None = None,
                             frames: np.ndarray | None = None, measure_last: bool = False,
                             span: tuple[float, float] = (0.8, 0.98), outline: bool = False,
                             crop=None, **hold) -> tuple:
    """:func:`track_landmarks` followed by ``passes`` render-and-compare passes (face.render_compare's
    module doc).

    landmarks (T, 478, 2) px in ``camera``'s image (NaN rows: no face); opts: TrackOptions (its own
    ``render_passes`` is not read here: ``passes`` is; ``render_pass_mode`` and
    ``render_pass_threshold_px`` are); reader: renders and reads HeadParams at
    ``camera`` (face.render_compare.RenderReader); frames: the frame indices that are rendered and re-fitted
    with their offset (default: every frame with a face, or every ``opts.render_pass_every``-th of
    them with the offsets interpolated between (:func:`keyframes`, :func:`interpolate_offsets`);
    others keep the plain target. The fit of
    a frame does not depend on the others beyond its warm start, so a caller that uses only some
    frames, like eval's self-reenactment, renders only those; with every frame rendered and
    ``opts.smoothing`` on, the offsets are smoothed over time as the landmarks are); measure_last: render and read the
    final parameters once more, for ``stats`` only; outline: shift the face outline's landmarks
    too (off by default: mediapipe places the outline by the render's silhouette, hair and shell
    edge, and its offsets scale the whole head in the fit: d19's head moved 14.6 mm in depth on
    average, its PSNR full fell 1.4 dB; "full" mode only: the rigid modes measure their motion
    inside the outline and move the outline with the rest); crop: the face.crop.CropInfo that took the clip's frames
    to ``camera``'s image, passed on to the reader (with ``opts.max_side``) so that it renders and
    reads the whole frame as the tracker read the clip (None: the reader reads ``camera``'s
    image); hold: track_landmarks' identity,
    global_rotation and calibration. Returns (HeadParams, confidence (T,), rmse (T,) against the
    shifted target, RenderCompareStats). Progress: the passes' renders report through ``progress``
    as fractions in ``span`` (the fits as track_landmarks does), and it can cancel between frames."""
    from .mediapipe_face import FACE_OVAL
    from .render_compare import (RenderCompareStats, mean_distance, render_offsets, rigid_offsets, sub_progress,
                                 upper_face_offsets)

    if passes < 0:
        raise InputError(None, f"render passes must be >= 0, got {passes}")
    check_render_pass_options(opts)
    mode = opts.render_pass_mode
    if mode == "upper" and hold.get("calibration") is not None:
        # a calibrated tracker already fits each landmark where mediapipe reads the avatar's render:
        # the landmarks' own offsets would count that reading twice (a calibrated track of the
        # avatar's own renders read a smile of 0.38 on an open jaw, 0.22 with the shift only)
        mode = "rigid"
    inner = np.setdiff1d(np.arange(landmarks.shape[1]), list(FACE_OVAL))
    progress = progress or Progress()
    T = len(landmarks)
    has_face = np.asarray(has_face, bool)
    faced = np.flatnonzero(has_face)
    sel = faced if frames is None else np.asarray(
        [int(i) for i in frames if 0 <= int(i) < T and has_face[int(i)]], np.int64)
    if frames is None and opts.render_pass_every > 1 and len(sel) > 2:
        sel = keyframes(sel, int(opts.render_pass_every))
    obs = np.asarray(landmarks, np.float64)
    fitted = np.full((T, *obs.shape[1:]), np.nan)
    params, conf, rmse = track_landmarks(model, landmarks, has_face, camera, fps, opts, progress,
                                         fitted_out=fitted, **hold)
    stats = RenderCompareStats(frames=sel)
    offset = np.zeros_like(fitted)
    for k in range(passes + (1 if measure_last else 0)):
        if not len(sel):
            break
        n = passes + (1 if measure_last else 0)
        lo, hi = span[0] + (span[1] - span[0]) * k / n, span[0] + (span[1] - span[0]) * (k + 1) / n
        sub = sub_progress(progress, lo, hi, k)
        read = np.asarray(reader(params.sliced(sel), camera, sub) if crop is None else
                          reader(params.sliced(sel), camera, sub, crop=crop, max_side=opts.max_side), np.float64)
        if read.shape != (len(sel), *obs.shape[1:]):
            raise ValueError(f"the render reader returned {read.shape}, expected {(len(sel), *obs.shape[1:])}")
        stats.read.append(int(np.isfinite(read).all(axis=(1, 2)).sum()))
        stats.render_to_obs.append(mean_distance(read, obs[sel]))
        stats.render_to_model.append(mean_distance(read, fitted[sel]))
        if k == passes:     # the measuring read after the last re-fit
            break
        # replace, not accumulate: d is the whole offset at these parameters, and the re-fit
        # targets O - d from the clip's own reading O
        offset[sel] = render_offsets(read, fitted[sel])
        if mode in ("rigid", "similarity"):   # one motion a frame, measured inside the outline, for every landmark
            offset[sel] = rigid_offsets(offset[sel], fitted[sel], inner, mode, opts.render_pass_threshold_px)
        elif mode == "upper":   # that shift, and above the nose each landmark's own offset beyond it
            offset[sel] = upper_face_offsets(offset[sel], fitted[sel], inner, opts.render_pass_threshold_px)
        elif not outline:
            offset[:, list(FACE_OVAL)] = 0.0
        if len(sel) < len(faced) and frames is None:     # keyframes: the frames between interpolated
            keyed = offset[sel].copy()
            keyed[~np.isfinite(read).all(axis=(1, 2))] = np.nan   # an unread key is no key
            offset[faced] = interpolate_offsets(sel, keyed, faced)
        elif frames is None and opts.smoothing > 0 and len(sel) >= 3:
            # every frame rendered: the renders' readings jitter as a clip's do, so the offset is
            # smoothed as the observation was (the same filter and cap), lest the re-fit put back
            # the jitter the smoothing took out of O (between keyframes the line is smooth already)
            offset[sel] = smooth_landmarks(offset[sel], fps, opts.smoothing, opts.smooth_max_px)
        params, conf, rmse = track_landmarks(model, landmarks, has_face, camera, fps, opts, progress,
                                             target_offset=offset, fitted_out=fitted, **hold)
    return params, conf, rmse, stats


def keyframes(frames: np.ndarray, every: int) -> np.ndarray:
    """(K,) int64: every ``every``-th of the sorted frame indices ``frames`` (N,), the first and
    the last always among them."""
    frames = np.asarray(frames, np.int64)
    return np.unique(np.concatenate([frames[::max(1, int(every))], frames[-1:]]))


def interpolate_offsets(keys: np.ndarray, key_offsets: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """(N, L, 2): per-landmark offsets at ``frames`` (N,) linearly interpolated over the frame index
    from ``key_offsets`` (K, L, 2) at the sorted ``keys`` (K,), held beyond the first and last key.
    A key whose reading failed (NaN) is left out."""
    keys = np.asarray(keys, np.float64)
    vals = np.asarray(key_offsets, np.float64)
    ok = np.isfinite(vals).all(axis=(1, 2))
    if not ok.any():
        return np.zeros((len(frames), *vals.shape[1:]))
    keys, vals = keys[ok], vals[ok]
    x = np.asarray(frames, np.float64)
    j = np.clip(np.searchsorted(keys, x, side="right") - 1, 0, len(keys) - 1)
    k = np.minimum(j + 1, len(keys) - 1)
    span = keys[k] - keys[j]
    w = np.where(span > 0, np.clip((x - keys[j]) / np.where(span > 0, span, 1.0), 0.0, 1.0), 0.0)
    return vals[j] * (1 - w)[:, None, None] + vals[k] * w[:, None, None]


def _hand_turn_to_neck(state: State, global_rotation: torch.Tensor) -> None:
    """Set every frame's global joint of ``state`` to ``global_rotation`` (3,) axis-angle and give
    the neck the rest of the head's rotation (R_neck = R_g^T R_global R_neck), in place. The
    tracker starts from it: with only the global joint moved, a photo turned 0.2 rad from the
    clip left the first frames' LM steps 0.07 rad short (global, pulled by the landmarks, ahead of
    the weakly held neck)."""
    from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle

    pose = state.pose.double().numpy()
    head = axis_angle_to_matrix(pose[:, JOINT_GLOBAL]) @ axis_angle_to_matrix(pose[:, JOINT_NECK])
    g = axis_angle_to_matrix(global_rotation.double().numpy())
    neck = matrix_to_axis_angle(g.T[None] @ head)
    state.pose[:, JOINT_GLOBAL] = global_rotation.to(state.pose.dtype)
    state.pose[:, JOINT_NECK] = torch.as_tensor(neck, dtype=state.pose.dtype)


def jaw_gate_weight(landmarks: np.ndarray, gate: tuple[float, float]) -> np.ndarray:
    """(T,) in [0, 1]: how much each frame's jaw follows its inner-lip gap, a smoothstep of the
    opening (gap / inner width) from gate[0] to gate[1]. landmarks (T, 478, 2) px; NaN rows -> 0."""
    from .mediapipe_face import INNER_CORNER_L, INNER_CORNER_R, LOWER_INNER_MID, UPPER_INNER_MID

    p = np.asarray(landmarks, np.float64)
    gap = np.linalg.norm(p[:, LOWER_INNER_MID] - p[:, UPPER_INNER_MID], axis=-1)
    width = np.linalg.norm(p[:, INNER_CORNER_L] - p[:, INNER_CORNER_R], axis=-1)
    ratio = np.nan_to_num(gap / np.maximum(width, 1e-9), nan=0.0)
    t = np.clip((ratio - gate[0]) / max(gate[1] - gate[0], 1e-9), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def jaw_from_lip_gap(lmm: LandmarkModel, shape: torch.Tensor, landmarks: np.ndarray,
                     lips_only: float = 0.0) -> np.ndarray:
    """(T,) jaw opening (radians about x) that the observed inner-lip gap calls for.

    landmarks (T, 478, 2) px. The gap between the inner lips' midpoints is measured in units of
    the distance from the inner eye corners' midpoint to the upper inner lip (vertical like the
    gap, so head yaw and distance cancel); beyond ``lips_only`` (the share the lips open by
    themselves) it is converted to a jaw rotation by the model's own gap per radian at rest, in the
    same units. NaN rows give 0."""
    from .mediapipe_face import LEFT_EYE_CORNERS, RIGHT_EYE_CORNERS
    from .mediapipe_face import LOWER_INNER_MID, UPPER_INNER_MID

    def ratio(pts):  # (..., L, 2|3) -> gap / (inner eye corners' midpoint .. upper inner lip)
        gap = np.linalg.norm(pts[..., LOWER_INNER_MID, :] - pts[..., UPPER_INNER_MID, :], axis=-1)
        eyes = 0.5 * (pts[..., LEFT_EYE_CORNERS[0], :] + pts[..., RIGHT_EYE_CORNERS[0], :])
        return gap / np.maximum(np.linalg.norm(pts[..., UPPER_INNER_MID, :] - eyes, axis=-1), 1e-9)

    st = State(shape, torch.zeros(2, lmm.n_expr, dtype=torch.float64),
               torch.zeros(2, 5, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64))
    st.pose[1, JOINT_JAW, 0] = JAW_RATE_PROBE
    rest = lmm.points(st.coeffs(), st.pose, st.transl).numpy()
    per_rad = (ratio(rest[1]) - ratio(rest[0])) / JAW_RATE_PROBE
    obs = np.nan_to_num(ratio(np.asarray(landmarks, np.float64)), nan=0.0)
    return np.clip(obs - lips_only, 0.0, None) / max(per_rad, 1e-6)


def avatar_hold(shape: np.ndarray, photo_pose: np.ndarray, keep_identity: bool = True,
                rest_offsets: np.ndarray | None = None) -> dict:
    """Keyword arguments for :func:`track_video` / :func:`track_landmarks` that make a clip drive
    a given avatar the way it was built: the one place that decides this for eval's
    self-reenactment and the product (``track --avatar``, ``retarget``, Blender's Retarget Video).

    shape: (S,) the avatar's identity coefficients; photo_pose: (5, 3) or (1, 5, 3) axis-angle
    radians, the joints of the photo it was built from (frame 0 of ``avatar.params.pose``).
    rest_offsets: (V, 3) the avatar's ``vertex_offsets`` (its identity detail), kept with the
    identity. Returns {"identity": shape or None (keep_identity False: fit the clip's own),
    "global_rotation": (3,) the photo's global joint, "rest_offsets": the offsets or None (with
    the clip's own identity, or when they are all zero)}. Holding global there keeps the avatar's
    shoulders (bound to global) where the photo had them and puts head turns into the neck;
    without it global went to the clip's mean rotation and turned the shoulders away."""
    pose = np.asarray(photo_pose, np.float64).reshape(-1, 5, 3)
    keep_offsets = keep_identity and rest_offsets is not None and np.any(np.asarray(rest_offsets) != 0)
    return {"identity": np.asarray(shape) if keep_identity else None,
            "global_rotation": pose[0, JOINT_GLOBAL].copy(),
            "rest_offsets": np.asarray(rest_offsets, np.float32) if keep_offsets else None}


def _tracking_fit_options(fopts: FitOptions, opts: TrackOptions) -> FitOptions:
    from dataclasses import replace

    return replace(fopts, neck_prior=opts.neck_prior)


def track_video(path: str | Path, model=None, options: TrackOptions | None = None,
                progress: Progress | None = None, start: int = 0, end: int | None = None,
                identity: np.ndarray | None = None, global_rotation: np.ndarray | None = None,
                calibration=None, reader=None, rest_offsets: np.ndarray | None = None, outline=None) -> Track:
    """Track the face in a clip (file or image-sequence folder). ``model`` None = the stand-in.

    identity: (n_shape,) shape coefficients to keep (an avatar's identity, so the rig driven by
    the clip is the avatar's head); None = fit the identity from the clip.
    global_rotation: (3,) axis-angle the global joint is held near (track_landmarks); to drive an
    avatar pass both through :func:`avatar_hold`.
    calibration: a face.calibration.LandmarkCalibration for ``model`` (see track_landmarks).
    rest_offsets: (V, 3) the avatar's vertex_offsets, with its identity (track_landmarks).
    reader: renders and reads the driven avatar (face.render_compare.RenderReader, e.g.
    avatar.render_compare.AvatarReader) for ``options.render_passes``; required when those are > 0.
    outline: renders the driven avatar's alpha (face.pitch_pass.AlphaRenderer, e.g.
    avatar.render_compare.AvatarAlpha): when given, each frame's neck pitch is then taken from its
    outline (face.pitch_pass.silhouette_pitch), for a clip of the person the avatar was built from.

    start, end: the source frame range to track (0-based, inclusive; end None = to the end).
    progress: receives fractions in [0, 1] and can cancel (CancelledError) between frames.
    Raises InputError for unreadable clips, empty ranges and ranges without any face.
    """
    if start < 0 or (end is not None and end < start):
        raise InputError(path, f"empty frame range {start}..{end}")
    from ..head.loader import load_head_model

    t0 = time.perf_counter()
    opts = options or TrackOptions()
    if opts.render_passes < 0:
        raise InputError(None, f"render passes must be >= 0, got {opts.render_passes}")
    check_render_pass_options(opts)
    if opts.render_passes > 0 and reader is None:
        raise InputError(None, "render passes need the avatar the clip drives (track --avatar, retarget)")
    progress = progress or Progress()
    model = load_head_model(None) if model is None else model
    path = Path(path)
    progress.report(0.0, "reading video")
    with progress.stage("decode+landmarks"):
        calibrated_basis = calibration is not None and not getattr(calibration, "offset_only", False)
        settle = calibrated_basis if opts.settle is None else bool(opts.settle)
        mattes = [] if outline is not None else None
        video, lms, shoulders = _stream_landmarks(path, opts, progress, start, end, settle, mattes)
    has_face = np.array([lm is not None for lm in lms])
    if not has_face.any():
        raise InputError(path, f"no face found in any of the {len(lms)} frames"
                         if start == 0 and end is None else f"no face found in frames {start}..{start + len(lms) - 1}")
    crop = _fixed_crop(lms, video.size)
    camera = source_camera(CROP_SIZE)
    lm_crop = np.full((len(lms), 478, 2), np.nan, np.float32)
    for t, lm in enumerate(lms):
        if lm is not None:
            lm_crop[t] = crop.to_crop(lm)
    with progress.stage("fit"):
        hold = {"identity": identity, "global_rotation": global_rotation, "calibration": calibration,
                "rest_offsets": rest_offsets}
        if opts.render_passes > 0:
            params, conf, _, _ = track_with_render_passes(model, lm_crop, has_face, camera, video.fps, opts,
                                                          reader, opts.render_passes, progress, crop=crop, **hold)
        else:
            params, conf, _ = track_landmarks(model, lm_crop, has_face, camera, video.fps, opts, progress, **hold)
        if shoulders is not None:
            params = with_torso_channel(params, shoulders, crop, camera, model)
    if outline is not None:
        from .pitch_pass import keyframe_offsets, silhouette_pitch, with_offsets

        with progress.stage("outline"):
            # every render_pass_every-th frame with a face is rendered, as the render passes do; the
            # offsets taken there carry to the frames between
            frames = np.flatnonzero(has_face)
            keys = frames[:: max(int(opts.render_pass_every), 1)]
            if keys[-1] != frames[-1]:
                keys = np.append(keys, frames[-1])
            cut = [matte_in_crop(mattes[t], video.size, crop) for t in keys]
            with np.errstate(all="ignore"):
                chins = np.nanmax(lm_crop[keys, :, 1], axis=1)
            sub = Progress(callback=lambda f, m: progress.report(0.98 + 0.02 * f, m), should_cancel=progress.should_cancel)
            stats = silhouette_pitch(model, params, camera, keys, cut, chins, outline, progress=sub)
            params = with_offsets(model, params, camera, frames, keyframe_offsets(frames, keys, stats.offsets_deg))
    progress.report(1.0, "done")
    return Track(params=params, fps=video.fps, confidence=conf, has_face=has_face, landmarks=lm_crop,
                 camera=camera, crop=crop, model=model.name, expr_names=list(model.expr_names),
                 source=path.name if start == 0 and end is None else f"{path.name}[{start}:{start + len(lms)}]",
                 smoothing=opts.smoothing, seconds=time.perf_counter() - t0,
                 stage_seconds=dict(progress.stage_seconds), shoulders=shoulders)


def with_torso_channel(params, shoulders: np.ndarray, crop: CropInfo, camera, model, reference=None):
    """``params`` (HeadParams fitted in ``camera``, the clip's ``crop``) with the torso channel made
    from ``shoulders`` (T, 2) source px (face/torso.py torso_channel); ``reference``: the parameters
    of a photo of the clip's first frame in the same camera (torso_channel), or None."""
    from ..head.params import HeadParams
    from .torso import torso_channel

    torso = torso_channel(shoulders, crop, camera, model, params, reference=reference)
    return HeadParams(params.shape, params.expr, params.pose, params.transl, torso)
