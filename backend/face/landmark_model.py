"""The head model restricted to its 478 mediapipe landmarks, with analytic Jacobians.

Fitting only needs the landmark points, each a barycentric mix of 3 mesh vertices. ``points``
skins the 3 corners of every landmark's triangle and mixes them: exactly ``backend.head.lbs`` on
those vertices. The Jacobians use "virtual vertices" instead (one per landmark, whose template,
blend shapes, correctives and skinning weights are the barycentric mix of its corners'): 3x less
work, exact for everything linear, and off only by the second-order term
``sum_k b_k (w_k - w_bar)(v_k - v_bar)`` where skinning weights change across a triangle (lips
under a jaw rotation). An approximate Jacobian with exact residuals still converges to the
exact residual's optimum up to a negligible bias. Rest joints are linear in the coefficients, so
the joint regressor is folded into per-joint linear bases.

Posing (same kinematics as ``backend.head.lbs``): ``p = sum_j w_j (Rw_j v' + t_j) + transl`` with
``t_j = sum_{a in chain(j)} (Rw_parent(a) - Rw_a) J_a`` and ``v'`` the rest point plus pose
correctives.

Jacobians (what makes a Gauss-Newton step cost a few milliseconds):
- coefficients (shape, expression): with rotations fixed, ``p`` is linear in v and J;
- a joint rotation: a local perturbation ``R_k exp([w])`` turns joint k's subtree about its posed
  position ``g_k`` by the world axis ``Rw_k w``, so ``dp/dw = -[y_k - W_k g_k]x Rw_k`` (y_k: the
  subtree's share of the point, W_k its weight) plus the pose-corrective change; the additive
  axis-angle parameter enters through SO(3)'s right Jacobian ``J_r(theta)``;
- translation: the identity.
``jacobian_pose_fd`` is the plain forward-difference twin the tests compare against.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..head.arkit_names import LANDMARK_UNOBSERVED
from ..rotations import axis_angle_to_matrix_torch, skew_torch

N_JOINTS = 5
FD_STEP = 1e-6  # radians; float64 keeps forward-difference error near 1e-6 relative


def _so3_coeffs(aa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """theta^2, sin(t)/t, (1-cos t)/t^2, (t - sin t)/t^3 as (..., 1, 1), Taylor near zero."""
    theta2 = (aa * aa).sum(-1, keepdim=True)[..., None]
    theta = torch.sqrt(theta2.clamp_min(1e-30))
    small = theta2 < 1e-8
    t2 = theta2.clamp_min(1e-30)
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / t2)
    c = torch.where(small, 1.0 / 6.0 - theta2 / 120.0, (theta - torch.sin(theta)) / (t2 * theta))
    return theta2, a, b, c


def right_jacobian(aa: torch.Tensor) -> torch.Tensor:
    """SO(3) right Jacobian (..., 3, 3): R(aa + d) = R(aa) exp([J_r(aa) d]x) to first order."""
    _, _, b, c = _so3_coeffs(aa)
    K = skew_torch(aa)
    return torch.eye(3, dtype=aa.dtype) - b * K + c * (K @ K)


@dataclass(frozen=True)
class CoupledBound:
    """One expression capped by the jaw's opening: ``expr[index] <= expr[base] + max(pose[joint,
    axis], 0) / per_unit`` (base < 0: no expression term). ARKit's mouthClose closes the lips over an
    open jaw and is only defined up to jawOpen (the jaw turns ``per_unit`` radians at jawOpen = 1,
    and its jawOpen shape key, when a calibrated fit solves that instead, adds its weight): above
    it the lower lip rises past the upper one, which a Live Link Face capture never carries and an
    ARKit rig renders as lips pressed through each other."""

    index: int
    base: int
    joint: int
    axis: int
    per_unit: float

    def upper(self, expr: torch.Tensor, pose: torch.Tensor) -> torch.Tensor:
        """(B,) the capped expression's upper bound for expr (B, E), pose (B, J, 3)."""
        jaw = pose[:, self.joint, self.axis].clamp_min(0.0) / self.per_unit
        return jaw + expr[:, self.base] if self.base >= 0 else jaw

    def capped(self, expr: np.ndarray, pose: np.ndarray) -> np.ndarray:
        """(T, E) ``expr`` with the capped column held at or below its cap (pose (T, J, 3)): a copy
        where that changes anything, else ``expr`` itself. Weights within 1e-6 over it (float32's
        rounding of a capped weight) count as under."""
        cap = self.upper(torch.as_tensor(np.asarray(expr, np.float64)), torch.as_tensor(np.asarray(pose, np.float64)))
        over = np.asarray(expr)[:, self.index] > cap.numpy() + 1e-6
        if not over.any():
            return expr
        out = np.array(expr, copy=True)
        out[over, self.index] = np.maximum(cap.numpy()[over], 0.0).astype(out.dtype)
        return out


