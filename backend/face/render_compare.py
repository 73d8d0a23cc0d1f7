"""Render-and-compare passes: fit a clip so that the avatar's *render* is read where the clip was.

The tracker fits the head model's landmarks M(p) to mediapipe's reading O of each frame. Driving an
avatar with those parameters, mediapipe reads the avatar's render R(p) elsewhere: the avatar's
painted features do not sit where the landmark embedding puts them, and they slide against it as
the head turns (docs/figures/eval.md, "Where the AKD comes from"). A pass renders the avatar at each
frame's fitted parameters (the same camera the fit used), reads the renders with mediapipe, takes
the per-frame offset d = R(p) - M(p) and fits the frame again to O - d, with the tracker's own
solver and options (identity kept, bounds, smoothing of O as usual). If d changes little between
p and the re-fit, the re-fit's render is read at R ~= M + d ~= O. A second pass measures d again at
the new parameters (a fixed-point iteration).

This module holds the loop and needs no avatar: the rendering and reading come in as a
:data:`RenderReader` (backend.avatar.render_compare.AvatarReader renders the avatar with the backend
splatter and reads it as the tracker reads frames), so the face package stays below the avatar
package and the loop can be tested with any reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import InputError
from ..progress import Progress
from .mediapipe_face import FACE_OVAL

if TYPE_CHECKING:
    from ..head.params import HeadParams

#: reads renders: (HeadParams of F frames, the fit's Camera, progress) -> (F, 478, 2) float px in that
#: camera's image, NaN rows where mediapipe found no face; called with keywords crop= (CropInfo) and
#: max_side= as well where the caller knows the source frame the fit's image was cut from
RenderReader = Callable[["HeadParams", object, Progress], np.ndarray]


@dataclass
class RenderCompareStats:
    """What the passes did. frames: (F,) the frames rendered; per pass k (0 = the plain fit's
    parameters, k = the k-th re-fit's; the last only when measured): render_to_obs[k] mean
    |R - O| and render_to_model[k] mean |R - M| over the frames' 478 landmarks (px at the fit's
    camera), read[k] how many of the F renders mediapipe read."""

    frames: np.ndarray
    render_to_obs: list[float] = field(default_factory=list)
    render_to_model: list[float] = field(default_factory=list)
    read: list[int] = field(default_factory=list)


def mean_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean 2-D distance between (..., L, 2) landmark sets over the rows both have (NaN-aware)."""
    d = np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b, np.float64), axis=-1)
    return float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")


def render_offsets(read: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """(F, L, 2) d = R - M: where mediapipe read each render (``read`` (F, L, 2), NaN rows: no face)
    against the fitted landmark model's projection ``fitted`` (F, L, 2), both px; 0 where the
    render was not read (that frame is fitted as before)."""
    d = np.asarray(read, np.float64) - np.asarray(fitted, np.float64)
    return np.where(np.isfinite(d), d, 0.0)


def track_with_render_passes(model, landmarks: np.ndarray, has_face: np.ndarray, camera, fps: float,
                             opts, reader: RenderReader, passes: int, progress: Progress | None = None,
                             frames: np.ndarray | None = None, measure_last: bool = False,
                             span: tuple[float, float] = (0.8, 0.98), outline: bool = False,
                             crop=None, **hold) -> tuple["HeadParams", np.ndarray, np.ndarray, RenderCompareStats]:
    """face.track.track_landmarks followed by ``passes`` render-and-compare passes (module doc).

    landmarks (T, 478, 2) px in ``camera``'s image (NaN rows: no face); opts: TrackOptions (its own
    ``render_passes`` is not read here: ``passes`` is); reader: renders and reads HeadParams at
    ``camera`` (:data:`RenderReader`); frames: the frame indices that are rendered and re-fitted
    with their offset (default: every frame with a face; others keep the plain target. The fit of
    a frame does not depend on the others beyond its warm start, so a caller that uses only some
    frames, like eval's self-reenactment, renders only those; with every frame rendered and
    ``opts.smoothing`` on, the offsets are smoothed over time as the landmarks are); measure_last: render and read the
    final parameters once more, for ``stats`` only; outline: shift the face outline's landmarks
    too (off by default: mediapipe places the outline by the render's silhouette, hair and shell
    edge, and its offsets scale the whole head in the fit: d19's head moved 14.6 mm in depth on
    average, its PSNR full fell 1.4 dB); crop: the face.crop.CropInfo that took the clip's frames
    to ``camera``'s image, passed on to the reader (with ``opts.max_side``) so that it renders and
    reads the whole frame as the tracker read the clip (None: the reader reads ``camera``'s
    image); hold: track_landmarks' identity,
    global_rotation and calibration. Returns (HeadParams, confidence (T,), rmse (T,) against the
    shifted target, RenderCompareStats). Progress: the passes' renders report through ``progress``
    as fractions in ``span`` (the fits as track_landmarks does), and it can cancel between frames."""
    from .track import track_landmarks

    if passes < 0:
        raise InputError(None, f"render passes must be >= 0, got {passes}")
    progress = progress or Progress()
    T = len(landmarks)
    has_face = np.asarray(has_face, bool)
    sel = np.flatnonzero(has_face) if frames is None else np.asarray(
        [int(i) for i in frames if 0 <= int(i) < T and has_face[int(i)]], np.int64)
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
        sub = _sub_progress(progress, lo, hi, k)
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
        if not outline:
            offset[:, list(FACE_OVAL)] = 0.0
        if frames is None and opts.smoothing > 0 and len(sel) >= 3:
            # every frame rendered: the renders' readings jitter as a clip's do, so the offset is
            # smoothed as the observation was (the same filter and cap), lest the re-fit put back
            # the jitter the smoothing took out of O
            from .track import smooth_landmarks

            offset[sel] = smooth_landmarks(offset[sel], fps, opts.smoothing, opts.smooth_max_px)
        params, conf, rmse = track_landmarks(model, landmarks, has_face, camera, fps, opts, progress,
                                             target_offset=offset, fitted_out=fitted, **hold)
    return params, conf, rmse, stats


def _sub_progress(progress: Progress, lo: float, hi: float, k: int) -> Progress:
    """A Progress forwarding a reader's fractions in [0, 1] as [lo, hi] of ``progress`` (same
    cancellation), its messages prefixed with the pass."""
    def cb(f: float, message: str) -> None:
        progress.report(lo + (hi - lo) * f, f"render pass {k + 1}: {message}")

    return Progress(callback=cb, should_cancel=progress.should_cancel)
