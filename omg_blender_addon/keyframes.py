"""Per-frame head-model parameters -> key values for an imported avatar's rig and head shape keys.

Model -> rig (see scene_write.py): a joint's axis-angle rotation R (model frame) becomes the pose
bone's local rotation ``Bk^T C R C^T Bk`` (C = model -> Blender axes, Bk = the bone's rest rotation
in armature space). With issue 8's rig (bone axes = model axes, Bk = C) that is R itself, but the
general form keeps working if a bone is re-oriented. The global bone's location is ``Bk^T C t``.
Expression coefficients key the head mesh's shape keys of the same name (the LOD point clouds'
keys follow them through drivers).

This module is the planning half: numpy only (no bpy), it runs in the worker thread and is tested
without Blender. Writing the planned values as F-curves and reading them back is fcurves.py (bpy,
UI thread).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend.rotations import axis_angle_to_matrix, matrix_to_quat
from .axes import MODEL_TO_BLENDER
from .rig_info import JOINTS, RigInfo

C = MODEL_TO_BLENDER
EXPR_GROUP = "Expressions"
JOINT_SWITCH = {"global": "global_motion", "neck": "neck", "jaw": "jaw", "eye_L": "eyes", "eye_R": "eyes"}


@dataclass
class ApplyOptions:
    """Which parts of the performance become keys."""

    expression: bool = True
    jaw: bool = True
    eyes: bool = True
    neck: bool = True
    global_motion: bool = True  # the global bone's rotation and location (whole-head motion)

    def joint_on(self, joint: str) -> bool:
        return bool(getattr(self, JOINT_SWITCH[joint]))


@dataclass
class Channels:
    """Keyable values for T frames (plain arrays, Blender frame, bone-local).

    quats: {bone: (T, 4) float64 w,x,y,z, sign-continuous}; locations: {bone: (T, 3) float64};
    shape_keys: {key block name: (T,) float64}; clipped: samples clipped to a shape key's slider range;
    keep: {"q:<bone>" | "l:<bone>" | "k:<key block>": indices of the frames to key} after
    :func:`reduce_channels` (absent = every frame).
    """

    n_frames: int
    quats: dict[str, np.ndarray] = field(default_factory=dict)
    locations: dict[str, np.ndarray] = field(default_factory=dict)
    shape_keys: dict[str, np.ndarray] = field(default_factory=dict)
    clipped: int = 0
    keep: dict[str, np.ndarray] = field(default_factory=dict)


# -- rotations (vectorized over frames; the maths itself is backend.rotations) ----------------------
def continuous(q: np.ndarray) -> np.ndarray:
    """Flip quaternion signs so consecutive frames lie in the same hemisphere (smooth F-curves)."""
    q = np.array(q, np.float64)
    dots = np.sum(q[1:] * q[:-1], axis=1)
    flips = np.concatenate([[1.0], np.cumprod(np.where(dots < 0, -1.0, 1.0))])
    return q * flips[:, None]


def model_to_local(R_model: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """(T, 3, 3) model-frame joint rotations -> bone-local rotations ``Bk^T C R C^T Bk``."""
    M = rest.T @ C
    return M @ R_model @ M.T


def local_to_model(R_local: np.ndarray, rest: np.ndarray) -> np.ndarray:
    """Inverse of :func:`model_to_local`."""
    M = rest.T @ C
    return M.T @ R_local @ M


# -- planning (worker thread) ----------------------------------------------------------------------
def plan_channels(params, info: RigInfo, options: ApplyOptions, expr_names: list[str] | None = None) -> Channels:
    """Keyable channel values for every frame of ``params`` (HeadParams, model frame).

    expr_names: the name of each expression column of ``params`` (a track's names); None = the
    columns are in the head model's order, i.e. the order of the head's shape keys.
    """
    T = params.n_frames
    out = Channels(T)
    for j, joint in enumerate(JOINTS):
        bone = info.bones.get(joint)
        if bone is None or not options.joint_on(joint):
            continue
        R = model_to_local(axis_angle_to_matrix(params.pose[:, j]), bone.rest)
        out.quats[bone.name] = continuous(matrix_to_quat(R))
        if joint == "global":
            out.locations[bone.name] = (params.transl.astype(np.float64) @ C.T) @ bone.rest  # Bk^T C t
    if options.expression and info.expr_names:
        names = list(info.expr_names) if expr_names is None else list(expr_names)
        col = {n: i for i, n in enumerate(names)}
        for name in info.expr_names:
            i = col.get(name)
            if i is None or i >= params.expr.shape[1]:
                continue
            lo, hi = info.slider.get(name, (-np.inf, np.inf))
            v = params.expr[:, i].astype(np.float64)
            out.clipped += int(np.count_nonzero((v < lo) | (v > hi)))
            out.shape_keys[name] = np.clip(v, lo, hi)
    return out


def reduce_keys(values: np.ndarray, tol: float) -> np.ndarray:
    """Indices of the frames to key so that straight lines between the kept keys stay within ``tol``
    of every sample (Ramer-Douglas-Peucker on the frame axis, max over the columns of a (T, k)
    channel such as a quaternion). values: (T,) or (T, k); always keeps the first and last frame."""
    v = np.asarray(values, np.float64).reshape(len(values), -1)
    T = len(v)
    if T <= 2 or tol <= 0:
        return np.arange(T)
    keep = np.zeros(T, bool)
    keep[[0, T - 1]] = True
    stack = [(0, T - 1)]
    while stack:   # one vectorized distance pass per segment; segments, not samples, are looped over
        a, b = stack.pop()
        if b - a < 2:
            continue
        u = (np.arange(a + 1, b) - a) / (b - a)
        err = np.abs(v[a + 1:b] - ((1 - u)[:, None] * v[a] + u[:, None] * v[b])).max(1)
        i = int(np.argmax(err))
        if err[i] > tol:
            m = a + 1 + i
            keep[m] = True
            stack += [(a, m), (m, b)]
    return np.flatnonzero(keep)


def reduce_channels(channels: Channels, tol: float) -> Channels:
    """``channels`` with ``keep`` set per curve group (:func:`reduce_keys` at ``tol``, in each
    channel's units: quaternion components, metres, shape-key values); tol <= 0 keys every frame."""
    if tol <= 0:
        return channels
    for bone, q in channels.quats.items():
        channels.keep[f"q:{bone}"] = reduce_keys(q, tol)
    for bone, loc in channels.locations.items():
        channels.keep[f"l:{bone}"] = reduce_keys(loc, tol)
    for name, v in channels.shape_keys.items():
        channels.keep[f"k:{name}"] = reduce_keys(v, tol)
    return channels


def reorder_expr(params, names: list[str], model):
    """``params`` whose expression columns are named ``names`` -> columns in ``model.expr_names``
    order (components the scene lacks are 0); an empty identity becomes the model's mean shape."""
    from ..backend.head.params import HeadParams

    expr = np.zeros((params.n_frames, model.n_expr), np.float32)
    index = {n: i for i, n in enumerate(model.expr_names)}
    for c, name in enumerate(names):
        if name in index:
            expr[:, index[name]] = params.expr[:, c]
    shape = params.shape if params.shape.size else np.zeros(model.n_shape, np.float32)
    return HeadParams(shape, expr, params.pose, params.transl)
