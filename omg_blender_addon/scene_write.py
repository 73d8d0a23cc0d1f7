"""Backend avatar (as ``scene_data.AvatarSceneData``) -> Blender objects; LOD switching; lookups.

What one build adds, in a new collection named after the avatar (Blender makes every name unique,
so building "Avatar" twice gives "Avatar" and "Avatar.001"; nothing is ever overwritten):

* ``<name> Rig``: an armature with the bones global, neck, jaw, eye_L, eye_R (FLAME's tree) at the
  fitted rest joints. Every bone's rest orientation is the head-model frame (bone X = model +X,
  bone Y = model +Y = Blender up, bone Z = model +Z = towards the viewer), so a pose bone's local
  rotation *is* the model-space joint rotation of backend LBS (axis-angle -> quaternion, no axis
  change) and the global bone's location is the model-space translation ``transl``.
* ``<name> Head``: the LOD-0 mesh (fitted identity, neutral expression) with one shape key per
  expression component, vertex groups from the skinning weights and an Armature modifier. It is
  the animator's control surface (wire display, not rendered). It also gets one pose-corrective
  key ``pose_<joint>_<r><c>`` per non-zero column of the model's posedirs, driven by element (r, c)
  of (R - I) of that bone's rotation (a Blender simple expression: no Python, runs with auto-run
  off), so the backend's pose correctives are reproduced too.
* ``<name> LOD<l>`` per imported LOD: loose vertices at the Gaussian centres (head, then the skinned
  parts: body, mouth interior, eyes; their names, counts and weights in the object's properties
  ``omg_parts``, ``omg_part_counts``, ``omg_part_weights``)
  with the 3DGS point attributes, the expression shape keys subdivided with the LOD's upsample
  matrix (and the pose correctives), whose values are driven by the head's keys (AVERAGE drivers of one variable: no Python
  expression, so they run without auto-run scripts), upsampled weights + Armature modifier, and the
  splat display (gaussian_display.py). The parts' clamped keys (SkinnedPart.clamped) are shape keys
  after those, each driven by ``max(head - start, 0)`` of its expression's head key (a simple
  expression: no Python either); their expressions and starts are in ``omg_clamped_exprs`` /
  ``omg_clamped_starts``. The point attribute ``omg_grow_allowance`` holds the head's per-frame
  splat growth allowance on its LOD-0 rows (backend.avatar.stretch_growth; splat_scene grows the
  drawn splats with it); for the Geometry Nodes display to grow them too, the mesh's only edges
  join those rows where the growth counts them (edge attribute ``omg_grow_rest_length``) and every
  head Gaussian holds its upsampling parents (``omg_grow_parent_k`` / ``omg_grow_weight_k``). The
  display's node group removes the edges from what it draws. A LOD with view-dependent Gaussians
  (the backend's ``GaussianAvatar.lod_views``) holds them as the point attributes ``omg_view_side``,
  ``omg_view_toward`` and ``omg_view_grow`` (scene_data.view_columns; the splat display and
  scene_read use them). Only the rig's current LOD is visible.

Not reproduced exactly (second-order effects, measured in tests/blender/test_build_avatar.py): the
joints' small shift with expression (LBS regresses joints from the expressive mesh) and, on the
subdivided LODs, the order of skinning and subdivision (Blender skins each subdivided point with
interpolated weights; the backend subdivides skinned base vertices).
"""

from __future__ import annotations

import time
from typing import Iterable

import bpy
import numpy as np
from mathutils import Matrix

from . import gaussian_display
from .axes import MODEL_TO_BLENDER
from .scene_data import (ATTRIBUTE_NAMES, GROW_ATTRIBUTE, GROW_PARENT_ATTRIBUTES, GROW_REST_ATTRIBUTE,
                         GROW_WEIGHT_ATTRIBUTES, VIEW_ATTRIBUTES, VIEW_GROW_ATTRIBUTE, VIEW_SIDE_ATTRIBUTE,
                         VIEW_TOWARD_ATTRIBUTE, AvatarSceneData, GaussianLODData)

