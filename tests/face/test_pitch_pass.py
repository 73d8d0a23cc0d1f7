"""face.pitch_pass: a frame pitched by an offset keeps its face and body where they were; the pass
takes the offset whose outline matches the frame's matte (a real silhouette renderer: the head
mesh's depth-buffer mask), keeps the track's pitch where nothing beats it; mattes cut by a crop;
keyframe offsets; the commands refuse the pass without the avatar it needs."""

from __future__ import annotations

import numpy as np
import pytest

from backend.face.crop import CROP_SIZE, CropInfo, crop_intrinsics, crop_viewmat
from backend.face.pitch_pass import (PitchPassOptions, _front_centre, front_vertices, keyframe_offsets,
                                     matched_level, outline_iou, pitched, silhouette_pitch, with_offsets)
from backend.face.track import matte_in_crop
from backend.head.loader import load_head_model
from backend.head.params import HeadParams
from backend.render.camera import Camera
from backend.rotations import axis_angle_to_matrix


@pytest.fixture(scope="module")
def model():
    return load_head_model()


@pytest.fixture(scope="module")
def cam():
    return Camera(crop_intrinsics(), crop_viewmat(), CROP_SIZE, CROP_SIZE)


def _frame(model) -> HeadParams:
    p = HeadParams.zeros(model)
    p.pose[0, 0] = (0.05, 0.3, 0.02)  # turned and tilted a little: the offset is about the head's own x axis
    p.transl[0] = (0.01, -0.02, 0.03)
    p.torso = np.array([[0.002, 0.004, 0.0]], np.float32)
    return p


def test_a_pitched_frame_keeps_its_face_and_body_in_place(model, cam):
    p = _frame(model)
    front = front_vertices(model, PitchPassOptions.front_share)
    goal, _ = _front_centre(model, p, cam, front)
    top = np.argmax(np.asarray(model.v_template)[:, 1])
    top_uv = {}
    for delta in (-8.0, 8.0):
        q = pitched(model, p, cam, delta, front)
        uv, _ = _front_centre(model, q, cam, front)
        assert np.abs(uv - goal).max() < 0.1                        # the face stays (px)
        np.testing.assert_allclose(q.transl + q.torso, p.transl + p.torso, atol=1e-6)  # so does the body
        rel = axis_angle_to_matrix(p.pose[0, 1]).T @ axis_angle_to_matrix(q.pose[0, 1])
        np.testing.assert_allclose(rel, [[1, 0, 0], [0, np.cos(np.radians(delta)), -np.sin(np.radians(delta))],
                                         [0, np.sin(np.radians(delta)), np.cos(np.radians(delta))]], atol=1e-5)
        top_uv[delta] = _top_row(model, q, cam, top)
    # the top of the head moves against the kept face: tilted back it lies lower in the image
    # than nodded forward (44 px between -8 and +8 deg here), which the flat face barely shows
    assert top_uv[-8.0] - top_uv[8.0] > 20.0, top_uv


def _top_row(model, p, cam, top) -> float:
    from backend.avatar.posing import lbs_numpy

    return float(cam.project(lbs_numpy(model, p)[0][0][top][None])[0][0, 1])


def _head_alpha(model):
    """An AlphaRenderer of the bare head mesh (its depth buffer's coverage), a real silhouette."""
    from backend.avatar.posing import lbs_numpy
    from backend.render.depth import rasterize_depth

    def render(params: HeadParams, camera: Camera) -> np.ndarray:
        verts = lbs_numpy(model, params)[0]
        return np.stack([np.asarray(rasterize_depth(v, model.faces, camera).mask, np.float32) for v in verts])
    return render


def _tilted_mattes(model, cam, render, truth: list[float], T: int):
    """(track, mattes, chin): a track of T copies of the reference frame, the mattes ``render`` draws of
    it tilted by each of ``truth`` (deg), and mediapipe's chin's row in ``cam``'s image."""
    from backend.avatar.posing import lbs_numpy

    front = front_vertices(model, PitchPassOptions.front_share)
    base = _frame(model)
    track = HeadParams(base.shape, np.repeat(base.expr, T, 0), np.repeat(base.pose, T, 0),
                       np.repeat(base.transl, T, 0), np.repeat(base.torso, T, 0))
    mattes = [render(pitched(model, base, cam, d, front), cam)[0] if d else render(base, cam)[0] for d in truth]
    chin_point = model.landmarks.points(lbs_numpy(model, base)[0][0], model.faces)[[152]]   # mediapipe's chin
    return track, mattes, float(cam.project(chin_point)[0][0, 1])


