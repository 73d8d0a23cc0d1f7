"""The parts inside the head: the mouth interior and the eyeballs, built for one identity and
coloured from its photo (used by the analytic and the learned build alike).

Order of the returned parts: teeth_upper, teeth_lower, gums, tongue, cavity, eye_L, eye_R (those the
head model supports: no lip landmarks -> no mouth, no eyeball vertices -> no eyes).

Shape keys: a head model whose expressions include ARKit's joint channels (JOINT_CHANNELS:
jawOpen, jawLeft/Right, eyeLook*) has them as shape keys too, the linearised joint rotation of its
skin (for shape-key-only consumers such as a Blender slider; the tracker and imports put those
channels on the joints). The parts get the same keys (``joint_channel_shapes``), so a jawOpen key
moves the lower teeth, tongue and cavity floor with the lower lip, and an eyeLook key turns the
eyeballs with their lids. The mouth parts also get clamped keys (SkinnedPart.clamped,
``beyond_source_shapes``): an extra jaw drop that acts only where mouthFunnel or mouthLowerDown
exceeds the photo's own fitted value.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from .eyes import EYE_JOINTS, EyeOptions, build_eye_parts, color_eyes_from_photo
from .gaussians import ClampedShape, SkinnedPart
from .mouth import MouthOptions, build_mouth_parts, color_mouth_from_photo, teeth_options_from_photo
from .posing import part_transforms, shaped_part_means, shaped_vertices, skin_points

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


#: Expressions that open the jaw a little under the lips for the parts alone: (name, joint, axis,
#: radians at weight 1). An "O" (mouthFunnel) parts the lips with the head's key and drops the
#: jaw a few degrees; the skin key carries the lips (the chin hardly moves), the parts' key the
#: lower teeth and the tongue, so the ring shows the cavity between the rows of teeth.
#: The lower lip pulled down (mouthLowerDownLeft/Right) has no jaw turn of its own (0 rad at weight 1):
#: its parts' key exists only beyond the photo's own value (PART_JAW_BEYOND_SOURCE, a clamped key).
PART_JAW_CHANNELS: tuple[tuple[str, str, int, float], ...] = (
    ("mouthFunnel", "jaw", 0, 0.06), ("mouthLowerDownLeft", "jaw", 0, 0.0), ("mouthLowerDownRight", "jaw", 0, 0.0))

#: Extra jaw drop of the parts per unit of a PART_JAW_CHANNELS expression beyond the photo's own
#: value (name: radians at weight 1), as clamped keys (SkinnedPart.clamped, ``beyond_source_shapes``):
#: the parts move by ``max(e - s, 0)`` times the turn, s the photo's own fitted weight, so at and below
#: the photo's value nothing moves (the parts sit where the linear PART_JAW_CHANNELS key puts them)
#: and the photo's view is unchanged by construction (the rest positions are not touched).
#: The tracker's open "O" is mouthFunnel 0.4-0.77 over an almost closed jaw, so 0.06 rad leaves a
#: bar of lower teeth where a clip shows a dark mouth (issue 14); but the photo fit also uses the
#: funnel for toothy smiles (0.3-0.45), whose teeth the photo shows where they are (and the
#: tracker's resting funnel on the clips' own first frames is 0.5-0.6): hence beyond the photo's.
#: Until the thirteenth session this was one linear key (slope 0.06 + b, the parts' rest turned back
#: by b s), which closes the rows below the photo's funnel as fast as it opens them above it: at
#: b = 0.42 (d12's pursed "o" frames showed the cavity instead of the tongue, mouth PSNR 17.86 ->
#: 18.15 dB) the CI ARKit round trip (tests/eval/test_arkit_roundtrip.py, no funnel driven, the
#: astronaut's photo funnel 0.31) fell to eyeBlinkLeft 0.79 and mouthSmileLeft 0.79 against its 0.8
#: floor, so it stayed at 0.18. The clamped key is flat below s, so the steeper 0.42 is used
#: (docs/figures/eval.md, mouth section: d12 mouth PSNR 17.86 -> 18.15 dB, d3 20.25 -> 20.37, the CI
#: round trip's lowest 0.86, bench arkit 16 of 20 as before). Its costs: d12's closed frame 45 (face
#: PSNR -0.30 dB, beyond the photo's funnel), and d0's talking frames, below its photo's funnel, that
#: scored better with the rows closing (PSNR full 26.234 -> 26.210 dB). Every consumer of part keys poses it alike: numpy and
#: torch posing (numba takes the shaped rest), the .omgavatar file, and Blender (a shape key driven
#: by ``max(head - s, 0)``, a simple expression).
#: The lower lip pulled down (mouthLowerDownLeft/Right) beyond the photo's own pull turns the lower
#: teeth and gums down too, 0.05 rad per side per unit. The tracker reads d12's open frames as
#: mouthLowerDown ~1 on both sides (its photo 0.19 / 0.10) whatever the jaw does: the head's key
#: pulls the lower lip down (2 mm per side at its inner midpoint on the stand-in) while the lower
#: teeth, on the jaw, stayed where the lip had covered them (frame 105: a pale strip of lower teeth
#: along the lower lip, where the clip shows the tongue). 0.05 rad is enough to take them under the
#: lip there: 0.05, 0.10 and 0.20 scored alike as linear keys (d12 mouth PSNR 17.73 -> 17.86 dB,
#: frame 105 19.13 -> 20.13); as a linear key its cost was below the photo's pull (d3's photo is
#: fitted with 0.78 / 0.71, its talking frames below that raised the lower teeth into the parted
#: lips: face PSNR -0.01 to -0.39 dB on frames 30-75), which the clamped key no longer pays.
PART_JAW_BEYOND_SOURCE: dict[str, float] = {"mouthFunnel": 0.42, "mouthLowerDownLeft": 0.05,
                                            "mouthLowerDownRight": 0.05}

#: The parts a PART_JAW_BEYOND_SOURCE channel turns (a channel not named here: every part with jaw
#: weight). mouthLowerDown leaves the tongue and cavity to the jaw and the funnel: turned with it
#: (0.025-0.10 rad per side) the tongue drops out of the pursed "o" frames' opening (d12 frames 75,
#: 90: +0.7 to +2 dB), but equally out of the wide "ah" frames (150-180), where the clip shows it
#: (-0.3 to -4 dB): d12 mouth PSNR 17.85 (0.025), 17.70 (0.05), 17.19 (0.10) against 17.73 dB. The
#: channel cannot tell the two apart (both read mouthLowerDown ~1, mouthFunnel ~1). On the "o" frames
#: it is the tongue, not the lower teeth, that fills the opening (frame 75 scores the same with or
#: without the lower teeth's key).
PART_JAW_BEYOND_PARTS: dict[str, tuple[str, ...]] = {"mouthLowerDownLeft": ("teeth_lower", "gums"),
                                                     "mouthLowerDownRight": ("teeth_lower", "gums")}


def joint_channel_shapes(model: "HeadModel", joints: np.ndarray, points: np.ndarray,
                         weights: np.ndarray) -> dict[str, np.ndarray]:
    """{expression name: (N, 3) float32 metres per unit weight} for points (N, 3) at rest skinned
    with ``weights`` (N, J), about the identity's rest ``joints`` (J, 3): ``w_j (R - I) (x - J_j)``
    for each joint channel (ARKit's JOINT_CHANNELS and PART_JAW_CHANNELS) the model has as an
    expression and that moves some point (the same linearisation as the stand-in's own keys,
    head/standin/generator._rot_delta)."""
    from ..head.arkit_names import JOINT_CHANNELS
    from ..head.model import JOINT_NAMES

    names = set(model.expr_names)
    out: dict[str, np.ndarray] = {}
    for name, joint, axis, angle in JOINT_CHANNELS + PART_JAW_CHANNELS:
        j = list(JOINT_NAMES).index(joint)
        if name not in names or not angle or not np.any(weights[:, j] > 0):
            continue  # (a part channel of 0 rad has a key only beyond the photo: beyond_source_shapes)
        out[name] = _channel_shape(joint, axis, angle, joints, points, weights)
    return out


def beyond_source_shapes(model: "HeadModel", joints: np.ndarray, part: SkinnedPart,
                         source_expr: np.ndarray) -> None:
    """Give ``part`` (at rest, its joint-channel keys already set) the PART_JAW_BEYOND_SOURCE extra
    turn as clamped keys (SkinnedPart.clamped), in place: for each such channel c with the photo's
    value s = ``source_expr`` (E,) [c], the clamped key starts at s with delta ``D(a + b) - D(a)``
    (D(t): the turn by t radians about the channel's joint axis, angle a of PART_JAW_CHANNELS plus
    the extra b; D(0) = 0). Each unit of c beyond s turns the parts a + b radians; at and below s
    the clamped key is flat, so the parts at the photo's expression (and below it) are where the
    linear D(a) key alone puts them, exactly: the rest positions are not touched. Deltas (N, 3)
    metres per unit."""
    from ..head.model import JOINT_NAMES

    names = list(model.expr_names)
    e = np.asarray(source_expr, np.float32).reshape(-1)
    w = part.weights
    means = part.gaussians.means
    for name, joint, axis, angle in PART_JAW_CHANNELS:
        extra = PART_JAW_BEYOND_SOURCE.get(name, 0.0)
        only = PART_JAW_BEYOND_PARTS.get(name)
        if (not extra or name not in names or not np.any(w[:, list(JOINT_NAMES).index(joint)] > 0)
                or (only is not None and part.name not in only)):
            continue
        k = names.index(name)
        s = float(e[k]) if k < len(e) else 0.0
        base = part.shapes.get(name, np.zeros_like(means, dtype=np.float32))
        steeper = _channel_shape(joint, axis, angle + extra, joints, means, w)
        part.clamped[name] = ClampedShape(s, steeper - base)


def _channel_shape(joint: str, axis: int, angle: float, joints: np.ndarray, points: np.ndarray,
                   weights: np.ndarray) -> np.ndarray:
    """(N, 3) float32 ``w_j (R - I) (x - J_j)`` for a turn of ``angle`` radians about ``axis`` of
    ``joint`` (points (N, 3), weights (N, J), rest joints (J, 3))."""
    from ..head.model import JOINT_NAMES
    from ..rotations import axis_angle_to_matrix

    j = list(JOINT_NAMES).index(joint)
    aa = np.zeros(3)
    aa[axis] = angle
    R = axis_angle_to_matrix(aa) - np.eye(3)
    return (weights[:, j:j + 1] * ((points - joints[j]) @ R.T)).astype(np.float32)


def _skin_depth(model: "HeadModel", params: "HeadParams", camera: "Camera",
                offsets: np.ndarray | None = None) -> np.ndarray:
    """(H, W) float32 camera z (inf = empty) of the head mesh at the source frame without the
    faces of its eyeballs (all three corners eye-skinned): the skin that hides an eyeball.
    offsets: (V, 3) the avatar's vertex_offsets (rest frame) or None."""
    from ..render.depth import rasterize_depth
    from .posing import lbs_numpy, rotate_blended

    verts, _, A = lbs_numpy(model, params.frame(0))
    verts = verts[0] if offsets is None else verts[0] + rotate_blended(offsets, model.weights, A)[0]
    eye = model.weights[:, 3] + model.weights[:, 4] > 0.5
    faces = np.asarray(model.faces)
    return rasterize_depth(verts, faces[~eye[faces].all(1)], camera).depth


def interior_parts(model: "HeadModel", params: "HeadParams", camera: "Camera", photo: np.ndarray | None,
                   landmarks_px: np.ndarray | None, mouth: MouthOptions | None = None,
                   eyes: EyeOptions | None = None, offsets: np.ndarray | None = None) -> list[SkinnedPart]:
    """Mouth and eye parts at rest for the identity ``params.shape``.

    photo (H, W, 3) float32 [0, 1] at the camera's resolution and landmarks_px (478, 2) in its
    pixels colour the parts (None: defaults); ``params`` (T=1) is the photo's fitted frame;
    ``offsets`` (V, 3): the avatar's vertex_offsets (landmark_detail): the parts are shaped on the
    surface they give (the lips, lids and eyeballs where the photo shows them), while the joints
    they turn about stay the shaped template's, as posing's are."""
    mouth = mouth or MouthOptions()
    eyes = eyes or EyeOptions()
    base = shaped_vertices(model, params.shape)
    rest = base if offsets is None else (base + offsets).astype(np.float32)
    skin = ~mouth_band(model, rest) & (model.weights[:, 3] + model.weights[:, 4] < 0.5)
    joints = model.rest_joints(base)

    def with_channels(ps: list[SkinnedPart]) -> list[SkinnedPart]:
        for p in ps:
            p.shapes = {**joint_channel_shapes(model, joints, p.gaussians.means, p.weights), **p.shapes}
            beyond_source_shapes(model, joints, p, params.expr[0])
        return ps

    def posed_at_source(ps: list[SkinnedPart]) -> list[np.ndarray]:
        A = part_transforms(model, params.frame(0))
        return [skin_points(shaped_part_means([p], model, params.expr[:1]), p.weights, A)[0] for p in ps]

    # the upper row's biting edge from the photo: hidden above the parting line when its open mouth
    # shows no upper teeth
    mouth = teeth_options_from_photo(photo, landmarks_px, mouth)
    parts = with_channels(build_mouth_parts(model, rest, skin, mouth))
    if parts and photo is not None and landmarks_px is not None:
        posed = posed_at_source(parts)
        color_mouth_from_photo(parts, posed, camera, photo, landmarks_px, mouth)
    eye_parts = with_channels(build_eye_parts(model, rest, photo, landmarks_px, eyes))
    if eye_parts and photo is not None and landmarks_px is not None:
        A = part_transforms(model, params.frame(0))
        posed = posed_at_source(eye_parts)
        centers = [skin_points(model.rest_joints(rest)[[EYE_JOINTS[p.name]]], p.weights[:1], A)[0, 0]
                   for p in eye_parts]
        color_eyes_from_photo(eye_parts, posed, centers, camera, photo, landmarks_px, eyes.photo_weight,
                              skin_depth=_skin_depth(model, params, camera, offsets))
    return parts + eye_parts