BONE_LENGTHS = {"global": 0.10, "neck": 0.06, "jaw": 0.05, "eye_L": 0.02, "eye_R": 0.02}
SLIDER_RANGE = (-3.0, 3.0)  # expression coefficients (FLAME's are ~N(0, 1))
ROLE_RIG, ROLE_HEAD, ROLE_GAUSSIANS = "RIG", "HEAD", "GAUSSIANS"


# -- lookups ---------------------------------------------------------------------------------------
def avatar_rig(obj: bpy.types.Object | None) -> bpy.types.Object | None:
    """The rig of the avatar ``obj`` belongs to (itself for a rig), or None."""
    if obj is None:
        return None
    s = obj.omg_avatar
    if s.role == ROLE_RIG:
        return obj
    return s.rig if s.rig is not None and s.rig.omg_avatar.role == ROLE_RIG else None


def avatar_objects(rig: bpy.types.Object, role: str | None = None) -> list[bpy.types.Object]:
    """Objects bound to ``rig`` (head, Gaussian LODs), optionally of one role, in name order."""
    objs = [o for o in bpy.data.objects if o.omg_avatar.rig == rig and o.omg_avatar.role != ROLE_RIG
            and (role is None or o.omg_avatar.role == role)]
    return sorted(objs, key=lambda o: (o.omg_avatar.level, o.name))


def lod_objects(rig: bpy.types.Object) -> dict[int, bpy.types.Object]:
    """{level: Gaussian object} of the avatar."""
    return {o.omg_avatar.level: o for o in avatar_objects(rig, ROLE_GAUSSIANS)}


def head_object(rig: bpy.types.Object) -> bpy.types.Object | None:
    heads = avatar_objects(rig, ROLE_HEAD)
    return heads[0] if heads else None


def all_rigs() -> list[bpy.types.Object]:
    return [o for o in bpy.data.objects if o.type == "ARMATURE" and o.omg_avatar.role == ROLE_RIG]


def is_gaussian_object(obj: bpy.types.Object | None) -> bool:
    """A mesh carrying the 3DGS point attributes (avatar LOD or imported .ply)."""
    if obj is None or obj.type != "MESH":
        return False
    names = obj.data.attributes.keys()
    return all(n in names for n in ATTRIBUTE_NAMES)


# -- LOD switching ---------------------------------------------------------------------------------
def apply_lod(rig: bpy.types.Object, level: int) -> int:
    """Show the Gaussian object of ``level`` (the nearest imported one if absent), hide the others.

    Returns the level shown (-1 when the avatar has no Gaussian objects). Only visibility flags
    change, so switching is instant (hidden objects are not evaluated by the viewport depsgraph).
    """
    objs = lod_objects(rig)
    if not objs:
        return -1
    shown = min(objs, key=lambda l: (abs(l - level), l))
    for lvl, obj in objs.items():
        hide = lvl != shown
        if obj.hide_viewport != hide:
            obj.hide_viewport = hide
        if obj.hide_render != hide:
            obj.hide_render = hide
    return shown


# -- building --------------------------------------------------------------------------------------
def create_avatar(context, data: AvatarSceneData, show_lod: int | None = None) -> bpy.types.Object:
    """Create the avatar's collection and objects; returns the rig.

    On any exception everything created so far is removed again, so a failed build leaves the
    file as it was.
    """
    created: list[bpy.types.ID] = []
    try:
        return _create(context, data, show_lod, created)
    except BaseException:
        _remove(created)
        raise


