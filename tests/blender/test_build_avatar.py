"""Build an avatar from the astronaut photo with the INSTALLED extension (bpy headless) and check the scene.

Two child processes: (1) install, build through ``omg_avatar.build_from_photo``, check objects,
rig, shape keys, attributes, posing against the backend's ``pose``, LOD switching, .ply export,
cancel/failure/rollback, unique names, save; (2) a fresh Blender reopens the .blend with script
auto-run off and checks that attributes, shape keys, drivers and LOD switching still work.

Posing tolerance (stated): LOD 0 matches the backend's LBS, pose correctives (posedirs) included,
to 1e-5 m. The subdivided LODs differ by a second-order term: Blender skins each subdivided point
with interpolated weights, the backend subdivides skinned base vertices; the two agree wherever the
weights are uniform and differ where they change across an edge, by at most ~2.5 mm at a 0.25 rad
jaw opening on the stand-in while the Gaussians move ~38 mm (the difference grows with the angle).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from isolated_blender import run_isolated

pytestmark = [pytest.mark.blender, pytest.mark.slow]

PKG = "bl_ext.user_default.omg_avatar"

SETUP = """
import importlib, time
t0 = time.perf_counter()
res = bpy.ops.extensions.package_install_files(filepath=ZIP, repo="user_default", enable_on_install=True)
assert sorted(res) == ["FINISHED"], res
RESULT["install_seconds"] = time.perf_counter() - t0
"""

# Shared helpers of both children (after PRELUDE + SETUP or an addon_enable).
HELPERS = """
import numpy as np
addon = importlib.import_module(PKG)
from importlib import import_module as _imp
backend = _imp(PKG + ".backend")
for _m in ("head", "avatar", "avatar.posing", "progress"):
    _imp(PKG + ".backend." + _m)
axes = _imp(PKG + ".omg_blender_addon.axes")
rotations = _imp(PKG + ".backend.rotations")
ply_io = _imp(PKG + ".omg_blender_addon.ply_io")
scene = _imp(PKG + ".omg_blender_addon.scene_write")
JOINTS = ("global", "neck", "jaw", "eye_L", "eye_R")

def counts():
    d = bpy.data
    return {k: len(getattr(d, k)) for k in ("objects", "meshes", "armatures", "collections", "node_groups",
                                           "materials", "shape_keys", "actions")}

def set_pose(rig, head, names, expr, pose, transl):
    for i, n in enumerate(names):
        head.data.shape_keys.key_blocks[n].value = float(expr[i])
    for j, bn in enumerate(JOINTS):
        rig.pose.bones[bn].rotation_quaternion = tuple(rotations.axis_angle_to_quat(pose[j]))
    rig.pose.bones["global"].location = tuple(float(x) for x in transl)

def keyframe(rig, head, names, frame):
    for n in names:
        head.data.shape_keys.key_blocks[n].keyframe_insert("value", frame=frame)
    for bn in JOINTS:
        rig.pose.bones[bn].keyframe_insert("rotation_quaternion", frame=frame)
    rig.pose.bones["global"].keyframe_insert("location", frame=frame)

def positions(obj):
    return ply_io.evaluated_positions(obj, bpy.context.evaluated_depsgraph_get())

def test_pose(model, names):
    E = model.n_expr
    expr = np.zeros(E, np.float32)
    expr[names.index("jawOpen")] = 0.8
    expr[names.index("mouthSmileLeft")] = 0.5
    expr[names.index("tongueOut")] = 0.6
    pose = np.zeros((5, 3), np.float32)
    pose[2] = (0.25, 0.0, 0.0)
    return expr, pose, np.zeros(3, np.float32)
"""

BUILD = """
photo = PHOTO
scene_ = bpy.context.scene
before = counts()
t0 = time.perf_counter()
res = bpy.ops.omg_avatar.build_from_photo(filepath=photo, name="Astro", lods=(0, 1, 2), refine=False,
                                          avatar_path=AVATAR)
RESULT["build"] = sorted(res)
RESULT["build_seconds"] = time.perf_counter() - t0
rig = bpy.data.objects["Astro Rig"]
RESULT["import_seconds"] = dict(rig["omg_import_seconds"])
RESULT["prepare_seconds"] = dict(rig["omg_prepare_seconds"])
coll = bpy.data.collections["Astro"]
RESULT["collection_objects"] = sorted(o.name for o in coll.objects)
RESULT["bones"] = [b.name for b in rig.data.bones]
RESULT["bone_parents"] = [b.parent.name if b.parent else None for b in rig.data.bones]
head = bpy.data.objects["Astro Head"]
keys = head.data.shape_keys.key_blocks
RESULT["head_keys"] = [k.name for k in keys]
RESULT["head_groups"] = [g.name for g in head.vertex_groups]
RESULT["head_mods"] = [m.type for m in head.modifiers]
hd = head.data.shape_keys.animation_data.drivers
RESULT["head_drivers"] = [[fc.data_path, fc.driver.type, fc.driver.expression, fc.driver.is_simple_expression,
                           fc.driver.is_valid] for fc in hd]
RESULT["head_verts"] = len(head.data.vertices)
RESULT["head_faces"] = len(head.data.polygons)

