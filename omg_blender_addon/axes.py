"""Head-model frame <-> Blender frame (the only place the axis change is written down).

The backend uses FLAME's frame (+Y up, +Z out of the face); Blender is Z-up with the front view
looking along +Y, so a model point (x, y, z) lands at Blender (x, -z, y): a +90 degree rotation
about X. The face then looks towards -Y, Blender's "front".
Pure numpy (no bpy): the worker thread uses it too. Rotation maths: backend.rotations.
"""

from __future__ import annotations

import numpy as np

from ..backend.rotations import quat_multiply

# Columns are the model axes expressed in Blender: model +X -> +X, +Y -> +Z, +Z -> -Y.
MODEL_TO_BLENDER = np.array([[1.0, 0.0, 0.0],
                             [0.0, 0.0, -1.0],
                             [0.0, 1.0, 0.0]], np.float64)
# The same rotation as a unit quaternion (w, x, y, z): +90 degrees about X.
Q_MODEL_TO_BLENDER = np.array([np.sqrt(0.5), np.sqrt(0.5), 0.0, 0.0], np.float64)


def points_to_blender(p: np.ndarray) -> np.ndarray:
    """(..., 3) model-frame points or vectors -> Blender frame (float32)."""
    p = np.asarray(p, np.float64)
    return np.stack([p[..., 0], -p[..., 2], p[..., 1]], -1).astype(np.float32)


def points_to_model(p: np.ndarray) -> np.ndarray:
    """(..., 3) Blender-frame points or vectors -> model frame (float32)."""
    p = np.asarray(p, np.float64)
    return np.stack([p[..., 0], p[..., 2], -p[..., 1]], -1).astype(np.float32)


def quats_to_blender(q: np.ndarray) -> np.ndarray:
    """(N, 4) w,x,y,z orientations in the model frame -> Blender frame (R_b = C R_m), float32."""
    return quat_multiply(Q_MODEL_TO_BLENDER, q).astype(np.float32)


def quats_to_model(q: np.ndarray) -> np.ndarray:
    """Inverse of :func:`quats_to_blender` (R_m = C^T R_b), float32."""
    conj = Q_MODEL_TO_BLENDER * np.array([1.0, -1.0, -1.0, -1.0])
    return quat_multiply(conj, q).astype(np.float32)
