"""Levenberg-Marquardt on landmark reprojection error with Gaussian priors (batched frames).

Unknowns per frame b: rotations of a chosen set of joints (axis-angle), translation, expression
coefficients; optionally one identity-shape vector shared by all frames. Residuals:

    sqrt(w_bl) * (project(point_bl) - observed_bl)           pixels, per landmark and axis
    sqrt(prior_w) * (x - prior_mean)                         per parameter

except that the iris landmarks are measured relative to their eye's contour (``relative_iris``):
mediapipe locates the iris inside its eye's crop, so where the eye sits is the face mesh's reading,
and the iris's own information is its place in the eye. Fitted in absolute pixels, the gaze took
up whatever the head pose left at the eyes: on d0 the fitted iris moved twice as far in the eye as
the observed one (2.3 vs 1.1 px), and the avatar's rendered eyes, which follow the gaze, were read
1.6 px lower than the clip's (docs/figures/eval.md).

The normal equations are assembled densely (B * P_frame + S unknowns: a few hundred) and solved
with Cholesky; Marquardt's diagonal scaling handles the mix of radians, metres and coefficients.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch

from .landmark_model import N_JOINTS, CoupledBound, LandmarkModel


# mediapipe's iris rows (478-point mesh) and the eye contour each is measured against (the 16
# rows of mediapipe's FACEMESH_RIGHT_EYE / FACEMESH_LEFT_EYE). The whole contour rather than the
# two corners: on d3 (head turns) the corners alone gave 0.1 px more AKD than the absolute fit,
# the contour 0.02 px (d0: 1.84 and 1.77 px against 2.12)
IRIS_ANCHORS: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    (tuple(range(468, 473)),  # the subject's right eye
     (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)),
    (tuple(range(473, 478)),  # the subject's left eye
     (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)),
)
_N_MESH = 478


def iris_anchors(lmm: LandmarkModel) -> tuple[tuple[list[int], list[int]], ...]:
    """The (iris rows, contour rows) pairs of IRIS_ANCHORS the model places (all rows valid); none
    for meshes without the 478 rows or embeddings without irises or eye contours."""
    if lmm.n_landmarks != _N_MESH:
        return ()
    valid = np.asarray(lmm.valid, bool)
    return tuple((list(rows), list(corners)) for rows, corners in IRIS_ANCHORS
                 if valid[list(rows)].all() and valid[list(corners)].all())


def relative_iris(e: torch.Tensor, anchors) -> torch.Tensor:
    """Landmark errors or Jacobians (B, L, ...) with each iris row taken relative to its eye:
    row - mean(rows of the eye's contour), for the ``anchors`` of ``iris_anchors``. The
    transform is linear, so residuals and their Jacobians go through the same function."""
    if not anchors:
        return e
    out = e.clone()
    for rows, corners in anchors:
        out[:, rows] = e[:, rows] - e[:, corners].mean(1, keepdim=True)
    return out


def landmark_errors(lmm: LandmarkModel, proj: "Projector", state: "State", obs: torch.Tensor) -> torch.Tensor:
    """(B, L, 2) fitted residuals in pixels: projected model landmarks - observed (iris rows
    relative to their eye, ``relative_iris``)."""
    return _landmark_errors(lmm, proj, state, obs)[0]


def _landmark_errors(lmm: LandmarkModel, proj: "Projector", state: "State",
                     obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """landmark_errors and the model's posed landmark points (B, L, 3) they were measured from."""
    pts = lmm.points(state.coeffs(), state.pose, state.transl)
    uv, _ = proj.project(pts)
    return relative_iris(uv - obs, iris_anchors(lmm)), pts


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one thread inside the block (restored afterwards).

    The fit's tensors are small (a few thousand elements): thread start/sync costs more than the
    arithmetic, and on a busy 2-core machine a descheduled OpenMP worker stalls every op.
    """
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@dataclass
class Layout:
    """Which unknowns are free. joints: groups of indices into JOINT_NAMES; each group is one
    fitted axis-angle applied to all its members (e.g. (3, 4): both eyes share one gaze rotation);
    n_expr / n_shape: leading expression / shape coefficients fitted (0 = frozen);
    expr_bounds: (low, high) box for the fitted expression coefficients (ARKit-52 weights: (0, 1)),
    None = unbounded. Bounded solves are projected: every step is clipped into the box, and a
    clipped step is accepted only when it lowers the cost like any other. projected: in
    solve_frames, coefficients on a bound that the gradient pushes outwards are held there and
    the others take the Newton step of the problem with them fixed (projected Newton); False
    clips the step of the whole system (converges slowly where many weights sit at 0).
    coupled: an expression capped by the jaw's opening (CoupledBound: mouthClose), applied like the
    box: every step is clipped under it, and with ``projected``, where it sits on the cap with the
    gradient pushing it up, its distance below the cap is held at 0 and it moves with the jaw
    (coupled_substitution)."""

    joints: list[tuple[int, ...]]
    n_expr: int
    n_shape: int
    expr_bounds: tuple[float, float] | None = None
    projected: bool = False   # solve_frames: hold active bounds out of the step (see _hold_active)
    coupled: CoupledBound | None = None

    @property
    def per_frame(self) -> int:
        return 3 * len(self.joints) + 3 + self.n_expr


@dataclass
class State:
    """Current estimate, float64 tensors: shape (S_all,), expr (B, E_all), pose (B, 5, 3),
    transl (B, 3). Coefficients beyond the layout's counts stay fixed."""

    shape: torch.Tensor
    expr: torch.Tensor
    pose: torch.Tensor
    transl: torch.Tensor

    def coeffs(self) -> torch.Tensor:
        B = self.expr.shape[0]
        return torch.cat([self.shape[None].expand(B, -1), self.expr], 1)

    def clone(self) -> "State":
        return State(self.shape.clone(), self.expr.clone(), self.pose.clone(), self.transl.clone())


@dataclass
class Priors:
    """Gaussian priors as (weight, mean) per block; weights are in squared-pixel units per unit.

    frame_w (P_frame,) weights in the per-frame layout order, or (B, P_frame) per frame;
    frame_mu (B, P_frame) means;
    shape_w (n_shape,) weights towards zero.
    """

    frame_w: torch.Tensor
    frame_mu: torch.Tensor
    shape_w: torch.Tensor


class Projector:
    """Fixed pinhole camera: world points -> pixels and its Jacobian. K (3,3), viewmat (4,4)."""

    def __init__(self, K: np.ndarray, viewmat: np.ndarray) -> None:
        self.R = torch.as_tensor(np.asarray(viewmat, np.float64)[:3, :3])
        self.t = torch.as_tensor(np.asarray(viewmat, np.float64)[:3, 3])
        K = np.asarray(K, np.float64)
        self.f = torch.tensor([K[0, 0], K[1, 1]], dtype=torch.float64)
        self.c = torch.tensor([K[0, 2], K[1, 2]], dtype=torch.float64)

    def to_dtype(self, dtype: torch.dtype) -> "Projector":
        if self.R.dtype == dtype:
            return self
        out = Projector.__new__(Projector)
        out.R, out.t, out.f, out.c = (x.to(dtype) for x in (self.R, self.t, self.f, self.c))
        return out

    def project(self, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(..., 3) world -> pixels (..., 2) and camera points (..., 3)."""
        pc = pts @ self.R.T + self.t
        return pc[..., :2] / pc[..., 2:3] * self.f + self.c, pc

    def jacobian(self, pc: torch.Tensor) -> torch.Tensor:
        """d pixels / d world point (..., 2, 3) at camera points pc (..., 3)."""
        z = pc[..., 2:3].clamp_min(1e-6)
        x, y = pc[..., 0:1], pc[..., 1:2]
        zero = torch.zeros_like(z)
        fx, fy = self.f[0], self.f[1]
        row_u = torch.cat([fx / z, zero, -fx * x / z**2], -1)
        row_v = torch.cat([zero, fy / z, -fy * y / z**2], -1)
        return torch.stack([row_u, row_v], -2) @ self.R


def pack_frame(state: State, layout: Layout) -> torch.Tensor:
    """(B, P_frame) per-frame unknowns in layout order."""
    lead = [g[0] for g in layout.joints]
    parts = [state.pose[:, lead].reshape(state.pose.shape[0], -1), state.transl]
    if layout.n_expr:
        parts.append(state.expr[:, : layout.n_expr])
    return torch.cat(parts, 1)


def _apply(state: State, layout: Layout, d_frame: torch.Tensor, d_shape: torch.Tensor | None) -> State:
    new = state.clone()
    B = state.pose.shape[0]
    nj = 3 * len(layout.joints)
    for i, group in enumerate(layout.joints):
        for j in group:
            new.pose[:, j] += d_frame[:, 3 * i: 3 * i + 3]
    new.transl += d_frame[:, nj: nj + 3]
    if layout.n_expr:
        new.expr[:, : layout.n_expr] += d_frame[:, nj + 3:]
        if layout.expr_bounds is not None:
            lo, hi = layout.expr_bounds
            new.expr[:, : layout.n_expr].clamp_(lo, hi)
        c = layout.coupled
        if c is not None and c.index < layout.n_expr:
            lo = layout.expr_bounds[0] if layout.expr_bounds is not None else -torch.inf
            cap = torch.maximum(c.upper(new.expr, new.pose), torch.as_tensor(lo, dtype=new.expr.dtype))
            new.expr[:, c.index] = torch.minimum(new.expr[:, c.index], cap)
    if d_shape is not None and layout.n_shape:
        new.shape[: layout.n_shape] += d_shape
    return new


def residual_cost(lmm: LandmarkModel, proj: Projector, state: State, obs: torch.Tensor,
                  w: torch.Tensor, layout: Layout, priors: Priors) -> tuple[float, torch.Tensor]:
    """Total cost and the per-landmark pixel errors (B, L, 2) (iris rows relative to their eye)."""
    cost, err, _ = _residual_cost(lmm, proj, state, obs, w, layout, priors)
    return cost, err


def _residual_cost(lmm: LandmarkModel, proj: Projector, state: State, obs: torch.Tensor,
                   w: torch.Tensor, layout: Layout, priors: Priors) -> tuple[float, torch.Tensor, torch.Tensor]:
    """residual_cost and the posed landmark points (B, L, 3) it measured."""
    err, pts = _landmark_errors(lmm, proj, state, obs)
    cost = (w[..., None] * err**2).sum()
    dx = pack_frame(state, layout) - priors.frame_mu
    cost = cost + (priors.frame_w * dx**2).sum()
    if layout.n_shape:
        cost = cost + (priors.shape_w * state.shape[: layout.n_shape] ** 2).sum()
    return float(cost), err, pts


def solve(lmm: LandmarkModel, proj: Projector, state: State, obs: torch.Tensor, w: torch.Tensor,
          layout: Layout, priors: Priors, iterations: int, lm_lambda: float = 1e-3,
          tol: float = 1e-7) -> tuple[State, float]:
    """Minimise the cost from ``state``; returns the new state and its cost.

    obs (B, L, 2) observed pixels, w (B, L) landmark weights (0 = ignore).
    """
    B, L = w.shape
    S = layout.n_shape
    E_all = state.expr.shape[1]
    S_all = state.shape.shape[0]
    nj = 3 * len(layout.joints)
    Pf = layout.per_frame
    cols = list(range(S)) + [S_all + i for i in range(layout.n_expr)]
    col_idx = torch.as_tensor(cols, dtype=torch.long)
    sw = w.sqrt()[..., None, None]  # (B, L, 1, 1)
    anchors = iris_anchors(lmm)
    # the points of the current state come with its cost: the Jacobians reuse them (the same
    # posing of the landmark model, which was a third of the fit's posings)
    cost, _, pts = _residual_cost(lmm, proj, state, obs, w, layout, priors)
    mu = lm_lambda
    for _ in range(iterations):
        coeffs = state.coeffs()
        pts, Jrot, Jc = lmm.jacobians(coeffs, state.pose, state.transl, layout.joints,
                                      col_idx, points=pts)  # Jc: (B, L, 3, S + E_fit) or None
        uv, pc = proj.project(pts)
        r = relative_iris(uv - obs, anchors)[..., None] * sw  # (B, L, 2, 1)
        Jp = proj.jacobian(pc)  # (B, L, 2, 3)
        blocks = [Jrot, torch.eye(3, dtype=pts.dtype).expand(B, L, 3, 3)]
        if layout.n_expr:
            blocks.append(Jc[..., S:])
        Jf = relative_iris(Jp @ torch.cat(blocks, -1), anchors) * sw  # (B, L, 2, Pf)
        Jf = Jf.reshape(B, 2 * L, Pf)
        rr = r.reshape(B, 2 * L)
        xf = pack_frame(state, layout)
        Hff = Jf.transpose(1, 2) @ Jf + torch.diag_embed(priors.frame_w.expand(B, Pf))
        gf = (Jf.transpose(1, 2) @ rr[..., None])[..., 0] + priors.frame_w * (xf - priors.frame_mu)
        n = B * Pf + S
        H = torch.zeros(n, n, dtype=pts.dtype)
        g = torch.zeros(n, dtype=pts.dtype)
        for b in range(B):  # B is a handful of frames: block assembly, not a hot loop
            H[b * Pf:(b + 1) * Pf, b * Pf:(b + 1) * Pf] = Hff[b]
        g[: B * Pf] = gf.reshape(-1)
        if S:
            Js = (relative_iris(Jp @ Jc[..., :S], anchors) * sw).reshape(B, 2 * L, S)
            Hfs = Jf.transpose(1, 2) @ Js  # (B, Pf, S)
            H[: B * Pf, B * Pf:] = Hfs.reshape(B * Pf, S)
            H[B * Pf:, : B * Pf] = Hfs.reshape(B * Pf, S).T
            H[B * Pf:, B * Pf:] = torch.einsum("bks,bkt->st", Js, Js) + torch.diag(priors.shape_w)
            g[B * Pf:] = torch.einsum("bks,bk->s", Js, rr) + priors.shape_w * state.shape[:S]
        diag = torch.diagonal(H).clamp_min(1e-9)
        for _attempt in range(6):
            A = H + torch.diag(mu * diag)
            try:
                L_ = torch.linalg.cholesky(A)
                step = -torch.cholesky_solve(g[:, None], L_)[:, 0]
            except RuntimeError:
                mu *= 10.0
                continue
            cand = _apply(state, layout, step[: B * Pf].reshape(B, Pf), step[B * Pf:] if S else None)
            new_cost, _, cand_pts = _residual_cost(lmm, proj, cand, obs, w, layout, priors)
            if new_cost <= cost:
                improved = cost - new_cost
                state, cost, pts = cand, new_cost, cand_pts
                mu = max(mu / 3.0, 1e-7)
                break
            mu *= 10.0
        else:
            break  # no step reduces the cost: converged (or stuck)
        if improved <= tol * max(cost, 1.0):
            break
    return state, cost


def empty_state(lmm: LandmarkModel, B: int) -> State:
    """Zero parameters for B frames (float64)."""
    return State(torch.zeros(lmm.n_shape, dtype=torch.float64), torch.zeros(B, lmm.n_expr, dtype=torch.float64),
                 torch.zeros(B, N_JOINTS, 3, dtype=torch.float64), torch.zeros(B, 3, dtype=torch.float64))


def frame_costs(lmm: LandmarkModel, proj: Projector, state: State, obs: torch.Tensor, w: torch.Tensor,
                layout: Layout, priors: Priors) -> torch.Tensor:
    """(B,) cost of each frame (landmark term + per-frame priors; no shared-shape term)."""
    err = landmark_errors(lmm, proj, state, obs)
    dx = pack_frame(state, layout) - priors.frame_mu
    return (w * (err ** 2).sum(-1)).sum(-1) + (priors.frame_w * dx**2).sum(-1)


def _take(state: State, idx: torch.Tensor) -> State:
    return State(state.shape, state.expr[idx], state.pose[idx], state.transl[idx])


def solve_frames(lmm: LandmarkModel, proj: Projector, state: State, obs: torch.Tensor, w: torch.Tensor,
                 layout: Layout, priors: Priors, iterations: int, max_iterations: int | None = None,
                 rtol: float = 1e-3, lm_lambda: float = 1e-3) -> tuple[State, torch.Tensor]:
    """Independent frames (shape frozen: ``layout.n_shape`` must be 0), all solved at once.

    The normal equations are block-diagonal, so each frame gets its own (P_frame x P_frame)
    batched Cholesky solve, its own damping and its own accept/reject decision: a batch of B
    frames costs about as many torch calls as one frame. After ``iterations`` steps, frames whose
    cost still fell by more than ``rtol`` (relative) in the last step keep iterating, alone, up
    to ``max_iterations`` (default 3x): far-from-warm-start frames converge without slowing the
    easy ones. Returns (state, per-frame costs (B,)).
    """
    assert layout.n_shape == 0, "solve_frames keeps the shape fixed"
    dt = state.pose.dtype  # float32 is accurate enough here (0.2 um at 2 m) and twice as fast
    lmm = lmm.to_dtype(dt)
    proj = proj.to_dtype(dt)
    obs, w = obs.to(dt), w.to(dt)
    priors = Priors(priors.frame_w.to(dt), priors.frame_mu.to(dt), priors.shape_w.to(dt))
    max_iterations = 3 * iterations if max_iterations is None else max(max_iterations, iterations)
    B = w.shape[0]
    state = state.clone()  # updated in place below, frame subsets at a time
    cost = frame_costs(lmm, proj, state, obs, w, layout, priors)
    mu = torch.full((B,), lm_lambda, dtype=dt)
    active = torch.arange(B)
    for it in range(max_iterations):
        if it >= iterations and len(active) == 0:
            break
        if it < iterations:
            active = torch.arange(B)  # everyone takes the first ``iterations`` steps
        sub = _take(state, active)
        fw = priors.frame_w[active] if priors.frame_w.ndim == 2 else priors.frame_w
        sub_pri = Priors(fw, priors.frame_mu[active], priors.shape_w)
        new, new_cost, new_mu = _lm_step(lmm, proj, sub, obs[active], w[active], layout, sub_pri,
                                         cost[active], mu[active])
        gain = (cost[active] - new_cost) / cost[active].clamp_min(1e-12)
        state.expr[active], state.pose[active], state.transl[active] = new.expr, new.pose, new.transl
        cost[active], mu[active] = new_cost, new_mu
        active = active[gain > rtol]
    return state, cost


def active_bounds(xf: torch.Tensor, g: torch.Tensor, layout: Layout, eps: float = 1e-6,
                  coupled_upper: torch.Tensor | None = None) -> torch.Tensor:
    """(..., P) bool: the bounded expression unknowns held at their bound for the next step: on a
    bound with the gradient pushing out of the box (xf, g (..., P) in layout order), or on the
    coupled cap (``coupled_upper`` (...,): layout.coupled's bound at this state) with the gradient
    pushing up. Everything else (joints, translation, interior or returning coefficients) is free."""
    held = torch.zeros_like(xf, dtype=torch.bool)
    if not layout.n_expr:
        return held
    e0 = 3 * len(layout.joints) + 3
    if layout.expr_bounds is not None:
        lo, hi = layout.expr_bounds
        xe, ge = xf[..., e0:e0 + layout.n_expr], g[..., e0:e0 + layout.n_expr]
        held[..., e0:e0 + layout.n_expr] = ((xe <= lo + eps) & (ge > 0)) | ((xe >= hi - eps) & (ge < 0))
    c = layout.coupled
    if c is not None and coupled_upper is not None and c.index < layout.n_expr:
        k = e0 + c.index
        held[..., k] |= (xf[..., k] >= coupled_upper - eps) & (g[..., k] < 0)
    return held


def _hold_active(H: torch.Tensor, g: torch.Tensor, xf: torch.Tensor, layout: Layout,
                 coupled_upper: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal equations H (B, P, P), gradient g (B, P) with the active bounds' unknowns taken out
    (projected Newton, Bertsekas 1982): their rows and columns become the identity and their
    gradient 0, so the step leaves them on the bound and the free unknowns get the Newton step of
    the problem with them fixed. Clipping a step of the full system instead moves the free
    unknowns as if the held ones had gone out of the box: with most of 52 ARKit weights at 0,
    three such steps left the round trip's fit 1.38 px from mediapipe's landmarks where the
    converged fit is 0.8 px (docs/figures/arkit.md)."""
    held = active_bounds(xf, g, layout, coupled_upper=coupled_upper)
    if not bool(held.any()):
        return H, g
    free = (~held).to(H.dtype)
    H = H * free[:, :, None] * free[:, None, :] + torch.diag_embed(held.to(H.dtype))
    return H, g * free


def coupled_substitution(xf: torch.Tensor, g: torch.Tensor, layout: Layout,
                         cap: torch.Tensor, eps: float = 1e-6) -> torch.Tensor | None:
    """(B, P, P) T, or None: on frames where the coupled expression sits on its cap with the
    gradient pushing it up, the unknowns change to z with the expression's own unknown replaced by
    its distance below the cap (x-step = T @ z-step; T is the identity elsewhere), so holding that
    distance at 0 (_hold_active) moves the expression with the jaw that caps it: lips sealed over
    a jaw that opens or closes in the step. Holding the expression itself instead let each step
    open the jaw under still lips, which the next sealed again: lips sealed over an open jaw took
    six steps where this takes four (tests/face/test_mouth_close_cap.py).
    xf, g (B, P) in layout order, cap (B,) the cap at this state (CoupledBound.upper)."""
    c = layout.coupled
    if c is None or c.index >= layout.n_expr:
        return None
    e0 = 3 * len(layout.joints) + 3
    k = e0 + c.index
    on = (xf[:, k] >= cap - eps) & (g[:, k] < 0)
    if not bool(on.any()):
        return None
    B, P = xf.shape
    T = torch.eye(P, dtype=xf.dtype).expand(B, P, P).clone()
    lead = [grp[0] for grp in layout.joints]
    if c.joint in lead:
        j = 3 * lead.index(c.joint) + c.axis
        # d cap / d jaw angle: 1 / per_unit while the jaw is open (the cap's max(., 0) is flat below)
        opened = (xf[:, j] > 0).to(xf.dtype)
        T[:, k, j] = torch.where(on, opened / c.per_unit, torch.zeros_like(opened))
    if 0 <= c.base < layout.n_expr:
        T[:, k, e0 + c.base] = on.to(xf.dtype)
    return T


def _lm_step(lmm: LandmarkModel, proj: Projector, state: State, obs: torch.Tensor, w: torch.Tensor,
             layout: Layout, priors: Priors, cost: torch.Tensor, mu: torch.Tensor
             ) -> tuple[State, torch.Tensor, torch.Tensor]:
    """One damped Gauss-Newton step per frame (retried once with more damping where rejected)."""
    B, L = w.shape
    Pf = layout.per_frame
    S_all = state.shape.shape[0]
    cols = torch.arange(S_all, S_all + layout.n_expr)
    sw = w.sqrt()[..., None, None]  # (B, L, 1, 1)
    anchors = iris_anchors(lmm)
    saved = {}

    def left(pts: torch.Tensor) -> torch.Tensor:  # d pixels / d point, applied inside
        uv, pc = proj.project(pts)
        saved["uv"] = uv
        saved["Jp"] = proj.jacobian(pc)
        return saved["Jp"]

    _, Jrot, Jc = lmm.jacobians(state.coeffs(), state.pose, state.transl, layout.joints,
                                cols if layout.n_expr else None, left=left)
    r = (relative_iris(saved["uv"] - obs, anchors)[..., None] * sw).reshape(B, 2 * L)
    blocks = [Jrot, saved["Jp"]]  # translation: d pixels / d transl = d pixels / d point
    if layout.n_expr:
        blocks.append(Jc)
    Jf = (relative_iris(torch.cat(blocks, -1), anchors) * sw).reshape(B, 2 * L, Pf)
    Jt = Jf.transpose(1, 2)
    H = Jt @ Jf + torch.diag_embed(priors.frame_w.expand(B, Pf))
    xf = pack_frame(state, layout)
    g = (Jt @ r[..., None])[..., 0] + priors.frame_w * (xf - priors.frame_mu)
    T = None
    if layout.projected:
        cap = layout.coupled.upper(state.expr, state.pose) if layout.coupled is not None else None
        if cap is not None:
            T = coupled_substitution(xf, g, layout, cap)
            if T is not None:
                H = T.transpose(1, 2) @ H @ T
                g = (T.transpose(1, 2) @ g[..., None])[..., 0]
        H, g = _hold_active(H, g, xf, layout, cap)
    diag = torch.diagonal(H, dim1=1, dim2=2).clamp_min(1e-9)
    for _attempt in range(2):
        A = H + torch.diag_embed(mu[:, None] * diag)
        Lc, info = torch.linalg.cholesky_ex(A)
        step = -torch.cholesky_solve(g[..., None], Lc)[..., 0]
        if T is not None:
            step = (T @ step[..., None])[..., 0]
        step = torch.where((info == 0)[:, None] & torch.isfinite(step), step, torch.zeros_like(step))
        cand = _apply(state, layout, step, None)
        new_cost = frame_costs(lmm, proj, cand, obs, w, layout, priors)
        ok = new_cost <= cost
        state = State(state.shape, torch.where(ok[:, None], cand.expr, state.expr),
                      torch.where(ok[:, None, None], cand.pose, state.pose),
                      torch.where(ok[:, None], cand.transl, state.transl))
        cost = torch.where(ok, new_cost, cost)
        mu = torch.where(ok, (mu / 3.0).clamp_min(1e-7), mu * 10.0)
        if bool(ok.all()):
            break
    return state, cost, mu
