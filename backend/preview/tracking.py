"""Track a frame range of a clip (the Blender operator's frame_start / frame_end).

backend.face.track_video tracks a whole clip; for a range this streams only frames
[start, end] through the same steps (face-mesh landmarks in tracking mode, one fixed crop,
backend.face.track.track_landmarks), and stops decoding after ``end``.
Adapter over the face package's public pieces: the whole-clip path is track_video itself.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..progress import Progress


def track_clip(path: str | Path, model=None, options=None, start: int = 0, end: int | None = None,
               progress: Progress | None = None):
    """Track frames ``start..end`` (0-based, inclusive; end None = to the last frame) of a clip.

    Returns a backend.face.track.Track of ``end - start + 1`` frames (fewer when the clip is
    shorter). Raises InputError for unreadable clips, empty ranges and ranges without a face.
    """
    from ..face.track import Track, TrackOptions, track_video
    from ..ffmpeg import ensure_ffmpeg

    if not Path(path).is_dir():
        ensure_ffmpeg()  # videos are decoded by imageio-ffmpeg's bundled binary
    opts = options or TrackOptions()
    progress = progress or Progress()
    if start < 0 or (end is not None and end < start):
        raise InputError(path, f"empty frame range {start}..{end}")
    if start == 0 and end is None:
        return track_video(path, model, opts, progress)

    from ..face.crop import CROP_SIZE, CropInfo, crop_from_landmarks, source_camera
    from ..face.image import downscale
    from ..face.mediapipe_face import MediapipeFace
    from ..face.track import track_landmarks
    from ..face.video import iter_video
    from ..head.loader import load_head_model

    t0 = time.perf_counter()
    model = load_head_model(None) if model is None else model
    path = Path(path)
    reader = iter_video(path, opts.sequence_fps)
    stop = (reader.n_frames - 1 if reader.n_frames else start) if end is None else end
    n_est = max(stop - start + 1, 1)
    lms: list[np.ndarray | None] = []
    progress.report(0.0, "reading video")
    with MediapipeFace(static=False) as mp:
        for i, frame in enumerate(reader):
            if i < start:
                continue
            if end is not None and i > end:
                break  # closes the decoder: the rest of the clip is never read
            small, s = downscale(frame, opts.max_side)
            lm = mp.landmarks(small)
            lms.append(None if lm is None else lm[:, :2] / s)
            if len(lms) % 4 == 0:
                progress.report(0.8 * min(len(lms) / n_est, 1.0), f"landmarks {len(lms)}/{n_est}")
    if not lms:
        raise InputError(path, f"the clip has no frames in the range {start}..{end}")
    has_face = np.array([lm is not None for lm in lms])
    if not has_face.any():
        raise InputError(path, f"no face found in frames {start}..{start + len(lms) - 1}")
    # one fixed crop for the range: the median of the per-frame crops (as track_video does)
    crops = np.array([crop_from_landmarks(lm, reader.size).as_array() for lm in lms if lm is not None])
    med = np.median(crops[:, :3], axis=0).round().astype(int)
    crop = CropInfo(int(med[0]), int(med[1]), int(med[2]), CROP_SIZE, (int(reader.size[0]), int(reader.size[1])))
    camera = source_camera(CROP_SIZE)
    lm_crop = np.full((len(lms), 478, 2), np.nan, np.float32)
    for t, lm in enumerate(lms):
        if lm is not None:
            lm_crop[t] = crop.to_crop(lm)
    params, conf, _ = track_landmarks(model, lm_crop, has_face, camera, reader.fps, opts, progress)
    progress.report(1.0, "done")
    return Track(params=params, fps=reader.fps, confidence=conf, has_face=has_face, landmarks=lm_crop,
                 camera=camera, crop=crop, model=model.name, expr_names=list(model.expr_names),
                 source=f"{path.name}[{start}:{start + len(lms)}]", smoothing=opts.smoothing,
                 seconds=time.perf_counter() - t0)