def _create(context, data: AvatarSceneData, show_lod: int | None, created: list) -> bpy.types.Object:
    if context.object is not None and context.object.mode != "OBJECT":
        bpy.ops.object.mode_set(mode="OBJECT")
    coll = bpy.data.collections.new(data.name)
    created.append(coll)
    context.scene.collection.children.link(coll)
    base = coll.name  # unique: "Avatar", "Avatar.001", ...

    rig = _create_rig(context, coll, base, data, created)
    head = _create_head(coll, base, data, rig, created)
    head_key = head.data.shape_keys
    seconds = {}
    for level, lod in sorted(data.lods.items()):
        t0 = time.perf_counter()
        _create_gaussians(coll, f"{base} LOD{level}", lod, data, rig, head_key, created)
        seconds[str(level)] = round(time.perf_counter() - t0, 3)
    rig["omg_import_seconds"] = seconds  # bpy-side creation time per LOD (figures, diagnostics)

    s = rig.omg_avatar
    s.head_model_name = data.head_model_name
    s.head_model_path = data.head_model_path or ""
    rig["omg_shape"] = [float(x) for x in data.shape]
    rig["omg_camera_K"] = [float(x) for x in data.camera_K.ravel()]
    rig["omg_camera_viewmat"] = [float(x) for x in data.camera_viewmat.ravel()]
    rig["omg_camera_size"] = list(data.camera_size)
    if data.source_pose is not None:
        rig["omg_source_expr"] = [float(x) for x in data.source_expr]
        rig["omg_source_pose"] = [float(x) for x in np.asarray(data.source_pose).ravel()]
        rig["omg_source_transl"] = [float(x) for x in data.source_transl]
    for k, v in data.info.items():
        rig[f"omg_{k}"] = v
    level = max(data.lods) if show_lod is None else int(show_lod)
    shown = apply_lod(rig, level)
    s.lod = str(max(shown, 0))  # the property's update re-applies the same visibility

    for obj in context.view_layer.objects:
        if obj.select_get():
            obj.select_set(False)
    rig.select_set(True)
    context.view_layer.objects.active = rig
    return rig


def _link(coll, name: str, data, created: list) -> bpy.types.Object:
    obj = bpy.data.objects.new(name, data)
    created.append(obj)
    coll.objects.link(obj)
    return obj


def _create_rig(context, coll, base: str, data: AvatarSceneData, created: list) -> bpy.types.Object:
    arm = bpy.data.armatures.new(f"{base} Rig")
    created.append(arm)
    arm.display_type = "OCTAHEDRAL"
    rig = _link(coll, f"{base} Rig", arm, created)
    rig.show_in_front = True
    rig.omg_avatar.role = ROLE_RIG
    context.view_layer.objects.active = rig
    bpy.ops.object.mode_set(mode="EDIT")
    try:
        rot = Matrix([list(r) for r in MODEL_TO_BLENDER])  # bone axes = model axes
        bones = []
        for name, parent, joint in zip(data.joint_names, data.parents, data.joints):
            eb = arm.edit_bones.new(name)
            eb.head = tuple(float(x) for x in joint)
            eb.tail = (float(joint[0]), float(joint[1]), float(joint[2]) + BONE_LENGTHS.get(name, 0.04))
            eb.matrix = Matrix.Translation(tuple(float(x) for x in joint)) @ rot.to_4x4()
            if parent >= 0:
                eb.parent = bones[parent]
                eb.use_connect = False
            bones.append(eb)
    finally:
        bpy.ops.object.mode_set(mode="OBJECT")
    for pb in rig.pose.bones:
        pb.rotation_mode = "QUATERNION"
    return rig


def _mesh(name: str, verts: np.ndarray, faces: np.ndarray | None, created: list) -> bpy.types.Mesh:
    """A mesh from (V, 3) float vertices and optional (F, 3) int triangles (no Python loops)."""
    me = bpy.data.meshes.new(name)
    created.append(me)
    me.vertices.add(len(verts))
    me.vertices.foreach_set("co", np.ascontiguousarray(verts, np.float32).ravel())
    if faces is not None and len(faces):
        f = np.ascontiguousarray(faces, np.int32)
        me.loops.add(f.size)
        me.polygons.add(len(f))
        me.loops.foreach_set("vertex_index", f.ravel())
        me.polygons.foreach_set("loop_start", np.arange(0, f.size, 3, dtype=np.int32))
    me.update()
    me.validate(clean_customdata=False)
    return me