model = backend.head.load_head_model(None)
av = backend.avatar.load_avatar(AVATAR)
names = list(model.expr_names)
RESULT["model_expr_names"] = names
RESULT["model_verts"] = model.n_verts
RESULT["pose_columns"] = [int(k) for k in np.flatnonzero(np.abs(model.posedirs).max(axis=(0, 1)) > 1e-7)]
RESULT["avatar_counts"] = {str(l): c["total"] for l, c in av.counts().items()}
RESULT["avatar_head"] = {str(l): c["head"] for l, c in av.counts().items()}
RESULT["avatar_parts"] = av.part_counts()
# bone rest positions = the backend's joints for the fitted identity (Blender frame)
shaped = backend.avatar.posing.shaped_vertices(model, av.params.shape)
J = axes.points_to_blender(model.rest_joints(shaped))
RESULT["joint_err"] = float(max(np.abs(np.array(rig.data.bones[n].head_local) - J[i]).max()
                                for i, n in enumerate(JOINTS)))

lods = {}
for l in (0, 1, 2):
    obj = bpy.data.objects[f"Astro LOD{l}"]
    me = obj.data
    info = {"verts": len(me.vertices), "edges": len(me.edges), "faces": len(me.polygons),
            "n_head": obj.omg_avatar.n_head, "n_parts": obj.omg_avatar.n_parts,
            "parts": list(obj["omg_parts"]), "part_counts": list(obj["omg_part_counts"]),
            "keys": [k.name for k in me.shape_keys.key_blocks],
            "clamped": list(obj.get("omg_clamped", [])),
            "groups": [g.name for g in obj.vertex_groups],
            "mods": [m.type for m in obj.modifiers],
            "attrs": sorted(a.name for a in me.attributes if not a.name.startswith(".") and a.name != "position")}
    ends = np.empty(len(me.edges) * 2, np.int32)
    me.edges.foreach_get("vertices", ends)
    info["edge_top"] = int(ends.max()) if len(ends) else -1
    cols = ply_io.read_columns(me)
    rng = {k: [float(v.min()), float(v.max())] for k, v in cols.items()}
    q = np.stack([cols[f"rot_{i}"] for i in range(4)], 1)
    info["rng"] = rng
    info["quat_norm_err"] = float(np.abs(np.linalg.norm(q, axis=1) - 1).max())
    info["finite"] = bool(all(np.isfinite(v).all() for v in cols.values()))
    # driven shape keys: every expression key's value follows the head's
    fcs = me.shape_keys.animation_data.drivers
    info["drivers"] = len(fcs)
    info["driver_types"] = sorted({fc.driver.type for fc in fcs})
    info["scripted"] = sorted(fc.data_path for fc in fcs if fc.driver.type == "SCRIPTED")
    info["scripted_simple"] = all(fc.driver.is_simple_expression for fc in fcs if fc.driver.type == "SCRIPTED")
    info["driver_valid"] = all(fc.driver.is_valid for fc in fcs)
    # rest positions = backend rest set (zero expression/pose), Blender frame
    rest = np.empty(len(me.vertices) * 3, np.float32)
    me.vertices.foreach_get("co", rest)
    exp_rest = axes.points_to_blender(backend.avatar.pose(av, model, backend.head.HeadParams.zeros(model), l)[0])
    info["rest_err"] = float(np.abs(rest.reshape(-1, 3) - exp_rest).max())
    lods[str(l)] = info
RESULT["lods"] = lods
RESULT["visible_after_build"] = [l for l in (0, 1, 2) if not bpy.data.objects[f"Astro LOD{l}"].hide_viewport]
RESULT["rig_lod"] = rig.omg_avatar.lod

# -- posing: keyframe jaw + expression at frame 5, compare with backend pose -----------------------
import copy
m0 = copy.copy(model)
m0.cache = {}
m0.posedirs = np.zeros_like(model.posedirs)
HP = backend.head.HeadParams
scene_.frame_set(1)
zero = (np.zeros(model.n_expr, np.float32), np.zeros((5, 3), np.float32), np.zeros(3, np.float32))
set_pose(rig, head, names, *zero)
keyframe(rig, head, names, 1)
expr, pose_, transl = test_pose(model, names)
set_pose(rig, head, names, expr, pose_, transl)
keyframe(rig, head, names, 5)
posing = {}
scene_.frame_set(5)
rest0 = {l: np.array([v.co for v in bpy.data.objects[f"Astro LOD{l}"].data.vertices]) for l in (0, 1, 2)}
params = HP(av.params.shape, expr[None], pose_[None], transl[None])
for l in (0, 1, 2):
    obj = bpy.data.objects[f"Astro LOD{l}"]
    got = positions(obj)
    exp = axes.points_to_blender(backend.avatar.pose(av, model, params, l)[0])
    exp0 = axes.points_to_blender(backend.avatar.pose(av, m0, params, l)[0])
    posing[str(l)] = {"moved": float(np.abs(got - rest0[l]).max()),
                      "backend_moved": float(np.abs(exp - rest0[l]).max()),
                      "err": float(np.abs(got - exp).max()),
                      "err_no_posedirs": float(np.abs(got - exp0).max()),
                      # per skinned part: Blender vs backend, and how far the keyed pose moved it
                      "parts": {name: [float(np.abs(got[sl] - exp[sl]).max()),
                                       float(np.abs(got[sl] - rest0[l][sl]).max())]
                                for name, sl in av.part_slices(l).items()}}
