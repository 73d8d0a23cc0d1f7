"""3DGS point columns (+ the current pose) -> the arrays the splat shader draws. Pure numpy, no bpy.

A drawn splat is its world-space centre, a 3x3 factor ``T`` of its world covariance (``cov = T T^T``),
its colour and its opacity. At rest ``T = R(q) diag(exp(scale))``. Posed, the point's blended
skinning rotation turns it: ``T = B M R(q) diag(s)`` with ``B`` the rotation of the normalized
weighted sum of its joints' quaternions (backend posing's definition, ``posing.blended_quats``) and
``M`` the object's world matrix (so object scale is kept too). An avatar's head splats also grow
where the frame stretches its skin beyond what they were sized for (``splat_growth``, the backend's
``avatar.stretch_growth``): ``T`` times the factor.

Colours are the degree-0 SH colour ``clip(0.5 + C0 f_dc, 0, 1)``: display (sRGB) values, exactly what
the backend splatter composites and writes to PNG without a transfer function.

An avatar LOD's view-dependent splats (the backend's view_colors.py: the skin the photo saw edge-on,
the Gaussians the silhouette fit shrank) also carry a side colour, a grow factor and their direction
to the source camera turned into the world by their view frame (``view_towards``: the blend of the
global and neck bones' rotations by the point's global weight, as the backend's view_frames_torch).
Seen within ``NEAR_DEG`` of that direction a splat shows its colour and size, beyond ``FAR_DEG``
the side colour and its size times the grow factor, a smoothstep between: the shader blends per
view (splat_shader), ``seen_from`` is the same blend in numpy (its reference).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..backend.rotations import matrix_to_quat, quat_to_matrix
from ..backend.avatar.ply import gaussians_from_columns
from ..backend.avatar.view_colors import FAR_DEG, MAX_GROW, NEAR_DEG

if TYPE_CHECKING:
    from ..backend.avatar.stretch_growth import GrowthField

COLUMNS = ("f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
           "rot_0", "rot_1", "rot_2", "rot_3")


@dataclass
class SplatData:
    """Splats ready to draw. N = splats.

    means:   (N, 3) float32 world centres, metres.
    factors: (N, 3, 3) float32 world covariance factors T (cov = T T^T), metres.
    colors:  (N, 3) float32 display (sRGB) colours in [0, 1].
    opacity: (N,) float32 in [0, 1].
    side, toward, grow: the view-dependent splats (None: there are none): (N, 3) float32 display
        colours away from the source direction, (N, 3) float32 world unit directions to the source
        camera (zero: a view-independent splat), (N,) float32 factors of ``factors`` away from it.
    """

    means: np.ndarray
    factors: np.ndarray
    colors: np.ndarray
    opacity: np.ndarray
    side: np.ndarray | None = None
    toward: np.ndarray | None = None
    grow: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.means.shape[0])

    def view_arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(side, toward, grow) with every splat filled in: a view-independent one shows its own
        colour, points nowhere and keeps its size."""
        if self.toward is None:
            n = len(self)
            return self.colors, np.zeros((n, 3), np.float32), np.ones(n, np.float32)
        return self.side, self.toward, self.grow

    @staticmethod
    def concat(parts: list["SplatData"]) -> "SplatData":
        if not parts:
            z = np.zeros((0, 3), np.float32)
            return SplatData(z, np.zeros((0, 3, 3), np.float32), z.copy(), np.zeros(0, np.float32))
        out = SplatData(*(np.concatenate([getattr(p, k) for p in parts]) for k in
                          ("means", "factors", "colors", "opacity")))
        if any(p.toward is not None for p in parts):
            views = [p.view_arrays() for p in parts]
            out.side, out.toward, out.grow = (np.concatenate([v[i] for v in views]) for i in range(3))
        return out


@dataclass
class RestSplats:
    """The per-object constants (read once per object): rest rotation x scale ``RS`` (N, 3, 3)
    float32 (object frame), colours (N, 3), opacity (N,)."""

    RS: np.ndarray
    colors: np.ndarray
    opacity: np.ndarray


