"""Per-frame head-model parameters <-> keyframes on an imported avatar's rig and head shape keys.

Model -> rig (see scene_write.py): a joint's axis-angle rotation R (model frame) becomes the pose
bone's local rotation ``Bk^T C R C^T Bk`` (C = model -> Blender axes, Bk = the bone's rest rotation
in armature space). With issue 8's rig (bone axes = model axes, Bk = C) that is R itself, but the
general form keeps working if a bone is re-oriented. The global bone's location is ``Bk^T C t``.
Expression coefficients key the head mesh's shape keys of the same name (the LOD point clouds'
keys follow them through drivers).

Keys are written as editable Bezier F-curves into the Blender 5.0 layered action of each ID (an
action slot per ID, F-curves in the slot's channelbag), a whole curve at a time with
``keyframe_points.add`` + ``foreach_set`` (no per-key Python calls). Existing keys of the same
channels inside the written frame range are replaced; keys outside it stay.

The planning half (``plan_channels``) is numpy only and runs in the worker thread; the writing half
(``write_keyframes``) and the reading half (``sample_params``) run on the UI thread.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend.rotations import axis_angle_to_matrix, matrix_to_axis_angle, matrix_to_quat, quat_to_matrix
from .axes import MODEL_TO_BLENDER
from .scene_read import JOINTS, RigInfo

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
    shape_keys: {key block name: (T,) float64}; clipped: samples clipped to a shape key's slider range.
    """

    n_frames: int
    quats: dict[str, np.ndarray] = field(default_factory=dict)
    locations: dict[str, np.ndarray] = field(default_factory=dict)
    shape_keys: dict[str, np.ndarray] = field(default_factory=dict)
    clipped: int = 0


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


# -- writing (UI thread) ---------------------------------------------------------------------------
@dataclass
class KeyStats:
    """What write_keyframes did: curves touched, keys written, frames keyed, the actions used."""

    curves: int = 0
    keys: int = 0
    frames: int = 0
    actions: list[str] = field(default_factory=list)


def ensure_channelbag(id_data, id_type: str, action_name: str):
    """The channelbag of ``id_data``'s assigned action slot, creating action/slot when missing."""
    from bpy_extras import anim_utils
    import bpy

    ad = id_data.animation_data or id_data.animation_data_create()
    action = ad.action
    if action is None:
        action = bpy.data.actions.new(action_name)
        ad.action = action
    if ad.action_slot is None:
        slot = next((s for s in action.slots if s.target_id_type == id_type), None)
        slot = slot or action.slots.new(id_type=id_type, name=id_data.name)
        ad.action_slot = slot
    return action, anim_utils.action_ensure_channelbag_for_slot(action, ad.action_slot)


def set_keys(fcurve, frames: np.ndarray, values: np.ndarray) -> int:
    """Replace ``fcurve``'s keys within [frames[0], frames[-1]] by (frames, values); returns keys added."""
    kps = fcurve.keyframe_points
    lo, hi = float(frames[0]) - 1e-3, float(frames[-1]) + 1e-3
    if len(kps):
        co = np.empty(2 * len(kps), np.float32)
        kps.foreach_get("co", co)
        x = co[0::2]
        inside = (x >= lo) & (x <= hi)
        if inside.all():
            kps.clear()
        else:
            for i in np.flatnonzero(inside)[::-1]:  # only the replaced range; usually empty
                kps.remove(kps[int(i)], fast=True)
    n0 = len(kps)
    kps.add(len(frames))
    co = np.empty(2 * len(kps), np.float32)
    kps.foreach_get("co", co)
    co[2 * n0::2] = frames
    co[2 * n0 + 1::2] = values
    kps.foreach_set("co", co)
    fcurve.update()  # sorts the keys and recomputes the auto handles
    return len(frames)


def _rotation_values(q: np.ndarray, mode: str) -> tuple[str, np.ndarray]:
    """Data-path suffix and (T, k) values for the bone's rotation mode."""
    if mode == "QUATERNION":
        return "rotation_quaternion", q
    if mode == "AXIS_ANGLE":
        aa = matrix_to_axis_angle(quat_to_matrix(q))
        ang = np.linalg.norm(aa, axis=1, keepdims=True)
        axis = np.divide(aa, ang, out=np.tile([0.0, 1.0, 0.0], (len(aa), 1)), where=ang > 1e-12)
        return "rotation_axis_angle", np.concatenate([ang, axis], 1)
    from mathutils import Quaternion

    eul, prev = [], None
    for row in q:  # Euler orders: mathutils keeps consecutive frames compatible (no 360 jumps)
        e = Quaternion(row).to_euler(mode, prev) if prev is not None else Quaternion(row).to_euler(mode)
        eul.append(tuple(e))
        prev = e
    return "rotation_euler", np.asarray(eul, np.float64)


