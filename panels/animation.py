"""Retarget Video and Render Preview panels (View3D > Sidebar > OMG Avatar).

The panels' inputs live in ``Scene.omg_avatar_animation`` (omg_blender_addon/properties.py); the buttons
pass them to the operators, which do the work (operators/retarget.py, operators/preview.py).
"""

from __future__ import annotations

import bpy

from .common import OMGPanel as _OMGPanel


def _rig_label(layout, context):
    from ..omg_blender_addon.scene_write import avatar_rig

    rig = avatar_rig(context.object)
    if rig is None:
        layout.label(text="Select an avatar (its rig, head or Gaussians)", icon="INFO")
    else:
        layout.label(text=rig.name, icon="ARMATURE_DATA")
    return rig


def _options(op, s) -> None:
    for name in ("scene_start", "apply_expression", "apply_jaw", "apply_eyes", "apply_neck", "apply_global",
                 "match_scene_fps", "frame_start", "frame_end", "key_tolerance"):
        setattr(op, name, getattr(s, name))


class OMG_AVATAR_PT_retarget(_OMGPanel, bpy.types.Panel):
    bl_idname = "OMG_AVATAR_PT_retarget"
    bl_label = "Retarget Video"

    def draw(self, context):
        s = context.scene.omg_avatar_animation
        layout = self.layout
        rig = _rig_label(layout, context)
        layout.prop(s, "video_path")
        row = layout.row(align=True)
        row.prop(s, "frame_start")
        row.prop(s, "frame_end")
        layout.prop(s, "scene_start")
        row = layout.row(align=True)
        row.prop(s, "smoothing")
        row.prop(s, "key_tolerance")
        col = layout.column(heading="Apply", align=True)
        row = col.row(align=True)
        for name in ("apply_expression", "apply_jaw", "apply_eyes"):
            row.prop(s, name, toggle=True)
        row = col.row(align=True)
        row.prop(s, "apply_neck", toggle=True)
        row.prop(s, "apply_global", toggle=True)
        layout.prop(s, "match_scene_fps")
        layout.prop(s, "identity")
        layout.prop(s, "render_pass")
        layout.prop(s, "save_track")
        sub = layout.column()
        sub.enabled = rig is not None and bool(s.video_path)
        op = sub.operator("omg_avatar.retarget_video", text="Retarget Video", icon="SEQUENCE")
        op.filepath = bpy.path.abspath(s.video_path) if s.video_path else ""
        op.avatar = rig.name if rig is not None else ""
        op.smoothing = s.smoothing
        op.track_path = s.save_track
        op.identity = s.identity
        op.render_pass = s.render_pass
        _options(op, s)
        layout.separator()
        layout.prop(s, "track_path")
        sub = layout.column()
        sub.enabled = rig is not None and bool(s.track_path)
        op = sub.operator("omg_avatar.apply_track", text="Apply Track", icon="ACTION")
        op.filepath = bpy.path.abspath(s.track_path) if s.track_path else ""
        op.avatar = rig.name if rig is not None else ""
        _options(op, s)
        report = context.window_manager.get("omg_avatar_retarget_report")
        if report:
            layout.label(text=f"Last: {report['frames']} frames, {report['throughput_fps']:.1f} frames/s",
                         icon="TIME")


class OMG_AVATAR_UL_capture_mapping(bpy.types.UIList):
    """One row per mapping line: source -> target x gain."""

    def draw_item(self, context, layout, data, item, icon, active_data, active_propname, index=0):
        row = layout.row(align=True)
        row.prop(item, "source", text="", emboss=False)
        row.prop(item, "target", text="")
        row.prop(item, "gain", text="")


class OMG_AVATAR_PT_face_capture(_OMGPanel, bpy.types.Panel):
    bl_idname = "OMG_AVATAR_PT_face_capture"
    bl_label = "Face Capture"

    def draw(self, context):
        s = context.scene.omg_avatar_animation
        layout = self.layout
        rig = _rig_label(layout, context)
        layout.prop(s, "capture_path")
        sub = layout.column()
        sub.enabled = rig is not None and bool(s.capture_path)
        op = sub.operator("omg_avatar.import_face_capture", text="Import Face Capture", icon="ACTION")
        op.filepath = bpy.path.abspath(s.capture_path) if s.capture_path else ""
        op.avatar = rig.name if rig is not None else ""
        _options(op, s)
        layout.label(text=f"Mapping ({len(s.capture_mapping) or 'defaults on first import'})")
        if len(s.capture_mapping):
            layout.template_list("OMG_AVATAR_UL_capture_mapping", "", s, "capture_mapping", s,
                                 "capture_mapping_index", rows=6)
        layout.operator("omg_avatar.reset_capture_mapping", icon="LOOP_BACK")


class OMG_AVATAR_PT_preview(_OMGPanel, bpy.types.Panel):
    bl_idname = "OMG_AVATAR_PT_preview"
    bl_label = "Render Preview"

    def draw(self, context):
        s = context.scene.omg_avatar_animation
        scene = context.scene
        layout = self.layout
        rig = _rig_label(layout, context)
        layout.prop(s, "preview_camera", expand=True)
        layout.prop(s, "preview_resolution")
        layout.prop(s, "preview_path")
        col = layout.column()
        col.enabled = rig is not None
        row = col.row(align=True)
        for text, start, end, icon in (("Frame Range", scene.frame_start, scene.frame_end, "RENDER_ANIMATION"),
                                       ("Current Frame", scene.frame_current, scene.frame_current, "RENDER_STILL")):
            op = row.operator("omg_avatar.render_preview", text=text, icon=icon)
            op.avatar = rig.name if rig is not None else ""
            op.frame_start, op.frame_end = start, end
            op.camera = s.preview_camera
            op.resolution = tuple(s.preview_resolution)
            op.filepath = s.preview_path
        report = context.window_manager.get("omg_avatar_preview_report")
        if report:
            layout.label(text=f"Last: {report['frames']} frames, {report['fps']:.2f} fps ({report['backend']})",
                         icon="TIME")
        layout.operator("omg_avatar.check_backend", icon="INFO")


CLASSES = (OMG_AVATAR_PT_retarget, OMG_AVATAR_UL_capture_mapping, OMG_AVATAR_PT_face_capture,
           OMG_AVATAR_PT_preview)
