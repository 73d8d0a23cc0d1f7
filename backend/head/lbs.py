"""FLAME-style linear blend skinning in torch (batched over frames, CPU or CUDA)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..rotations import axis_angle_to_matrix_torch
from .model import HeadModel


@dataclass(eq=False)  # holds arrays: identity equality/hash (usable as a cache key)
class HeadModelTensors:
    """Torch copies of a HeadModel's arrays on one device (float32).

    v_template (V,3), shapedirs (V,3,S), exprdirs (V,3,E), posedirs (36, V*3), J_regressor (5,V),
    weights (V,5), parents list[int], faces (F,3) int64.
    """

    v_template: torch.Tensor
    shapedirs: torch.Tensor
    exprdirs: torch.Tensor
    posedirs: torch.Tensor
    J_regressor: torch.Tensor
    weights: torch.Tensor
    faces: torch.Tensor
    parents: list[int]

    @property
    def device(self) -> torch.device:
        return self.v_template.device

    @staticmethod
    def from_model(model: HeadModel, device: str | torch.device = "cpu") -> "HeadModelTensors":
        """Torch copies of ``model`` on ``device``, cached on the model per device."""
        device = torch.device(device)
        key = ("tensors", str(device))
        cached = model.cache.get(key)
        if cached is not None:
            return cached
        f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a, np.float32), device=device)  # noqa: E731
        V = model.n_verts
        out = HeadModelTensors(
            v_template=f32(model.v_template),
            shapedirs=f32(model.shapedirs),
            exprdirs=f32(model.exprdirs),
            # (V,3,36) -> (36, V*3) so the corrective is one matmul: (B,36) @ (36, V*3)
            posedirs=f32(model.posedirs.reshape(V * 3, -1).T),
            J_regressor=f32(model.J_regressor),
            weights=f32(model.weights),
            faces=torch.as_tensor(np.asarray(model.faces, np.int64), device=device),
            parents=[int(p) for p in model.parents],
        )
        model.cache[key] = out
        return out


@dataclass(eq=False)  # holds arrays: identity equality/hash (usable as a cache key)
class LBSOutput:
    """vertices (B,V,3) posed, metres; joints (B,5,3) posed joint positions;
    transforms (B,5,4,4) skinning transforms: posed = transforms[j] @ [rest, 1] for a vertex bound
    only to joint j (rotation = joint's world rotation; translation includes ``transl``)."""

    vertices: torch.Tensor
    joints: torch.Tensor
    transforms: torch.Tensor


def joint_transforms(J: torch.Tensor, R: torch.Tensor, parents: list[int],
                     transl: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Skinning transforms A (B, J, 4, 4) and posed joint positions (B, J, 3) from rest joints
    J (B, J, 3) and joint rotations R (B, J, 3, 3) along the kinematic chain ``parents``:
    posed = A[j] @ [rest, 1] for a point bound only to joint j (the rest joint position is removed;
    ``transl`` (B, 3) is added to both)."""
    B, dt, dev = J.shape[0], J.dtype, J.device
    rel = J.clone()
    for j, p in enumerate(parents):
        if p >= 0:
            rel[:, j] = J[:, j] - J[:, p]
    local = torch.zeros(B, len(parents), 4, 4, dtype=dt, device=dev)
    local[:, :, :3, :3] = R
    local[:, :, :3, 3] = rel
    local[:, :, 3, 3] = 1
    world = [local[:, 0]]
    for j in range(1, len(parents)):
        world.append(world[parents[j]] @ local[:, j])
    G = torch.stack(world, 1)  # (B,5,4,4) world transform of each joint
    A = G.clone()
    A[:, :, :3, 3] = G[:, :, :3, 3] - (G[:, :, :3, :3] @ J[..., None])[..., 0]
    posed_joints = G[:, :, :3, 3]
    if transl is not None:
        t = torch.as_tensor(transl, dtype=dt, device=dev).reshape(B, 1, 3)
        A[:, :, :3, 3] = A[:, :, :3, 3] + t
        posed_joints = posed_joints + t
    return A, posed_joints


def lbs(model: HeadModelTensors, shape: torch.Tensor, expr: torch.Tensor, pose: torch.Tensor,
        transl: torch.Tensor | None = None) -> LBSOutput:
    """Pose the model. shape (B,S) or (S,), expr (B,E), pose (B,5,3) axis-angle, transl (B,3).

    Fewer coefficients than the model has are allowed (the rest are zero). Differentiable.
    """
    dev, dt = model.device, model.v_template.dtype
    expr = torch.as_tensor(expr, dtype=dt, device=dev)
    pose = torch.as_tensor(pose, dtype=dt, device=dev)
    B = pose.shape[0]
    shape = torch.as_tensor(shape, dtype=dt, device=dev)
    if shape.ndim == 1:
        shape = shape.expand(B, -1)
    S, E = shape.shape[1], expr.shape[1]

    # 1. identity and expression blend shapes  (B,V,3)
    v = (model.v_template
         + torch.einsum("vcs,bs->bvc", model.shapedirs[..., :S], shape)
         + torch.einsum("vce,be->bvc", model.exprdirs[..., :E], expr))
    # 2. rest joints from the shaped mesh  (B,5,3)
    J = torch.einsum("jv,bvc->bjc", model.J_regressor, v)
    # 3. pose correctives from (R - I) of the non-root joints  (B,36) -> (B,V,3)
    R = axis_angle_to_matrix_torch(pose)  # (B,5,3,3)
    eye = torch.eye(3, dtype=dt, device=dev)
    pose_feat = (R[:, 1:] - eye).reshape(B, -1)
    v = v + (pose_feat @ model.posedirs).reshape(B, -1, 3)
    # 4. kinematic chain -> skinning transforms (B,5,4,4)
    A, posed_joints = joint_transforms(J, R, model.parents, transl)
    # 5. blend transforms per vertex and apply  (B,V,3,4)
    T = torch.einsum("vj,bjrc->bvrc", model.weights, A[:, :, :3, :])
    verts = (T[..., :3] @ v[..., None])[..., 0] + T[..., 3]
    return LBSOutput(vertices=verts, joints=posed_joints, transforms=A)


def lbs_params(model: HeadModelTensors, params, frames: slice | None = None) -> LBSOutput:
    """Convenience: pose ``model`` with a :class:`HeadParams` (all frames, or a slice)."""
    sl = frames or slice(None)
    return lbs(model, torch.as_tensor(params.shape), torch.as_tensor(params.expr[sl]),
               torch.as_tensor(params.pose[sl]), torch.as_tensor(params.transl[sl]))
