"""Per-frame growth of the head's Gaussians (backend.avatar.stretch_growth) on the sample astronaut:
the photo's own frame keeps every size, the lips shut over an open jaw no longer stripe the chin,
the mouth band never grows the lips across the opening. (Growth against its plain per-edge reference,
the torch poser and batch sizes: tests/avatar/test_pose_torch.py; the add-on's splats and its Geometry
Nodes display, from the field an import stores: tests/blender/test_splats.py.)"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from backend.avatar.attributes import unique_edges
from backend.avatar.pose_torch import TorchPoser
from backend.avatar.posed import pose_growth, posed_set
from backend.avatar.stretch_growth import growth_field, head_base_points, vertex_growth
from backend.head.arkit_names import ARKIT_NAMES
from backend.head.params import HeadParams

LOD = 2


@pytest.fixture(scope="module")
def built():
    from skimage import data

    from backend.avatar.build import BuildOptions, build_avatar

    return build_avatar(data.astronaut(), BuildOptions(lods=(LOD,), refine=False, metrics=False))


def _shut(src: HeadParams, w: float) -> HeadParams:
    """The source frame with the jaw opened by ``w`` units of jawOpen's 0.35 rad and the lips shut
    over it (mouthClose = w, ARKit's cap)."""
    p = copy.deepcopy(src)
    p.pose[0, 2, 0] += 0.35 * w
    p.expr[0, ARKIT_NAMES.index("mouthClose")] = w
    return p


def test_the_source_frame_keeps_every_gaussian_s_size(built):
    """Growth is measured against what the Gaussians were sized for at the photo's own frame: there
    every factor is exactly 1, so the source view (and the refinement that fits it) is unchanged."""
    av, model = built.avatar, built.model
    g = TorchPoser(av, model, LOD).pose_params(av.params).growth
    assert torch.equal(g, torch.ones_like(g))
    np.testing.assert_array_equal(posed_set(av, model, av.params, LOD).scales, av.rest_set(LOD).scales)


def test_the_chin_stays_whole_with_the_lips_shut_over_an_open_jaw(built):
    """jawOpen = mouthClose = 0.7 (ARKit's lips together over a dropped jaw): the chin drops away from
    a lower lip that stays, so the skin between them stretches past what its Gaussians were sized
    for. Without growth their rows pull apart into horizontal stripes; with it the chin renders as
    smooth as at rest (mean |vertical second difference| of the grey render between the lower lip
    and the chin, LOD 2: 0.0027 at rest, 0.0141 shut without growth before; measured with it in
    the print)."""
    from backend.avatar.rendering import render_frames
    from backend.face.landmark_model import LandmarkModel
    from backend.face.solver import Projector

    av, model = built.avatar, built.model
    src = av.params.frame(0)
    frames = [src, _shut(src, 0.7)]
    hp = HeadParams(src.shape, np.concatenate([p.expr for p in frames]), np.concatenate([p.pose for p in frames]),
                    np.concatenate([p.transl for p in frames]))
    lmm = LandmarkModel.from_model(model, rendered=True).with_rest_offsets(model, av.vertex_offsets)
    f64 = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float64)  # noqa: E731
    uv, _ = Projector(av.camera.K, av.camera.viewmat).project(
        lmm.points(f64(np.concatenate([np.repeat(src.shape[None], 2, 0), hp.expr], 1)), f64(hp.pose), f64(hp.transl)))
    uv = uv.numpy()

    def stripes(images) -> list[float]:
        out = []
        for k, img in enumerate(images):
            grey = img.mean(-1)
            lip, chin, half = uv[k, 17], uv[k, 152], abs(uv[k, 61, 0] - uv[k, 291, 0]) / 3  # lower lip, chin, corners
            region = grey[int(lip[1]) + 4:int(chin[1]) - 6, int(lip[0] - half):int(lip[0] + half)]
            assert region.shape[0] > 20 and region.shape[1] > 20, region.shape
            out.append(float(np.abs(region[2:] - 2 * region[1:-1] + region[:-2]).mean()))
        return out

    fixed = stripes(list(render_frames(av, model, hp, LOD, backend="cpu", grow=False)))
    grown = stripes(list(render_frames(av, model, hp, LOD, backend="cpu")))
    print(f"stripes: rest {grown[0]:.4f}, shut {fixed[1]:.4f} without growth, {grown[1]:.4f} with it")
    assert grown[0] == fixed[0]                       # the source frame renders as it did
    assert fixed[1] > 2.5 * fixed[0]                  # the premise: rows pulled apart
    assert grown[1] < 1.5 * grown[0]                  # grown, the chin is as smooth as at rest
    g = pose_growth(av, model, frames[1], LOD)[0]
    assert (g > 1.2).sum() > 100 and g.max() <= 2.0


