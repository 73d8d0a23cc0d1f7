"""bpy Operators (thin: validate input, start a backend job, report). Scripting API: ``bpy.ops.omg_avatar.*``."""

from __future__ import annotations

import bpy

from . import build, capture, lod, ply, preview, retarget, splats, system

_MODULES = (system, build, lod, ply, retarget, capture, preview, splats)


def _classes():
    return [cls for module in _MODULES for cls in module.CLASSES]


def register() -> None:
    for cls in _classes():
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_classes()):
        bpy.utils.unregister_class(cls)
