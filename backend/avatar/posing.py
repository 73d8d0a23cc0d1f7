"""Posing an avatar: per-frame Gaussian positions (the paper moves only positions). A frame's whole
GaussianSet, with the head Gaussians grown where the frame stretches the skin beyond what the build
sized them for, is ``posed.posed_set`` (``posed.pose_growth``, avatar.stretch_growth).

Head, per LOD l: LBS of the LOD-0 mesh with the frame's expression/pose -> sparse midpoint
upsampling to LOD l -> plus the identity offsets (``U_l @ vertex_offsets + lod_offsets``) rotated by
the blended skinning rotation of their point (so detail turns with the head; LBS itself knows no
per-avatar offsets).
Parts (GaussianAvatar.parts: body, mouth interior, eyes, ...): blended linear skinning of their rest
positions, ``x' = sum_j w_j A_j [x + sum_e c_e D_e, 1]``, with the frame's joint transforms A
regressed from the neutral-expression mesh, so expressions move a part only through its own shape
keys D (SkinnedPart.shapes: tongueOut the tongue, the jaw and gaze channels' shape keys the lower
teeth and eyeballs; SkinnedPart.clamped: keys that act only beyond a start weight s,
``max(c_e - s_e, 0) D_e``) and never through the joints. The body's weights are
``(1 - a)`` global + ``a`` neck with a = NECK_FOLLOW: the torso follows the global head motion fully
and the neck by a quarter, like mesh vertices at the base of the neck: turning the head turns the
collar a little, and the jaw and the eyes never move it. Teeth, tongue and eyeballs ride the jaw
and eye joints the same way.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from .gaussians import GaussianAvatar, SkinnedPart, part_shape_basis

if TYPE_CHECKING:
    from ..head.lod import LOD
    from ..head.model import HeadModel
    from ..head.params import HeadParams

NECK_FOLLOW = 0.25  # fraction of the neck joint's motion the body part follows


def model_lods(model: "HeadModel", levels) -> dict[int, "LOD"]:
    """{level: LOD} for ``model`` (cached per topology by build_lods)."""
    from ..head.lod import build_lods

    levels = tuple(sorted({int(l) for l in levels}))
    return {l.level: l for l in build_lods(model.faces, model.n_verts, levels)}


def shaped_vertices(model: "HeadModel", shape: np.ndarray) -> np.ndarray:
    """(V, 3) float32 template + identity blend shapes (neutral expression, rest pose)."""
    return model.shaped(shape)


def body_weights(n: int, n_joints: int = 5) -> np.ndarray:
    """(n, J) float32 skinning weights of the body part: global 1 - NECK_FOLLOW, neck NECK_FOLLOW."""
    w = np.zeros((n, n_joints), np.float32)
    w[:, 0] = 1.0 - NECK_FOLLOW
    w[:, 1] = NECK_FOLLOW
    return w


def body_transforms(A: np.ndarray) -> np.ndarray:
    """(T, 4, 4) the body part's transform from skinning transforms A (T, 5, 4, 4) (body_weights)."""
    return (1.0 - NECK_FOLLOW) * A[:, 0] + NECK_FOLLOW * A[:, 1]


def part_transforms(model: "HeadModel", params: "HeadParams") -> np.ndarray:
    """(T, J, 4, 4) joint transforms that skin the parts, for every frame of ``params``.

    The joints are regressed from the neutral-expression mesh: FLAME-style models regress them
    from the expression-shaped mesh, which would make the torso or the teeth drift (tens of
    microns) with every smile or jaw-open expression coefficient."""
    from ..head.params import HeadParams

    neutral = HeadParams(params.shape, np.zeros_like(params.expr), params.pose, params.transl)
    return with_torso(lbs_numpy(model, neutral)[2], params.torso)