def test_the_mouth_band_never_grows_and_the_lips_do_not_grow_across_the_opening(built):
    """The mouth band (transparent Gaussians where the lips part; sampling.mouth_interior, as the
    build finds it) has no allowance and keeps its
    size; its edges are not counted, so the lips next to it grow only with their own edges: at the
    build's design opening (jaw 0.35 rad) their band edges stretch more than twice, they hardly grow."""
    import scipy.sparse as sp

    from backend.avatar.sampling import jaw_edge_stretch, mouth_interior, vertex_max_stretch

    av, model = built.avatar, built.model
    field = growth_field(av, model, LOD)
    edges = unique_edges(model.faces)
    rest = head_base_points(av, model, HeadParams.zeros(model), LOD)[0]
    V = model.n_verts
    band = mouth_interior(model, rest, vertex_max_stretch(V, edges, jaw_edge_stretch(
        model, rest, sp.identity(V, np.float32, format="csr"), edges)))
    assert 10 < band.sum() < 200
    np.testing.assert_array_equal(field.allowance[band], 0.0)
    assert not np.isin(field.edges, np.flatnonzero(band)).any()      # no counted edge touches the band
    src = av.params.frame(0)
    wide = copy.deepcopy(src)
    wide.pose[0, 2, 0] = 0.35
    points = head_base_points(av, model, wide, LOD)[0]
    across = edges[band[edges[:, 0]] ^ band[edges[:, 1]]]            # lip-to-band edges
    stretch = (np.linalg.norm(points[across[:, 0]] - points[across[:, 1]], axis=1)
               / np.linalg.norm(rest[across[:, 0]] - rest[across[:, 1]], axis=1))
    lips = np.unique(across[~band[across]])
    g = vertex_growth(points, field)[0]
    print(f"band {band.sum()} vertices, lip-band edges stretch up to {stretch.max():.2f}, "
          f"lips grow up to {g[lips].max():.3f}")
    assert stretch.max() > 2.0
    assert g[lips].max() < 1.1
    np.testing.assert_array_equal(g[band], 1.0)
    g_all = pose_growth(av, model, _shut(src, 1.0), LOD)[0]
    U_band = np.asarray(TorchPoser(av, model, LOD).lod.upsample[:, np.flatnonzero(field.allowance > 0)].sum(1)).ravel() == 0
    np.testing.assert_array_equal(g_all[: len(U_band)][U_band], 1.0)  # Gaussians made of band vertices alone


def test_a_blink_grows_nothing_the_build_sized_the_lids_for_it(built):
    """The lids are sized by the build for a blink (eyes.expression_stretch, capped; the lids behind
    the eyeball grown further): growing them and the lash line between them further spread the
    lash line's dark colours over the closed lid (tests/avatar/test_build.py's blink test: mean
    distance to the lid skin 0.167 -> 0.211 on the left eye), so the lid region keeps its size."""
    av, model = built.avatar, built.model
    p = av.params.frame(0)
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):
        p.expr[0, model.expr_names.index(name)] = 1.0
    field = growth_field(av, model, LOD)
    points = head_base_points(av, model, p, LOD)[0]
    rest = head_base_points(av, model, HeadParams.zeros(model), LOD)[0]
    edges = unique_edges(model.faces)
    ratio = (np.linalg.norm(points[edges[:, 0]] - points[edges[:, 1]], axis=1)
             / np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1))
    assert ratio.max() > 2.0                                          # the premise: a blink stretches the lids
    np.testing.assert_array_equal(pose_growth(av, model, p, LOD), 1.0)


def test_the_allowance_follows_the_build_options_the_avatar_stored(built):
    """The growth's allowance is what the build sized the Gaussians for with the options it ran
    with (GaussianAvatar.options, stored in the .omgavatar), not the defaults: a build with a lower
    stretch cap (attributes.max_stretch) sized the lips' Gaussians for less, so they grow sooner;
    with the eyes off, the lids were not sized for a blink, so they grow like skin. Options an
    avatar lacks (a learned or an older one) read as the defaults."""
    from backend.avatar.attributes import AttributeOptions
    from backend.avatar.eyes import EyeOptions
    from backend.avatar.stretch_growth import SizingOptions, design_allowance

    av, model = built.avatar, built.model
    default = SizingOptions.of(av.options)
    assert default == SizingOptions(AttributeOptions(), True, EyeOptions()) == SizingOptions.of({})
    rest = head_base_points(av, model, HeadParams.zeros(model), LOD)[0].astype(np.float64)
    base = design_allowance(model, rest)
    np.testing.assert_array_equal(base, design_allowance(model, rest, default))
    low = copy.deepcopy(av)
    low.options["attributes"]["max_stretch"] = 1.2
    assert SizingOptions.of(low.options).attributes.max_stretch == 1.2
    capped = growth_field(low, model, LOD).allowance
    before = growth_field(av, model, LOD).allowance
    over = base > 1.2 * 1.001
    assert over.sum() > 100                                            # the lips' stretch reaches past 1.2
    assert np.all(capped[over] < before[over]) and np.all(capped[~over] == before[~over])
    no_eyes = copy.deepcopy(av)
    no_eyes.options["eyes"]["enabled"] = False
    lids_free = design_allowance(model, rest, SizingOptions.of(no_eyes.options))
    assert ((base == 0) & (lids_free >= 1)).sum() > 20                 # the lid rows count again
    # a hand-edited or crafted header: each field of the wrong kind keeps its default
    for bad in ({"attributes": {"max_stretch": "three", "mouth_max_stretch": float("nan")}},
                {"attributes": {"max_stretch": -2.0}, "eyes": {"enabled": "no"}, "mouth": {"enabled": 0}},
                {"attributes": [1, 2]}, "not a dict", None):
        assert SizingOptions.of(bad) == default, bad
    assert SizingOptions.of({"attributes": {"max_stretch": 2}}).attributes.max_stretch == 2.0
