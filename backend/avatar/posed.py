"""A frame's whole posed GaussianSet: positions from ``posing.pose`` and, for the head, the sizes
grown where the frame stretches the skin (``pose_growth``, avatar.stretch_growth). Above both, so
that posing stays below the growth field (which reads the build's own sampling rules)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .gaussians import GaussianAvatar, GaussianSet
from .posing import model_lods, pose, pose_parts
from .stretch_growth import growth_field, head_base_points, lod_growth, vertex_growth

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams


def pose_growth(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams", lod: int,
                means: np.ndarray | None = None) -> np.ndarray:
    """(T, N_l + n_parts) float32 >= 1: every Gaussian's scale factor for every frame of ``params``
    (avatar.stretch_growth: the head's Gaussians grow where the skin stretches beyond what they
    were sized for; the parts keep their size). ``means``: ``pose``'s output for these frames,
    when already made (its head's LOD-0 rows are all this reads)."""
    V = model.n_verts
    base = head_base_points(avatar, model, params, lod) if means is None else means[:, :V]
    g = lod_growth(vertex_growth(base, growth_field(avatar, model, lod)), model_lods(model, [lod])[lod].upsample)
    return np.concatenate([g, np.ones((g.shape[0], avatar.n_parts), np.float32)], 1)


def posed_set(avatar: GaussianAvatar, model: "HeadModel", params: "HeadParams", lod: int, frame: int = 0,
              rotate_parts: bool = False, grow: bool = True):
    """The LOD's full GaussianSet (head, then parts) moved to frame ``frame`` of ``params``.

    With ``rotate_parts`` the parts' Gaussians also turn with their skinning rotation (an eyeball
    looking sideways, the body under a turned head); by default only positions move, as the paper
    poses its Gaussians. With ``grow`` the head's Gaussians grow where the frame stretches the
    skin beyond what they were sized for (``pose_growth``; 1 at the avatar's source frame)."""
    p = params.frame(frame)
    means = pose(avatar, model, p, lod)
    gs = avatar.rest_set(lod).with_means(means[0])
    if grow:
        gs = gs.with_scales(gs.scales * pose_growth(avatar, model, p, lod, means)[0][:, None])
    if rotate_parts and avatar.n_parts:
        _, q = pose_parts(avatar, model, p, rotations=True)
        quats = gs.quats.copy()
        quats[len(avatar.lods[lod]):] = q[0]
        gs = GaussianSet(gs.means, quats, gs.scales, gs.opacities, gs.colors, gs.features)
    return gs