def _vertex_groups(obj, names: Iterable[str], weights: np.ndarray) -> None:
    """One vertex group per column of ``weights`` (N, J); zero weights are left out.

    ``VertexGroup.add`` takes one weight per call, so vertices are grouped by equal weight (one call
    per distinct value, vectorized grouping)."""
    for j, name in enumerate(names):
        vg = obj.vertex_groups.new(name=name)
        w = weights[:, j]
        idx = np.flatnonzero(w > 0)
        if not len(idx):
            continue
        vals, inv = np.unique(w[idx], return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(len(vals) + 1))
        sorted_idx = idx[order].tolist()
        for k, val in enumerate(vals.tolist()):
            vg.add(sorted_idx[bounds[k]:bounds[k + 1]], val, "REPLACE")


def _shape_keys(obj, base: np.ndarray, names: list[str], deltas: np.ndarray, slider=SLIDER_RANGE) -> None:
    if obj.data.shape_keys is None:
        obj.shape_key_add(name="Basis", from_mix=False)
    for name, d in zip(names, deltas):
        kb = obj.shape_key_add(name=name, from_mix=False)
        kb.data.foreach_set("co", (base + d).astype(np.float32).ravel())
        kb.slider_min, kb.slider_max = slider
        kb.value = 0.0  # new keys start at 1.0 in Blender 5.0: the rest is the neutral expression
    obj.data.shape_keys.use_relative = True


# (R - I)[r][c] of a bone's rotation from its quaternion (normalized here, as Blender does), as
# Blender "simple expressions": evaluated natively, without Python, so they run with auto-run off.
_N = "(w*w+x*x+y*y+z*z)"
ROTATION_MINUS_I = {
    (0, 0): f"-2*(y*y+z*z)/{_N}", (0, 1): f"2*(x*y-w*z)/{_N}", (0, 2): f"2*(x*z+w*y)/{_N}",
    (1, 0): f"2*(x*y+w*z)/{_N}", (1, 1): f"-2*(x*x+z*z)/{_N}", (1, 2): f"2*(y*z-w*x)/{_N}",
    (2, 0): f"2*(x*z-w*y)/{_N}", (2, 1): f"2*(y*z+w*x)/{_N}", (2, 2): f"-2*(x*x+y*y)/{_N}",
}


def pose_key_names(data: AvatarSceneData) -> list[str]:
    return [f"pose_{data.joint_names[j]}_{r}{c}" for j, r, c in data.pose_features]


def _drive_pose_correctives(head, rig, data: AvatarSceneData) -> None:
    """Head corrective key (joint j, r, c) = (R_j - I)[r][c] of the bone's local rotation, which is
    the model-space joint rotation (bone axes = model axes), i.e. the backend's pose feature."""
    key = head.data.shape_keys
    for name, (j, r, c) in zip(pose_key_names(data), data.pose_features):
        drv = key.key_blocks[name].driver_add("value").driver
        drv.type = "SCRIPTED"
        for comp in ("w", "x", "y", "z"):
            var = drv.variables.new()
            var.name = comp
            var.type = "TRANSFORMS"
            tgt = var.targets[0]
            tgt.id = rig
            tgt.bone_target = data.joint_names[j]
            tgt.transform_type = f"ROT_{comp.upper()}"
            tgt.rotation_mode = "QUATERNION"
            tgt.transform_space = "LOCAL_SPACE"
        drv.expression = ROTATION_MINUS_I[(r, c)]
        fc = key.animation_data.drivers.find(f'key_blocks["{name}"].value')
        if fc is not None:
            for mod in list(fc.modifiers):
                fc.modifiers.remove(mod)


def _armature(obj, rig) -> None:
    obj.parent = rig
    mod = obj.modifiers.new("Armature", "ARMATURE")
    mod.object = rig
    mod.use_vertex_groups = True
    mod.use_deform_preserve_volume = False  # linear blend skinning, as the backend


