"""Video input and tracking on a synthetic clip made from the astronaut (moved, turned, with a
two-frame gap without any face), the track file and the ``track`` command."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from PIL import Image

from backend.errors import CancelledError, InputError
from backend.face import Track, TrackOptions, iter_video, track_video, write_video
from backend.progress import Progress

N_FRAMES = 16
GAP = (7, 8)  # blank frames: no face
SHIFT_PX = 3.0  # per frame, to the right
ROLL_DEG = 1.5  # per frame, in-plane rotation


CENTRE = (226.0, 125.0)  # roughly the astronaut's nose: the roll turns the face in place


def _frames(astronaut: np.ndarray):
    """The astronaut moving right and rolling; frames GAP are a blank grey picture."""
    out = []
    for i in range(N_FRAMES):
        if i in GAP:
            out.append(np.full_like(astronaut, 120))
            continue
        M = cv2.getRotationMatrix2D(CENTRE, ROLL_DEG * (i - N_FRAMES / 2), 1.0)
        M[0, 2] += SHIFT_PX * (i - N_FRAMES / 2)
        out.append(cv2.warpAffine(astronaut, M, (512, 512), borderMode=cv2.BORDER_REPLICATE))
    return out


@pytest.fixture(scope="module")
def clip(tmp_path_factory, astronaut):
    path = tmp_path_factory.mktemp("clip") / "moving.mp4"
    write_video(path, _frames(astronaut), fps=25.0)
    return path


@pytest.fixture(scope="module")
def track(clip, head_model):
    return track_video(clip, head_model, TrackOptions(smoothing=1.0))


def test_video_reader_streams_mp4_gif_and_folders(tmp_path, clip, astronaut):
    r = iter_video(clip)
    assert r.fps == pytest.approx(25.0) and r.size == (512, 512) and r.n_frames == N_FRAMES
    frames = list(r)
    assert len(frames) == N_FRAMES and frames[0].shape == (512, 512, 3)
    gif = tmp_path / "a.gif"
    imgs = [Image.fromarray(f).resize((96, 96)) for f in _frames(astronaut)[:4]]  # GIF encoding is slow
    imgs[0].save(gif, save_all=True, append_images=imgs[1:], duration=50, loop=0)
    g = iter_video(gif)
    assert g.fps == pytest.approx(20.0) and g.n_frames == 4 and len(list(g)) == 4
    seq = tmp_path / "seq"
    seq.mkdir()
    for i in range(3):
        Image.fromarray(astronaut[::4, ::4]).save(seq / f"frame_{i + 8}.png")  # 8, 9, 10: natural order
    s = iter_video(seq, sequence_fps=30.0)
    assert s.fps == 30.0 and s.n_frames == 3
    assert [p.name for p in s._files] == ["frame_8.png", "frame_9.png", "frame_10.png"]


def test_bad_videos(tmp_path):
    bad = tmp_path / "clip.mp4"
    bad.write_text("not a video")
    with pytest.raises(InputError, match="not a readable video") as err:
        iter_video(bad)
    assert "clip.mp4" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("no frames here")
    with pytest.raises(InputError, match="no image files"):
        iter_video(empty)
    blank = tmp_path / "blank.mp4"
    write_video(blank, [np.full((128, 128, 3), 90, np.uint8)] * 3, fps=10.0)
    with pytest.raises(InputError, match="no face found in any of the 3 frames"):
        track_video(blank)


def test_track_has_every_frame_and_fills_the_gap(track):
    assert track.n_frames == N_FRAMES and track.params.n_frames == N_FRAMES
    assert track.fps == pytest.approx(25.0)
    assert track.frames_without_face == list(GAP)
    p = track.params
    for arr in (p.expr, p.pose, p.transl):
        assert np.all(np.isfinite(arr))
    assert np.all(track.confidence[list(GAP)] == 0)
    assert np.all(track.confidence[[i for i in range(N_FRAMES) if i not in GAP]] > 0.3)
    # the gap is bridged smoothly between its tracked neighbours
    a, b = GAP[0] - 1, GAP[-1] + 1
    for t in GAP:
        lo, hi = np.minimum(p.transl[a], p.transl[b]), np.maximum(p.transl[a], p.transl[b])
        assert np.all(p.transl[t] >= lo - 2e-3) and np.all(p.transl[t] <= hi + 2e-3)


def test_track_a_frame_range(clip, head_model):
    part = track_video(clip, head_model, TrackOptions(smoothing=1.0), start=3, end=9)
    assert part.n_frames == 7 and part.source == "moving.mp4[3:10]"
    # the range has its own crop (so its own translations), but the same frames without a face
    assert part.frames_without_face == [g - 3 for g in GAP if 3 <= g <= 9]
    assert np.all(np.isfinite(part.params.pose)) and np.all(np.isfinite(part.params.transl))
    with pytest.raises(InputError, match="empty frame range"):
        track_video(clip, head_model, start=5, end=2)


def test_track_follows_the_motion(track):
    p = track.params
    ok = track.has_face
    t = np.arange(N_FRAMES)[ok]
    # moving right in the image = +x in the head frame (the camera looks along -Z)
    tx = p.transl[ok, 0]
    assert np.corrcoef(t, tx)[0, 1] > 0.95
    px_per_m = track.camera.K[0, 0] / float(track.camera.viewmat[2, 3] - p.transl[ok, 2].mean())
    speed = np.polyfit(t, tx, 1)[0] * px_per_m * track.crop.side / 512.0  # source px per frame
    assert speed == pytest.approx(SHIFT_PX, rel=0.35)
    # in-plane roll: rotation about the viewing axis (neck carries it, global stays put)
    roll = p.pose[ok, 1, 2] + p.pose[ok, 0, 2]
    assert abs(np.corrcoef(t, roll)[0, 1]) > 0.95
    step = np.degrees(abs(np.polyfit(t, roll, 1)[0]))
    assert step == pytest.approx(ROLL_DEG, rel=0.35)
    assert np.ptp(p.pose[:, 0], axis=0).max() < np.ptp(p.pose[:, 1], axis=0).max()


def test_track_file_round_trip(tmp_path, track):
    path = tmp_path / "t.npz"
    track.save(path)
    back = Track.load(path)
    assert back.n_frames == track.n_frames and back.fps == track.fps and back.model == track.model
    np.testing.assert_array_equal(back.params.expr, track.params.expr)
    np.testing.assert_array_equal(back.params.pose, track.params.pose)
    np.testing.assert_array_equal(back.has_face, track.has_face)
    np.testing.assert_array_equal(back.camera.K, track.camera.K)
    # the torso channel and the shoulder shifts it was made from (face/torso.py) come back too
    assert track.params.torso is not None and track.shoulders.shape == (track.n_frames, 2)
    np.testing.assert_array_equal(back.params.torso, track.params.torso)
    np.testing.assert_array_equal(back.shoulders, track.shoulders)
    meta = back.metadata()
    assert meta["frames"] == N_FRAMES and meta["fps"] == pytest.approx(25.0)
    assert meta["parameter_names"]["pose"][:3] == ["global_x", "global_y", "global_z"]
    assert len(meta["parameter_names"]["expr"]) == track.params.expr.shape[1]
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros(3))
    with pytest.raises(InputError, match="not a readable track file"):
        Track.load(bad)


def test_progress_and_cancel(clip, head_model):
    seen = []
    track_video(clip, head_model, TrackOptions(smoothing=0.0),
                Progress(callback=lambda f, m: seen.append(f)))
    assert seen[0] == 0.0 and seen[-1] == 1.0 and all(a <= b for a, b in zip(seen, seen[1:]))
    calls = []
    with pytest.raises(CancelledError):
        track_video(clip, head_model, TrackOptions(),
                    Progress(callback=lambda f, m: calls.append(f), should_cancel=lambda: len(calls) >= 2))
    assert len(calls) == 2  # stopped at the first check after the caller asked


def test_track_command_writes_track_and_figures(tmp_path, clip):
    from backend.cli import main

    out, figs = tmp_path / "t.npz", tmp_path / "stats.json"
    assert main(["track", str(clip), "-o", str(out), "--json", str(figs), "--smoothing", "2",
                 "--no-progress"]) == 0
    stats = json.loads(figs.read_text())
    assert stats["frames"] == N_FRAMES and stats["frames_without_face"] == list(GAP)
    assert stats["seconds"] > 0 and stats["fps"] == pytest.approx(N_FRAMES / stats["seconds"])
    assert Track.load(out).n_frames == N_FRAMES
    assert main(["track", str(tmp_path / "missing.mp4"), "-o", str(out)]) == 1


@pytest.mark.parametrize("suffix,codec", [(".webm", "libvpx"), (".mov", "libx264")])
def test_other_containers_stream(tmp_path, suffix, codec):
    import imageio_ffmpeg

    path = tmp_path / f"clip{suffix}"
    w = imageio_ffmpeg.write_frames(str(path), (64, 48), fps=10, codec=codec, macro_block_size=1,
                                    ffmpeg_log_level="error")
    w.send(None)
    for i in range(5):
        w.send(np.full((48, 64, 3), 40 * i, np.uint8))
    w.close()
    r = iter_video(path)
    frames = list(r)
    assert r.fps == pytest.approx(10.0) and r.size == (64, 48) and len(frames) == 5
    assert frames[0].shape == (48, 64, 3) and abs(int(frames[4].mean()) - 160) <= 4
