"""The tracker's render-and-compare passes (face/render_compare.py), without an avatar.

"The render read by mediapipe" is here the stand-in's landmark embedding moved by a known rest-frame
offset per landmark, depth included (the avatar's painted features off the embedding's points: they
slide against it when the head turns, so the offset in the image depends on the parameters). The
clip is that "render" at known head turns and expressions; the plain fit puts the embedding on the
clip, so its "render" misses the clip; the passes must bring the render onto it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.errors import InputError
from backend.face import source_camera
from backend.face.calibration import offset_calibration
from backend.face.fit import JOINT_NECK
from backend.face.landmark_model import LandmarkModel
from backend.face.render_compare import mean_distance, render_offsets
from backend.face.solver import Projector
from backend.face.track import TrackOptions, track_landmarks, track_with_render_passes
from backend.progress import Progress


@pytest.fixture(scope="module")
def model():
    from backend.head.loader import load_head_model

    return load_head_model(None)


@pytest.fixture(scope="module")
def seen(model) -> LandmarkModel:
    """The stand-in's landmarks as the fake 'render' shows them: about 1 mm off in the image plane
    and 3 mm in depth per landmark, plus 4 mm of depth common to all."""
    lmm = LandmarkModel.from_model(model)
    rng = np.random.default_rng(0)
    off = rng.normal(0, 1e-3, (lmm.n_landmarks, 3))
    off[:, 2] = rng.normal(0, 3e-3, lmm.n_landmarks) + 4e-3
    off[~lmm.valid] = 0.0
    return offset_calibration(lmm, off, tuple(model.expr_names)).apply(lmm)


def _pixels(m: LandmarkModel, shape, expr, pose, transl) -> np.ndarray:
    """(T, L, 2) source-camera px of ``m`` at the given (T-frame) coefficients and joints."""
    cam = source_camera()
    f64 = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    T = len(pose)
    c = torch.cat([f64(shape)[: m.n_shape][None].expand(T, -1), f64(expr)[:, : m.n_expr]], 1)
    uv, _ = Projector(cam.K, cam.viewmat).project(m.points(c, f64(pose), f64(transl)))
    return uv.numpy()


class FakeReader:
    """A RenderReader reading ``m``'s landmarks at the parameters (no render), counting calls."""

    def __init__(self, m: LandmarkModel, lose: int | None = None) -> None:
        self.m, self.calls, self.frames, self.lose = m, 0, [], lose

    def __call__(self, params, camera, progress: Progress) -> np.ndarray:
        self.calls += 1
        self.frames.append(params.n_frames)
        out = _pixels(self.m, params.shape, params.expr, params.pose, params.transl)
        if self.lose is not None:           # mediapipe finds no face on this render
            out[self.lose] = np.nan
        for i in range(params.n_frames):
            progress.report((i + 1) / params.n_frames, "read")
        return out


def _clip(model, seen: LandmarkModel, T: int = 9):
    yaw = np.radians(np.linspace(-25.0, 25.0, T))
    pose = np.zeros((T, 5, 3))
    pose[:, JOINT_NECK, 1] = yaw
    expr = np.zeros((T, model.n_expr))
    rng = np.random.default_rng(1)
    expr[:, :8] = rng.uniform(0.0, 0.5, (T, 8))
    return _pixels(seen, np.zeros(model.n_shape), expr, pose, np.zeros((T, 3))).astype(np.float32)


HOLD = {"global_rotation": np.zeros(3)}


def test_render_offsets_is_read_minus_fitted_and_zero_where_unread():
    read = np.array([[[1.0, 2.0]], [[np.nan, np.nan]]])
    fitted = np.array([[[0.5, 2.5]], [[3.0, 4.0]]])
    np.testing.assert_allclose(render_offsets(read, fitted), [[[0.5, -0.5]], [[0.0, 0.0]]])
    assert mean_distance(read, fitted) == pytest.approx(np.hypot(0.5, 0.5))


