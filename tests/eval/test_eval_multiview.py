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


def _target(h=40, w=40):
    """A Target with a face hull in rows 5..14, the person (hull, hair above the chin at row 15,
    body below it) in columns 10..29, black background, the last 4 columns padding."""
    import numpy as np

    from backend.eval.protocols.scoring import Target

    img = np.zeros((h, w, 3), np.float32)
    portrait = np.zeros((h, w), np.float32)
    portrait[:, 10:30] = 1.0
    img[:, 10:30] = 0.5
    face = np.zeros((h, w), bool)
    face[5:15, 12:28] = True
    lm = np.array([[12.0, 5.0, 0.0], [27.0, 14.0, 0.0]])  # the lowest landmark: the chin at row 14
    valid = np.ones((h, w), bool)
    valid[:, -4:] = False
    return Target(image=img, full=img.copy(), portrait=portrait, landmarks=lm, face_mask=face,
                  embedding=None, valid=valid)


def test_region_scores_put_each_error_in_its_region():
    """The self-reenactment breakdown's regions (error_split), with the PSNR inside each."""
    import numpy as np

    from backend.eval.metrics.portrait import ERROR_REGIONS
    from backend.eval.protocols.multiview import region_scores
    from backend.image_metrics import psnr

    tgt = _target()
    render, alpha = tgt.full.copy(), tgt.portrait.copy()
    render[8, 20] += 0.1          # face: one pixel off by 0.1
    render[2, 11] += 0.2          # head (above the chin, outside the hull)
    render[30, 25] -= 0.3         # body
    render[20, 3] = 0.4           # silhouette: the render's person where the target is background ...
    alpha[20, 3] = 1.0
    render[20, 38] = 1.0          # ... and outside the real pixels: not counted anywhere
    alpha[20, 38] = 1.0
    render[35, 0] = 0.05          # background: a faint render where neither shows the person
    s = region_scores(render, alpha, tgt)
    sq = {"background": 0.0025, "silhouette": 0.16, "face": 0.01, "head": 0.04, "body": 0.09}
    total = sum(sq.values())
    for name in ERROR_REGIONS:
        assert abs(s[f"share_{name}"] - sq[name] / total) < 1e-5, (name, s)
    assert abs(s["psnr_full"] - psnr(render, tgt.full, tgt.valid)) < 1e-9
    n_face = int(tgt.face_mask.sum())
    assert abs(s["psnr_face"] - 10 * np.log10(n_face / 0.01)) < 1e-3
    n_head = int(((tgt.portrait > 0.5) & ~tgt.face_mask & (np.arange(40) + 0.5 < 14)[:, None] & tgt.valid).sum())
    assert abs(s["psnr_head"] - 10 * np.log10(n_head / 0.04)) < 1e-3
    assert abs(s["psnr_silhouette"] - 10 * np.log10(1 / 0.16)) < 1e-3   # the one silhouette pixel


def test_region_scores_of_a_perfect_render():
    import numpy as np

    from backend.eval.protocols.multiview import region_scores

    tgt = _target()
    s = region_scores(tgt.full.copy(), tgt.portrait.copy(), tgt)
    assert np.isnan(s["psnr_silhouette"])                            # no silhouette pixels
    assert s["psnr_face"] == float("inf") and np.isnan(s["share_face"])  # no error at all


def test_view_frames_reads_the_build_labels():
    from backend.eval.protocols.multiview import view_frames

    labels = ["d3.mp4 frame 0", "d3.mp4 frame 42", "other.mp4 frame 7", "a.jpg", "my clip.mp4 frame 5"]
    assert view_frames(labels, "d3.mp4") == [0, 42]
    assert view_frames(labels, "my clip.mp4") == [5]


def _split(psnr_full, share_head):
    return {"psnr_full": psnr_full, "psnr_background": 40.0, "psnr_silhouette": 10.0, "psnr_face": 30.0,
            "psnr_head": 20.0, "psnr_body": 18.0, "share_background": 0.05, "share_silhouette": 0.55 - share_head,
            "share_face": 0.1, "share_head": share_head, "share_body": 0.3}


def test_breakdown_summary_by_set_and_turned_frames():
    from backend.eval.results import TURNED_DEG, multiview_breakdown

    def frame(i, kind, yaw, m, s, lod=2):
        return {"frame": i, "set": kind, "lod": lod, "yaw_deg": yaw, "multi": _split(m, 0.4), "single": _split(s, 0.5)}

    entries = [{"video": "a.mp4", "frames": [frame(0, "source", 0.0, 30.0, 29.0), frame(60, "held", 2.0, 22.0, 21.0),
                                              frame(70, "held", -TURNED_DEG - 1, 20.0, 18.0),
                                              frame(12, "train", 25.0, 24.0, 22.0), frame(60, "held", 2.0, 5.0, 5.0, lod=0)]},
               {"video": "b.mp4", "frames": [frame(80, "held", TURNED_DEG + 5, 18.0, 17.0)]}]
    b = multiview_breakdown(entries, 2)
    assert b["held"]["frames"] == 3 and b["turned"]["frames"] == 2 and b["train"]["frames"] == 1
    assert math.isclose(b["held"]["multi"]["psnr_full"], 20.0) and math.isclose(b["held"]["single"]["psnr_full"], 56 / 3)
    assert math.isclose(b["turned"]["multi"]["psnr_full"], 19.0) and math.isclose(b["turned"]["single"]["psnr_full"], 17.5)
    assert math.isclose(b["train"]["multi"]["psnr_full"], 24.0) and math.isclose(b["source"]["single"]["psnr_full"], 29.0)
    assert math.isclose(b["held"]["single"]["share_head"], 0.5)
    assert multiview_breakdown(entries, 1) == {}
    res = EvalResults(machine={}, media_root=None, options={})
    res.multiview = [_run("a.mp4", [22.0], [0.9])]
    res.multiview_single = [_run("a.mp4", [21.0], [0.88])]
    res.multiview_breakdown = entries
    s = summary(res)["lod2"]
    assert s["multiview_breakdown"] == b
    back = results_from_dict(json.loads(json.dumps(res.as_dict())))
    assert summary(back)["lod2"]["multiview_breakdown"] == b


def test_the_protocol_warms_the_kernels_once_before_its_timed_builds(monkeypatch):
    """Both builds refine within a time budget: the first would spend it compiling the kernels (in
    a fresh clone the single-photo build took 70 s, not 13 s, and refined less). The warm-up is a
    real build, once per process."""
    import backend.avatar.build as build_mod
    import backend.eval.protocols.multiview as mv
    from skimage.data import astronaut

    monkeypatch.setattr(mv, "_WARMED", False)
    calls = []
    real = build_mod.build_avatar

    def counted(*a, **k):
        calls.append(k.get("options", a[1] if len(a) > 1 else None))
        return real(*a, **k)

    monkeypatch.setattr(build_mod, "build_avatar", counted)
    mv.warm_up_kernels(astronaut(), (0,))
    mv.warm_up_kernels(astronaut(), (0,))
    assert len(calls) == 1
    opts = calls[0]
    assert opts.refine is True and opts.refine_steps == 2 and tuple(opts.lods) == (0,)
