"""Read an imported avatar back out of the scene (for retargeting and previews).

The objects and properties are defined by scene_write.py (issue 8): a rig (``Object.omg_avatar.role
== "RIG"``) with the bones global, neck, jaw, eye_L, eye_R whose rest orientation is the model
frame, a head mesh with one shape key per expression component, one loose-vertex mesh per
Gaussian LOD, and custom properties on the rig (``omg_shape``, ``omg_camera_K``,
``omg_camera_viewmat``, ``omg_camera_size``). This module only reads them:

* ``read_rig`` (UI thread): plain ``RigInfo`` (bones with their rest rotations, shape-key names,
  source camera, head model) that the worker thread and keyframes.py use;
* ``read_lod`` (UI thread) + ``gaussian_avatar`` (worker, no bpy): the scene's Gaussians at rest
  turned back into a backend GaussianAvatar, so previews render exactly what was imported.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import bpy
import numpy as np

from ..backend.errors import OMGError
from .axes import MODEL_TO_BLENDER, points_to_model
from .rig_info import JOINTS, BoneInfo, RigInfo  # noqa: F401  (re-exported: the rig's plain data)
from .scene_data import (VIEW_ATTRIBUTES, VIEW_GROW_ATTRIBUTE, VIEW_SIDE_ATTRIBUTE, VIEW_TOWARD_ATTRIBUTE,
                         scene_gaussians, view_from_columns)

if TYPE_CHECKING:
    from ..backend.avatar.view_colors import ViewColors

ATTRS = ("f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
         "rot_0", "rot_1", "rot_2", "rot_3")


class SceneError(OMGError):
    """The named object is not a usable avatar (message shown to the user as-is)."""


def rig_by_name(name: str) -> bpy.types.Object:
    """The rig of the avatar called ``name``: its build name (the collection the build made, e.g.
    "Holdout") or the name of any of its objects (rig, head, LOD). SceneError naming the known
    avatars when there is none."""
    from .scene_write import all_rigs, avatar_rig

    obj = bpy.data.objects.get(name)
    if obj is not None:
        rig = avatar_rig(obj)
        if rig is None:
            raise SceneError(f"'{name}' is not part of an OMG avatar")
        return rig
    rigs = all_rigs()
    for rig in rigs:  # the build name is the collection the rig was created in
        if any(c.name == name for c in rig.users_collection):
            return rig
    known = ", ".join(sorted(avatar_name(r) for r in rigs)) or "none"
    raise SceneError(f"no OMG avatar named '{name}' (avatars in this file: {known})")


def avatar_name(rig: bpy.types.Object) -> str:
    """The avatar's build name (its collection's name; the rig's name when it was moved out)."""
    from .scene_write import avatar_objects

    for coll in rig.users_collection:
        if coll.name != "Scene Collection" and any(coll in o.users_collection for o in avatar_objects(rig)):
            return coll.name
    return rig.name


def find_rig(name: str | None, context) -> bpy.types.Object:
    """The avatar's rig from its name (rig_by_name) or, with no name, the active object's avatar
    (or the only avatar in the file)."""
    from .scene_write import all_rigs, avatar_rig

    if name:
        return rig_by_name(name)
    rig = avatar_rig(getattr(context, "object", None))
    if rig is None:
        rigs = all_rigs()
        if len(rigs) == 1:
            return rigs[0]
        raise SceneError("select an OMG avatar (its rig, head or Gaussians) or name it in 'avatar'")
    return rig