def test_passes_bring_the_render_onto_the_clip(model, seen):
    obs = _clip(model, seen)
    T = len(obs)
    has = np.ones(T, bool)
    cam = source_camera()
    opts = TrackOptions(smoothing=0.0)
    hold = {**HOLD, "identity": np.zeros(model.n_shape)}
    reader = FakeReader(seen)
    reports = []
    prog = Progress(callback=lambda f, m: reports.append((f, m)))
    _, _, _, st = track_with_render_passes(model, obs, has, cam, 25.0, opts, reader, 2, prog,
                                           measure_last=True, outline=True, **hold)
    # |R - O| after each pass: the plain fit's render misses the clip by the offsets' size; each
    # pass takes most of it away
    r = st.render_to_obs
    assert len(r) == 3 and reader.calls == 3 and st.read == [T, T, T]
    assert r[0] > 1.5, r
    assert r[1] < 0.35 * r[0], r
    assert r[2] < r[1] < 0.1 * r[0], r
    # the plain fit's render-to-model distance is the offsets themselves
    assert st.render_to_model[0] > 1.5
    assert any("render pass 2" in m for _, m in reports)
    assert all(0.0 <= f <= 1.0 for f, _ in reports)
    # by default the face outline keeps its plain target: the rest still comes onto the clip, the
    # outline's own offset stays
    _, _, _, st_def = track_with_render_passes(model, obs, has, cam, 25.0, opts, FakeReader(seen), 1,
                                               measure_last=True, **hold)
    assert r[1] < st_def.render_to_obs[1] < 0.35 * r[0], (r, st_def.render_to_obs)
    # passes = 0 is the plain fit
    plain, _, _ = track_landmarks(model, obs, has, cam, 25.0, opts, **hold)
    p0, _, _, st0 = track_with_render_passes(model, obs, has, cam, 25.0, opts, reader, 0, **hold)
    np.testing.assert_array_equal(p0.pose, plain.pose)
    assert st0.render_to_obs == []


def test_only_the_chosen_frames_are_rendered_and_refitted(model, seen):
    obs = _clip(model, seen)
    T = len(obs)
    has = np.ones(T, bool)
    has[4] = False
    obs[4] = np.nan
    cam = source_camera()
    opts = TrackOptions(smoothing=0.0)
    hold = {**HOLD, "identity": np.zeros(model.n_shape)}
    plain, _, _ = track_landmarks(model, obs, has, cam, 25.0, opts, **hold)
    reader = FakeReader(seen, lose=1)       # the second chosen frame's render shows no face
    frames = np.array([2, 4, 6, 8])          # frame 4 has no face: not rendered
    p, _, _, st = track_with_render_passes(model, obs, has, cam, 25.0, opts, reader, 1, frames=frames, **hold)
    np.testing.assert_array_equal(st.frames, [2, 6, 8])
    assert reader.frames == [3] and st.read == [2]
    moved = np.abs(p.pose - plain.pose).max(axis=(1, 2)) > 1e-4
    assert moved[[2, 8]].all()
    # unread frame 6 and the frames not chosen keep the plain target (only the warm start differs)
    assert not moved[[0, 1, 6]].any(), np.abs(p.pose - plain.pose).max(axis=(1, 2))


def test_track_video_refuses_passes_without_an_avatar(tmp_path):
    from backend.face.track import track_video

    with pytest.raises(InputError, match="render passes need the avatar"):
        track_video(tmp_path / "none.mp4", None, TrackOptions(render_passes=1))
    with pytest.raises(InputError, match=">= 0"):
        track_video(tmp_path / "none.mp4", None, TrackOptions(render_passes=-1), reader=FakeReader(None))


