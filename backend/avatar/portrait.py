"""The portrait beyond the face: hair volume and torso as skinned parts of the analytic build.

One call from the source frame: the head mesh's source-view depth buffer, the head/hair/body split
of the crop (regions.py), the torso shell (body.py, built first: hair lying on it sits in front of
it) and the hair volume (hair.py). Each part is (name, Gaussians at rest, (N, 5) weights).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from .body import BodyOptions, build_body
from .gaussians import GaussianSet
from .hair import HairOptions, build_hair, surface_points
from .inside_head import inside_rows
from .posing import lbs_numpy
from .regions import PortraitRegions, RegionOptions, portrait_regions

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams
    from ..render.camera import Camera


@dataclass
class PortraitOptions:
    regions: RegionOptions = field(default_factory=RegionOptions)
    body: BodyOptions = field(default_factory=BodyOptions)
    hair: HairOptions = field(default_factory=HairOptions)
    outside_head: bool = True         # the torso's and hair's Gaussians inside the head mesh are dropped
    head_surface_m: float = 0.002     # ... tested against the mesh's surface sampled this finely


@dataclass
class PortraitParts:
    """parts: [(name, GaussianSet at rest, weights (N, 5) float32)] in the order "body", "hair"
    (empty ones left out); regions: the pixel split they were built from; sides: {part name: (rows
    (K,) int64 into its Gaussians, side colours (K, 3) float32)}, the Gaussians whose colour away
    from the source view differs (view_colors.py): the torso's grazing columns, and its ring with
    the colours it is built with (BodyResult.view_sides)."""

    parts: list[tuple[str, GaussianSet, np.ndarray]]
    regions: PortraitRegions
    sides: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)


def portrait_parts(model: "HeadModel", params: "HeadParams", camera: "Camera", photo: np.ndarray,
                   mask: np.ndarray, landmarks: np.ndarray, opts: PortraitOptions | None = None) -> PortraitParts:
    """Body and hair parts from the source frame ``params`` (T=1).

    photo (H, W, 3) float32 [0, 1] and mask (H, W) float32 at the camera's resolution; landmarks
    (478, 2) float32 crop pixels."""
    from ..head.params import HeadParams
    from ..render.depth import rasterize_depth

    opts = opts or PortraitOptions()
    verts, joints, _ = lbs_numpy(model, params)
    neutral = HeadParams(params.shape, np.zeros_like(params.expr), params.pose, params.transl)
    A = lbs_numpy(model, neutral)[2][0]
    db = rasterize_depth(verts[0], model.faces, camera)
    regions = portrait_regions(photo, mask, db.mask, landmarks, opts.regions)
    body = build_body(photo, mask, regions, camera, joints[0, 1], A, opts.body)
    hair = build_hair(photo, mask, regions, camera, model, params, db, body.front_depth, opts.hair)
    if opts.outside_head:
        # the torso's rows pass through the neck, which is no ellipse, and the hair's inner edge
        # through the head below the ears: the crossings showed on a turned head as loops and dots
        # of clothing and hair colour drawn on the neck and the jaw (inside_head.py)
        head_surface = surface_points(model.shaped(params.shape), model.faces, opts.head_surface_m)
        body = body.take(~inside_rows(body.gaussians.means, head_surface))
        out = ~inside_rows(hair.gaussians.means, head_surface)
        hair = replace(hair, gaussians=hair.gaussians.take(out), weights=hair.weights[out],
                       n_fine=int(out[:hair.n_fine].sum()))
    parts = [(name, g, w) for name, g, w in (("body", body.gaussians, body.weights),
                                             ("hair", hair.gaussians, hair.weights)) if len(g)]
    sides = {"body": body.view_sides()} if len(body.gaussians) else {}
    return PortraitParts(parts, regions, sides)
