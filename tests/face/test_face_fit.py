"""The landmark-only model against backend.head.lbs, its Jacobians against their plain twins, and
the synthetic round trip: known parameters -> projected landmarks -> fit -> parameters back."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from backend.face import FitOptions, fit_image, source_camera
from backend.face.landmark_model import LandmarkModel, redundant_expressions
from backend.face.solver import Projector

GROUPS = [(0,), (1,), (2,), (3, 4)]


def _random_params(model, B, rng, scale=1.0):
    shape = rng.normal(size=model.n_shape) * 0.8 * scale
    expr = rng.normal(size=(B, model.n_expr)) * 0.5 * scale
    pose = rng.normal(size=(B, 5, 3)) * 0.15 * scale
    transl = rng.normal(size=(B, 3)) * 0.02
    return shape, expr, pose, transl


def test_points_match_head_lbs(head_model):
    from backend.head.lbs import HeadModelTensors, lbs

    rng = np.random.default_rng(0)
    shape, expr, pose, transl = _random_params(head_model, 4, rng)
    out = lbs(HeadModelTensors.from_model(head_model), torch.tensor(shape, dtype=torch.float32),
              torch.tensor(expr, dtype=torch.float32), torch.tensor(pose, dtype=torch.float32),
              torch.tensor(transl, dtype=torch.float32))
    ref = head_model.landmarks.points(out.vertices.numpy(), head_model.faces)
    lmm = LandmarkModel.from_model(head_model, rendered=True)      # the rendered head's landmarks
    coeffs = torch.cat([torch.tensor(shape)[None].expand(4, -1), torch.tensor(expr)], 1)
    mine = lmm.points(coeffs, torch.tensor(pose), torch.tensor(transl)).numpy()
    assert np.abs(mine - ref).max() < 1e-6  # metres: float32 LBS vs float64 here
    # the fits' landmark model differs only by the expressions it solves with their landmark
    # directions (HeadModel.landmark_exprdirs: the stand-in's cheekPuff); without them on, it is exact
    own = [head_model.expr_names.index(n) for n in head_model.landmark_exprdirs]
    expr0 = expr.copy()
    expr0[:, own] = 0.0
    out0 = lbs(HeadModelTensors.from_model(head_model), torch.tensor(shape, dtype=torch.float32),
               torch.tensor(expr0, dtype=torch.float32), torch.tensor(pose, dtype=torch.float32),
               torch.tensor(transl, dtype=torch.float32))
    ref0 = head_model.landmarks.points(out0.vertices.numpy(), head_model.faces)
    coeffs0 = torch.cat([torch.tensor(shape)[None].expand(4, -1), torch.tensor(expr0)], 1)
    fit = LandmarkModel.from_model(head_model).points(coeffs0, torch.tensor(pose), torch.tensor(transl)).numpy()
    assert np.abs(fit - ref0).max() < 1e-6


def test_analytic_jacobians_match_finite_differences(head_model):
    rng = np.random.default_rng(1)
    shape, expr, pose, transl = _random_params(head_model, 3, rng)
    lmm = LandmarkModel.from_model(head_model)
    S, E = lmm.n_shape, lmm.n_expr
    c = torch.cat([torch.tensor(shape)[None].expand(3, -1), torch.tensor(expr)], 1)
    P, T = torch.tensor(pose), torch.tensor(transl)
    pts, jrot, jc = lmm.jacobians(c, P, T, GROUPS, torch.arange(S + E))
    np.testing.assert_allclose(pts.numpy(), lmm.points(c, P, T).numpy(), atol=1e-12)
    fd = lmm.jacobian_pose_fd(c, P, T, GROUPS)
    assert (jrot - fd).abs().max() < 1e-5 * fd.abs().max()
    # points are linear in the coefficients at a fixed pose: unit differences are exact
    C = S + E
    cc = (c[:, None] + torch.cat([torch.zeros(1, C, dtype=c.dtype), torch.eye(C, dtype=c.dtype)])).reshape(-1, C)
    rep = lambda x: x[:, None].expand(3, C + 1, *x.shape[1:]).reshape(3 * (C + 1), *x.shape[1:])  # noqa: E731
    pv = lmm.points_virtual(cc, rep(P), rep(T)).reshape(3, C + 1, -1, 3)
    fd_c = (pv[:, 1:] - pv[:, :1]).permute(0, 2, 3, 1)  # (B, L, 3, C)
    assert (jc - fd_c).abs().max() < 1e-9 * fd_c.abs().max()
    # the left-multiplied (projected) form used by the tracker equals A @ J
    A = torch.as_tensor(rng.normal(size=(3, lmm.n_landmarks, 2, 3)))
    cols = torch.arange(S, S + E)
    _, jr2, jc2 = lmm.jacobians(c, P, T, GROUPS, cols, left=lambda p: A)
    torch.testing.assert_close(jr2, A @ jrot)
    torch.testing.assert_close(jc2, A @ jc[..., S:])
    # float32 copy (used for tracking) agrees to float32 precision
    l32 = lmm.to_dtype(torch.float32)
    p32 = l32.points(c.float(), P.float(), T.float()).double()
    assert (p32 - pts).abs().max() < 1e-6


def test_redundant_jaw_expression_is_detected(head_model):
    lmm = LandmarkModel.from_model(head_model)
    dup = redundant_expressions(lmm, [(2,)])
    names = [n for n, d in zip(head_model.expr_names, dup) if d]
    if "jawOpen" in head_model.expr_names:  # the stand-in's linearised jaw shape keys
        assert names == ["jawLeft", "jawRight", "jawOpen"]
        eyes = [n for n, d in zip(head_model.expr_names, redundant_expressions(lmm, [(3, 4)])) if d]
        assert sorted(eyes) == sorted(n for n in head_model.expr_names if n.startswith("eyeLook"))


def test_tongue_out_is_never_fitted_from_landmarks(head_model):
    """Landmarks cannot see the tongue: a face whose lower lip drops (mouthLowerDown) is fitted
    without tongueOut, whose key also pushes the lower lip (the fit used it so on clips d3 and
    d12, which now pushes the tongue part out of the mouth)."""
    if "tongueOut" not in head_model.expr_names:
        pytest.skip("no tongueOut in this head model")
    lmm = LandmarkModel.from_model(head_model)
    k = head_model.expr_names.index("tongueOut")
    assert lmm.unobserved_expr == (k,)
    expr = np.zeros((1, head_model.n_expr))
    for name in ("mouthLowerDownLeft", "mouthLowerDownRight", "tongueOut"):
        expr[0, head_model.expr_names.index(name)] = 1.0
    obs = _project(head_model, np.zeros(head_model.n_shape), expr, np.zeros((1, 5, 3)), np.zeros((1, 3)))
    p = fit_image(head_model, obs, FitOptions()).params
    assert p.expr[0, k] == pytest.approx(0.0, abs=1e-6)
    assert p.expr[0, head_model.expr_names.index("mouthLowerDownLeft")] > 0.5


def _joint_keys(model) -> np.ndarray:
    """(E,) bool: the expression keys that duplicate the jaw or an eye joint."""
    return redundant_expressions(LandmarkModel.from_model(model), [(2,), (3, 4)])


def _project_frames(head_model, shape, expr, pose, transl=None) -> np.ndarray:
    """(T, 478, 2) float32 source-camera pixels of the model's landmarks for ``pose`` (T, J, 3)."""
    lmm = LandmarkModel.from_model(head_model)
    cam = source_camera()
    T = len(pose)
    c = torch.cat([torch.tensor(shape)[None], torch.tensor(expr)], 1).expand(T, -1)
    t = torch.zeros(T, 3, dtype=torch.float64) if transl is None else torch.tensor(transl)
    uv, _ = Projector(cam.K, cam.viewmat).project(lmm.points(c, torch.tensor(pose), t))
    return uv.numpy().astype(np.float32)


