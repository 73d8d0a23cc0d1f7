"""A head model whose expressions carry no ARKit names (FLAME's ``exp_000``...): the whole photo
build runs to its previews, the avatar poses as the plain reference does, and the mouth parts
move with the jaw joint alone.

Until the thirty-third session (engineers' count) every such build failed after its refinement:
no key of the parts (the tongue's ``tongueOut``, the joint channels' ``jawOpen``...) is one of
those expressions, and the torch posing reshaped the empty (P, 3, 0) key basis with -1, which
numpy refuses; the previews, the reenactment render and the eval all pose with it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from backend.avatar.build import BuildOptions, build_avatar
from backend.avatar.outputs import write_previews
from backend.avatar.pose_reference import pose_means_reference
from backend.avatar.pose_torch import TorchPoser
from backend.head.loader import load_head_model
from backend.head.model import save_head_model
from backend.head.params import HeadParams


@pytest.fixture(scope="module")
def exp_named_model(tmp_path_factory) -> Path:
    """The stand-in saved as a head-model .npz with FLAME's expression names (same geometry)."""
    model = load_head_model(None)
    renamed = dataclasses.replace(model, name="exp_named", landmark_exprdirs={},
                                  expr_names=[f"exp_{i:03d}" for i in range(model.n_expr)])
    path = tmp_path_factory.mktemp("model") / "exp_named.npz"
    save_head_model(path, renamed)
    return path


def test_a_build_on_exp_named_expressions_poses_and_writes_its_previews(exp_named_model: Path,
                                                                        tmp_path: Path) -> None:
    result = build_avatar(None, BuildOptions(lods=(0,), refine=False, metrics=False,
                                             head_model=str(exp_named_model)))
    avatar, model = result.avatar, result.model
    assert model.expr_names[:2] == ["exp_000", "exp_001"]
    assert "tongueOut" in avatar.part("tongue").shapes      # the parts keep their own keys...
    assert len(avatar.part_shape_basis(model.expr_names)) == 0   # ...none of which the model has

    rng = np.random.default_rng(3)
    T = 3
    pose = np.zeros((T, 5, 3), np.float32)
    pose[:, 0] = rng.normal(size=(T, 3)) * 0.2
    pose[1:, 2, 0] = (0.15, 0.3)                                   # the jaw opens in frames 1 and 2
    params = HeadParams(avatar.params.shape, rng.normal(size=(T, model.n_expr)).astype(np.float32) * 0.5,
                        pose, np.zeros((T, 3), np.float32))
    posed = TorchPoser(avatar, model, 0).pose_params(params).means.numpy()
    np.testing.assert_allclose(posed, pose_means_reference(avatar, model, params, 0), atol=2e-6, rtol=0)

    # with the head's own turn removed, only the jaw joint moves the mouth parts
    still = HeadParams(params.shape, params.expr, pose * np.array([0, 1, 1, 1, 1], np.float32)[None, :, None],
                       params.transl)
    at = TorchPoser(avatar, model, 0).pose_params(still).means.numpy()
    sl = avatar.part_slices(0)
    lower = np.linalg.norm(at[:, sl["teeth_lower"]] - at[:1, sl["teeth_lower"]], axis=-1).max(-1)
    upper = np.linalg.norm(at[:, sl["teeth_upper"]] - at[:1, sl["teeth_upper"]], axis=-1).max(-1)
    assert lower[1] > 2e-3 and lower[2] > lower[1]                 # metres: the lower row drops
    assert upper.max() < 1e-6                                      # the upper row rides the skull

    paths = write_previews(avatar, model, tmp_path, "astronaut", 0)
    assert sorted(p.name for p in paths) == sorted(f"astronaut_preview_{v}.png" for v in
                                                    ("source", "yaw-30", "yaw+30", "expression"))
    assert all(p.stat().st_size > 1000 for p in paths)
