"""The cuda backend's argument/output mapping around gsplat.rasterization, checked here without a
GPU: a stand-in ``gsplat`` module implements rasterization's documented contract (shapes
[..., C, N, D] -> [..., C, H, W, D+1] "RGB+ED", alphas [..., C, H, W, 1], meta["radii"]) with our
CPU pipeline. The real CUDA comparison is tests/gpu/check_cuda_splat.py (run on a GPU session)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

from backend.render import Camera, splat
from backend.render.cuda import splat_gsplat
from backend.render.scenes import random_scene
from backend.render.splat import _prepare


def _fake_rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *,
                        backgrounds=None, render_mode="RGB", packed=True, **kw):  # fmt: skip
    assert render_mode == "RGB+ED" and packed is False
    assert kw["near_plane"] == 0.01 and kw["eps2d"] == 0.3 and kw["rasterize_mode"] == "classic"
    batch = means.shape[:-2]
    C = viewmats.shape[-3]
    assert viewmats.shape == batch + (C, 4, 4) and Ks.shape == batch + (C, 3, 3)
    assert colors.shape[:-1] == means.shape[:-1] and all(t.is_contiguous() for t in (means, quats, colors))
    if backgrounds is not None:
        assert backgrounds.shape == batch + (C, colors.shape[-1])
    imgs, alphas, radii = [], [], []
    for idx in np.ndindex(*batch) if batch else [()]:
        for c in range(C):
            cam = Camera(Ks[idx + (c,)].numpy(), viewmats[idx + (c,)].numpy(), width, height)
            r = splat(means[idx], quats[idx], scales[idx], opacities[idx], colors[idx], cam,
                      background=None if backgrounds is None else backgrounds[idx + (c,)], backend="cpu")  # fmt: skip
            ed = torch.where(r.alpha > 0, r.depth, 0.0)
            imgs.append(torch.cat([r.image[0].permute(1, 2, 0), ed[0, ..., None]], -1))
            alphas.append(r.alpha[0, ..., None])
            radii.append(r.radii[0])
    shape = batch + (C,)
    stack = lambda xs: torch.stack(xs).reshape(shape + xs[0].shape)  # noqa: E731
    return stack(imgs), stack(alphas), {"radii": stack(radii), "flatten_ids": torch.zeros(7)}


@pytest.fixture
def fake_gsplat(monkeypatch):
    mod = types.ModuleType("gsplat")
    mod.rasterization = _fake_rasterization
    monkeypatch.setitem(sys.modules, "gsplat", mod)


@pytest.mark.parametrize("per_frame", [False, True])
def test_cuda_mapping_matches_cpu(fake_gsplat, per_frame: bool) -> None:
    sc = random_scene(60, 5, seed=0)
    base = Camera.look_at((0.0, 0.0, 0.6), (0.0, 0.0, 0.0), width=24, height=20, fov_y_deg=30.0)
    cams = [base, base.orbit_yaw(30.0)]
    means = torch.stack([sc.means, sc.means + 0.01]) if per_frame else sc.means
    bg = torch.linspace(0.1, 0.5, 5)
    inp = _prepare(means, sc.quats, sc.scales, sc.opacities, sc.features, cams, bg, torch.device("cpu"))
    assert inp.batched == per_frame
    got = splat_gsplat(inp, near_plane=0.01, far_plane=1e10, eps2d=0.3, tile_size=16)
    want = splat(means, sc.quats, sc.scales, sc.opacities, sc.features, cams, background=bg, backend="cpu")
    assert got.backend == "cuda" and got.n_intersections == 7
    assert got.image.shape == want.image.shape == (2, 5, 20, 24)
    torch.testing.assert_close(got.image, want.image, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.alpha, want.alpha, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.depth, want.depth, atol=1e-6, rtol=0)
    assert torch.equal(got.radii, want.radii)