def _project(head_model, shape, expr, pose, transl):
    return SimpleNamespace(landmarks=_project_frames(head_model, shape, expr, pose, transl)[0],
                           camera=source_camera())


# Round-trip tolerances (noise-free landmarks of the stand-in, default priors):
GLOBAL_TOL_RAD = 0.02   # ~1.1 degrees per axis
JAW_TOL_RAD = 0.03
GAZE_TOL_RAD = 0.03
TRANSL_XY_TOL_M = 0.002
# Expression: mean absolute coefficient error (coefficients are in [0, 1] units; the true ones are
# up to ~1). Shape and expression share some landmark motions and depth-only components (cheek
# puff) are nearly invisible at a 9.5 deg field of view, so single coefficients can be off more.
EXPR_MEAN_ABS_TOL = 0.12


@pytest.mark.parametrize("seed", [2, 3, 4])
def test_synthetic_round_trip(head_model, seed):
    rng = np.random.default_rng(seed)
    E = head_model.n_expr
    shape = rng.normal(size=head_model.n_shape) * 0.5
    expr = np.clip(rng.normal(size=(1, E)) * 0.4, 0.0, 1.0)
    expr[0, _joint_keys(head_model)] = 0.0  # duplicate the jaw / eye joints: the fit freezes them
    expr[0, list(LandmarkModel.from_model(head_model).unobserved_expr)] = 0.0  # tongueOut: frozen too
    pose = np.zeros((1, 5, 3))
    pose[0, 0] = rng.uniform(-0.3, 0.3, 3) * [1.0, 1.5, 0.5]  # pitch, yaw up to 26 deg, roll
    pose[0, 2] = [rng.uniform(0.05, 0.3), 0.0, 0.0]  # jaw open
    pose[0, 3] = pose[0, 4] = [rng.uniform(-0.1, 0.1), rng.uniform(-0.2, 0.2), 0.0]  # gaze
    transl = np.array([[rng.uniform(-0.02, 0.02), rng.uniform(-0.02, 0.02), rng.uniform(-0.1, 0.1)]])
    obs = _project(head_model, shape, expr, pose, transl)
    res = fit_image(head_model, obs, FitOptions())
    p = res.params
    assert res.rmse_px < 0.5
    assert np.abs(p.pose[0, 0] - pose[0, 0]).max() < GLOBAL_TOL_RAD
    assert abs(p.pose[0, 2, 0] - pose[0, 2, 0]) < JAW_TOL_RAD
    assert np.abs(p.pose[0, 3, :2] - pose[0, 3, :2]).max() < GAZE_TOL_RAD
    assert np.abs(p.transl[0, :2] - transl[0, :2]).max() < TRANSL_XY_TOL_M
    err = np.abs(p.expr[0] - expr[0]).mean()
    assert err < EXPR_MEAN_ABS_TOL, err
    if head_model.expr_bounds is not None:  # ARKit-52 weights: solved inside [0, 1]
        assert p.expr.min() >= 0.0 and p.expr.max() <= 1.0
    assert err < 0.5 * np.abs(expr[0]).mean()  # far better than guessing "neutral"