RESULT["posing"] = posing
# the tongue follows its tongueOut shape key in Blender as in the backend (the part's own key on the
# LOD object), and reading the scene back (scene_read, what previews render) keeps that key
no_tongue = expr.copy()
no_tongue[names.index("tongueOut")] = 0.0
t2 = av.part_slices(2)["tongue"]
exp_nt = backend.avatar.pose(av, model, HP(av.params.shape, no_tongue[None], pose_[None], transl[None]), 2)[0]
exp_t = backend.avatar.pose(av, model, params, 2)[0]
RESULT["tongue_out_moves"] = float(np.abs(exp_t[t2] - exp_nt[t2]).max())
sread = _imp(PKG + ".omg_blender_addon.scene_read")
back = sread.gaussian_avatar(sread.read_rig(rig), sread.read_lod(rig, 2), model)
RESULT["read_back_part_shapes"] = {p.name: sorted(p.shapes) for p in back.parts if p.shapes}
RESULT["read_back_tongue_err"] = float(np.abs(backend.avatar.pose(back, model, params, 2)[0][t2] - exp_t[t2]).max())
# the view-dependent Gaussians come back as the file holds them (previews draw them); a view
# attribute edited into what no view data holds is named, not drawn or rendered wrongly
v2, b2 = av.lod_views.get(2), back.lod_views.get(2)
RESULT["read_back_views"] = {"n": 0 if v2 is None else len(v2), "back": 0 if b2 is None else len(b2)}
if v2 is not None and b2 is not None and np.array_equal(v2.rows, b2.rows):
    RESULT["read_back_views"]["err"] = max(float(np.abs(getattr(v2, k) - getattr(b2, k)).max())
                                           for k in ("side", "toward", "grow"))
    grow_attr = bpy.data.objects["Astro LOD2"].data.attributes["omg_view_grow"]
    kept = grow_attr.data[int(b2.rows[0])].value
    grow_attr.data[int(b2.rows[0])].value = 0.5
    try:
        sread.read_lod(rig, 2)
    except sread.SceneError as exc:
        RESULT["read_back_views"]["edited"] = str(exc)
    finally:
        grow_attr.data[int(b2.rows[0])].value = kept
# the rig's head carries the avatar's identity detail (vertex_offsets), and reading the rig for a
# retarget that keeps its identity hands the tracker that same rest head
RESULT["avatar_offsets_max"] = float(np.abs(av.vertex_offsets).max())
RESULT["head_rest_offsets_err"] = float(np.abs(sread.read_rig(rig).head_rest - shaped - av.vertex_offsets).max())
# the driven LOD keys follow the head's keyed values
RESULT["driven_value"] = bpy.data.objects["Astro LOD2"].data.shape_keys.key_blocks["jawOpen"].value
# neck + global motion move the body like the backend (rigid blend of global and neck)
scene_.frame_set(1)
pose2 = np.zeros((5, 3), np.float32)
pose2[0] = (0.1, 0.3, 0.0)
pose2[1] = (0.0, -0.2, 0.1)
set_pose(rig, head, names, zero[0], pose2, np.array([0.01, 0.02, -0.005], np.float32))
bpy.context.view_layer.update()
got = positions(bpy.data.objects["Astro LOD0"])
exp = axes.points_to_blender(backend.avatar.pose(av, model, HP(av.params.shape, zero[0][None], pose2[None],
                                                               np.array([[0.01, 0.02, -0.005]], np.float32)), 0)[0])
b0 = av.part_slices(0)["body"]
RESULT["global_neck_body_err"] = float(np.abs(got[b0] - exp[b0]).max())
RESULT["global_neck_body_moved"] = float(np.abs(got[b0] - rest0[0][b0]).max())
n0 = bpy.data.objects["Astro LOD0"].omg_avatar.n_head
RESULT["global_neck_parts_err"] = float(np.abs(got[n0:] - exp[n0:]).max())
scene_.frame_set(5)

# -- LOD switching -------------------------------------------------------------------------------------
vis = {}
datablocks = lambda: (len(bpy.data.objects), len(bpy.data.meshes), len(bpy.data.node_groups))  # noqa: E731
RESULT["lod_switch_datablocks_before"] = datablocks()
for l in (0, 1, 2, 1):
    t0 = time.perf_counter()
    res = bpy.ops.omg_avatar.set_lod(lod=l, avatar=rig.name)
    dt = time.perf_counter() - t0
    vis[str(l)] = {"res": sorted(res), "visible": [k for k in (0, 1, 2) if not bpy.data.objects[f"Astro LOD{k}"].hide_viewport],
                   "render": [k for k in (0, 1, 2) if not bpy.data.objects[f"Astro LOD{k}"].hide_render],
                   "prop": rig.omg_avatar.lod, "seconds": dt}
