"""The tracker's render-and-compare passes with a real avatar (face/render_compare.py with
avatar/render_compare.py's AvatarReader): on the synthetic clip of the astronaut avatar, the passes
bring mediapipe's reading of the avatar's render closer to its reading of the clip; the CLI flags
reach them, and asking for them without an avatar is a clear error."""

from __future__ import annotations

import numpy as np
import pytest

from backend.cli import main
from synthetic import synthetic_clip


def test_render_passes_bring_the_avatars_render_onto_the_clip(astronaut, preview_assets):
    from backend.avatar.render_compare import AvatarReader
    from backend.face.track import track_with_render_passes
    from backend.face.track import TrackOptions, avatar_hold, track_video

    avatar, model, _ = astronaut
    clip = synthetic_clip(preview_assets)
    hold = avatar_hold(avatar.params.shape, avatar.params.pose)
    track = track_video(clip.path, model, TrackOptions(torso=False), **hold)
    reader = AvatarReader(avatar, model)
    opts = TrackOptions(torso=False)
    params, conf, _, st = track_with_render_passes(model, track.landmarks, track.has_face, track.camera, track.fps,
                                                   opts, reader, 1, measure_last=True, **hold)
    assert st.read == [clip.params.n_frames] * 2            # every render was read
    before, after = st.render_to_obs
    # the plain fit's render is read off the clip (the avatar's painted features against the
    # embedding's points); one pass takes a good part of that away
    assert before > 0.5, st.render_to_obs
    assert after < 0.75 * before, st.render_to_obs
    assert params.n_frames == clip.params.n_frames and np.isfinite(params.pose).all()
    assert (conf > 0).all()
    # the jaw still follows the clip's known opening. The pass's reading of the jaw wanders with
    # changes of the avatar's render too small to see: over the twenty-eighth session's builds of
    # the astronaut (renders of the clip 0.5/255 apart on average) 0.91, 0.89, 0.93 and 0.78, where
    # the plain fit reads 0.95-0.97; the floor catches a pass that loses the jaw, not that spread
    from synthetic import JAW, JAW_AXIS, pearson

    assert pearson(params.pose[:, JAW, JAW_AXIS], clip.jaw) > 0.7
    # the reader renders at the camera it is given, watermarked
    img = reader.render(params.sliced(np.arange(2)), track.camera)
    assert img.shape == (2, track.camera.height, track.camera.width, 3) and img.dtype == np.uint8


def test_the_rigid_pass_removes_a_known_pixel_shift_of_the_render(astronaut, preview_assets):
    """The avatar's render read 4 px left and 3 px down of where the fit's camera puts it (the
    reader renders through a camera whose principal point is moved so): the plain fit's render lies
    that far (and the avatar's own offset) off the clip; one rigid pass moves the head so the
    render's reading lands on the clip to within the soft threshold, and the jaw still follows the
    clip's known opening."""
    from backend.avatar.render_compare import AvatarReader
    from backend.face.mediapipe_face import FACE_OVAL
    from backend.face.track import TrackOptions, avatar_hold, track_video, track_with_render_passes
    from backend.progress import Progress
    from backend.render.camera import Camera
    from synthetic import JAW, JAW_AXIS, pearson

    avatar, model, _ = astronaut
    clip = synthetic_clip(preview_assets)
    hold = avatar_hold(avatar.params.shape, avatar.params.pose)
    track = track_video(clip.path, model, TrackOptions(torso=False), **hold)
    reader = AvatarReader(avatar, model)
    shift = np.array([-4.0, 3.0])

    def shifted(params, camera, progress=None, by=shift):
        K = camera.K.copy()
        K[0, 2] += by[0]
        K[1, 2] += by[1]
        return reader(params, Camera(K, camera.viewmat, camera.width, camera.height), progress)

    frames = np.arange(1, clip.params.n_frames, 3)
    inner = np.setdiff1d(np.arange(478), list(FACE_OVAL))

    def mean_shift(params, by=shift) -> np.ndarray:   # (2,) mean of R - O over the frames and inner landmarks
        read = shifted(params.sliced(frames), track.camera, Progress(), by)
        return np.nanmean((read - track.landmarks[frames])[:, inner], axis=(0, 1))

    opts = TrackOptions(torso=False, render_pass_mode="rigid", render_pass_threshold_px=1.0)
    plain = track_with_render_passes(model, track.landmarks, track.has_face, track.camera, track.fps, opts,
                                     shifted, 0, **hold)[0]
    params = track_with_render_passes(model, track.landmarks, track.has_face, track.camera, track.fps, opts,
                                      shifted, 1, frames=frames, **hold)[0]
    own, before, after = mean_shift(plain, np.zeros(2)), mean_shift(plain), mean_shift(params)
    assert np.linalg.norm(before - own - shift) < 0.5, (own, before)   # the known shift on the avatar's own
    assert np.linalg.norm(after) < 1.5 and np.linalg.norm(after) < 0.3 * np.linalg.norm(before), (own, before, after)
    assert pearson(params.pose[frames, JAW, JAW_AXIS], clip.jaw[frames]) > 0.8


