"""``python -m backend retarget`` and ``python -m backend render`` end to end on the synthetic clip."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from backend.cli import main
from synthetic import pearson, synthetic_clip, watermark_present

ROOT = Path(__file__).resolve().parents[2]
JAW_R_MIN = 0.8  # Pearson r between the tracked and the rendered jaw rotation


def test_cli_retarget_then_render(astronaut, preview_assets, tmp_path):
    import imageio_ffmpeg

    from backend.face.track import Track

    _, _, avatar_path = astronaut
    clip = synthetic_clip(preview_assets)
    out = tmp_path / "reenact.mp4"
    rc = main(["retarget", str(avatar_path), str(clip.path), "-o", str(out), "--lod", "0", "--size", "96",
               "--backend", "cpu", "--frames", str(tmp_path / "frames"), "--save-track", str(tmp_path / "t.npz"),
               "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 0
    T = clip.params.n_frames
    assert imageio_ffmpeg.count_frames_and_secs(str(out))[0] == T
    pngs = sorted((tmp_path / "frames").glob("frame_*.png"))
    assert len(pngs) == T
    assert all(watermark_present(np.asarray(Image.open(p).convert("RGB"))) for p in pngs[:: max(1, T // 4)])
    fig = json.loads((tmp_path / "r.json").read_text())
    assert fig["frames"] == T and fig["render"]["frames"] == T and fig["render"]["lod"] == 0
    assert fig["track_fps"] > 0 and fig["render"]["fps"] > 0 and fig["video_fps"] == clip.fps
    track = Track.load(tmp_path / "t.npz")
    r = pearson(track.params.pose[:, 2, 0], clip.jaw)
    assert r > JAW_R_MIN, f"jaw r = {r:.3f}"

    # render: the saved track, a sub-range, resampled to 50 fps
    rc = main(["render", str(avatar_path), str(tmp_path / "t.npz"), "-o", str(tmp_path / "render"), "--size", "96",
               "--start", "2", "--end", "5", "--fps", "50", "--backend", "cpu", "--json", str(tmp_path / "f.json"),
               "--no-progress"])
    assert rc == 0
    fig = json.loads((tmp_path / "f.json").read_text())
    assert fig["frames"] == 7 and fig["video_fps"] == 50  # 4 frames at 25 fps span 3/25 s = 7 frames at 50
    assert len(list((tmp_path / "render").glob("frame_*.png"))) == 7
    assert imageio_ffmpeg.count_frames_and_secs(str(tmp_path / "render" / "preview.mp4"))[0] == 7


def test_cli_retarget_reads_a_kept_calibration_and_leaves_it_as_it_was(astronaut, preview_assets, tmp_path, capsys):
    """``retarget --calibration`` with a kept file (here: the stand-in's own landmark response with a
    zero reading floor, no eye corrective and the same as its open-jaw part) reads it, tracks with it,
    writes the preview and never rewrites the file."""
    from dataclasses import replace as dc_replace

    from backend.avatar.fileformat import load_avatar
    from backend.face.calibration import LandmarkCalibration
    from backend.face.landmark_model import LandmarkModel
    from backend.head.loader import load_head_model

    _, _, avatar_path = astronaut
    model = load_head_model(load_avatar(avatar_path).head_model_path)
    lmm = LandmarkModel.from_model(model)
    S, E = lmm.n_shape, lmm.n_expr
    cal = LandmarkCalibration(np.zeros((lmm.n_landmarks, 3), np.float32), lmm.basis[:, :, S:S + E].numpy(),
                              tuple(model.expr_names), np.ones(E, np.float32), floor=np.zeros(E, np.float32),
                              eyedirs=np.zeros((lmm.n_landmarks, 3, 9), np.float32))
    cal.open_jaw = dc_replace(cal)          # every part a current calibration has: read without a warning
    kept = cal.save(tmp_path / "kept.cal.npz")
    before = kept.read_bytes()
    clip = synthetic_clip(preview_assets)
    out = tmp_path / "cal.mp4"
    rc = main(["retarget", str(avatar_path), str(clip.path), "-o", str(out), "--lod", "0", "--size", "96",
               "--backend", "cpu", "--calibration", str(kept), "--json", str(tmp_path / "r.json"), "--no-progress"])
    assert rc == 0 and out.exists() and kept.read_bytes() == before
    assert "warning" not in capsys.readouterr().err
    assert json.loads((tmp_path / "r.json").read_text())["frames"] == clip.params.n_frames


def test_cli_errors_name_the_file(astronaut, tmp_path):
    _, _, avatar_path = astronaut
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"junk")
    proc = subprocess.run([sys.executable, "-m", "backend", "render", str(avatar_path), str(bad), "-o",
                           str(tmp_path / "o")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "bad.npz" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "backend", "retarget", str(avatar_path), str(tmp_path / "none.mp4"),
                           "-o", str(tmp_path / "o.mp4")], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 1 and "none.mp4" in proc.stderr and "Traceback" not in proc.stderr


PHOTO_TURN_RAD = 0.2      # the avatar's photo: the head turned this much further than in the clip
GLOBAL_HOLD_RAD = 0.06    # tracked global joint vs the photo's, every frame (measured 0.037: a soft prior)
HEAD_ROTATION_DEG = 1.0   # mean head-rotation error (global then neck) may grow by this over the free track


def _head_rotation_error_deg(pose: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(T,) angle between the head rotations R_global @ R_neck of two (T, 5, 3) pose tracks."""
    from backend.eval.metrics.geometry import rotation_angle_deg
    from backend.rotations import axis_angle_to_matrix

    def head(p):
        return axis_angle_to_matrix(p[:, 0]) @ axis_angle_to_matrix(p[:, 1])

    return rotation_angle_deg(np.swapaxes(head(pose), -1, -2) @ head(truth))


