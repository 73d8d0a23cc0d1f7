"""avatar.calibrate.without_similarity: the tracker offsets less their common shift, turn and scale.

A similarity part of the offsets (every landmark moved by one translation, small rotation and
scale) is what the fit's head pose and distance absorb: left in, it turns or moves the fitted head
on every frame. The function must remove exactly that part, over the free entries only.
"""

from __future__ import annotations

import numpy as np

from backend.avatar.calibrate import lip_landmarks, without_similarity


def _similarity(rest: np.ndarray, t: np.ndarray, w: np.ndarray, s: float) -> np.ndarray:
    q = rest - rest.mean(0)
    return t + np.cross(w, q) + s * q


def _rest(L: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 0.05, (L, 3)) + np.array([0.0, 0.0, 0.6])


def test_a_pure_similarity_is_removed_entirely():
    rest = _rest()
    off = _similarity(rest, np.array([1e-3, -2e-3, 4e-3]), np.array([0.01, -0.02, 0.005]), 0.03)
    out = without_similarity(off, rest, np.ones(off.shape, bool))
    assert np.abs(off).max() > 3e-3
    assert np.abs(out).max() < 1e-12


def test_the_nonrigid_part_is_kept_and_has_no_similarity_left():
    rest = _rest(seed=1)
    rng = np.random.default_rng(2)
    local = rng.normal(0, 1e-3, rest.shape)
    off = local + _similarity(rest, np.array([2e-3, 1e-3, 5e-3]), np.array([0.0, 0.03, 0.0]), -0.02)
    out = without_similarity(off, rest, np.ones(off.shape, bool))
    # removing it again changes nothing (the remainder is orthogonal to every similarity motion)
    np.testing.assert_allclose(without_similarity(out, rest, np.ones(off.shape, bool)), out, atol=1e-12)
    # and what is left is the local part less its own (small) similarity component
    np.testing.assert_allclose(out, without_similarity(local, rest, np.ones(off.shape, bool)), atol=1e-12)
    assert np.linalg.norm(out) > 0.9 * np.linalg.norm(local)


def test_only_free_entries_change():
    rest = _rest(seed=3)
    off = _similarity(rest, np.array([3e-3, 0.0, 0.0]), np.zeros(3), 0.0)
    free = np.ones(off.shape, bool)
    free[:10] = False          # e.g. the lips, left without offsets
    free[10:20, :2] = False    # e.g. the outline, depth only
    off[:10] = 0.0
    off[10:20, :2] = 0.0
    out = without_similarity(off, rest, free)
    np.testing.assert_array_equal(out[~free], off[~free])
    assert np.abs(out[free]).max() < 1e-12       # a common x shift of the free entries is all similarity


def test_lip_landmark_sets():
    inner, every = set(lip_landmarks("inner")), set(lip_landmarks("none"))
    assert lip_landmarks("all") == ()
    assert len(inner) == 20 and inner < every and len(every) == 40
    assert {61, 291, 13, 14} <= every       # mouth corners, inner lip midpoints