RESULT["lod_switch"] = vis
RESULT["lod_switch_datablocks_after"] = datablocks()
rig.omg_avatar.lod = "2"  # the panel's property does the same
RESULT["prop_switch_visible"] = [k for k in (0, 1, 2) if not bpy.data.objects[f"Astro LOD{k}"].hide_viewport]
dg = bpy.context.evaluated_depsgraph_get()
RESULT["instances_lod2"] = sum(1 for inst in dg.object_instances
                               if inst.is_instance and inst.parent and inst.parent.original.name == "Astro LOD2")

# -- .ply export at the keyed pose (frame 5) vs the backend's export of the same pose -----------------------
bpy.context.view_layer.objects.active = bpy.data.objects["Astro LOD0"]
res = bpy.ops.omg_avatar.export_ply(filepath=OUT + "/blender_lod0.ply")
RESULT["export"] = sorted(res)
backend.avatar.write_ply(OUT + "/backend_lod0.ply", backend.avatar.posed_set(av, m0, params, 0))
backend.avatar.write_ply(OUT + "/backend_lod0_posedirs.ply", backend.avatar.posed_set(av, model, params, 0))
a = backend.avatar.read_ply(OUT + "/blender_lod0.ply")
b = backend.avatar.read_ply(OUT + "/backend_lod0.ply")
bp = backend.avatar.read_ply(OUT + "/backend_lod0_posedirs.ply")
from plyfile import PlyData
RESULT["ply_props"] = [PlyData.read(OUT + "/blender_lod0.ply")["vertex"].data.dtype.names,
                       PlyData.read(OUT + "/backend_lod0.ply")["vertex"].data.dtype.names]
RESULT["ply_err"] = {k: float(np.abs(getattr(a, k) - getattr(b, k)).max())
                     for k in ("means", "quats", "scales", "opacities", "colors")}
RESULT["ply_err_posedirs"] = float(np.abs(a.means - bp.means).max())
RESULT["ply_err_other"] = {k: float(np.abs(getattr(a, k) - getattr(bp, k)).max())
                           for k in ("quats", "scales", "opacities", "colors")}
RESULT["ply_n"] = [len(a), len(b)]
# import the exported file back: same Gaussians, now a standalone object
res = bpy.ops.omg_avatar.import_ply(filepath=OUT + "/blender_lod0.ply")
imp = bpy.context.object
RESULT["import"] = sorted(res)
RESULT["import_obj"] = [imp.name, len(imp.data.vertices), [m.type for m in imp.modifiers]]
RESULT["roundtrip_err"] = float(np.abs(axes.points_to_model(positions(imp)) - a.means).max())
bpy.data.objects.remove(imp)

# -- robustness: cancel, failure, rollback, unique names -------------------------------------------------
build_mod = _imp(PKG + ".operators.build")
jobs = _imp(PKG + ".omg_blender_addon.jobs")
req = build_mod.BuildRequest(photo=photo, name="Astro", lods=(0,), refine=False,
                             avatar_path=OUT + "/cancelled.omgavatar")
c0 = counts()
job = jobs.BackgroundJob(build_mod.build_work(req))
job.start()
job.cancel()
job.join()
RESULT["cancel"] = {"cancelled": job.cancelled, "result": job.result is None, "error": job.error,
                    "unchanged": counts() == c0, "file": __import__("os").path.exists(OUT + "/cancelled.omgavatar")}
# a photo without a face: the operator fails cleanly and adds nothing
img = bpy.data.images.new("gray", 256, 256)
img.pixels.foreach_set(np.full(256 * 256 * 4, 0.5, np.float32))
img.filepath_raw = OUT + "/gray.png"
img.file_format = "PNG"
img.save()
bpy.data.images.remove(img)
c0 = counts()
try:
    res = bpy.ops.omg_avatar.build_from_photo(filepath=OUT + "/gray.png", name="NoFace", lods=(0, -1, -1),
                                              refine=False)
except RuntimeError as exc:  # an ERROR report raises from bpy.ops in scripts
    res = {"CANCELLED"}
    RESULT["noface_message"] = str(exc)[:300]
RESULT["noface"] = {"res": sorted(res), "unchanged": counts() == c0}
try:
    bpy.ops.omg_avatar.build_from_photo(filepath=OUT + "/missing.png", lods=(0, -1, -1), refine=False)
    RESULT["missing"] = "no error"
except RuntimeError as exc:
    RESULT["missing"] = str(exc)[:300]
# two photos selected together: the multi-view build (the sample and its mirror image: another yaw)
src = bpy.data.images.load(PHOTO)
w, h = src.size
px = np.empty(w * h * 4, np.float32)
src.pixels.foreach_get(px)
mirror = bpy.data.images.new("mirror", w, h)
mirror.pixels.foreach_set(np.ascontiguousarray(px.reshape(h, w, 4)[:, ::-1]).ravel())
mirror.filepath_raw = OUT + "/mirror.png"
mirror.file_format = "PNG"
mirror.save()
bpy.data.images.remove(mirror)
bpy.data.images.remove(src)
import shutil
shutil.copy(PHOTO, OUT + "/front.png")
res = bpy.ops.omg_avatar.build_from_photo(files=[{"name": "front.png"}, {"name": "mirror.png"}], directory=OUT,
                                          filepath=OUT + "/front.png", name="Multi", lods=(0, -1, -1),
                                          refine=False)
