"""ARKit's 52 blendshape names (the stand-in's expression basis) and the stand-in's earlier basis.

A head model whose expression names are exactly ``ARKIT_NAMES`` has ARKit semantics: each
coefficient is a blendshape weight in [0, 1] (``HeadModel.expr_bounds``), and the tracker solves
for it inside those bounds. FLAME keeps its unbounded ``exp_000...`` PCA components.
"""

from __future__ import annotations

import numpy as np

#: ARKit's 52 blendshape names, exact camelCase, in Live Link Face's CSV column order.
ARKIT_NAMES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft",
    "eyeSquintLeft", "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight",
    "eyeLookOutRight", "eyeLookUpRight", "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft",
    "jawRight", "jawOpen", "mouthClose", "mouthFunnel", "mouthPucker", "mouthLeft", "mouthRight",
    "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "mouthDimpleLeft",
    "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight", "mouthRollLower", "mouthRollUpper",
    "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft", "browDownRight",
    "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)

#: ARKit channels that rotate a joint (radians at weight 1, axis-angle about the joint's axis):
#: (name, joint name, axis index, radians). The stand-in's shape keys of the same name are the
#: linearised rotation of the skin (for shape-key-only consumers); imports and the tracker put
#: them on the joint, which also moves the parts skinned to it (lower teeth, tongue, eyeballs).
#: Signs: +X turns chin/gaze down, +Y turns it towards +X (the subject's left).
JOINT_CHANNELS: tuple[tuple[str, str, int, float], ...] = (
    ("jawOpen", "jaw", 0, 0.35), ("jawLeft", "jaw", 1, 0.1), ("jawRight", "jaw", 1, -0.1),
    ("eyeLookDownLeft", "eye_L", 0, 0.35), ("eyeLookUpLeft", "eye_L", 0, -0.35),
    ("eyeLookOutLeft", "eye_L", 1, 0.45), ("eyeLookInLeft", "eye_L", 1, -0.45),
    ("eyeLookDownRight", "eye_R", 0, 0.35), ("eyeLookUpRight", "eye_R", 0, -0.35),
    ("eyeLookOutRight", "eye_R", 1, -0.45), ("eyeLookInRight", "eye_R", 1, 0.45),
)

#: ARKit shapes that face landmarks cannot observe: mediapipe has no tongue landmark, so fitting
#: tongueOut from landmarks only finds its side effect on the lower lip and mistakes it for an
#: opening mouth (clip d12's "O" frames fitted it at 0.5-1.0, which now pushes the tongue part out).
#: Landmark fits hold them at 0; captures and imports still set them.
LANDMARK_UNOBSERVED: tuple[str, ...] = ("tongueOut",)

#: The stand-in's expression names before ARKit-52 (generator version 2, avatars of 2026-11).
LEGACY_STANDIN_NAMES: tuple[str, ...] = (
    "smile_L", "smile_R", "frown_L", "frown_R", "lip_pucker", "lips_press", "blink_L", "blink_R",
    "brow_up_L", "brow_up_R", "brow_down_L", "brow_down_R", "mouth_stretch", "cheek_puff", "jaw_open",
    "mouth_left", "mouth_right", "upper_lip_up", "lower_lip_down", "nose_wrinkle", "squint_L", "squint_R",
    "eye_wide_L", "eye_wide_R",
)
#: legacy name -> [(ARKit name, weight per unit)]: the nearest ARKit shapes of each old one.
LEGACY_TO_ARKIT: dict[str, list[tuple[str, float]]] = {
    "smile_L": [("mouthSmileLeft", 1.0)], "smile_R": [("mouthSmileRight", 1.0)],
    "frown_L": [("mouthFrownLeft", 1.0)], "frown_R": [("mouthFrownRight", 1.0)],
    "lip_pucker": [("mouthPucker", 1.0)],
    "lips_press": [("mouthPressLeft", 1.0), ("mouthPressRight", 1.0)],
    "blink_L": [("eyeBlinkLeft", 1.0)], "blink_R": [("eyeBlinkRight", 1.0)],
    "brow_up_L": [("browOuterUpLeft", 1.0), ("browInnerUp", 0.5)],
    "brow_up_R": [("browOuterUpRight", 1.0), ("browInnerUp", 0.5)],
    "brow_down_L": [("browDownLeft", 1.0)], "brow_down_R": [("browDownRight", 1.0)],
    "mouth_stretch": [("mouthStretchLeft", 1.0), ("mouthStretchRight", 1.0)],
    "cheek_puff": [("cheekPuff", 1.0)], "jaw_open": [("jawOpen", 0.25 / 0.35)],
    "mouth_left": [("mouthLeft", 1.0)], "mouth_right": [("mouthRight", 1.0)],
    "upper_lip_up": [("mouthUpperUpLeft", 1.0), ("mouthUpperUpRight", 1.0)],
    "lower_lip_down": [("mouthLowerDownLeft", 1.0), ("mouthLowerDownRight", 1.0)],
    "nose_wrinkle": [("noseSneerLeft", 1.0), ("noseSneerRight", 1.0)],
    "squint_L": [("eyeSquintLeft", 1.0)], "squint_R": [("eyeSquintRight", 1.0)],
    "eye_wide_L": [("eyeWideLeft", 1.0)], "eye_wide_R": [("eyeWideRight", 1.0)],
}


def is_arkit(names) -> bool:
    """True when ``names`` are exactly ARKit's 52, in Live Link Face's order."""
    return tuple(names) == ARKIT_NAMES


def legacy_to_arkit(expr: np.ndarray) -> np.ndarray:
    """(T, 24) coefficients of the stand-in's old basis -> (T, 52) ARKit weights (nearest shapes,
    clipped to [0, 1]: the old basis had signed coefficients, ARKit's are one-sided)."""
    expr = np.asarray(expr, np.float64)
    out = np.zeros((expr.shape[0], len(ARKIT_NAMES)))
    for i, old in enumerate(LEGACY_STANDIN_NAMES):
        for new, gain in LEGACY_TO_ARKIT[old]:
            out[:, ARKIT_NAMES.index(new)] += gain * expr[:, i]
    return np.clip(out, 0.0, 1.0).astype(np.float32)