def test_track_cli_render_passes_change_the_fit(astronaut, preview_assets, tmp_path):
    from backend.face.track import Track

    _, _, path = astronaut
    clip = synthetic_clip(preview_assets)
    base = ["track", str(clip.path), "--avatar", str(path), "--smoothing", "0", "--no-progress"]
    assert main([*base, "-o", str(tmp_path / "plain.npz"), "--render-passes", "0"]) == 0
    assert main([*base, "-o", str(tmp_path / "passes.npz"), "--render-passes", "1", "--render-pass-mode", "full",
                 "--render-pass-every", "1"]) == 0
    plain, passes = Track.load(tmp_path / "plain.npz").params, Track.load(tmp_path / "passes.npz").params
    np.testing.assert_array_equal(plain.shape, passes.shape)          # the avatar's identity, both
    assert np.abs(plain.pose - passes.pose).max() > 1e-4               # the passes moved the fit


def test_the_driving_defaults_one_keyframed_upper_face_pass_with_the_avatars_identity():
    """track --avatar and retarget with the avatar's identity drive with face.track.DRIVING_PASSES
    unless told otherwise; without the identity (or the avatar) there is no pass; eval scores that."""
    from backend.cli import build_parser
    from backend.commands.render import render_pass_options, resolved_passes
    from backend.eval.protocols.reenactment import ReenactmentOptions
    from backend.eval.run import EvalOptions
    from backend.face.track import DRIVING_PASSES

    p = build_parser()
    for argv in (["track", "v.mp4", "-o", "t.npz", "--avatar", "a"], ["retarget", "a", "v"]):
        a = p.parse_args(argv)
        assert a.render_passes is None
        assert {"render_passes": resolved_passes(a.render_passes, True), **render_pass_options(a)} == DRIVING_PASSES
        assert resolved_passes(a.render_passes, False) == 0
        assert resolved_passes(p.parse_args([*argv, "--render-passes", "0"]).render_passes, True) == 0
    e = p.parse_args(["eval", "--media", "m"])
    assert (e.render_passes, e.render_pass_mode, e.render_pass_threshold) == (1, "upper", 1.0)
    assert DRIVING_PASSES["render_pass_mode"] == "upper"
    for o in (EvalOptions(), ReenactmentOptions()):
        assert (o.render_passes, o.render_pass_mode, o.render_pass_threshold_px) == (
            DRIVING_PASSES["render_passes"], DRIVING_PASSES["render_pass_mode"], DRIVING_PASSES["render_pass_threshold_px"])


def test_a_performance_with_the_avatars_render_reads_every_6th_frame_only_with_its_identity(astronaut, preview_assets):
    """motion.load_performance (Blender's Retarget Video) with a render reader: the keyframed rigid
    pass of face.track.DRIVING_PASSES reads the avatar's render at every 6th frame (and the last)
    when the identity is kept, and never without it."""
    from backend.avatar.render_compare import AvatarReader
    from backend.motion import PerformanceRequest, load_performance

    avatar, model, _ = astronaut
    clip = synthetic_clip(preview_assets)

    class Counting(AvatarReader):
        frames: list[int] = []

        def __call__(self, params, camera, progress=None, **kw):
            self.frames.append(params.n_frames)
            return super().__call__(params, camera, progress, **kw)

    T = clip.params.n_frames
    for keep, expected in ((True, [len(range(0, T, 6)) + (0 if (T - 1) % 6 == 0 else 1)]), (False, [])):
        reader = Counting(avatar, model)
        reader.frames = []
        perf = load_performance(PerformanceRequest(str(clip.path), avatar_shape=avatar.params.shape,
                                                   avatar_pose=avatar.params.pose[0], keep_identity=keep,
                                                   render_reader=reader))
        assert perf.params.n_frames == T and reader.frames == expected, (keep, reader.frames)


