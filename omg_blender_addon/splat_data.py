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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..backend.rotations import matrix_to_quat, quat_to_matrix
from ..backend.avatar.ply import gaussians_from_columns

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
    """

    means: np.ndarray
    factors: np.ndarray
    colors: np.ndarray
    opacity: np.ndarray

    def __len__(self) -> int:
        return int(self.means.shape[0])

    @staticmethod
    def concat(parts: list["SplatData"]) -> "SplatData":
        if not parts:
            z = np.zeros((0, 3), np.float32)
            return SplatData(z, np.zeros((0, 3, 3), np.float32), z.copy(), np.zeros(0, np.float32))
        return SplatData(*(np.concatenate([getattr(p, k) for p in parts]) for k in
                           ("means", "factors", "colors", "opacity")))


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
                 growth: np.ndarray | None = None) -> SplatData:
    """SplatData from the rest constants, the deformed world centres (N, 3), the deformation's
    linear part ``blend`` (N or 1, 3, 3) in world axes (blended_matrices) and each splat's growth
    (N,) (splat_growth; None: none)."""
    factors = np.matmul(np.asarray(blend, np.float32), rest.RS)
    if growth is not None:
        factors = factors * np.asarray(growth, np.float32)[:, None, None]
    return SplatData(np.ascontiguousarray(means_world, np.float32), np.ascontiguousarray(factors, np.float32),
                     rest.colors, rest.opacity)
