"""The evaluated (deformed) vertex positions of an object at the current frame: what export, the
splat renderer and tests read of a posed Gaussian object."""

from __future__ import annotations

import bpy
import numpy as np


def evaluated_positions(obj: bpy.types.Object, depsgraph) -> np.ndarray:
    """(N, 3) float32 world-space Blender positions of ``obj``'s vertices as evaluated now.

    Hidden objects are not in the viewport depsgraph: they are shown for the evaluation and hidden
    again (their data is unchanged either way)."""
    was_hidden = obj.hide_viewport
    if was_hidden:
        obj.hide_viewport = False
        depsgraph = bpy.context.evaluated_depsgraph_get()
        depsgraph.update()
    try:
        ev = obj.evaluated_get(depsgraph)
        me = ev.to_mesh()
        try:
            n = len(obj.data.vertices)
            if len(me.vertices) != n:
                raise RuntimeError(f"{obj.name}: evaluated mesh has {len(me.vertices)} vertices, expected {n}")
            co = np.empty(n * 3, np.float32)
            me.vertices.foreach_get("co", co)
            mw = np.array(ev.matrix_world, np.float64)
        finally:
            ev.to_mesh_clear()
    finally:
        if was_hidden:
            obj.hide_viewport = True
    co = co.reshape(n, 3).astype(np.float64)
    return (co @ mw[:3, :3].T + mw[:3, 3]).astype(np.float32)