def test_render_passes_without_an_avatar_are_refused(tmp_path, capsys):
    out = tmp_path / "t.npz"
    assert main(["track", str(tmp_path / "clip.mp4"), "-o", str(out), "--render-passes", "1"]) == 1
    err = capsys.readouterr().err
    assert "--render-passes needs --avatar" in err and "Traceback" not in err
    assert main(["track", str(tmp_path / "clip.mp4"), "-o", str(out), "--render-passes", "-1",
                 "--avatar", str(tmp_path / "a.omgavatar")]) == 1
    assert ">= 0" in capsys.readouterr().err
    assert not out.exists()


def test_retarget_render_passes_need_the_avatars_identity(astronaut, preview_assets, tmp_path):
    _, _, path = astronaut
    clip = synthetic_clip(preview_assets)
    with pytest.raises(SystemExit, match="identity kept"):
        main(["retarget", str(path), str(clip.path), "-o", str(tmp_path / "o.mp4"), "--render-passes", "1",
              "--no-keep-identity"])
    assert not (tmp_path / "o.mp4").exists()


def test_eval_and_bench_parse_render_passes():
    from backend.cli import build_parser
    from backend.commands.bench import load_benchmark

    p = build_parser()
    assert p.parse_args(["eval", "--media", "m", "--render-passes", "2"]).render_passes == 2
    assert p.parse_args(["eval", "--media", "m"]).render_passes == 1     # as the product drives
    import argparse

    bp = argparse.ArgumentParser()
    load_benchmark("arkit").add_arguments(bp)
    assert bp.parse_args(["--render-passes", "1"]).render_passes == 1
    assert bp.parse_args([]).render_passes == 0
    assert p.parse_args(["retarget", "a", "v", "--render-passes", "1"]).render_passes == 1


def test_render_pass_mode_flags_reach_the_options_and_bad_values_are_refused(capsys):
    import argparse

    from backend.cli import build_parser
    from backend.commands.bench import load_benchmark
    from backend.commands.render import RENDER_PASS_MODES, render_pass_options
    from backend.face.render_compare import RENDER_PASS_MODES as MODES

    assert RENDER_PASS_MODES == MODES
    p = build_parser()
    for argv in (["track", "v.mp4", "-o", "t.npz", "--avatar", "a"], ["retarget", "a", "v"], ["eval", "--media", "m"]):
        every = 1 if argv[0] == "eval" else 6      # eval renders only the frames it scores: no keyframes
        a = p.parse_args([*argv, "--render-passes", "1", "--render-pass-mode", "full",
                          "--render-pass-threshold", "0.5"])
        assert render_pass_options(a) == {"render_pass_mode": "full", "render_pass_threshold_px": 0.5,
                                          "render_pass_every": every}
        d = p.parse_args(argv)
        assert render_pass_options(d) == {"render_pass_mode": "upper", "render_pass_threshold_px": 1.0,
                                          "render_pass_every": every}
        if argv[0] != "eval":
            assert render_pass_options(p.parse_args([*argv, "--render-pass-every", "3"]))["render_pass_every"] == 3
            with pytest.raises(SystemExit):
                p.parse_args([*argv, "--render-pass-every", "0"])
            assert "--render-pass-every" in capsys.readouterr().err
        for bad in (["--render-pass-mode", "shift"], ["--render-pass-threshold", "-1"],
                    ["--render-pass-threshold", "nan"], ["--render-pass-threshold", "px"]):
            with pytest.raises(SystemExit):
                p.parse_args([*argv, *bad])
            err = capsys.readouterr().err
            assert "--render-pass-" in err and "Traceback" not in err
    bp = argparse.ArgumentParser()
    load_benchmark("arkit").add_arguments(bp)
    a = bp.parse_args(["--render-pass-mode", "similarity", "--render-pass-threshold", "2"])
    assert (a.render_pass_mode, a.render_pass_threshold) == ("similarity", 2.0)


