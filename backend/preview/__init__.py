"""Reenactment previews: an avatar's animation (a track or per-frame HeadParams) rendered with the
splatter (gsplat on CUDA, our CPU splatter elsewhere), optionally through the learned refiner, into
watermarked PNG frames and an mp4, with the achieved frames per second.

Public API (the CLI and the Blender add-on call these; the animation itself comes from
backend.motion: load_motion, resample):
    PreviewOptions, PreviewRenderer(avatar, model, options)       (renderer.py)
    render_preview(avatar, params, out_dir, options, fps, ...) -> PreviewResult
Tracking a frame range is backend.face.track_video(path, model, options, progress, start, end).
"""

from __future__ import annotations

from .output import FrameWriter
from .renderer import PreviewOptions, PreviewRenderer, PreviewResult, render_preview

__all__ = ["FrameWriter", "PreviewOptions", "PreviewRenderer", "PreviewResult", "render_preview"]

