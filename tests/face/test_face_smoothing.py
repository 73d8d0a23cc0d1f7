"""Zero-phase one-euro smoothing and gap filling."""

from __future__ import annotations

import numpy as np

from backend.face.smoothing import fill_gaps, smooth_track


def _pulse_track(seed=0):
    fps, T = 25.0, 120
    clean = np.zeros(T)
    clean[50:56] = 1.0  # the mouth snaps open for 6 frames (0.24 s)
    noisy = clean + np.random.default_rng(seed).normal(0.0, 0.05, T)
    return fps, clean, noisy


def test_smoothing_removes_jitter_without_lagging_a_fast_pulse():
    fps, clean, noisy = _pulse_track()
    sm = smooth_track(noisy[:, None], fps, strength=2.0)[:, 0]
    still = slice(0, 45)
    assert np.std(sm[still] - clean[still]) < 0.6 * np.std(noisy[still] - clean[still])
    assert sm[50:56].mean() > 0.85  # the open mouth keeps >= 85 % of its amplitude
    assert abs(int(np.argmax(sm)) - 52.5) <= 3  # and is not shifted in time
    # zero phase: the smoothed pulse's centre of mass stays where the true one is
    centre = (np.arange(40, 66) * sm[40:66]).sum() / sm[40:66].sum()
    assert abs(centre - 52.5) < 0.75


def test_strength_orders_smoothing_and_zero_is_identity():
    fps, _, noisy = _pulse_track(1)
    x = noisy[:, None]
    assert np.array_equal(smooth_track(x, fps, 0.0), x)
    jitter = [np.std(np.diff(smooth_track(x, fps, s)[:45, 0])) for s in (0.5, 1.0, 2.0, 4.0)]
    assert all(a > b for a, b in zip(jitter, jitter[1:]))


def test_fill_gaps_interpolates_and_holds_edges():
    x = np.arange(10, dtype=np.float64)[:, None] * np.array([[1.0, -2.0]])
    valid = np.ones(10, bool)
    valid[[0, 4, 5, 9]] = False
    out = fill_gaps(x, valid)
    np.testing.assert_allclose(out[4:6], x[4:6])  # linear data: interpolation is exact
    np.testing.assert_allclose(out[0], x[1])
    np.testing.assert_allclose(out[9], x[8])


def test_landmark_smoothing_removes_jitter_but_keeps_fast_motion():
    """d12-like motion: a landmark sweeping 30 px per frame with every third frame repeated, plus
    1 px jitter. The smoothed track stays within SMOOTH_MAX_PX of every observation (the motion is
    kept) and is steadier than the raw one where the landmark is still."""
    from backend.face.track import SMOOTH_MAX_PX, smooth_landmarks

    rng = np.random.default_rng(0)
    T = 90
    t = np.arange(T)
    x = np.where(t < 45, 0.0, 30.0 * (t - 45) - 10.0 * ((t - 45) // 3))   # still, then fast and jerky
    raw = np.stack([x, np.zeros(T)], 1)[:, None, :] + rng.normal(0.0, 1.0, (T, 1, 2))
    out = smooth_landmarks(raw, 25.0, 2.0)
    assert np.abs(out - raw).max() <= SMOOTH_MAX_PX + 1e-9
    still = slice(5, 40)
    assert np.diff(out[still], axis=0).std() < 0.7 * np.diff(raw[still], axis=0).std()
