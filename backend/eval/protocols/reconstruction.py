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
from ..measure import measure
from ...avatar.rendering import render_frames
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


COVERAGE_MAX_SIDE = 1024  # the photo is segmented at most this large (the segmenter runs at 256)


def photo_crop_coverage(observation, segmenter) -> float:
    """Share of the photo's head-and-hair region (face/framing.py) inside the build's crop, from a
    portrait mask of the whole photo (its own alpha channel when it has one)."""
    from ...face.framing import crop_coverage, head_region
    from ...face.image import downscale

    src = observation.source
    if src is None:
        return float("nan")
    rgb, s = downscale(src.rgb, COVERAGE_MAX_SIDE)
    if src.alpha is not None:
        import cv2

        alpha = np.asarray(src.alpha, np.float32)
        mask = cv2.resize(alpha, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_AREA) if s != 1 else alpha
    else:
        mask = segmenter.coarse(rgb)  # the mask the build's framing fits the crop to
    lm = observation.crop.to_source(observation.landmarks) * s
    return crop_coverage(head_region(mask, lm), observation.crop, region_scale=s)


def evaluate_photo(photo: str | Path | np.ndarray, scorer: FrameScorer, opts: ReconstructionOptions,
                   name: str | None = None, progress: Progress | None = None) -> ReconstructionOutput:
    """Build an avatar from ``photo`` and score its source-view renders per LOD."""
    from ...avatar.build import build_avatar

    name = name or (Path(photo).name if not isinstance(photo, np.ndarray) else "array")
    with measure() as m:
        result = build_avatar(photo, build_options(opts.lods, opts.build), progress or Progress())
    timing = BuildTiming(photo=name, seconds=dict(result.seconds), peak_rss_mb=m.peak_rss_mb)
    from ...face.crop import source_coverage

    # Where the crop reaches past the photo's edges it holds padding, not picture: score only real
    # pixels, as self-reenactment does (the *_padded figures keep the whole-crop definition).
    target = scorer.target(result.observation.image512, valid=source_coverage(result.observation.crop))
    avatar, model = result.avatar, result.model
    rows = []
    coverage = photo_crop_coverage(result.observation, scorer.segmenter)
    for lod in opts.lods:
        render, alpha = next(render_frames(avatar, model, avatar.params, lod, background=opts.background,
                                           backend=opts.render_backend, with_alpha=True))
        rows.append(ReconstructionRow(photo=name, lod=lod, n_gaussians=avatar.counts()[lod]["total"],
                                      scores=scorer.score(render, target, alpha=alpha), crop_coverage=coverage))
    return ReconstructionOutput(rows=rows, timing=timing, build=result, target=target)