def test_eval_passes_the_render_pass_mode_to_the_refit(astronaut, preview_assets, monkeypatch):
    """EvalOptions -> ReenactmentOptions -> the TrackOptions refit_for_avatar hands the passes."""
    from types import SimpleNamespace

    from backend.eval.protocols import reenactment
    from backend.face import track as track_mod
    from backend.face.track import TrackOptions, track_video

    avatar, model, _ = astronaut
    clip = synthetic_clip(preview_assets)
    track = track_video(clip.path, model, TrackOptions(torso=False))
    seen = []
    real = track_mod.track_with_render_passes

    def spy(model_, lm, has, cam, fps, opts, *a, **k):
        seen.append((opts.render_pass_mode, opts.render_pass_threshold_px, opts.smoothing))
        return real(model_, lm, has, cam, fps, opts, *a, **k)

    monkeypatch.setattr(track_mod, "track_with_render_passes", spy)
    tc = SimpleNamespace(track=track, frames={0: None, 8: None}, path=None)
    build = SimpleNamespace(avatar=avatar, model=model, observation=SimpleNamespace(crop=track.crop))
    reenactment.refit_for_avatar(tc, build, reenactment.ReenactmentOptions(
        lods=(0,), render_passes=1, render_pass_mode="rigid", render_pass_threshold_px=0.7, track={"smoothing": 1.0}))
    assert seen == [("rigid", 0.7, 1.0)]


def test_frame_camera_projects_where_the_crop_maps_back():
    """AvatarReader.frame_camera: a point seen by the fit's (crop) camera lands, in the whole source
    frame's camera (downscaled as the tracker reads it), where the crop maps that pixel back."""
    from backend.avatar.render_compare import AvatarReader
    from backend.face.crop import CropInfo, source_camera

    cam = source_camera()
    crop = CropInfo(x0=-40, y0=130, side=700, size=512, source_size=(1920, 1080))
    view, s = AvatarReader.frame_camera(cam, crop, max_side=1280)
    assert (view.width, view.height) == (1280, 720) and s == pytest.approx(1280 / 1920)
    pts = np.random.default_rng(0).normal(0, 0.05, (50, 3)).astype(np.float32)
    uv_crop, _ = cam.project(pts)
    uv_frame, _ = view.project(pts)
    np.testing.assert_allclose(uv_frame / s, crop.to_source(uv_crop), atol=1e-3)
    full, s1 = AvatarReader.frame_camera(cam, crop)
    assert (full.width, full.height, s1) == (1920, 1080, 1.0)


def test_self_reenactment_refit_renders_only_the_kept_frames(astronaut, preview_assets, monkeypatch):
    """eval's refit_for_avatar with ReenactmentOptions.render_passes: the kept (scored) frames are
    rendered, read in the whole source frame (the photo's crop passed on) and re-fitted; the
    others keep the plain fit's target."""
    from types import SimpleNamespace

    from backend.avatar import render_compare as arc
    from backend.eval.protocols.reenactment import ReenactmentOptions, refit_for_avatar
    from backend.face.track import TrackOptions, track_video

    avatar, model, _ = astronaut
    clip = synthetic_clip(preview_assets)
    track = track_video(clip.path, model, TrackOptions(torso=False))
    calls = []
    real = arc.AvatarReader.__call__

    def spy(self, params, camera, progress=None, crop=None, max_side=None):
        calls.append((params.n_frames, crop, max_side))
        return real(self, params, camera, progress, crop=crop, max_side=max_side)

    monkeypatch.setattr(arc.AvatarReader, "__call__", spy)
    kept = {0: None, 8: None, 16: None}
    tc = SimpleNamespace(track=track, frames=kept, path=None)
    build = SimpleNamespace(avatar=avatar, model=model, observation=SimpleNamespace(crop=track.crop))
    plain, _ = refit_for_avatar(tc, build, ReenactmentOptions(lods=(0,), render_passes=0))
    assert calls == []
    passes, _ = refit_for_avatar(tc, build, ReenactmentOptions(lods=(0,), render_passes=1, render_pass_mode="full"))
    assert [(n, c) for n, c, _ in calls] == [(2, track.crop)]     # frames 8 and 16, frame 0 is the photo
    moved = np.abs(passes.pose - plain.pose).max(axis=(1, 2))
    assert moved[[8, 16]].min() > 1e-4
    assert moved[[1, 2, 3]].max() < 0.2 * moved[[8, 16]].min()    # not rendered: only the batch solve differs


