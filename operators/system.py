"""Diagnostics: which backend pieces import inside Blender and which compute device is used."""

from __future__ import annotations

import bpy


def backend_report() -> dict[str, str]:
    """Versions of the bundled backend and its heavy dependencies, as imported inside Blender."""
    from .. import backend

    report = {"backend": backend.__version__}
    import numpy
    import torch

    report["numpy"] = numpy.__version__
    report["torch"] = torch.__version__
    report["torch_path"] = torch.__file__
    report["cuda"] = "available" if torch.cuda.is_available() else "not available"
    return report


class OMG_AVATAR_OT_check_backend(bpy.types.Operator):
    """Import the bundled backend (torch, numpy) and report versions and the compute device"""

    bl_idname = "omg_avatar.check_backend"
    bl_label = "Check Backend"
    bl_options = {"REGISTER"}

    def execute(self, context):
        try:
            report = backend_report()
        except ImportError as exc:
            self.report({"ERROR"}, f"OMG Avatar backend cannot load: {exc}")
            return {"CANCELLED"}
        context.window_manager["omg_avatar_backend_report"] = report
        self.report({"INFO"}, ", ".join(f"{k} {v}" for k, v in report.items() if k != "torch_path"))
        return {"FINISHED"}


CLASSES = (OMG_AVATAR_OT_check_backend,)