def _create_head(coll, base: str, data: AvatarSceneData, rig, created: list) -> bpy.types.Object:
    me = _mesh(f"{base} Head", data.head_verts, data.head_faces, created)
    me.polygons.foreach_set("use_smooth", np.ones(len(me.polygons), bool))
    head = _link(coll, f"{base} Head", me, created)
    head.omg_avatar.role = ROLE_HEAD
    head.omg_avatar.rig = rig
    _vertex_groups(head, data.joint_names, data.head_weights)
    _shape_keys(head, data.head_verts, data.expr_names, data.head_expr_deltas)
    if data.pose_features:
        _shape_keys(head, data.head_verts, pose_key_names(data), data.head_pose_deltas, (-2.0, 2.0))
        _drive_pose_correctives(head, rig, data)
    _armature(head, rig)
    head.display_type = "WIRE"
    head.hide_render = True
    return head


def _drive_from_head_key(obj, key_name: str, head_key: bpy.types.Key, expr_name: str,
                         expression: str | None = None) -> None:
    """Drive ``obj``'s shape key ``key_name`` by the head key ``expr_name`` (variable ``head``):
    as it is (AVERAGE), or through ``expression`` (SCRIPTED, e.g. a clamp)."""
    fc = obj.data.shape_keys.key_blocks[key_name].driver_add("value")
    drv = fc.driver
    drv.type = "AVERAGE" if expression is None else "SCRIPTED"
    var = drv.variables.new()
    var.name = "head"
    var.type = "SINGLE_PROP"
    tgt = var.targets[0]
    tgt.id_type = "KEY"
    tgt.id = head_key
    tgt.data_path = f'key_blocks["{bpy.utils.escape_identifier(expr_name)}"].value'
    if expression is not None:
        drv.expression = expression
    for mod in list(fc.modifiers):  # identity mapping, no default generator
        fc.modifiers.remove(mod)


def _drive_shape_keys(obj, head_key: bpy.types.Key, names: list[str]) -> None:
    """Each of ``obj``'s expression keys follows the head key of the same name (AVERAGE driver)."""
    for name in names:
        _drive_from_head_key(obj, name, head_key, name)


def _drive_clamped_keys(obj, head_key: bpy.types.Key, lod: GaussianLODData) -> None:
    """Each clamped key of ``obj`` follows ``max(e - start, 0)`` of its expression's head key e: a
    SCRIPTED driver whose expression Blender evaluates natively (no Python, runs with auto-run off)."""
    for name, expr, start in zip(lod.clamped_names, lod.clamped_exprs, lod.clamped_starts):
        _drive_from_head_key(obj, name, head_key, expr, f"max(head - ({float(start)!r}), 0)")


def create_gaussian_mesh(name: str, positions: np.ndarray, columns: dict[str, np.ndarray],
                         created: list) -> bpy.types.Mesh:
    """A loose-vertex mesh at ``positions`` (N, 3) with the 3DGS float point attributes."""
    me = _mesh(name, positions, None, created)
    for key in ATTRIBUTE_NAMES:
        attr = me.attributes.new(key, "FLOAT", "POINT")
        attr.data.foreach_set("value", np.ascontiguousarray(columns[key], np.float32))
    return me


