"""Keyframes on an imported avatar: write planned key values (keyframes.Channels) as F-curves and
read the rig's animation back into head-model parameters. bpy; runs on the UI thread.

Keys are written as editable Bezier F-curves into the Blender 5.0 layered action of each ID (an
action slot per ID, F-curves in the slot's channelbag), a whole curve at a time with
``keyframe_points.add`` + ``foreach_set`` (no per-key Python calls). Existing keys of the same
channels inside the written frame range are replaced; keys outside it stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..backend.rotations import matrix_to_axis_angle, quat_to_matrix
from .keyframes import C, EXPR_GROUP, Channels, local_to_model
from .rig_info import JOINTS, RigInfo


# -- writing ---------------------------------------------------------------------------
@dataclass
class KeyStats:
    """What write_keyframes did: curves touched, keys written, frames keyed, the actions used."""

    curves: int = 0
    keys: int = 0
    frames: int = 0
    actions: list[str] = field(default_factory=list)


def push_take(id_data) -> str | None:
    """Move ``id_data``'s assigned action (an earlier take) onto a new NLA track of its own, strip
    at the action's first frame, so the next keys go into a fresh action and that take stays
    intact. Returns the pushed action's name (None when there was none)."""
    ad = id_data.animation_data
    if ad is None or ad.action is None:
        return None
    action, slot = ad.action, ad.action_slot
    track = ad.nla_tracks.new()
    track.name = action.name
    strip = track.strips.new(action.name, int(action.frame_range[0]), action)
    if slot is not None and hasattr(strip, "action_slot"):
        strip.action_slot = slot
    ad.action = None
    return action.name


def ensure_channelbag(id_data, id_type: str, action_name: str, new_take: bool = False):
    """The channelbag of ``id_data``'s assigned action slot, creating action/slot when missing.
    new_take: first push the assigned action to the NLA (:func:`push_take`) and start a new one."""
    from bpy_extras import anim_utils
    import bpy

    ad = id_data.animation_data or id_data.animation_data_create()
    if new_take:
        push_take(id_data)
    action = ad.action
    if action is None:
        action = bpy.data.actions.new(action_name)
        ad.action = action
    if ad.action_slot is None:
        slot = next((s for s in action.slots if s.target_id_type == id_type), None)
        slot = slot or action.slots.new(id_type=id_type, name=id_data.name)
        ad.action_slot = slot
    return action, anim_utils.action_ensure_channelbag_for_slot(action, ad.action_slot)


def set_keys(fcurve, frames: np.ndarray, values: np.ndarray, linear: bool = False) -> int:
    """Replace ``fcurve``'s keys within [frames[0], frames[-1]] by (frames, values); returns keys added.
    linear: the new keys interpolate linearly (reduced keys: the tolerance holds between them)."""
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
    if linear:
        for kp in kps[n0:]:   # only the few keys a reduction keeps
            kp.interpolation = "LINEAR"
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


def write_keyframes(rig, key, channels: Channels, frames: np.ndarray, action_name: str,
                    new_take: bool = False) -> KeyStats:
    """Write ``channels`` at scene ``frames`` (T,) onto the rig's pose bones and the head's shape key
    datablock ``key`` (bpy.types.Key or None). new_take: into new actions named after
    ``action_name``, the earlier ones pushed to the NLA (each take stays as it was)."""
    stats = KeyStats(frames=len(frames))
    frames = np.asarray(frames, np.float32)
    every = np.arange(len(frames))
    reduced = bool(channels.keep)

    def put(fc, group: str, values: np.ndarray) -> None:
        idx = channels.keep.get(group, every)
        stats.keys += set_keys(fc, frames[idx], values[idx], reduced)
        stats.curves += 1

    if channels.quats or channels.locations:
        action, bag = ensure_channelbag(rig, "OBJECT", f"{action_name} Rig", new_take)
        stats.actions.append(action.name)
        for bone, q in channels.quats.items():
            pb = rig.pose.bones[bone]
            prop, vals = _rotation_values(q, pb.rotation_mode)
            for i in range(vals.shape[1]):
                fc = bag.fcurves.ensure(f'pose.bones["{bone}"].{prop}', index=i, group_name=bone)
                put(fc, f"q:{bone}", vals[:, i])
        for bone, loc in channels.locations.items():
            for i in range(3):
                fc = bag.fcurves.ensure(f'pose.bones["{bone}"].location', index=i, group_name=bone)
                put(fc, f"l:{bone}", loc[:, i])
    if channels.shape_keys and key is not None:
        import bpy

        action, bag = ensure_channelbag(key, "KEY", f"{action_name} Expressions", new_take)
        stats.actions.append(action.name)
        for name, v in channels.shape_keys.items():
            path = f'key_blocks["{bpy.utils.escape_identifier(name)}"].value'
            fc = bag.fcurves.ensure(path, index=0, group_name=EXPR_GROUP)
            put(fc, f"k:{name}", v)
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


# -- reading back: the rig's animation -> HeadParams -----------------------------------
def channel_curves(id_data) -> dict[tuple[str, int], object]:
    """{(data path, array index): F-curve} of the ID's assigned action slot ({} when none)."""
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
    (the head's shape keys; see ``keyframes.reorder_expr`` for a head model's order)."""
    from mathutils import Euler, Quaternion

    from ..backend.head.params import HeadParams

    T = len(frames)
    rc = channel_curves(rig)
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

        kc = channel_curves(key)
        for i, name in enumerate(info.expr_names):
            kb = key.key_blocks.get(name)
            if kb is None:
                continue
            path = f'key_blocks["{bpy.utils.escape_identifier(name)}"].value'
            expr[:, i] = _sample(kc, path, 1, frames, kb.value)[:, 0]
    shape = info.shape if info.shape.size else np.zeros(0, np.float32)
    return HeadParams(shape, expr, pose, transl)
