"""lbs_numpy remembers the last few small parameter sets per head model: a repeated call returns
the same numbers as a fresh computation, as copies the caller may modify, and different
parameters are never confused."""

from __future__ import annotations

import numpy as np

from backend.avatar import posing
from backend.head.loader import load_head_model
from backend.head.params import HeadParams


def _params(model, seed: int, frames: int = 1) -> HeadParams:
    rng = np.random.default_rng(seed)
    return HeadParams(rng.normal(0, 0.5, model.n_shape).astype(np.float32),
                      rng.normal(0, 0.5, (frames, model.n_expr)).astype(np.float32),
                      rng.normal(0, 0.1, (frames, 5, 3)).astype(np.float32),
                      rng.normal(0, 0.01, (frames, 3)).astype(np.float32))


def test_repeated_lbs_is_the_fresh_result_and_a_copy():
    model = load_head_model(None)
    posing._LBS_CACHE.pop(model, None)
    p, q = _params(model, 0), _params(model, 1)
    first = posing.lbs_numpy(model, p)
    first[0][...] = 0.0  # the caller's copy: must not leak into the next call
    again = posing.lbs_numpy(model, p)
    other = posing.lbs_numpy(model, q)
    posing._LBS_CACHE.pop(model, None)
    fresh = posing.lbs_numpy(model, p)
    for a, b in zip(again, fresh):
        np.testing.assert_array_equal(a, b)
    assert np.abs(again[0]).max() > 0.05
    assert not np.allclose(other[0], fresh[0])
    # one coefficient one float step away is another parameter set
    expr = p.expr.copy()
    expr[0, 0] = np.nextafter(expr[0, 0], np.float32(np.inf))
    assert len(posing._LBS_CACHE[model]) == 1
    posing.lbs_numpy(model, HeadParams(p.shape, expr, p.pose, p.transl))
    assert len(posing._LBS_CACHE[model]) == 2

def test_long_sequences_are_not_remembered():
    model = load_head_model(None)
    posing._LBS_CACHE.pop(model, None)
    long = _params(model, 2, frames=posing._LBS_CACHE_MAX_FRAMES + 1)
    verts = posing.lbs_numpy(model, long)[0]
    assert verts.shape[0] == long.n_frames
    assert not posing._LBS_CACHE.get(model)
