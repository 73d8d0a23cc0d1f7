"""The protocols end to end on tiny inputs made here: scikit-image's astronaut photo and a 3-frame
clip panned across it (so tracking, posing and rendering all run), through the real ``eval``
command. One run (module fixture, ~1 min on 2 busy cores) feeds every assertion."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest


# the identity metric is optional at run time (n/a without dlib-bin + face-recognition-models)
DLIB = all(importlib.util.find_spec(m) is not None for m in ("dlib", "face_recognition_models"))


@pytest.fixture(scope="module")
def tiny_media(tmp_path_factory) -> Path:
    from PIL import Image
    from skimage import data

    from backend.face.video import write_video

    root = tmp_path_factory.mktemp("media")
    (root / "photos").mkdir()
    (root / "videos").mkdir()
    a = data.astronaut()
    Image.fromarray(a).save(root / "photos" / "astronaut.png")
    # a camera pan: the crop moves 3 px right and 2 px down per frame
    frames = [np.ascontiguousarray(a[8 + 2 * i : 392 + 2 * i, 40 + 3 * i : 424 + 3 * i]) for i in range(3)]
    write_video(root / "videos" / "pan.mp4", frames, 25.0)
    return root


@pytest.fixture(scope="module")
def report(tiny_media, tmp_path_factory):
    from backend.cli import main

    out = tmp_path_factory.mktemp("report")
    rc = main(["eval", "--media", str(tiny_media), "--out", str(out), "--lods", "0", "--every", "1",
               "--cross-frames", "3", "--render-frames", "2", "--no-refine", "--json", str(out / "figures.json")])
    assert rc == 0
    return out, json.loads((out / "figures.json").read_text())


def test_reconstruction_scores(report):
    _, figs = report
    (row,) = figs["reconstruction"]
    assert row["photo"] == "astronaut.png" and row["lod"] == 0 and row["n_gaussians"] > 5000
    s = row["scores"]
    # measured: face 22.3 dB / SSIM 0.72, full 18.5 dB, identity 0.89, AKD 4.8 px (analytic, no refinement)
    assert s["psnr_face"] > 18.0 and s["psnr_full"] > 14.0
    assert 0.5 < s["ssim_face"] <= 1.0 and 0.5 < s["ssim_full"] <= 1.0
    assert s["identity"] > 0.8 or not DLIB  # same person: the render still looks like the photo to dlib
    assert s["akd"] < 12.0
    # the whole portrait: the render covers the person the segmenter sees (measured ~0.9)
    assert 0.75 < s["alpha_iou"] <= 1.0
    assert s["psnr_portrait"] > 10.0 and 0.3 < s["ssim_portrait"] <= 1.0
    assert s["mouth_psnr"] is None  # the astronaut's mouth is closed: no mouth PSNR
    assert 0.0 < row["crop_coverage"] <= 1.0
    # the astronaut's head-and-shoulders crop reaches past the photo's edge: scored on real pixels
    # only, the whole-crop figure beside it
    assert s["psnr_full_padded"] > 10.0 and s["psnr_full"] != s["psnr_full_padded"]
    assert 0.0 < s["alpha_iou_padded"] <= 1.0
    summ = figs["summary"]["lod0"]
    for key in ("alpha_iou", "mouth_psnr", "psnr_full", "ssim_full", "akd", "psnr_full_padded"):
        assert key in summ["reconstruction"] and key in summ["self_reenactment"]
    assert summ["reconstruction"]["mouth_frames"] == 0
    timing = figs["build_timing"][0]
    assert timing["seconds"]["total"] > 0 and {"detect", "fit"} <= set(timing["seconds"])
    assert timing["peak_rss_mb"] > 50


def test_self_reenactment_scores(report):
    _, figs = report
    (run,) = figs["self_reenactment"]
    assert run["video"] == "pan.mp4" and run["every"] == 1
    assert [f["frame"] for f in run["frames"]] == [1, 2]  # frame 0 is the source photo
    for f in run["frames"]:
        s = f["scores"]
        assert s["psnr_full"] > 12.0 and s["psnr_face"] > 15.0
        assert s["akd"] is not None and s["akd"] < 15.0
        assert 0.6 < s["alpha_iou"] <= 1.0
        assert not DLIB or (s["identity"] is not None and s["identity"] > 0.8)
        # the whole crop, padding past the clip's edge included, is kept beside the real-pixel figures
        assert s["psnr_full_padded"] > 10.0 and 0.0 < s["ssim_full_padded"] <= 1.0
        assert 0.0 < s["alpha_iou_padded"] <= 1.0
    assert "ssim_full_padded" in figs["summary"]["lod0"]["self_reenactment"]
    # the photo's head-and-shoulders crop reaches past the 384 px clip: the padding is left out
    assert all(f["scores"]["psnr_full"] != f["scores"]["psnr_full_padded"] for f in run["frames"])
    (tt,) = figs["track_timing"]
    assert tt["frames"] == 3 and tt["fps"] > 0


def test_calibrated_tracker_end_to_end(report, tiny_media, tmp_path):
    """``eval --calibrate-tracker`` runs through the real command: the clip is re-fitted with the
    tracker calibrated to the avatar, so its self-reenactment frames are scored and differ from the
    uncalibrated run's (the calibration moved the fit), on the same frames. An uncalibrated re-run
    with the same flags reproduces the module run's figures exactly, so the difference is the
    calibration's and not run-to-run noise."""
    from backend.cli import main

    _, plain = report

    def self_run(name: str, *extra: str) -> dict:
        out = tmp_path / name
        rc = main(["eval", "--media", str(tiny_media), "--out", str(out), "--lods", "0", "--every", "1",
                   "--protocols", "self", *extra, "--no-refine", "--no-identity", "--json", str(out / "figures.json")])
        assert rc == 0
        return json.loads((out / "figures.json").read_text())

    again = self_run("again")
    figs = self_run("calibrated", "--calibrate-tracker")
    assert figs["options"]["calibrate"] is True and plain["options"]["calibrate"] is False
    (run,) = figs["self_reenactment"]
    (base,) = plain["self_reenactment"]
    (rerun,) = again["self_reenactment"]
    for f, b in zip(rerun["frames"], base["frames"]):
        for key in ("psnr_full", "akd", "alpha_iou"):
            assert f["scores"][key] == b["scores"][key], (f["frame"], key)
    assert [f["frame"] for f in run["frames"]] == [f["frame"] for f in base["frames"]] == [1, 2]
    for f, b in zip(run["frames"], base["frames"]):
        s = f["scores"]
        assert s["psnr_full"] > 12.0 and s["akd"] is not None and s["akd"] < 15.0
        assert 0.6 < s["alpha_iou"] <= 1.0
    assert any(f["scores"]["akd"] != b["scores"]["akd"] for f, b in zip(run["frames"], base["frames"]))


