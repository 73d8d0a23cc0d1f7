"""The bounded (ARKit-52, [0, 1]) expression solve: active bounds are held out of the Newton step
(projected Newton) instead of clipping a step of the whole system, checked against scipy's
bounded least squares on the same cost."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from backend.face import source_camera
from backend.face.landmark_model import LandmarkModel
from backend.face.solver import Layout, Priors, Projector, State, active_bounds, frame_costs, solve_frames


def test_active_bounds_hold_only_coefficients_pushed_out_of_the_box():
    layout = Layout([(0,)], 4, 0, (0.0, 1.0))            # 3 rotation + 3 translation + 4 weights
    x = torch.tensor([[0.1, 0.2, 0.3, 0.0, 0.0, 2.0, 0.0, 0.0, 1.0, 0.5]])
    g = torch.tensor([[5.0, -5.0, 5.0, 5.0, -5.0, 5.0, 1.0, -1.0, -1.0, 3.0]])
    held = active_bounds(x, g, layout)[0].tolist()
    # the joint and translation never; weight 0 at 0 going down: held; weight 1 at 0 going up: free;
    # weight 2 at 1 going up: held; weight 3 inside: free
    assert held == [False] * 6 + [True, False, True, False]
    assert not active_bounds(x, g, Layout([(0,)], 4, 0, None)).any()   # unbounded: nothing held


def _problem(n_frames: int, seed: int):
    """Stand-in landmarks of sparse ARKit weights plus motion only negative weights would make
    (a capture the [0, 1] box cannot reproduce), seen by the source camera with 0.3 px noise."""
    from backend.head.arkit_names import JOINT_CHANNELS, LANDMARK_UNOBSERVED
    from backend.head.loader import load_head_model

    model = load_head_model(None)
    lmm = LandmarkModel.from_model(model, 0)
    cam = source_camera(512)
    proj = Projector(cam.K, cam.viewmat)
    skip = {n for n, *_ in JOINT_CHANNELS} | set(LANDMARK_UNOBSERVED)
    free = [i for i, n in enumerate(model.expr_names) if n not in skip]
    rng = np.random.default_rng(seed)
    expr = np.zeros((n_frames, lmm.n_expr))
    for t in range(n_frames):
        ch = rng.choice(free, 7, replace=False)
        expr[t, ch[:4]] = rng.uniform(0.3, 1.0, 4)
        expr[t, ch[4:]] = -0.4
    f64 = lambda a: torch.as_tensor(np.asarray(a, np.float64))  # noqa: E731
    zeros = State(torch.zeros(0, dtype=torch.float64), f64(expr), torch.zeros(n_frames, 5, 3, dtype=torch.float64),
                  torch.zeros(n_frames, 3, dtype=torch.float64))
    uv, _ = proj.project(lmm.points(zeros.coeffs(), zeros.pose, zeros.transl))
    obs = uv + f64(rng.normal(0, 0.3, uv.shape))
    return lmm, proj, obs, free


def test_bounded_solve_reaches_the_bounded_optimum_in_three_steps():
    from scipy.optimize import least_squares

    seed = 0
    B = 1   # the reference takes about 30 function evaluations of 59 frames
    lmm, proj, obs, free = _problem(B, seed)
    layout = Layout([(0,)], lmm.n_expr, 0, (0.0, 1.0), projected=True)   # rotation, translation, 52 weights
    P = layout.per_frame
    prior_w = torch.full((P,), 10.0, dtype=torch.float64)
    prior_w[:6] = 0.0
    skip = [i for i in range(lmm.n_expr) if i not in free]
    prior_w[6 + torch.as_tensor(skip)] = 1e8                 # joint channels and tongueOut pinned at 0
    w = torch.as_tensor(lmm.valid, dtype=torch.float64)[None].expand(B, -1)
    start = State(torch.zeros(0, dtype=torch.float64), torch.zeros(B, lmm.n_expr, dtype=torch.float64),
                  torch.zeros(B, 5, 3, dtype=torch.float64), torch.zeros(B, 3, dtype=torch.float64))
    pri = Priors(prior_w, torch.zeros(B, P, dtype=torch.float64), torch.zeros(0, dtype=torch.float64))
    _, cost = solve_frames(lmm, proj, start, obs, w, layout, pri, 3, max_iterations=3)
    _, clipped = solve_frames(lmm, proj, start, obs, w, replace(layout, projected=False), pri, 3, max_iterations=3)
    # clipping a step of the whole system instead stalls far above (415 against 146 here)
    assert bool((clipped > 2.0 * cost).all()), (clipped.tolist(), cost.tolist())

    # the plain reference: scipy's trust-region reflective bounded least squares on the same cost
    sw = w[0].sqrt()[:, None]
    ps = torch.sqrt(prior_w)

    def residuals(X: np.ndarray, b: int) -> np.ndarray:   # X (N, P) -> (N, 2L + P)
        X = torch.as_tensor(np.atleast_2d(X))
        pose = torch.zeros(len(X), 5, 3, dtype=torch.float64)
        pose[:, 0] = X[:, :3]
        st = State(start.shape, X[:, 6:], pose, X[:, 3:6])
        uv, _ = proj.project(lmm.points(st.coeffs(), st.pose, st.transl))
        return torch.cat([((uv - obs[b]) * sw).reshape(len(X), -1), ps * X], 1).numpy()

    def jacobian(x: np.ndarray, b: int, h: float = 1e-6) -> np.ndarray:   # forward differences, batched
        R = residuals(np.vstack([x, x + h * np.eye(P)]), b)
        return ((R[1:] - R[0]) / h).T

    for b in range(B):
        lo = np.r_[-np.inf * np.ones(6), np.zeros(lmm.n_expr)]
        hi = np.r_[np.inf * np.ones(6), np.ones(lmm.n_expr)]
        ref = least_squares(lambda x: residuals(x, b)[0], np.zeros(P), jac=lambda x: jacobian(x, b),
                            bounds=(lo, hi), method="trf", xtol=1e-8, ftol=1e-8)
        ref_cost = float((ref.fun ** 2).sum())
        # three projected-Newton steps land within 3 % of the bounded optimum (1.8 % here)
        assert float(cost[b]) <= 1.03 * ref_cost, (b, float(cost[b]), ref_cost)