def test_the_offsets_are_smoothed_like_the_observation_when_every_frame_is_rendered(model, seen):
    """A reader whose readings jitter (as mediapipe's do from frame to frame): with the tracker's
    smoothing on, the re-fitted head moves less from frame to frame than without it."""
    obs = _clip(model, seen, T=15)
    T = len(obs)
    has = np.ones(T, bool)
    cam = source_camera()
    hold = {**HOLD, "identity": np.zeros(model.n_shape)}
    rng = np.random.default_rng(3)
    jitter = rng.normal(0.0, 0.4, (T, 1, 2))            # px: the whole face read off by a jitter

    class Jittery(FakeReader):
        def __call__(self, params, camera, progress):
            return super().__call__(params, camera, progress) + jitter[: params.n_frames]

    def wobble(smoothing: float) -> float:
        opts = TrackOptions(smoothing=smoothing, smooth_max_px=0.5)
        p, _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, opts, Jittery(seen), 1, outline=True,
                                              **hold)
        return float(np.abs(np.diff(p.transl[:, :2], 2, axis=0)).mean())

    assert wobble(2.0) < 0.8 * wobble(0.0)


# ------------------------------------------------------------------ rigid modes (one motion a frame)
def _rigid_reference(d: np.ndarray, m: np.ndarray, inner: np.ndarray, mode: str, tau: float) -> np.ndarray:
    """Frame by frame, the plain way: the mean shift over ``inner`` soft-thresholded by hand; for
    "similarity" a least-squares fit of R = A M + t (A = [[a, -b], [b, a]]) by np.linalg.lstsq,
    whose displacement A M + t - M has its mean over ``inner`` swapped for the thresholded one."""
    out = np.zeros_like(d)
    for f in range(len(d)):
        s = d[f, inner].mean(axis=0)
        n = float(np.hypot(*s))
        st = s * max(0.0, 1.0 - tau / n) if n > 0 else s
        if mode == "rigid":
            out[f] = st
            continue
        rows, rhs = [], []
        for j in inner:
            x, y = m[f, j]
            rx, ry = m[f, j] + d[f, j]
            rows += [[x, -y, 1.0, 0.0], [y, x, 0.0, 1.0]]
            rhs += [rx, ry]
        a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
        for j in range(d.shape[1]):
            x, y = m[f, j]
            disp = np.array([a * x - b * y + tx - x, b * x + a * y + ty - y])
            out[f, j] = disp - s + st
    return out


@pytest.mark.parametrize("mode", ["rigid", "similarity"])
@pytest.mark.parametrize("tau", [0.0, 1.0, 40.0])
def test_rigid_offsets_match_the_plain_reference(mode, tau):
    from backend.face.mediapipe_face import FACE_OVAL
    from backend.face.render_compare import rigid_offsets

    rng = np.random.default_rng(7)
    F, L = 5, 478
    m = rng.uniform(100.0, 400.0, (F, L, 2))
    # per frame a similarity (0-4 deg, +-3 % scale, up to 4 px shift) plus reading noise
    ang = np.radians(rng.uniform(-4, 4, F))
    sc = 1.0 + rng.uniform(-0.03, 0.03, F)
    A = sc[:, None, None] * np.stack([np.stack([np.cos(ang), -np.sin(ang)], -1),
                                      np.stack([np.sin(ang), np.cos(ang)], -1)], 1)
    t = rng.uniform(-4, 4, (F, 1, 2))
    c = m.mean(axis=1, keepdims=True)
    r = np.einsum("fij,flj->fli", A, m - c) + c + t + rng.normal(0, 0.5, (F, L, 2))
    d = r - m
    d[2] = 0.0                                   # a render mediapipe did not read
    inner = np.setdiff1d(np.arange(L), list(FACE_OVAL))
    got = rigid_offsets(d, m, inner, mode, tau)
    np.testing.assert_allclose(got, _rigid_reference(d, m, inner, mode, tau), atol=1e-8)
    np.testing.assert_array_equal(got[2], 0.0)
    if mode == "rigid":                          # one shift a frame, the same for every landmark
        np.testing.assert_allclose(got, got[:, :1].repeat(L, axis=1))


def test_soft_threshold_leaves_a_shift_within_the_noise_alone():
    from backend.face.render_compare import soft_threshold

    s = np.array([[0.6, -0.8], [3.0, 4.0], [0.0, 0.0]])      # |s| = 1, 5, 0
    np.testing.assert_allclose(soft_threshold(s, 1.0), [[0.0, 0.0], [2.4, 3.2], [0.0, 0.0]])
    np.testing.assert_allclose(soft_threshold(s, 0.0), s)


