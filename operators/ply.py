"""Import/export standard 3DGS .ply files for any Gaussian object (avatar LOD or imported cloud)."""

from __future__ import annotations

from pathlib import Path

import bpy
from bpy.props import StringProperty
from bpy_extras.io_utils import ExportHelper

from ..omg_blender_addon import jobs


class OMG_AVATAR_OT_import_ply(jobs.FileJobOperator, bpy.types.Operator):
    """Import a 3D Gaussian Splatting .ply as a Gaussian object with the splat display"""

    bl_idname = "omg_avatar.import_ply"
    bl_label = "Import Gaussian Splat (.ply)"
    bl_options = {"REGISTER", "UNDO"}
    job_title = "Import .ply"

    filepath: StringProperty(name="File", subtype="FILE_PATH", default="")
    filter_glob: StringProperty(default="*.ply", options={"HIDDEN"})

    def prepare(self, context):
        path = bpy.path.abspath(self.filepath)
        if not path:
            self.report({"ERROR"}, "choose a .ply file")
            return None

        def work(progress):
            from ..omg_blender_addon.ply_io import load_ply

            progress.report(0.1, f"reading {Path(path).name}")
            return load_ply(path)

        return work

    def apply(self, context, result) -> None:
        from ..omg_blender_addon.ply_io import create_ply_object

        positions, columns = result
        obj = create_ply_object(context, Path(self.filepath).stem, positions, columns)
        self.report({"INFO"}, f"{obj.name}: {len(positions):,} Gaussians")


class OMG_AVATAR_OT_export_ply(bpy.types.Operator, ExportHelper):
    """Export the active Gaussian object at the current frame's pose as a standard 3DGS .ply"""

    bl_idname = "omg_avatar.export_ply"
    bl_label = "Export Gaussian Splat (.ply)"
    bl_options = {"REGISTER"}

    filename_ext = ".ply"
    filter_glob: StringProperty(default="*.ply", options={"HIDDEN"})
    object_name: StringProperty(name="Object", default="",
                           description="Gaussian object or avatar name to export (default: the active object, "
                                       "or the shown LOD of the active avatar)")

    @staticmethod
    def _target(context, name: str):
        """The Gaussian object to export: a Gaussian object by name, else the shown LOD of the avatar
        ``name`` names (scene_read.rig_by_name; SceneError when it names none)."""
        from ..omg_blender_addon.scene_write import avatar_rig, is_gaussian_object, lod_objects
        from ..omg_blender_addon.scene_read import rig_by_name

        obj = bpy.data.objects.get(name) if name else context.object
        if is_gaussian_object(obj):
            return obj
        rig = rig_by_name(name) if name else avatar_rig(obj)
        if rig is not None:
            return lod_objects(rig).get(int(rig.omg_avatar.lod))
        return None

    def execute(self, context):
        from ..backend.errors import OMGError
        from ..omg_blender_addon.ply_io import export_ply
        from ..omg_blender_addon.scene_read import SceneError

        try:
            obj = self._target(context, self.object_name)
        except SceneError as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        if obj is None:
            self.report({"ERROR"}, "select a Gaussian object (an avatar LOD or an imported .ply)")
            return {"CANCELLED"}
        if not self.filepath:
            self.report({"ERROR"}, "choose where to write the .ply")
            return {"CANCELLED"}
        try:
            path = export_ply(obj, bpy.path.abspath(self.filepath), context.evaluated_depsgraph_get())
        except (OMGError, OSError) as exc:
            self.report({"ERROR"}, str(exc))
            return {"CANCELLED"}
        self.report({"INFO"}, f"{obj.name}: {len(obj.data.vertices):,} Gaussians -> {path}")
        return {"FINISHED"}


CLASSES = (OMG_AVATAR_OT_import_ply, OMG_AVATAR_OT_export_ply)
