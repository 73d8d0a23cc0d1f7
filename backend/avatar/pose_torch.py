"""Batched posing in torch: B frames of HeadParams -> (B, N, 3) means and (B, N, 4) quaternions,
on the splatter's device from parameters to splatter input (no host round trip per frame).

The same maths as the numpy reference twin (``posing.pose`` for positions,
``pose_reference.pose_quats_reference`` for rotations):

- head, LOD l: LBS of the LOD-0 mesh (``head.lbs``) -> midpoint upsampling to LOD l (one sparse
  product, ``head.lod.LOD.pose``) -> plus the identity offsets rotated by the point's blended
  skinning rotation ``R = sum_j w_j A_j[:3, :3]`` (upsampled with the positions: U (W A) = (U W) A);
- skinned parts (GaussianAvatar.parts: body, hair, mouth interior, eyes): their rest positions
  plus their own shape keys (``x + sum_e c_e D_e``, SkinnedPart.shapes: tongueOut the tongue; and
  the clamped ones, ``max(c_e - s_e, 0) D_e``, SkinnedPart.clamped: here, before the numba tail,
  which takes the shaped rest positions),
  skinned by ``M = sum_j w_j A_j`` with the neutral-expression joint transforms
  (posing.part_transforms);
- every Gaussian's rotation: ``q * q_rest`` with q the normalized blend (same weights) of the
  joints' rotation quaternions (posing.blended_quats), so a turned head turns its splats too.

Every frame is computed by the same operations whatever the batch size (matmuls broadcast over the
frame axis, a sparse product whose columns are frames, elementwise products), so the result is
bit-identical across batch sizes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..rotations import axis_angle_to_matrix_torch, matrix_to_quat_torch, quat_multiply_torch
from .gaussians import GaussianAvatar

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams


@dataclass(eq=False)
class PosedBatch:
    """means (B, N, 3) float32 metres; quats (B, N, 4) float32 unit w,x,y,z; growth (B, N) float32
    >= 1, each Gaussian's scale factor (avatar.stretch_growth; None: the poser does not grow them);
    joints (B, J, 4) float32 unit w,x,y,z, each joint's world rotation (global, neck, jaw, eyes; the
    view-dependent Gaussians' frames, view_colors.py); on the poser's device."""

    means: torch.Tensor
    quats: torch.Tensor
    growth: torch.Tensor | None = None
    joints: torch.Tensor | None = None

    def scales(self, rest: torch.Tensor) -> torch.Tensor:
        """The frames' scales from the rest scales (N, 3): (B, N, 3) grown, or ``rest`` itself."""
        return rest if self.growth is None else rest[None] * self.growth[..., None]


