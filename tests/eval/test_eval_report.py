"""Report assembly from hand-made results: means ignore unmeasurable (NaN) frames and count them,
tables and plots are written, the speed-only mode works on a saved avatar."""

from __future__ import annotations

import math

import pytest

from backend.eval.report import fmt, render_markdown, write_report
from backend.eval.results import (CrossFrame, CrossReenactment, EvalResults, FrameScores, ImageScores,
                                  RenderTiming, SelfReenactment, summary)

NAN = float("nan")


def _results() -> EvalResults:
    res = EvalResults(machine={"one_line": "test CPU (2 cores)", "cpu_model": "test CPU", "usable_cores": 2},
                      media_root="/media", options={"lods": (2,)})
    run = SelfReenactment(video="clip.mp4", lod=2, every=5)
    run.frames = [FrameScores(5, ImageScores(20.0, 18.0, 0.8, 0.7, 0.9, 2.0)),
                  FrameScores(10, ImageScores(22.0, 20.0, 0.9, 0.8, NAN, NAN))]
    res.self_reenactment = [run]
    res.cross_reenactment = [CrossReenactment("a.jpg", "clip.mp4", 2,
                                              [CrossFrame(0, 0.9, 3.0, 4.0), CrossFrame(5, NAN, NAN, NAN)])]
    res.render_timing = [RenderTiming(2, "cpu", 1000, 512, 512, 4, 2.0, 100.0, None, 0.5)]
    res.skipped = ["video bad.mp4: InputError: no face found"]
    return res


def test_fmt():
    assert fmt(NAN) == "n/a" and fmt(None) == "n/a" and fmt(math.inf) == "inf" and fmt(1.23456, 3) == "1.235"


def test_summary_ignores_and_counts_nan():
    res = _results()
    s = summary(res)["lod2"]
    assert s["self_reenactment"]["psnr_full"] == pytest.approx(19.0)
    assert s["self_reenactment"]["akd"] == pytest.approx(2.0)  # the NaN frame is left out of the mean
    assert res.self_reenactment[0].missing("akd") == 1
    assert s["cross_reenactment"]["pose_distance_deg"] == pytest.approx(4.0)
    assert res.render_timing[0].fps == pytest.approx(2.0)


def test_markdown_tables(tmp_path):
    res = _results()
    md = render_markdown(res, {}, "python -m backend eval")
    assert "| ours, LOD2 | 19.00 | 0.750 | 2.000 | 0.900 | 21.00 | 0.850 |" in md
    assert "| paper, VFHQ, LOD 2 | 22.72 | 0.831 | 2.045 |" in md
    assert "| clip.mp4 | 2 | 2 |" in md and "| 1 |" in md  # one frame without landmarks
    assert "## 1. Source-view reconstruction\n\n(not run)" in md
    assert "- video bad.mp4: InputError: no face found" in md
    path = write_report(res, tmp_path, "python -m backend eval")
    assert path.read_text().count("![") == 3  # self, cross and speed plots (no reconstruction)
    assert sorted(p.name for p in tmp_path.glob("*.png")) == ["cross_reenactment.png", "self_reenactment.png",
                                                            "speed.png"]


def test_whole_portrait_headline_beside_a_baseline():
    res = _results()
    run = res.self_reenactment[0]
    run.frames[0].scores.alpha_iou, run.frames[1].scores.alpha_iou = 0.9, 0.8
    run.frames[1].scores.mouth_psnr = 17.5                  # only frame 10 had its mouth open
    s = summary(res)["lod2"]["self_reenactment"]
    assert s["alpha_iou"] == pytest.approx(0.85) and s["mouth_psnr"] == pytest.approx(17.5)
    assert s["mouth_frames"] == 1
    base = {"lod2": {"self_reenactment": {"psnr_full": 17.25, "alpha_iou": 0.7}}, "_label": "commit abc"}
    md = render_markdown(res, {}, "python -m backend eval", baseline=base)
    assert "*before* = commit abc." in md
    assert "| self-reenactment PSNR full | 17.25 | 19.00 |" in md
    assert "| self-reenactment alpha IoU | 0.700 | 0.850 |" in md
    assert "| self-reenactment mouth PSNR (open-mouth frames) | n/a | 17.50 |" in md


def test_speed_only_on_saved_avatar(tmp_path):
    import json

    from skimage import data

    from backend.avatar.build import BuildOptions, build_avatar
    from backend.avatar.fileformat import save_avatar
    from backend.cli import main

    built = build_avatar(data.astronaut(), BuildOptions(lods=(0,), refine=False, metrics=False))
    path = save_avatar(built.avatar, tmp_path / "a.omgavatar")
    out = tmp_path / "speed"
    rc = main(["eval", "--avatar", str(path), "--lods", "0,1", "--render-frames", "1",
               "--render-backends", "cpu", "--out", str(out), "--json", str(out / "f.json")])
    assert rc == 0
    figs = json.loads((out / "f.json").read_text())
    (rt,) = figs["render_timing"]
    assert rt["lod"] == 0 and rt["backend"] == "cpu" and rt["fps"] > 0 and rt["pose_seconds"] > 0
    assert figs["skipped"] == ["LOD 1: not in a.omgavatar (it has [0])"]
    md = (out / "README.md").read_text()
    assert "## 1." not in md and "| 0 | cpu |" in md


def test_results_json_round_trip(tmp_path):
    import json

    from backend.cli import main
    from backend.eval.results import results_from_dict
    from backend.stats import write_json

    res = _results()
    write_json(tmp_path / "f.json", res.as_dict())
    back = results_from_dict(json.loads((tmp_path / "f.json").read_text()))
    assert math.isnan(back.self_reenactment[0].frames[1].scores.akd)  # null -> NaN
    assert str(summary(back)) == str(summary(res))  # str: NaN == NaN
    assert render_markdown(back, {}, "x") == render_markdown(res, {}, "x")
    rc = main(["eval", "--from-json", str(tmp_path / "f.json"), "--out", str(tmp_path / "re")])
    assert rc == 0 and "| ours, LOD2 | 19.00 |" in (tmp_path / "re" / "README.md").read_text()
