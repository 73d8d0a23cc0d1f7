"""Shared fixtures: a small random FLAME-layout model and the (freshly generated) stand-in."""

from __future__ import annotations

import os

import numpy as np
import pytest

from backend.head import HeadModel, LandmarkEmbedding, load_head_model
from backend.head.model import PARENTS


def random_model(V: int = 40, S: int = 6, E: int = 4, seed: int = 0) -> HeadModel:
    """Tiny model with random bases, correctives and soft skinning weights (for LBS/loader tests)."""
    rng = np.random.default_rng(seed)
    v = rng.normal(0, 0.05, (V, 3)).astype(np.float32)
    faces = np.stack([np.arange(V - 2), np.arange(1, V - 1), np.arange(2, V)], 1).astype(np.int64)
    w = rng.random((V, 5)).astype(np.float32) ** 3
    w /= w.sum(1, keepdims=True)
    J = rng.random((5, V)).astype(np.float32)
    J /= J.sum(1, keepdims=True)
    return HeadModel(
        name="random", v_template=v, faces=faces,
        shapedirs=rng.normal(0, 0.01, (V, 3, S)).astype(np.float32),
        exprdirs=rng.normal(0, 0.01, (V, 3, E)).astype(np.float32),
        posedirs=rng.normal(0, 0.01, (V, 3, 36)).astype(np.float32),
        J_regressor=J, weights=w, parents=np.array(PARENTS, np.int64),
        expr_names=[f"e{i}" for i in range(E)], landmarks=LandmarkEmbedding.empty())


@pytest.fixture
def tiny() -> HeadModel:
    return random_model()


@pytest.fixture
def make_model():
    """The :func:`random_model` factory (tests dirs are not packages, so it travels as a fixture)."""
    return random_model


@pytest.fixture(scope="session")
def standin_cache(tmp_path_factory):
    """Generate the stand-in into a private cache directory (also exercises first-use generation)."""
    d = tmp_path_factory.mktemp("omg_cache")
    old = os.environ.get("OMG_AVATAR_CACHE")
    os.environ["OMG_AVATAR_CACHE"] = str(d)
    yield d
    if old is None:
        os.environ.pop("OMG_AVATAR_CACHE", None)
    else:
        os.environ["OMG_AVATAR_CACHE"] = old


@pytest.fixture(scope="session")
def standin(standin_cache) -> HeadModel:
    return load_head_model(None)
