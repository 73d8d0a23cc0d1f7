"""Retarget Video and Render Preview panels (View3D > Sidebar > OMG Avatar).

The panels' inputs live in ``Scene.omg_avatar_animation`` (saved with the .blend); the buttons
pass them to the operators, which do the work (operators/retarget.py, operators/preview.py).
"""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, EnumProperty, FloatProperty, IntProperty, IntVectorProperty, PointerProperty, StringProperty

from .common import OMGPanel as _OMGPanel


class OMGAvatarAnimationSettings(bpy.types.PropertyGroup):
    """The Retarget / Preview panels' inputs (registered with the panels, stored per scene)."""

    video_path: StringProperty(name="Video", subtype="FILE_PATH", default="",
                               description="Driving video (mp4/mov/webm/mkv/gif) or a folder of numbered images")
    track_path: StringProperty(name="Track", subtype="FILE_PATH", default="",
                               description="Saved track (.npz) to apply without re-tracking")
    save_track: StringProperty(name="Save Track", subtype="FILE_PATH", default="",
                               description="Also save the video's track here (.npz; empty: don't)")
    frame_start: IntProperty(name="First", default=0, min=0, description="First source frame (0-based)")
    frame_end: IntProperty(name="Last", default=-1, min=-1, description="Last source frame (-1: the last)")
    scene_start: IntProperty(name="Scene Start", default=1, description="Scene frame of the first key")
    smoothing: FloatProperty(name="Smoothing", default=2.0, min=0.0, max=8.0,
                             description="0 off, 1 light, 2 default, 4 strong (fast motion is kept)")
    apply_expression: BoolProperty(name="Expression", default=True)
    apply_jaw: BoolProperty(name="Jaw", default=True)
    apply_eyes: BoolProperty(name="Eyes", default=True)
    apply_neck: BoolProperty(name="Neck", default=True)
    apply_global: BoolProperty(name="Head Motion", default=True)
    match_scene_fps: BoolProperty(name="Match Scene FPS", default=True,
                                  description="Use the video's frame rate (off: resample to the scene's)")
    preview_camera: EnumProperty(name="Camera", default="SOURCE", items=(
        ("SOURCE", "Source", "The avatar's photo camera"), ("SCENE", "Scene", "The scene's active camera")))
    preview_resolution: IntVectorProperty(name="Resolution", size=2, default=(512, 512), min=80, max=4096)
    preview_path: StringProperty(name="Output", subtype="DIR_PATH", default="",
                                 description="Folder for the frames and preview.mp4 (empty: //omg_preview)")

    @classmethod
    def register(cls) -> None:
        bpy.types.Scene.omg_avatar_animation = PointerProperty(type=cls)

    @classmethod
    def unregister(cls) -> None:
        del bpy.types.Scene.omg_avatar_animation


def _rig_label(layout, context):
    from ..omg_blender_addon.avatar_scene import avatar_rig

    rig = avatar_rig(context.object)
    if rig is None:
        layout.label(text="Select an avatar (its rig, head or Gaussians)", icon="INFO")
    else:
        layout.label(text=rig.name, icon="ARMATURE_DATA")
    return rig


def _options(op, s) -> None:
    for name in ("scene_start", "apply_expression", "apply_jaw", "apply_eyes", "apply_neck", "apply_global",
                 "match_scene_fps", "frame_start", "frame_end"):
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
        layout.prop(s, "smoothing")
        col = layout.column(heading="Apply", align=True)
        row = col.row(align=True)
        for name in ("apply_expression", "apply_jaw", "apply_eyes"):
            row.prop(s, name, toggle=True)
        row = col.row(align=True)
        row.prop(s, "apply_neck", toggle=True)
        row.prop(s, "apply_global", toggle=True)
        layout.prop(s, "match_scene_fps")
        layout.prop(s, "save_track")
        sub = layout.column()
        sub.enabled = rig is not None and bool(s.video_path)
        op = sub.operator("omg_avatar.retarget_video", text="Retarget Video", icon="SEQUENCE")
        op.filepath = bpy.path.abspath(s.video_path) if s.video_path else ""
        op.avatar = rig.name if rig is not None else ""
        op.smoothing = s.smoothing
        op.track_path = s.save_track
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


CLASSES = (OMGAvatarAnimationSettings, OMG_AVATAR_PT_retarget, OMG_AVATAR_PT_preview)