class ShiftedReader(FakeReader):
    """Reads ``m``'s landmarks displaced by one known shift (px): the render lies that far off."""

    def __init__(self, m: LandmarkModel, shift) -> None:
        super().__init__(m)
        self.shift = np.asarray(shift, np.float64)

    def __call__(self, params, camera, progress: Progress) -> np.ndarray:
        return super().__call__(params, camera, progress) + self.shift


def _mean_shift(read: np.ndarray, obs: np.ndarray) -> np.ndarray:
    """(F, 2) each frame's mean of R - O over the landmarks inside the outline."""
    from backend.face.mediapipe_face import FACE_OVAL

    inner = np.setdiff1d(np.arange(obs.shape[1]), list(FACE_OVAL))
    return (np.asarray(read, np.float64) - obs)[:, inner].mean(axis=1)


@pytest.mark.parametrize("mode", ["rigid", "similarity"])
def test_the_rigid_pass_removes_a_known_shift_and_keeps_the_expression(model, mode):
    """The clip is the stand-in's own embedding (the plain fit puts M on O); the 'render' is read
    3 px right and 2 px up of M. The rigid pass moves the head so the render lands on the clip (to
    within the threshold, which is left as it is), and changes the expression less than the full
    pass does."""
    lmm = LandmarkModel.from_model(model)
    obs = _clip(model, lmm)
    T = len(obs)
    has = np.ones(T, bool)
    cam = source_camera()
    hold = {**HOLD, "identity": np.zeros(model.n_shape)}
    shift = (3.0, -2.0)
    plain, _, _ = track_landmarks(model, obs, has, cam, 25.0, TrackOptions(smoothing=0.0), **hold)
    res = {}
    for tau in (0.0, 1.0):
        reader = ShiftedReader(lmm, shift)
        opts = TrackOptions(smoothing=0.0, render_pass_mode=mode, render_pass_threshold_px=tau)
        p, _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, opts, reader, 1, **hold)
        after = _mean_shift(ShiftedReader(lmm, shift)(p, cam, Progress()), obs)
        before = _mean_shift(ShiftedReader(lmm, shift)(plain, cam, Progress()), obs)
        np.testing.assert_allclose(before, np.broadcast_to(shift, before.shape), atol=0.05)
        res[tau] = (p, np.linalg.norm(after, axis=1))
    assert res[0.0][1].max() < 0.15, res[0.0][1]                    # the whole shift gone
    np.testing.assert_allclose(res[1.0][1], 1.0, atol=0.15)         # all but the threshold's 1 px
    # the head moved, not the face: the expression stays near the plain fit's
    full, _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, TrackOptions(smoothing=0.0),
                                             ShiftedReader(lmm, shift), 1, outline=True, **hold)
    moved = np.abs(res[0.0][0].expr - plain.expr).mean()
    assert moved < np.abs(full.expr - plain.expr).mean() + 1e-6


def _plain_fit(model, T: int = 5):
    """(lmm, clip landmarks, has_face, camera, hold, the plain fit) of the stand-in's own clip."""
    lmm = LandmarkModel.from_model(model)
    obs = _clip(model, lmm, T=T)
    has = np.ones(len(obs), bool)
    cam = source_camera()
    hold = {**HOLD, "identity": np.zeros(model.n_shape)}
    plain, _, _ = track_landmarks(model, obs, has, cam, 25.0, TrackOptions(smoothing=0.0), **hold)
    return lmm, obs, has, cam, hold, plain


