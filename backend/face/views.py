"""Several views of one head: scan a clip or a set of photos, pick the views that cover the head.

A multi-view build (avatar/multiview.py) needs a handful of frames that see the head from as many
sides as the input offers. ``scan_clip`` streams a clip once through mediapipe's face mesh and
keeps, per frame, the head's yaw and pitch (closed-form PnP of the neutral head model against the
landmarks, fit.pnp_init) and a sharpness score (variance of the Laplacian inside the face box, so
motion-blurred frames lose); ``select_views`` then picks N of them by farthest-point sampling in
(yaw, pitch), starting from the most frontal sharp frame. ``load_frames`` decodes only the chosen
frames in a second pass, so memory stays at one frame plus the chosen ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import Progress

# A frame whose sharpness is below this fraction of the clip's median is not picked (blur).
MIN_RELATIVE_SHARPNESS = 0.5
# Views closer than this in (yaw, pitch) show nothing new (landmark jitter alone moves a still
# frame's estimate by up to about a degree).
MIN_VIEW_SEPARATION_DEG = 2.0


@dataclass
class ViewCandidate:
    """One frame (or photo) that shows a face.

    index: frame index in the clip (or position in the photo list); yaw_deg / pitch_deg: head
    rotation relative to the camera in degrees (yaw + = the head turned towards the image's left,
    pitch + = chin up); sharpness: variance of the Laplacian of the grey face box (grey levels^2).
    """

    index: int
    yaw_deg: float
    pitch_deg: float
    sharpness: float


@dataclass
class ClipScan:
    """What one pass over a clip found: ``candidates`` (frames with a face, in order), the number
    of frames decoded, the clip's fps and the scanned range (start, end inclusive)."""

    path: Path
    candidates: list[ViewCandidate]
    n_frames: int
    fps: float
    start: int
    end: int


def head_angles(landmarks_crop: np.ndarray, model, camera) -> tuple[float, float]:
    """(yaw, pitch) in degrees of a face whose (478, 2) landmarks are in ``camera``'s crop pixels,
    from the neutral head model's closed-form PnP pose (fit.pnp_init)."""
    from .fit import landmark_weights, pnp_init
    from .solver import Projector
    from ..rotations import axis_angle_to_matrix

    lmm = _landmark_model(model)
    proj = Projector(camera.K, camera.viewmat)
    w = landmark_weights(lmm, 0.5, 0.0)
    aa, _ = pnp_init(lmm, proj, np.asarray(landmarks_crop, np.float64)[:, :2], w)
    R = axis_angle_to_matrix(np.asarray(aa, np.float64))
    # the head's forward axis (+Z of the model) in the model/world frame the camera looks along -Z
    fwd = R @ np.array([0.0, 0.0, 1.0])
    yaw = np.degrees(np.arctan2(fwd[0], fwd[2]))
    pitch = np.degrees(np.arcsin(np.clip(-fwd[1], -1.0, 1.0)))
    return float(yaw), float(pitch)


def _landmark_model(model):
    from .landmark_model import LandmarkModel

    return LandmarkModel.from_model(model, 0, 0)  # cached on the model