def test_product_tracks_for_an_avatar_as_the_evaluation_does(astronaut, preview_assets, tmp_path):
    """`track --avatar` and the Blender Retarget Video worker (motion.load_performance given the rig's
    identity and photo pose) hold the global joint at the avatar's photo rotation, as the
    evaluation's self-reenactment does (one helper: face.track.avatar_hold), and put the head's
    turn into the neck. The avatar's photo had the head turned PHOTO_TURN_RAD further than the
    clip: before, both tracked the clip's own global rotation (the avatar's shoulders, bound to
    global, turned by 0.2 rad on every frame)."""
    from backend.avatar import save_avatar
    from backend.face.track import Track
    from backend.motion import PerformanceRequest, load_performance

    avatar, _, _ = astronaut
    clip = synthetic_clip(preview_assets)
    turned = copy.copy(avatar)
    turned.params = copy.copy(avatar.params)
    turned.params.pose = avatar.params.pose.copy()
    turned.params.pose[0, 0, 1] += PHOTO_TURN_RAD
    photo_global = turned.params.pose[0, 0]
    path = save_avatar(turned, tmp_path / "turned.omgavatar")
    assert main(["track", str(clip.path), "-o", str(tmp_path / "t.npz"), "--avatar", str(path),
                 "--no-progress"]) == 0
    cli = Track.load(tmp_path / "t.npz").params
    blender = load_performance(PerformanceRequest(str(clip.path), smoothing=2.0, avatar_shape=turned.params.shape,
                                                  avatar_pose=turned.params.pose[0])).params
    free = load_performance(PerformanceRequest(str(clip.path), smoothing=2.0)).params
    # the CLI's track measures the torso channel; the Blender worker skips it (the rig has no torso bone)
    assert cli.torso is not None and cli.torso.shape == (cli.n_frames, 3)
    assert blender.torso is None and free.torso is None
    free_err = _head_rotation_error_deg(free.pose, clip.params.pose).mean()
    assert np.abs(free.pose[:, 0] - photo_global).max() > 0.1  # the clip's own global, not the photo's
    for params in (cli, blender):
        off = np.abs(params.pose[:, 0] - photo_global).max()
        assert off < GLOBAL_HOLD_RAD, f"global {off:.3f} rad from the photo's"
        err = _head_rotation_error_deg(params.pose, clip.params.pose).mean()
        assert err < free_err + HEAD_ROTATION_DEG, f"head rotation off by {err:.2f} deg (free track {free_err:.2f})"
    np.testing.assert_array_equal(cli.shape, turned.params.shape)  # --avatar keeps the identity
    assert not np.array_equal(blender.shape, turned.params.shape)  # keep_identity off: the clip's own
