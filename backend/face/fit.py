"""Single-image fit: head pose, identity shape, expression, jaw, neck and eyes from 478 landmarks.

The camera is the fixed 512x512 source camera of ``crop.py`` (focal 12 normalized); the head moves:
its global rotation and translation are solved with everything else. Steps:
1. warm start: PnP (cv2.solvePnP) of the neutral model's landmarks against the observed ones gives
   the head rotation and translation in closed form;
2. a pose-only Levenberg-Marquardt pass (rotation + translation), then the full problem (joints,
   expression, shape) with Gaussian priors, all in float64 on the landmark-only model.

Neck vs. global rotation: 2D landmarks cannot tell them apart (both turn the face), so the photo fit
puts the head's rotation into ``global`` and holds ``neck`` near zero with a strong prior; video
tracking then keeps ``global`` near this reference and lets ``neck`` carry the per-frame head turns
(the shoulders, bound to ``global``, stay put while the head moves).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .landmark_model import LandmarkModel, redundant_expressions
from .mediapipe_face import FACE_OVAL, IRIS
from .solver import Layout, Priors, Projector, State, empty_state, pack_frame, single_thread, solve

JOINT_GLOBAL, JOINT_NECK, JOINT_JAW, JOINT_EYE_L, JOINT_EYE_R = range(5)
FROZEN_PRIOR = 1e8  # prior weight that pins a parameter to its prior mean


@dataclass
class FitOptions:
    """Single-image fit settings. Prior weights are in squared pixels per squared unit (radian,
    coefficient): the cost of a parameter value of 1 equals that many px^2 of landmark error.

    n_shape / n_expr: leading identity / expression components fitted (capped by the model).
    iterations: LM iterations of the full problem (the pose-only pass adds ``pose_iterations``).
    contour_weight: weight of the face-outline landmarks (less reliable than inner ones).
    iris_weight: weight of the 10 iris landmarks (they drive the eye rotations).
    """

    n_shape: int = 100
    n_expr: int = 100
    iterations: int = 25
    pose_iterations: int = 6
    fit_shape: bool = True
    fit_expr: bool = True
    fit_jaw: bool = True
    fit_neck: bool = True
    fit_eyes: bool = True
    contour_weight: float = 0.5
    iris_weight: float = 1.0
    shape_prior: float = 30.0
    expr_prior: float = 10.0
    jaw_prior: float = 50.0
    neck_prior: float = 1e5
    eye_prior: float = 50.0


@dataclass
class FitResult:
    """params: HeadParams (T = 1); camera: the source Camera; rmse_px: root-mean-square landmark
    reprojection error (px at 512) over the fitted landmarks; mean_error_px: mean Euclidean
    landmark error; seconds: wall time of the fit; residuals: (478, 2) px (NaN for unused)."""

    params: object
    camera: object
    rmse_px: float
    mean_error_px: float
    seconds: float
    residuals: np.ndarray = field(repr=False, default=None)


def landmark_weights(lmm: LandmarkModel, contour_weight: float, iris_weight: float) -> np.ndarray:
    """(478,) float64 weights: 1 for inner landmarks, lower for the outline, 0 where invalid."""
    w = np.ones(len(lmm.valid), np.float64)
    w[list(FACE_OVAL)] = contour_weight
    w[list(IRIS)] = iris_weight
    w[~lmm.valid] = 0.0
    return w


def fit_joints(lmm: LandmarkModel, opts: FitOptions) -> list[tuple[int, ...]]:
    """Joint groups whose rotations the fit solves. The eyes (only when the model places the
    irises) share one gaze rotation: with independent eyes the fit turns them apart to absorb the
    difference between the model's and the person's pupil distance (false vergence)."""
    joints: list[tuple[int, ...]] = [(JOINT_GLOBAL,)]
    if opts.fit_neck:
        joints.append((JOINT_NECK,))
    if opts.fit_jaw:
        joints.append((JOINT_JAW,))
    if opts.fit_eyes and opts.iris_weight > 0 and lmm.valid[list(IRIS)].sum() >= 4:
        joints.append((JOINT_EYE_L, JOINT_EYE_R))
    return joints


def frame_prior_weights(lmm: LandmarkModel, layout: Layout, opts: FitOptions, global_prior: float = 0.0,
                        transl_prior: float = 0.0) -> torch.Tensor:
    """(P_frame,) prior weights in layout order. Expression components that duplicate a fitted
    non-root joint (landmark_model.redundant_expressions) get FROZEN_PRIOR: the joint explains them;
    so do those landmarks cannot see (LandmarkModel.unobserved_expr: tongueOut)."""
    per_joint = {JOINT_GLOBAL: global_prior, JOINT_NECK: opts.neck_prior, JOINT_JAW: opts.jaw_prior,
                 JOINT_EYE_L: opts.eye_prior, JOINT_EYE_R: opts.eye_prior}
    w = [per_joint[g[0]] for g in layout.joints for _ in range(3)] + [transl_prior] * 3
    ew = np.full(layout.n_expr, opts.expr_prior)
    dup = redundant_expressions(lmm, [g for g in layout.joints if JOINT_GLOBAL not in g])[: layout.n_expr]
    ew[dup] = FROZEN_PRIOR
    ew[[i for i in lmm.unobserved_expr if i < layout.n_expr]] = FROZEN_PRIOR
    return torch.tensor(w + ew.tolist(), dtype=torch.float64)


def pnp_init(lmm: LandmarkModel, proj: Projector, obs: np.ndarray, weights: np.ndarray,
             shape: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Closed-form head pose: (global axis-angle (3,), transl (3,)) from PnP on the neutral model.

    The model point x maps to camera ``Rv (Rg (x - J0) + J0 + transl) + tv``; PnP gives
    ``Rp x + tp``, so ``Rg = Rv^T Rp`` and ``transl = Rv^T (tp - tv) - J0 + Rg J0``.
    """
    import cv2

    st = empty_state(lmm, 1)
    if shape is not None:
        st.shape = shape.clone()
    pts = lmm.points(st.coeffs(), st.pose, st.transl)[0].numpy()
    use = weights > 0
    K = np.zeros((3, 3))
    K[0, 0], K[1, 1] = proj.f.numpy()
    K[:2, 2] = proj.c.numpy()
    K[2, 2] = 1.0
    Rv, tv = proj.R.numpy(), proj.t.numpy()
    # Initial guess: frontal head at the camera's standard distance (the PnP's own initialisation
    # is unreliable at a 9.5 deg field of view, where perspective hardly constrains depth).
    rvec0, _ = cv2.Rodrigues(Rv)
    tvec0 = tv.copy()
    ok, rvec, tvec = cv2.solvePnP(pts[use], obs[use].astype(np.float64), K, None,
                                  rvec0.copy(), tvec0.reshape(3, 1).copy(), True, cv2.SOLVEPNP_ITERATIVE)
    if not ok or not np.all(np.isfinite(tvec)) or tvec[2, 0] <= 0:
        return np.zeros(3), np.zeros(3)
    Rp, _ = cv2.Rodrigues(rvec)
    Rg = Rv.T @ Rp
    J0 = (lmm.J_template + torch.einsum("jcn,n->jc", lmm.J_basis[..., : lmm.n_shape],
                                        st.shape))[0].numpy()
    transl = Rv.T @ (tvec[:, 0] - tv) - J0 + Rg @ J0
    aa, _ = cv2.Rodrigues(Rg)
    return aa[:, 0], transl