def test_cross_reenactment_scores(report):
    _, figs = report
    (pair,) = figs["cross_reenactment"]
    assert pair["photo"] == "astronaut.png" and pair["video"] == "pan.mp4"
    assert [f["frame"] for f in pair["frames"]] == [0, 1, 2]
    for f in pair["frames"]:
        # the driving clip is the same face panned: small pose and expression distance
        assert not DLIB or f["identity_to_source"] > 0.8
        assert f["expression_distance"] < 15.0
        assert f["pose_distance_deg"] < 15.0


def test_speed_and_machine(report):
    _, figs = report
    (rt,) = [r for r in figs["render_timing"] if r["backend"] == "cpu"]
    assert rt["lod"] == 0 and rt["frames"] == 2 and rt["fps"] > 0 and rt["width"] == 512
    assert figs["machine"]["logical_cores"] >= 1 and figs["machine"]["cpu_model"]
    assert figs["skipped"] == ([] if DLIB else figs["skipped"][:1])


def test_report_markdown_and_plots(report):
    out, figs = report
    md = (out / "README.md").read_text()
    for needle in ("22.72", "0.831", "2.045", "LPIPS", "ArcFace", figs["machine"]["cpu_model"],
                   "## Headline: the whole portrait", "alpha IoU", "mouth PSNR", "crop coverage",
                   "## 1. Source-view reconstruction", "pan.mp4", "astronaut.png"):
        assert needle in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == ["cross_reenactment.png", "reconstruction.png", "self_reenactment.png", "speed.png"]
    for p in out.glob("*.png"):
        assert p.stat().st_size < 100_000  # small plots, no images of faces
        assert f"]({p.name})" in md
    assert not math.isnan(figs["summary"]["lod0"]["self_reenactment"]["psnr_full"])


def test_absent_media_is_skipped_cleanly(tmp_path, capsys):
    from backend.cli import main

    rc = main(["eval", "--media", str(tmp_path / "nothing-here"), "--out", str(tmp_path / "out")])
    assert rc == 0
    assert not (tmp_path / "out").exists()
    assert "skipped" in capsys.readouterr().err


def test_drive_params_and_indices():
    from backend.eval.protocols.reenactment import drive_params, driving_indices
    from backend.head.params import HeadParams

    assert driving_indices(12, 5) == [5, 10]
    assert driving_indices(12, 5, start=0) == [0, 5, 10]
    assert driving_indices(100, 2, max_frames=3) == [2, 4, 6]
    src = HeadParams(np.ones(4), np.zeros((1, 6)), np.zeros((1, 5, 3)), [[0.0, 0.0, 2.0]])
    drv_pose = np.zeros((4, 5, 3))
    drv_pose[:, 2, 0] = [0.0, 0.1, 0.2, 0.3]  # jaw
    drv = HeadParams(np.zeros(4), np.arange(12.0).reshape(4, 3), drv_pose,
                     [[0.0, 0.0, 1.0], [0.01, 0.0, 1.0], [0.02, 0.0, 1.0], [0.03, 0.0, 1.0]])
    p = drive_params(src, drv, [1, 3])
    assert np.allclose(p.shape, 1.0)  # identity stays the source's
    assert p.expr.shape == (2, 6) and np.allclose(p.expr[:, :3], [[3, 4, 5], [9, 10, 11]]) and not p.expr[:, 3:].any()
    assert np.allclose(p.pose[:, 2, 0], [0.1, 0.3])
    assert np.allclose(p.transl, [[0.01, 0.0, 2.0], [0.03, 0.0, 2.0]])  # source + relative motion
    assert np.allclose(drive_params(src, drv, [2], relative_translation=False).transl, [[0.02, 0.0, 1.0]])
    assert p.torso is None  # a track without the torso channel drives without one
    drv.torso = np.arange(12.0, dtype=np.float32).reshape(4, 3) * 0.01  # relative to its frame 0 already
    assert np.allclose(drive_params(src, drv, [1, 3]).torso, drv.torso[[1, 3]])