def test_the_solver_reuses_its_costs_points_for_the_jacobians(head_model, monkeypatch):
    """solve hands the accepted state's landmark points (posed for its cost) to the Jacobians
    instead of posing the model again there: bit for bit the fit the Jacobians' own posing gives,
    with about a third fewer posings."""
    rng = np.random.default_rng(5)
    shape, expr, pose, transl = _random_params(head_model, 1, rng, scale=0.5)
    expr = np.clip(expr, 0.0, 1.0)
    obs = _project(head_model, shape, expr, pose, transl)
    calls = {"points": 0}
    points = LandmarkModel.points

    def counted(self, *a, **k):
        calls["points"] += 1
        return points(self, *a, **k)

    monkeypatch.setattr(LandmarkModel, "points", counted)
    reused = fit_image(head_model, obs, FitOptions())
    n_reused = calls["points"]
    jacobians = LandmarkModel.jacobians
    monkeypatch.setattr(LandmarkModel, "jacobians", lambda self, *a, points=None, **k: jacobians(self, *a, **k))
    calls["points"] = 0
    posed = fit_image(head_model, obs, FitOptions())
    for f in ("shape", "expr", "pose", "transl"):
        np.testing.assert_array_equal(getattr(reused.params, f), getattr(posed.params, f), err_msg=f)
    assert reused.rmse_px == posed.rmse_px
    assert n_reused < 0.8 * calls["points"], (n_reused, calls["points"])