def test_the_pass_takes_the_tilt_the_outline_shows_and_keeps_the_rest(model, cam):
    """Three frames of one track: the first's matte is the head tilted back 6 deg further than the
    track has it, the second's nodded 4 deg forward, the third's is the track's own; a fourth frame
    has no matte. The pass pitches the first two by those offsets (their outline IoU above the chin
    rising to 1) and leaves the others as they were, bit for bit; frames it was not given too."""
    render = _head_alpha(model)
    front = front_vertices(model, PitchPassOptions.front_share)
    base = _frame(model)
    track, mattes, chin = _tilted_mattes(model, cam, render, [-6.0, 4.0, 0.0], 6)
    mattes.append(None)
    frames = np.array([1, 2, 3, 4])
    stats = silhouette_pitch(model, track, cam, frames, mattes, np.full(4, chin), render,
                             PitchPassOptions(work_px=256))
    out = with_offsets(model, track, cam, frames, stats.offsets_deg)
    np.testing.assert_allclose(stats.offsets_deg, [-6.0, 4.0, 0.0, 0.0], atol=0.25)   # the peak between the candidates
    assert stats.offsets_deg[2] == 0.0 and stats.offsets_deg[3] == 0.0
    assert np.all(stats.iou_taken[:2] > stats.iou_track[:2] + 0.02) and np.all(stats.iou_taken[:3] > 0.97)
    assert np.isnan(stats.iou_track[3])
    for t, d in ((1, stats.offsets_deg[0]), (2, stats.offsets_deg[1])):
        want = pitched(model, base, cam, d, front)
        np.testing.assert_allclose(out.pose[t], want.pose[0], atol=1e-6)
        np.testing.assert_allclose(out.transl[t] + out.torso[t], track.transl[t] + track.torso[t], atol=1e-6)
    for t in (0, 3, 4, 5):
        np.testing.assert_array_equal(out.pose[t], track.pose[t])
        np.testing.assert_array_equal(out.transl[t], track.transl[t])
        np.testing.assert_array_equal(out.torso[t], track.torso[t])
    # a gain below min_gain keeps the track's pitch
    kept = silhouette_pitch(model, track, cam, frames[:1], mattes[:1], np.full(1, chin), render,
                            PitchPassOptions(work_px=256, min_gain=1.0))
    assert kept.offsets_deg[0] == 0.0
    with pytest.raises(ValueError, match="mattes"):
        silhouette_pitch(model, track, cam, frames, mattes[:2], np.full(4, chin), render)


def test_a_render_s_soft_rim_does_not_tilt_the_pass(model, cam):
    """A Gaussian render's alpha fades out past the outline a segmenter draws (on the synthetic clip of
    the astronaut avatar the segmenter's matte of each frame lay 1-2 px inside the render's alpha >
    0.5 all round, thickest over the hair): the pass pitched the head back to shrink the hair's top
    into the matte. It compares the outlines at the alpha level that holds as many pixels above the
    chin as the matte at the track's pitch (matched_level). Here the renderer's alpha is the head
    mesh grown by 3 px and blurred by 2 px: the truth [-6, 4, 0] comes back within 1 deg; compared
    at alpha 0.5 (max_level 0.5) the pass took -8 deg for all three frames."""
    from scipy.ndimage import binary_dilation, gaussian_filter

    head = _head_alpha(model)

    def soft(params: HeadParams, camera: Camera) -> np.ndarray:
        return np.stack([gaussian_filter(binary_dilation(a > 0.5, iterations=3).astype(np.float32), 2.0)
                         for a in head(params, camera)])

    truth = [-6.0, 4.0, 0.0]
    track, mattes, chin = _tilted_mattes(model, cam, head, truth, 3)
    frames = np.arange(3)
    matched = silhouette_pitch(model, track, cam, frames, mattes, np.full(3, chin), soft, PitchPassOptions(work_px=256))
    plain = silhouette_pitch(model, track, cam, frames, mattes, np.full(3, chin), soft,
                             PitchPassOptions(work_px=256, max_level=0.5))
    print("matched", matched.offsets_deg, "at 0.5", plain.offsets_deg)
    np.testing.assert_allclose(matched.offsets_deg, truth, atol=1.0)
    assert np.abs(plain.offsets_deg - truth).max() > 2.0


