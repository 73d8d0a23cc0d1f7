"""The multiview protocol's bookkeeping (issue 17): held-out and source frames, the summary block."""

from __future__ import annotations

import json
import math

from backend.eval.protocols.multiview import MULTIVIEW_BUILD_SHARE, held_out_indices, multiview_frames
from backend.eval.results import (EvalResults, FrameScores, ImageScores, SelfReenactment, results_from_dict,
                                  summary)


def test_held_out_frames_follow_the_build_share():
    idx = held_out_indices(100, 10)
    assert idx == [60, 70, 80, 90]
    assert MULTIVIEW_BUILD_SHARE == 0.6
    assert held_out_indices(5, 1) == [3, 4]


def test_the_source_frame_is_scored_beside_the_held_out_frames():
    assert multiview_frames(100, 10) == [0, 60, 70, 80, 90]
    assert multiview_frames(5, 1) == [0, 3, 4]


def _run(video, psnr, alpha, first=60):
    frames = [FrameScores(first + i, ImageScores(30.0, p, 0.9, 0.8, akd=2.0, alpha_iou=a, psnr_portrait=p - 3,
                                                 psnr_full_padded=p + 1, ssim_full_padded=0.85, alpha_iou_padded=a))
              for i, (p, a) in enumerate(zip(psnr, alpha))]
    return SelfReenactment(video, 2, 5, frames)


def test_summary_puts_multiview_beside_single_and_round_trips():
    res = EvalResults(machine={}, media_root=None, options={})
    res.multiview = [_run("a.mp4", [24.0, 26.0], [0.9, 0.94]), _run("b.mp4", [22.0], [0.92])]
    res.multiview_single = [_run("a.mp4", [21.0, 23.0], [0.88, 0.9]), _run("b.mp4", [20.0], [0.9])]
    res.multiview_source = [_run("a.mp4", [27.0], [0.95], first=0), _run("b.mp4", [25.0], [0.93], first=0)]
    res.multiview_source_single = [_run("a.mp4", [28.0], [0.96], first=0), _run("b.mp4", [26.0], [0.91], first=0)]
    res.multiview_seconds = [{"video": "a.mp4", "views": 8, "multi_build_s": 30.0, "single_build_s": 10.0}]
    mv = summary(res)["lod2"]["multiview"]
    assert math.isclose(mv["psnr_full"], 24.0) and math.isclose(mv["psnr_full_single"], 64.0 / 3)
    assert math.isclose(mv["alpha_iou"], 0.92) and mv["frames"] == 3
    # the source frame is its own mean, not mixed into the held-out one
    assert math.isclose(mv["psnr_full_source"], 26.0) and math.isclose(mv["psnr_full_source_single"], 27.0)
    assert math.isclose(mv["alpha_iou_source"], 0.94) and math.isclose(mv["alpha_iou_source_single"], 0.935)
    assert math.isclose(mv["psnr_portrait_source"], 23.0) and mv["source_frames"] == 2
    # the whole-crop figures (padding included) beside the real-pixel ones
    assert math.isclose(mv["psnr_full_padded"], 25.0) and math.isclose(mv["psnr_full_padded_single"], 67.0 / 3)
    assert math.isclose(mv["ssim_full_padded_source"], 0.85)
    back = results_from_dict(json.loads(json.dumps(res.as_dict())))
    assert summary(back)["lod2"]["multiview"] == mv
    assert back.multiview_seconds == res.multiview_seconds
    assert [f.frame for r in back.multiview_source for f in r.frames] == [0, 0]


def test_source_scores_are_nan_when_no_source_frame_was_scored():
    res = EvalResults(machine={}, media_root=None, options={})
    res.multiview = [_run("a.mp4", [24.0], [0.9])]
    res.multiview_single = [_run("a.mp4", [21.0], [0.88])]
    mv = summary(res)["lod2"]["multiview"]
    assert math.isnan(mv["psnr_full_source"]) and mv["source_frames"] == 0


def test_no_multiview_block_without_the_protocol():
    res = EvalResults(machine={}, media_root=None, options={})
    res.self_reenactment = [_run("a.mp4", [20.0], [0.9])]
    assert "multiview" not in summary(res)["lod2"]
