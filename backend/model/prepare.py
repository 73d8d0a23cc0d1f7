"""Videos -> training dataset (data.py format) with our own face tracker.

Per clip: ``face.track_video`` gives per-frame head-model parameters, one fixed 512 crop and its
source camera; a second pass cuts every frame with that crop and segments the portrait mask
(mediapipe selfie segmentation). Frames where no face was found are dropped (their parameters are
only interpolated).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from ..head.model import HeadModel
from ..head.params import HeadParams
from ..progress import Progress
from .data import DatasetWriter

VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".gif"}
IMAGE_EXTS = {".png", ".jpg", ".jpeg"}


def find_clips(root: str | Path) -> list[Path]:
    """Video files in ``root`` (or ``root`` itself), and sub-folders holding image sequences."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InputError(root, "no such file or folder")
    clips = [p for p in sorted(root.iterdir()) if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
    clips += [p for p in sorted(root.iterdir())
              if p.is_dir() and any(q.suffix.lower() in IMAGE_EXTS for q in p.iterdir())]
    if not clips:
        raise InputError(root, "no videos (or image-sequence folders) found")
    return clips


def prepare_dataset(videos: str | Path, out: str | Path, model: HeadModel, head_model_path: str | None = None,
                    track_options=None, frame_ext: str = "jpg", min_confidence: float = 0.3,
                    progress: Progress | None = None) -> dict:
    """Track, crop and mask every clip; write ``out`` (dataset.json + one folder per clip).

    Returns {"clips": n, "frames": n, "dropped": n, "per_clip": {name: frames}}."""
    from ..face.crop import apply_crop
    from ..face.mediapipe_face import MediapipeFace
    from ..face.track import track_video
    from ..face.video import iter_video

    progress = progress or Progress()
    clips = find_clips(videos)
    writer = DatasetWriter(out, 512, model.name, head_model_path, model.n_verts)
    summary = {"clips": 0, "frames": 0, "dropped": 0, "per_clip": {}, "skipped": {}}
    seg = MediapipeFace(static=False)
    try:
        for i, path in enumerate(clips):
            base = i / len(clips)
            sub = Progress(lambda f, m, b=base: progress.report(b + f / len(clips) * 0.8, f"{path.name}: {m}"),
                           progress.should_cancel)
            try:
                track = track_video(path, model, track_options, sub)
            except InputError as exc:
                summary["skipped"][path.name] = str(exc)
                continue
            keep = np.flatnonzero(track.has_face & (track.confidence >= min_confidence))
            if len(keep) < 2:
                summary["skipped"][path.name] = "fewer than two well-tracked frames"
                continue
            keep_set = set(keep.tolist())
            frames, masks = [], []
            for t, rgb in enumerate(iter_video(path)):
                progress.check_cancel()
                if t in keep_set:
                    img = apply_crop(rgb, track.crop)
                    frames.append(img)
                    masks.append(seg.segment(img))
            keep = keep[: len(frames)]  # the decoder may yield fewer frames than the estimate
            p = track.params
            params = HeadParams(p.shape, p.expr[keep], p.pose[keep], p.transl[keep])
            name = f"{i:03d}_{path.stem}"
            writer.add_clip(name, frames, masks, params, [track.camera] * len(keep), track.fps, frame_ext)
            summary["clips"] += 1
            summary["frames"] += len(keep)
            summary["dropped"] += track.n_frames - len(keep)
            summary["per_clip"][name] = len(keep)
            progress.report((i + 1) / len(clips), f"{path.name}: {len(keep)} frames written")
    finally:
        seg.close()
    if summary["clips"] == 0:
        raise InputError(videos, f"no usable clip ({summary['skipped']})")
    writer.close()
    return summary