multi = bpy.data.objects.get("Multi Rig")
RESULT["multiview"] = {"res": sorted(res), "rig": multi is not None,
                       "views": None if multi is None else multi.get("omg_views", None),
                       "lod0": "Multi LOD0" in bpy.data.objects}
# an image-sequence folder picked as a clip (the file browser's "dir/" with no file): a multi-view build;
# its frames: the built avatar rendered by the backend splatter with the head turned -20, 0, +20 deg
import copy as _copy, os
os.makedirs(OUT + "/seq")
_render = _imp(PKG + ".backend.render")
_rest = av.rest_set(2)
for i, yaw in enumerate((-20.0, 0.0, 20.0)):
    _p = _copy.deepcopy(av.params.frame(0))
    _p.pose[0, 1, 1] += np.radians(yaw)  # the neck's rotation about the vertical axis
    _res = _render.splat(backend.avatar.pose(av, model, _p, 2), _rest.quats, _rest.scales, _rest.opacities,
                         _rest.colors, av.camera.resized(320, 320), background=np.ones(3, np.float32), backend="cpu")
    _render.save_png(OUT + f"/seq/frame_{i}.png", _res.image[0])
# views only from frames 1..2, anchored on frame 2 (as the CLI's --views-from 1:2 --anchor 2)
res = bpy.ops.omg_avatar.build_from_photo(filepath=OUT + "/seq/", name="Seq", views=2, views_start=1, views_end=2,
                                          anchor=2, lods=(0, -1, -1), refine=False)
seq = bpy.data.objects.get("Seq Rig")
RESULT["sequence"] = {"res": sorted(res), **{k: None if seq is None else seq.get("omg_" + k, None)
                                             for k in ("views", "photo", "view_labels", "anchor", "built_from")}}
RESULT["sequence_bad"] = {}
for bad in ({"views_start": 2, "views_end": 1}, {"views_start": 1, "anchor": 0}, {"views_start": 1, "name": "One",
            "filepath": OUT + "/front.png"}, {"anchor": 0, "filepath": OUT + "/front.png"}):
    c0 = counts()
    try:
        bpy.ops.omg_avatar.build_from_photo(**{"filepath": OUT + "/seq/", "views": 2, "lods": (0, -1, -1),
                                               "refine": False, **bad})
        RESULT["sequence_bad"][str(sorted(bad))] = ["no error", counts() == c0]
    except RuntimeError as exc:
        RESULT["sequence_bad"][str(sorted(bad))] = [str(exc)[:300], counts() == c0]
os.makedirs(OUT + "/empty_seq")
c0 = counts()
try:
    bpy.ops.omg_avatar.build_from_photo(filepath=OUT + "/empty_seq/", lods=(0, -1, -1), refine=False)
    RESULT["empty_seq"] = "no error"
except RuntimeError as exc:
    RESULT["empty_seq"] = str(exc)[:300]
RESULT["empty_seq_unchanged"] = counts() == c0
# the same name again: new unique names, the first avatar untouched
data = build_mod.build_work(req)(backend.progress.Progress())
c0 = counts()
rig2 = scene.create_avatar(bpy.context, data)
RESULT["second"] = {"rig": rig2.name, "coll": rig2.users_collection[0].name,
                    "objects": sorted(o.name for o in rig2.users_collection[0].objects),
                    "first_intact": sorted(o.name for o in coll.objects) == RESULT["collection_objects"],
                    "first_lod0_verts": len(bpy.data.objects["Astro LOD0"].data.vertices)}
# a failure half-way through creating objects removes everything created so far
c1 = counts()
broken = copy.copy(data)
broken.lods = {0: copy.copy(data.lods[0])}
broken.lods[0].columns = {k: v for k, v in data.lods[0].columns.items() if k != "rot_3"}
try:
    scene.create_avatar(bpy.context, broken)
    RESULT["rollback"] = "no error"
except KeyError:
    RESULT["rollback"] = {"unchanged": counts() == c1}