def _floats(obj, key: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if key not in obj:
        return None
    arr = np.asarray(list(obj[key]), np.float64)
    return arr.reshape(shape) if arr.size == int(np.prod(shape)) else None


def read_rig(rig: bpy.types.Object) -> RigInfo:
    """Copy what retargeting and previews need out of the avatar's objects (UI thread)."""
    from .scene_write import head_object, lod_objects

    bones = {}
    for joint in JOINTS:
        b = rig.data.bones.get(joint)
        pb = rig.pose.bones.get(joint)
        if b is None or pb is None:
            continue
        rest = np.array([list(r) for r in b.matrix_local.to_3x3()], np.float64)
        bones[joint] = BoneInfo(joint, rest, pb.rotation_mode)
    head = head_object(rig)
    key = head.data.shape_keys if head is not None else None
    names, slider = [], {}
    if key is not None:
        for kb in key.key_blocks[1:]:  # the first block is the basis
            names.append(kb.name)
            slider[kb.name] = (float(kb.slider_min), float(kb.slider_max))
    size = rig.get("omg_camera_size")
    s = rig.omg_avatar
    choice = _head_model_choice(s.head_model_path)
    return RigInfo(
        rig_name=rig.name, head_name=None if head is None else head.name,
        key_name=None if key is None else key.name, bones=bones, expr_names=names, slider=slider,
        shape=np.asarray(list(rig.get("omg_shape", [])), np.float32),
        head_model_name=s.head_model_name, head_model_path=choice.path,
        camera_K=_floats(rig, "omg_camera_K", (3, 3)), camera_viewmat=_floats(rig, "omg_camera_viewmat", (4, 4)),
        camera_size=None if size is None else (int(size[0]), int(size[1])),
        lod=int(s.lod), levels=sorted(lod_objects(rig)), head_model_refused=choice.refused,
        source_pose=_floats(rig, "omg_source_pose", (5, 3)),
        built_from=str(rig.get("omg_built_from", "")),
        head_rest=None if head is None else _head_rest(head),
    )


def _head_basis(head: bpy.types.Object) -> np.ndarray:
    """(V, 3) float32 Blender frame: the head mesh's basis (its shape-key basis, else its vertices)."""
    hb = head.data.shape_keys.key_blocks[0].data if head.data.shape_keys is not None else head.data.vertices
    hv = np.empty(len(head.data.vertices) * 3, np.float32)
    hb.foreach_get("co", hv)
    return hv.reshape(-1, 3)


def _head_rest(head: bpy.types.Object) -> np.ndarray:
    """(V, 3) float32 model frame: the head mesh's basis."""
    return np.asarray(points_to_model(_head_basis(head)), np.float32)


def _head_model_choice(recorded: str):
    """head_model_trust.resolve for a rig's recorded path, against the preferences' FLAME path."""
    from . import head_model_trust
    from .addon_id import addon_preferences

    prefs = addon_preferences(bpy.context)
    flame = bpy.path.abspath(prefs.flame_path) if prefs is not None and prefs.flame_path else None
    return head_model_trust.resolve(bpy.path.abspath(recorded) if recorded else None, flame)


# -- the scene's Gaussians -> backend GaussianAvatar ----------------------------------------------
@dataclass
class SceneLOD:
    """One LOD object's rest data (Blender frame, as imported): positions (N, 3) float32; columns
    {ATTRS name: (N,) float32}; n_head; head_basis: (V, 3) float32 head-mesh basis; the parts after
    the head Gaussians: part_names, part_counts and part_weights (n_parts, J) float32, or None for an
    avatar imported before parts existed (its points after the head are the body); part_shapes
    {shape-key name: (n_parts, 3) float32 Blender-frame delta}: the keys that move some part point
    (the parts' own shape keys, SkinnedPart.shapes, e.g. the tongue's tongueOut); part_clamped
    {shape-key name: (expression, start, (n_parts, 3) float32 Blender-frame delta per unit beyond
    the start)}: the parts' clamped keys (SkinnedPart.clamped), none for an avatar imported
    before them."""

    level: int
    positions: np.ndarray
    columns: dict[str, np.ndarray]
    n_head: int
    head_basis: np.ndarray
    part_names: list[str] = field(default_factory=list)
    part_counts: list[int] = field(default_factory=list)
    part_weights: np.ndarray | None = None
    part_shapes: dict[str, np.ndarray] = field(default_factory=dict)
    part_clamped: dict[str, tuple[str, float, np.ndarray]] = field(default_factory=dict)
    view: "ViewColors | None" = None   # the view-dependent Gaussians (model frame), read_view_columns


def _part_shape_keys(me, base: np.ndarray, n_head: int, skip=()) -> dict[str, np.ndarray]:
    """{key name: (n - n_head, 3) delta from the basis} of the mesh's shape keys that move a point
    after the head Gaussians (base: (n, 3) the basis positions), but for the keys named in ``skip``."""
    out: dict[str, np.ndarray] = {}
    if me.shape_keys is None:
        return out
    co = np.empty(base.size, np.float32)
    for kb in me.shape_keys.key_blocks[1:]:
        if kb.name in skip:
            continue
        kb.data.foreach_get("co", co)
        d = co.reshape(-1, 3)[n_head:] - base[n_head:]
        if np.abs(d).max(initial=0.0) > 1e-9:
            out[kb.name] = d.copy()
    return out


def read_view_columns(me) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(side (N, 3), toward (N, 3), grow (N,)) float32: a LOD mesh's view attributes
    (scene_data.VIEW_ATTRIBUTES) as stored, or None when one is missing or was converted to another
    domain or type (an avatar imported before view data, a user's edit)."""
    n = len(me.vertices)
    out = []
    for name in (VIEW_SIDE_ATTRIBUTE, VIEW_TOWARD_ATTRIBUTE, VIEW_GROW_ATTRIBUTE):
        attr = me.attributes.get(name)
        if attr is None or (attr.domain, attr.data_type) != VIEW_ATTRIBUTES[name]:
            return None
        vector = attr.data_type == "FLOAT_VECTOR"
        a = np.empty(n * 3 if vector else n, np.float32)
        attr.data.foreach_get("vector" if vector else "value", a)
        out.append(a.reshape(n, 3) if vector else a)
    return out[0], out[1], out[2]


def _lod_view(obj) -> "ViewColors | None":
    """The LOD object's view-dependent Gaussians (model frame), None without view attributes;
    SceneError naming the object when they hold what no view data can."""
    cols = read_view_columns(obj.data)
    if cols is None:
        return None
    try:
        return view_from_columns(*cols)
    except ValueError as exc:
        raise SceneError(f"{obj.name}: the view attributes ({VIEW_SIDE_ATTRIBUTE}, {VIEW_TOWARD_ATTRIBUTE}, "
                         f"{VIEW_GROW_ATTRIBUTE}) were edited: {exc}; remove them or import the avatar again") from None


def read_lod(rig: bpy.types.Object, level: int) -> SceneLOD:
    """Read a Gaussian LOD object's rest data (its shape-key basis, not the posed mesh)."""
    from .scene_write import head_object, lod_objects

    objs = lod_objects(rig)
    if level not in objs:
        raise SceneError(f"{rig.name}: LOD {level} is not in the scene (it has {sorted(objs)})")
    obj = objs[level]
    me = obj.data
    n = len(me.vertices)
    pos = np.empty(n * 3, np.float32)
    basis = me.shape_keys.key_blocks[0] if me.shape_keys is not None else None
    (basis.data if basis is not None else me.vertices).foreach_get("co", pos)
    cols = {}
    for name in ATTRS:
        attr = me.attributes.get(name)
        if attr is None:
            raise SceneError(f"{obj.name}: Gaussian attribute '{name}' is missing")
        a = np.empty(n, np.float32)
        attr.data.foreach_get("value", a)
        cols[name] = a
    head = head_object(rig)
    if head is None:
        raise SceneError(f"{rig.name}: the avatar's head mesh is missing")
    hv = _head_basis(head)
    n_head = int(obj.omg_avatar.n_head)
    if not 0 < n_head <= n:
        raise SceneError(f"{obj.name}: {n} points but {n_head} head Gaussians recorded")
    view = _lod_view(obj)
    if "omg_parts" not in obj:  # imported before skinned parts: the rest is the body
        return SceneLOD(level, pos.reshape(n, 3), cols, n_head, hv, ["body"], [n - n_head], view=view)
    names = [str(x) for x in obj["omg_parts"]]
    counts = [int(x) for x in obj["omg_part_counts"]]
    w = np.asarray(obj["omg_part_weights"], np.float32)
    if len(names) != len(counts) or n_head + sum(counts) != n or w.size != (n - n_head) * len(JOINTS):
        raise SceneError(f"{obj.name}: {n} points do not match {n_head} head Gaussians and the recorded parts")
    keys = [str(x) for x in obj.get("omg_clamped", [])]
    exprs = [str(x) for x in obj.get("omg_clamped_exprs", [])]
    starts = [float(x) for x in obj.get("omg_clamped_starts", [])]
    if not len(keys) == len(exprs) == len(starts):
        raise SceneError(f"{obj.name}: the recorded clamped keys do not match their expressions and starts")
    moved = _part_shape_keys(me, pos.reshape(n, 3), n_head)
    clamped = {k: (e, st, moved.get(k, np.zeros((n - n_head, 3), np.float32))) for k, e, st in zip(keys, exprs, starts)}
    return SceneLOD(level, pos.reshape(n, 3), cols, n_head, hv, names, counts,
                    w.reshape(n - n_head, len(JOINTS)), _part_shape_keys(me, pos.reshape(n, 3), n_head, set(keys)),
                    clamped, view)


def gaussian_avatar(info: RigInfo, lod: SceneLOD, model):
    """A backend GaussianAvatar equivalent to the scene's LOD (worker thread: no bpy).

    backend.avatar.pose only needs the identity, ``vertex_offsets`` (head basis - shaped template),
    ``lod_offsets`` (rest Gaussians - upsampled head surface) and the skinned parts at rest, so posing
    this avatar moves the scene's Gaussians exactly as the backend moves the original.
    """
    from ..backend.avatar.gaussians import ClampedShape, GaussianAvatar, GaussianSet, SkinnedPart
    from ..backend.avatar.posing import body_weights, model_lods, shaped_vertices
    from ..backend.head.params import HeadParams

    if lod.head_basis.shape[0] != model.n_verts:
        raise SceneError(f"the head mesh has {lod.head_basis.shape[0]} vertices but head model "
                         f"'{model.name}' has {model.n_verts}")
    shape = info.shape if info.shape.size else np.zeros(model.n_shape, np.float32)
    head_verts = points_to_model(lod.head_basis)
    offsets = head_verts - shaped_vertices(model, shape)
    U = model_lods(model, [lod.level])[lod.level].upsample
    if U.shape[0] != lod.n_head:
        raise SceneError(f"LOD {lod.level} has {lod.n_head} head Gaussians, the head model's LOD has {U.shape[0]}")
    surface = np.asarray(U @ head_verts, np.float32)
    pos = points_to_model(lod.positions)
    full = scene_gaussians(pos, lod.columns)  # the one 3DGS column codec
    h = slice(0, lod.n_head)

    def gset(sl, means):
        return GaussianSet(means, full.quats[sl], full.scales[sl], full.opacities[sl], full.colors[sl])

    parts, i = [], lod.n_head
    for name, count in zip(lod.part_names, lod.part_counts):
        sl = slice(i, i + count)
        w = body_weights(count) if lod.part_weights is None else lod.part_weights[i - lod.n_head:i - lod.n_head + count]
        rows = slice(i - lod.n_head, i - lod.n_head + count)
        shapes = {k: points_to_model(d[rows]) for k, d in lod.part_shapes.items() if np.any(d[rows])}
        clamped = {e: ClampedShape(st, points_to_model(d[rows])) for e, st, d in lod.part_clamped.values()
                   if np.any(d[rows])}
        parts.append(SkinnedPart(name, gset(sl, pos[sl]), w, shapes, clamped))
        i += count
    cam = info.source_camera()
    if cam is None:  # a rig without a stored camera: the standard 512 source camera
        from ..backend.face.crop import source_camera

        cam = source_camera()
    zeros = HeadParams.zeros(model)
    return GaussianAvatar(
        head_model_name=model.name, head_model_path=info.head_model_path,
        params=HeadParams(shape, zeros.expr, zeros.pose, zeros.transl), camera=cam,
        vertex_offsets=offsets, lods={lod.level: gset(h, surface)},
        lod_offsets={lod.level: pos[h] - surface}, parts=parts,
        lod_views={} if lod.view is None else {lod.level: lod.view},
    )


# -- Blender camera -> backend Camera (model frame of the avatar) ---------------------------------
_CV_FROM_BLENDER_CAM = np.diag([1.0, -1.0, -1.0, 1.0])  # Blender camera looks down -Z with +Y up


def camera_viewmat(cam_world: np.ndarray, rig_world: np.ndarray) -> np.ndarray:
    """(4, 4) float64 world -> camera (OpenCV axes) for the avatar's MODEL frame.

    A model point x lands at Blender world ``rig_world @ C x`` (the rig's data is in the Blender
    frame, axes.py), the camera sees world points through ``inv(cam_world)``. Uniform object scales
    scale camera-space points uniformly, which a pinhole projection ignores, so the affine map is
    divided by its scale and the rotation re-orthonormalized (SVD).
    """
    C4 = np.eye(4)
    C4[:3, :3] = MODEL_TO_BLENDER
    A = _CV_FROM_BLENDER_CAM @ np.linalg.inv(np.asarray(cam_world, np.float64)) @ np.asarray(rig_world, np.float64) @ C4
    det = np.linalg.det(A[:3, :3])
    if not det > 1e-12:
        raise SceneError("the camera or the avatar has a zero or mirrored scale")
    k = det ** (1.0 / 3.0)
    u, _, vt = np.linalg.svd(A[:3, :3] / k)
    out = np.eye(4)
    out[:3, :3] = u @ vt
    out[:3, 3] = A[:3, 3] / k
    return out


def camera_intrinsics(lens_mm: float, sensor_w: float, sensor_h: float, sensor_fit: str, shift_x: float,
                      shift_y: float, width: int, height: int) -> np.ndarray:
    """(3, 3) K in pixels of a Blender perspective camera rendered at ``width`` x ``height``
    (square pixels). Sensor fit AUTO spans the larger image side with the sensor width; shifts are
    in units of the larger side (Blender's convention)."""
    if sensor_fit == "AUTO":
        f = lens_mm / sensor_w * max(width, height)
    elif sensor_fit == "HORIZONTAL":
        f = lens_mm / sensor_w * width
    else:
        f = lens_mm / sensor_h * height
    big = max(width, height)
    return np.array([[f, 0.0, width / 2.0 - shift_x * big], [0.0, f, height / 2.0 + shift_y * big],
                     [0.0, 0.0, 1.0]], np.float64)


def _object_animated(obj) -> bool:
    """True when the object's own transform may change over time (keys, parent or constraints)."""
    from .fcurves import channel_curves

    if obj.parent is not None or len(obj.constraints):
        return True
    paths = {p for p, _ in channel_curves(obj)}
    return any(p.startswith(("location", "rotation", "scale", "delta_")) for p in paths)


def scene_cameras(context, rig, frames: list[int], width: int, height: int) -> list:
    """One backend Camera per scene frame from the scene's active camera (UI thread).

    The scene is stepped through the frames only when the camera or the rig's object transform is
    animated; the current frame is restored afterwards."""
    from ..backend.render.camera import Camera

    scene = context.scene
    cam_obj = scene.camera
    if cam_obj is None or cam_obj.type != "CAMERA":
        raise SceneError("the scene has no active camera (set one, or preview from the source camera)")
    data = cam_obj.data
    if data.type != "PERSP":
        raise SceneError(f"camera '{cam_obj.name}' is {data.type.lower()}: only perspective cameras are supported")
    K = camera_intrinsics(data.lens, data.sensor_width, data.sensor_height, data.sensor_fit, data.shift_x,
                          data.shift_y, width, height)

    def current() -> Camera:
        cw = np.array([list(r) for r in cam_obj.matrix_world], np.float64)
        rw = np.array([list(r) for r in rig.matrix_world], np.float64)
        return Camera(K, camera_viewmat(cw, rw), width, height)

    if not (_object_animated(cam_obj) or _object_animated(rig)) or len(frames) == 1 and frames[0] == scene.frame_current:
        cam = current()
        return [cam] * len(frames)
    keep = scene.frame_current
    cams = []
    try:
        for f in frames:
            scene.frame_set(int(f))
            cams.append(current())
    finally:
        scene.frame_set(keep)
    return cams