def _apply(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(B, N, 12) row-major 3x4 transforms applied to (B | 1, N, 3) points -> (B, N, 3)."""
    T = T.view(*T.shape[:-1], 3, 4)
    return (T[..., :3] * points[..., None, :]).sum(-1) + T[..., 3]


def _with_torso(A: torch.Tensor, torso: torch.Tensor | None) -> torch.Tensor:
    """(B, J, 4, 4) joint transforms with the torso channel (B, 3) added to the global joint's own
    translation (a new tensor; torch twin of posing.with_torso)."""
    if torso is None:
        return A
    A = A.clone()
    A[:, 0, :3, 3] += torso
    return A


class TorchPoser:
    """One avatar at one LOD, ready to pose batches of frames on ``device``.

    Construction moves the avatar's rest data to the device once; ``pose`` then takes (B, E)
    expressions, (B, 5, 3) axis-angle joint rotations and (B, 3) translations (numpy or torch) and
    returns a PosedBatch. The identity is always the avatar's own."""

    def __init__(self, avatar: GaussianAvatar, model: "HeadModel", lod: int,
                 device: str | torch.device = "cpu", grow: bool = True) -> None:
        from ..head.lbs import HeadModelTensors
        from .posing import model_lods, shaped_vertices

        if lod not in avatar.lods:
            raise ValueError(f"avatar has no LOD {lod} (it has {avatar.levels})")
        if model.n_verts != avatar.vertex_offsets.shape[0]:
            raise ValueError(f"head model '{model.name}' has {model.n_verts} vertices but the avatar was "
                             f"built on {avatar.vertex_offsets.shape[0]} ('{avatar.head_model_name}')")
        self.device = torch.device(device)
        self.model = model
        t = HeadModelTensors.from_model(model, self.device)
        dev = self.device
        f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a, np.float32), device=dev)  # noqa: E731
        self.lod = model_lods(model, [lod])[lod]
        U = self.lod.upsample
        offsets = np.asarray(U @ avatar.vertex_offsets + avatar.lod_offsets[lod], np.float32)
        self.has_offsets = bool(np.any(offsets))     # all zero (an unrefined build): nothing to turn
        self.offsets = f32(offsets)                                                       # (V_l, 3)
        rest = avatar.rest_set(lod)
        self.n_head = U.shape[0]
        self.rest_quats = f32(rest.quats / np.linalg.norm(rest.quats, axis=1, keepdims=True))  # (N, 4)
        self.part_weights = f32(avatar.part_weights(model.weights.shape[1]))              # (P, J)
        self.part_rest = f32(rest.means[self.n_head:])                                    # (P, 3)
        basis = avatar.part_shape_basis(model.expr_names)  # linear keys, then clamped ones
        self.part_shape_idx = torch.as_tensor(basis.idx, device=dev)                      # (K,)
        self.part_shape_start = f32(basis.start)                                          # (K,)
        self.part_shape_clamped = torch.as_tensor(basis.clamped, device=dev)              # (K,) bool
        self.has_clamped = bool(basis.clamped.any())
        # explicit rows: a head model none of whose expressions the parts key (FLAME's exp_000...) gives K = 0
        self.part_shape_dirs = f32(basis.dirs.reshape(len(self.part_rest) * 3, len(basis)))     # (P*3, K)
        shape = np.zeros(model.n_shape, np.float32)
        s = np.asarray(avatar.params.shape, np.float32).reshape(-1)[: model.n_shape]
        shape[: len(s)] = s
        self.v_shaped = f32(shaped_vertices(model, shape))                                # (V, 3)
        self.exprdirs = t.exprdirs.reshape(-1, t.exprdirs.shape[-1])                     # (V*3, E)
        self.n_expr = int(t.exprdirs.shape[-1])
        self.posedirs_t = t.posedirs.T.contiguous()                                      # (V*3, 36)
        self.J_regressor, self.weights, self.parents = t.J_regressor, t.weights, t.parents
        # rest joints of the neutral-expression shaped mesh: the parts' joint transforms use these
        self.neutral_joints = f32(model.J_regressor @ shaped_vertices(model, avatar.params.shape))  # (J, 3)
        self.n_gaussians = len(rest)
        # per-frame growth of the head's Gaussians (stretch_growth), measured on its LOD-0 rows
        self.grow = bool(grow)
        if self.grow:
            from ..head.lod import upsample_parents
            from .stretch_growth import growth_field

            gf = growth_field(avatar, model, lod)
            self.growth_edges = torch.as_tensor(gf.edges, device=dev)                   # (E, 2)
            self.growth_rest = f32(gf.rest_length)                                      # (E,)
            self.growth_allowance = f32(gf.allowance)                                   # (V,)
            self.growth_cap = gf.cap
            parents, weights = upsample_parents(U)
            self.growth_parents = torch.as_tensor(parents.astype(np.int64), device=dev)   # (V_l, k)
            self.growth_weights = f32(weights)                                          # (V_l, k)
        # on the CPU the per-Gaussian tail runs as numba kernels (pose_kernels); False: the torch
        # twin (other devices always; tests compare the two)
        self.fused_cpu = self.device.type == "cpu"

    def pose(self, expr, pose, transl, torso=None) -> PosedBatch:
        """expr (B, E), pose (B, 5, 3) radians, transl (B, 3) metres, torso (B, 3) metres or None
        (the torso channel, posing.with_torso) -> PosedBatch (B, N, ...)."""
        from ..head.lbs import joint_transforms

        dev = self.device
        f = lambda a: torch.as_tensor(a, dtype=torch.float32, device=dev)  # noqa: E731
        expr, pose, transl = f(expr), f(pose), f(transl)
        B, E = expr.shape[0], min(expr.shape[1], self.n_expr)
        V = self.v_shaped.shape[0]
        # LBS of the LOD-0 mesh (as head.lbs.lbs). Matrix products are broadcast over the frame
        # axis with per-frame matrices of the same shape whatever B is; the two blend-shape
        # products are one matrix-vector product per frame (torch folds a batch of them into one
        # GEMM whose rounding depends on B). Hence bit-stable across batch sizes.
        v = self.v_shaped + torch.stack([self.exprdirs[:, :E] @ e for e in expr[:, :E]]).view(B, V, 3)
        J = torch.matmul(self.J_regressor, v)                                   # (B, J, 3)
        R = axis_angle_to_matrix_torch(pose)                                                     # (B, J, 3, 3)
        feat = (R[:, 1:] - torch.eye(3, device=dev)).reshape(B, -1)             # (B, 36)
        v = v + torch.stack([self.posedirs_t @ c for c in feat]).view(B, V, 3)
        A, _ = joint_transforms(J, R, self.parents, transl)                     # (B, J, 4, 4)
        torso = None if torso is None else f(torso)                             # (B, 3)
        A = _with_torso(A, torso)
        A12 = A[:, :, :3, :].reshape(B, -1, 12)                                  # (B, J, 12)
        T = torch.matmul(self.weights, A12)                                     # (B, V, 12)
        verts = _apply(T, v)                                                    # (B, V, 3)
        # rotations: each joint's quaternion, blended with the point's weights (all joint rotations
        # lie within 180 degrees of the rest pose, so w > 0 puts them in one hemisphere)
        qj = matrix_to_quat_torch(A[:, :, :3, :3])                                    # (B, J, 4)
        q0 = torch.matmul(self.weights, qj)                                     # (B, V, 4)
        # head at LOD l: one sparse upsampling product carries positions, blended rotation matrices
        # and blended quaternions (U @ (W A) = (U W) A: the LOD's skinning weights are U W)
        channels = [verts, q0] + ([T[..., [0, 1, 2, 4, 5, 6, 8, 9, 10]]] if self.has_offsets else [])
        base = torch.cat(channels, -1)                                          # (B, V, 7 | 16)
        # on the CPU the upsampling is fused into the numba tail (pose_kernels.head_tail)
        up = None if self.fused_cpu else self.lod.pose(base)                    # (B, V_l, 7 | 16)
        # parts: neutral-expression joint transforms, blended per point
        An, _ = joint_transforms(self.neutral_joints.expand(B, -1, -1), R, self.parents, transl)
        An = _with_torso(An, torso)
        rest = self.part_rest[None]                                             # (1 | B, P, 3)
        if len(self.part_shape_idx):  # the parts' shape keys, one matrix-vector product a frame
            c = torch.zeros(B, self.n_expr, dtype=torch.float32, device=dev)
            c[:, :E] = expr[:, :E]
            c = c[:, self.part_shape_idx]                                       # (B, K)
            if self.has_clamped:  # clamped keys: max(e - start, 0), flat below the start
                c = torch.where(self.part_shape_clamped, (c - self.part_shape_start).clamp_min(0.0), c)
            rest = rest + torch.stack([self.part_shape_dirs @ k for k in c]).view(B, -1, 3)
        An12 = An[:, :, :3, :].reshape(B, -1, 12)                               # (B, J, 12)
        qn = matrix_to_quat_torch(An[:, :, :3, :3])                             # (B, J, 4)
        if self.fused_cpu:  # the per-Gaussian tail fused in numba (pose_kernels), same maths
            posed = self._tail_cpu(base, An12, qn, rest)
            posed.joints = qn
            return self._with_growth(posed)
        head, qh = up[..., :3], up[..., 3:7]
        if self.has_offsets:
            head = head + (up[..., 7:].reshape(B, -1, 3, 3) * self.offsets[None, :, None, :]).sum(-1)
        parts = _apply(torch.matmul(self.part_weights, An12), rest)
        qp = torch.matmul(self.part_weights, qn)
        means = torch.cat([head, parts], 1)
        q = torch.cat([qh, qp], 1)
        quats = quat_multiply_torch(q / q.norm(dim=-1, keepdim=True), self.rest_quats[None])
        return self._with_growth(PosedBatch(means.contiguous(), quats.contiguous(), joints=qn))

    def _with_growth(self, posed: PosedBatch) -> PosedBatch:
        """``posed`` with its growth (stretch_growth, from the head's posed LOD-0 rows; the torch
        twin of posed.pose_growth), or as it is when the poser does not grow Gaussians."""
        if not self.grow:
            return posed
        from .stretch_growth import vertex_growth_torch

        V = self.v_shaped.shape[0]
        g0 = vertex_growth_torch(posed.means[:, :V], self.growth_edges, self.growth_rest, self.growth_allowance,
                                 self.growth_cap)                                       # (B, V)
        # the LOD's blend slot by slot (elementwise: the same for any batch of frames, where the
        # sparse product is not)
        P, W = self.growth_parents, self.growth_weights
        g = g0[:, P[:, 0]] * W[:, 0]                                                    # (B, V_l)
        for k in range(1, P.shape[1]):
            g = g + g0[:, P[:, k]] * W[:, k]
        B = g.shape[0]
        ones = torch.ones(B, self.n_gaussians - self.n_head, dtype=g.dtype, device=g.device)
        posed.growth = torch.cat([g, ones], 1).contiguous()
        return posed

    def _tail_cpu(self, base: torch.Tensor, An12: torch.Tensor, qn: torch.Tensor, rest: torch.Tensor) -> PosedBatch:
        """The torch tail of ``pose`` (LOD upsampling, head offsets, parts skinning, quaternion
        blend and product) in two numba passes writing straight into the (B, N, 3) / (B, N, 4)
        outputs. base: (B, V_0, 7 | 16) LOD-0 channels (see ``pose``)."""
        from .pose_kernels import head_tail, parts_tail

        B = base.shape[0]
        means = torch.empty(B, self.n_gaussians, 3, dtype=torch.float32)
        quats = torch.empty(B, self.n_gaussians, 4, dtype=torch.float32)
        m, q, rq = means.numpy(), quats.numpy(), self.rest_quats.numpy()
        U = self.lod.upsample
        head_tail(base.contiguous().numpy(), U.indptr, U.indices, U.data, self.offsets.numpy(), rq,
                      self.has_offsets, m, q)
        if self.n_gaussians > self.n_head:
            parts_tail(An12.contiguous().numpy(), qn.contiguous().numpy(), self.part_weights.numpy(),
                       rest.contiguous().numpy(), rq, self.n_head, m, q)
        return PosedBatch(means, quats)

    def global_share(self, rows: np.ndarray) -> np.ndarray:
        """(K,) float32 in [0, 1]: the global joint's share of the skinning weights of the LOD's
        Gaussians ``rows`` (K,) int (head, then parts): the rest (neck, jaw, eyes) is the head's."""
        rows = np.asarray(rows, np.int64)
        out = np.empty(len(rows), np.float32)
        head = rows < self.n_head
        w0 = self.weights[:, 0].cpu().numpy().astype(np.float64)
        out[head] = self.lod.upsample[rows[head]] @ w0
        out[~head] = self.part_weights[:, 0].cpu().numpy()[rows[~head] - self.n_head]
        return np.clip(out, 0.0, 1.0)

    def pose_params(self, params: "HeadParams") -> PosedBatch:
        """All frames of ``params`` (its identity is ignored: the avatar's own is used)."""
        return self.pose(params.expr, params.pose, params.transl, params.torso)
