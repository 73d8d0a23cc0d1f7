"""Sidebar panels (View3D > Sidebar > OMG Avatar): build an avatar, switch its LOD, .ply in/out."""

from __future__ import annotations

import bpy

from ..omg_blender_addon.properties import MULTIVIEW_OPTIONS
from .common import OMGPanel as _OMGPanel


class OMG_AVATAR_PT_build(_OMGPanel, bpy.types.Panel):
    bl_idname = "OMG_AVATAR_PT_build"
    bl_label = "Build Avatar"

    def draw(self, context):
        settings = context.scene.omg_avatar
        layout = self.layout
        layout.prop(settings, "photo_path")
        layout.prop(settings, "avatar_name")
        row = layout.row(align=True)
        row.prop(settings, "lod0", toggle=True)
        row.prop(settings, "lod1", toggle=True)
        row.prop(settings, "lod2", toggle=True)
        layout.prop(settings, "refine")
        box = layout.box()
        box.label(text="From a clip or several photos", icon="SEQUENCE")
        box.prop(settings, "views")
        row = box.row(align=True)
        row.prop(settings, "views_start")
        row.prop(settings, "views_end")
        box.prop(settings, "anchor")
        from ..omg_blender_addon.addon_id import addon_preferences

        prefs = addon_preferences(context)
        model = "FLAME" if prefs is not None and prefs.flame_path else "bundled stand-in"
        layout.label(text=f"Head model: {model} (see Preferences)", icon="USER")
        op = layout.operator("omg_avatar.build_from_photo", text="Build Avatar from Photo", icon="IMPORT")
        op.filepath = bpy.path.abspath(settings.photo_path) if settings.photo_path else ""
        op.name = settings.avatar_name
        op.refine = settings.refine
        op.lods = tuple(settings.lods() + [-1] * (3 - len(settings.lods())))
        for name in MULTIVIEW_OPTIONS:
            setattr(op, name, getattr(settings, name))


class OMG_AVATAR_PT_lod(_OMGPanel, bpy.types.Panel):
    bl_idname = "OMG_AVATAR_PT_lod"
    bl_label = "Level of Detail"

    def draw(self, context):
        from ..omg_blender_addon.scene_write import avatar_rig, lod_objects

        layout = self.layout
        rig = avatar_rig(context.object)
        if rig is None:
            layout.label(text="Select an avatar (its rig, head or Gaussians)", icon="INFO")
        else:
            layout.label(text=rig.name, icon="ARMATURE_DATA")
            objs = lod_objects(rig)
            row = layout.row(align=True)
            row.prop(rig.omg_avatar, "lod", expand=True)
            col = layout.column(align=True)
            for level in (0, 1, 2):
                obj = objs.get(level)
                if obj is None:
                    col.label(text=f"LOD {level}: not imported")
                    continue
                s = obj.omg_avatar
                icon = "HIDE_OFF" if not obj.hide_viewport else "HIDE_ON"
                col.label(text=f"LOD {level}: {s.n_head + s.n_parts:,} Gaussians "
                               f"({s.n_head:,} head + {s.n_parts:,} body, mouth, eyes)", icon=icon)
        row = layout.row(align=True)
        row.prop(context.scene.omg_avatar, "show_splats", toggle=True, icon="SHADING_RENDERED")
        row.operator("omg_avatar.render_splats", text="Render Splats", icon="RENDER_STILL")
        row = layout.row(align=True)
        row.operator("omg_avatar.import_ply", text="Import .ply", icon="IMPORT")
        row.operator("omg_avatar.export_ply", text="Export .ply", icon="EXPORT")


CLASSES = (OMG_AVATAR_PT_build, OMG_AVATAR_PT_lod)
