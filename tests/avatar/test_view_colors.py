"""View-dependent colours of the head Gaussians the photo sees edge-on (avatar/view_colors.py).

The torch blend is compared with a plain per-Gaussian reference on random inputs; the build's
view colours on the astronaut leave the source view as it was and show the side colour once the
head has turned; the file keeps them and refuses broken ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from backend.avatar.view_colors import FAR_DEG, NEAR_DEG, ViewColors, colors_for_views, source_toward
from backend.rotations import quat_to_matrix


def _unit(rng, n):
    v = rng.normal(size=(n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _reference(colors, view, quats, means, center):
    """One frame, one Gaussian at a time: the angle between the view's direction and the posed source
    direction decides the blend (photo colour within NEAR_DEG, side colour beyond FAR_DEG)."""
    out = colors.copy()
    for k, i in enumerate(view.rows):
        tw = quat_to_matrix(quats[i]) @ view.toward[k]
        d = center - means[i]
        d = d / np.linalg.norm(d)
        ang = np.degrees(np.arccos(np.clip(d @ tw, -1.0, 1.0)))
        x = np.clip((np.cos(np.radians(ang)) - np.cos(np.radians(FAR_DEG)))
                    / (np.cos(np.radians(NEAR_DEG)) - np.cos(np.radians(FAR_DEG))), 0.0, 1.0)
        w = x * x * (3 - 2 * x)
        out[i] = w * colors[i] + (1 - w) * view.side[k]
    return out


def test_the_blend_matches_a_plain_reference_on_random_inputs():
    rng = np.random.default_rng(3)
    n, B = 400, 3
    colors = rng.random((n, 3)).astype(np.float32)
    rows = np.sort(rng.choice(n, 150, replace=False))
    view = ViewColors(rows, rng.random((150, 3)), _unit(rng, 150))
    quats = _unit(rng, n * B).reshape(B, n, 3)
    quats = np.concatenate([rng.normal(size=(B, n, 1)), quats], 2)
    quats /= np.linalg.norm(quats, axis=2, keepdims=True)
    means = rng.normal(scale=0.1, size=(B, n, 3)).astype(np.float32)
    centers = rng.normal(scale=0.5, size=(B, 3)).astype(np.float32) + [0, 0, 1.0]
    got = colors_for_views(torch.as_tensor(colors), view, torch.as_tensor(quats, dtype=torch.float32),
                           torch.as_tensor(means), centers).numpy()
    for b in range(B):
        np.testing.assert_allclose(got[b], _reference(colors, view, quats[b], means[b], centers[b]), atol=2e-5)
    untouched = np.setdiff1d(np.arange(n), rows)
    np.testing.assert_array_equal(got[:, untouched], np.broadcast_to(colors[untouched], (B, len(untouched), 3)))
    # the toward directions as made at the source frame point every Gaussian at that camera: weight 1
    toward = source_toward(quats[0, rows], means[0, rows], centers[0])
    at_source = colors_for_views(torch.as_tensor(colors), ViewColors(rows, view.side, toward),
                                 torch.as_tensor(quats[:1], dtype=torch.float32), torch.as_tensor(means[:1]),
                                 centers[:1]).numpy()[0]
    np.testing.assert_allclose(at_source, colors, atol=1e-6)
    t = torch.as_tensor(colors)
    assert colors_for_views(t, None, None, None, None) is t    # no view colours: the colours as they are


@pytest.mark.parametrize("bad", [
    dict(rows=[3, 2]),                           # not increasing
    dict(side=[[0.5, 0.5, 1.5], [0, 0, 0]]),     # outside [0, 1]
    dict(toward=[[0, 0, 2.0], [0, 1, 0]]),       # not unit
    dict(side=[[np.nan, 0, 0], [0, 0, 0]]),      # not finite
])
def test_broken_view_colours_are_refused(bad):
    ok = dict(rows=[1, 2], side=[[0.5, 0.5, 0.5], [0, 0, 0]], toward=[[0, 0, 1.0], [0, 1, 0]])
    with pytest.raises(ValueError):
        ViewColors(**{**ok, **bad})
    with pytest.raises(ValueError, match="beyond"):
        ViewColors(**ok).check(2)


@pytest.fixture(scope="module")
def astronaut():
    from backend.avatar.build import BuildOptions, build_avatar

    return build_avatar(None, BuildOptions(lods=(1,), refine=True, refine_seconds=1e4, refine_steps=2))


def test_the_build_gives_the_grazing_skin_a_side_colour_the_source_view_never_shows(astronaut, tmp_path):
    from backend.avatar.fileformat import load_avatar, save_avatar
    from backend.avatar.rendering import render_frames
    from backend.preview.turntable import turntable_params

    av, model = astronaut.avatar, astronaut.model
    view = av.lod_views[1]
    n = len(av.lods[1])
    # a band at the face's sides, a minority of the head, whose side colour differs from the photo's
    assert 0.02 * n < len(view) < 0.4 * n
    assert np.abs(view.side - av.lods[1].colors[view.rows]).max(1).mean() > 0.01
    plain = dataclasses.replace(av, lod_views={})
    both = turntable_params(av, model, (0.0, 35.0))
    with_views = [np.asarray(f) for f in render_frames(av, model, both, 1)][:2]
    without = [np.asarray(f) for f in render_frames(plain, model, both, 1)][:2]
    np.testing.assert_array_equal(with_views[0], without[0])      # the source view: the photo's colours
    assert np.abs(with_views[1] - without[1]).max() > 0.05       # turned: the side colour shows
    # the file keeps them; a file whose rows reach beyond the LOD is refused with the file's name
    back = load_avatar(save_avatar(av, tmp_path / "astro"))
    np.testing.assert_array_equal(back.lod_views[1].rows, view.rows)
    np.testing.assert_array_equal(back.lod_views[1].side, view.side)
    np.testing.assert_array_equal(back.lod_views[1].toward, view.toward)
    broken = dataclasses.replace(av, lod_views={})
    broken.lod_views = {1: ViewColors(np.array([n]), view.side[:1], view.toward[:1])}   # skips the check
    from backend.errors import InputError

    with pytest.raises(InputError, match="astro_bad"):
        load_avatar(save_avatar(broken, tmp_path / "astro_bad"))
