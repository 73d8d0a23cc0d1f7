"""backend.motion: track / HeadParams files read once, frame ranges, smoothing, resampling, and the
retarget performance (a saved track -> params at the scene's rate), all without tracking a video."""

from __future__ import annotations

import numpy as np
import pytest

from backend.errors import InputError
from backend.face.crop import CropInfo, source_camera
from backend.face.track import Track
from backend.head.params import HeadParams
from backend.motion import (PerformanceRequest, load_motion, load_performance, resample, slice_frames,
                            smooth)

T, E = 40, 6
FPS = 30.0


def _params(seed: int = 0) -> HeadParams:
    rng = np.random.default_rng(seed)
    t = np.arange(T) / FPS
    pose = np.zeros((T, 5, 3), np.float32)
    pose[:, 2, 0] = 0.2 + 0.1 * np.sin(2 * np.pi * t)          # jaw opens and closes
    pose[:, 0, 1] = 0.3 * t                                     # slow head turn
    pose += rng.normal(scale=0.01, size=pose.shape).astype(np.float32)  # tracker jitter
    expr = rng.normal(size=(T, E)).astype(np.float32)
    return HeadParams(np.ones(4, np.float32), expr, pose, rng.normal(scale=0.01, size=(T, 3)))


@pytest.fixture()
def track_file(tmp_path):
    params = _params()
    track = Track(params=params, fps=FPS, confidence=np.linspace(0.5, 1, T, dtype=np.float32),
                  has_face=np.ones(T, bool), landmarks=np.zeros((T, 478, 2), np.float32), camera=source_camera(),
                  crop=CropInfo(0, 0, 512, 512, (512, 512)), model="standin",
                  expr_names=[f"e{i}" for i in range(E)], source="clip.mp4")
    path = tmp_path / "t.npz"
    track.save(path)
    return path, params


def test_load_motion_reads_a_track_with_its_names(track_file):
    path, params = track_file
    m = load_motion(path)
    assert m.fps == FPS and m.source == "clip.mp4" and m.n_frames == T
    assert m.expr_names == [f"e{i}" for i in range(E)]
    np.testing.assert_array_equal(m.params.pose, params.pose)
    np.testing.assert_allclose(m.camera.K, source_camera().K)
    np.testing.assert_allclose(m.confidence[[0, -1]], [0.5, 1.0])


def test_load_motion_names_the_file_on_bad_input(tmp_path):
    torn = tmp_path / "torn.npz"
    torn.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match="torn.npz"):
        load_motion(torn)
    bad_track = tmp_path / "bad_track.npz"
    np.savez(bad_track, metadata=np.array('{"format": "omg-track", "fps": 25}'), shape=np.zeros(3))
    with pytest.raises(InputError, match="bad_track.npz"):
        load_motion(bad_track)


def test_slice_frames_is_inclusive_and_refuses_empty_ranges():
    p = _params()
    s = slice_frames(p, 5, 9)
    assert s.n_frames == 5
    np.testing.assert_array_equal(s.pose, p.pose[5:10])
    assert slice_frames(p, 10).n_frames == T - 10 and slice_frames(p, 0, 10_000).n_frames == T
    with pytest.raises(InputError, match="outside the 40 frames"):
        slice_frames(p, 50)


def test_smooth_removes_jitter_but_keeps_the_motion():
    p = _params()
    s = smooth(p, FPS, 2.0)
    jitter = lambda a: np.abs(np.diff(a, 2, axis=0)).mean()  # noqa: E731 - second differences
    assert jitter(s.pose[:, 2, 0]) < 0.5 * jitter(p.pose[:, 2, 0])
    assert np.corrcoef(s.pose[:, 2, 0], p.pose[:, 2, 0])[0, 1] > 0.9
    assert smooth(p, FPS, 0.0) is p


def test_performance_from_a_track_file_range_and_rate(track_file):
    path, params = track_file
    perf = load_performance(PerformanceRequest(str(path), is_track_file=True, frame_start=10, frame_end=29,
                                               fps=24.0))
    assert perf.source_fps == FPS and perf.fps == 24.0 and perf.n_source_frames == 20
    assert perf.expr_names == [f"e{i}" for i in range(E)] and perf.track is None
    expected = resample(slice_frames(params, 10, 29), FPS, 24.0)
    np.testing.assert_allclose(perf.params.pose, expected.pose, atol=1e-7)
    assert perf.params.n_frames == 16  # floor(19 * 24 / 30) + 1
    same_rate = load_performance(PerformanceRequest(str(path), is_track_file=True))
    assert same_rate.fps == FPS and same_rate.params.n_frames == T and "resample" not in same_rate.seconds


def test_keeps_identity_follows_the_choice_or_the_clip_the_avatar_came_from():
    """Driving an avatar with the clip it was built from keeps its identity by default (one person);
    any other clip fits its own; an explicit choice wins either way (CLI --[no-]keep-identity,
    Blender's Identity: Avatar / Clip)."""
    from backend.motion import keeps_identity

    assert keeps_identity(None, "d12.mp4", "/media/videos/d12.mp4")
    assert keeps_identity(None, "seq", "/tmp/seq/")           # an image-sequence folder, picked as "dir/"
    assert not keeps_identity(None, "d12.mp4", "/media/videos/d3.mp4")
    assert not keeps_identity(None, "", "/media/videos/d12.mp4")   # built from photos
    assert not keeps_identity(None, None, "d12.mp4")
    assert keeps_identity(True, None, "d3.mp4")
    assert not keeps_identity(False, "d12.mp4", "d12.mp4")


def test_the_torso_channel_survives_every_time_edit_and_a_head_params_file(tmp_path):
    """Tracks carry the torso channel (HeadParams.torso, face.torso): slicing, smoothing, expression
    conforming and resampling keep it frame for frame (resampled linearly), and a head-parameter
    file read back as a motion keeps it, so `render --motion` moves the body as the track did."""
    from backend.motion.frames import conform_expr

    p = _params()
    t = np.arange(T) / FPS
    p.torso = np.stack([0.01 * t, -0.02 * t, np.zeros(T)], 1).astype(np.float32)   # a steady lean, metres
    np.testing.assert_array_equal(slice_frames(p, 5, 9).torso, p.torso[5:10])
    assert np.abs(smooth(p, FPS, 2.0).torso - p.torso).max() < 2e-3  # a straight line stays put
    np.testing.assert_array_equal(conform_expr(p, E + 3).torso, p.torso)
    r = resample(p, FPS, 24.0)
    np.testing.assert_allclose(r.torso[:, 0], 0.01 * np.arange(r.n_frames) / 24.0, atol=1e-6)
    assert resample(p, FPS, FPS).torso is not p.torso
    p.save(tmp_path / "p.npz")
    np.testing.assert_array_equal(load_motion(tmp_path / "p.npz", fps=FPS).params.torso, p.torso)
    p.torso = None
    assert slice_frames(p, 0, 3).torso is None and resample(p, FPS, 24.0).torso is None
