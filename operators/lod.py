"""LOD switching: show one Gaussian LOD of an avatar and hide the others (instant, no backend)."""

from __future__ import annotations

import bpy
from bpy.props import IntProperty, StringProperty


class OMG_AVATAR_OT_set_lod(bpy.types.Operator):
    """Show one level of detail of the avatar and hide its other Gaussian objects"""

    bl_idname = "omg_avatar.set_lod"
    bl_label = "Set Avatar LOD"
    bl_options = {"REGISTER", "UNDO"}

    lod: IntProperty(name="LOD", default=0, min=0, max=2)
    avatar: StringProperty(name="Avatar", default="",
                           description="The avatar's name, or its rig / head / LOD object (default: the active object's)")

    def execute(self, context):
        from ..omg_blender_addon.scene_write import lod_objects
        from ..omg_blender_addon.scene_read import SceneError, find_rig

        try:
            rig = find_rig(self.avatar, context)
        except SceneError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        objs = lod_objects(rig)
        if self.lod not in objs:
            self.report({"ERROR"}, f"{rig.name}: LOD {self.lod} was not imported (has {sorted(objs)})")
            return {"CANCELLED"}
        rig.omg_avatar.lod = str(self.lod)  # the property's update switches visibility
        s = objs[self.lod].omg_avatar
        self.report({"INFO"}, f"{rig.name}: LOD {self.lod} ({s.n_head + s.n_parts:,} Gaussians)")
        return {"FINISHED"}


CLASSES = (OMG_AVATAR_OT_set_lod,)