def _create_gaussians(coll, name: str, lod: GaussianLODData, data: AvatarSceneData, rig, head_key,
                      created: list) -> bpy.types.Object:
    me = create_gaussian_mesh(name, lod.positions, lod.columns, created)
    if lod.grow_allowance is not None:  # the splats' per-frame growth (splat_scene), on the head's LOD-0 rows
        allowance = np.zeros(lod.n, np.float32)
        allowance[: len(lod.grow_allowance)] = lod.grow_allowance
        me.attributes.new(GROW_ATTRIBUTE, "FLOAT", "POINT").data.foreach_set("value", allowance)
    if lod.grow_allowance is not None and lod.grow_edges is not None:
        _growth_edges(me, lod)
    if lod.view_toward is not None:  # the view-dependent Gaussians (splat_scene, scene_read)
        for attr, values in ((VIEW_SIDE_ATTRIBUTE, lod.view_side), (VIEW_TOWARD_ATTRIBUTE, lod.view_toward),
                             (VIEW_GROW_ATTRIBUTE, lod.view_grow)):
            domain, kind = VIEW_ATTRIBUTES[attr]
            me.attributes.new(attr, kind, domain).data.foreach_set(
                "vector" if kind == "FLOAT_VECTOR" else "value", np.ascontiguousarray(values, np.float32).ravel())
    obj = _link(coll, name, me, created)
    s = obj.omg_avatar
    s.role, s.rig, s.level = ROLE_GAUSSIANS, rig, lod.level
    s.n_head, s.n_parts = lod.n_head, lod.n_parts
    # the parts' own skinning weights, for reading the avatar back (scene_read.gaussian_avatar)
    # without walking vertex groups point by point
    obj["omg_parts"] = list(lod.part_names)
    obj["omg_part_counts"] = [int(c) for c in lod.part_counts]
    obj["omg_part_weights"] = np.ascontiguousarray(lod.weights[lod.n_head:], np.float32).ravel().tolist()
    _vertex_groups(obj, data.joint_names, lod.weights)
    _shape_keys(obj, lod.positions, data.expr_names, lod.expr_deltas)
    _drive_shape_keys(obj, head_key, data.expr_names)
    if data.pose_features:
        _shape_keys(obj, lod.positions, pose_key_names(data), lod.pose_deltas, (-2.0, 2.0))
        _drive_shape_keys(obj, head_key, pose_key_names(data))
    if lod.clamped_names:
        # values reach (slider max - start) at most; the slider must not cut the driven value
        top = SLIDER_RANGE[1] - min(min(lod.clamped_starts), 0.0)
        _shape_keys(obj, lod.positions, lod.clamped_names, lod.clamped_deltas, (0.0, min(top, 10.0)))
        _drive_clamped_keys(obj, head_key, lod)
        obj["omg_clamped"] = list(lod.clamped_names)
        obj["omg_clamped_exprs"] = list(lod.clamped_exprs)
        obj["omg_clamped_starts"] = [float(x) for x in lod.clamped_starts]
    _armature(obj, rig)
    mod = gaussian_display.add_display(obj, created=created)
    if lod.view_toward is not None:  # the display turns the view-dependent Gaussians with the rig
        gaussian_display.drive_view_frames(obj, mod, rig)
    return obj


def _growth_edges(me: bpy.types.Mesh, lod: GaussianLODData) -> None:
    """The Geometry Nodes display's growth data on a LOD mesh (gaussian_display): the counted LOD-0
    edges as the mesh's edges with their rest lengths, and each head Gaussian's upsampling parents."""
    e = np.ascontiguousarray(lod.grow_edges, np.int32)
    me.edges.add(len(e))
    me.edges.foreach_set("vertices", e.ravel())
    me.update()
    me.attributes.new(GROW_REST_ATTRIBUTE, "FLOAT", "EDGE").data.foreach_set(
        "value", np.ascontiguousarray(lod.grow_rest_length, np.float32))
    n = len(lod.grow_parents)
    for k, (pa, wa) in enumerate(zip(GROW_PARENT_ATTRIBUTES, GROW_WEIGHT_ATTRIBUTES)):
        parents, weights = np.zeros(lod.n, np.int32), np.zeros(lod.n, np.float32)
        parents[:n], weights[:n] = lod.grow_parents[:, k], lod.grow_weights[:, k]
        me.attributes.new(pa, "INT", "POINT").data.foreach_set("value", parents)
        me.attributes.new(wa, "FLOAT", "POINT").data.foreach_set("value", weights)


