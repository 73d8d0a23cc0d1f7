"""Keep the Geometry Nodes splat display's drivers live when a scene's camera changes.

The display's pixel-size inputs are driven from ``scene.camera.data`` (gaussian_display.drive_pixel_size).
In a scene without a camera that path fails, Blender marks the driver invalid and stops evaluating
it, and it stays at 0 after a camera is added (measured on bpy 5.0.1: re-enabling it is not enough,
its expression must change): the low-pass and the view-dependent colours and sizes would then
be missing from every EEVEE/Cycles render of an avatar imported before the scene had a camera.
A handler (after every depsgraph update and frame change) notices a scene whose camera changed and
re-tags those drivers; the next update (the viewport's next redraw, a render's own evaluation)
evaluates them again.
"""

from __future__ import annotations

import bpy

from .gaussian_display import MODIFIER_NAME

_SEEN: dict[int, str | None] = {}   # scene session_uid -> the camera's name when last looked at


def refresh(scene: bpy.types.Scene) -> int:
    """Re-enable and re-tag the invalid drivers of the splat modifiers of ``scene``'s objects (valid
    ones are left alone); returns how many."""
    count = 0
    for obj in scene.objects:
        mod = obj.modifiers.get(MODIFIER_NAME) if obj.type == "MESH" else None
        if mod is None or obj.animation_data is None:
            continue
        prefix = f'modifiers["{mod.name}"]'
        for fc in obj.animation_data.drivers:
            if fc.data_path.startswith(prefix) and not fc.driver.is_valid:
                fc.driver.is_valid = True
                fc.driver.expression = fc.driver.expression  # tags the driver for evaluation again
                count += 1
    return count


@bpy.app.handlers.persistent
def _camera_watch(scene, _depsgraph=None) -> None:
    # never while a render runs (its frame changes call this too): a render always has a camera,
    # so its drivers are valid, and the next update after it catches up
    if bpy.app.is_job_running("RENDER"):
        return
    camera = scene.camera.name if scene.camera is not None else None
    key = scene.session_uid
    if key in _SEEN and _SEEN[key] == camera:
        return
    _SEEN[key] = camera
    refresh(scene)


@bpy.app.handlers.persistent
def _forget(*_args) -> None:
    _SEEN.clear()


_HANDLERS = ("depsgraph_update_post", "frame_change_post")


def register() -> None:
    for name in _HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        if _camera_watch not in handlers:
            handlers.append(_camera_watch)
    if _forget not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_forget)


def unregister() -> None:
    for name in _HANDLERS:
        handlers = getattr(bpy.app.handlers, name)
        while _camera_watch in handlers:
            handlers.remove(_camera_watch)
    while _forget in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_forget)
    _SEEN.clear()
