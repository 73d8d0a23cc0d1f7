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
                           description="Rig object of the avatar (default: the active object's avatar)")

    def execute(self, context):
        from ..omg_blender_addon.scene_write import avatar_rig, lod_objects

        if self.avatar:
            rig = avatar_rig(bpy.data.objects.get(self.avatar))
        else:
            rig = avatar_rig(context.object)
        if rig is None:
            self.report({"ERROR"}, f"'{self.avatar or getattr(context.object, 'name', '')}' is not part of an OMG avatar")
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
