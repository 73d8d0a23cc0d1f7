"""rotate_blended (vectorized) against a plain per-point reference."""

from __future__ import annotations

import numpy as np

from backend.avatar.posing import rotate_blended


def _reference(offsets: np.ndarray, weights: np.ndarray, A: np.ndarray) -> np.ndarray:
    out = np.zeros((A.shape[0], len(offsets), 3))
    for t in range(A.shape[0]):
        for n in range(len(offsets)):
            R = sum(weights[n, j] * A[t, j, :3, :3] for j in range(A.shape[1]))
            out[t, n] = R @ offsets[n]
    return out


def test_rotate_blended_matches_per_point_reference() -> None:
    rng = np.random.default_rng(3)
    offsets = rng.normal(size=(40, 3)).astype(np.float32)
    weights = rng.random((40, 5)).astype(np.float32)
    weights /= weights.sum(1, keepdims=True)
    A = np.tile(np.eye(4, dtype=np.float32), (3, 5, 1, 1))
    A[:, :, :3, :3] += 0.3 * rng.normal(size=(3, 5, 3, 3)).astype(np.float32)
    A[:, :, :3, 3] = rng.normal(size=(3, 5, 3))  # translations must not leak into rotated vectors
    np.testing.assert_allclose(rotate_blended(offsets, weights, A), _reference(offsets, weights, A), atol=1e-5)
