"""View-dependent colours and sizes (avatar/view_colors.py): the skin the photo sees edge-on with
the hair or background mixed into its samples, and the Gaussians the silhouette fit shrank.

The torch blend is compared with a plain per-Gaussian reference on random inputs; on the
astronaut, the build's view data leave the source view exactly as it was and change a turned
view; the file keeps them and refuses broken ones."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from backend.avatar.view_colors import (FAR_DEG, NEAR_DEG, ViewColors, blend_views_, for_views, source_toward,
                                       view_frames_torch)
from backend.rotations import quat_to_matrix


def _unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _reference(colors, scales, view, joints, share, means, center):
    """One frame, one Gaussian at a time: its view frame is the global joint's rotation and the
    neck's mixed by its global share; the angle between the view's direction and the source
    direction turned by that frame decides the blend (the source view's colour and size within
    NEAR_DEG, the side colour and the grown size beyond FAR_DEG, a smoothstep of the cosine between)."""
    out, big = colors.copy(), scales.copy()
    for k, i in enumerate(view.rows):
        q = share[k] * joints[0] + (1 - share[k]) * joints[1]
        tw = quat_to_matrix(q / np.linalg.norm(q)) @ view.toward[k]
        d = (center - means[i]) / np.linalg.norm(center - means[i])
        ang = np.degrees(np.arccos(np.clip(d @ tw, -1.0, 1.0)))
        x = np.clip((np.cos(np.radians(ang)) - np.cos(np.radians(FAR_DEG)))
                    / (np.cos(np.radians(NEAR_DEG)) - np.cos(np.radians(FAR_DEG))), 0.0, 1.0)
        w = x * x * (3 - 2 * x)
        out[i] = w * colors[i] + (1 - w) * view.side[k]
        big[i] = scales[i] * (w + (1 - w) * view.grow[k])
    return out, big


def _random_frames(rng, n, B):
    q = rng.normal(size=(B, 5, 4))
    q[:, :, 0] = np.abs(q[:, :, 0]) + 1.0          # joint rotations within 180 deg of the rest pose
    q /= np.linalg.norm(q, axis=2, keepdims=True)
    means = rng.normal(scale=0.1, size=(B, n, 3)).astype(np.float32)
    centers = (rng.normal(scale=0.5, size=(B, 3)) + [0, 0, 1.0]).astype(np.float32)
    return q, means, centers


def test_the_blend_matches_a_plain_reference_on_random_inputs():
    rng = np.random.default_rng(3)
    n, B = 400, 3
    colors = rng.random((n, 3)).astype(np.float32)
    scales = rng.random((B, n, 3)).astype(np.float32) * 0.01
    rows = np.sort(rng.choice(n, 150, replace=False))
    view = ViewColors(rows, rng.random((150, 3)), _unit(rng, 150), 1.0 + 3.0 * rng.random(150))
    joints, means, centers = _random_frames(rng, n, B)
    share = rng.random(150)
    share[:50] = 1.0                                 # the body's
    share[50:100] = 0.0                              # the head's
    J = torch.as_tensor(joints, dtype=torch.float32)
    got_c, got_s = for_views(torch.as_tensor(colors), torch.as_tensor(scales), view, torch.as_tensor(means), J, share,
                             centers)
    weights = []
    for b in range(B):
        ref_c, ref_s = _reference(colors, scales[b], view, joints[b], share, means[b], centers[b])
        np.testing.assert_allclose(got_c[b].numpy(), ref_c, atol=2e-5)
        np.testing.assert_allclose(got_s[b].numpy(), ref_s, rtol=2e-5, atol=1e-9)
        weights.append(np.abs(ref_c - colors)[rows].max(1))
    # the random views cover the whole range: some rows at the photo's colour, some at the side's
    w = np.concatenate(weights)
    assert (w < 1e-6).any() and (w > 0.05).any()
    untouched = np.setdiff1d(np.arange(n), rows)
    np.testing.assert_array_equal(got_c[:, untouched].numpy(),
                                  np.broadcast_to(colors[untouched], (B, len(untouched), 3)))
    np.testing.assert_array_equal(got_s[:, untouched].numpy(), scales[:, untouched])
    # directions made at the source frame point every Gaussian at that camera: the source's colour and size
    frames = view_frames_torch(J[:1], share)[0].numpy()
    toward = source_toward(frames, means[0, rows], centers[0])
    at_c, at_s = for_views(torch.as_tensor(colors), torch.as_tensor(scales[0]),
                           dataclasses.replace(view, toward=toward), torch.as_tensor(means[:1]), J[:1], share,
                           centers[:1])
    np.testing.assert_allclose(at_c[0].numpy(), colors, atol=1e-6)
    np.testing.assert_allclose(at_s[0].numpy(), scales[0], rtol=1e-6)
    t = torch.as_tensor(colors)
    assert for_views(t, None, None, None, None, None, None)[0] is t     # no view data: the colours as they are


def test_the_blend_in_place_reuses_buffers_without_compounding():
    """The preview loop's per-frame buffers: blended batch after batch in place, they hold what
    for_views returns for each batch (the rows recomputed from the rest values, the rest kept), for
    rest scales and for a batch's own grown scales blended onto themselves."""
    rng = np.random.default_rng(5)
    n, B, k = 300, 2, 120
    colors = torch.as_tensor(rng.random((n, 3)), dtype=torch.float32)
    rest = torch.as_tensor(rng.random((n, 3)) * 0.01, dtype=torch.float32)
    view = ViewColors(np.sort(rng.choice(n, k, replace=False)), rng.random((k, 3)), _unit(rng, k),
                      1.0 + 2.0 * rng.random(k))
    share = rng.random(k)
    out_c, out_s = colors.expand(B, -1, -1).clone(), rest.expand(B, -1, -1).clone()
    for _ in range(3):
        joints, means, centers = _random_frames(rng, n, B)
        J, M = torch.as_tensor(joints, dtype=torch.float32), torch.as_tensor(means)
        blend_views_(out_c, out_s, view, colors, rest, M, J, share, centers)
        ref_c, ref_s = for_views(colors, rest, view, M, J, share, centers)
        assert torch.equal(out_c, ref_c) and torch.equal(out_s, ref_s)
        grown = rest * torch.as_tensor(1.0 + rng.random((B, n, 1)), dtype=torch.float32)
        want = for_views(colors, grown, view, M, J, share, centers)[1]
        blend_views_(out_c, grown, view, colors, grown, M, J, share, centers)
        assert torch.equal(grown, want)
    assert (ref_s != rest).any() and (ref_c != colors).any()   # the frames did turn away from the source