def to_head_params(state: State, model, lmm: LandmarkModel):
    """State (float64, possibly truncated components) -> HeadParams with the model's full sizes."""
    from ..head.params import HeadParams

    B = state.pose.shape[0]
    shape = np.zeros(model.n_shape, np.float32)
    shape[: lmm.n_shape] = state.shape.numpy()
    expr = np.zeros((B, model.n_expr), np.float32)
    expr[:, : lmm.n_expr] = state.expr.numpy()
    return HeadParams(shape, expr, state.pose.numpy().astype(np.float32),
                      state.transl.numpy().astype(np.float32))


def fit_landmarks(model, landmarks: np.ndarray, camera, opts: FitOptions | None = None,
                  init: State | None = None) -> tuple[State, LandmarkModel, np.ndarray]:
    """Fit one frame's (478, 2) pixel landmarks seen by ``camera``; returns (state, lmm, weights)."""
    opts = opts or FitOptions()
    lmm = LandmarkModel.from_model(model, opts.n_shape if opts.fit_shape else 0, opts.n_expr)
    proj = Projector(camera.K, camera.viewmat)
    w_np = landmark_weights(lmm, opts.contour_weight, opts.iris_weight)
    obs = torch.as_tensor(np.asarray(landmarks, np.float64)[None, :, :2])
    w = torch.as_tensor(w_np)[None]
    if init is None:
        state = empty_state(lmm, 1)
        aa, tr = pnp_init(lmm, proj, obs[0].numpy(), w_np)
        state.pose[0, JOINT_GLOBAL] = torch.as_tensor(aa)
        state.transl[0] = torch.as_tensor(tr)
    else:
        state = init.clone()
    # 1. rigid pose only
    rigid = Layout([(JOINT_GLOBAL,)], 0, 0)
    pri = Priors(torch.zeros(rigid.per_frame, dtype=torch.float64), pack_frame(state, rigid),
                 torch.zeros(0, dtype=torch.float64))
    state, _ = solve(lmm, proj, state, obs, w, rigid, pri, opts.pose_iterations)
    # 2. everything
    layout = Layout(fit_joints(lmm, opts), lmm.n_expr if opts.fit_expr else 0,
                    lmm.n_shape if opts.fit_shape else 0, lmm.expr_bounds, coupled=lmm.coupled)
    mu = torch.zeros(1, layout.per_frame, dtype=torch.float64)  # priors pull towards zero ...
    nj = 3 * len(layout.joints)
    mu[0, nj: nj + 3] = state.transl[0]  # ... except translation (weight 0 anyway)
    pri = Priors(frame_prior_weights(lmm, layout, opts), mu,
                 torch.full((layout.n_shape,), opts.shape_prior, dtype=torch.float64))
    state, _ = solve(lmm, proj, state, obs, w, layout, pri, opts.iterations)
    return state, lmm, w_np