def write_keyframes(rig, key, channels: Channels, frames: np.ndarray, action_name: str) -> KeyStats:
    """Write ``channels`` at scene ``frames`` (T,) onto the rig's pose bones and the head's shape key
    datablock ``key`` (bpy.types.Key or None)."""
    stats = KeyStats(frames=len(frames))
    frames = np.asarray(frames, np.float32)
    if channels.quats or channels.locations:
        action, bag = ensure_channelbag(rig, "OBJECT", f"{action_name} Rig")
        stats.actions.append(action.name)
        for bone, q in channels.quats.items():
            pb = rig.pose.bones[bone]
            prop, vals = _rotation_values(q, pb.rotation_mode)
            for i in range(vals.shape[1]):
                fc = bag.fcurves.ensure(f'pose.bones["{bone}"].{prop}', index=i, group_name=bone)
                stats.keys += set_keys(fc, frames, vals[:, i])
                stats.curves += 1
        for bone, loc in channels.locations.items():
            for i in range(3):
                fc = bag.fcurves.ensure(f'pose.bones["{bone}"].location', index=i, group_name=bone)
                stats.keys += set_keys(fc, frames, loc[:, i])
                stats.curves += 1
    if channels.shape_keys and key is not None:
        import bpy

        action, bag = ensure_channelbag(key, "KEY", f"{action_name} Expressions")
        stats.actions.append(action.name)
        for name, v in channels.shape_keys.items():
            path = f'key_blocks["{bpy.utils.escape_identifier(name)}"].value'
            fc = bag.fcurves.ensure(path, index=0, group_name=EXPR_GROUP)
            stats.keys += set_keys(fc, frames, v)
            stats.curves += 1
    return stats


def match_scene(scene, fps: float | None, first: int, last: int) -> None:
    """Set the scene's frame range (and, with ``fps``, its frame rate: fps = round(f), fps_base =
    round(f) / f, so 29.97 becomes 30 / 1.001)."""
    if fps is not None:
        whole = max(1, int(round(fps)))
        scene.render.fps = whole
        scene.render.fps_base = whole / float(fps)
    scene.frame_start = int(first)
    scene.frame_end = int(max(last, first))


def scene_fps(scene) -> float:
    return scene.render.fps / scene.render.fps_base


# -- reading back (UI thread): the rig's animation -> HeadParams -----------------------------------
def _curves(id_data) -> dict[tuple[str, int], object]:
    from bpy_extras import anim_utils

    ad = getattr(id_data, "animation_data", None)
    if ad is None or ad.action is None or ad.action_slot is None:
        return {}
    bag = anim_utils.action_get_channelbag_for_slot(ad.action, ad.action_slot)
    return {} if bag is None else {(fc.data_path, fc.array_index): fc for fc in bag.fcurves}


def _sample(curves, path: str, n: int, frames: np.ndarray, current) -> np.ndarray:
    """(T, n) values of the property at ``frames``: F-curves where present, the current value else."""
    out = np.empty((len(frames), n))
    for i in range(n):
        fc = curves.get((path, i))
        cur = current[i] if n > 1 else current
        out[:, i] = [fc.evaluate(float(f)) for f in frames] if fc is not None else cur
    return out


def sample_params(rig, key, info: RigInfo, frames: np.ndarray):
    """HeadParams (T = len(frames)) of the avatar's animation at scene ``frames``: evaluates the
    rig's and the shape keys' F-curves (the values on screen where a channel has none). Drivers,
    constraints and NLA strips are not evaluated. Expression columns follow ``info.expr_names``
    (the head's shape keys; see ``reorder_expr`` for a head model's order)."""
    from mathutils import Euler, Quaternion

    from ..backend.head.params import HeadParams

    T = len(frames)
    rc = _curves(rig)
    pose = np.zeros((T, len(JOINTS), 3), np.float32)
    transl = np.zeros((T, 3), np.float32)
    for j, joint in enumerate(JOINTS):
        bone = info.bones.get(joint)
        if bone is None:
            continue
        pb = rig.pose.bones[bone.name]
        base = f'pose.bones["{bone.name}"]'
        mode = pb.rotation_mode
        if mode == "QUATERNION":
            q = _sample(rc, base + ".rotation_quaternion", 4, frames, tuple(pb.rotation_quaternion))
        elif mode == "AXIS_ANGLE":
            a = _sample(rc, base + ".rotation_axis_angle", 4, frames, tuple(pb.rotation_axis_angle))
            q = np.array([tuple(Quaternion(r[1:], r[0])) for r in a])
        else:
            e = _sample(rc, base + ".rotation_euler", 3, frames, tuple(pb.rotation_euler))
            q = np.array([tuple(Euler(r, mode).to_quaternion()) for r in e])
        pose[:, j] = matrix_to_axis_angle(local_to_model(quat_to_matrix(q), bone.rest))
        if joint == "global":
            loc = _sample(rc, base + ".location", 3, frames, tuple(pb.location))
            transl[:] = (loc @ bone.rest.T) @ C  # C^T Bk loc
    expr = np.zeros((T, len(info.expr_names)), np.float32)
    if key is not None:
        import bpy

        kc = _curves(key)
        for i, name in enumerate(info.expr_names):
            kb = key.key_blocks.get(name)
            if kb is None:
                continue
            path = f'key_blocks["{bpy.utils.escape_identifier(name)}"].value'
            expr[:, i] = _sample(kc, path, 1, frames, kb.value)[:, 0]
    shape = info.shape if info.shape.size else np.zeros(0, np.float32)
    return HeadParams(shape, expr, pose, transl)


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
