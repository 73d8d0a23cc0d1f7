"""The tracker's offset-only calibration (face/calibration.py fit_offset, offset_calibration): where
mediapipe reads a head's landmarks against the embedding's, lifted to 3D over turned views.

"Mediapipe" here is the stand-in's embedding moved by a known rest-frame offset per landmark, depth
included (a painted feature in front of or behind the embedding's point slides against it when the
head turns): the fit must recover that offset from three views, and the tracker, given it, must
recover a head turn that the plain embedding gets wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.face import source_camera
from backend.face.calibration import fit_offset, offset_calibration
from backend.face.fit import JOINT_NECK
from backend.face.landmark_model import LandmarkModel
from backend.face.solver import Projector
from backend.face.track import TrackOptions, track_landmarks

YAWS = np.radians([-20.0, 0.0, 20.0])


@pytest.fixture(scope="module")
def lmm():
    from backend.head.loader import load_head_model

    return LandmarkModel.from_model(load_head_model(None))


def _true_offset(lmm: LandmarkModel, seed: int = 0) -> np.ndarray:
    """(L, 3) metres: about 1 mm in the image plane and 3 mm in depth per landmark, plus 4 mm of
    depth common to all (the avatar's features sitting in front of the embedding)."""
    rng = np.random.default_rng(seed)
    off = rng.normal(0, 1e-3, (lmm.n_landmarks, 3))
    off[:, 2] = rng.normal(0, 3e-3, lmm.n_landmarks) + 4e-3
    off[~lmm.valid] = 0.0
    return off


def _views(yaws: np.ndarray) -> np.ndarray:
    pose = np.zeros((len(yaws), 5, 3))
    pose[:, JOINT_NECK, 1] = yaws
    return pose


def _pixels(m: LandmarkModel, pose: np.ndarray) -> np.ndarray:
    """(T, L, 2) source-camera pixels of ``m`` at identity and expression 0, joints ``pose``."""
    T = len(pose)
    cam = source_camera()
    c = torch.zeros(T, m.n_shape + m.n_expr, dtype=torch.float64)
    uv, _ = Projector(cam.K, cam.viewmat).project(m.points(c, torch.as_tensor(pose), torch.zeros(T, 3, dtype=torch.float64)))
    return uv.numpy()


def _seen(lmm: LandmarkModel, off: np.ndarray) -> LandmarkModel:
    return offset_calibration(lmm, off, tuple(f"e{i}" for i in range(lmm.n_expr))).apply(lmm)


def test_offset_calibration_moves_only_the_neutral_landmarks(lmm):
    off = _true_offset(lmm)
    moved = _seen(lmm, off)
    np.testing.assert_allclose(moved.template.numpy(), lmm.template.numpy() + off, atol=1e-6)
    S, E = lmm.n_shape, lmm.n_expr
    np.testing.assert_allclose(moved.basis.numpy(), lmm.basis.numpy(), atol=1e-6)  # same expressions
    pose = _views(np.radians([25.0]))
    shift = _pixels(moved, pose) - _pixels(lmm, pose)
    assert np.abs(shift[0, lmm.valid]).max() > 1.0            # a 25 degree turn shows the offsets


def test_fit_offset_recovers_depth_from_turned_views_and_not_from_one(lmm):
    off = _true_offset(lmm)
    cam = source_camera()
    proj = Projector(cam.K, cam.viewmat)
    pose = _views(YAWS)
    obs = _pixels(_seen(lmm, off), pose)
    zeros = (np.zeros(lmm.n_shape), np.zeros(lmm.n_expr))
    fitted = fit_offset(lmm, proj, *zeros, pose, np.zeros(3), obs)
    v = lmm.valid
    err = np.abs(fitted - off)[v]
    assert err[:, :2].mean() < 5e-5                            # in-plane: within 0.05 mm
    assert err[:, 2].mean() < 0.1 * np.abs(off[v, 2]).mean()   # depth: within 10 % of it
    # a NaN view (no face found) is left out, not propagated
    with_nan = np.concatenate([obs, np.full_like(obs[:1], np.nan)])
    again = fit_offset(lmm, proj, *zeros, np.concatenate([pose, pose[:1]]), np.zeros(3), with_nan)
    np.testing.assert_allclose(again, fitted, atol=1e-9)
    # the frontal view alone cannot see depth: the ridge leaves it near zero
    front = fit_offset(lmm, proj, *zeros, pose[1:2], np.zeros(3), obs[1:2])
    assert np.abs(front[v, 2]).mean() < 0.2 * np.abs(off[v, 2]).mean()
    with pytest.raises(ValueError):
        fit_offset(lmm, proj, *zeros, pose[:1], np.zeros(3), np.full_like(obs[:1], np.nan))


def test_tracking_with_the_offsets_recovers_a_head_turn_the_plain_embedding_misses(lmm):
    from backend.head.loader import load_head_model

    model = load_head_model(None)
    off = _true_offset(lmm)
    seen = _seen(lmm, off)
    cam = source_camera()
    views = _pixels(seen, _views(YAWS))
    cal = offset_calibration(lmm, fit_offset(lmm, Projector(cam.K, cam.viewmat), np.zeros(lmm.n_shape),
                                             np.zeros(lmm.n_expr), _views(YAWS), np.zeros(3), views),
                             tuple(model.expr_names))
    truth = np.radians(np.linspace(-25.0, 25.0, 11))
    obs = _pixels(seen, _views(truth)).astype(np.float32)
    has = np.ones(len(truth), bool)
    opts = TrackOptions(smoothing=0.0, projected_bounds=False)
    hold = {"identity": np.zeros(model.n_shape), "global_rotation": np.zeros(3)}
    plain, _, _ = track_landmarks(model, obs, has, cam, 25.0, opts, **hold)
    calib, _, rmse = track_landmarks(model, obs, has, cam, 25.0, opts, calibration=cal, **hold)

    def head_err(p) -> tuple[float, float]:
        """(mean |yaw error| rad, mean |translation| m): global + neck yaw against the truth."""
        yaw = p.pose[:, 0, 1] + p.pose[:, JOINT_NECK, 1]
        return float(np.abs(yaw - truth).mean()), float(np.linalg.norm(p.transl, axis=-1).mean())

    (yaw_plain, tr_plain), (yaw_cal, tr_cal) = head_err(plain), head_err(calib)
    assert yaw_cal < 0.5 * yaw_plain, (yaw_cal, yaw_plain)
    assert tr_cal < 0.5 * tr_plain, (tr_cal, tr_plain)
    assert np.nanmean(rmse) < 0.3                              # the calibrated fit explains the readings


def test_offset_only_calibration_keeps_its_flag_through_a_file_and_the_clipped_steps(tmp_path, lmm):
    from backend.face.calibration import LandmarkCalibration

    cal = offset_calibration(lmm, _true_offset(lmm), tuple(f"e{i}" for i in range(lmm.n_expr)))
    assert cal.offset_only
    back = LandmarkCalibration.load(cal.save(tmp_path / "off.npz"))
    assert back.offset_only
    np.testing.assert_allclose(back.offset, cal.offset)
    # the model's own basis: the tracker solves the weights as uncalibrated (clipped steps), so the
    # same landmarks give the same weights as tracking with the offsets applied to the model itself
    from backend.head.loader import load_head_model

    model = load_head_model(None)
    rng = np.random.default_rng(2)
    w = np.zeros((4, lmm.n_expr))
    w[:, :10] = rng.uniform(0, 0.6, (4, 10))
    seen = _seen(lmm, cal.offset.astype(np.float64))
    cam = source_camera()
    c = torch.cat([torch.zeros(4, lmm.n_shape, dtype=torch.float64), torch.as_tensor(w)], 1)
    uv, _ = Projector(cam.K, cam.viewmat).project(seen.points(c, torch.zeros(4, 5, 3, dtype=torch.float64),
                                                             torch.zeros(4, 3, dtype=torch.float64)))
    hold = {"identity": np.zeros(model.n_shape), "global_rotation": np.zeros(3)}
    a, _, _ = track_landmarks(model, uv.numpy().astype(np.float32), np.ones(4, bool), cam, 25.0,
                              TrackOptions(smoothing=0.0), calibration=back, **hold)
    b, _, _ = track_landmarks(model, uv.numpy().astype(np.float32), np.ones(4, bool), cam, 25.0,
                              TrackOptions(smoothing=0.0, projected_bounds=False), calibration=back, **hold)
    np.testing.assert_allclose(a.expr, b.expr, atol=1e-6)


@pytest.mark.slow
def test_landmark_offsets_of_the_astronaut_avatar(tmp_path):
    """avatar.calibrate.landmark_offsets on a built avatar: three renders read by mediapipe give
    offsets of a few millimetres (the photo fit's residual and the features' depth), in-plane zero
    with ``depth_only`` and the same depth; the face outline's in-plane offsets only with ``outline``."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preview"))
    from synthetic import astronaut_avatar

    from backend.avatar.calibrate import OFFSET_YAWS_DEG, landmark_offsets

    avatar, model, _ = astronaut_avatar(tmp_path)
    full = landmark_offsets(avatar, model)
    depth = landmark_offsets(avatar, model, depth_only=True)
    outline = landmark_offsets(avatar, model, outline=True)
    valid = LandmarkModel.from_model(model).valid
    from backend.face.mediapipe_face import FACE_OVAL

    oval = np.array(sorted(set(FACE_OVAL)))
    assert not full.offset[oval, :2].any() and np.abs(outline.offset[oval[valid[oval]], :2]).max() > 0
    inner = np.setdiff1d(np.flatnonzero(valid), oval)
    np.testing.assert_allclose(outline.offset[inner], full.offset[inner], atol=1e-9)
    assert full.offset_only and depth.offset_only and len(OFFSET_YAWS_DEG) == 3
    assert np.all(np.isfinite(full.offset))
    mm = np.abs(full.offset[valid]) * 1e3
    assert 0.05 < mm.mean() < 5.0 and mm.max() < 30.0
    assert not depth.offset[:, :2].any()
    np.testing.assert_allclose(depth.offset[:, 2], full.offset[:, 2], atol=1e-9)
    # no inner-lip offsets and no similarity part (what is left has none to remove)
    import torch

    from backend.avatar.calibrate import lip_landmarks, without_similarity
    shape = landmark_offsets(avatar, model, rigid=False, lips="inner")
    lips = list(lip_landmarks("inner"))
    assert not shape.offset[lips].any() and np.abs(full.offset[lips]).max() > 0
    lmm = LandmarkModel.from_model(model)
    src = avatar.params.frame(0)
    coeffs = torch.cat([torch.as_tensor(src.shape[None, :lmm.n_shape]), torch.as_tensor(src.expr[:1, :lmm.n_expr])], 1)
    rest = lmm.rest(coeffs.to(lmm.template.dtype))[0][0].double().numpy()
    free = np.ones(shape.offset.shape, bool)
    free[oval, :2] = False
    free[lips] = False
    free[~valid] = False
    np.testing.assert_allclose(without_similarity(shape.offset, rest, free), shape.offset, atol=1e-7)
    assert np.abs(shape.offset - full.offset).max() > 1e-5     # the full offsets had a similarity part


def test_track_offsets_need_an_avatar(tmp_path, capsys):
    from backend.cli import main

    assert main(["track", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "t.npz"), "--offsets", "full"]) == 1
    err = capsys.readouterr().err
    assert "--offsets needs --avatar" in err and "Traceback" not in err
    # both calibrate the tracker: refused before any work instead of one silently ignored
    args = ["track", str(tmp_path / "clip.mp4"), "-o", str(tmp_path / "t.npz"), "--offsets", "depth",
            "--calibration", str(tmp_path / "cal.npz"), "--avatar", str(tmp_path / "a.omgavatar")]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "--offsets and --calibration both calibrate the tracker" in err and "Traceback" not in err
    assert not (tmp_path / "t.npz").exists() and not (tmp_path / "cal.npz").exists()


def test_eval_passes_the_offsets_choice_to_self_reenactment_and_refuses_an_unknown_one():
    from types import SimpleNamespace

    from backend.cli import build_parser
    from backend.eval.protocols.reenactment import ReenactmentOptions, refit_for_avatar

    args = build_parser().parse_args(["eval", "--media", "m", "--tracker-offsets", "depth"])
    assert args.tracker_offsets == "depth"
    assert build_parser().parse_args(["eval", "--media", "m"]).tracker_offsets == ""
    track = SimpleNamespace(landmarks=np.zeros((1, 478, 2), np.float32), crop=None, has_face=np.ones(1, bool), fps=25.0)
    clip = SimpleNamespace(track=track, frames={}, path=None)
    crop = SimpleNamespace(to_crop=lambda x: x)
    track.crop = SimpleNamespace(to_source=lambda x: x)
    build = SimpleNamespace(observation=SimpleNamespace(crop=crop), model=None,
                            avatar=SimpleNamespace(params=SimpleNamespace(shape=np.zeros(3), pose=np.zeros((1, 5, 3))),
                                                   vertex_offsets=None))
    with pytest.raises(ValueError, match="tracker_offsets"):
        refit_for_avatar(clip, build, ReenactmentOptions(tracker_offsets="sideways"))