def test_a_shift_within_the_threshold_leaves_the_fit_alone(model):
    lmm, obs, has, cam, hold, plain = _plain_fit(model)
    opts = TrackOptions(smoothing=0.0, render_pass_mode="rigid", render_pass_threshold_px=1.0)
    p, _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, opts, ShiftedReader(lmm, (0.5, 0.6)), 1,
                                          **hold)
    np.testing.assert_allclose(p.pose, plain.pose, atol=1e-9)
    np.testing.assert_allclose(p.transl, plain.transl, atol=1e-9)
    # the same shift with no threshold moves the head
    opts0 = TrackOptions(smoothing=0.0, render_pass_mode="rigid", render_pass_threshold_px=0.0)
    p0, _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, opts0, ShiftedReader(lmm, (0.5, 0.6)), 1,
                                           **hold)
    assert np.abs(p0.transl - plain.transl).max() > 1e-5


def test_keyframes_and_their_interpolation_match_a_plain_reference():
    from backend.face.track import interpolate_offsets, keyframes

    np.testing.assert_array_equal(keyframes(np.array([2, 3, 5, 6, 7, 9, 10]), 3), [2, 6, 10])
    np.testing.assert_array_equal(keyframes(np.array([2, 3, 5, 6, 7, 9]), 3), [2, 6, 9])   # the last kept
    np.testing.assert_array_equal(keyframes(np.arange(4), 1), np.arange(4))
    rng = np.random.default_rng(3)
    keys = np.array([1, 4, 6, 11, 15])
    vals = rng.normal(0, 2, (len(keys), 7, 2))
    vals[2] = np.nan                                     # a render mediapipe did not read
    frames = np.arange(0, 18)
    got = interpolate_offsets(keys, vals, frames)
    ok = np.isfinite(vals).all(axis=(1, 2))
    ref = np.empty((len(frames), 7, 2))
    for l in range(7):
        for c in range(2):
            ref[:, l, c] = np.interp(frames, keys[ok], vals[ok, l, c])   # held beyond the ends
    np.testing.assert_allclose(got, ref, atol=1e-12)
    assert np.all(interpolate_offsets(keys, np.full_like(vals, np.nan), frames) == 0.0)


class TurningShiftReader(FakeReader):
    """Reads ``m``'s landmarks displaced by a shift that follows the head's turn (a smooth function
    of the neck's yaw, px), as the avatar's paint slides against the embedding when the head turns."""

    def __call__(self, params, camera, progress: Progress) -> np.ndarray:
        out = super().__call__(params, camera, progress)
        yaw = np.asarray(params.pose, np.float64)[:, JOINT_NECK, 1]
        return out + np.stack([8.0 * yaw + 30.0 * yaw ** 2, -2.0 + 0 * yaw], 1)[:, None, :]


def test_keyframed_passes_read_few_frames_and_land_as_every_frame_does(model):
    """render_pass_every=4 renders 4 of 13 frames and interpolates the offsets between: the render
    lands on the clip nearly as with every frame rendered (linear interpolation of a shift curved in
    the yaw, keys 0.29 rad apart: at most 30 * 0.29^2 / 4 = 0.63 px off), far nearer than the plain
    fit's."""
    lmm = LandmarkModel.from_model(model)
    obs = _clip(model, lmm, T=13)
    T = len(obs)
    has = np.ones(T, bool)
    cam = source_camera()
    hold = {**HOLD, "identity": np.zeros(model.n_shape)}
    base = dict(smoothing=0.0, render_pass_mode="rigid", render_pass_threshold_px=0.0)
    every = TurningShiftReader(lmm)
    p1, _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, TrackOptions(**base), every, 1, **hold)
    keyed = TurningShiftReader(lmm)
    p4, _, _, stats = track_with_render_passes(model, obs, has, cam, 25.0,
                                               TrackOptions(**base, render_pass_every=4), keyed, 1, **hold)
    assert every.frames == [T] and keyed.frames == [4]
    np.testing.assert_array_equal(stats.frames, [0, 4, 8, 12])
    plain, _, _ = track_landmarks(model, obs, has, cam, 25.0, TrackOptions(smoothing=0.0), **hold)
    miss = {k: np.linalg.norm(_mean_shift(TurningShiftReader(lmm)(p, cam, Progress()), obs), axis=1)
            for k, p in (("plain", plain), ("every", p1), ("keyed", p4))}
    assert miss["plain"].min() > 1.9                     # the plain fit's render misses the clip
    assert miss["every"].max() < 0.15, miss["every"]                       # measured 0.10
    assert miss["every"].max() < miss["keyed"].max() < 0.7, miss["keyed"]   # measured 0.64
    with pytest.raises(InputError, match="render pass interval"):
        track_with_render_passes(model, obs, has, cam, 25.0, TrackOptions(**base, render_pass_every=0),
                                 TurningShiftReader(lmm), 1, **hold)


