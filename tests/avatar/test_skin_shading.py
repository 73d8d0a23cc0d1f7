"""The photo's shading on skin carried into the unseen skin (skin_shading.py, sampling.sample_colors)."""

import numpy as np
import pytest

from backend.avatar.skin_shading import ShadingOptions, fit_skin_shading


def _facing_normals(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) unit normals a frontal photo sees (z towards the camera, cos > 0.15)."""
    v = rng.normal(size=(4 * n, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v[v[:, 2] > 0.15][:n]


def test_the_fit_recovers_a_known_light_per_channel_despite_outliers():
    """Skin lit by a known first-order light per channel (blue falling off fastest), 2 % noise and
    15 % stray samples (hair, lashes: dark): the robust fit finds each channel's coefficients
    within 0.03 of the truth, in units of the channel's median; plain least squares on the same
    samples misses by more than 0.05."""
    rng = np.random.default_rng(3)
    n = _facing_normals(rng, 6000)
    albedo = np.array([0.8, 0.62, 0.5])
    true = np.array([[0.7, 0.68, 0.55],      # a0 per channel
                     [-0.15, -0.17, -0.2],   # a . n: x
                     [0.05, 0.05, 0.08],     # y
                     [0.45, 0.47, 0.65]])    # z
    shade = true[0][None] + n @ true[1:]
    colors = albedo * shade * (1.0 + 0.02 * rng.normal(size=shade.shape))
    stray = rng.random(len(n)) < 0.15
    colors[stray] = rng.uniform(0.02, 0.2, size=(stray.sum(), 3))
    fit = fit_skin_shading(n, colors)
    assert fit is not None
    med = np.median(colors, 0)
    expected = true * (albedo / med)[None]      # the fit is relative to each channel's median
    assert np.abs(fit.coef - expected).max() < 0.03
    X = np.concatenate([np.ones((len(n), 1)), n], 1)
    plain = np.linalg.lstsq(X, colors / med, rcond=None)[0]
    assert np.abs(plain - expected).max() > 0.05
    # evaluated anywhere, the shading stays inside the range of the skin it explains (5th-95th
    # percentile per channel; the stray samples set no floor)
    inliers = ~stray & np.all(np.abs(colors / med - shade * (albedo / med)) < 0.1, 1)
    lo, hi = np.percentile((colors / med)[inliers], [5, 95], axis=0)
    assert np.abs(fit.low - lo).max() < 0.02 and np.abs(fit.high - hi).max() < 0.02
    s = fit(-_facing_normals(rng, 500))
    assert np.all(s >= fit.low - 1e-12) and np.all(s <= fit.high + 1e-12)
    np.testing.assert_allclose(fit(np.array([[0.0, 0.0, -1.0]]))[0], fit.low)   # facing away: the floor


def test_the_fit_declines_what_it_cannot_measure():
    rng = np.random.default_rng(0)
    n = _facing_normals(rng, 1000)
    colors = np.full((1000, 3), 0.5)
    assert fit_skin_shading(n[:50], colors[:50]) is None                            # too few samples
    assert fit_skin_shading(np.tile([[0.0, 0.0, 1.0]], (1000, 1)), colors) is None   # one facing only
    assert fit_skin_shading(n, np.zeros((1000, 3))) is None                          # black
    flat = fit_skin_shading(n, colors)                                               # unlit: flat
    assert flat is not None and np.allclose(flat(-n), 1.0)


@pytest.mark.parametrize("unseen_shade, ratio", [
    ((0.9, 0.8, 0.6), (0.9, 0.8, 0.6)),    # a warm darkening, as fitted: as it is
    ((1.5, 1.4, 1.6), (1.0, 1.0, 1.0)),    # brighter than the seen skin it continues: none
    ((0.6, 0.8, 0.9), (0.6, 0.6, 0.6)),    # blue kept more than red: all three darken alike
    ((0.7, 1.2, 0.5), (0.7, 0.7, 0.5)),
])
def test_the_shaded_fill_only_darkens_and_keeps_skins_shadows_warm(unseen_shade, ratio):
    """sampling.shaded_diffuse on a strip of 30 vertices, the first 10 seen: the unseen ones take
    the plain fill times the shading's ratio, capped at 1 and ordered red >= green >= blue; the
    seen ones keep their colours exactly."""
    from backend.avatar.sampling import diffuse, graph_laplacian, shaded_diffuse

    edges = np.stack([np.arange(29), np.arange(1, 30)], 1)
    L = graph_laplacian(edges, 30)
    colors = np.zeros((30, 3), np.float32)
    colors[:10] = np.linspace([0.7, 0.5, 0.4], [0.8, 0.62, 0.5], 10)
    known = np.arange(30) < 10
    shade = np.ones((30, 3))
    shade[~known] = unseen_shade
    fallback = np.tile(colors[9], (30, 1)).astype(np.float64)
    plain = diffuse(colors, known, L, fallback, 1e-4)
    out = shaded_diffuse(colors, known, L, fallback, 1e-4, shade)
    np.testing.assert_array_equal(out[known], colors[known])
    np.testing.assert_allclose(out[~known], plain[~known] * np.asarray(ratio), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(shaded_diffuse(colors, known, L, fallback, 1e-4, None), plain)


def test_the_shaded_fill_leaves_what_is_not_skin_alone():
    """Hair the fill carries over the scalp and behind the ears is no skin: rows whose plain fill
    the skin predicate refuses keep it (shaded, dark hair's synthesized texture was clipped at black
    and lost a fifth of its contrast behind the astronaut's ear, tests/avatar/test_synthesis.py)."""
    from backend.avatar.sampling import diffuse, graph_laplacian, shaded_diffuse

    edges = np.stack([np.arange(29), np.arange(1, 30)], 1)
    L = graph_laplacian(edges, 30)
    colors = np.zeros((30, 3), np.float32)
    colors[:5] = (0.8, 0.6, 0.5)           # skin at one end, hair at the other
    colors[25:] = (0.2, 0.12, 0.05)
    known = (np.arange(30) < 5) | (np.arange(30) >= 25)
    shade = np.full((30, 3), 0.7)
    shade[known] = 1.0
    fallback = np.tile(colors[0], (30, 1)).astype(np.float64)
    plain = diffuse(colors, known, L, fallback, 1e-4)
    skin = lambda c: c[:, 0] > 0.5         # noqa: E731  the lighter half of the strip
    out = shaded_diffuse(colors, known, L, fallback, 1e-4, shade, skin_like=skin)
    took = ~known & skin(plain)
    assert took.sum() >= 5 and (~known & ~skin(plain)).sum() >= 5
    np.testing.assert_array_equal(out[~known & ~skin(plain)], plain[~known & ~skin(plain)])
    assert np.all(out[took] < plain[took])


def test_the_astronauts_unseen_neck_is_shaded_and_her_face_unchanged(astronaut_fit):
    """The astronaut's neck behind the jaw and her nape, which her photo does not show, were the skin
    model's flat colour, about as bright as her cheeks (medians at LOD 0: (0.75, 0.63, 0.54) and
    (0.68, 0.57, 0.49), cheeks (0.84, 0.70, 0.59)); shaded by the photo's light at their normals
    they are darker and warmer ((0.56, 0.45, 0.32) and (0.50, 0.40, 0.28): red kept 0.74 and 0.72,
    blue 0.59 and 0.58), and not black. The seen face keeps its colours exactly."""
    from backend.avatar.build import BuildOptions, analytic_head

    model, fit, photo, mask = astronaut_fit

    def head_colors(enabled: bool):
        opts = BuildOptions(lods=(0,))
        opts.sampling.shading = ShadingOptions(enabled=enabled)
        head = analytic_head(model, fit.params, fit.camera, photo, mask, [0], opts)[0]
        return head.means, head.colors

    means, shaded = head_colors(True)
    _, flat = head_colors(False)
    x, y, z = means.T
    behind_jaw = (np.abs(x) > 0.045) & (z < 0.0) & (z > -0.04) & (y < -0.05) & (y > -0.10)
    nape = (z < -0.03) & (y < -0.06) & (y > -0.10)
    # above the mouth: the lips' inner band is soft data (sampling.py), which its shaded neighbours move
    cheeks = (np.abs(x) < 0.045) & (np.abs(x) > 0.02) & (z > 0.05) & (y > -0.02) & (y < 0.02)
    assert behind_jaw.sum() > 50 and nape.sum() > 50 and cheeks.sum() > 50
    cheek = np.median(shaded[cheeks], 0)
    np.testing.assert_array_equal(shaded[cheeks], flat[cheeks])      # the seen face as it was
    for name, region in (("behind the jaw", behind_jaw), ("nape", nape)):
        before, after = np.median(flat[region], 0), np.median(shaded[region], 0)
        assert np.abs(before - cheek).max() < 0.2                      # the flat fill: near the cheeks' colour
        ratio = after / before
        assert np.all(ratio < 0.85) and np.all(ratio > 0.4), name       # darker, not black
        assert ratio[2] < ratio[0] - 0.05, name                        # warmer: blue falls most


def _neighbour_steps(model, subset, rows, side, colors) -> tuple[int, float, float]:
    """Over the LOD 0 edges between two vertices of ``subset`` (rows with view data: ``rows`` (K,)
    and their ``side`` colours (K, 3)): the edge count, the mean RGB-summed step between the
    neighbours' side colours and between their own ``colors`` (V, 3)."""
    from backend.avatar.build import head_topology

    at = np.full(len(colors), -1)
    at[rows] = np.arange(len(rows))
    e = head_topology(model, [0])[0].edges
    e = e[np.isin(e[:, 0], subset) & np.isin(e[:, 1], subset)]
    side_step = np.abs(side[at[e[:, 0]]] - side[at[e[:, 1]]]).sum(1).mean()
    return len(e), float(side_step), float(np.abs(colors[e[:, 0]] - colors[e[:, 1]]).sum(1).mean())


def test_all_the_skin_seen_edge_on_shows_the_shaded_fill_when_turned(astronaut_fit):
    """With the fill shaded, every skin sample the photo sees edge-on (|cos| < side_cos) carries a
    side colour, not only those the skin model does not explain: a grazing sample smears one pixel
    over a strip that a turn shows face-on (the astronaut's jaw underside and cheek by the ear at
    +-60 deg). At LOD 0: 287 rows before, 910 now (a superset, the source view's colours the same);
    between neighbouring added rows the side colours step 0.06 (sum over RGB), the samples 0.10."""
    from backend.avatar.build import BuildOptions, analytic_head

    model, fit, photo, mask = astronaut_fit
    got = {}
    for skin in (False, True):
        opts = BuildOptions(lods=(0,))
        opts.sampling.side_skin = skin
        opts.sampling.side_hair = True   # as then: the scalp's hair seen edge-on had side colours too
        sides: dict = {}
        head = analytic_head(model, fit.params, fit.camera, photo, mask, [0], opts, sides=sides)[0]
        got[skin] = (head.colors, *sides[0])
    (c0, rows0, _), (c1, rows1, side1) = got[False], got[True]
    np.testing.assert_array_equal(c0, c1)
    assert np.isin(rows0, rows1).all() and len(rows1) > 2 * len(rows0) > 400
    added = np.setdiff1d(rows1, rows0)
    n_edges, side_step, sample_step = _neighbour_steps(model, added, rows1, side1, c1)
    assert n_edges > 500
    assert side_step < 0.7 * sample_step


def test_hair_seen_edge_on_above_the_nose_keeps_its_texture_when_turned(astronaut_fit):
    """The hair over the scalp and the temples that the photo sees edge-on (the top of the head)
    carried the smooth fill of its neighbours as its side colour: turned 30 deg, the sample's crown
    showed a flat pale wedge where the photo's strands were. With ``side_hair`` off (the default)
    those rows, hair-coloured (not skin-like) and above the nose tip, keep their own colour turned;
    the jaw edge's rows below it keep theirs, and the source view's colours stay the same."""
    from backend.avatar.build import BuildOptions, analytic_head

    model, fit, photo, mask = astronaut_fit
    got = {}
    for hair in (True, False):
        opts = BuildOptions(lods=(0,))
        opts.sampling.side_hair = hair
        sides: dict = {}
        head = analytic_head(model, fit.params, fit.camera, photo, mask, [0], opts, sides=sides)[0]
        got[hair] = (head.means, head.colors, *sides[0])
    (means, c1, rows1, side1), (_, c0, rows0, _) = got[True], got[False]
    np.testing.assert_array_equal(c0, c1)
    assert np.isin(rows0, rows1).all()
    dropped = np.setdiff1d(rows1, rows0)
    assert len(dropped) > 100, f"{len(dropped)} hair rows dropped"
    # all above the rows the jaw keeps: the top of the head and the temples
    assert np.percentile(means[dropped, 1], 5) > np.median(means[rows0, 1])
    n_edges, side_step, sample_step = _neighbour_steps(model, dropped, rows1, side1, c1)
    assert n_edges > 100
    # measured at LOD 0: 0.072 between neighbouring fills against 0.088 between their samples
    assert side_step < 0.9 * sample_step, "the side fill there was smoother than the strands it hid"


def test_a_mirrored_copy_is_shaded_for_its_own_side(astronaut_fit, monkeypatch):
    """Skin the photo does not see whose mirror it sees copies the mirror's colour, lit for the other
    side: turned 60 deg the astronaut's jaw underside showed a bright patch of her lit side's skin
    (0.62, 0.51, 0.39 against the neck's 0.55, 0.44, 0.31 beside it). The copy now takes the light's
    ratio between the two normals, darkening only: at LOD 0 none of the 76 mirrored skin copies
    that stay data is brighter than its source in any channel, and 10 are darker by more than
    0.01 (up to 0.16)."""
    import backend.avatar.build as build
    from backend.avatar.build import BuildOptions, analytic_head
    from backend.avatar.sampling import REGION_SKIN

    model, fit, photo, mask = astronaut_fit
    seen = {}
    real = build.sample_colors

    def keep(*args, **kwargs):
        out = real(*args, **kwargs)
        seen[args[11].shading.enabled] = (out, args[8], args[9])
        return out

    monkeypatch.setattr(build, "sample_colors", keep)
    for enabled in (False, True):
        opts = BuildOptions(lods=(0,))
        opts.sampling.shading = ShadingOptions(enabled=enabled)
        analytic_head(model, fit.params, fit.camera, photo, mask, [0], opts)
    (flat, regions, mirror), (shaded, _, _) = seen[False], seen[True]
    m = np.flatnonzero(flat.mirrored & (regions == REGION_SKIN) & ~flat.interior)
    m = m[(flat.colors[m] == flat.colors[mirror[m]]).all(1)]   # copies that stay data (not hair-coloured)
    assert len(m) > 50
    assert np.all(shaded.colors[m] <= shaded.colors[mirror[m]] + 1e-6)             # never brighter
    drop = (shaded.colors[mirror[m]] - shaded.colors[m]).max(1)
    assert (drop > 0.01).sum() >= 5 and drop.max() > 0.1