# -- save -------------------------------------------------------------------------------------------------------
scene_.frame_set(5)
RESULT["saved_positions_lod1"] = positions(bpy.data.objects["Astro LOD1"]).tolist()[:50]
bpy.ops.wm.save_as_mainfile(filepath=OUT + "/avatar.blend")
import os
RESULT["blend_mb"] = os.path.getsize(OUT + "/avatar.blend") / 1e6
"""

REOPEN = """
import addon_utils, importlib
addon_utils.enable(PKG, default_set=True)
RESULT["auto_exec"] = bpy.context.preferences.filepaths.use_scripts_auto_execute
bpy.ops.wm.open_mainfile(filepath=OUT + "/avatar.blend", load_ui=False)
""" + HELPERS + """
rig = bpy.data.objects["Astro Rig"]
head = bpy.data.objects["Astro Head"]
lod1 = bpy.data.objects["Astro LOD1"]
RESULT["roles"] = [rig.omg_avatar.role, head.omg_avatar.role, lod1.omg_avatar.role, lod1.omg_avatar.rig.name]
RESULT["attrs"] = sorted(a.name for a in lod1.data.attributes if not a.name.startswith(".") and a.name != "position")
RESULT["keys"] = len(lod1.data.shape_keys.key_blocks)
bpy.context.scene.frame_set(5)
RESULT["positions_lod1"] = positions(lod1).tolist()[:50]
RESULT["driven_value"] = bpy.data.objects["Astro LOD2"].data.shape_keys.key_blocks["jawOpen"].value
RESULT["corrective_value"] = head.data.shape_keys.key_blocks["pose_jaw_21"].value  # keyed jaw 0.25 rad
# drivers still follow the head after reopening: change the head key (frame 1 has no expression)
bpy.context.scene.frame_set(1)
before = positions(lod1)
fc = head.data.shape_keys.animation_data.action
head.data.shape_keys.animation_data.action = None  # unkeyed: set values by hand
head.data.shape_keys.key_blocks["mouthSmileRight"].value = 1.0
bpy.context.view_layer.update()
RESULT["reopen_moved"] = float(np.abs(positions(lod1) - before).max())
# the shown LOD is evaluated by the depsgraph, which writes driven values back to the original key
RESULT["driver_follow"] = bpy.data.objects["Astro LOD2"].data.shape_keys.key_blocks["mouthSmileRight"].value
# the parts' clamped keys' drivers (max(head - start, 0)) run without auto-run too
lod2 = bpy.data.objects["Astro LOD2"]
head.data.shape_keys.key_blocks["mouthFunnel"].value = 1.0
bpy.context.view_layer.update()
i = list(lod2["omg_clamped_exprs"]).index("mouthFunnel")
RESULT["clamped_follow"] = [lod2.data.shape_keys.key_blocks[lod2["omg_clamped"][i]].value,
                            1.0 - float(lod2["omg_clamped_starts"][i])]
