"""Gaussian objects <-> standard 3DGS .ply files (through backend.avatar.ply).

Files are in the head-model frame (as the backend writes them); objects are in Blender's frame, so
positions and rotations are converted with axes.py on the way in and out.
Export reads the *evaluated* object at the current frame (shape keys, armature, drivers applied) and
its world matrix, i.e. the pose you see; rotations/colours/opacities are the stored ones (posing moves
Gaussian centres, as in the paper and the backend), scales too but where the frame stretches an
avatar's skin beyond what its head Gaussians were sized for (grown as the splat renderer and the
backend's posed sets grow them: splat_scene.object_growth).
"""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np

from .axes import points_to_blender, points_to_model
from .evaluated import evaluated_positions
from .scene_data import ATTRIBUTE_NAMES, gaussian_columns, scene_gaussians


def read_columns(mesh: bpy.types.Mesh) -> dict[str, np.ndarray]:
    """The 3DGS attribute columns {name: (N,) float32} of a Gaussian mesh."""
    n = len(mesh.vertices)
    out = {}
    for key in ATTRIBUTE_NAMES:
        a = np.empty(n, np.float32)
        mesh.attributes[key].data.foreach_get("value", a)
        out[key] = a
    return out


def object_gaussians(obj: bpy.types.Object, depsgraph):
    """The object's Gaussians as a backend GaussianSet in the model frame, at the evaluated pose
    (an avatar's head Gaussians grown where the pose stretches the skin, splat_scene.object_growth)."""
    from .splat_scene import object_growth

    world = evaluated_positions(obj, depsgraph)
    gs = scene_gaussians(points_to_model(world), read_columns(obj.data))
    growth = object_growth(obj, world, depsgraph)
    return gs if growth is None else gs.with_scales(gs.scales * growth[:, None])


def export_ply(obj: bpy.types.Object, path: str | Path, depsgraph) -> Path:
    """Write ``obj`` at the current frame's pose as a standard 3DGS .ply (model frame)."""
    from ..backend.avatar.ply import write_ply

    return write_ply(path, object_gaussians(obj, depsgraph))


def load_ply(path: str | Path):
    """Read a 3DGS .ply (backend reader: InputError on bad files) -> (positions B-frame, columns)."""
    from ..backend.avatar.ply import read_ply

    gs = read_ply(path)
    return points_to_blender(gs.means), gaussian_columns(gs)


def create_ply_object(context, name: str, positions: np.ndarray, columns: dict[str, np.ndarray]
                      ) -> bpy.types.Object:
    """A standalone Gaussian object (splat display, no rig) in the active collection."""
    from . import gaussian_display
    from .scene_write import create_gaussian_mesh

    created: list = []
    try:
        me = create_gaussian_mesh(name, positions, columns, created)
        obj = bpy.data.objects.new(name, me)
        created.append(obj)
        context.collection.objects.link(obj)
        gaussian_display.add_display(obj, created=created)
    except BaseException:
        from .scene_write import _remove

        _remove(created)
        raise
    for o in context.view_layer.objects:
        if o.select_get():
            o.select_set(False)
    obj.select_set(True)
    context.view_layer.objects.active = obj
    return obj