def mouth_close_bound(names: list[str]) -> CoupledBound | None:
    """mouthClose capped by jawOpen (CoupledBound) for an ARKit expression basis ``names`` (the
    fitted ones), None when it lacks mouthClose."""
    from ..head.arkit_names import JOINT_CHANNELS
    from ..head.model import JOINT_NAMES

    if "mouthClose" not in names:
        return None
    # the jaw's turn per unit of jawOpen, as imports and the tracker put it on the joint
    ((joint, axis, angle),) = [(j, ax, a) for name, j, ax, a in JOINT_CHANNELS if name == "jawOpen"]
    return CoupledBound(index=names.index("mouthClose"), base=names.index("jawOpen") if "jawOpen" in names else -1,
                        joint=JOINT_NAMES.index(joint), axis=int(axis), per_unit=float(angle))


@dataclass
class LandmarkModel:
    """Landmark-only head model (float64 tensors, L = 478 virtual vertices).

    template (L, 3); basis (L, 3, C) = [shapedirs | exprdirs] (C = S + E); posedirs (L, 3, 4, 9);
    weights (L, 5); J_template (5, 3); J_basis (5, 3, C); chain (5, 5) with chain[j, a] = 1 when
    joint a is on the path root..j; valid (L,) bool.
    """

    template: torch.Tensor
    basis: torch.Tensor
    posedirs: torch.Tensor
    weights: torch.Tensor
    corners: "LandmarkModel | None"  # same fields on the 3L triangle corners (exact forward)
    bary: torch.Tensor  # (L, 3) barycentric weights of the corners
    J_template: torch.Tensor
    J_basis: torch.Tensor
    chain: torch.Tensor
    parents: list[int]
    valid: np.ndarray
    n_shape: int
    n_expr: int
    corrective_joints: list[int]  # non-root joints whose pose correctives are not all zero
    expr_bounds: tuple[float, float] | None = None  # HeadModel.expr_bounds: (0, 1) for ARKit-52
    unobserved_expr: tuple[int, ...] = ()  # expressions landmarks cannot see (arkit_names.LANDMARK_UNOBSERVED)
    coupled: CoupledBound | None = None    # an expression capped by the jaw's opening (mouthClose)

    @staticmethod
    def from_model(model, n_shape: int | None = None, n_expr: int | None = None,
                   rendered: bool = False) -> "LandmarkModel":
        """Build from a ``backend.head.HeadModel``; keep the first n_shape / n_expr components
        (cached on the model). The expressions in ``model.landmark_exprdirs`` move the landmarks
        by those directions (what an uncalibrated fit may explain with them), unless ``rendered``:
        then by their exprdirs, as the rendered head moves (a tracker calibrated to the avatar
        replaces either by what mediapipe reads of the renders)."""
        S = model.n_shape if n_shape is None else min(int(n_shape), model.n_shape)
        E = model.n_expr if n_expr is None else min(int(n_expr), model.n_expr)
        key = ("face.LandmarkModel", S, E, bool(rendered))
        cached = model.cache.get(key)
        if cached is not None:
            return cached
        emb = model.landmarks
        corners = np.asarray(model.faces, np.int64)[emb.face_idx]  # (L, 3) vertex ids
        bary = np.asarray(emb.bary, np.float64)

        def mix(a: np.ndarray) -> np.ndarray:  # per-vertex (V, ...) -> per-landmark (L, ...)
            return np.einsum("lk,lk...->l...", bary, np.asarray(a, np.float64)[corners])

        basis_v = np.concatenate([model.shapedirs[..., :S], model.exprdirs[..., :E]], axis=2)
        names = list(model.expr_names)[:E]
        for name, d in ({} if rendered else getattr(model, "landmark_exprdirs", {})).items():
            if name in names:
                basis_v[:, :, S + names.index(name)] = d
        parents = [int(p) for p in model.parents]
        chain = np.zeros((N_JOINTS, N_JOINTS))
        for j in range(N_JOINTS):
            a = j
            while a >= 0:
                chain[j, a] = 1.0
                a = parents[a]
        Jr = np.asarray(model.J_regressor, np.float64)  # (5, V)
        f64 = lambda a: torch.as_tensor(np.ascontiguousarray(a, np.float64))  # noqa: E731
        cidx = corners.reshape(-1)
        common = dict(J_template=f64(Jr @ np.asarray(model.v_template, np.float64)),
                      J_basis=f64(np.einsum("jv,vcn->jcn", Jr, np.asarray(basis_v, np.float64))),
                      chain=f64(chain), parents=parents, n_shape=S, n_expr=E, bary=f64(bary),
                      expr_bounds=getattr(model, "expr_bounds", None),
                      unobserved_expr=tuple(i for i, n in enumerate(list(model.expr_names)[:E])
                                            if n in LANDMARK_UNOBSERVED),
                      coupled=mouth_close_bound(names) if getattr(model, "expr_bounds", None) is not None else None,
                      corrective_joints=[k for k in range(1, N_JOINTS) if np.any(
                          np.asarray(model.posedirs).reshape(-1, N_JOINTS - 1, 9)[:, k - 1] != 0)])
        corner_set = LandmarkModel(
            template=f64(model.v_template[cidx]), basis=f64(basis_v[cidx]),
            posedirs=f64(np.asarray(model.posedirs)[cidx].reshape(-1, 3, N_JOINTS - 1, 9)),
            weights=f64(model.weights[cidx]), corners=None,
            valid=np.repeat(np.asarray(emb.valid, bool), 3), **common)
        out = LandmarkModel(
            template=f64(mix(model.v_template)),
            basis=f64(mix(basis_v)),
            posedirs=f64(mix(model.posedirs).reshape(-1, 3, N_JOINTS - 1, 9)),
            weights=f64(mix(model.weights)),
            corners=corner_set,
            valid=np.asarray(emb.valid, bool).copy(),
            **common,
        )
        model.cache[key] = out
        return out

    def with_rest_offsets(self, model, offsets: np.ndarray) -> "LandmarkModel":
        """A copy whose landmarks carry an avatar's ``vertex_offsets`` (V, 3) metres, rest frame,
        as avatar.posing poses them: added to the rest template and turned with the blended
        skinning, the joints left at the model's own (so the tracker fits the head the avatar
        renders: avatar.landmark_detail). ``model``: the HeadModel this was made from."""
        from dataclasses import replace

        off = np.asarray(offsets, np.float64)
        if off.shape != (model.n_verts, 3):
            raise ValueError(f"rest offsets have shape {off.shape}, expected {(model.n_verts, 3)}")
        corners = np.asarray(model.faces, np.int64)[model.landmarks.face_idx]   # (L, 3)
        mixed = np.einsum("lk,lkc->lc", np.asarray(model.landmarks.bary, np.float64), off[corners])
        t = lambda a, like: torch.as_tensor(a, dtype=like.dtype)  # noqa: E731
        corner_set = None
        if self.corners is not None:
            corner_set = replace(self.corners, template=self.corners.template
                                 + t(off[corners.reshape(-1)], self.corners.template))
        return replace(self, template=self.template + t(mixed, self.template), corners=corner_set)

    def to_dtype(self, dtype: torch.dtype) -> "LandmarkModel":
        """A copy with every tensor in ``dtype`` (cached; float32 halves the tracking cost)."""
        if self.template.dtype == dtype:
            return self
        cache = self.__dict__.setdefault("_dtype_cache", {})
        if dtype not in cache:
            from dataclasses import fields, replace

            conv = {f.name: getattr(self, f.name).to(dtype) for f in fields(self)
                    if isinstance(getattr(self, f.name), torch.Tensor)}
            corners = self.corners.to_dtype(dtype) if self.corners is not None else None
            cache[dtype] = replace(self, corners=corners, **conv)
        return cache[dtype]

    @property
    def n_landmarks(self) -> int:
        return int(self.template.shape[0])

    # ---- forward --------------------------------------------------------------------------------
    def rest(self, coeffs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rest points (B, L, 3) and rest joints (B, 5, 3) for coeffs (B, C') = [shape | expr]
        (fewer columns than S + E allowed: zero-padded)."""
        B = coeffs.shape[0]
        C = self.basis.shape[2]
        if coeffs.shape[1] < C:
            coeffs = torch.cat([coeffs, coeffs.new_zeros(B, C - coeffs.shape[1])], 1)
        L = self.n_landmarks
        # explicit matmuls: torch.einsum picks slow paths for these small float64 shapes
        v = self.template + (coeffs @ self.basis.reshape(L * 3, C).T).reshape(B, L, 3)
        J = self.J_template + (coeffs @ self.J_basis.reshape(N_JOINTS * 3, C).T).reshape(B, N_JOINTS, 3)
        return v, J

    def world_rotations(self, pose: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pose (B, 5, 3) -> local R (B, 5, 3, 3) and world (accumulated) Rw (B, 5, 3, 3)."""
        R = axis_angle_to_matrix_torch(pose)
        world = [R[:, 0]]
        for j in range(1, N_JOINTS):
            world.append(world[self.parents[j]] @ R[:, j])
        return R, torch.stack(world, 1)

    def _parent_world(self, Rw: torch.Tensor) -> torch.Tensor:
        """(B, 5, 3, 3) world rotation of each joint's parent (identity for the root)."""
        eye = torch.eye(3, dtype=Rw.dtype).expand(Rw.shape[0], 1, 3, 3)
        return torch.cat([eye, Rw[:, self.parents[1:]]], 1)

    def _blend(self, wts: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """sum_j wts[n, j] X[b, j, ...]: wts (N, 5), X (B, 5, ...) -> (B, N, ...) as one GEMM."""
        B = X.shape[0]
        tail = X.shape[2:]
        flat = X.reshape(B, N_JOINTS, -1).transpose(0, 1).reshape(N_JOINTS, -1)  # (5, B*K)
        out = (wts @ flat).reshape(wts.shape[0], B, -1).transpose(0, 1)  # (B, N, K)
        return out.reshape(B, wts.shape[0], *tail)

    def _pose_common(self, coeffs: torch.Tensor, pose: torch.Tensor):
        """Rest points/joints, rotations, corrected rest points vp (B, N, 3), skinning
        translations t (B, 5, 3), blended rotations M (B, N, 3, 3) and translations tv (B, N, 3)."""
        v, J = self.rest(coeffs)
        B, N = v.shape[:2]
        R, Rw = self.world_rotations(pose)
        feat = (R[:, 1:] - torch.eye(3, dtype=R.dtype)).reshape(B, -1)  # (B, 36)
        vp = v + (feat @ self.posedirs.reshape(N * 3, -1).T).reshape(B, N, 3)  # with correctives
        Rp = self._parent_world(Rw)
        t = self.chain @ ((Rp - Rw) @ J[..., None])[..., 0]  # (B, 5, 3)
        M = self._blend(self.weights, Rw)
        tv = self._blend(self.weights, t)
        return J, R, Rw, Rp, vp, t, M, tv

    @staticmethod
    def _matmul_unrolled(A: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """(..., K, 3) @ (..., 3, P) as three broadcast multiply-adds (see _matvec)."""
        return A[..., 0, None] * X[..., 0:1, :] + A[..., 1, None] * X[..., 1:2, :] + A[..., 2, None] * X[..., 2:3, :]

    @staticmethod
    def _matvec(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(..., 3, 3) @ (..., 3) unrolled: per-point 3x3 products as batched matmuls or size-3
        reductions are 10-50x slower on CPU than three fused multiply-adds."""
        return M[..., 0] * x[..., 0:1] + M[..., 1] * x[..., 1:2] + M[..., 2] * x[..., 2:3]

    def points(self, coeffs: torch.Tensor, pose: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
        """Posed landmark points (B, L, 3) in metres, exact (skinned triangle corners, then mixed).
        coeffs (B, C') = [shape | expr], pose (B, 5, 3) axis-angle, transl (B, 3)."""
        if self.corners is not None:
            pc = self.corners.points_virtual(coeffs, pose, transl)  # (B, 3L, 3)
            pc = pc.reshape(pc.shape[0], -1, 3, 3)
            b = self.bary[None, :, :, None]
            return pc[:, :, 0] * b[:, :, 0] + pc[:, :, 1] * b[:, :, 1] + pc[:, :, 2] * b[:, :, 2]
        return self.points_virtual(coeffs, pose, transl)

    def points_virtual(self, coeffs: torch.Tensor, pose: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
        """Posed points of this set's own vertices (the virtual vertices: the Jacobians' model)."""
        _, _, _, _, vp, _, M, tv = self._pose_common(coeffs, pose)
        return self._matvec(M, vp) + tv + transl[:, None, :]

    # ---- Jacobians ------------------------------------------------------------------------------
    def jacobians(self, coeffs: torch.Tensor, pose: torch.Tensor, transl: torch.Tensor,
                  groups: list[tuple[int, ...]], cols: torch.Tensor | None = None,
                  left=None, points: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Exact points (B, L, 3), d points / d rotation groups (B, L, 3, 3 * len(groups)) and
        d points / d coeffs[:, cols] (B, L, 3, len(cols)) (None when cols is None or empty).

        Each group is a tuple of joints rotated by one shared axis-angle (a joint: a 1-tuple).
        left: optional function points (B, L, 3) -> A (B, L, K, 3) (e.g. the projection's
        Jacobian); the returned Jacobians are then A @ J, with K rows instead of 3. Applying A
        before the per-landmark basis product turns that product into one batched GEMM.
        points: ``self.points(coeffs, pose, transl)`` when the caller has it already (a solver
        has the accepted step's points from its cost); returned as the exact points.
        """
        B = pose.shape[0]
        J, R, Rw, Rp, vp, t, M, tv = self._pose_common(coeffs, pose)
        w = self.weights  # (L, 5)
        # exact points for the residuals
        pts = self.points(coeffs, pose, transl) if points is None else points
        L = w.shape[0]
        A = left(pts) if left is not None else None

        # rotation: subtree share y_k = sum_{j in subtree(k)} w_j (Rw_j v' + t_j), weight W_k
        sub = self.chain.T  # sub[k, j] = 1 when j is in the subtree of k
        Wsub = (w[:, None, :] * sub[None]).reshape(L * N_JOINTS, N_JOINTS)  # (L*5k, 5j)
        Msub = self._blend(Wsub, Rw).reshape(B, L, N_JOINTS, 3, 3)
        tsub = self._blend(Wsub, t).reshape(B, L, N_JOINTS, 3)
        y = self._matvec(Msub, vp[:, :, None, :]) + tsub  # (B, L, 5k, 3)
        Wk = w @ sub.T  # (L, 5k)
        g = t + (Rw @ J[..., None])[..., 0]  # (B, 5, 3) posed joint positions
        z = y - Wk[None, :, :, None] * g[:, None]  # (B, L, 5, 3)
        Jr = right_jacobian(pose)  # (B, 5, 3, 3)
        C = Rw @ Jr  # (B, 5, 3, 3): column i = world axis of d theta_i
        # d p / d theta_k[:, i] = C_k[:, i] x z_k   (= -[z]x Rw_k J_r)
        c0, c1, c2 = (C[:, None, :, r, None, :] for r in range(3))  # (B, 1, 5, 1, 3i)
        z0, z1, z2 = (z[..., r, None] for r in range(3))  # (B, L, 5, 1)
        d_theta = torch.stack([c1 * z2[..., None] - c2 * z1[..., None],
                               c2 * z0[..., None] - c0 * z2[..., None],
                               c0 * z1[..., None] - c1 * z0[..., None]], 3)  # (B, L, 5, 3, 1, 3i)
        d_theta = d_theta[..., 0, :]  # (B, L, 5, 3, 3i)
        # pose correctives (joints that have any): d(R_k - I)/d theta_i = R_k [J_r e_i]x
        cj = self.corrective_joints
        if cj:
            dR = R[:, cj, None] @ skew_torch(Jr[:, cj].transpose(-1, -2))  # (B, nc, 3i, 3, 3)
            dvp = torch.einsum("lcjq,bjiq->bljci", self.posedirs[:, :, [k - 1 for k in cj]],
                               dR.reshape(B, len(cj), 3, 9))  # (B, L, nc, 3, 3i)
            Mx = M[:, :, None]  # (B, L, 1, 3, 3)
            d_theta[:, :, cj] += (Mx[..., 0, None] * dvp[..., 0:1, :] + Mx[..., 1, None] * dvp[..., 1:2, :]
                                  + Mx[..., 2, None] * dvp[..., 2:3, :])
        Jrot = torch.cat([d_theta[:, :, list(gr)].sum(2) for gr in groups], -1)  # (B, L, 3, 3G)
        if A is not None:
            Jrot = self._matmul_unrolled(A, Jrot)  # (B, L, K, 3G)

        Jc = None
        if cols is not None and len(cols) and A is not None:
            basis, J_basis = self.basis[..., cols], self.J_basis[..., cols]
            Cp, K = basis.shape[2], A.shape[2]
            AM = self._matmul_unrolled(A, M)  # (B, L, K, 3)
            # per landmark: (B*K, 3) @ (3, C') as one batched GEMM over the L landmarks
            dlm = torch.bmm(AM.permute(1, 0, 2, 3).reshape(L, B * K, 3), basis)  # (L, B*K, C')
            dlm = dlm.reshape(L, B, K, Cp).transpose(0, 1)  # (B, L, K, C')
            dD = (Rp - Rw) @ J_basis  # (B, 5, 3, C')
            dt = (self.chain @ dD.reshape(B, N_JOINTS, 3 * Cp)).reshape(B, N_JOINTS * 3, Cp)
            AW = (A[:, :, :, None, :] * w[None, :, None, :, None]).reshape(B, L * K, N_JOINTS * 3)
            Jc = dlm + torch.bmm(AW, dt).reshape(B, L, K, Cp)  # sum_j w_lj A_l dt_j
        elif cols is not None and len(cols):
            basis, J_basis = self.basis[..., cols], self.J_basis[..., cols]
            Cp = basis.shape[2]
            bz = basis[None, :, None]  # (1, L, 1, 3, C')
            dlm = M[..., 0, None] * bz[..., 0, :] + M[..., 1, None] * bz[..., 1, :] + M[..., 2, None] * bz[..., 2, :]
            dD = (Rp - Rw) @ J_basis  # (B, 5, 3, C')
            dt = self.chain @ dD.reshape(B, N_JOINTS, 3 * Cp)  # (B, 5, 3C')
            Jc = dlm + self._blend(w, dt).reshape(B, L, 3, Cp)
        return pts, Jrot, Jc

    def jacobian_pose_fd(self, coeffs: torch.Tensor, pose: torch.Tensor, transl: torch.Tensor,
                         groups: list[tuple[int, ...]]) -> torch.Tensor:
        """Forward-difference twin of ``jacobians``' rotation block (B, L, 3, 3 * len(groups)),
        differentiating the same virtual-vertex model."""
        B = pose.shape[0]
        n = 3 * len(groups)
        eps = torch.zeros(n + 1, N_JOINTS, 3, dtype=pose.dtype)
        for i, group in enumerate(groups):
            for j in group:
                eps[1 + 3 * i: 4 + 3 * i, j, :] = torch.eye(3, dtype=pose.dtype) * FD_STEP
        P = (pose[:, None] + eps[None]).reshape(B * (n + 1), N_JOINTS, 3)
        c = coeffs[:, None].expand(B, n + 1, coeffs.shape[1]).reshape(B * (n + 1), -1)
        tr = transl[:, None].expand(B, n + 1, 3).reshape(B * (n + 1), 3)
        pts = self.points_virtual(c, P, tr).reshape(B, n + 1, -1, 3)
        return ((pts[:, 1:] - pts[:, :1]) / FD_STEP).permute(0, 2, 3, 1)


def redundant_expressions(lmm: LandmarkModel, joints: list[tuple[int, ...]],
                          threshold: float = 0.9) -> np.ndarray:
    """(E,) bool: expression components whose landmark motion (at rest) lies >= ``threshold``
    (fraction of its norm) in the span of the rotations of the joint groups ``joints``.

    Such components duplicate a joint (e.g. a linearised "jawOpen" shape key next to the jaw
    joint): fitting both makes the split between them arbitrary, so the fit freezes them. A group
    counts each member joint on its own too (a one-eye "eyeLookInLeft" key duplicates the left
    eye's rotation even where both eyes share one fitted gaze).
    """
    E = lmm.n_expr
    out = np.zeros(E, bool)
    if not joints or E == 0:
        return out
    joints = [(j,) for j in sorted({j for g in joints for j in g})]
    c = torch.zeros(1, lmm.n_shape + E, dtype=torch.float64)
    pose = torch.zeros(1, N_JOINTS, 3, dtype=torch.float64)
    cols = torch.arange(lmm.n_shape, lmm.n_shape + E)
    _, jr, jc = lmm.jacobians(c, pose, torch.zeros(1, 3, dtype=torch.float64), joints, cols)
    valid = np.repeat(lmm.valid, 3)
    A = jr[0].reshape(-1, jr.shape[-1]).numpy()[valid]  # (3L, 3G)
    D = jc[0].reshape(-1, E).numpy()[valid]  # (3L, E)
    coef, *_ = np.linalg.lstsq(A, D, rcond=None)
    explained = np.linalg.norm(A @ coef, axis=0)
    out[:] = explained >= threshold * np.maximum(np.linalg.norm(D, axis=0), 1e-12)
    return out