def _flame_sized(model, seed=0):
    """The stand-in grown to FLAME's layout sizes (300 identity, 100 expression components,
    correctives on every joint) with no iris landmarks, like a FLAME file with a 468-point
    mediapipe embedding. Extra components are small mixtures of the stand-in's own."""
    from dataclasses import replace

    rng = np.random.default_rng(seed)
    S0, E0 = model.n_shape, model.n_expr
    sd = np.concatenate([model.shapedirs, model.shapedirs @ rng.normal(0, 0.1, (S0, 300 - S0))], 2)
    mix = rng.normal(0, 0.1, (E0, 100 - E0))
    mix[_joint_keys(model)] = 0.0  # keep the joints' duplicates out of the new components
    ed = np.concatenate([model.exprdirs, model.exprdirs @ mix], 2)
    pd = model.posedirs + rng.normal(0, 2e-4, model.posedirs.shape).astype(np.float32)
    valid = model.landmarks.valid.copy()
    valid[468:] = False
    emb = replace(model.landmarks, valid=valid)
    return replace(model, name="flame-sized", shapedirs=sd.astype(np.float32), exprdirs=ed.astype(np.float32),
                   posedirs=pd, expr_names=[f"exp_{i:03d}" for i in range(100)], landmarks=emb, cache={})


def test_flame_sized_model_fits_and_tracks(head_model):
    from backend.face import TrackOptions, track_landmarks

    fm = _flame_sized(head_model)
    rng = np.random.default_rng(7)
    shape = np.zeros(300)
    shape[:16] = rng.normal(size=16) * 0.5
    expr = np.zeros((1, 100))
    E0 = head_model.n_expr
    expr[0, :E0] = np.clip(rng.normal(size=E0) * 0.4, 0, 1)
    expr[0, :E0][_joint_keys(head_model)] = 0.0
    pose = np.zeros((1, 5, 3))
    pose[0, 0] = [0.1, -0.25, 0.05]
    pose[0, 2] = [0.2, 0, 0]
    transl = np.array([[0.01, -0.01, 0.05]])
    obs = _project(fm, shape, expr, pose, transl)
    res = fit_image(fm, obs)
    p = res.params
    assert p.shape.shape == (300,) and p.expr.shape == (1, 100)
    assert res.rmse_px < 0.5
    assert np.abs(p.pose[0, 0] - pose[0, 0]).max() < GLOBAL_TOL_RAD
    assert abs(p.pose[0, 2, 0] - pose[0, 2, 0]) < JAW_TOL_RAD
    assert np.all(p.pose[0, 3:] == 0)  # no iris landmarks: the eyes are left alone
    # tracking the same face through a few frames of jaw motion
    T = 6
    lms = []
    for t in range(T):
        pz = pose.copy()
        pz[0, 2, 0] = 0.05 * t
        lms.append(_project(fm, shape, expr, pz, transl).landmarks)
    cam = source_camera()
    params, conf, rmse = track_landmarks(fm, np.stack(lms), np.ones(T, bool), cam, 25.0,
                                         TrackOptions(smoothing=0.0))
    assert params.expr.shape == (T, 100) and np.all(np.isfinite(params.pose))
    assert np.nanmax(rmse) < 1.0
    np.testing.assert_allclose(params.pose[:, 2, 0], 0.05 * np.arange(T), atol=JAW_TOL_RAD)


def test_tracking_follows_large_fast_head_turns_and_jaw(head_model):
    """Synthetic landmarks: yaw swinging +-34 deg twice a second, pitch, jaw snapping open; the
    batched tracker (warm start from the previous batch only) must follow every frame."""
    from backend.face import TrackOptions, track_landmarks

    rng = np.random.default_rng(11)
    T = 50
    t = np.arange(T)
    shape = rng.normal(size=head_model.n_shape) * 0.5
    expr = np.zeros((1, head_model.n_expr))
    pose = np.zeros((T, 5, 3))
    pose[:, 1, 1] = 0.6 * np.sin(2 * np.pi * t / 12.5)  # neck yaw, 2 Hz at 25 fps
    pose[:, 1, 0] = 0.15 * np.sin(2 * np.pi * t / 40.0)
    pose[:, 2, 0] = np.where((t % 20) < 4, 0.3, 0.02)  # jaw snaps open for 4 frames in 20
    cam = source_camera()
    lms = _project_frames(head_model, shape, expr, pose)
    params, conf, rmse = track_landmarks(head_model, lms, np.ones(T, bool), source_camera(), 25.0,
                                         TrackOptions(smoothing=0.0))
    head_yaw = params.pose[:, 0, 1] + params.pose[:, 1, 1]  # global + neck (small angles add)
    assert np.abs(head_yaw - pose[:, 1, 1]).max() < 0.05
    assert np.abs(params.pose[:, 2, 0] - pose[:, 2, 0]).max() < JAW_TOL_RAD
    assert rmse.max() < 0.5 and conf.min() > 0.9
    # with smoothing on, the 4-frame jaw snaps keep most of their amplitude (no lag blur)
    sm, _, _ = track_landmarks(head_model, lms, np.ones(T, bool), source_camera(), 25.0,
                               TrackOptions(smoothing=2.0))
    open_frames = (t % 20) < 4
    assert sm.pose[open_frames, 2, 0].mean() > 0.8 * pose[open_frames, 2, 0].mean()