def reprojection_errors(lmm: LandmarkModel, camera, state: State, landmarks: np.ndarray,
                        weights: np.ndarray) -> tuple[float, float, np.ndarray]:
    """(rmse px, mean Euclidean error px, residuals (478, 2) with NaN where weight == 0)."""
    proj = Projector(camera.K, camera.viewmat)
    uv, _ = proj.project(lmm.points(state.coeffs(), state.pose, state.transl))
    res = (uv[0].numpy() - np.asarray(landmarks, np.float64)[:, :2])
    use = weights > 0
    d = np.linalg.norm(res[use], axis=1)
    res[~use] = np.nan
    return float(np.sqrt(np.mean(d**2))), float(d.mean()), res.astype(np.float32)


def fit_image(model, obs, options: FitOptions | None = None) -> FitResult:
    """Fit ``model`` (backend.head.HeadModel) to a FaceObservation; see the module docstring."""
    t0 = time.perf_counter()
    opts = options or FitOptions()
    with torch.inference_mode(), single_thread():
        state, lmm, w = fit_landmarks(model, obs.landmarks, obs.camera, opts)
        rmse, mean, res = reprojection_errors(lmm, obs.camera, state, obs.landmarks, w)
    params = to_head_params(state, model, lmm)
    return FitResult(params=params, camera=obs.camera, rmse_px=rmse, mean_error_px=mean,
                     seconds=time.perf_counter() - t0, residuals=res)