def _remove(created: list) -> None:
    """Remove ID blocks created by a failed build (objects first, then their data)."""
    collections = {
        bpy.types.Object: bpy.data.objects, bpy.types.Mesh: bpy.data.meshes,
        bpy.types.Armature: bpy.data.armatures, bpy.types.Collection: bpy.data.collections,
        bpy.types.NodeTree: bpy.data.node_groups, bpy.types.Material: bpy.data.materials,
    }
    for idb in reversed(created):
        for typ, coll in collections.items():
            if isinstance(idb, typ):
                try:
                    coll.remove(idb)
                except ReferenceError:
                    pass
                break


# -- the photo's pose and camera -------------------------------------------------------------------
def set_pose(rig: bpy.types.Object, expr: np.ndarray | None, pose: np.ndarray, transl: np.ndarray) -> None:
    """Set (not keyframe) the rig to backend parameters: expression (E,) on the head's shape keys,
    pose (5, 3) axis-angle per joint (model frame = bone local frame), translation (3,) model frame."""
    from ..backend.rotations import axis_angle_to_quat

    pose = np.asarray(pose, np.float64).reshape(-1, 3)
    for name, aa in zip(("global", "neck", "jaw", "eye_L", "eye_R"), pose):
        pb = rig.pose.bones.get(name)
        if pb is not None:
            pb.rotation_mode = "QUATERNION"
            pb.rotation_quaternion = tuple(float(x) for x in axis_angle_to_quat(aa))
    rig.pose.bones["global"].location = tuple(float(x) for x in np.asarray(transl).reshape(3))
    head = head_object(rig)
    if head is not None and expr is not None:
        blocks = head.data.shape_keys.key_blocks[1:]
        for kb, v in zip(blocks, np.asarray(expr, np.float64)):
            kb.value = float(np.clip(v, kb.slider_min, kb.slider_max))


def set_source_pose(rig: bpy.types.Object) -> None:
    """Pose the rig like the photo it was built from (fitted expression, joint rotations, translation)."""
    set_pose(rig, np.array(rig["omg_source_expr"]), np.array(rig["omg_source_pose"]).reshape(5, 3),
             np.array(rig["omg_source_transl"]))


def add_source_camera(context, rig: bpy.types.Object) -> bpy.types.Object:
    """A camera object reproducing the photo's fitted camera (OpenCV K + world->camera viewmat)
    in the avatar's collection; the scene's resolution is set to the camera's size."""
    from .axes import MODEL_TO_BLENDER

    K = np.array(rig["omg_camera_K"], np.float64).reshape(3, 3)
    view = np.array(rig["omg_camera_viewmat"], np.float64).reshape(4, 4)
    w, h = (int(x) for x in rig["omg_camera_size"])
    cam_to_model = np.linalg.inv(view)
    # OpenCV camera axes (x right, y down, z forward) -> Blender camera axes (y up, looks along -z)
    flip = np.diag([1.0, -1.0, -1.0, 1.0])
    C = np.eye(4)
    C[:3, :3] = MODEL_TO_BLENDER
    world = C @ cam_to_model @ flip
    cam = bpy.data.cameras.new(f"{rig.name} Source Camera")
    cam.sensor_fit = "HORIZONTAL"
    cam.sensor_width = 36.0
    cam.lens = float(K[0, 0]) * cam.sensor_width / w
    cam.shift_x = float((w / 2 - K[0, 2]) / w)
    cam.shift_y = float((K[1, 2] - h / 2) / w)
    cam.clip_start, cam.clip_end = 0.01, 100.0
    obj = bpy.data.objects.new(cam.name, cam)
    (rig.users_collection[0] if rig.users_collection else context.scene.collection).objects.link(obj)
    obj.matrix_world = Matrix([list(r) for r in world])
    context.scene.render.resolution_x, context.scene.render.resolution_y = w, h
    context.scene.render.pixel_aspect_x = context.scene.render.pixel_aspect_y = 1.0
    return obj
