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


def to_world(points: np.ndarray, weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    """(N, 3) rest points -> (N, 3) float32 posed points (the posing formula, for checks)."""
    M = blended(weights, A)
    return (np.einsum("nrc,nc->nr", M[:, :3, :3], np.asarray(points, np.float64)) + M[:, :3, 3]).astype(np.float32)


def neck_global_weights(neck_share: np.ndarray) -> np.ndarray:
    """(N,) share of the neck joint in [0, 1] -> (N, J) float32 weights (the rest on global)."""
    s = np.clip(np.asarray(neck_share, np.float32), 0.0, 1.0)
    w = np.zeros((len(s), N_JOINTS), np.float32)
    w[:, NECK] = s
    w[:, GLOBAL] = 1.0 - s
    return w


def frames_to_rest(frames: np.ndarray, weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    """(N, 3, 3) source-pose local frames (columns = axes) -> (N, 3, 3) rest frames.

    The blended rotation is not exactly orthonormal; the result is projected back onto the
    rotations (SVD), which is what a quaternion can hold."""
    M = blended(weights, A)[:, :3, :3]
    R = np.linalg.solve(M, np.asarray(frames, np.float64))
    U, _, Vt = np.linalg.svd(R)
    D = np.ones((len(R), 3))
    D[:, 2] = np.sign(np.linalg.det(U @ Vt))
    return (U * D[:, None, :]) @ Vt
