"""Sidebar panels (View3D > Sidebar > OMG Avatar)."""

from __future__ import annotations

import bpy


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
        _operator_button(layout, "omg_avatar.build_from_photo", "Build Avatar from Photo", "IMPORT")


class OMG_AVATAR_PT_lod(_OMGPanel, bpy.types.Panel):
    bl_idname = "OMG_AVATAR_PT_lod"
    bl_label = "Level of Detail"

    def draw(self, context):
        _operator_button(self.layout, "omg_avatar.set_lod", "Set LOD", "MOD_DECIM")


class OMG_AVATAR_PT_retarget(_OMGPanel, bpy.types.Panel):
    bl_idname = "OMG_AVATAR_PT_retarget"
    bl_label = "Retarget Video"

    def draw(self, context):
        _operator_button(self.layout, "omg_avatar.retarget_video", "Retarget Video", "SEQUENCE")


class OMG_AVATAR_PT_preview(_OMGPanel, bpy.types.Panel):
    bl_idname = "OMG_AVATAR_PT_preview"
    bl_label = "Render Preview"

    def draw(self, context):
        layout = self.layout
        _operator_button(layout, "omg_avatar.render_preview", "Render Preview", "RENDER_ANIMATION")
        layout.operator("omg_avatar.check_backend", icon="INFO")


def _operator_button(layout, idname: str, text: str, icon: str) -> None:
    """Draw the operator's button, or a disabled label while that feature is not in this build."""
    module, _, name = idname.partition(".")
    if hasattr(getattr(bpy.ops, module), name) and getattr(getattr(bpy.ops, module), name).idname_py():
        try:
            layout.operator(idname, text=text, icon=icon)
            return
        except Exception:  # noqa: BLE001 - unknown operator: fall through to the label
            pass
    layout.label(text=f"{text}: not available in this build", icon="ERROR")


CLASSES = (OMG_AVATAR_PT_build, OMG_AVATAR_PT_lod, OMG_AVATAR_PT_retarget, OMG_AVATAR_PT_preview)
