"""bpy Panels: the "OMG Avatar" tab of the 3D viewport sidebar. UI only: they draw, never compute."""

from __future__ import annotations

import bpy

from . import animation, sidebar

_CLASSES = sidebar.CLASSES + animation.CLASSES


def register() -> None:
    for cls in _CLASSES:
        bpy.utils.register_class(cls)


def unregister() -> None:
    for cls in reversed(_CLASSES):
        bpy.utils.unregister_class(cls)
