"""Landmark-based metrics: AKD, expression distance, pose distance (pure numpy, vectorized).

Landmarks are (N, 2) or (N, 3) arrays in pixels (2-D sets are lifted with z = 0). Distances are
in pixels of the frame they are measured in: the report uses 512x512 frames, so "px at 512".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...rotations import axis_angle_to_matrix


def akd(landmarks_a: np.ndarray, landmarks_b: np.ndarray, indices: np.ndarray | None = None) -> float:
    """Average keypoint distance: mean 2-D Euclidean distance between corresponding landmarks."""
    a, b = np.asarray(landmarks_a, np.float64)[:, :2], np.asarray(landmarks_b, np.float64)[:, :2]
    if a.shape != b.shape:
        raise ValueError(f"landmark sets differ: {a.shape} vs {b.shape}")
    if indices is not None:
        a, b = a[indices], b[indices]
    return float(np.linalg.norm(a - b, axis=-1).mean())


AKD_GROUPS = ("lips", "eyes", "brows", "oval", "nose", "iris")


def akd_breakdown(landmarks_a: np.ndarray, landmarks_b: np.ndarray) -> dict[str, float]:
    """Where an AKD comes from: {group: mean 2-D distance (px) over that landmark group} for
    AKD_GROUPS (mediapipe's lips, both eyes' outlines, both brows, face oval, nose and the 10 iris
    points; the groups overlap a little and do not cover every landmark), plus "shift": the length
    (px) of the mean 2-D offset a - b, the part of the error one image translation would remove
    (AKD minus it is not the remainder: it bounds what a translation fixes)."""
    from .landmarks import N_LANDMARKS, regions

    a, b = np.asarray(landmarks_a, np.float64)[:, :2], np.asarray(landmarks_b, np.float64)[:, :2]
    if a.shape != b.shape:
        raise ValueError(f"landmark sets differ: {a.shape} vs {b.shape}")
    r = regions()
    groups = {"lips": r.lips, "eyes": np.r_[r.left_eye, r.right_eye], "brows": np.r_[r.left_brow, r.right_brow],
              "oval": r.face_oval, "nose": r.nose, "iris": np.arange(N_LANDMARKS - 10, N_LANDMARKS)}
    d = np.linalg.norm(a - b, axis=-1)  # (L,)
    out = {g: float(d[np.unique(groups[g])].mean()) for g in AKD_GROUPS}
    out["shift"] = float(np.linalg.norm((a - b).mean(0)))
    return out


def _lift3(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.shape[-1] == 2:
        x = np.concatenate([x, np.zeros(x.shape[:-1] + (1,))], axis=-1)
    return x


@dataclass
class Similarity:
    """dst ~ scale * R @ src + t for (N, 3) point sets."""

    scale: float
    R: np.ndarray  # (3, 3) proper rotation
    t: np.ndarray  # (3,)

    def apply(self, points: np.ndarray) -> np.ndarray:
        return self.scale * _lift3(points) @ self.R.T + self.t


def procrustes(src: np.ndarray, dst: np.ndarray, with_scale: bool = True) -> Similarity:
    """Least-squares similarity (Umeyama 1991) taking (N, 3) ``src`` onto ``dst``; reflections
    are excluded so R is a rotation."""
    x, y = _lift3(src), _lift3(dst)
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    cov = yc.T @ xc / len(x)  # (3, 3)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[-1] = -1.0
    R = u @ np.diag(d) @ vt
    var_x = (xc**2).sum() / len(x)
    scale = float((s * d).sum() / var_x) if with_scale and var_x > 0 else 1.0
    t = my - scale * R @ mx
    return Similarity(scale=scale, R=R, t=t)


def rotation_angle_deg(R: np.ndarray) -> np.ndarray | float:
    """Angle of (..., 3, 3) rotation matrices in degrees, in [0, 180]."""
    R = np.asarray(R, np.float64)
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) / 2.0
    out = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    return float(out) if np.ndim(out) == 0 else out


def _rigid_indices(rigid: np.ndarray | None) -> np.ndarray | slice:
    if rigid is not None:
        return rigid
    from .landmarks import regions

    return regions().rigid


def pose_distance_deg(landmarks_a: np.ndarray, landmarks_b: np.ndarray, rigid: np.ndarray | None = None) -> float:
    """Head rotation difference in degrees: the rotation of the Procrustes fit between the two
    sets' rigid landmarks (nose + upper face oval by default; mediapipe 478 indexing)."""
    idx = _rigid_indices(rigid)
    fit = procrustes(_lift3(landmarks_a)[idx], _lift3(landmarks_b)[idx])
    return rotation_angle_deg(fit.R)


def expression_distance(
    landmarks_a: np.ndarray,
    landmarks_b: np.ndarray,
    rigid: np.ndarray | None = None,
    expression: np.ndarray | None = None,
) -> float:
    """Mean distance (px of B's frame) of the mouth/eye/brow landmarks after aligning A onto B
    with a similarity fitted on the rigid landmarks (removes head pose, position and scale)."""
    idx = _rigid_indices(rigid)
    if expression is None:
        from .landmarks import regions

        expression = regions().expression
    a, b = _lift3(landmarks_a), _lift3(landmarks_b)
    fit = procrustes(a[idx], b[idx])
    aligned = fit.apply(a[expression])
    return float(np.linalg.norm(aligned - b[expression], axis=-1).mean())


def head_rotation_from_pose(pose: np.ndarray) -> np.ndarray:
    """(..., 5, 3) per-joint axis-angle in JOINT_NAMES order -> (..., 3, 3) head rotation in the
    world (global joint composed with the neck joint, its child)."""
    R = axis_angle_to_matrix(np.asarray(pose)[..., :2, :])
    return R[..., 0, :, :] @ R[..., 1, :, :]


def params_pose_distance_deg(pose_a: np.ndarray, pose_b: np.ndarray) -> np.ndarray | float:
    """Head rotation difference in degrees between fitted head parameters ((..., 5, 3) each)."""
    Ra, Rb = head_rotation_from_pose(pose_a), head_rotation_from_pose(pose_b)
    return rotation_angle_deg(np.swapaxes(Ra, -1, -2) @ Rb)