def sharpness(rgb: np.ndarray, landmarks: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image inside the landmarks' bounding box."""
    from scipy.ndimage import laplace

    h, w = rgb.shape[:2]
    x0, y0 = np.floor(np.nanmin(landmarks[:, :2], axis=0)).astype(int)
    x1, y1 = np.ceil(np.nanmax(landmarks[:, :2], axis=0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x1 - x0 < 8 or y1 - y0 < 8:
        return 0.0
    grey = rgb[y0:y1, x0:x1].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return float(laplace(grey).var())


def parse_range(text: str | None) -> tuple[int, int | None]:
    """``--views-from A:B`` -> (start, end inclusive or None). Empty sides mean the clip's ends."""
    if not text:
        return 0, None
    if ":" not in text:
        raise ValueError(f"--views-from expects A:B (frame indices), got {text!r}")
    a, b = text.split(":", 1)
    try:
        start = int(a) if a.strip() else 0
        end = int(b) if b.strip() else None
    except ValueError:
        raise ValueError(f"--views-from expects integer frame indices, got {text!r}") from None
    if start < 0 or (end is not None and end < start):
        raise ValueError(f"--views-from {text!r} is an empty range")
    return start, end


def scan_clip(path: str | Path, model, start: int = 0, end: int | None = None, max_side: int = 1280,
              progress: Progress | None = None) -> ClipScan:
    """One streamed pass over frames ``start..end`` (inclusive) of a clip: face, pose and sharpness
    of every frame. InputError naming the clip when it cannot be read or no frame shows a face."""
    from .crop import crop_from_landmarks, source_camera
    from .image import downscale
    from .mediapipe_face import MediapipeFace
    from .video import iter_video

    progress = progress or Progress()
    path = Path(path)
    reader = iter_video(path)
    camera = source_camera()
    stop = (reader.n_frames - 1 if reader.n_frames else start) if end is None else end
    n_est = max(stop - start + 1, 1)
    cands: list[ViewCandidate] = []
    n = 0
    with MediapipeFace(static=False) as mp:
        for i, frame in enumerate(reader):
            if i < start:
                continue
            if end is not None and i > end:
                break
            n += 1
            small, s = downscale(frame, max_side)
            lm = mp.landmarks(small)
            if lm is not None:
                lm_src = lm[:, :2] / s
                crop = crop_from_landmarks(lm_src, reader.size)
                yaw, pitch = head_angles(crop.to_crop(lm_src), model, camera)
                cands.append(ViewCandidate(i, yaw, pitch, sharpness(small, lm[:, :2])))
            if n % 8 == 1:
                progress.report(min(n / n_est, 1.0), f"scanning frame {n}/{n_est}")
    if n == 0:
        raise InputError(path, "the clip has no frames" if start == 0 and end is None
                         else f"the clip has no frames in the range {start}..{end}")
    if not cands:
        raise InputError(path, f"no face found in any of the {n} frames scanned")
    return ClipScan(path, cands, n, reader.fps, start, start + n - 1)


def select_views(cands: list[ViewCandidate], n: int, anchor: int | None = None) -> list[ViewCandidate]:
    """Up to ``n`` candidates that spread over the poses: drop blurred frames (sharpness below
    MIN_RELATIVE_SHARPNESS x median), start at the most frontal one (or at frame ``anchor`` when
    it is a candidate: kept even if blurred), then repeatedly add the frame farthest in (yaw,
    pitch) from those already chosen (ties: the sharper) while it is at least
    MIN_VIEW_SEPARATION_DEG away. Sorted by index."""
    if n < 1:
        raise ValueError("the number of views must be at least 1")
    if not cands:
        return []
    sharp = np.array([c.sharpness for c in cands])
    keep = [c for c, s in zip(cands, sharp)
            if s >= MIN_RELATIVE_SHARPNESS * np.median(sharp) or c.index == anchor] or list(cands)
    ang = np.array([[c.yaw_deg, c.pitch_deg] for c in keep])
    sh = np.array([c.sharpness for c in keep])
    first = int(np.argmin(np.hypot(ang[:, 0], ang[:, 1]) - 1e-9 * sh))
    first = next((i for i, c in enumerate(keep) if c.index == anchor), first)
    chosen = [first]
    dist = np.hypot(*(ang - ang[first]).T)
    while len(chosen) < min(n, len(keep)):
        score = dist + 1e-9 * sh / max(sh.max(), 1e-12)
        score[chosen] = -1.0
        nxt = int(np.argmax(score))
        if dist[nxt] < MIN_VIEW_SEPARATION_DEG:  # the rest repeat poses already chosen
            break
        chosen.append(nxt)
        dist = np.minimum(dist, np.hypot(*(ang - ang[nxt]).T))
    return sorted((keep[i] for i in chosen), key=lambda c: c.index)


def load_frames(path: str | Path, indices: list[int]) -> dict[int, np.ndarray]:
    """Decode the frames ``indices`` of a clip (a second streamed pass that stops after the last)."""
    from .video import iter_video

    want = set(int(i) for i in indices)
    last = max(want)
    out: dict[int, np.ndarray] = {}
    for i, frame in enumerate(iter_video(path)):
        if i in want:
            out[i] = frame
        if i >= last:
            break
    missing = want - set(out)
    if missing:
        raise InputError(path, f"frames {sorted(missing)[:5]} could not be decoded on the second pass")
    return out
