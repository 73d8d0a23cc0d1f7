"""Backend avatar -> plain arrays laid out for the Blender scene (no bpy: runs in the worker thread).

Everything is converted to Blender's frame here (see axes.py) so the UI-thread step that writes
bpy data only copies arrays. What the scene gets (B = Blender frame, metres):

* rig: the five FLAME joints at their rest positions for the fitted identity (neutral expression);
* head mesh: LOD-0 surface of the fitted identity (template + identity blend shapes + the avatar's
  vertex offsets), one expression delta per component, skinning weights;
* per LOD: Gaussian centres at rest (head Gaussians then every skinned part in list order, the
  order of ``backend.avatar.posing.pose``), the 3DGS attribute columns (f_dc_*, opacity logit, log
  scale_*, rot_* as w,x,y,z in the Blender frame), expression deltas subdivided with the LOD's
  upsample matrix (on the parts: their own shape keys, SkinnedPart.shapes, e.g. the tongue's
  tongueOut; zero elsewhere) and skinning weights: the head's upsampled, each part's own
  (``SkinnedPart.weights``), and the parts' clamped keys (SkinnedPart.clamped: one shape key per
  distinct expression and start, driven by ``max(expression - start, 0)``). Blender's Armature
  modifier blends the bones' deform matrices with
  those weights, which is the backend's blended linear skinning of the parts (neutral-expression
  joints), so the body follows global/neck motion, the lower teeth the jaw, the eyeballs the eyes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .axes import points_to_blender, points_to_model, quats_to_blender, quats_to_model

if TYPE_CHECKING:
    from ..backend.avatar.gaussians import GaussianAvatar
    from ..backend.avatar.view_colors import ViewColors
    from ..backend.head.model import HeadModel

# per-point FLOAT attribute of a LOD object: the head's LOD-0 rows' growth allowance (GaussianLODData.grow_allowance)
GROW_ATTRIBUTE = "omg_grow_allowance"
# what the Geometry Nodes display needs to grow the splats per frame as the backend does (gaussian_display):
# the counted edges among the LOD-0 rows are the LOD mesh's own edges, with their rest lengths (EDGE
# FLOAT, metres); every Gaussian of the LOD blends the LOD-0 rows' factors by up to GROW_PARENTS
# (index, weight) pairs of its LOD's upsampling (POINT INT / FLOAT; weight 0: not blended, the parts)
GROW_REST_ATTRIBUTE = "omg_grow_rest_length"
GROW_PARENTS = 4
GROW_PARENT_ATTRIBUTES = tuple(f"omg_grow_parent_{k}" for k in range(GROW_PARENTS))
GROW_WEIGHT_ATTRIBUTES = tuple(f"omg_grow_weight_{k}" for k in range(GROW_PARENTS))

# per-point attributes of a LOD object that carries view-dependent Gaussians (GaussianAvatar.lod_views,
# backend view_colors.py): the display RGB seen away from the source direction (FLOAT_VECTOR), the unit
# direction to the source camera in the point's view frame (FLOAT_VECTOR, Blender frame; zero on a
# view-independent point) and the factor its size takes away from that direction (FLOAT, 1 elsewhere)
VIEW_SIDE_ATTRIBUTE = "omg_view_side"
VIEW_TOWARD_ATTRIBUTE = "omg_view_toward"
VIEW_GROW_ATTRIBUTE = "omg_view_grow"
VIEW_ATTRIBUTES = {VIEW_SIDE_ATTRIBUTE: ("POINT", "FLOAT_VECTOR"), VIEW_TOWARD_ATTRIBUTE: ("POINT", "FLOAT_VECTOR"),
                   VIEW_GROW_ATTRIBUTE: ("POINT", "FLOAT")}

ATTRIBUTE_NAMES: tuple[str, ...] = (
    "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
    "rot_0", "rot_1", "rot_2", "rot_3",
)


@dataclass
class GaussianLODData:
    """One LOD object. N = n_head + n_parts Gaussians, E expression components, J = 5 joints.

    positions (N, 3) float32 B-frame rest centres; columns {name: (N,) float32} (ATTRIBUTE_NAMES);
    expr_deltas (E, N, 3) float32 B-frame offsets per unit coefficient; weights (N, J) float32;
    part_names / part_counts: the skinned parts after the head Gaussians, in order.
    """

    level: int
    positions: np.ndarray
    columns: dict[str, np.ndarray]
    expr_deltas: np.ndarray
    weights: np.ndarray
    n_head: int
    part_names: list[str] = field(default_factory=list)
    part_counts: list[int] = field(default_factory=list)
    pose_deltas: np.ndarray | None = None  # (K, N, 3) pose correctives (see AvatarSceneData)
    # the parts' clamped keys (SkinnedPart.clamped), C of them: shape-key names, the expression
    # driving each, its start (unitless weight) and (C, N, 3) float32 B-frame offsets per unit beyond
    # the start (zero on the head rows); a key's value is max(expression - start, 0)
    clamped_names: list[str] = field(default_factory=list)
    clamped_exprs: list[str] = field(default_factory=list)
    clamped_starts: list[float] = field(default_factory=list)
    clamped_deltas: np.ndarray | None = None
    # (V_0,) float32 per-frame growth allowance of the head's LOD-0 rows (backend.avatar.stretch_growth;
    # 0: the mouth band and the lids, whose edges do not count); None: the splats keep their size
    grow_allowance: np.ndarray | None = None
    # the same growth for the Geometry Nodes display: (E, 2) int32 counted LOD-0 edges, (E,) float32
    # their rest lengths (metres), (N_l, GROW_PARENTS) int32 / float32 each head Gaussian's upsampling
    # parents among the LOD-0 rows and their weights (backend.head.lod.upsample_parents); None: the
    # display keeps their size
    grow_edges: np.ndarray | None = None
    grow_rest_length: np.ndarray | None = None
    grow_parents: np.ndarray | None = None
    grow_weights: np.ndarray | None = None
    # the view-dependent Gaussians as dense per-point columns (view_columns): (N, 3) float32 side
    # colours, (N, 3) float32 B-frame directions to the source camera (zero: view-independent), (N,)
    # float32 grow factors; None: every Gaussian looks the same from every side
    view_side: np.ndarray | None = None
    view_toward: np.ndarray | None = None
    view_grow: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.positions.shape[0])

    @property
    def n_parts(self) -> int:
        return int(sum(self.part_counts))


@dataclass
class AvatarSceneData:
    """Everything ``scene_write.create_avatar`` writes, already in the Blender frame.

    joints (J, 3) float32 rest joint positions; head_verts (V, 3) float32; head_faces (F, 3) int32;
    head_expr_deltas (E, V, 3) float32; head_weights (V, J) float32; shape (S,) float32 fitted
    identity; camera_K (3, 3), camera_viewmat (4, 4) (backend/OpenCV convention, model frame).
    """

    name: str
    head_model_name: str
    head_model_path: str | None
    joint_names: tuple[str, ...]
    parents: tuple[int, ...]
    joints: np.ndarray
    head_verts: np.ndarray
    head_faces: np.ndarray
    expr_names: list[str]
    head_expr_deltas: np.ndarray
    head_weights: np.ndarray
    lods: dict[int, GaussianLODData]
    shape: np.ndarray
    camera_K: np.ndarray
    camera_viewmat: np.ndarray
    camera_size: tuple[int, int]
    # pose correctives: the backend's posedirs columns that are not zero, as shape keys whose value is
    # one element of (R_j - I) of a non-root joint; (joint index 1..4, row, col) per key, K keys
    pose_features: list[tuple[int, int, int]] = field(default_factory=list)
    head_pose_deltas: np.ndarray | None = None  # (K, V, 3) B-frame offsets per unit feature
    source_expr: np.ndarray | None = None    # (E,) the photo's fitted expression
    source_pose: np.ndarray | None = None    # (5, 3) axis-angle per joint, model frame
    source_transl: np.ndarray | None = None  # (3,) metres, model frame
    info: dict[str, Any] = field(default_factory=dict)


def gaussian_columns(gs) -> dict[str, np.ndarray]:
    """The 3DGS attribute columns of a GaussianSet with the rotations turned into the Blender frame."""
    from ..backend.avatar.ply import ply_columns

    cols = ply_columns(gs)
    out = {k: np.ascontiguousarray(cols[k], np.float32) for k in ATTRIBUTE_NAMES}
    q = quats_to_blender(np.stack([cols[f"rot_{i}"] for i in range(4)], 1))
    for i in range(4):
        out[f"rot_{i}"] = np.ascontiguousarray(q[:, i])
    return out


def scene_gaussians(means_model: np.ndarray, columns: dict[str, np.ndarray]):
    """Inverse of :func:`gaussian_columns`: a backend GaussianSet (model frame) from model-frame
    means (N, 3) and the scene's attribute columns (rotations in the Blender frame), decoded by the
    backend's one codec (backend.avatar.ply.gaussians_from_columns)."""
    from ..backend.avatar.ply import gaussians_from_columns

    q = quats_to_model(np.stack([columns[f"rot_{i}"] for i in range(4)], 1))
    cols = {**columns, **{f"rot_{i}": q[:, i] for i in range(4)}}
    return gaussians_from_columns(means_model, cols)