def test_the_outline_pass_tilts_the_track_to_the_avatars_outline(astronaut, preview_assets):
    """face.track.track_video(outline=...) with a real avatar renderer, on the synthetic clip of the
    astronaut avatar (its frames' mattes read by the tracker's segmenter, its true parameters known):
    the landmarks leave the head nodded about 2 deg forward of the truth (mean error 1.87 deg), the
    outline pass takes a good part of that away (1.54 deg); an avatar whose renders come out nodded
    6 deg forward of the parameters they are given is tilted back by most of that more; only the
    pose and the placement change. The segmenter's matte of a frame lies 1-2 px inside the render's
    alpha > 0.5 all round, and compared at alpha 0.5 the pass tilted every frame back 2-6 deg, past
    the truth (2.07 deg after it); it compares at the alpha level that matches the matte's area
    (pitch_pass.matched_level). What is left overshoots on the frames of the jaw's widest opening
    and the turn's end (8-12, 24-28: 2-3.5 deg back of the truth). The forty-sixth session's avatar
    (its fringe paint on the head model) read 2.35 -> 1.40 deg at alpha 0.5 and 2.35 -> 0.89 deg
    matched."""
    from backend.avatar.render_compare import AvatarAlpha
    from backend.face.pitch_pass import with_offsets
    from backend.face.track import TrackOptions, avatar_hold, track_video
    from backend.rotations import axis_angle_to_matrix

    avatar, model, _ = astronaut
    clip = synthetic_clip(preview_assets)
    hold = avatar_hold(avatar.params.shape, avatar.params.pose)
    alpha = AvatarAlpha(avatar, model)

    def nodded(params, camera):   # the avatar's outline 6 deg forward of the parameters it is given
        return alpha(with_offsets(model, params, camera, np.arange(params.n_frames), np.full(params.n_frames, 6.0)),
                     camera)

    opts = TrackOptions(torso=False, render_pass_every=4)
    plain = track_video(clip.path, model, opts, **hold).params
    same = track_video(clip.path, model, opts, outline=alpha, **hold).params
    tilted = track_video(clip.path, model, opts, outline=nodded, **hold).params

    def pitch(p, ref) -> np.ndarray:   # the head's pitch (global then neck) against ``ref``'s, degrees
        head = lambda q: np.einsum("tij,tjk->tik", axis_angle_to_matrix(q.pose[:, 0]),   # noqa: E731
                                   axis_angle_to_matrix(q.pose[:, 1]))
        rel = np.einsum("tji,tjk->tik", head(ref), head(p))
        return np.degrees(np.arctan2(rel[:, 2, 1], rel[:, 1, 1]))

    before, after = np.abs(pitch(plain, clip.params)).mean(), np.abs(pitch(same, clip.params)).mean()
    print(f"pitch error {before:.2f} -> {after:.2f} deg")
    assert before > 1.0 and after < 0.85 * before, (before, after)
    moved = pitch(tilted, same)
    print(f"nodded renders: moved {np.median(moved):.2f} deg on the median frame ({moved.min():.2f}..{moved.max():.2f})")
    # most of it: the candidates reach 8 deg back of the track, which already sits 2 deg forward
    assert -7.5 <= np.median(moved) <= -4.0 and moved.min() >= -8.5 and moved.max() <= -2.5, moved
    np.testing.assert_array_equal(tilted.expr, plain.expr)
    np.testing.assert_array_equal(tilted.shape, plain.shape)
