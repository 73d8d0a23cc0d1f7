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

The loop is face.track.track_with_render_passes (beside the fit it repeats; this module holds its
parts and imports nothing of the tracker). It needs no avatar: the rendering and reading come in as
a :data:`RenderReader` (backend.avatar.render_compare.AvatarReader renders the avatar with the
backend splatter and reads it as the tracker reads frames), so the face package stays below the
avatar package and the loop can be tested with any reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..progress import Progress

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


#: TrackOptions.render_pass_mode values: "full" the per-landmark offset (outline kept at the plain
#: target), "rigid" one 2-D shift a frame, "similarity" one 2-D similarity (shift, rotation, scale),
#: "upper" the rigid shift plus, above the nose, each landmark's own offset beyond it
RENDER_PASS_MODES = ("full", "rigid", "similarity", "upper")

#: mediapipe's landmark at the nose's base (below its tip): "upper" mode's own offsets are for the
#: landmarks above it in the frame's fitted image
NOSE_BASE = 2
#: landmarks 468-477 are the irises: they follow the gaze, which the passes leave to the clip's reading
N_FACE_MESH = 468


def soft_threshold(shift: np.ndarray, tau: float) -> np.ndarray:
    """(..., 2) shifts shrunk by ``tau`` px along themselves: s * max(0, 1 - tau / |s|) (0 where
    |s| <= tau), so a shift within the render reading's own noise moves nothing and a larger one
    moves by what exceeds it."""
    s = np.asarray(shift, np.float64)
    norm = np.linalg.norm(s, axis=-1, keepdims=True)
    return s * np.clip(1.0 - tau / np.maximum(norm, 1e-12), 0.0, 1.0)


def rigid_offsets(offset: np.ndarray, fitted: np.ndarray, inner: np.ndarray, mode: str = "rigid",
                  threshold_px: float = 0.0) -> np.ndarray:
    """(F, L, 2) px: each frame's offset d = R - M (``offset``, from :func:`render_offsets`) replaced
    by one motion of the whole face, estimated on the landmarks ``inner`` (indices into L; the
    caller leaves the face outline out: mediapipe places it by the render's silhouette) and applied
    to all L landmarks, so the re-fit moves the head and keeps the expression the clip's reading gave.

    mode "rigid": the mean of d over ``inner`` (one shift t a frame). "similarity": the least-squares
    2-D similarity taking M to M + d over ``inner`` (t the mean shift, then a rotation and a uniform
    scale about the inner landmarks' centroid c of M: d_j = t + (A - I)(M_j - c), A = [[a, -b], [b, a]]).
    threshold_px: t is soft-thresholded (:func:`soft_threshold`): a frame whose render is read within
    the reading's noise of the fit keeps its plain target (the similarity's rotation and scale part
    is kept as fitted). fitted: (F, L, 2) M, the fitted landmark model's projection (read for
    "similarity" only). Rows of ``offset`` that are all 0 (render not read) stay 0."""
    if mode not in ("rigid", "similarity"):
        raise ValueError(f"rigid_offsets: mode must be 'rigid' or 'similarity', got {mode!r}")
    d = np.asarray(offset, np.float64)                          # (F, L, 2)
    inner = np.asarray(inner, np.int64)
    t = soft_threshold(d[:, inner].mean(axis=1), float(threshold_px))   # (F, 2)
    out = np.broadcast_to(t[:, None, :], d.shape).copy()
    if mode == "similarity":
        m = np.nan_to_num(np.asarray(fitted, np.float64))       # (F, L, 2)
        c = m[:, inner].mean(axis=1, keepdims=True)             # (F, 1, 2)
        p = m[:, inner] - c                                     # centred M, (F, I, 2)
        q = p + d[:, inner] - d[:, inner].mean(axis=1, keepdims=True)   # centred R = M + d
        # least squares over a, b of |A p - q|^2: a = sum(p.q) / sum|p|^2, b = sum(p x q) / sum|p|^2
        pp = np.maximum((p * p).sum(axis=(1, 2)), 1e-12)        # (F,)
        a = (p * q).sum(axis=(1, 2)) / pp
        b = (p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]).sum(axis=1) / pp
        r = m - c                                               # every landmark about c, (F, L, 2)
        out[..., 0] += (a[:, None] - 1.0) * r[..., 0] - b[:, None] * r[..., 1]
        out[..., 1] += b[:, None] * r[..., 0] + (a[:, None] - 1.0) * r[..., 1]
    return out


def sub_progress(progress: Progress, lo: float, hi: float, k: int) -> Progress:
    """A Progress forwarding a reader's fractions in [0, 1] as [lo, hi] of ``progress`` (same
    cancellation), its messages prefixed with the pass."""
    def cb(f: float, message: str) -> None:
        progress.report(lo + (hi - lo) * f, f"render pass {k + 1}: {message}")

    return Progress(callback=cb, should_cancel=progress.should_cancel)


def upper_face_offsets(offset: np.ndarray, fitted: np.ndarray, inner: np.ndarray, threshold_px: float,
                       cut: int = NOSE_BASE) -> np.ndarray:
    """(F, L, 2) px: the rigid pass's shift (:func:`rigid_offsets`, "rigid") for every landmark, plus,
    for the face-mesh landmarks of ``inner`` that lie above the nose's base (image y of the fitted
    M above landmark ``cut``'s, frame by frame; the irises never), their own offset beyond that
    shift, soft-thresholded per landmark by ``threshold_px`` (:func:`soft_threshold`: a landmark
    read within the reading's noise of the shift keeps the shift).

    Why: the eyes, brows, nose and upper cheeks sit on the skull, so where the render reads them
    apart from one another the head's placement (its turn, depth and scale, which one photo gives
    no depth for) is off, and the re-fit corrects it landmark by landmark; the mouth, chin and
    lower cheeks keep the shift only, so the fit keeps the clip's opening (every landmark's own
    offset moved the mouth's geometry off it: docs/figures/eval.md, "Render-and-compare passes").
    offset: (F, L, 2) d = R - M (:func:`render_offsets`); fitted: (F, L, 2) M; inner: indices
    inside the face outline. Rows of ``offset`` that are all 0 (render not read) stay 0."""
    d = np.asarray(offset, np.float64)
    m = np.asarray(fitted, np.float64)
    t = rigid_offsets(d, m, inner, "rigid", threshold_px)
    face = np.asarray(inner, np.int64)
    face = face[face < N_FACE_MESH]
    above = np.zeros(d.shape[:2], bool)
    with np.errstate(invalid="ignore"):
        above[:, face] = m[:, face, 1] < m[:, cut:cut + 1, 1]
    own = soft_threshold(d - t, float(threshold_px))
    return np.where(above[..., None], t + own, t)
