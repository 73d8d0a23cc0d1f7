"""Protocol 1: source-view reconstruction of a photo.

build (timed per stage, peak memory) -> render each LOD at the source camera and pose ->
PSNR / SSIM in the face mask and on the full (portrait-matted) crop, identity similarity, AKD,
all against the 512x512 crop the build saw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...progress import Progress
from ..results import BuildTiming, ReconstructionRow
from ..speed import measure
from .rendering import render_frames
from .scoring import FrameScorer, Target


@dataclass
class ReconstructionOptions:
    lods: tuple[int, ...] = (0, 1, 2)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)  # the build's refinement background
    render_backend: str = "auto"
    build: dict[str, Any] = field(default_factory=dict)       # BuildOptions overrides


@dataclass
class ReconstructionOutput:
    rows: list[ReconstructionRow]
    timing: BuildTiming
    build: Any          # backend.avatar.build.BuildResult (avatar, model, observation, ...)
    target: Target      # the scored source crop (reused by the other protocols)


def build_options(lods, overrides: dict[str, Any]):
    from ...avatar.build import BuildOptions

    return BuildOptions(lods=tuple(lods), **overrides)


def evaluate_photo(photo: str | Path | np.ndarray, scorer: FrameScorer, opts: ReconstructionOptions,
                   name: str | None = None, progress: Progress | None = None) -> ReconstructionOutput:
    """Build an avatar from ``photo`` and score its source-view renders per LOD."""
    from ...avatar.build import build_avatar

    name = name or (Path(photo).name if not isinstance(photo, np.ndarray) else "array")
    with measure() as m:
        result = build_avatar(photo, build_options(opts.lods, opts.build), progress or Progress())
    timing = BuildTiming(photo=name, seconds=dict(result.seconds), peak_rss_mb=m.peak_rss_mb)
    target = scorer.target(result.observation.image512)
    avatar, model = result.avatar, result.model
    rows = []
    for lod in opts.lods:
        render = next(render_frames(avatar, model, avatar.params, lod, background=opts.background,
                                    backend=opts.render_backend))
        rows.append(ReconstructionRow(photo=name, lod=lod, n_gaussians=avatar.counts()[lod]["total"],
                                      scores=scorer.score(render, target)))
    return ReconstructionOutput(rows=rows, timing=timing, build=result, target=target)
