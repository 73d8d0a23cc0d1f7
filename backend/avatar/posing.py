"""Posing an avatar: per-frame Gaussian positions (the paper moves only positions).

Head, per LOD l: LBS of the LOD-0 mesh with the frame's expression/pose -> sparse midpoint
upsampling to LOD l -> plus the identity offsets (``U_l @ vertex_offsets + lod_offsets``) rotated by
the blended skinning rotation of their point (so detail turns with the head; LBS itself knows no
per-avatar offsets).
Shoulders: one rigid-ish transform per frame, the blend ``(1 - a) A_global + a A_neck`` of the two
skinning transforms with a = NECK_FOLLOW. The torso follows the global head motion fully and the
neck by a quarter, like mesh vertices at the base of the neck: turning the head turns the collar a
little, and the jaw, the eyes and expressions never move the shoulders (their joints are regressed
from the neutral-expression mesh).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .gaussians import GaussianAvatar

if TYPE_CHECKING:
    from ..head.lod import LOD
    from ..head.model import HeadModel
    from ..head.params import HeadParams

NECK_FOLLOW = 0.25  # fraction of the neck joint's motion the shoulders follow


def model_lods(model: "HeadModel", levels) -> dict[int, "LOD"]:
    """{level: LOD} for ``model`` (cached per topology by build_lods)."""
    from ..head.lod import build_lods

    levels = tuple(sorted({int(l) for l in levels}))
    return {l.level: l for l in build_lods(model.faces, model.n_verts, levels)}


def shaped_vertices(model: "HeadModel", shape: np.ndarray) -> np.ndarray:
    """(V, 3) float32 template + identity blend shapes (neutral expression, rest pose)."""
    s = np.asarray(shape, np.float32).reshape(-1)[: model.n_shape]
    return (model.v_template + np.einsum("vcs,s->vc", model.shapedirs[..., : len(s)], s)).astype(np.float32)


def shoulder_transforms(A: np.ndarray) -> np.ndarray:
    """(T, 4, 4) shoulder transforms from skinning transforms A (T, 5, 4, 4)."""
    return (1.0 - NECK_FOLLOW) * A[:, 0] + NECK_FOLLOW * A[:, 1]


def shoulder_transforms_for(model: "HeadModel", params: "HeadParams") -> np.ndarray:
    """(T, 4, 4) shoulder transforms of every frame of ``params``.

    The joints are regressed from the neutral-expression mesh: FLAME-style models regress them
    from the expression-shaped mesh, which would make the torso drift (tens of microns) with
    every smile or jaw-open expression coefficient."""
    from ..head.params import HeadParams

    neutral = HeadParams(params.shape, np.zeros_like(params.expr), params.pose, params.transl)
    return shoulder_transforms(lbs_numpy(model, neutral)[2])


def lbs_numpy(model: "HeadModel", params: "HeadParams") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LBS of all frames of ``params`` -> vertices (T, V, 3), joints (T, 5, 3), transforms (T, 5, 4, 4)."""
    import torch

    from ..head.lbs import HeadModelTensors, lbs

    tens = HeadModelTensors.from_model(model, "cpu")
    with torch.no_grad():
        out = lbs(tens, torch.as_tensor(params.shape), torch.as_tensor(params.expr),
                  torch.as_tensor(params.pose), torch.as_tensor(params.transl))
    return out.vertices.numpy(), out.joints.numpy(), out.transforms.numpy()


def rotate_blended(offsets: np.ndarray, weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Rotate per-point vectors by their blended skinning rotation.

    offsets (N, 3), weights (N, J) rows sum to 1, A (T, J, 4, 4) -> (T, N, 3).
    The blended rotation of every point and frame is one (N, J) @ (T, J, 9) product.
    """
    T, J = A.shape[:2]
    R = np.matmul(np.asarray(weights, np.float32), A[:, :, :3, :3].reshape(T, J, 9).astype(np.float32))  # (T, N, 9)
    R = R.reshape(T, -1, 3, 3)
    return np.matmul(R, np.asarray(offsets, np.float32)[None, :, :, None])[..., 0]


def pose(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams", lod: int,
         chunk: int = 64) -> np.ndarray:
    """(T, N_l + N_shoulders, 3) float32 Gaussian means for every frame of ``params``.

    Order: the LOD's head Gaussians, then the shoulders (as GaussianAvatar.rest_set). ``params``
    supplies expression, pose and translation; the identity is always the avatar's own
    (``avatar.params.shape``). Frames are processed ``chunk`` at a time to bound memory.
    """
    from ..head.params import HeadParams

    if lod not in avatar.lods:
        raise ValueError(f"avatar has no LOD {lod} (it has {avatar.levels})")
    if model.n_verts != avatar.vertex_offsets.shape[0]:
        raise ValueError(f"head model '{model.name}' has {model.n_verts} vertices but the avatar was "
                         f"built on {avatar.vertex_offsets.shape[0]} ('{avatar.head_model_name}')")
    U = model_lods(model, [lod])[lod].upsample
    off = (U @ avatar.vertex_offsets + avatar.lod_offsets[lod]).astype(np.float32)  # (V_l, 3)
    W = np.asarray(U @ model.weights, np.float32)                                     # (V_l, 5)
    shoulders = avatar.shoulders.means
    T = params.n_frames
    V, Vl = model.n_verts, U.shape[0]
    out = np.empty((T, Vl + len(shoulders), 3), np.float32)
    for t0 in range(0, T, chunk):
        sl = slice(t0, min(T, t0 + chunk))
        p = HeadParams(avatar.params.shape, params.expr[sl], params.pose[sl], params.transl[sl])
        verts, _, A = lbs_numpy(model, p)                   # (t, V, 3), (t, 5, 4, 4)
        t = verts.shape[0]
        head = (U @ verts.transpose(1, 0, 2).reshape(V, t * 3)).reshape(Vl, t, 3).transpose(1, 0, 2)
        out[sl, :Vl] = head + rotate_blended(off, W, A)
        M = shoulder_transforms_for(model, p)              # (t, 4, 4)
        out[sl, Vl:] = np.einsum("nc,trc->tnr", shoulders, M[:, :3, :3]) + M[:, None, :3, 3]
    return out


def posed_set(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams", lod: int, frame: int = 0):
    """The LOD's full GaussianSet (head + shoulders) moved to frame ``frame`` of ``params``."""
    means = pose(avatar, model, params.frame(frame), lod)[0]
    return avatar.rest_set(lod).with_means(means)