@pytest.mark.parametrize("bad", [
    dict(rows=[3, 2]),                           # not increasing
    dict(side=[[0.5, 0.5, 1.5], [0, 0, 0]]),     # outside [0, 1]
    dict(toward=[[0, 0, 2.0], [0, 1, 0]]),       # not unit
    dict(side=[[np.nan, 0, 0], [0, 0, 0]]),      # not finite
    dict(grow=[1.0, 0.5]),                       # would shrink
    dict(grow=[1.0, np.inf]),
])
def test_broken_view_data_are_refused(bad):
    ok = dict(rows=[1, 2], side=[[0.5, 0.5, 0.5], [0, 0, 0]], toward=[[0, 0, 1.0], [0, 1, 0]], grow=[1.0, 2.0])
    assert ViewColors(**ok).fits(3) and not ViewColors(**ok).fits(2)
    with pytest.raises(ValueError):
        ViewColors(**{**ok, **bad})


@pytest.fixture(scope="module")
def astronaut():
    from backend.avatar.build import BuildOptions, build_avatar

    return build_avatar(None, BuildOptions(lods=(1,), refine=True, refine_seconds=1e4, refine_steps=2))


def test_the_source_view_is_unchanged_and_a_turned_view_shows_the_side(astronaut, tmp_path):
    from backend.avatar.fileformat import load_avatar, save_avatar
    from backend.avatar.rendering import render_frames
    from backend.errors import InputError
    from backend.preview.turntable import turntable_params

    av, model = astronaut.avatar, astronaut.model
    view = av.lod_views[1]
    n = len(av.lods[1])
    shrunk = view.grow > 1.0
    # the silhouette fit shrank head Gaussians and parts' (the hair's, the body's)
    assert (view.rows[shrunk] < n).sum() > 100 and (view.rows[shrunk] >= n).sum() > 100
    # the head's skin seen edge-on with hair or background in its sample has a side colour, and so have
    # the torso's grazing columns (body.py: the fabric continued from inside) and the hair the
    # refinement recoloured (the test below); no other part has one
    parts = view.rows >= n
    body, hair = av.part_slices(1)["body"], av.part_slices(1)["hair"]
    in_body = (view.rows >= body.start) & (view.rows < body.stop)
    in_hair = (view.rows >= hair.start) & (view.rows < hair.stop)
    own = av.rest_set(1).colors[view.rows]
    assert in_hair.sum() > 100 and not (parts & ~in_body & ~in_hair).any()   # none of the mouth's and eyes'
    # the hair's rows the refinement left alone are there for their size (grown back) alone
    same = in_hair & np.all(view.side == own, axis=1)
    assert np.all(view.grow[same] > 1.0)
    assert (np.abs(view.side[in_body] - own[in_body]).max(1) > 0.02).sum() > 100
    # a torso row is view data only where it looks different away from the source view: its colour
    # there differs (the grazing columns; the ring where the refinement repainted it) or it grows
    differs = np.any(view.side != own, axis=1) | (view.grow > 1.0)
    assert np.all(differs[in_body])
    assert (np.abs(view.side[~parts] - av.lods[1].colors[view.rows[~parts]]).max(1) > 0.02).sum() > 100
    plain = dataclasses.replace(av, lod_views={})
    both = turntable_params(av, model, (0.0, 40.0))
    with_views = [np.asarray(f) for f in render_frames(av, model, both, 1)]
    without = [np.asarray(f) for f in render_frames(plain, model, both, 1)]
    np.testing.assert_array_equal(with_views[0], without[0])      # the source view as it was
    assert np.abs(with_views[1] - without[1]).max() > 0.1         # turned: the grown Gaussians show
    # an open jaw and shut eyes at the source view turn Gaussians, not the view: as it was too
    np.testing.assert_array_equal(with_views[2], without[2])
    # the preview loop draws them the same, one frame a batch and several (its per-frame buffers,
    # blended in place, never write into the rest values: an earlier frame's blend would compound)
    from backend.preview.renderer import PreviewOptions, PreviewRenderer

    cam = av.camera
    want = [(np.clip(f, 0.0, 1.0) * 255.0).round() for f in with_views]
    for batch in (1, 2):
        opts = PreviewOptions(lod=1, width=cam.width, height=cam.height, backend="cpu", batch=batch,
                              background=(0.0, 0.0, 0.0))
        got = list(PreviewRenderer(av, model, opts).frames(both))
        diffs = [int(np.abs(g - w).max()) for g, w in zip(got, want)]
        assert len(got) == len(want) and max(diffs) <= 1, (batch, diffs)   # rounding alone
    # the file keeps them; a file whose rows reach beyond the LOD is refused with the file's name
    back = load_avatar(save_avatar(av, tmp_path / "astro"))
    for key in ("rows", "side", "toward", "grow"):
        np.testing.assert_array_equal(getattr(back.lod_views[1], key), getattr(view, key))
    big = n + av.n_parts
    broken = dataclasses.replace(av, lod_views={})
    broken.lod_views = {1: ViewColors(np.array([big]), view.side[:1], view.toward[:1])}   # past the check
    with pytest.raises(InputError, match="astro_bad"):
        load_avatar(save_avatar(broken, tmp_path / "astro_bad"))
    # a copy without the parts keeps only the view data that still index its Gaussians
    assert dataclasses.replace(av, parts=[]).lod_views == {}


