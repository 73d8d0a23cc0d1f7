"""The scene's Gaussian objects at the current frame -> SplatData (UI thread, bpy reads only).

Positions are the evaluated mesh (shape keys, drivers, armature: what export and the GN display
use). Orientations follow the rig: each point's covariance factor is multiplied by the blend of its
joints' skinning matrices (``pose_bone.matrix @ bone.matrix_local^-1``, weighted by the object's
vertex groups, the weights the Armature modifier uses), which is the linear part of Blender's
linear-blend skinning at that point. Expression shape keys move points but do not turn them (as in
backend posing, whose rotations come from the skinning transforms). An avatar LOD's head splats grow
where the frame stretches the skin beyond what they were sized for (splat_data.splat_growth: the
growth data the LOD mesh holds, its counted edges, rest lengths, allowance and upsampling parents,
and the evaluated LOD-0 rows), as backend posing and the Geometry Nodes display grow them. Its
view-dependent splats (the view attributes, scene_read.read_view_columns) get their direction to the
source camera turned by their view frame, the global and neck bones' skinning rotations blended by
their global weight (splat_data.posed_view); the shader blends their colours and sizes per view.

Per object, the constant data (rest rotation x scale, colours, opacities, skinning weights) is read
once and cached until the object's mesh changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import bpy
import numpy as np

from ..backend.rotations import matrix_to_quat
from .rig_info import JOINTS
from .scene_data import GROW_ATTRIBUTE, GROW_PARENT_ATTRIBUTES, GROW_REST_ATTRIBUTE, GROW_WEIGHT_ATTRIBUTES
from .splat_data import (COLUMNS, RestSplats, RestView, SplatData, blended_matrices, posed_splats, posed_view,
                         rest_splats, rest_view, splat_growth)


@dataclass
class _ObjectCache:
    key: tuple
    rest: RestSplats
    groups: list[str]          # vertex-group names, column order of ``weights``
    weights: np.ndarray | None  # (N, J) float32, None when the object has no vertex groups
    growth: tuple | None = None  # (GrowthField, upsample (V_l, V) CSR) of an avatar LOD, else None
    view: RestView | None = None  # its view-dependent splats, else None


_CACHE: dict[str, _ObjectCache] = {}


def is_splat_object(obj) -> bool:
    """A mesh carrying the 3DGS point attributes (an avatar LOD or an imported .ply)."""
    if obj is None or obj.type != "MESH":
        return False
    names = obj.data.attributes.keys()
    return all(n in names for n in COLUMNS)


def visible_splat_objects(context) -> list:
    """Every Gaussian object visible in the view layer (an avatar shows one LOD)."""
    vl = context.view_layer
    return [o for o in vl.objects if is_splat_object(o) and o.visible_get(view_layer=vl)]


def _weights(obj) -> tuple[list[str], np.ndarray | None]:
    """(group names, (N, J) float32 weights) of ``obj``'s vertex groups (one pass over the vertices;
    Blender has no bulk accessor for vertex-group weights)."""
    names = [g.name for g in obj.vertex_groups]
    if not names:
        return names, None
    me = obj.data
    n = len(me.vertices)
    counts = np.fromiter((len(v.groups) for v in me.vertices), np.int64, n)
    flat = [(g.group, g.weight) for v in me.vertices for g in v.groups]
    w = np.zeros((n, len(names)), np.float32)
    if flat:
        arr = np.asarray(flat, np.float64)
        rows = np.repeat(np.arange(n), counts)
        w[rows, arr[:, 0].astype(np.int64)] = arr[:, 1]
    return names, w


def _object_cache(obj) -> _ObjectCache:
    me = obj.data
    key = (me.name, me.session_uid if hasattr(me, "session_uid") else id(me), len(me.vertices),
           tuple(g.name for g in obj.vertex_groups))
    hit = _CACHE.get(obj.name)
    if hit is not None and hit.key == key:
        return hit
    n = len(me.vertices)
    cols = {}
    for name in COLUMNS:
        a = np.empty(n, np.float32)
        me.attributes[name].data.foreach_get("value", a)
        cols[name] = a
    groups, weights = _weights(obj)
    entry = _ObjectCache(key, rest_splats(cols), groups, weights, _growth_data(obj), _view_data(me, groups, weights))
    _CACHE[obj.name] = entry
    return entry


def _growth_data(obj) -> tuple | None:
    """(GrowthField, the LOD's upsampling (n_head, V) CSR) of an avatar LOD object from what its mesh
    holds for the growth (scene_write._growth_edges: the counted LOD-0 edges, their rest lengths, the
    allowance and each head Gaussian's upsampling parents; the Geometry Nodes display reads the
    same), else None (an imported .ply, an avatar imported before the display grew, an edited mesh or
    growth attribute)."""
    import scipy.sparse as sp

    from ..backend.avatar.stretch_growth import GrowthField

    me = obj.data
    # (domain, type) as scene_write stores them: an attribute a user converted or re-created in
    # another kind is not the growth's, and reading it into these buffers would raise in the draw
    kinds = {GROW_ATTRIBUTE: ("POINT", "FLOAT"), GROW_REST_ATTRIBUTE: ("EDGE", "FLOAT"),
             **{a: ("POINT", "INT") for a in GROW_PARENT_ATTRIBUTES},
             **{a: ("POINT", "FLOAT") for a in GROW_WEIGHT_ATTRIBUTES}}
    if not len(me.edges) or any(name not in me.attributes
                                or (me.attributes[name].domain, me.attributes[name].data_type) != kind
                                for name, kind in kinds.items()):
        return None
    n, n_head, K = len(me.vertices), int(obj.omg_avatar.n_head), len(GROW_PARENT_ATTRIBUTES)

    def read(name: str, dtype, count: int) -> np.ndarray:
        out = np.empty(count, dtype)
        me.attributes[name].data.foreach_get("value", out)
        return out

    edges = np.empty(len(me.edges) * 2, np.int32)
    me.edges.foreach_get("vertices", edges)
    allowance = read(GROW_ATTRIBUTE, np.float32, n)
    parents = np.stack([read(a, np.int32, n) for a in GROW_PARENT_ATTRIBUTES], 1)[:n_head]
    weights = np.stack([read(a, np.float32, n) for a in GROW_WEIGHT_ATTRIBUTES], 1)[:n_head]
    if not 0 < n_head <= n or parents.min() < 0:
        return None
    V = int(parents.max()) + 1        # every LOD-0 row is its own only parent
    edges = edges.reshape(-1, 2).astype(np.int64)
    if edges.max() >= V:               # edited since the import
        return None
    field = GrowthField(edges, read(GROW_REST_ATTRIBUTE, np.float32, len(edges)), allowance[:V])
    rows = np.repeat(np.arange(n_head), K)
    up = sp.csr_matrix((weights.ravel(), (rows, parents.ravel())), shape=(n_head, V))
    return field, up


def _view_data(me, groups: list[str], weights: np.ndarray | None) -> RestView | None:
    """The LOD object's view-dependent splats (splat_data.rest_view), None without view attributes."""
    from .scene_read import read_view_columns

    cols = read_view_columns(me)
    if cols is None:
        return None
    column = groups.index(JOINTS[0]) if weights is not None and JOINTS[0] in groups else None
    return rest_view(*cols, weights, column)


def _view_rotations(skin: tuple[list[int], np.ndarray] | None, groups: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(q_global, q_neck) (4,) w,x,y,z: the global and neck bones' skinning rotations in world axes
    (skin_matrices' output), identity for a bone that does not deform the object."""
    out = []
    for name in JOINTS[:2]:
        q = np.array([1.0, 0.0, 0.0, 0.0])
        if skin is not None and name in groups and groups.index(name) in skin[0]:
            q = matrix_to_quat(skin[1][skin[0].index(groups.index(name))].astype(np.float64))
        out.append(q)
    return out[0], out[1]


def forget(name: str | None = None) -> None:
    """Drop cached object data (one object, or all)."""
    if name is None:
        _CACHE.clear()
    else:
        _CACHE.pop(name, None)


def _armature(obj):
    for mod in obj.modifiers:
        if mod.type == "ARMATURE" and mod.object is not None and mod.show_viewport:
            return mod.object
    return None


def skin_matrices(obj, groups: list[str]) -> tuple[list[int], np.ndarray] | None:
    """(columns, (J', 3, 3) float32): the vertex groups that name a bone (the only ones Blender's
    Armature modifier uses) and each one's linear skinning matrix in world axes; None when no
    Armature modifier deforms ``obj``."""
    arm = _armature(obj)
    if arm is None:
        return None
    aw = np.array(arm.matrix_world, np.float64)[:3, :3]
    aw_inv = np.linalg.inv(aw)
    cols, mats = [], []
    for j, name in enumerate(groups):
        pb = arm.pose.bones.get(name)
        if pb is None:
            continue
        S = np.array(pb.matrix, np.float64)[:3, :3] @ np.linalg.inv(np.array(pb.bone.matrix_local, np.float64)[:3, :3])
        cols.append(j)
        mats.append(aw @ S @ aw_inv)
    return cols, np.asarray(mats, np.float32).reshape(-1, 3, 3)


def object_splats(obj, depsgraph) -> SplatData:
    """``obj``'s splats at the evaluated pose (world frame)."""
    from .evaluated import evaluated_positions

    entry = _object_cache(obj)
    means = evaluated_positions(obj, depsgraph)
    world = np.array(obj.evaluated_get(depsgraph).matrix_world, np.float64)[:3, :3]
    skin = skin_matrices(obj, entry.groups) if entry.weights is not None else None
    if skin is None or not skin[0]:
        blend = blended_matrices(None, None, world)
    else:
        blend = blended_matrices(entry.weights[:, skin[0]], skin[1], world)
    view = None
    if entry.view is not None:
        view = posed_view(entry.view, len(means), *_view_rotations(skin, entry.groups), world)
    return posed_splats(entry.rest, means, blend, object_growth(obj, means, depsgraph, entry), view)


def object_growth(obj, means_world: np.ndarray, depsgraph, entry: _ObjectCache | None = None) -> np.ndarray | None:
    """(N,) float32 scale factors of ``obj``'s splats at its evaluated world centres ``means_world``
    (N, 3) (splat_data.splat_growth), or None for an object that does not grow (an imported .ply,
    an avatar LOD without the growth data, _growth_data). ``entry``: its cache entry, when the
    caller already holds it (the draw path reads it once a frame)."""
    entry = _object_cache(obj) if entry is None else entry
    if entry.growth is None:
        return None
    field, up = entry.growth
    mw = np.array(obj.evaluated_get(depsgraph).matrix_world, np.float64)
    local = (means_world[: field.n_verts] - mw[:3, 3]) @ np.linalg.inv(mw[:3, :3]).T   # the object frame
    return splat_growth(local, field, up, len(means_world))


def scene_splats(context, objects=None) -> SplatData:
    """All visible Gaussian objects' splats at the current frame (or just ``objects``)."""
    dg = context.evaluated_depsgraph_get()
    objs = visible_splat_objects(context) if objects is None else objects
    return SplatData.concat([object_splats(o, dg) for o in objs])