def rest_splats(columns: dict[str, np.ndarray]) -> RestSplats:
    """The constant part of every splat from the 3DGS columns (COLUMNS names, (N,) each)."""
    n = len(columns["rot_0"])
    gs = gaussians_from_columns(np.zeros((n, 3)), columns)  # the one codec: a zero quaternion -> identity
    RS = quat_to_matrix(gs.quats) * gs.scales.astype(np.float64)[:, None, :]
    return RestSplats(RS.astype(np.float32), gs.colors, gs.opacities)


def blended_matrices(weights: np.ndarray | None, skin: np.ndarray | None, world: np.ndarray) -> np.ndarray:
    """(N, 3, 3) or (1, 3, 3) float32: each point's blended skinning rotation times the object's
    world matrix.

    weights (N, J) skinning weights (Blender normalises rows, so do we; rows of zeros keep the
    object's rest), skin (J, 3, 3) the joints' skinning rotations in world axes, world (3, 3) the
    object's world matrix. The blend is backend posing's one rotation definition
    (backend.avatar.posing.blended_quats): the normalized weighted sum of the joints' quaternions.
    No skinning: the world matrix alone."""
    world = np.asarray(world, np.float32)
    if weights is None or skin is None or weights.shape[1] == 0:
        return world[None]
    w = np.asarray(weights, np.float64)
    total = w.sum(1, keepdims=True)
    unweighted = total[:, 0] <= 0.0
    qj = matrix_to_quat(np.asarray(skin, np.float64))                  # (J, 4), w >= 0
    q = w @ qj
    q[unweighted] = (1.0, 0.0, 0.0, 0.0)
    B = quat_to_matrix(q)                                               # normalizes
    return np.matmul(B, world.astype(np.float64)).astype(np.float32)


def splat_growth(points: np.ndarray, field: "GrowthField", upsample, n: int) -> np.ndarray:
    """(n,) float32 >= 1: the scale factor of each of an avatar LOD's ``n`` splats (head, then parts)
    from its head's posed LOD-0 rows ``points`` (V, 3), object frame (the first V points of every
    LOD): the backend's per-frame growth (``vertex_growth`` blended by the LOD's ``upsample``
    (V_l, V)); the parts keep their size."""
    from ..backend.avatar.stretch_growth import lod_growth, vertex_growth

    g = lod_growth(vertex_growth(points, field), upsample)[0]
    out = np.ones(n, np.float32)
    out[: len(g)] = g
    return out


def posed_splats(rest: RestSplats, means_world: np.ndarray, blend: np.ndarray,
                 growth: np.ndarray | None = None, view: "PosedView | None" = None) -> SplatData:
    """SplatData from the rest constants, the deformed world centres (N, 3), the deformation's
    linear part ``blend`` (N or 1, 3, 3) in world axes (blended_matrices), each splat's growth
    (N,) (splat_growth; None: none) and its view-dependent splats at this pose (None: none)."""
    factors = np.matmul(np.asarray(blend, np.float32), rest.RS)
    if growth is not None:
        factors = factors * np.asarray(growth, np.float32)[:, None, None]
    out = SplatData(np.ascontiguousarray(means_world, np.float32), np.ascontiguousarray(factors, np.float32),
                    rest.colors, rest.opacity)
    if view is not None:
        out.side, out.toward, out.grow = view.side, view.toward, view.grow
    return out


@dataclass
class RestView:
    """An avatar LOD object's view-dependent splats (read once per object; scene_data.view_columns).

    rows: (K,) int64 the splats that depend on the view; toward: (K, 3) float32 their directions
    to the source camera in their view frames (object frame, unit); share: (K,) float32 in [0, 1]
    the global bone's share of their skinning weights; side: (N, 3) float32 every splat's side
    colour; grow: (N,) float32 every splat's grow factor (1 off the rows)."""

    rows: np.ndarray
    toward: np.ndarray
    share: np.ndarray
    side: np.ndarray
    grow: np.ndarray


@dataclass
class PosedView:
    """SplatData's view fields at one pose: side (N, 3), toward (N, 3) world (zero off the rows),
    grow (N,)."""

    side: np.ndarray
    toward: np.ndarray
    grow: np.ndarray