def test_matched_level_holds_the_matte_s_pixel_count():
    """matched_level: the alpha level whose pixels above the chin number the matte's, within
    [0.5, max_level]; 0.5 when the alpha is no larger than the matte or the matte is empty."""
    rng = np.random.default_rng(3)
    alpha = rng.random((40, 30)).astype(np.float32)
    matte = np.zeros((40, 30), np.float32)
    matte[:20, :10] = 1.0                                   # 200 px above row 20
    level = matched_level(alpha, matte, 20.0, max_level=0.99)
    assert 0.5 < level < 0.99
    assert np.count_nonzero(alpha[:20] > level) == 200
    assert matched_level(alpha, matte, 20.0, max_level=0.6) == pytest.approx(0.6)
    assert matched_level(np.zeros((40, 30)), matte, 20.0) == 0.5      # the alpha is the smaller
    assert matched_level(alpha, np.zeros((40, 30)), 20.0) == 0.5      # no matte


def test_outline_iou_counts_only_the_rows_above_the_chin():
    a = np.zeros((10, 10)); m = np.zeros((10, 10))
    a[2:5, 2:5] = 1; m[3:6, 2:5] = 1      # above row 5: a 9 px, m 6 px, 6 shared
    a[7:, :] = 1                           # below the chin: not counted
    assert outline_iou(a, m, 5.0) == pytest.approx(6 / 9)
    assert np.isnan(outline_iou(np.zeros((4, 4)), np.zeros((4, 4)), 4.0))


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_a_frames_matte_is_cut_by_the_crop(scale):
    """face.track.matte_in_crop: a matte of the whole frame at any scale lands in the crop where the
    frame's pixels do (within a pixel of the crop's), zero past the frame's edge."""
    W, H = 640, 480
    crop = CropInfo(x0=100, y0=-40, side=400, size=512, source_size=(W, H))
    matte = np.zeros((round(H * scale), round(W * scale)), np.float32)
    r0, r1, c0, c1 = (np.array([200, 300, 250, 370]) * scale).astype(int)
    matte[r0:r1, c0:c1] = 1.0
    cut = matte_in_crop(matte, (W, H), crop)
    ys, xs = np.nonzero(cut > 0.5)
    k = crop.size / crop.side
    top, bottom, left, right = r0 / scale, r1 / scale, c0 / scale, c1 / scale   # the rectangle in frame px
    assert abs(ys.min() - (top + 40) * k) <= 1.5 and abs(ys.max() + 1 - (bottom + 40) * k) <= 1.5
    assert abs(xs.min() - (left - 100) * k) <= 1.5 and abs(xs.max() + 1 - (right - 100) * k) <= 1.5
    assert cut[: int(40 * k) - 1].max() == 0.0    # above the frame's top edge
    u8 = matte_in_crop((matte * 255).astype(np.uint8), (W, H), crop)
    np.testing.assert_allclose(u8, cut, atol=1e-6)


def test_keyframe_offsets_drop_a_lone_outlier_and_interpolate():
    keys = np.array([0, 6, 12, 18, 24])
    got = keyframe_offsets(np.arange(25), keys, np.array([-4.0, -4.0, 4.0, -4.0, -6.0]))
    assert got[12] == -4.0                          # the lone +4 is gone
    assert got[21] == pytest.approx(-5.0)           # halfway between -4 and -6
    np.testing.assert_array_equal(keyframe_offsets(np.arange(5), np.array([2]), np.array([-2.0])), -2.0)


def test_the_commands_refuse_an_outline_pass_without_the_avatar(tmp_path, capsys):
    from backend.cli import main

    clip = tmp_path / "clip"
    clip.mkdir()
    assert main(["track", str(clip), "-o", str(tmp_path / "t.npz"), "--outline-pass"]) == 1
    assert "--outline-pass needs --avatar" in capsys.readouterr().err
    assert not (tmp_path / "t.npz").exists()


def test_the_outline_pass_is_opt_in_everywhere():
    """Off by default (it trades AKD and mouth PSNR for PSNR and SSIM full on the shared clips);
    each command's flag turns it on."""
    from backend.cli import build_parser
    from backend.eval.protocols.reenactment import ReenactmentOptions
    from backend.eval.run import EvalOptions

    p = build_parser()
    assert not ReenactmentOptions().outline_pass and not EvalOptions().outline_pass
    assert not p.parse_args(["eval", "--media", "m"]).outline_pass
    assert p.parse_args(["eval", "--media", "m", "--outline-pass"]).outline_pass
    for argv in (["track", "v.mp4", "-o", "t.npz", "--avatar", "a"], ["retarget", "a", "v"]):
        assert not p.parse_args(argv).outline_pass
        assert p.parse_args([*argv, "--outline-pass"]).outline_pass