def with_torso(A: np.ndarray, torso: np.ndarray | None) -> np.ndarray:
    """Skinning transforms A (T, J, 4, 4) with the torso channel ``torso`` (T, 3) metres (or None)
    added to the global joint's own translation, in place; A itself is returned.

    Only the root's skinning transform moves, not its children's: a point skinned with weights w
    moves by ``w_global * torso`` (the body and the neck's base follow the video's shoulders, the
    head does not). Rotations are untouched, so the Gaussians' posed rotations are too."""
    if torso is not None:
        A[:, 0, :3, 3] += np.asarray(torso, A.dtype)
    return A


def body_transforms_for(model: "HeadModel", params: "HeadParams") -> np.ndarray:
    """(T, 4, 4) the body part's transform for every frame of ``params`` (neutral-expression joints)."""
    return body_transforms(part_transforms(model, params))


def skin_points(points: np.ndarray, weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    """Blended linear skinning: points (N, 3) rest (or (T, N, 3), one rest set per frame), weights
    (N, J), A (T, J, 4, 4) -> (T, N, 3).

    The blended 3x4 matrix of every point and frame is one (N, J) @ (T, J, 12) product."""
    T, J = A.shape[:2]
    M = np.matmul(np.asarray(weights, np.float32), A[:, :, :3, :].reshape(T, J, 12).astype(np.float32))
    M = M.reshape(T, -1, 3, 4)                                                   # (T, N, 3, 4)
    p = np.asarray(points, np.float32)
    p = p if p.ndim == 3 else p[None]
    return np.matmul(M[..., :3], p[..., None])[..., 0] + M[..., 3]


def shaped_part_means(parts: list[SkinnedPart], model: "HeadModel", expr: np.ndarray) -> np.ndarray:
    """The rest positions of ``parts`` (all their Gaussians, list order) with their shape keys
    applied, linear (``c_e D_e``) and clamped (``max(c_e - s_e, 0) D_e``, SkinnedPart.clamped):
    (P, 3) float32 when no part has a key ``model`` knows, else (T, P, 3) for expressions ``expr``
    (T, E), metres."""
    if not parts:
        return np.zeros((0, 3), np.float32)
    rest = np.concatenate([p.gaussians.means for p in parts])
    basis = part_shape_basis(parts, model.expr_names)
    if not len(basis):
        return rest
    return rest[None] + np.einsum("pck,tk->tpc", basis.dirs, basis.coefficients(expr)).astype(np.float32)


def blended_quats(weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    """(T, N, 4) float64 unit quaternions w,x,y,z: each point's joint rotations blended with its
    skinning weights (the normalized weighted sum of the joints' quaternions).

    weights (N, J), A (T, J, 4, 4). For a point bound to one joint (or to joints that turn alike)
    this is exactly the joint's rotation; for a blend it agrees with the blended matrix's nearest
    rotation to second order in the angle between the joints. Joint rotations stay within 180
    degrees of the rest pose, so their w >= 0 quaternions lie in one hemisphere. The numpy twin of
    the batched torch posing's rotations (pose_torch.TorchPoser)."""
    from ..rotations import matrix_to_quat

    qj = matrix_to_quat(A[:, :, :3, :3])                                         # (T, J, 4)
    q = np.einsum("nj,tjc->tnc", np.asarray(weights, np.float64), qj)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def pose_parts(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams",
               rotations: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """All parts posed for every frame of ``params``: means (T, n_parts, 3) float32 metres, and
    with ``rotations`` the posed unit quaternions (T, n_parts, 4) w,x,y,z (each Gaussian's rest
    rotation turned by its blended skinning rotation), else None. Order: parts in list order."""
    from ..head.params import HeadParams

    rest = avatar.parts_set()
    W = avatar.part_weights(model.weights.shape[1])
    p = HeadParams(avatar.params.shape, params.expr, params.pose, params.transl, params.torso)
    A = part_transforms(model, p)
    means = skin_points(shaped_part_means(avatar.parts, model, params.expr), W, A)
    if not rotations:
        return means, None
    from ..rotations import quat_multiply

    q_rest = rest.quats / np.linalg.norm(rest.quats, axis=1, keepdims=True)
    return means, quat_multiply(blended_quats(W, A), q_rest[None].astype(np.float64)).astype(np.float32)


# lbs_numpy results of the last few small parameter sets per head model: one build poses the
# same source frame a dozen times (sampling, parts, metrics, every LOD's .ply, the previews)
_LBS_CACHE: "weakref.WeakKeyDictionary[HeadModel, OrderedDict]" = weakref.WeakKeyDictionary()
_LBS_CACHE_SIZE = 16
_LBS_CACHE_MAX_FRAMES = 8
_LBS_CACHE_LOCK = threading.Lock()  # a build poses on two threads (head sampling and the parts)


def _params_key(params: "HeadParams") -> bytes:
    parts = []
    for a in (params.shape, params.expr, params.pose, params.transl):
        a = np.asarray(a)
        parts.append(f"{a.dtype.str}{a.shape}".encode() + a.tobytes())
    return b"|".join(parts)


def lbs_numpy(model: "HeadModel", params: "HeadParams") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """LBS of all frames of ``params`` -> vertices (T, V, 3), joints (T, 5, 3), transforms (T, 5, 4, 4).

    Results for up to 8 frames are remembered per head model (keyed by the parameters' bytes) and
    handed out as fresh copies, so callers may modify them."""
    import torch

    from ..head.lbs import HeadModelTensors, lbs

    small = params.n_frames <= _LBS_CACHE_MAX_FRAMES
    if small:
        key = _params_key(params)
        with _LBS_CACHE_LOCK:
            cache = _LBS_CACHE.setdefault(model, OrderedDict())
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
        if hit is not None:
            return tuple(a.copy() for a in hit)  # type: ignore[return-value]
    tens = HeadModelTensors.from_model(model, "cpu")
    with torch.no_grad():
        out = lbs(tens, torch.as_tensor(params.shape), torch.as_tensor(params.expr),
                  torch.as_tensor(params.pose), torch.as_tensor(params.transl))
    result = (out.vertices.numpy(), out.joints.numpy(), out.transforms.numpy())
    if small:
        with _LBS_CACHE_LOCK:
            cache[key] = tuple(a.copy() for a in result)
            while len(cache) > _LBS_CACHE_SIZE:
                cache.popitem(last=False)
    return result


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
    """(T, N_l + n_parts, 3) float32 Gaussian means for every frame of ``params``.

    Order: the LOD's head Gaussians, then each part in list order (as GaussianAvatar.rest_set). ``params``
    supplies expression, pose, translation and the torso channel (with_torso); the identity is always the avatar's own
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
    n_parts = avatar.n_parts
    Wp = avatar.part_weights(model.weights.shape[1])
    T = params.n_frames
    V, Vl = model.n_verts, U.shape[0]
    out = np.empty((T, Vl + n_parts, 3), np.float32)
    for t0 in range(0, T, chunk):
        sl = slice(t0, min(T, t0 + chunk))
        p = HeadParams(avatar.params.shape, params.expr[sl], params.pose[sl], params.transl[sl],
                       None if params.torso is None else params.torso[sl])
        verts, _, A = lbs_numpy(model, p)                   # (t, V, 3), (t, 5, 4, 4)
        if p.torso is not None:  # the root's own transform moved: sum_j w_j A_j v gains w_0 * torso
            verts = verts + model.weights[None, :, 0:1].astype(np.float32) * p.torso[:, None, :]
        t = verts.shape[0]
        head = (U @ verts.transpose(1, 0, 2).reshape(V, t * 3)).reshape(Vl, t, 3).transpose(1, 0, 2)
        out[sl, :Vl] = head + rotate_blended(off, W, A)
        if n_parts:
            out[sl, Vl:] = skin_points(shaped_part_means(avatar.parts, model, p.expr), Wp, part_transforms(model, p))
    return out
