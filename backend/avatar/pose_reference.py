"""Plain numpy reference twin of ``pose_torch.TorchPoser`` (tests compare the two).

Positions: ``posing.pose`` (numpy, frames in chunks); the parts' shape keys (linear and clamped)
once more in plain loops, ``part_rest_reference``. Rotations: every Gaussian's posed quaternion
``q * q_rest`` with q the normalized weighted blend of the joints' quaternions
(``posing.blended_quats``; head: the LOD's upsampled skinning weights and the expression-shaped LBS
transforms; parts: ``posing.pose_parts``, their weights and the neutral-expression transforms).
Growth (``stretch_growth``): the per-vertex stretch edge by edge in plain loops, ``pose_growth_reference``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .gaussians import GaussianAvatar

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams


def part_rest_reference(avatar: GaussianAvatar, model: "HeadModel", expr: np.ndarray) -> np.ndarray:
    """(T, P, 3) float64: every part's rest positions with its shape keys applied, key by key in
    plain loops (the twin of ``posing.shaped_part_means`` and of TorchPoser's shaped rest): a linear
    key adds ``e * D``, a clamped one ``max(e - start, 0) * delta``; keys the model lacks are skipped,
    expressions beyond ``expr``'s (T, E) columns count as 0."""
    names = list(model.expr_names)
    e = np.asarray(expr, np.float64).reshape(len(expr), -1)
    weight = lambda t, name: e[t, names.index(name)] if names.index(name) < e.shape[1] else 0.0  # noqa: E731
    out = []
    for t in range(len(e)):
        rows = []
        for part in avatar.parts:
            x = part.gaussians.means.astype(np.float64)
            for name, d in part.shapes.items():
                if name in names:
                    x = x + weight(t, name) * d.astype(np.float64)
            for name, c in part.clamped.items():
                if name in names:
                    x = x + max(weight(t, name) - c.start, 0.0) * c.delta.astype(np.float64)
            rows.append(x)
        out.append(np.concatenate(rows) if rows else np.zeros((0, 3)))
    return np.stack(out)


def pose_means_reference(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams", lod: int) -> np.ndarray:
    """(T, N, 3) float32: today's numpy posing."""
    from .posing import pose

    return pose(avatar, model, params, lod)


def pose_quats_reference(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams", lod: int) -> np.ndarray:
    """(T, N, 4) float64 posed unit quaternions w,x,y,z for every frame of ``params``: head
    Gaussians with the LOD's skinning weights and the expression-shaped transforms, parts with
    theirs and the neutral-expression transforms (posing.pose_parts)."""
    from ..head.params import HeadParams
    from ..rotations import quat_multiply
    from .posing import blended_quats, lbs_numpy, model_lods, pose_parts

    U = model_lods(model, [lod])[lod].upsample
    W = np.asarray(U @ model.weights, np.float64)                                     # (V_l, J)
    A = lbs_numpy(model, HeadParams(avatar.params.shape, params.expr, params.pose, params.transl))[2]
    head = avatar.lods[lod].quats.astype(np.float64)
    head /= np.linalg.norm(head, axis=1, keepdims=True)
    q = quat_multiply(blended_quats(W, A), head[None])                                # (T, V_l, 4)
    if avatar.n_parts:
        q = np.concatenate([q, pose_parts(avatar, model, params, rotations=True)[1].astype(np.float64)], 1)
    return q


def pose_growth_reference(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams", lod: int) -> np.ndarray:
    """(T, N) float64: every Gaussian's growth (stretch_growth) with the stretch found edge by edge
    in plain loops: for each LOD-0 vertex the largest posed / rest length of its counted edges
    (float64), divided by its allowance and clipped to [1, cap]; 1 where the allowance is 0 and on
    the parts; blended to the LOD by its upsampling. Positions: ``posing.pose``'s head rows."""
    from .posing import model_lods, pose
    from .stretch_growth import growth_field

    field = growth_field(avatar, model, lod)
    V = model.n_verts
    points = pose(avatar, model, params, lod)[:, :V].astype(np.float64)
    U = model_lods(model, [lod])[lod].upsample
    out = []
    for p in points:
        stretch = [0.0] * V
        for (a, b), rest in zip(field.edges.tolist(), field.rest_length.tolist()):
            r = float(np.linalg.norm(p[a] - p[b])) / rest
            stretch[a], stretch[b] = max(stretch[a], r), max(stretch[b], r)
        g = np.ones(V)
        for v in range(V):
            if field.allowance[v] > 0:
                g[v] = min(max(stretch[v] / float(field.allowance[v]), 1.0), field.cap)
        out.append(np.concatenate([U @ g, np.ones(avatar.n_parts)]))
    return np.stack(out)
