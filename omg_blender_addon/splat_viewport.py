"""The viewport splat display: a SpaceView3D draw handler that draws every visible Gaussian object.

``enable``/``disable`` add and remove the handler (the panel's toggle, ``Scene.omg_avatar.show_splats``,
calls them; unregistering the add-on calls ``disable``). While it is on, the Geometry Nodes ellipsoid
display of the drawn objects is hidden in the viewport (renders keep it).

Per draw: the splat data is rebuilt only when the scene changed (depsgraph update or frame change
bumps a generation counter), the depth order only when the view or the data changed, on a worker
thread (splat_sort.Sorter); until it arrives the previous order is drawn and a timer asks for a
redraw when it is ready. Splats are depth tested against Blender's depth buffer (POST_VIEW), so
meshes in front hide them. Colours are linearised for the viewport's sRGB-encoding overlay buffer.
Orthographic views use the orthographic projection (constant Jacobian). ``draw_region`` is the
whole per-draw step for given view/window matrices (tests call it inside a GPUOffScreen).
"""

from __future__ import annotations

import time

import bpy
import numpy as np

from . import gaussian_display
from .splat_draw import SplatBatch, SplatView
from .splat_scene import scene_splats, visible_splat_objects
from .splat_sort import Sorter, depth_order

_HANDLE = None
_GEN = [0]
_SORTER = Sorter()
_STATE: dict = {"key": None, "batch": None}
TIMINGS: dict[str, float] = {}  # last draw's stages, seconds (figures, diagnostics)


def is_enabled() -> bool:
    return _HANDLE is not None


def _bump(*_args) -> None:
    _GEN[0] += 1


def _redraw_views() -> None:
    wm = getattr(bpy.context, "window_manager", None)
    for window in (wm.windows if wm is not None else []):
        for area in window.screen.areas:
            if area.type == "VIEW_3D":
                area.tag_redraw()


def _poll_sort():
    if _SORTER.pending():
        return 0.02
    _redraw_views()
    return None


def _view_key(view: SplatView) -> bytes:
    return np.round(view.viewmat, 6).tobytes()


def _draw() -> None:
    context = bpy.context
    region, rv3d = context.region, context.region_data
    if region is None or rv3d is None:
        return
    draw_region(context, rv3d.view_matrix, rv3d.window_matrix, region.width, region.height)


def draw_region(context, view_matrix, window_matrix, width: int, height: int, linear_target: bool = True) -> bool:
    """Draw the visible Gaussian objects into the bound framebuffer for a viewport with these
    matrices (4x4, Blender's view and window matrix) and size in pixels; True when something was
    drawn. A new view is sorted on the worker while the previous order is drawn."""
    view = SplatView.from_matrices(view_matrix, window_matrix, width, height)
    t0 = time.perf_counter()
    objs = visible_splat_objects(context)
    data_key = (_GEN[0], tuple(o.name for o in objs))
    if _STATE["key"] != data_key:
        old: SplatBatch | None = _STATE["batch"]
        data = scene_splats(context, objs)
        new = SplatBatch(data) if len(data) else None
        if new is not None and old is not None and old.n == new.n and old.order is not None:
            # same splats, new pose (playback, a moved bone): draw with the last order until the
            # worker's new one arrives
            new.set_order(old.order, ("stale",))
        _STATE.update(batch=new, key=data_key)
    batch: SplatBatch | None = _STATE["batch"]
    t1 = time.perf_counter()
    if batch is None:
        return False
    want = (data_key, _view_key(view))
    done = _SORTER.take()
    if done is not None and done[0][0] == data_key:
        batch.set_order(done[1], done[0])
    if batch.order_key != want:
        if batch.batch is None:  # nothing to draw yet: sort now
            batch.set_order(depth_order(batch.means, view.viewmat), want)
        elif _SORTER.request(want, batch.means, view.viewmat) and not bpy.app.timers.is_registered(_poll_sort):
            bpy.app.timers.register(_poll_sort, first_interval=0.02)
    t2 = time.perf_counter()
    batch.draw(view, linear_target=linear_target)
    TIMINGS.update(data=t1 - t0, sort=t2 - t1, draw=time.perf_counter() - t2)
    return True


def _set_gn_display(on: bool) -> None:
    """Show (on) or hide the Geometry Nodes splat display of the Gaussian objects in the viewport."""
    for obj in bpy.data.objects:
        mod = obj.modifiers.get(gaussian_display.MODIFIER_NAME) if obj.type == "MESH" else None
        if mod is not None and mod.show_viewport != on:
            mod.show_viewport = on


def enable() -> None:
    """Add the draw handler (idempotent) and hide the ellipsoid display in the viewport."""
    global _HANDLE
    if _HANDLE is None:
        _HANDLE = bpy.types.SpaceView3D.draw_handler_add(_draw, (), "WINDOW", "POST_VIEW")
        for hs in (bpy.app.handlers.depsgraph_update_post, bpy.app.handlers.frame_change_post):
            if _bump not in hs:
                hs.append(_bump)
    _STATE.update(key=None, batch=None)
    _set_gn_display(False)
    _redraw_views()


def disable(restore_display: bool = True) -> None:
    """Remove the draw handler and its app handlers; show the ellipsoid display again."""
    global _HANDLE
    if _HANDLE is not None:
        bpy.types.SpaceView3D.draw_handler_remove(_HANDLE, "WINDOW")
        _HANDLE = None
    for hs in (bpy.app.handlers.depsgraph_update_post, bpy.app.handlers.frame_change_post):
        while _bump in hs:
            hs.remove(_bump)
    if bpy.app.timers.is_registered(_poll_sort):
        bpy.app.timers.unregister(_poll_sort)
    _SORTER.shutdown()
    _STATE.update(key=None, batch=None)
    if restore_display:
        _set_gn_display(True)
    _redraw_views()


@bpy.app.handlers.persistent
def _sync_after_load(*_args) -> None:
    """A file saved with the display on turns it on again when loaded (and off otherwise)."""
    scene = getattr(bpy.context, "scene", None)
    on = bool(scene is not None and scene.omg_avatar.show_splats)
    if on:
        enable()
    elif is_enabled():
        disable(restore_display=False)


def register() -> None:
    if _sync_after_load not in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.append(_sync_after_load)


def unregister() -> None:
    while _sync_after_load in bpy.app.handlers.load_post:
        bpy.app.handlers.load_post.remove(_sync_after_load)
    disable(restore_display=True)  # the ellipsoids show again without the add-on
    from .splat_shader import release

    release()