@pytest.mark.parametrize("bad, match", [({"render_pass_mode": "shift"}, "render pass mode must be one of"),
                                        ({"render_pass_threshold_px": -1.0}, "threshold"),
                                        ({"render_pass_threshold_px": float("nan")}, "threshold")])
def test_bad_render_pass_options_are_refused(model, tmp_path, bad, match):
    from backend.face.track import track_video

    obs = _clip(model, LandmarkModel.from_model(model), T=3)
    with pytest.raises(InputError, match=match):
        track_with_render_passes(model, obs, np.ones(3, bool), source_camera(), 25.0, TrackOptions(**bad),
                                 FakeReader(None), 1, **HOLD)
    with pytest.raises(InputError, match=match):     # before the clip is opened
        track_video(tmp_path / "none.mp4", None, TrackOptions(render_passes=1, **bad), reader=FakeReader(None))


# ------------------------------------------------------------------ "upper": the skull's own offsets
def _upper_reference(d: np.ndarray, m: np.ndarray, inner: np.ndarray, tau: float, cut: int = 2) -> np.ndarray:
    """Frame by frame and landmark by landmark: the thresholded mean shift over ``inner`` for all,
    plus, for face-mesh landmarks of ``inner`` above landmark ``cut`` in M, the rest of their own
    offset shrunk by ``tau`` along itself."""
    out = np.zeros_like(d)
    for f in range(len(d)):
        s = d[f, inner].mean(axis=0)
        n = float(np.hypot(*s))
        st = s * max(0.0, 1.0 - tau / n) if n > 0 else s
        for j in range(d.shape[1]):
            out[f, j] = st
            if j in set(inner.tolist()) and j < 468 and m[f, j, 1] < m[f, cut, 1]:
                r = d[f, j] - st
                rn = float(np.hypot(*r))
                out[f, j] = st + (r * max(0.0, 1.0 - tau / rn) if rn > 0 else r)
    return out


@pytest.mark.parametrize("tau", [0.0, 1.0])
def test_upper_face_offsets_match_the_plain_reference(tau):
    from backend.face.mediapipe_face import FACE_OVAL
    from backend.face.render_compare import upper_face_offsets

    rng = np.random.default_rng(8)
    F, L = 4, 478
    m = rng.uniform(100.0, 400.0, (F, L, 2))
    d = rng.normal(0.0, 1.5, (F, L, 2)) + rng.uniform(-3, 3, (F, 1, 2))
    d[1] = 0.0                                   # a render mediapipe did not read
    inner = np.setdiff1d(np.arange(L), list(FACE_OVAL))
    got = upper_face_offsets(d, m, inner, tau)
    np.testing.assert_allclose(got, _upper_reference(d, m, inner, tau), atol=1e-9)
    np.testing.assert_array_equal(got[1], 0.0)
    below = m[..., 1] >= m[:, 2:3, 1]
    for f in (0, 2, 3):                          # below the nose, the outline and the irises: the shift only
        same = below[f] | np.isin(np.arange(L), list(FACE_OVAL)) | (np.arange(L) >= 468)
        np.testing.assert_allclose(got[f, same], np.broadcast_to(got[f, list(FACE_OVAL)[0]], (same.sum(), 2)))