def test_a_turned_view_takes_back_the_refinement_s_colour_change(astronaut):
    """The photo refinement fits the source view through overlapping footprints; seen turned, its
    colour change showed as streaks along the jaw. Every head and hair Gaussian that it changed by
    more than TURNED_MIN_CHANGE is view data whose side colour is its colour before the refinement
    (``turned_refined_share`` 0; the skin seen edge-on keeps its fill instead), so a turned view
    of the refined head draws the unrefined colours, and the source view the refined ones."""
    from backend.avatar.build import TURNED_MIN_CHANGE, BuildOptions, build_avatar
    from backend.avatar.rendering import render_frames
    from backend.preview.turntable import turntable_params

    av, model = astronaut.avatar, astronaut.model
    assert BuildOptions().turned_refined_share == 0.0 and BuildOptions().turned_refined_parts == ("hair",)
    unrefined = build_avatar(None, BuildOptions(lods=(1,), refine=False)).avatar   # the same samples
    before, after = unrefined.lods[1].colors, av.lods[1].colors
    changed = np.flatnonzero(np.abs(after - before).max(1) > TURNED_MIN_CHANGE)
    view = av.lod_views[1]
    assert len(changed) > 2000 and np.isin(changed, view.rows).all()
    at = np.searchsorted(view.rows, changed)
    took_back = np.all(view.side[at] == before[changed], axis=1)
    assert took_back.mean() > 0.6       # the rest (27 %): skin seen edge-on, whose side colour is its fill
    # the hair (which keeps half the change at the source view) takes it back the same way
    hair = av.part_slices(1)["hair"]
    hair_before = next(p for p in unrefined.parts if p.name == "hair").gaussians.colors
    recoloured = hair.start + np.flatnonzero(
        np.abs(av.rest_set(1).colors[hair] - hair_before).max(1) > TURNED_MIN_CHANGE)
    assert len(recoloured) > 500 and np.isin(recoloured, view.rows).all()
    np.testing.assert_array_equal(view.side[np.searchsorted(view.rows, recoloured)],
                                  hair_before[recoloured - hair.start])
    # rendered turned 40 deg, the head is the unrefined build's where the refinement changed it;
    # the source view is the refined one's
    both = turntable_params(av, model, (0.0, 40.0))
    plain = dataclasses.replace(av, lod_views={})
    views, refined, raw = ([np.asarray(f) for f in render_frames(a, model, both, 1)] for a in (av, plain, unrefined))
    head = np.abs(refined[1] - raw[1]).max(-1) > 0.05     # where refined and unrefined differ turned
    err_views = np.abs(views[1] - raw[1])[head].mean()
    err_plain = np.abs(refined[1] - raw[1])[head].mean()
    assert head.sum() > 500 and err_views < 0.5 * err_plain, (head.sum(), err_views, err_plain)
    np.testing.assert_array_equal(views[0], refined[0])