res = bpy.ops.omg_avatar.set_lod(lod=0, avatar="Astro Rig")
RESULT["lod_after_reopen"] = [sorted(res), [k for k in (0, 1, 2) if not bpy.data.objects[f"Astro LOD{k}"].hide_viewport]]
"""


def _child(body: str, zip_path: Path, out: Path, photo: Path | None, setup: bool) -> str:
    head = f"ZIP = {str(zip_path)!r}\nPKG = {PKG!r}\nOUT = {str(out)!r}\nPHOTO = {str(photo)!r}\n"
    head += f"AVATAR = {str(out / 'avatar.omgavatar')!r}\n"
    if setup:
        head += SETUP + HELPERS
    return head + textwrap.dedent(body) + "\nemit()\n"


@pytest.fixture(scope="module")
def built(addon_zip: Path, astronaut_path: Path, tmp_path_factory) -> tuple[dict, Path, Path]:
    tmp = tmp_path_factory.mktemp("build_avatar")
    out = tmp / "out"
    out.mkdir()
    child = run_isolated(_child(BUILD, addon_zip, out, astronaut_path, True), tmp, timeout=600, keep_install=True)
    assert child.returncode == 0, child.stderr[-6000:]
    return child.result, tmp, out


def test_build_objects_rig_and_shape_keys(built) -> None:
    r, _, _ = built
    assert r["build"] == ["FINISHED"]
    assert r["collection_objects"] == ["Astro Head", "Astro LOD0", "Astro LOD1", "Astro LOD2", "Astro Rig"]
    assert r["bones"] == ["global", "neck", "jaw", "eye_L", "eye_R"]
    assert r["bone_parents"] == [None, "global", "neck", "neck", "neck"]
    assert r["joint_err"] < 1e-6
    names = r["model_expr_names"]
    assert len(names) == 52 and names[0] == "eyeBlinkLeft" and names[-1] == "tongueOut"  # stand-in: ARKit-52
    # stand-in: one non-zero posedirs column (jaw, element (2, 1)) -> one corrective key
    assert r["pose_columns"] == [9 + 7]
    assert r["head_keys"] == ["Basis"] + names + ["pose_jaw_21"]
    (path, kind, expr, simple, valid), = r["head_drivers"]
    assert path == 'key_blocks["pose_jaw_21"].value' and kind == "SCRIPTED" and simple and valid, r["head_drivers"]
    assert r["head_groups"] == r["bones"]
    assert r["head_mods"] == ["ARMATURE"]
    assert r["head_verts"] == r["model_verts"]
    print(f"build {r['build_seconds']:.1f} s (install {r['install_seconds']:.1f} s); bpy import per LOD "
          f"{r['import_seconds']}, arrays per LOD {r['prepare_seconds']}; .blend {r['blend_mb']:.1f} MB")


def test_gaussian_lods_counts_attributes_and_drivers(built) -> None:
    r, _, _ = built
    expected_attrs = sorted(["f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                             "rot_0", "rot_1", "rot_2", "rot_3"])
    n_expr = len(r["model_expr_names"])
    prev_head = 0
    for l in ("0", "1", "2"):
        info = r["lods"][l]
        assert info["verts"] == r["avatar_counts"][l] == info["n_head"] + info["n_parts"]
        assert info["n_head"] == r["avatar_head"][l] and info["n_head"] > 3 * prev_head  # ~4x per level
        prev_head = info["n_head"]
        assert dict(zip(info["parts"], info["part_counts"])) == r["avatar_parts"]
        assert r["avatar_parts"]["body"] > 1000
        assert info["parts"][-7:] == ["teeth_upper", "teeth_lower", "gums", "tongue", "cavity", "eye_L", "eye_R"]
        # loose vertices = Gaussian centres; the only edges join the head's LOD-0 rows (the display's
        # per-frame growth, gaussian_display._growth)
        assert info["faces"] == 0 and info["edges"] > 0
        assert info["edge_top"] < r["avatar_head"]["0"]
        assert {"omg_grow_allowance", "omg_grow_rest_length", "omg_grow_parent_0", "omg_grow_weight_0"} <= set(info["attrs"])
        assert set(expected_attrs) <= set(info["attrs"]), info["attrs"]
        # the mouth parts' clamped keys (the funnel's and the lower lip's drop beyond the photo's own
        # values) follow the expressions and correctives, driven by max(head - start, 0)
        assert {k.split(" beyond ")[0] for k in info["clamped"]} == {"mouthFunnel", "mouthLowerDownLeft",
                                                                      "mouthLowerDownRight"}
        assert info["keys"] == ["Basis"] + r["model_expr_names"] + ["pose_jaw_21"] + info["clamped"]
        assert info["groups"] == r["bones"]
        assert info["mods"] == ["ARMATURE", "NODES"]
        assert info["drivers"] == n_expr + 1 + len(info["clamped"]) and info["driver_valid"]
        assert info["driver_types"] == ["AVERAGE", "SCRIPTED"] and info["scripted_simple"]
        assert info["scripted"] == sorted(f'key_blocks["{k}"].value' for k in info["clamped"])
        assert info["finite"] and info["quat_norm_err"] < 1e-5
        rng = info["rng"]
        dc_max = 0.5 / 0.28209479177387814 + 1e-4  # colours in [0, 1]
        for i in range(3):
            assert -dc_max <= rng[f"f_dc_{i}"][0] <= rng[f"f_dc_{i}"][1] <= dc_max
            # log scales: Gaussians between 0.01 mm and 5 cm
            assert -11.6 < rng[f"scale_{i}"][0] <= rng[f"scale_{i}"][1] < -3.0
        assert -14.0 < rng["opacity"][0] <= rng["opacity"][1] < 14.0  # logit of (1e-6, 1 - 1e-6)
        assert rng["opacity"][1] > 0.0  # some Gaussians are more opaque than not
        assert info["rest_err"] < 1e-6
    assert r["rig_lod"] == "2" and r["visible_after_build"] == [2]
    assert r["instances_lod2"] >= 0.5 * r["avatar_counts"]["2"]  # one splat per Gaussian above Min Opacity


def test_keyframed_rig_moves_gaussians_like_backend_pose(built) -> None:
    r, _, _ = built
    for l, p in r["posing"].items():
        assert p["moved"] > 0.01, p  # the jaw/expression keys really move the Gaussians (> 1 cm)
        assert p["err"] < 2.5e-3, (l, p)  # see module docstring: skinning/subdivision order
        assert p["err"] < 0.1 * p["backend_moved"], (l, p)
        for name, (err, moved) in p["parts"].items():
            assert err < 1e-5, (l, name, p)  # parts: Blender's armature = the backend's part skinning
        assert p["parts"]["body"][1] < 1e-6, (l, p)  # the jaw never moves the body
        # the imported mouth follows the jaw bone: lower teeth, tongue (jaw), upper teeth stay
        assert p["parts"]["teeth_lower"][1] > 5e-3 and p["parts"]["tongue"][1] > 5e-3, (l, p)
        assert p["parts"]["teeth_upper"][1] < 1e-6 and p["parts"]["eye_L"][1] < 1e-6, (l, p)
    # tongueOut 0.6 of the keyed pose moves the tongue (> 5 mm) and Blender's tongue matched (above);
    # the scene read back for previews carries the parts' keys
    assert r["tongue_out_moves"] > 5e-3
    assert "tongueOut" in r["read_back_part_shapes"]["tongue"] and "jawOpen" in r["read_back_part_shapes"]["teeth_lower"]
    assert r["read_back_tongue_err"] < 1e-5
    views = r["read_back_views"]
    assert views["n"] > 1000 and views["back"] == views["n"] and views["err"] < 1e-6, views
    assert "Astro LOD2" in views["edited"] and "grow factors must lie in [1, 1000]" in views["edited"], views
    assert r["avatar_offsets_max"] > 1e-4   # the build moved the head onto the photo's landmarks
    assert r["head_rest_offsets_err"] < 1e-6
    assert r["posing"]["0"]["err"] < 1e-5  # LOD 0: exact, pose correctives included
    assert r["posing"]["0"]["err_no_posedirs"] > 1e-3  # ... and they matter
    assert r["driven_value"] == pytest.approx(0.8, abs=1e-6)
    assert r["global_neck_body_moved"] > 0.01
    assert r["global_neck_body_err"] < 1e-5 and r["global_neck_parts_err"] < 1e-5


def test_lod_switching(built) -> None:
    r, _, _ = built
    for l, v in r["lod_switch"].items():
        assert v["res"] == ["FINISHED"]
        assert v["visible"] == [int(l)] and v["render"] == [int(l)] and v["prop"] == l
    # switching only shows and hides the imported LODs: nothing is imported or rebuilt (its time is
    # printed, not gated: a loaded machine once took 0.502 s)
    assert r["lod_switch_datablocks_after"] == r["lod_switch_datablocks_before"]
    print("LOD switch seconds:", {l: round(v["seconds"], 3) for l, v in r["lod_switch"].items()})
    assert r["prop_switch_visible"] == [2]


def test_ply_export_matches_backend_export(built) -> None:
    r, _, _ = built
    assert r["export"] == ["FINISHED"]
    assert r["ply_props"][0] == r["ply_props"][1]
    assert r["ply_n"][0] == r["ply_n"][1]
    err = r["ply_err"]
    assert r["ply_err_posedirs"] < 1e-5  # LOD 0 at the keyed pose, the backend's own export
    assert err["means"] > 1e-3  # (a backend model without correctives would not match)
    o = r["ply_err_other"]
    assert o["quats"] < 1e-5 and o["scales"] < 1e-6 and o["colors"] < 1e-5 and o["opacities"] < 1e-4, o
    assert r["import"] == ["FINISHED"]
    assert r["import_obj"][1] == r["ply_n"][0] and r["import_obj"][2] == ["NODES"]
    assert r["roundtrip_err"] < 1e-6


def test_cancel_failure_rollback_and_unique_names(built) -> None:
    r, _, _ = built
    c = r["cancel"]
    assert c["cancelled"] and c["result"] and c["error"] is None and c["unchanged"]
    assert not c["file"]  # the requested .omgavatar is not written by a cancelled build
    assert r["noface"]["res"] == ["CANCELLED"] and r["noface"]["unchanged"]
    assert "missing.png" in r["missing"]
    m = r["multiview"]
    assert m["res"] == ["FINISHED"] and m["rig"] and m["lod0"] and m["views"] == 2, m
    q = r["sequence"]
    assert q["res"] == ["FINISHED"] and q["views"] == 2 and q["photo"] == "seq", q
    # the operator's frame range and anchor reach the build; the rig records its views and clip
    assert sorted(q["view_labels"].split("; ")) == ["seq frame 1", "seq frame 2"], q
    assert q["anchor"] == "seq frame 2" and q["built_from"] == "seq", q
    bad = r["sequence_bad"]
    assert all(unchanged for _, unchanged in bad.values()), bad
    msgs = list(bad.values())
    assert "empty frame range 2..1" in msgs[0][0], bad
    assert "anchor frame 0 lies outside the frames views are picked from (1..the last)" in msgs[1][0], bad
    assert "front.png: Views From/To pick frames of a clip" in msgs[2][0], bad
    assert "the anchor chooses among the views of a multi-view build" in msgs[3][0], bad
    assert "empty_seq" in r["empty_seq"] and "no image files" in r["empty_seq"] and r["empty_seq_unchanged"]
    s = r["second"]
    assert s["rig"] == "Astro.001 Rig" and s["coll"] == "Astro.001"
    assert s["objects"] == ["Astro.001 Head", "Astro.001 LOD0", "Astro.001 Rig"]
    assert s["first_intact"] and s["first_lod0_verts"] == r["lods"]["0"]["verts"]
    assert r["rollback"] == {"unchanged": True}


def test_save_and_reopen_keeps_the_avatar_working(built, addon_zip: Path, astronaut_path: Path) -> None:
    r, tmp, out = built
    child = run_isolated(_child(REOPEN, addon_zip, out, None, False), tmp, timeout=300)
    assert child.returncode == 0, child.stderr[-6000:]
    q = child.result
    assert q["auto_exec"] is False  # drivers must work without Python auto-run
    assert q["roles"] == ["RIG", "HEAD", "GAUSSIANS", "Astro Rig"]
    assert {"f_dc_0", "opacity", "scale_2", "rot_3"} <= set(q["attrs"])
    # Basis, expressions, pose_jaw_21, the parts' clamped keys
    assert q["keys"] == len(r["model_expr_names"]) + 2 + len(r["lods"]["1"]["clamped"])
    assert q["clamped_follow"][0] == pytest.approx(q["clamped_follow"][1], abs=1e-6)
    assert q["clamped_follow"][0] > 0.3
    import math

    assert q["corrective_value"] == pytest.approx(math.sin(0.25), abs=1e-5)  # 2(yz + wx) = sin(angle)
    import numpy as np

    assert np.abs(np.array(q["positions_lod1"]) - np.array(r["saved_positions_lod1"])).max() < 1e-6
    assert q["driven_value"] == pytest.approx(0.8, abs=1e-6)
    assert q["driver_follow"] == pytest.approx(1.0)
    assert q["reopen_moved"] > 1e-3
    assert q["lod_after_reopen"] == [["FINISHED"], [0]]
