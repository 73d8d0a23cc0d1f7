"""The OMG network on the stand-in head: counts and shapes at every LOD, OAFF, coarse-to-fine, shoulders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from backend.head.lbs import HeadModelTensors, lbs
from backend.head.lod import build_lods
from backend.head.params import HeadParams
from backend.model.omg import OMG, HeadPose, project, shoulder_transform_for

from omg_helpers import crop_camera, small_config

SIZE = 96


@pytest.fixture(scope="module")
def setup(head_model, small_dino):
    torch.manual_seed(0)
    net = OMG(small_config(head_model.n_verts), head_model.faces, head_model.weights).eval()
    heads = HeadModelTensors.from_model(head_model)
    params = HeadParams.zeros(head_model)
    params.pose[0, 0, 1] = 0.3   # turn the head: one cheek occluded
    params.expr[0, 0] = 0.5
    cam = crop_camera(SIZE)
    g = torch.Generator().manual_seed(1)
    image = torch.rand(3, SIZE, SIZE, generator=g)
    mask = torch.ones(SIZE, SIZE)
    src = HeadPose.from_params(params)
    recs = {}
    with torch.no_grad():
        for lvl in (0, 1, 2):
            recs[lvl] = net.reconstruct(small_dino, heads, image, mask, cam, src, lvl)
    return net, heads, cam, src, recs, mask


def test_counts_and_shapes_at_every_lod(setup, head_model):
    net, heads, cam, src, recs, _ = setup
    expected = {l.level: l.n_verts for l in build_lods(head_model.faces, head_model.n_verts, (0, 1, 2))}
    assert expected[0] == head_model.n_verts and expected[0] < expected[1] < expected[2]  # V + E per subdivision
    C, D = net.cfg.feat_channels, net.cfg.dim
    for lvl, rec in recs.items():
        N = expected[lvl]
        assert net.n_gaussians(lvl) == N
        assert rec.rest_means.shape == (N, 3) and rec.features.shape == (N, C) and rec.scales.shape == (N, 3)
        assert rec.opacities.shape == (N,) and rec.quats.shape == (N, 4)
        assert rec.global_feats.shape == rec.local_feats.shape == rec.fused_feats.shape == (N, D)
        assert rec.offsets.shape == (head_model.n_verts, 3)
        assert torch.all((rec.features[:, :3] >= 0) & (rec.features[:, :3] <= 1))
        assert torch.all((rec.opacities > 0) & (rec.opacities < 1)) and torch.all(rec.scales > 0)
        torch.testing.assert_close(rec.quats.norm(dim=-1), torch.ones(N), atol=1e-5, rtol=0)
        assert rec.offsets.abs().max() <= net.cfg.max_offset
        # a turned head: part visible, part occluded (back of the head, far cheek)
        frac = rec.visible.float().mean().item()
        assert 0.2 < frac < 0.9, frac
        sh = rec.shoulders
        n_sh = sh["rest_means"].shape[0]
        assert 50 < n_sh < 2 * net.cfg.shoulder_points
        assert sh["features"].shape == (n_sh, C) and sh["scales"].shape == (n_sh, 3) and sh["quats"].shape == (n_sh, 4)
        # untrained offset head is zero-initialised: the Gaussians sit on the fitted mesh's LOD vertices
        shaped = head_model.v_template + np.einsum("vcs,s->vc", head_model.shapedirs, np.zeros(head_model.n_shape))
        U = build_lods(head_model.faces, head_model.n_verts, (lvl,))[0].upsample
        np.testing.assert_allclose(rec.rest_means.numpy(), U @ shaped, atol=1e-5)
    with torch.no_grad():
        feats, coarse, alpha = net.render(heads, recs[2], src, cam, backend="cpu")
        refined = net.refiner(feats[None])
    assert feats.shape == (C, SIZE, SIZE) and coarse.shape == (3, SIZE, SIZE) and alpha.shape == (SIZE, SIZE)
    assert refined.shape == (1, 3, SIZE, SIZE)
    torch.testing.assert_close(refined[0], coarse)  # zero-initialised refiner output = the splatted RGB
    assert alpha.mean() > 0.3  # the head covers a good part of the crop


def test_fused_equals_global_exactly_at_occluded_vertices(setup):
    _, _, _, _, recs, _ = setup
    for rec in recs.values():
        occ = ~rec.visible
        assert occ.sum() > 100
        # the sampled local feature is not zero there (the projection lands on the image): the test can fail
        assert rec.local_feats[occ].abs().sum() > 0
        assert torch.equal(rec.fused_feats[occ], rec.global_feats[occ])
        vis = rec.visible
        torch.testing.assert_close(rec.fused_feats[vis], rec.global_feats[vis] + rec.local_feats[vis])


def test_coarse_to_fine_is_midpoint_averaging(setup, head_model):
    net, *_ = setup
    g = torch.randn(head_model.n_verts, net.cfg.dim)
    lods = build_lods(head_model.faces, head_model.n_verts, (0, 1, 2))
    with torch.no_grad():
        g2 = net.subdivide_features(g, 2)  # refinement MLPs start at zero: pure midpoint averaging
    expected = torch.as_tensor(lods[2].upsample @ g.numpy())
    torch.testing.assert_close(g2, expected, atol=1e-5, rtol=1e-5)
    # with a non-zero refinement the features change but keep their shape
    with torch.no_grad():
        net.refine["1"][-1].bias.fill_(0.1)
        g1 = net.subdivide_features(g, 1)
        net.refine["1"][-1].bias.zero_()
    step = torch.as_tensor(lods[1].upsample @ g.numpy())
    torch.testing.assert_close(g1, step + 0.1, atol=1e-5, rtol=1e-5)


def test_shoulders_on_rays_inside_region(setup, head_model):
    net, heads, cam, src, recs, mask = setup
    sh = recs[0].shoulders
    out = lbs(heads, src.shape[None], src.expr[None], src.pose[None], src.transl[None])
    M = shoulder_transform_for(heads, src)
    world = sh["rest_means"] @ M[:3, :3].T + M[:3, 3]
    K, V = torch.as_tensor(cam.K), torch.as_tensor(cam.viewmat)
    uv, z = project(world, K, V)
    # offsets move points along their rays: they project back onto their grid pixel
    torch.testing.assert_close(uv, sh["uv"], atol=1e-3, rtol=0)
    neck_uv, neck_z = project(out.joints[0, 1:2], K, V)
    assert torch.all(uv[:, 1] >= neck_uv[0, 1])                       # below the neck joint
    dz = z - (neck_z[0] + net.cfg.shoulder_behind_neck)
    assert dz.abs().max() <= net.cfg.shoulder_max_offset + 1e-5      # on the plane +- the bounded offset
    # and not on the head's silhouette
    from backend.render.depth import rasterize_depth
    head = np.isfinite(rasterize_depth(out.vertices[0].numpy(), head_model.faces, cam).depth)
    px = uv.numpy().astype(int)
    assert not head[px[:, 1], px[:, 0]].any()


def test_gradients_reach_every_trainable_part(head_model, small_dino):
    torch.manual_seed(0)
    net = OMG(small_config(head_model.n_verts, levels=(0, 1)), head_model.faces, head_model.weights)
    heads = HeadModelTensors.from_model(head_model)
    cam = crop_camera(64)
    src = HeadPose.from_params(HeadParams.zeros(head_model))
    rec = net.reconstruct(small_dino, heads, torch.rand(3, 64, 64), torch.ones(64, 64), cam, src, 1)
    feats, coarse, _ = net.render(heads, rec, src, cam, backend="cpu")
    loss = (net.refiner(feats[None]) - 0.3).pow(2).mean() + coarse.mean() + rec.offsets.pow(2).sum()
    loss.backward()
    for name in ("vertex_embed", "token_proj.weight", "local_proj.weight", "identity_proj.weight",
                 "decoder.0.cross_attn.q.weight", "decoder.1.self_attn.kv.weight", "offset_head.4.weight",
                 "refine.1.4.weight", "color_head.0.weight", "opacity_head.0.weight", "scale_head.4.weight",
                 "rotation_head.4.weight", "shoulder_cnn.0.weight", "refiner.out.weight"):
        p = dict(net.named_parameters())[name]
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not any(p.requires_grad for p in small_dino.parameters())
