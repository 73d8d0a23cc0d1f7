"""Blended linear skinning of rigid parts: per-point blend weights, rest <-> source-pose mapping.

A part's Gaussian at rest ``p`` goes to ``M(w) p`` with ``M(w) = sum_j w_j A_j`` (A: the head
model's (J, 4, 4) skinning transforms of a frame, joints global, neck, jaw, eye_L, eye_R). Parts are
built where the photo shows them (the source pose) and mapped to rest with ``M(w)^-1``, so posing at
the source frame gives back exactly the positions the photo was sampled at.
"""

from __future__ import annotations

import numpy as np

GLOBAL, NECK = 0, 1
N_JOINTS = 5


def blended(weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    """weights (N, J) rows sum to 1, A (J, 4, 4) -> (N, 4, 4) float64 blended transforms."""
    return np.einsum("nj,jrc->nrc", np.asarray(weights, np.float64), np.asarray(A, np.float64))


def to_rest(points: np.ndarray, weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    """(N, 3) source-pose world points -> (N, 3) float32 rest points (inverse blended transform)."""
    M = blended(weights, A)
    rhs = np.asarray(points, np.float64) - M[:, :3, 3]
    return np.linalg.solve(M[:, :3, :3], rhs[..., None])[..., 0].astype(np.float32)


def neck_global_weights(neck_share: np.ndarray) -> np.ndarray:
    """(N,) share of the neck joint in [0, 1] -> (N, J) float32 weights (the rest on global)."""
    s = np.clip(np.asarray(neck_share, np.float32), 0.0, 1.0)
    w = np.zeros((len(s), N_JOINTS), np.float32)
    w[:, NECK] = s
    w[:, GLOBAL] = 1.0 - s
    return w


def quats_to_rest(frames: np.ndarray, weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    """(N, 3, 3) source-pose local frames (columns = axes) -> (N, 4) float32 rest quaternions
    w,x,y,z: the inverse of posing's rotation of part Gaussians (posing.blended_quats turns a rest
    quaternion q into ``b * q``), so posing at the source frame gives back ``frames``."""
    from ..rotations import matrix_to_quat, quat_multiply
    from .posing import blended_quats

    b = blended_quats(weights, np.asarray(A)[None])[0]                          # (N, 4)
    b_inv = b * np.array([1.0, -1.0, -1.0, -1.0])                               # unit: conjugate
    q = quat_multiply(b_inv, matrix_to_quat(np.asarray(frames, np.float64)).astype(np.float64))
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return (q * np.where(q[:, :1] < 0, -1.0, 1.0)).astype(np.float32)