def rest_view(side: np.ndarray, toward: np.ndarray, grow: np.ndarray, weights: np.ndarray | None,
              global_column: int | None) -> RestView | None:
    """RestView from a LOD object's view columns (scene_read.read_view_columns: (N, 3), (N, 3),
    (N,)) and its skinning ``weights`` (N, J) whose column ``global_column`` is the global bone's
    (None: not skinned, every view frame is the object's). None when no splat depends on the view
    or the columns hold values no view data can (a user's edit: drawn view-independent)."""
    toward = np.asarray(toward, np.float32)
    rows = np.flatnonzero(np.abs(toward).max(1) > 0.0)
    side = np.asarray(side, np.float32)
    grow = np.asarray(grow, np.float32)
    t = toward[rows]
    if (not len(rows) or not (np.isfinite(side).all() and np.isfinite(grow).all() and np.isfinite(t).all())
            or np.abs(np.linalg.norm(t, axis=1) - 1.0).max() > 1e-3 or grow.min() < 1.0 or grow.max() > MAX_GROW):
        return None
    share = np.zeros(len(rows), np.float32)
    if weights is not None and global_column is not None:
        w = np.asarray(weights, np.float64)[rows]
        total = w.sum(1)
        share = np.where(total > 0.0, w[:, global_column] / np.maximum(total, 1e-30), 0.0).astype(np.float32)
    return RestView(rows, t, share, np.clip(side, 0.0, 1.0), grow)


def view_towards(toward: np.ndarray, share: np.ndarray, q_global: np.ndarray, q_neck: np.ndarray,
                 world: np.ndarray) -> np.ndarray:
    """(K, 3) float32 world unit directions to the source camera of K view-dependent splats: their
    object-frame ``toward`` (K, 3) turned by the object's world matrix ``world`` (3, 3) and then by
    their view frame, the blend of the global and neck bones' world rotations ``q_global``,
    ``q_neck`` (4,) w,x,y,z (world axes, as skin_matrices) by their global ``share`` (K,): the
    backend's view_frames_torch in the scene's frame."""
    s = np.asarray(share, np.float64)[:, None]
    q = s * np.asarray(q_global, np.float64)[None] + (1.0 - s) * np.asarray(q_neck, np.float64)[None]
    d = np.einsum("kij,kj->ki", quat_to_matrix(q), np.asarray(toward, np.float64) @ np.asarray(world, np.float64).T)
    return (d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def posed_view(view: RestView, n: int, q_global: np.ndarray, q_neck: np.ndarray, world: np.ndarray) -> PosedView:
    """The SplatData view fields of an object's ``n`` splats at the bones' rotations (view_towards)."""
    toward = np.zeros((n, 3), np.float32)
    toward[view.rows] = view_towards(view.toward, view.share, q_global, q_neck, world)
    return PosedView(view.side, toward, view.grow)


def view_weights(toward: np.ndarray, means: np.ndarray, eye: np.ndarray, ortho: bool = False) -> np.ndarray:
    """(N,) float32 in [0, 1]: how much of its source-view colour and size each splat shows from a
    camera at ``eye`` (3,) world metres (``ortho``: the unit direction towards an orthographic
    camera); 1 where ``toward`` (N, 3) is zero. The backend's source_weights_torch."""
    toward = np.asarray(toward, np.float64)
    if ortho:
        d = np.broadcast_to(np.asarray(eye, np.float64), toward.shape)
    else:
        d = np.asarray(eye, np.float64)[None] - np.asarray(means, np.float64)
    d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
    lo, hi = np.cos(np.radians(FAR_DEG)), np.cos(np.radians(NEAR_DEG))
    x = np.clip(((d * toward).sum(1) - lo) / (hi - lo), 0.0, 1.0)
    w = x * x * (3.0 - 2.0 * x)
    return np.where(np.abs(toward).max(1) > 0.0, w, 1.0).astype(np.float32)


def seen_from(data: SplatData, eye: np.ndarray, ortho: bool = False) -> SplatData:
    """``data`` as a camera at ``eye`` (view_weights) sees it, without view fields: colours blended
    towards the side colours, covariance factors times ``w + (1 - w) grow`` (the shader's blend, in
    numpy)."""
    if data.toward is None:
        return data
    w = view_weights(data.toward, data.means, eye, ortho)[:, None]
    colors = w * data.colors + (1.0 - w) * data.side
    factors = data.factors * (w + (1.0 - w) * data.grow[:, None])[:, :, None]
    return SplatData(data.means, factors.astype(np.float32), colors.astype(np.float32), data.opacity)