def test_self_reenactment_refits_the_clip_in_the_avatars_framing():
    """The clip's landmarks (in the track's crop) are re-fitted in the source photo's crop with the
    avatar's identity, and the global joint stays at the photo's rotation: the render of frame k
    then lands on frame k's landmarks cut by the photo's crop. (Scoring in the clip-median crop
    with the clip's own identity left d12's frame 0 with its shoulders turned and a gap below.)"""
    from types import SimpleNamespace

    import torch

    from backend.eval.protocols.reenactment import ReenactmentOptions, TrackedClip, refit_for_avatar
    from backend.face.crop import CropInfo, source_camera
    from backend.face.landmark_model import LandmarkModel
    from backend.face.solver import Projector
    from backend.head.loader import load_head_model
    from backend.head.params import HeadParams

    model = load_head_model(None)
    rng = np.random.default_rng(3)
    T = 6
    shape = (rng.normal(size=model.n_shape) * 0.5).astype(np.float32)
    photo_global = np.array([0.1, 0.03, 0.0])
    pose = np.zeros((T, 5, 3))
    pose[:, 0] = photo_global
    pose[:, 1, 1] = np.linspace(0.0, 0.3, T)  # the head turns; the shoulders do not
    pose[:, 2, 0] = np.linspace(0.0, 0.2, T)  # and the jaw opens
    transl = np.tile([0.005, -0.01, 0.02], (T, 1))
    cam = source_camera()
    lmm = LandmarkModel.from_model(model)
    c = torch.cat([torch.tensor(shape, dtype=torch.float64)[None], torch.zeros(1, model.n_expr, dtype=torch.float64)],
                  1).expand(T, -1)
    uv, _ = Projector(cam.K, cam.viewmat).project(lmm.points(c, torch.tensor(pose), torch.tensor(transl)))
    in_photo_crop = uv.numpy().astype(np.float32)  # (T, 478, 2) px in the photo's crop
    photo_crop = CropInfo(100, 40, 620, 512, (1000, 800))
    track_crop = CropInfo(160, 110, 470, 512, (1000, 800))  # the clip-median crop: tighter, elsewhere
    track = SimpleNamespace(landmarks=track_crop.to_crop(photo_crop.to_source(in_photo_crop)),
                            crop=track_crop, has_face=np.ones(T, bool), fps=25.0)
    clip = TrackedClip(name="synthetic", track=track, frames={}, timing=None, source_frame=None)
    avatar_params = HeadParams(shape, np.zeros((1, model.n_expr), np.float32), pose[:1].astype(np.float32),
                               transl[:1].astype(np.float32))
    build = SimpleNamespace(observation=SimpleNamespace(crop=photo_crop), model=model,
                            avatar=SimpleNamespace(camera=cam, params=avatar_params,
                                                   vertex_offsets=np.zeros((model.n_verts, 3), np.float32)))
    # the jaw coupling (tested in tests/face) trades a little landmark fit for the jaw: off here,
    # where only the framing, identity and shoulder rotation are checked
    params, frames = refit_for_avatar(clip, build, ReenactmentOptions(track={"smoothing": 0.0, "jaw_from_lips": 0.0},
                                                                    render_passes=0))   # the plain fit's framing
    assert frames == {}
    np.testing.assert_allclose(params.shape, shape, atol=1e-6)
    assert np.abs(params.pose[:, 0] - photo_global).max() < 0.01        # shoulders stay put
    assert np.abs(params.pose[:, 1, 1] - pose[:, 1, 1]).max() < 0.03     # the turn goes to the neck
    assert np.abs(params.pose[:, 2, 0] - pose[:, 2, 0]).max() < 0.02     # jaw recovered
    c2 = torch.cat([torch.tensor(params.shape, dtype=torch.float64)[None].expand(T, -1),
                    torch.tensor(params.expr, dtype=torch.float64)], 1)
    uv2, _ = Projector(cam.K, cam.viewmat).project(lmm.points(c2, torch.tensor(params.pose, dtype=torch.float64),
                                                              torch.tensor(params.transl, dtype=torch.float64)))
    assert np.abs(uv2.numpy() - in_photo_crop).max() < 0.5                # on the photo crop's landmarks
