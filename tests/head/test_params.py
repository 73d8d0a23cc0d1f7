"""HeadParams helpers."""

from __future__ import annotations

import numpy as np
import pytest

from backend.head import HeadModelError, HeadParams


def test_zeros_frame_save_load(tmp_path, tiny):
    p = HeadParams.zeros(tiny, T=3)
    assert (p.n_frames, p.shape.shape, p.expr.shape, p.pose.shape, p.transl.shape) == (
        3, (tiny.n_shape,), (3, tiny.n_expr), (3, 5, 3), (3, 3))
    p.expr[1, 2] = 0.5
    p.pose[1, 2, 0] = 0.2
    f = p.frame(1)
    assert f.n_frames == 1 and f.expr[0, 2] == 0.5 and f.pose[0, 2, 0] == np.float32(0.2)
    p.save(tmp_path / "p.npz")
    q = HeadParams.load(tmp_path / "p.npz")
    for k in ("shape", "expr", "pose", "transl"):
        np.testing.assert_array_equal(getattr(q, k), getattr(p, k))
        assert getattr(q, k).dtype == np.float32


def test_torso_channel_saves_slices_and_is_optional(tmp_path, tiny):
    p = HeadParams.zeros(tiny, T=3)
    assert p.torso is None
    p.save(tmp_path / "none.npz")
    assert HeadParams.load(tmp_path / "none.npz").torso is None    # older files: no channel
    t = HeadParams(p.shape, p.expr, p.pose, p.transl, np.arange(9, dtype=np.float32).reshape(3, 3))
    t.save(tmp_path / "t.npz")
    back = HeadParams.load(tmp_path / "t.npz")
    np.testing.assert_array_equal(back.torso, t.torso)
    np.testing.assert_array_equal(t.frame(2).torso, [[6, 7, 8]])
    np.testing.assert_array_equal(t.sliced(np.array([0, 2])).torso, t.torso[[0, 2]])
    with pytest.raises(ValueError, match="torso"):
        HeadParams(p.shape, p.expr, p.pose, p.transl, np.zeros((2, 3)))


def test_single_frame_promotion_and_errors(tmp_path):
    p = HeadParams(np.zeros(3), np.zeros(4), np.zeros((5, 3)), np.zeros(3))
    assert p.expr.shape == (1, 4) and p.pose.shape == (1, 5, 3) and p.transl.shape == (1, 3)
    with pytest.raises(ValueError):
        HeadParams(np.zeros(3), np.zeros((2, 4)), np.zeros((1, 5, 3)), np.zeros((2, 3)))
    (tmp_path / "bad.npz").write_bytes(b"nope")
    with pytest.raises(HeadModelError, match="bad.npz"):
        HeadParams.load(tmp_path / "bad.npz")
