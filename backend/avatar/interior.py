"""The parts inside the head: the mouth interior and the eyeballs, built for one identity and
coloured from its photo (used by the analytic and the learned build alike).

Order of the returned parts: teeth_upper, teeth_lower, gums, tongue, cavity, eye_L, eye_R (those the
head model supports: no lip landmarks -> no mouth, no eyeball vertices -> no eyes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .eyes import EYE_JOINTS, EyeOptions, build_eye_parts, color_eyes_from_photo
from .gaussians import SkinnedPart
from .mouth import MouthOptions, build_mouth_parts, color_mouth_from_photo
from .posing import part_transforms, shaped_vertices, skin_points

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..head.params import HeadParams
    from ..render.camera import Camera


def mouth_band(model: "HeadModel", rest: np.ndarray) -> np.ndarray:
    """(V,) bool: the LOD-0 mesh's mouth band (sampling.mouth_interior) on rest vertices (V, 3)."""
    import scipy.sparse as sp

    from .attributes import unique_edges
    from .sampling import jaw_stretch, mouth_interior

    U = sp.identity(model.n_verts, format="csr")
    return mouth_interior(model, rest, jaw_stretch(model, rest, U, unique_edges(model.faces)))


def interior_parts(model: "HeadModel", params: "HeadParams", camera: "Camera", photo: np.ndarray | None,
                   landmarks_px: np.ndarray | None, mouth: MouthOptions | None = None,
                   eyes: EyeOptions | None = None) -> list[SkinnedPart]:
    """Mouth and eye parts at rest for the identity ``params.shape``.

    photo (H, W, 3) float32 [0, 1] at the camera's resolution and landmarks_px (478, 2) in its
    pixels colour the parts (None: defaults); ``params`` (T=1) is the photo's fitted frame."""
    mouth = mouth or MouthOptions()
    eyes = eyes or EyeOptions()
    rest = shaped_vertices(model, params.shape)
    skin = ~mouth_band(model, rest) & (model.weights[:, 3] + model.weights[:, 4] < 0.5)
    parts = build_mouth_parts(model, rest, skin, mouth)
    if parts and photo is not None and landmarks_px is not None:
        A = part_transforms(model, params.frame(0))
        posed = [skin_points(p.gaussians.means, p.weights, A)[0] for p in parts]
        color_mouth_from_photo(parts, posed, camera, photo, landmarks_px, mouth)
    eye_parts = build_eye_parts(model, rest, photo, landmarks_px, eyes)
    if eye_parts and photo is not None and landmarks_px is not None:
        A = part_transforms(model, params.frame(0))
        posed = [skin_points(p.gaussians.means, p.weights, A)[0] for p in eye_parts]
        centers = [skin_points(model.rest_joints(rest)[[EYE_JOINTS[p.name]]], p.weights[:1], A)[0, 0]
                   for p in eye_parts]
        color_eyes_from_photo(eye_parts, posed, centers, camera, photo, landmarks_px, eyes.photo_weight)
    return parts + eye_parts
