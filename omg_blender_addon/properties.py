"""Scene-level UI settings (what the panels edit and the operators read)."""

from __future__ import annotations

import bpy
from bpy.props import BoolProperty, PointerProperty, StringProperty


class OMGAvatarSceneSettings(bpy.types.PropertyGroup):
    photo_path: StringProperty(name="Photo", subtype="FILE_PATH", default="")
    avatar_name: StringProperty(name="Name", default="Avatar")
    lod0: BoolProperty(name="LOD 0", default=True)
    lod1: BoolProperty(name="LOD 1", default=True)
    lod2: BoolProperty(name="LOD 2", default=True)
    refine: BoolProperty(name="Refine", description="Short photometric refinement against the photo", default=True)


def register() -> None:
    bpy.utils.register_class(OMGAvatarSceneSettings)
    bpy.types.Scene.omg_avatar = PointerProperty(type=OMGAvatarSceneSettings)


def unregister() -> None:
    del bpy.types.Scene.omg_avatar
    bpy.utils.unregister_class(OMGAvatarSceneSettings)