def test_tracking_holds_the_global_joint_at_a_given_rotation(head_model):
    """Self-reenactment drives an avatar whose shoulders (global joint) sit at the photo's pose:
    tracking with ``global_rotation`` (and the avatar's identity) keeps global there and puts the
    head turns into the neck. Without it, global goes to the identity frames' mean rotation, which
    turned d12's shoulders away from the photo at frame 0."""
    from backend.face import TrackOptions, track_landmarks

    rng = np.random.default_rng(5)
    T = 12
    t = np.arange(T)
    shape = rng.normal(size=head_model.n_shape) * 0.5
    expr = np.zeros((1, head_model.n_expr))
    photo_global = np.array([0.12, 0.02, -0.01])
    pose = np.zeros((T, 5, 3))
    pose[:, 0] = photo_global
    pose[:, 1, 1] = np.where(t < 4, 0.0, 0.25)  # the head turns away after frame 3 and stays turned
    cam = source_camera()
    lms = _project_frames(head_model, shape, expr, pose)
    held, _, rmse = track_landmarks(head_model, lms, np.ones(T, bool), cam, 25.0, TrackOptions(smoothing=0.0),
                                    identity=shape.astype(np.float32), global_rotation=photo_global)
    np.testing.assert_allclose(held.shape, shape, atol=1e-6)  # the identity stays the avatar's
    assert np.abs(held.pose[:, 0] - photo_global).max() < 0.01
    assert np.abs(held.pose[:, 1, 1] - pose[:, 1, 1]).max() < 0.03
    assert rmse.max() < 0.5
    free, _, _ = track_landmarks(head_model, lms, np.ones(T, bool), cam, 25.0, TrackOptions(smoothing=0.0),
                                 identity=shape.astype(np.float32))
    assert np.abs(free.pose[:, 0, 1] - photo_global[1]).max() > 0.05  # the clip's mean turn, not the photo's


def test_wide_open_lips_go_to_the_jaw(head_model):
    """A wide "O" seen as an inner-lip gap: with jaw_from_lips (the default) the tracker puts it
    into the jaw (whose teeth and tongue then part in the render) instead of the lip components at several times their range
    over a closed jaw, which is how d3's and d12's wide-open frames were fitted (closed teeth
    rendered where the clip shows the dark cavity). jaw_from_lip_gap reads the jaw back from a
    model-made opening whatever the head's yaw."""
    from backend.face import TrackOptions, track_landmarks
    from backend.face.track import jaw_from_lip_gap

    names = list(head_model.expr_names)
    T = 4
    shape = np.zeros(head_model.n_shape)
    expr = np.zeros((T, head_model.n_expr))
    for name, w in (("mouthLowerDownLeft", 2.5), ("mouthLowerDownRight", 2.5),  # the lips alone,
                    ("mouthUpperUpLeft", 1.5), ("mouthUpperUpRight", 1.5)):      # beyond their range
        expr[:, names.index(name)] = w
    pose = np.zeros((T, 5, 3))
    pose[:, 1, 1] = [0.0, 0.2, -0.3, 0.4]
    lmm = LandmarkModel.from_model(head_model)
    cam = source_camera()
    proj = Projector(cam.K, cam.viewmat)
    c = torch.cat([torch.tensor(shape)[None].expand(T, -1), torch.tensor(expr)], 1)
    lips, _ = proj.project(lmm.points(c, torch.tensor(pose), torch.zeros(T, 3, dtype=torch.float64)))
    lips = lips.numpy().astype(np.float32)
    gap_px = np.linalg.norm(lips[0, 14] - lips[0, 13])
    assert gap_px > 15.0  # a clearly open mouth
    on, _, _ = track_landmarks(head_model, lips, np.ones(T, bool), cam, 25.0,
                               TrackOptions(smoothing=0.0), identity=shape.astype(np.float32))
    off, _, _ = track_landmarks(head_model, lips, np.ones(T, bool), cam, 25.0,
                                TrackOptions(smoothing=0.0, jaw_from_lips=0.0), identity=shape.astype(np.float32))
    assert np.abs(off.pose[:, 2, 0]).max() < 0.03  # the lips explain it exactly: jaw stays shut
    assert on.pose[:, 2, 0].min() > 0.08           # with the coupling the jaw opens
    # the estimate itself: a model-made jaw opening read back at any yaw
    jaw = np.array([0.0, 0.1, 0.2, 0.3])
    pj = pose.copy()
    pj[:, 2, 0] = jaw
    c0 = torch.cat([torch.tensor(shape)[None], torch.zeros(1, head_model.n_expr, dtype=torch.float64)], 1)
    uv, _ = proj.project(lmm.points(c0.expand(T, -1), torch.tensor(pj), torch.zeros(T, 3, dtype=torch.float64)))
    est = jaw_from_lip_gap(lmm, torch.tensor(shape)[: lmm.n_shape], uv.numpy())
    assert np.abs(est - jaw).max() < 0.03