def test_the_side_colour_replaces_edge_samples_the_skin_model_does_not_explain():
    """A synthetic head: skin-coloured photo, but a band of hair colour at the face's edge. The
    grazing samples with the hair's colour get the skin's fill as their side colour; grazing samples
    of skin colour (the jaw's shading) keep theirs."""
    from backend.avatar.sampling import side_fill
    from backend.avatar.sampling import graph_laplacian

    # a strip of 30 vertices in a row: 0-9 facing skin, 10-19 grazing skin, 20-29 grazing hair
    edges = np.stack([np.arange(29), np.arange(1, 30)], 1)
    L = graph_laplacian(edges, 30)
    colors = np.full((30, 3), (0.8, 0.6, 0.5), np.float32)
    colors[20:] = (0.4, 0.25, 0.1)
    rows, side = side_fill(colors, np.arange(30) >= 20, L, np.tile(colors[0], (30, 1)), 1e-4)
    np.testing.assert_array_equal(rows, np.arange(20, 30))
    np.testing.assert_allclose(side, np.broadcast_to(colors[0], (10, 3)), atol=1e-3)


def test_recoloured_by_views_the_side_colours_are_what_the_other_views_show(astronaut):
    """Multi-view fusion: a row's side colour becomes what the views other than the primary show
    of its Gaussian, as far as they saw it (weight / (weight + prior)); rows no other view saw keep
    the single photo's side colour; grow factors stay. A refinement afterwards moves each side
    colour by what it changed in the Gaussian's own colour."""
    from backend.avatar.multiview import shift_view_colors, side_from_views

    av = copy.deepcopy(astronaut.avatar)   # its colours change below: the fixture is shared
    before = av.lod_views[1]
    n = len(av.rest_set(1))
    rng = np.random.default_rng(5)
    colors = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    weights = np.zeros(n, np.float32)
    seen = before.rows[::2]
    weights[seen] = 1e6
    weights[before.rows[1::4]] = 0.05                       # seen as much as the prior: half each
    after = side_from_views(before, colors, weights, prior=0.05)
    np.testing.assert_array_equal(after.rows, before.rows)
    np.testing.assert_array_equal(after.grow, before.grow)
    np.testing.assert_allclose(after.side[::2], colors[seen], atol=1e-5)
    np.testing.assert_allclose(after.side[1::4], 0.5 * (colors[before.rows[1::4]] + before.side[1::4]), atol=1e-5)
    np.testing.assert_array_equal(after.side[3::4], before.side[3::4])
    av.lod_views[1] = after
    old = {lvl: av.rest_set(lvl).colors.copy() for lvl in av.lod_views}
    av.lods[1].colors = np.clip(av.lods[1].colors - 0.1, 0, 1)
    shift_view_colors(av, old)
    head = after.rows < len(av.lods[1])
    delta = av.rest_set(1).colors[after.rows] - old[1][after.rows]
    np.testing.assert_allclose(av.lod_views[1].side, np.clip(after.side + delta, 0, 1), atol=1e-6)
    assert (delta[head] < -0.05).mean() > 0.5 and np.abs(delta[~head]).max() == 0.0
