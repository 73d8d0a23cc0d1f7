"""The silhouette pitch pass: a driven head's pitch from the frame's outline, for a clip of the
person the avatar was built from.

The face is nearly flat, so the landmarks barely see the head's pitch: tilting it back a few
degrees moves the top of the hair, the neck and the jaw's outline against the face, and hardly the
face. Swept over the shared clips (docs/figures/eval.md, "The twenty-sixth session"), d12's driven
frames wanted the head tilted back 4-12 deg further than the track had it; the landmarks never see
it. The avatar's outline is the person's own when the clip shows the person it was built from
(eval's self-reenactment; ``track --avatar``, which holds that avatar's identity): each frame's
neck is pitched by the candidate offset whose render matches the frame's portrait matte best
above the chin (intersection over union of the render's alpha and the matte, the alpha cut at
the level that holds as many pixels as the matte at the track's pitch: a Gaussian render's soft
rim reaches 1-2 px past a segmenter's outline, which read as a head to be tilted back), the face's
projected centre kept by the translation and the body by the torso channel (``pitched``), so only
what the pitch moves changes. A frame keeps the track's pitch unless a candidate beats it by
``min_gain``: hair that moves on its own changes the outline by less than a tilt does (d3).

Choosing by the matte, not by the picture, is what a tracker can do with any frame; the choice was
within 0.002 SSIM of the best of the candidates scored against the frames themselves (d12, d3,
d0, d19; the forty-first session).

The face package stays below the avatar package: the renders come in as an :data:`AlphaRenderer`
(backend.avatar.render_compare.AvatarAlpha renders an avatar's alpha).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..progress import Progress

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams
    from ..render.camera import Camera

#: renders alpha: (HeadParams of F frames, Camera) -> (F, H, W) float32 in [0, 1], the camera's image
AlphaRenderer = Callable[["HeadParams", "Camera"], np.ndarray]


@dataclass
class PitchPassOptions:
    """deltas_deg: the candidate offsets of the neck's pitch (degrees about the head's x axis;
    negative tilts the head back; 0 is the track's own); min_gain: the IoU a candidate must add
    over the track's pitch to be taken; work_px: the side of the image the outlines are compared
    in (the camera's image scaled to it); front_share: the head mesh's frontmost share of vertices
    (by rest depth) whose projected centre stays where the track put it; max_level: the highest
    alpha level the outlines are compared at (matched_level: a render's soft rim reaches past the
    outline a segmenter draws; 0.5 compares at alpha 0.5 always)."""

    deltas_deg: tuple[float, ...] = (-8.0, -6.0, -4.0, -2.0, 0.0, 2.0, 4.0)
    min_gain: float = 0.005
    work_px: int = 256
    front_share: float = 0.3
    max_level: float = 0.95


@dataclass
class PitchPassStats:
    """What the pass found, per frame it looked at: frames (F,) int64; offsets_deg (F,) the neck-pitch
    offset to apply (with_offsets; between the candidates: the peak of the outline's IoU through the
    best candidate and its neighbours; 0: keep the track's); iou_track / iou_taken (F,) the outline's IoU above the chin at the track's pitch
    and at the best candidate (NaN where the frame had no matte or no chin)."""

    frames: np.ndarray
    offsets_deg: np.ndarray
    iou_track: np.ndarray
    iou_taken: np.ndarray


def front_vertices(model: "HeadModel", share: float) -> np.ndarray:
    """(V,) bool: the head mesh's frontmost ``share`` of vertices by rest depth (the face)."""
    rest_z = np.asarray(model.v_template)[:, 2]
    return rest_z > np.quantile(rest_z, 1.0 - share)


def _front_centre(model: "HeadModel", p: "HeadParams", camera: "Camera", front: np.ndarray
                  ) -> tuple[np.ndarray, float]:
    """(2,) px: the projected mean of the ``front`` vertices for one frame ``p``; and their mean
    camera depth (metres)."""
    import torch

    from ..head.lbs import HeadModelTensors, lbs_params

    with torch.no_grad():
        verts = lbs_params(HeadModelTensors.from_model(model, "cpu"), p).vertices[0].numpy()
    uv, z = camera.project(verts[front])
    return uv.mean(0, dtype=np.float64), float(z.mean())


def pitched(model: "HeadModel", p: "HeadParams", camera: "Camera", delta_deg: float, front: np.ndarray
            ) -> "HeadParams":
    """One frame ``p`` with the neck pitched by ``delta_deg`` about its own x axis, the ``front``
    vertices' projected centre kept (three fixed-point steps of the translation, well under 0.1 px)
    and the body kept by the torso channel taking the opposite shift."""
    from ..head.params import HeadParams
    from ..rotations import axis_angle_to_matrix, matrix_to_axis_angle

    pose = p.pose.astype(np.float64).copy()
    rx = axis_angle_to_matrix(np.array([np.radians(delta_deg), 0.0, 0.0]))
    pose[0, 1] = matrix_to_axis_angle(axis_angle_to_matrix(pose[0, 1]) @ rx)
    goal, _ = _front_centre(model, p, camera, front)
    transl = p.transl.astype(np.float64).copy()
    torso = np.zeros((1, 3)) if p.torso is None else p.torso.astype(np.float64).copy()
    R = camera.R.astype(np.float64)
    for _ in range(3):
        q = HeadParams(p.shape, p.expr, pose.astype(np.float32), transl.astype(np.float32), torso.astype(np.float32))
        uv, z = _front_centre(model, q, camera, front)
        du = goal - uv
        step = R.T @ np.array([du[0] * z / camera.fx, du[1] * z / camera.fy, 0.0])
        transl, torso = transl + step, torso - step
    return HeadParams(p.shape, p.expr, pose.astype(np.float32), transl.astype(np.float32), torso.astype(np.float32))


def outline_iou(alpha: np.ndarray, matte: np.ndarray, chin_row: float, level: float = 0.5) -> float:
    """IoU of ``alpha`` > ``level`` and ``matte`` > 0.5 ((H, W) each, the same image) over the rows above
    ``chin_row`` (px in that image): the head, hair and neck's outline, not the body's. NaN when
    neither holds a pixel there."""
    rows = int(np.clip(np.ceil(chin_row), 0, alpha.shape[0]))
    a, m = np.asarray(alpha)[:rows] > level, np.asarray(matte)[:rows] > 0.5
    union = np.count_nonzero(a | m)
    return float(np.count_nonzero(a & m) / union) if union else float("nan")


def matched_level(alpha: np.ndarray, matte: np.ndarray, chin_row: float, max_level: float = 0.95) -> float:
    """The alpha level in [0.5, ``max_level``] at which ``alpha`` holds as many pixels above
    ``chin_row`` as ``matte`` > 0.5 does (0.5 when the alpha is the smaller already)."""
    rows = int(np.clip(np.ceil(chin_row), 0, alpha.shape[0]))
    a = np.asarray(alpha)[:rows].ravel()
    n = np.count_nonzero(np.asarray(matte)[:rows] > 0.5)
    if n == 0 or np.count_nonzero(a > 0.5) <= n:
        return 0.5
    return float(np.clip(np.sort(a)[::-1][n], 0.5, max_level))   # n pixels above it


def _resized(mask: np.ndarray, h: int, w: int) -> np.ndarray:
    """(H, W) float mask -> (h, w) float32 by area averaging (PIL)."""
    from PIL import Image

    m = np.asarray(mask, np.float32)
    if m.shape == (h, w):
        return m
    return np.asarray(Image.fromarray(m, mode="F").resize((w, h), Image.BOX), np.float32)


def _vertex(deltas: list[float], iou: np.ndarray, best: int) -> float:
    """The offset at the peak of the parabola through candidate ``best`` and its neighbours in
    offset order (``deltas`` sorted or not), within their span; ``deltas[best]`` itself where it
    has no neighbour on a side or the three points do not curve down."""
    order = np.argsort(deltas)
    i = int(np.flatnonzero(order == best)[0])
    if i == 0 or i == len(order) - 1:
        return deltas[best]
    (x0, x1, x2), (y0, y1, y2) = (np.asarray(deltas, np.float64)[order[i - 1:i + 2]],
                                  np.asarray(iou, np.float64)[order[i - 1:i + 2]])
    if not np.all(np.isfinite([y0, y1, y2])):
        return deltas[best]
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 * x2 * (y0 - y1) + x1 * x1 * (y2 - y0) + x0 * x0 * (y1 - y2)) / denom
    if a >= 0.0:
        return deltas[best]
    return float(np.clip(-b / (2.0 * a), x0, x2))


def silhouette_pitch(model: "HeadModel", params: "HeadParams", camera: "Camera", frames: np.ndarray,
                     mattes: list[np.ndarray | None], chins: np.ndarray, render_alpha: AlphaRenderer,
                     opts: PitchPassOptions | None = None, progress: Progress | None = None) -> PitchPassStats:
    """The neck-pitch offsets of frames ``frames`` (F,) of ``params`` (T frames, in ``camera``'s
    image) that their outlines call for (module doc; apply them with :func:`with_offsets`). mattes:
    F portrait mattes (H, W) float in [0, 1] of those frames in the camera's image, at any
    resolution (None: the frame keeps its pitch, offset 0); chins (F,) the chin's row in the
    camera's image (px; NaN: offset 0). Progress reports fractions of the pass and can cancel
    between frames (CancelledError)."""
    from ..head.params import HeadParams

    opts = opts or PitchPassOptions()
    progress = progress or Progress()
    deltas = [float(d) for d in opts.deltas_deg]
    if 0.0 not in deltas:
        deltas.append(0.0)
    k0 = deltas.index(0.0)
    frames = np.asarray(frames, np.int64).reshape(-1)
    if len(mattes) != len(frames) or len(chins) != len(frames):
        raise ValueError(f"silhouette_pitch: {len(frames)} frames, {len(mattes)} mattes, {len(chins)} chins")
    s = opts.work_px / float(max(camera.width, camera.height))
    w, h = max(1, round(camera.width * s)), max(1, round(camera.height * s))
    work = camera.resized(w, h)
    front = front_vertices(model, opts.front_share)
    taken = np.zeros(len(frames))
    iou0, iou1 = np.full(len(frames), np.nan), np.full(len(frames), np.nan)
    for n, (t, matte, chin) in enumerate(zip(frames, mattes, np.asarray(chins, np.float64))):
        progress.report(n / max(len(frames), 1), f"outline pass {n + 1}/{len(frames)}")
        if matte is None or not np.isfinite(chin):
            continue
        p = params.frame(int(t))
        ps = [pitched(model, p, camera, d, front) if d != 0.0 else p for d in deltas]
        tor = [np.zeros((1, 3), np.float32) if q.torso is None else q.torso for q in ps]
        both = HeadParams(p.shape, np.concatenate([q.expr for q in ps]), np.concatenate([q.pose for q in ps]),
                          np.concatenate([q.transl for q in ps]), np.concatenate(tor))
        alphas = np.asarray(render_alpha(both, work))
        m = _resized(matte, h, w)
        cr = chin * h / camera.height
        level = matched_level(alphas[k0], m, cr, opts.max_level)
        iou = np.array([outline_iou(a, m, cr, level) for a in alphas])
        if not np.isfinite(iou[k0]):
            continue
        best = int(np.nanargmax(iou))
        iou0[n] = iou[k0]
        if iou[best] < iou[k0] + opts.min_gain:
            best = k0
        iou1[n] = iou[best]
        # between the candidates: the parabola's peak through the best and its neighbours
        taken[n] = _vertex(deltas, iou, best) if best != k0 else 0.0
    progress.report(1.0, "outline pass done")
    return PitchPassStats(frames, taken, iou0, iou1)


def with_offsets(model: "HeadModel", params: "HeadParams", camera: "Camera", frames: np.ndarray,
                 offsets_deg: np.ndarray, front_share: float = PitchPassOptions.front_share) -> "HeadParams":
    """``params`` with frames ``frames`` (F,) pitched by ``offsets_deg`` (F,) each (``pitched``:
    the face and the body kept in place); the other frames as they were."""
    front = front_vertices(model, front_share)
    pose, transl = params.pose.copy(), params.transl.copy()
    torso = np.zeros_like(params.transl) if params.torso is None else params.torso.copy()
    for t, d in zip(np.asarray(frames, np.int64), np.asarray(offsets_deg, np.float64)):
        if d == 0.0:
            continue
        q = pitched(model, params.frame(int(t)), camera, float(d), front)
        pose[t], transl[t], torso[t] = q.pose[0], q.transl[0], q.torso[0]
    from ..head.params import HeadParams

    return HeadParams(params.shape, params.expr, pose, transl,
                      torso if params.torso is not None or np.any(torso) else None)


def keyframe_offsets(frames: np.ndarray, key_frames: np.ndarray, key_offsets: np.ndarray) -> np.ndarray:
    """(F,) offsets for ``frames`` from those taken at ``key_frames`` (K,): a three-keyframe median
    (one keyframe's outline misread by hair that swung does not pull its neighbours' frames), then
    linear between keyframes, held before the first and after the last."""
    k = np.asarray(key_offsets, np.float64)
    if len(k) >= 3:
        padded = np.concatenate([k[:1], k, k[-1:]])
        k = np.median(np.stack([padded[:-2], padded[1:-1], padded[2:]]), axis=0)
    return np.interp(np.asarray(frames, np.float64), np.asarray(key_frames, np.float64), k)