def test_jaw_coupling_leaves_talking_frames_alone(head_model):
    """The jaw coupling acts on wide-open frames only (jaw_gate): a talking-sized opening (inner
    gap / width below the gate) is fitted exactly as without it, so clips that talk with a nearly
    closed mouth keep their lower face (d0 lost 2.7 dB PSNR full when every frame was coupled);
    jaw_gate_weight ramps from 0 to 1 over the gate."""
    from backend.face import TrackOptions, track_landmarks
    from backend.face.track import jaw_gate_weight

    names = list(head_model.expr_names)
    T = 3
    shape = np.zeros(head_model.n_shape)
    expr = np.zeros((T, head_model.n_expr))
    expr[:, names.index("mouthLowerDownLeft")] = [0.2, 0.3, 0.4]
    expr[:, names.index("mouthLowerDownRight")] = [0.2, 0.3, 0.4]
    pose = np.zeros((T, 5, 3))
    pose[:, 2, 0] = [0.0, 0.02, 0.04]
    lmm = LandmarkModel.from_model(head_model)
    cam = source_camera()
    proj = Projector(cam.K, cam.viewmat)
    c = torch.cat([torch.tensor(shape)[None].expand(T, -1), torch.tensor(expr)], 1)
    uv, _ = proj.project(lmm.points(c, torch.tensor(pose), torch.zeros(T, 3, dtype=torch.float64)))
    lms = uv.numpy().astype(np.float32)
    gate = TrackOptions().jaw_gate
    ratio = np.linalg.norm(lms[:, 14] - lms[:, 13], axis=1) / np.linalg.norm(lms[:, 308] - lms[:, 78], axis=1)
    assert ratio.max() < gate[0] and ratio.max() > 0.03  # parted, as in speech
    assert np.all(jaw_gate_weight(lms, gate) == 0.0)
    on, _, _ = track_landmarks(head_model, lms, np.ones(T, bool), cam, 25.0, TrackOptions(smoothing=0.0),
                               identity=shape.astype(np.float32))
    off, _, _ = track_landmarks(head_model, lms, np.ones(T, bool), cam, 25.0,
                                TrackOptions(smoothing=0.0, jaw_from_lips=0.0), identity=shape.astype(np.float32))
    np.testing.assert_allclose(on.pose, off.pose, atol=1e-6)
    np.testing.assert_allclose(on.expr, off.expr, atol=1e-6)
    # the ramp: 0 below the gate, 1 above it, monotonic in between
    wide = lms.copy()
    mid = 0.5 * (lms[:, 13] + lms[:, 14])
    width = np.linalg.norm(lms[:, 308] - lms[:, 78], axis=1)
    w = []
    for r in (0.1, gate[0], 0.5 * sum(gate), gate[1], 0.6):
        wide[:, 13] = mid - [0, 0.5] * (r * width)[:, None]
        wide[:, 14] = mid + [0, 0.5] * (r * width)[:, None]
        w.append(jaw_gate_weight(wide, gate)[0])
    np.testing.assert_allclose(w, [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-4)


def _eye_rows() -> np.ndarray:
    """Both eyes' contour rows and the iris rows of mediapipe's mesh."""
    from backend.eval.metrics.landmarks import regions

    r = regions()
    return np.unique(np.concatenate([r.left_eye, r.right_eye, np.arange(468, 478)]))


def _iris_in_eye(uv: np.ndarray) -> np.ndarray:
    """(2,) mean over both eyes of the iris centre minus the centre of its eye's contour, px."""
    from backend.face.solver import IRIS_ANCHORS

    return np.mean([uv[list(rows)].mean(0) - uv[list(corners)].mean(0) for rows, corners in IRIS_ANCHORS], 0)


def test_iris_anchors_are_mediapipes_eye_contours():
    """Each iris is measured against its own eye's contour, as mediapipe's tables name them."""
    from mediapipe.python.solutions import face_mesh_connections as c

    from backend.face.solver import IRIS_ANCHORS

    rows = lambda conn: sorted({i for edge in conn for i in edge})  # noqa: E731
    (iris_r, eye_r), (iris_l, eye_l) = IRIS_ANCHORS
    assert sorted(eye_r) == rows(c.FACEMESH_RIGHT_EYE) and sorted(eye_l) == rows(c.FACEMESH_LEFT_EYE)
    # mediapipe's iris tables name the 4 rim points; the centre (468, 473) leads each iris block
    assert iris_r == (468, *rows(c.FACEMESH_RIGHT_IRIS)) and iris_l == (473, *rows(c.FACEMESH_LEFT_IRIS))


def _fit_uv(head_model, obs_uv: np.ndarray):
    res = fit_image(head_model, SimpleNamespace(landmarks=obs_uv, camera=source_camera()), FitOptions())
    p = res.params
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    return p, _project_frames(head_model, f64(p.shape), f64(p.expr[:1]), f64(p.pose[:1]), f64(p.transl[:1]))[0]


@pytest.mark.parametrize("dy", [2.0, -2.0])
def test_gaze_reads_the_iris_in_its_eye_not_where_the_eye_sits(head_model, dy):
    """Issue 14: the fit measures the iris relative to its eye's contour (solver.relative_iris).
    Whole eyes read dy px lower or higher than the model can place them (contours and irises
    together, as mediapipe's eye crop sits) must not turn the gaze: the iris has not moved in
    the eye. Fitted on absolute iris pixels the gaze took up the offset (0.1 rad and more: the
    eyes of d0's avatar were drawn 1.6 px below the clip's)."""
    rng = np.random.default_rng(5)
    shape = rng.normal(size=head_model.n_shape) * 0.5
    expr = np.zeros((1, head_model.n_expr))
    pose = np.zeros((1, 5, 3))
    pose[0, 0] = [0.05, -0.1, 0.0]
    pose[0, 3] = pose[0, 4] = [-0.08, 0.1, 0.0]
    transl = np.array([[0.004, -0.006, 0.02]])
    clean = _project_frames(head_model, shape, expr, pose, transl)[0]
    shifted = clean.copy()
    shifted[_eye_rows(), 1] += dy
    p, uv = _fit_uv(head_model, shifted)
    # the model's lids follow such a shift only in part (blink/wide keys), which leaves the gaze
    # within 0.03 rad; the absolute fit turned it 0.10-0.12 rad
    assert np.abs(p.pose[0, 3, :2] - pose[0, 3, :2]).max() < 0.04, p.pose[0, 3]
    np.testing.assert_allclose(_iris_in_eye(uv), _iris_in_eye(clean), atol=0.2)


def test_gaze_follows_the_iris_moving_in_the_eye(head_model):
    """The other half: irises moved 1.5 px down inside still eyes turn the gaze so that the
    model's iris sits 1.5 px lower in its eye (within 0.2 px)."""
    rng = np.random.default_rng(6)
    shape = rng.normal(size=head_model.n_shape) * 0.5
    pose = np.zeros((1, 5, 3))
    pose[0, 0] = [0.05, 0.1, 0.0]
    clean = _project_frames(head_model, shape, np.zeros((1, head_model.n_expr)), pose)[0]
    moved = clean.copy()
    moved[468:478, 1] += 1.5
    p0, uv0 = _fit_uv(head_model, clean)
    p1, uv1 = _fit_uv(head_model, moved)
    np.testing.assert_allclose(_iris_in_eye(uv1) - _iris_in_eye(uv0), [0.0, 1.5], atol=0.2)
    assert p1.pose[0, 3, 0] > p0.pose[0, 3, 0] + 0.05  # the eyes turned down (+x: the iris drops)