class SkullReader(FakeReader):
    """Reads ``m``'s landmarks with the face above the nose's base 4 % larger about its centre (the
    render's head placed too near, as a wrong depth on a turned head reads) and the inner lips 3 px
    nearer each other each (the render's mouth read less open than the fit's geometry: a dark cavity)."""

    def __call__(self, params, camera, progress: Progress) -> np.ndarray:
        out = super().__call__(params, camera, progress)
        above = out[..., 1] < out[:, 2:3, 1]
        above[:, 468:] = False
        c = np.nanmean(np.where(above[..., None], out, np.nan), axis=1, keepdims=True)
        out = np.where(above[..., None], c + 1.04 * (out - c), out)
        out[:, 13, 1] += 3.0                      # upper inner lip down
        out[:, 14, 1] -= 3.0                      # lower inner lip up
        return out


def test_the_upper_pass_corrects_the_skull_and_moves_the_mouth_less_than_every_landmarks_own(model):
    lmm, obs, has, cam, hold, plain = _plain_fit(model)
    reader = SkullReader(lmm)
    up = obs[..., 1] < obs[:, 2:3, 1]
    up[:, 468:] = False

    def upper_error(p) -> float:
        r = reader(p, cam, Progress())
        return float(np.linalg.norm(r - obs, axis=-1)[up].mean())

    got = {}
    for mode, tau in (("upper", 1.0), ("upper", 0.0), ("full", 1.0)):
        opts = TrackOptions(smoothing=0.0, render_pass_mode=mode, render_pass_threshold_px=tau)
        got[mode, tau], _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, opts, reader, 1, **hold)
    before = upper_error(plain)
    # most of the misreading goes without a threshold (2.3 -> 0.6 px measured: the rig cannot scale the
    # upper face alone); with the reading's 1 px noise left alone per
    # landmark, what exceeds it
    assert upper_error(got["upper", 0.0]) < 0.35 * before, (before, upper_error(got["upper", 0.0]))
    assert upper_error(got["upper", 1.0]) < 0.6 * before, (before, upper_error(got["upper", 1.0]))
    got["upper"], got["full"] = got["upper", 1.0], got["full", 1.0]
    # the mouth's shapes move less than with every landmark's own offset, which also fits the
    # render's misread lips (0.06 against 0.11 mean weight measured; the head moved back 3 cm, which
    # the lower face's shapes partly make up for)
    names = list(model.expr_names)
    mouth = [i for i, n in enumerate(names) if n.startswith(("mouth", "jaw"))]
    moved = {k: np.abs(got[k].expr[:, mouth] - plain.expr[:, mouth]).mean() for k in ("upper", "full")}
    assert moved["upper"] < 0.7 * moved["full"], moved


def test_a_calibrated_tracker_gets_the_shift_only_in_the_upper_mode(model):
    """A calibration already places each landmark where mediapipe reads the avatar's render: with one,
    the upper pass is the rigid pass (the landmarks' own offsets would count that reading twice)."""
    lmm = LandmarkModel.from_model(model)
    obs = _clip(model, lmm, T=4)
    has = np.ones(len(obs), bool)
    cam = source_camera()
    cal = offset_calibration(lmm, np.zeros((lmm.n_landmarks, 3)), tuple(model.expr_names))
    hold = {**HOLD, "identity": np.zeros(model.n_shape), "calibration": cal}
    got = {}
    for mode in ("upper", "rigid"):
        opts = TrackOptions(smoothing=0.0, render_pass_mode=mode, render_pass_threshold_px=1.0)
        got[mode], _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, opts, SkullReader(lmm), 1, **hold)
    np.testing.assert_array_equal(got["upper"].expr, got["rigid"].expr)
    np.testing.assert_array_equal(got["upper"].pose, got["rigid"].pose)
    # without the calibration the upper pass does more than the shift
    del hold["calibration"]
    opts = TrackOptions(smoothing=0.0, render_pass_mode="upper", render_pass_threshold_px=1.0)
    free, _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, opts, SkullReader(lmm), 1, **hold)
    opts = TrackOptions(smoothing=0.0, render_pass_mode="rigid", render_pass_threshold_px=1.0)
    rigid, _, _, _ = track_with_render_passes(model, obs, has, cam, 25.0, opts, SkullReader(lmm), 1, **hold)
    assert np.abs(free.transl - rigid.transl).max() > 1e-4