def view_columns(view: "ViewColors", colors: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A LOD's view data as dense per-point columns (VIEW_ATTRIBUTES): (N, 3) float32 side colours
    (``colors`` (N, 3) display RGB, the LOD's own, where a point has none), (N, 3) float32 Blender-frame
    directions to the source camera in each point's view frame (zero on the view-independent points)
    and (N,) float32 grow factors (1 where none)."""
    n = len(colors)
    side = np.array(colors, np.float32).reshape(n, 3)
    toward = np.zeros((n, 3), np.float32)
    grow = np.ones(n, np.float32)
    side[view.rows] = view.side
    toward[view.rows] = points_to_blender(view.toward)
    if view.grow is not None:
        grow[view.rows] = view.grow
    return side, toward, grow


def view_from_columns(side: np.ndarray, toward: np.ndarray, grow: np.ndarray) -> "ViewColors | None":
    """Inverse of :func:`view_columns`: the backend's ViewColors (model frame) of the points whose
    direction is not zero, None when none is. ValueError (ViewColors' message) when the columns hold
    what no view data can (a direction that is not unit, a colour outside [0, 1], a grow factor
    outside [1, MAX_GROW])."""
    from ..backend.avatar.view_colors import ViewColors

    toward = np.asarray(toward, np.float32).reshape(-1, 3)
    rows = np.flatnonzero(np.abs(toward).max(1) > 0.0)
    if not len(rows):
        return None
    side = np.asarray(side, np.float32).reshape(-1, 3)[rows]
    return ViewColors(rows, side, points_to_model(toward[rows]), np.asarray(grow, np.float32).reshape(-1)[rows])


def pose_feature_columns(model: "HeadModel", tol: float = 1e-7) -> list[int]:
    """Indices (0..35) of the posedirs columns that move some vertex by more than ``tol`` metres.
    Column k = 9 (j - 1) + 3 r + c is element (r, c) of R_j - I (backend.head.lbs)."""
    return [int(k) for k in np.flatnonzero(np.abs(model.posedirs).max(axis=(0, 1)) > tol)]


def clamped_key_name(expr: str, start: float) -> str:
    """The shape-key name of a clamped key of expression ``expr`` starting at ``start``."""
    return f"{expr} beyond {start:.4f}"


def lod_data(avatar: "GaussianAvatar", model: "HeadModel", level: int) -> GaussianLODData:
    """Scene arrays for one LOD of ``avatar`` (rest = the backend's pose at zero expression/pose)."""
    from ..backend.avatar.posing import model_lods, pose
    from ..backend.avatar.stretch_growth import growth_field
    from ..backend.head.lod import subdivide_attributes, upsample_parents
    from ..backend.head.params import HeadParams

    U = model_lods(model, [level])[level].upsample
    rest = pose(avatar, model, HeadParams.zeros(model), level)[0]  # (N_l + n_parts, 3) model frame
    n_head = len(avatar.lods[level])
    n = n_head + avatar.n_parts
    deltas = np.zeros((model.n_expr, n, 3), np.float32)
    if model.n_expr:
        up = subdivide_attributes(U, model.exprdirs.astype(np.float32))  # (N_l, 3, E)
        deltas[:, :n_head] = points_to_blender(np.moveaxis(up, 2, 0))
        idx, D = avatar.part_shapes(model.expr_names)  # (K,), (n_parts, 3, K): the parts' own keys
        if len(idx):
            deltas[idx, n_head:] = points_to_blender(np.moveaxis(D, 2, 0))
    weights = np.concatenate([np.asarray(U @ model.weights, np.float32),
                              avatar.part_weights(model.weights.shape[1])])
    cols = pose_feature_columns(model)
    pose_deltas = np.zeros((len(cols), n, 3), np.float32)
    if cols:
        up = subdivide_attributes(U, model.posedirs[..., cols].astype(np.float32))  # (N_l, 3, K)
        pose_deltas[:, :n_head] = points_to_blender(np.moveaxis(up, 2, 0))
    basis = avatar.part_shape_basis(model.expr_names)
    ks = np.flatnonzero(basis.clamped)
    exprs = [str(model.expr_names[basis.idx[k]]) for k in ks]
    starts = [float(basis.start[k]) for k in ks]
    names: list[str] = []
    for e, st in zip(exprs, starts):  # unique even if two starts print alike
        name = clamped_key_name(e, st)
        names.append(name if name not in names else f"{name} ({len(names)})")
    clamped = np.zeros((len(ks), n, 3), np.float32)
    if len(ks):
        clamped[:, n_head:] = points_to_blender(np.moveaxis(basis.dirs[..., ks], 2, 0))
    grow = growth_field(avatar, model, level)
    blend = upsample_parents(U, GROW_PARENTS)
    gs = avatar.rest_set(level)
    view = avatar.lod_views.get(level)
    views = (None, None, None) if view is None or not len(view) else view_columns(view, gs.colors)
    return GaussianLODData(level=level, positions=points_to_blender(rest),
                           columns=gaussian_columns(gs), expr_deltas=deltas,
                           weights=weights, n_head=n_head, part_names=[p.name for p in avatar.parts],
                           part_counts=[len(p) for p in avatar.parts], pose_deltas=pose_deltas,
                           clamped_names=names, clamped_exprs=exprs, clamped_starts=starts,
                           clamped_deltas=clamped, grow_allowance=grow.allowance,
                           grow_edges=None if blend is None else grow.edges.astype(np.int32),
                           grow_rest_length=None if blend is None else grow.rest_length.astype(np.float32),
                           grow_parents=None if blend is None else blend[0],
                           grow_weights=None if blend is None else blend[1],
                           view_side=views[0], view_toward=views[1], view_grow=views[2])


def scene_data(avatar: "GaussianAvatar", model: "HeadModel", name: str, levels=None,
               progress=None) -> AvatarSceneData:
    """Lay out ``avatar`` (built on ``model``) for the scene; ``levels`` default: all of its LODs."""
    from ..backend.avatar.posing import shaped_vertices
    from ..backend.head.model import JOINT_NAMES, PARENTS

    levels = sorted(avatar.lods) if levels is None else sorted(int(l) for l in levels)
    shaped = shaped_vertices(model, avatar.params.shape)
    head = shaped + avatar.vertex_offsets
    lods: dict[int, GaussianLODData] = {}
    seconds: dict[str, float] = {}
    for i, level in enumerate(levels):
        if progress is not None:
            progress.report(0.9 + 0.08 * i / max(len(levels), 1), f"preparing LOD {level} for the scene")
        t0 = time.perf_counter()
        lods[level] = lod_data(avatar, model, level)
        seconds[str(level)] = round(time.perf_counter() - t0, 3)
    cam = avatar.camera
    cols = pose_feature_columns(model)
    return AvatarSceneData(
        name=name,
        head_model_name=model.name,
        head_model_path=avatar.head_model_path,
        joint_names=tuple(JOINT_NAMES),
        parents=tuple(int(p) for p in PARENTS),
        # the backend regresses joints from the shaped mesh (vertex offsets are per-avatar detail
        # that LBS never sees), so the rig uses the same joints as backend.avatar.posing.pose.
        joints=points_to_blender(model.rest_joints(shaped)),
        head_verts=points_to_blender(head),
        head_faces=np.ascontiguousarray(model.faces, np.int32),
        expr_names=list(model.expr_names),
        head_expr_deltas=points_to_blender(np.moveaxis(model.exprdirs.astype(np.float32), 2, 0)),
        head_weights=np.ascontiguousarray(model.weights, np.float32),
        lods=lods,
        shape=np.asarray(avatar.params.shape, np.float32),
        camera_K=np.asarray(cam.K, np.float32),
        camera_viewmat=np.asarray(cam.viewmat, np.float32),
        camera_size=(int(cam.width), int(cam.height)),
        pose_features=[(k // 9 + 1, (k % 9) // 3, k % 3) for k in cols],
        head_pose_deltas=points_to_blender(np.moveaxis(model.posedirs[..., cols].astype(np.float32), 2, 0)),
        source_expr=np.asarray(avatar.params.expr[0], np.float32),
        source_pose=np.asarray(avatar.params.pose[0], np.float32),
        source_transl=np.asarray(avatar.params.transl[0], np.float32),
        info={"prepare_seconds": seconds},
    )
