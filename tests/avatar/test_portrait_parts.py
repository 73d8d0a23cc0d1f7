"""Hair volume and torso parts (issue 14): source-view coverage, side-view hair texture, the
body's colour sources, skinning, and hair on synthetic tall-hair / off-centre portraits."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from backend.avatar.gaussians import GaussianSet
from backend.avatar.posing import skin_points
from backend.avatar.skinning import NECK, neck_global_weights, quats_to_rest, to_rest
from backend.avatar.texture import continue_columns, continue_rows

# Floors measured on the astronaut at LOD 0 and set a little below: alpha IoU 0.966; behind-ear
# local std-dev 0.0104 (-45) and 0.0098 (+45), against 0.00015 / 0.00011 when the hair has one flat
# colour (the hair part's colours replaced by their mean). With the refined matte (face/matte.py)
# +45 measures 0.0050: part of the earlier figure was light background specks the segmenter's soft
# edge let into the hair's colour sources (visible in the +45 render); still 45x the flat hair.
ALPHA_IOU_FLOOR = 0.94          # source-view render alpha vs the portrait mask (head + hair + body)
BEHIND_EAR_STD_FLOOR = 0.0045   # mean 5x5 local luminance std-dev in the hair behind the ear at +/-45 deg
BEHIND_EAR_COVERAGE = 0.98      # share of that window with alpha > 0.95 (no holes)
BODY_SSIM_FLOOR = 0.86          # torso (behind the head) vs the photo on its body pixels at the source view (no refinement)


# --- texture continuation -------------------------------------------------------------------

def _continue_rows_reference(image, source):
    """Plain per-pixel loops of the same rule (reflection tiling, distance blend, empty rows)."""
    H, W = source.shape
    out = image.astype(np.float32).copy()
    for i in range(H):
        xs = np.flatnonzero(source[i])
        n = len(xs)
        if n == 0:
            continue
        for x in range(W):
            if source[i, x]:
                continue
            left = xs[xs < x]
            right = xs[xs > x]

            def pp(m):
                r = m % (2 * n)
                return r if r < n else 2 * n - 1 - r
            cl = cr = None
            if len(left):
                kl, dl = len(left) - 1, x - left[-1]
                cl = image[i, xs[pp(kl - dl)]]
            if len(right):
                kr, dr = len(left), right[0] - x
                cr = image[i, xs[pp(kr + dr)]]
            if cl is not None and cr is not None:
                w = dr / (dl + dr)
                out[i, x] = w * cl + (1 - w) * cr
            else:
                out[i, x] = cl if cl is not None else cr
    rows = [i for i in range(H) if source[i].any()]
    for i in range(H):
        if not source[i].any() and rows:
            j = min(rows, key=lambda r: (abs(r - i), r))
            out[i] = out[j]
    return out


def test_continue_rows_matches_reference():
    rng = np.random.default_rng(3)
    img = rng.random((23, 31, 3)).astype(np.float32)
    src = rng.random((23, 31)) < 0.3
    src[5] = False
    src[17] = False
    np.testing.assert_allclose(continue_rows(img, src), _continue_rows_reference(img, src), atol=1e-6)


def test_regional_lowpass_keeps_detail_over_the_source_mean():
    from scipy.ndimage import gaussian_filter

    from backend.avatar.texture import regional_lowpass

    rng = np.random.default_rng(4)
    H, W = 40, 50
    source = np.zeros((H, W), bool)
    source[:10] = True
    image = np.full((H, W, 3), 0.2, np.float32)
    image[:10, :, 0] = 0.6                       # the source: one flat colour (0.6, 0.2, 0.2)
    filled = image.copy()
    filled[10:] = 0.9 + 0.05 * rng.standard_normal((H - 10, W, 3))   # a bright continuation with texture
    out = regional_lowpass(filled, image, source, sigma_px=30.0, detail_px=2.0)
    np.testing.assert_array_equal(out[source], filled[source])
    detail = filled - gaussian_filter(filled.astype(np.float64), (2.0, 2.0, 0), mode="nearest")
    # outside the source: the source's mean colour (it is flat) plus the continuation's detail
    np.testing.assert_allclose(out[~source], (np.array([0.6, 0.2, 0.2]) + detail)[~source], atol=1e-5)
    np.testing.assert_array_equal(regional_lowpass(filled, image, np.zeros_like(source), 30.0, 2.0), filled)


def test_continue_columns_keeps_vertical_strands():
    # vertical stripes above a hairline; below it the stripes must continue column by column
    W = 40
    stripes = (np.arange(W) % 5 < 2).astype(np.float32)
    img = np.zeros((30, W, 3), np.float32)
    img[:10] = stripes[None, :, None]
    src = np.zeros((30, W), bool)
    src[:10] = True
    out = continue_columns(img, src)
    np.testing.assert_array_equal(out[:10], img[:10])
    np.testing.assert_allclose(out[10:, :, 0], np.broadcast_to(stripes, (20, W)))


# --- skinning ---------------------------------------------------------------------------------

def _rot_y(deg):
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def test_to_rest_inverts_blended_skinning():
    rng = np.random.default_rng(0)
    A = np.tile(np.eye(4), (5, 1, 1))
    A[0, :3, :3] = _rot_y(10)
    A[1, :3, :3] = _rot_y(35)
    A[1, :3, 3] = [0.01, -0.02, 0.03]
    p = rng.normal(0, 0.1, (50, 3))
    w = neck_global_weights(rng.random(50))
    np.testing.assert_allclose(skin_points(to_rest(p, w, A), w, A[None])[0], p, atol=1e-5)
    # frames: posing's blended rotation of the rest quaternion gives back the source-pose frame
    from backend.avatar.posing import blended_quats
    from backend.rotations import axis_angle_to_matrix, quat_multiply, quat_to_matrix

    R = axis_angle_to_matrix(rng.normal(size=(50, 3)))
    posed = quat_multiply(blended_quats(w, A[None])[0], quats_to_rest(R, w, A).astype(np.float64))
    np.testing.assert_allclose(quat_to_matrix(posed), R, atol=1e-5)


def to_world(points, weights, A):
    return skin_points(points, weights, np.asarray(A)[None])[0]


# --- the astronaut ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def astro():
    from skimage.data import astronaut

    from backend.avatar.build import BuildOptions, analytic_head
    from backend.avatar.imageops import to_float
    from backend.avatar.portrait import portrait_parts
    from backend.face.analyze import FaceAnalyzer
    from backend.face.fit import fit_image
    from backend.head.loader import load_head_model

    model = load_head_model(None)
    with FaceAnalyzer() as an:
        obs = an.analyze(astronaut())
    fit = fit_image(model, obs)
    photo = to_float(obs.image512)
    mask = np.asarray(obs.mask, np.float32)
    head = analytic_head(model, fit.params, fit.camera, photo, mask, [0], BuildOptions(lods=(0,)))[0]
    pp = portrait_parts(model, fit.params, fit.camera, photo, mask, obs.landmarks)
    return dict(model=model, obs=obs, fit=fit, photo=photo, mask=mask, head=head, pp=pp)


def _render(d, params=None, camera=None, parts=None, head=True):
    """Head LOD 0 + parts posed at ``params`` (blended skinning with the neutral-expression
    transforms) -> image (H, W, 3), alpha (H, W)."""
    from backend.avatar.posing import lbs_numpy, shaped_vertices
    from backend.head.lod import build_lods
    from backend.head.params import HeadParams
    from backend.render.splat import splat

    model, fit = d["model"], d["fit"]
    params = fit.params if params is None else params
    sets = []
    if head:
        verts, _, _ = lbs_numpy(model, params)
        sets.append(d["head"].with_means(verts[0]))
    neutral = HeadParams(params.shape, np.zeros_like(params.expr), params.pose, params.transl)
    A = lbs_numpy(model, neutral)[2][0]
    for name, g, w in d["pp"].parts:
        if parts is None or name in parts:
            sets.append(g.with_means(to_world(g.means, w, A)))
    gs = GaussianSet.concat(sets)
    res = splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, camera or fit.camera,
                background=np.ones(3, np.float32), backend="cpu")
    return res.image[0].numpy().transpose(1, 2, 0), res.alpha[0].numpy()


def test_source_view_alpha_iou_on_the_astronaut(astro):
    from backend.eval.metrics.portrait import alpha_iou

    _, alpha = _render(astro)
    assert alpha_iou(alpha, astro["mask"]) >= ALPHA_IOU_FLOOR


def _behind_ear_window(d, side: float, yaw: float, half: int = 14):
    """Pixel window around the hair behind the ear (head frame: 7.5 cm to the side, 3 cm up,
    5 cm behind the skull's centre) in the camera orbited by ``yaw`` about the head."""
    from backend.avatar.posing import lbs_numpy

    model, fit = d["model"], d["fit"]
    verts, _, A = lbs_numpy(model, fit.params)
    cam = fit.camera.orbit_yaw(yaw, pivot=verts[0].mean(0))
    # 7.5 cm, not 9: since HairOptions.side_depth the back quadrants hug the skull (grown by the
    # back thickness), and 9 cm to the side 5 cm behind the centre lies past the astronaut's hull
    p = np.array([side * 0.075, 0.03, -0.05, 1.0])
    uv, _ = cam.project((A[0, 1] @ p)[None, :3].astype(np.float32))
    u, v = int(uv[0, 0]), int(uv[0, 1])
    return cam, (slice(v - half, v + half), slice(u - half, u + half))


@pytest.mark.parametrize("yaw", [-45.0, 45.0])
def test_hair_behind_the_ear_is_textured_and_whole(astro, yaw):
    from scipy.ndimage import uniform_filter

    side = 1.0 if yaw > 0 else -1.0  # orbiting right shows the subject's left (+x) side's back
    cam, win = _behind_ear_window(astro, side, yaw)
    img, alpha = _render(astro, camera=cam)
    _, hair_alpha = _render(astro, camera=cam, parts=("hair",), head=False)
    assert (hair_alpha[win] > 0.5).mean() > 0.9, "the window must show hair, not the head shell"
    assert (alpha[win] > 0.95).mean() >= BEHIND_EAR_COVERAGE
    lum = img[..., :3].mean(-1).astype(np.float64)
    local_var = uniform_filter(lum ** 2, 5) - uniform_filter(lum, 5) ** 2
    assert np.sqrt(np.maximum(local_var[win], 0)).mean() >= BEHIND_EAR_STD_FLOOR


def test_body_colours_come_only_from_body_pixels(astro):
    from backend.avatar.body import build_body
    from backend.avatar.posing import lbs_numpy

    d = astro
    reg = d["pp"].regions
    marked = d["photo"].copy()
    marked[~reg.torso_pixels()] = (1.0, 0.0, 1.0)  # magenta everywhere that is not clothes (face, hair, background)
    _, joints, _ = lbs_numpy(d["model"], d["fit"].params)
    A = lbs_numpy(d["model"], d["fit"].params)[2][0]
    body = build_body(marked, d["mask"], reg, d["fit"].camera, joints[0, 1], A)
    assert len(body.gaussians) > 1000
    magenta = np.linalg.norm(body.gaussians.colors - np.array([1.0, 0.0, 1.0]), axis=1) < 0.5
    assert not magenta.any()
    assert not (reg.body & (reg.hair | reg.head)).any()


def _torso_gap_share(alpha: np.ndarray, first_row: int, last_row: int = 500) -> float:
    """Share of the pixels between each row's first and last covered pixel (alpha > 0.5) that are
    not covered, over rows first_row..last_row: background seen through the torso."""
    covered = alpha[first_row:last_row] > 0.5
    rows = covered.any(1)
    left = np.argmax(covered, 1)
    right = covered.shape[1] - 1 - np.argmax(covered[:, ::-1], 1)
    span = (np.arange(covered.shape[1])[None] >= left[:, None]) & (np.arange(covered.shape[1])[None] <= right[:, None])
    span &= rows[:, None]
    return float((span & ~covered).sum() / max(span.sum(), 1))


@pytest.mark.parametrize("yaw", [-60.0, 60.0, 120.0, 180.0, -120.0])
def test_the_torso_is_whole_from_the_side_and_behind(astro, yaw):
    """The torso's sides and back are one ring round each row's ellipse (body._ring_row): no
    background shows through the torso seen from the side or behind. Before, the front grid's
    pixel columns thinned out towards the silhouette and the back half-ellipse, narrower by its
    Gaussians' reach, began at it: a gap ran down the torso's side (astronaut, rows from 20 px below
    the chin to the crop's ragged bottom edge: 1.5 % of the torso's span at -60 deg, 0.6 % at +60,
    1.8 % at 120; now at most 0.2 %)."""
    from backend.avatar.posing import lbs_numpy

    verts = lbs_numpy(astro["model"], astro["fit"].params)[0][0]
    cam = astro["fit"].camera.orbit_yaw(yaw, pivot=verts.mean(0))
    _, alpha = _render(astro, camera=cam)
    assert _torso_gap_share(alpha, int(astro["pp"].regions.chin_row) + 20) <= 0.005


def test_the_torso_ring_s_points_and_where_their_colours_come_from():
    """body._ring_row: points on the inset ellipse from +phi_s round the back to -phi_s, each with
    its arc beyond the right and the left side's SIDE_VIEW_DEG point (where the sides' continuations,
    torso_texture.py, start; the grazing band up to phi_s counts as continued) and the right side's
    weight: 1 on the right half up to BACK_BLEND of the arc before the back's middle, 0 as far after
    it, a smooth cross-fade between (mirror-symmetric)."""
    from backend.avatar.body import BACK_BLEND, SIDE_STRETCH, SIDE_VIEW_DEG, _arc, _ring_row

    a, b, inset = 0.08, 0.04, 0.002
    pts, phi, d_r, d_l, w_r = _ring_row(0.0, a, b, 0.6, 0.1, 0.002, inset)
    phi_s = np.arctan(np.sqrt(SIDE_STRETCH ** 2 - 1) * a / b)
    assert np.all(np.abs(phi) >= phi_s - 1e-6)
    np.testing.assert_allclose(((pts[:, 0] / (a - inset)) ** 2 + ((pts[:, 2] - 0.6) / (b - inset)) ** 2), 1.0,
                               atol=1e-6)
    np.testing.assert_allclose(pts[:, 1], 0.1)
    phi_v = np.radians(SIDE_VIEW_DEG)
    band = float(_arc(a, b, phi_v, phi_s))
    ring = float(_arc(a, b, phi_s, 2 * np.pi - phi_s))
    # the arcs beyond each end: measured along the ellipse from its SIDE_VIEW_DEG point
    first = np.argmin(np.abs(phi - phi[phi > 0].min()))
    np.testing.assert_allclose(d_r[first], _arc(a, b, phi_v, phi[first]), rtol=1e-3)
    np.testing.assert_allclose(d_r + d_l, 2 * band + ring, rtol=1e-3)   # two arc rules, the same arc
    assert np.all(np.diff(d_r) > 0)
    # the right side's weight
    s = d_r - band
    assert np.all(w_r[s < (0.5 - BACK_BLEND) * ring] == 1.0) and np.all(w_r[s > (0.5 + BACK_BLEND) * ring] == 0.0)
    assert np.all(np.diff(w_r) <= 0)
    mirror = np.argmin(np.abs(np.angle(np.exp(1j * (phi[:, None] + phi[None, :])))), 1)
    np.testing.assert_allclose(w_r + w_r[mirror], 1.0, atol=1e-6)
    # a row narrower than the inset (a collar's top row) stays inside its own ellipse, the right way round
    pts, phi, *_ = _ring_row(0.0, 0.0015, 0.04, 0.6, 0.1, 0.002, inset)
    assert np.all(np.sign(pts[:, 0]) == np.sign(np.round(np.sin(phi), 9)))
    assert np.all((pts[:, 0] / 0.0015) ** 2 + ((pts[:, 2] - 0.6) / 0.04) ** 2 <= 1.0 + 1e-9)


def _streakiness(img: np.ndarray, alpha: np.ndarray, band: np.ndarray) -> float:
    """Mean horizontal over mean vertical grey-level step inside ``band`` (H, W) bool where the
    render covers the pixel and its right and lower neighbours: above 1 for vertical streaks."""
    g = img.mean(-1)
    dx = np.abs(np.diff(g, axis=1))[:-1, :]
    dy = np.abs(np.diff(g, axis=0))[:, :-1]
    m = band[:-1, :-1] & (alpha[:-1, :-1] > 0.99) & (alpha[1:, :-1] > 0.99) & (alpha[:-1, 1:] > 0.99)
    assert m.sum() > 2000, m.sum()
    return float(dx[m].mean() / dy[m].mean())


@pytest.mark.parametrize("yaw", [-45.0, -30.0, 30.0, 45.0])
def test_the_torsos_grazing_columns_show_fabric_once_turned(astro, yaw):
    """The front grid's columns beyond SIDE_VIEW_DEG round the torso hold the photo's pixels at the
    silhouette (the fabric's edge shading, the matte's blur); turned towards the camera they spread
    into vertical streaks (the sweater's side on d12, the suit's on the sample). Their side colours
    (PortraitParts.sides, the texture continued from inside, which a turned view shows) are less
    streaky there: on the astronaut the mean horizontal over vertical step in the band 1.40-2.09 with
    the photo's colours, 0.91-1.33 with the side colours (the side's continuation, torso_texture.py;
    1.01-1.76 while they reflected the band, 1.01-1.60 while that continued the clothes' outline too:
    at +30/+45 deg the turtleneck's rim by the neck then drew a flat patch of skin colour, which the
    step ratio counted as smooth)."""
    from backend.avatar.posing import lbs_numpy

    d = astro
    name, g, w = d["pp"].parts[0]
    assert name == "body"
    rows, side = d["pp"].sides["body"]
    assert len(rows) > 1000 and rows.max() < len(g) and np.all(np.diff(rows) > 0)
    grazing = np.any(side != g.colors[rows], axis=1)   # the ring's rows keep their own colour here
    rows, side = rows[grazing], side[grazing]
    sided = dataclasses.replace(g, colors=g.colors.copy())
    sided.colors[rows] = side
    mark = dataclasses.replace(g, colors=np.zeros_like(g.colors))
    mark.colors[rows] = 1.0
    verts = lbs_numpy(d["model"], d["fit"].params)[0][0]
    cam = d["fit"].camera.orbit_yaw(yaw, pivot=verts.mean(0))
    shown = [_render(dict(d, pp=dataclasses.replace(d["pp"], parts=[(name, gg, w)])), camera=cam, head=False)
             for gg in (g, sided, mark)]
    band = shown[2][0][..., 0] > 0.5
    own, continued = (_streakiness(img, alpha, band) for img, alpha in shown[:2])
    assert continued < 0.9 * own, (own, continued)


def test_the_body_result_keeps_its_side_rows_when_gaussians_are_dropped(astro):
    """BodyResult.take (portrait.py drops the torso's Gaussians inside the head mesh): the side rows
    are renumbered and still name the same Gaussians with the same side colours."""
    from backend.avatar.body import build_body
    from backend.avatar.posing import lbs_numpy

    d = astro
    _, joints, A = lbs_numpy(d["model"], d["fit"].params)
    body = build_body(d["photo"], d["mask"], d["pp"].regions, d["fit"].camera, joints[0, 1], A[0])
    keep = np.random.default_rng(0).random(len(body.gaussians)) > 0.3
    kept = body.take(keep)
    assert len(kept.gaussians) == keep.sum() and kept.n_front == keep[:body.n_front].sum()
    was = body.side_rows[keep[body.side_rows]]
    np.testing.assert_array_equal(kept.gaussians.means[kept.side_rows], body.gaussians.means[was])
    np.testing.assert_array_equal(kept.side_colors, body.side_colors[keep[body.side_rows]])
    assert np.all(body.side_rows < body.n_front)


def test_the_torsos_ring_continues_the_clothes_interior_not_their_outline(astro):
    """The ring continues the clothes' texture round the sides and back; on the short rows of the
    shoulders' top the continued columns are all outline, where the matte's soft edge mixes in the
    background (d12's orange cabinet made a beige-orange ridge along the shoulders at +-30-45 deg).
    With the clothes' outermost 2 px painted a green the photo lacks, no ring Gaussian turns green
    (their rim is filled from inside, body.RIM_PX), while the front grid, which the source view
    shows, keeps the photo's rim; neither do the grazing columns' side colours, which continue the
    same texture. Measured: 0 of 6,827 ring Gaussians green (a 1 px rim fill: 1,696), 0 side colours;
    the front grid 2.9 %."""
    from scipy.ndimage import binary_erosion

    from backend.avatar import body as body_module
    from backend.avatar.posing import lbs_numpy

    d = astro
    reg = d["pp"].regions
    clothes = reg.torso_pixels()
    rim = clothes & ~binary_erosion(clothes, iterations=2, border_value=1)
    photo = d["photo"].copy()
    photo[rim] = (0.0, 1.0, 0.0)
    _, joints, A = lbs_numpy(d["model"], d["fit"].params)
    body = body_module.build_body(photo, d["mask"], reg, d["fit"].camera, joints[0, 1], A[0])
    c = body.gaussians.colors

    def green(rgb):
        return rgb[:, 1] - np.maximum(rgb[:, 0], rgb[:, 2]) > 0.25

    ring = green(c[body.n_front:])
    assert len(ring) > 1000 and ring.sum() == 0, ring.sum()
    assert len(body.side_colors) > 1000 and green(body.side_colors).sum() == 0
    assert green(c[:body.n_front]).mean() > 0.005


def test_away_from_the_source_view_the_torsos_ring_shows_its_built_colours(astro):
    """The torso's view data (BodyResult.view_sides, PortraitParts.sides) hold its grazing columns'
    side colours and its ring (every Gaussian after the front grid) with the colours it is built
    with: the photo refinement paints the ring's outline with the matte's soft edge (right at the
    source view only), and a turned view shows the side colour. Dropping Gaussians keeps both."""
    from backend.avatar.body import build_body
    from backend.avatar.posing import lbs_numpy

    d = astro
    _, joints, A = lbs_numpy(d["model"], d["fit"].params)
    body = build_body(d["photo"], d["mask"], d["pp"].regions, d["fit"].camera, joints[0, 1], A[0])
    for b in (body, body.take(np.random.default_rng(1).random(len(body.gaussians)) > 0.2)):
        rows, side = b.view_sides()
        n = len(b.gaussians)
        assert np.all(np.diff(rows) > 0) and len(rows) == len(b.side_rows) + n - b.n_front
        np.testing.assert_array_equal(rows[len(b.side_rows):], np.arange(b.n_front, n))
        np.testing.assert_array_equal(side[len(b.side_rows):], b.gaussians.colors[b.n_front:])
        np.testing.assert_array_equal(side[:len(b.side_rows)], b.side_colors)
    name, g, _ = d["pp"].parts[0]
    rows, side = d["pp"].sides["body"]
    assert name == "body" and rows[-1] == len(g) - 1 and len(rows) > 5000


def test_body_back_stays_below_the_collar(astro):
    """The torso's back (the ellipse beyond the silhouette) is built only on rows that show body:
    the rows between the neck joint and the collar would otherwise get the nearest body pixel's
    colour round the back of the neck (the astronaut's black turtleneck as a dark strip behind her
    neck up to the neck joint at +60 deg yaw; before: back Gaussians reached 100 px above
    the collar)."""
    from backend.avatar.body import build_body
    from backend.avatar.posing import lbs_numpy

    d = astro
    reg, cam = d["pp"].regions, d["fit"].camera
    _, joints, A = lbs_numpy(d["model"], d["fit"].params)
    body = build_body(d["photo"], d["mask"], reg, cam, joints[0, 1], A[0])
    back = slice(body.n_front, None)
    assert len(body.gaussians) - body.n_front > 500
    world = to_world(body.gaussians.means[back], body.weights[back], A[0])
    rows = cam.project(world.astype(np.float32))[0][:, 1]
    rr = np.arange(512)[:, None]
    covered = reg.body | (reg.hair & (rr >= reg.chin_row))
    collar = int(np.flatnonzero(covered.any(1))[0])  # the first row that shows body
    step = np.sqrt(covered.sum() / 9000.0) * 2.0  # one back-row spacing (BodyOptions defaults)
    assert rows.min() >= collar - step
    neck_row = float(cam.project(joints[0, 1][None].astype(np.float32))[0][0, 1])
    assert collar - neck_row > 2 * step  # the astronaut has neck rows above the collar to leave out


def test_body_texture_is_sharp_at_the_source_view(astro):
    """The torso's front grid samples the photo through a quarter-step low-pass (its Gaussians'
    footprint smooths already): at the source view its SSIM on the body pixels is above a floor
    and above the half-step pre-blur's. The torso is rendered behind the head mesh, as the avatar
    has it: the head's neck covers the torso ring's back through the collar (alone, the ring's
    colours there counted in SSIM's windows at the collar's body pixels). Measured on the
    astronaut: 0.872 vs 0.856 (0.869 vs 0.854 while the suit over the head model's neck was painted
    on the head; 0.867 before the torso's ring)."""
    from backend.avatar.body import BodyOptions, build_body
    from backend.avatar.posing import lbs_numpy
    from backend.image_metrics import ssim
    from backend.render.splat import splat

    d = astro
    reg, cam = d["pp"].regions, d["fit"].camera
    verts, joints, A = lbs_numpy(d["model"], d["fit"].params)
    head = d["head"].with_means(verts[0])
    target = d["photo"] * d["mask"][..., None]

    def body_ssim(opts):
        body = build_body(d["photo"], d["mask"], reg, cam, joints[0, 1], A[0], opts)
        g = GaussianSet.concat([head, body.gaussians.with_means(to_world(body.gaussians.means, body.weights, A[0]))])
        res = splat(g.means, g.quats, g.scales, g.opacities, g.colors, cam,
                    background=np.zeros(3, np.float32), backend="cpu")
        return ssim(res.image[0].numpy().transpose(1, 2, 0), target, reg.body)

    sharp, blurred = body_ssim(BodyOptions()), body_ssim(BodyOptions(color_blur=0.5))
    print(f"body SSIM at the source view: {sharp:.4f} (half-step pre-blur {blurred:.4f})")
    assert sharp >= BODY_SSIM_FLOOR
    assert sharp > blurred + 0.01


@pytest.fixture(scope="module")
def astro_neck_painted(astro):
    """The astronaut's portrait parts with the clothes over the neck left to the head (collars too:
    ``RegionOptions.collar_to_body`` off), as the build made them before the thirty-fifth session."""
    from backend.avatar.portrait import PortraitOptions, portrait_parts
    from backend.avatar.regions import RegionOptions

    d = astro
    pp = portrait_parts(d["model"], d["fit"].params, d["fit"].camera, d["photo"], d["mask"], d["obs"].landmarks,
                        PortraitOptions(regions=RegionOptions(collar_to_body=False)))
    assert pp.regions.neck_clothes is None
    return dict(d, pp=pp)


def _chest_changed_by_head(d, yaw: float, chin_row: float) -> float:
    """Share of the torso's pixels 60 px and more below ``chin_row`` that the head changes by over
    0.1 (RGB sum) at ``yaw`` (camera orbit about the head)."""
    from backend.avatar.posing import lbs_numpy

    verts = lbs_numpy(d["model"], d["fit"].params)[0][0]
    cam = d["fit"].camera.orbit_yaw(yaw, pivot=verts.mean(0))
    whole, _ = _render(d, camera=cam)
    torso, alpha = _render(d, camera=cam, head=False)
    rows = np.mgrid[0:512, 0:512][0]
    chest = (alpha > 0.5) & (rows >= chin_row + 60)
    assert chest.sum() > 10000
    return float((np.abs(whole - torso).sum(-1)[chest] > 0.1).mean())


@pytest.mark.parametrize("yaw", [0.0, 30.0, -30.0, 60.0])
def test_the_chest_below_the_collar_is_the_torso_s(astro, astro_neck_painted, yaw):
    """The head model's neck runs on below the astronaut's collar, and the photo shows her suit
    there. Painted on the head's neck column, that front was a band of suit that parted from the
    torso at a turned view (a flat panel with a seam on each side). The torso carries it now
    (regions' ``neck_clothes``): below the collar the render is the torso's, with or without the
    head. Share of the torso's pixels 60 px and more below the chin that the head changes by over
    0.1 (RGB sum): 34 / 27 / 25 / 17 % before at yaw 0 / 30 / -30 / 60 (measured here with the
    clothes over the neck left to the head, ``astro_neck_painted``), 0.07-0.2 % now."""
    reg = astro["pp"].regions
    assert reg.neck_clothes is not None and reg.neck_clothes.sum() > 5000
    now = _chest_changed_by_head(astro, yaw, reg.chin_row)
    before = _chest_changed_by_head(astro_neck_painted, yaw, reg.chin_row)
    print(f"yaw {yaw:+.0f}: the head changes {100 * before:.1f} % of the chest painted on it, {100 * now:.2f} % now")
    assert now < 0.01
    assert before > 0.1


def test_head_hair_follows_a_head_turn_and_body_follows_global(astro):
    from backend.avatar.posing import lbs_numpy
    from backend.head.params import HeadParams

    d = astro
    model, p = d["model"], d["fit"].params
    parts = {name: (g, w) for name, g, w in d["pp"].parts}
    turned = HeadParams(p.shape, np.zeros_like(p.expr), p.pose.copy(), p.transl)
    turned.pose[0, NECK, 1] += np.radians(30.0)  # turn the head on the neck
    base = HeadParams(p.shape, np.zeros_like(p.expr), p.pose, p.transl)
    A0, A1 = lbs_numpy(model, base)[2][0], lbs_numpy(model, turned)[2][0]
    g, w = parts["hair"]
    on_head = w[:, NECK] > 0.999
    assert on_head.mean() > 0.5
    moved = to_world(g.means[on_head], w[on_head], A1)
    expect = (A1[NECK] @ np.linalg.inv(A0[NECK]) @ np.c_[to_world(g.means[on_head], w[on_head], A0),
                                                        np.ones(on_head.sum())].T).T[:, :3]
    np.testing.assert_allclose(moved, expect, atol=1e-4)  # float32 positions: 0.1 mm
    # the torso below the neck fade follows global only: a neck turn leaves it in place
    gb, wb = parts["body"]
    low = wb[:, NECK] < 1e-6
    assert low.mean() > 0.2
    np.testing.assert_allclose(to_world(gb.means[low], wb[low], A1), to_world(gb.means[low], wb[low], A0), atol=1e-6)
    # a global turn moves the whole torso rigidly with the global joint
    spun = HeadParams(p.shape, np.zeros_like(p.expr), p.pose.copy(), p.transl)
    spun.pose[0, 0, 1] += np.radians(20.0)
    A2 = lbs_numpy(model, spun)[2][0]
    rigid = (A2[0] @ np.linalg.inv(A0[0]) @ np.c_[to_world(gb.means[low], wb[low], A0), np.ones(low.sum())].T).T[:, :3]
    np.testing.assert_allclose(to_world(gb.means[low], wb[low], A2), rigid, atol=1e-4)


def _paint_tall_hair(d, shift_px: int = 0):
    """The astronaut with a bun painted above her head (hair texture copied from her fringe) and
    the crop's content shifted sideways by ``shift_px`` (an off-centre head): photo, mask, blob."""
    photo, mask = d["photo"].copy(), d["mask"].copy()
    reg = d["pp"].regions
    vs, us = np.nonzero(reg.hair)
    top, cx = vs.min(), int(np.median(us))
    yy, xx = np.mgrid[:512, :512]
    blob = ((xx - cx) / 60.0) ** 2 + ((yy - (top - 15)) / 45.0) ** 2 <= 1.0
    blob &= mask < 0.5
    patch = photo[top + 10: top + 40, cx - 30: cx + 30]
    tiled = np.tile(patch, (512 // patch.shape[0] + 1, 512 // patch.shape[1] + 1, 1))[:512, :512]
    photo[blob] = tiled[blob]
    mask[blob] = 1.0
    if shift_px:
        photo, mask, blob = (np.roll(a, shift_px, axis=1) for a in (photo, mask, blob))
    return photo, mask, blob


@pytest.mark.parametrize("shift_px", [0, 70])
def test_tall_and_off_centre_hair_is_covered(astro, shift_px):
    """Synthetic portraits: a tall bun, and the same head moved off-centre in the crop (the fit is
    re-run on the shifted landmarks' camera by moving the head model): the hair Gaussians cover
    the silhouette."""
    from backend.avatar.portrait import portrait_parts
    from backend.head.params import HeadParams

    d = astro
    photo, mask, blob = _paint_tall_hair(d, shift_px)
    p, cam = d["fit"].params, d["fit"].camera
    lm = d["obs"].landmarks + np.array([shift_px, 0], np.float32)
    # an image shift of s px is a head translation of s * depth / fx metres along camera x (= world x)
    depth = float(np.median(cam.project(np.zeros((1, 3), np.float32))[1]))
    transl = p.transl + np.array([[shift_px * depth / cam.fx, 0, 0]], np.float32)
    params = HeadParams(p.shape, p.expr, p.pose, transl)
    pp = portrait_parts(d["model"], params, cam, photo, mask, lm)
    assert pp.regions.hair[blob].mean() > 0.95
    dd = dict(d, pp=pp, fit=type(d["fit"])(**{**d["fit"].__dict__, "params": params}))
    _, alpha = _render(dd, params=params, parts=("hair",), head=False)
    assert (alpha[blob] > 0.5).mean() > 0.95
    hair_px = pp.regions.hair
    _, full = _render(dd, params=params)
    assert (full[hair_px] > 0.5).mean() > 0.95


def test_learned_avatar_keeps_hair_and_body_with_features(astro):
    """The learned path: the portrait parts replace its image-plane body and join its parts; with
    feature vectors on its Gaussians, the new parts carry RGB-first features of the same width."""
    from backend.avatar.build import with_portrait_parts
    from backend.avatar.gaussians import GaussianAvatar, SkinnedPart
    from backend.avatar.posing import body_weights

    d = astro
    C = 32
    head = d["head"]
    head = GaussianSet(head.means, head.quats, head.scales, head.opacities, head.colors,
                       np.random.default_rng(0).normal(size=(len(head), C)).astype(np.float32))
    plane = GaussianSet(head.means[:10], head.quats[:10], head.scales[:10], head.opacities[:10],
                        head.colors[:10], head.features[:10])
    av = GaussianAvatar("standin", None, d["fit"].params, d["fit"].camera,
                        np.zeros((d["model"].n_verts, 3), np.float32), {0: head},
                        {0: np.zeros((len(head), 3), np.float32)},
                        [SkinnedPart("body", plane, body_weights(10)), SkinnedPart("eye_L", plane, body_weights(10))],
                        method="learned")
    parts = [SkinnedPart(n, GaussianSet(**g.arrays()), w) for n, g, w in d["pp"].parts]
    with_portrait_parts(av, parts)
    assert [p.name for p in av.parts] == ["eye_L", "body", "hair"]
    assert len(av.part("body")) == len(parts[0])
    rest = av.rest_set(0)
    assert rest.features is not None and rest.features.shape == (len(rest), C)
    hair = av.part("hair").gaussians
    np.testing.assert_array_equal(hair.features[:, :3], hair.colors)
    assert not hair.features[:, 3:].any()


def test_a_portrait_without_hair_gets_no_hair_part(astro):
    """The hair cut out of the portrait mask (a bald head, a tight crop): no hair Gaussians float
    round the head, and the torso is still built."""
    from backend.avatar.portrait import portrait_parts

    d = astro
    mask = d["mask"].copy()
    mask[d["pp"].regions.hair] = 0.0
    pp = portrait_parts(d["model"], d["fit"].params, d["fit"].camera, d["photo"], mask, d["obs"].landmarks)
    names = [n for n, _, _ in pp.parts]
    assert "body" in names
    before = len(dict((n, g) for n, g, _ in d["pp"].parts)["hair"])
    after = sum(len(g) for n, g, _ in pp.parts if n == "hair")
    assert after < 0.05 * before


def test_hair_lies_flatter_behind_the_head_than_beside_it(astro):
    """Behind the skull the hair shell is thinner than the silhouette shows it beside the head
    (HairOptions.back_ratio): a thick back made big hair swing out past the clip's outline at head
    turns (d12). Measured on the hair part at rest, in the skull's widest band of heights."""
    from backend.avatar.posing import shaped_vertices

    model, fit = astro["model"], astro["fit"]
    rest = shaped_vertices(model, fit.params.shape)
    hair = dict((n, (g, w)) for n, g, w in astro["pp"].parts)["hair"][0].means
    y_mid = np.median(rest[:, 1]) + 0.02                    # about the temples
    band = lambda p: p[np.abs(p[:, 1] - y_mid) < 0.01]     # noqa: E731
    skull, h = band(rest), band(hair)
    cx, cz = 0.5 * (skull[:, 0].min() + skull[:, 0].max()), 0.5 * (skull[:, 2].min() + skull[:, 2].max())
    side = np.abs(h[:, 0] - cx).max() - 0.5 * np.ptp(skull[:, 0])      # hair beyond the skull's side
    back = (cz - h[:, 2].min()) - 0.5 * np.ptp(skull[:, 2])            # ... beyond its back
    assert side > 0.01, side
    # astronaut: side 21 mm; back 7 mm at back_ratio 0.35, 18 mm at the earlier 0.7
    assert back <= 0.6 * side, (side, back)


def test_hair_width_beside_the_head_stays_near_the_widest_plane(astro):
    """HairOptions.side_depth: behind the skull the silhouette's width beside it is kept only near the
    widest plane; in the back quadrants the hull is the skull's cross-section grown by the back
    thickness. Against the full ellipse (side_depth 0): the same width at the widest plane, a
    narrower back quadrant (what a 30-45 deg head turn shows past the skull)."""
    from backend.avatar.hair import HairOptions
    from backend.avatar.portrait import PortraitOptions, portrait_parts
    from backend.avatar.posing import shaped_vertices

    model, fit = astro["model"], astro["fit"]
    rest = shaped_vertices(model, fit.params.shape)
    y_mid = np.median(rest[:, 1]) + 0.02                    # about the temples
    skull = rest[np.abs(rest[:, 1] - y_mid) < 0.01]
    cx, cz = 0.5 * (skull[:, 0].min() + skull[:, 0].max()), 0.5 * (skull[:, 2].min() + skull[:, 2].max())
    hz = 0.5 * np.ptp(skull[:, 2])

    def widths(side_depth: float) -> tuple[float, float]:
        pp = portrait_parts(model, fit.params, fit.camera, astro["photo"], astro["mask"], astro["obs"].landmarks,
                            PortraitOptions(hair=HairOptions(side_depth=side_depth)))
        h = dict((n, g) for n, g, _ in pp.parts)["hair"].means
        h = h[np.abs(h[:, 1] - y_mid) < 0.01]
        dz = h[:, 2] - cz
        return (float(np.abs(h[np.abs(dz) < 0.01, 0] - cx).max()),          # at the widest plane
                float(np.abs(h[dz < -0.6 * hz, 0] - cx).max()))             # the back quadrants

    wide_full, back_full = widths(0.0)
    wide, back = widths(HairOptions().side_depth)
    assert abs(wide - wide_full) <= 0.004, (wide, wide_full)   # a voxel: the source view's outline
    # astronaut: widest plane 0.105 vs 0.104 m, back quadrants 0.075 vs 0.087 m
    assert back <= back_full - 0.008, (back, back_full)


def _scalp_hair_depth_gap(d, pp, where: np.ndarray | None = None) -> np.ndarray:
    """Per pixel of the astronaut's scalp hair (regions.scalp, or ``where`` (H, W) bool, eroded by 3
    px): head mesh depth minus the nearest hair Gaussian's depth (m; -inf where no hair Gaussian
    projects within 2 px)."""
    from scipy.ndimage import binary_erosion, minimum_filter

    from backend.avatar.posing import lbs_numpy
    from backend.head.params import HeadParams
    from backend.render.depth import rasterize_depth

    model, p, cam = d["model"], d["fit"].params, d["fit"].camera
    verts = lbs_numpy(model, p)[0][0]
    mesh = rasterize_depth(verts, model.faces, cam).depth
    A = lbs_numpy(model, HeadParams(p.shape, np.zeros_like(p.expr), p.pose, p.transl))[2][0]
    g, w = dict((n, (g, w)) for n, g, w in pp.parts)["hair"]
    uv, z = cam.project(to_world(g.means, w, A).astype(np.float32))
    iu, iv = np.floor(uv[:, 0]).astype(int), np.floor(uv[:, 1]).astype(int)
    ok = (iu >= 0) & (iu < mesh.shape[1]) & (iv >= 0) & (iv < mesh.shape[0])
    near = np.full(mesh.shape, np.inf)
    np.minimum.at(near, (iv[ok], iu[ok]), z[ok])
    scalp = binary_erosion(pp.regions.scalp if where is None else where, iterations=3)
    with np.errstate(invalid="ignore"):  # no mesh and no hair (inf - inf): not in front
        gap = mesh - minimum_filter(near, 5)
    return np.nan_to_num(gap[scalp], nan=-np.inf)


def _top_band_hair_share(d, pp, tilt_deg: float) -> float:
    """The head tilted back by ``tilt_deg`` on the neck: share of the pixels in the top 15 px of the
    head mesh's silhouette (its middle 40 % of columns) whose colour is nearer the photo's hair
    than its skin below the brows."""
    from backend.head.params import HeadParams

    p = d["fit"].params
    tilted = HeadParams(p.shape, p.expr, p.pose.copy(), p.transl)
    tilted.pose[0, NECK, 0] -= np.radians(tilt_deg)
    dd = dict(d, pp=pp)
    img, _ = _render(dd, params=tilted)
    _, mesh_alpha = _render(dd, params=tilted, parts=(), head=True)
    reg, photo = pp.regions, d["photo"]
    hair_mu = photo[reg.hair_texture].mean(0)
    below_brows = np.arange(photo.shape[0])[:, None] > reg.brow_row
    skin_mu = np.median(photo[reg.head & ~reg.scalp & below_brows], 0)
    cols = np.flatnonzero(mesh_alpha.max(0) > 0.5)
    c0, c1 = int(cols.min() + 0.3 * np.ptp(cols)), int(cols.max() - 0.3 * np.ptp(cols))
    top = np.argmax(mesh_alpha[:, c0:c1] > 0.5, axis=0)
    rows = top[None, :] + np.arange(15)[:, None]                        # (15, columns)
    band = img[rows, np.arange(c0, c1)[None, :]].reshape(-1, 3)
    return float((np.linalg.norm(band - hair_mu, axis=1) < np.linalg.norm(band - skin_mu, axis=1)).mean())


def test_hair_over_the_scalp_has_thickness(astro):
    """Hair the photo shows over the head mesh (regions.scalp: above the brows, outside the face,
    hair-coloured) is hair with a thickness, not paint on a bald scalp (HairOptions.scalp_shell):
    at the source view the hair part stands in front of the head mesh there, and a head tilted
    back 25 deg shows hair, not a bald forehead, at the top of its skull. Astronaut (LOD 0): 59 %
    of the scalp hair with hair 5 mm or more in front of the mesh (median 16 mm along the ray)
    against 0.2 % with the hull carved behind the ears' plane over the whole head as before; the
    tilted skull's top band 29 % hair-coloured against 16 %."""
    from backend.avatar.hair import HairOptions
    from backend.avatar.portrait import PortraitOptions, portrait_parts

    d = astro
    assert d["pp"].regions.scalp.sum() > 2000
    gap = _scalp_hair_depth_gap(d, d["pp"])
    assert (gap >= 0.005).mean() >= 0.5
    bald = portrait_parts(d["model"], d["fit"].params, d["fit"].camera, d["photo"], d["mask"], d["obs"].landmarks,
                          PortraitOptions(hair=HairOptions(scalp_shell=False)))
    assert (_scalp_hair_depth_gap(d, bald) >= 0.005).mean() <= 0.05
    shell_share, bald_share = _top_band_hair_share(d, d["pp"], 25.0), _top_band_hair_share(d, bald, 25.0)
    assert shell_share >= 0.25 and shell_share >= bald_share + 0.1, (shell_share, bald_share)


def _head_show_through(d, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """Camera orbited by ``yaw`` about the head: the head mesh's share of each pixel's colour (its
    Gaussians rendered black, then white, everything else as built) and the hair part's own alpha."""
    from backend.avatar.posing import lbs_numpy

    verts = lbs_numpy(d["model"], d["fit"].params)[0][0]
    cam = d["fit"].camera.orbit_yaw(yaw, pivot=verts.mean(0))
    head = d["head"]
    images = []
    for grey in (0.0, 1.0):
        d_grey = dict(d, head=GaussianSet(head.means, head.quats, head.scales, head.opacities,
                                          np.full_like(head.colors, grey)))
        images.append(_render(d_grey, camera=cam)[0])
    _, hair_alpha = _render(d, camera=cam, parts=("hair",), head=False)
    return (images[1] - images[0]).mean(-1), hair_alpha


@pytest.mark.parametrize("yaw,spread_max", [(180.0, 0.04), (150.0, 0.03)])
def test_the_back_of_the_hair_has_no_band_of_the_fringe(astro, yaw, spread_max):
    """The back of the hair mirrors the front's columns; the face's columns hold only the fringe
    above it, which the column continuation repeated down them: a light band ran down the middle of
    the back of the head. Now the unseen shell's low frequencies are the hair's regional mean
    (texture.regional_lowpass). Astronaut from behind, the upper 60 % of the hair's rows and its
    middle 70 % of columns: the column means' spread about a quadratic across the head (lighting)
    is 0.030 at 180 deg and 0.017 at 150 deg (0.055 and 0.043 before), while the texture's 5x5 local
    luminance std-dev stays 0.015 / 0.012 (0.016 / 0.013 before; a flat colour gives 0)."""
    from scipy.ndimage import uniform_filter

    from backend.avatar.posing import lbs_numpy

    verts = lbs_numpy(astro["model"], astro["fit"].params)[0][0]
    cam = astro["fit"].camera.orbit_yaw(yaw, pivot=verts.mean(0))
    img, _ = _render(astro, camera=cam)
    _, hair_alpha = _render(astro, camera=cam, parts=("hair",), head=False)
    cov = hair_alpha > 0.95
    rows, cols = np.flatnonzero(cov.any(1)), np.flatnonzero(cov.any(0))
    r = slice(rows.min(), rows.min() + int(0.6 * np.ptp(rows)))
    c = slice(cols.min() + int(0.15 * np.ptp(cols)), cols.max() - int(0.15 * np.ptp(cols)))
    lum = img.mean(-1).astype(np.float64)
    profile = np.nanmean(np.where(cov[r, c], lum[r, c], np.nan), 0)
    x = np.arange(len(profile))
    ok = np.isfinite(profile)
    spread = np.nanstd(profile - np.polyval(np.polyfit(x[ok], profile[ok], 2), x))
    local = np.sqrt(np.maximum(uniform_filter(lum ** 2, 5) - uniform_filter(lum, 5) ** 2, 0))[r, c][cov[r, c]].mean()
    print(f"yaw {yaw}: column spread {spread:.4f}, local std-dev {local:.4f}")
    assert spread <= spread_max
    assert local >= 0.01


@pytest.mark.parametrize("yaw,rows_share", [(180.0, 0.8), (135.0, 0.6), (-135.0, 0.6)])
def test_the_bald_head_does_not_show_through_the_back_of_the_hair(astro, yaw, rows_share):
    """Seen from behind, where the hair part covers a pixel the head mesh's colour does not come
    through it: behind the skull the hull covers the head's surface grown by HairOptions.min_back_m.
    The hull's skull profile comes from the mesh's vertex rows (3-7 mm apart on the stand-in), which
    leave some of the hull's 3 mm rows with part of a ring: there its back fell up to 5 cm inside the
    skull and a line of bald head crossed the back of the hair; and the back shell (back_ratio x the
    thinnest 12 mm, 4 mm) let the skull's Gaussians through at the nape. Astronaut (LOD 0): hair
    pixels in the upper ``rows_share`` of the hair's rows (lower down, turned 135 deg, the jaw and
    the neck stand in front of the side hair that hangs by the cheeks) with a head share above 0.3:
    0.05 % (180 deg), 0.5 % and 0.3 % (+-135 deg), against 7.7 %, 7.0 % and 5.5 % before."""
    share, hair_alpha = _head_show_through(astro, yaw)
    covered = hair_alpha >= 0.9
    rows = np.flatnonzero(covered.any(1))
    upper = covered & (np.arange(covered.shape[0])[:, None] < rows.min() + rows_share * np.ptp(rows))
    assert upper.sum() > 20000
    assert (share[upper] > 0.3).mean() <= 0.01, (share[upper] > 0.3).mean()


def test_smooth_depth_removes_the_voxel_terraces():
    """hair.smooth_depth (the fine layer's depth map, HairOptions.fine_depth_smooth): a slope the
    shell's voxels cut into 3 mm terraces comes back as a slope (neighbour steps within 20 % of the
    slope's own, against 5.75 times it for the terraces; within a third of a terrace of the true
    plane), only the known pixels count (an
    unknown far value does not pull the edge), a flat map stays flat, and a pixel with no known
    pixel near keeps its depth."""
    from backend.avatar.hair import smooth_depth

    H, W, vox, px_per_vox = 64, 96, 0.003, 4.6
    x = np.arange(W)[None, :].repeat(H, 0)
    plane = 2.0 + x / px_per_vox * vox * 0.8                     # 0.8 voxel of depth per voxel across
    terraced = np.floor((plane - 2.0) / vox) * vox + 2.0
    known = np.zeros((H, W), bool)
    known[:, 8:88] = True
    depth = np.where(known, terraced, 9.0)                       # far values outside the known pixels
    out = smooth_depth(depth, known, 1.0 * px_per_vox)
    inner = known & (x >= 16) & (x < 80)
    slope = 0.8 * vox / px_per_vox                               # metres per pixel
    assert np.abs(np.diff(terraced, axis=1))[:, 16:79].max() >= 5 * slope
    assert np.abs(np.diff(out, axis=1))[:, 16:79].max() < 1.2 * slope
    assert np.abs(out - plane + 0.5 * vox)[inner].max() < vox / 3
    assert out[known].max() < 2.1                                # the 9 m outside never leaks in
    assert np.allclose(smooth_depth(np.full((H, W), 2.5), known, 4.6), 2.5)
    lone = np.zeros((H, W), bool)
    lone[0, 0] = True
    assert smooth_depth(depth, lone, 1.0)[H - 1, W - 1] == depth[H - 1, W - 1]


@pytest.mark.parametrize("yaw", [0.0, 30.0, -30.0, 45.0])
def test_a_fringe_over_the_forehead_is_hair_not_paint(astro, yaw):
    """The fringe over the sample's forehead lies inside the face hull, and its light strands are
    nearer the skin's colour than the hair's mean; regions.scalp left it out (43 % of the head
    model's pixels above the brows were scalp), so it was paint on the bald head model, which a turn
    ended in a sharp arc across the hair at the skull's outline. Now (the face hull included, the
    skin model from below the brows, the scalp closed over its strands and, with the hair beyond
    the model, over the crown's highlight: 89 %) the hair part stands in front of it: above the
    brows, of the pixels the hair part covers, the head model draws over 0.06 / 0.04 / 0.06 / 0.03
    at yaw 0 / +30 / -30 / +45 deg (0.43 / 0.33 / 0.36 / 0.26 before)."""
    d = astro
    r = d["pp"].regions
    rows = np.arange(r.head.shape[0])[:, None]
    above = r.person & r.head & (rows < r.brow_row)
    assert r.scalp[above].mean() >= 0.8
    head_share, hair_alpha = _head_show_through(d, yaw)
    covered = (hair_alpha > 0.5) & (rows < r.brow_row - 5)
    assert covered.sum() > 20000
    assert (head_share[covered] > 0.5).mean() <= 0.1


def test_a_fringe_lies_on_the_forehead(astro):
    """The scalp's hull stands up to HairOptions.min_thickness_m (12 mm) in front of the skull; over the
    forehead (regions.fringe: the scalp inside the face hull) a fringe lies on the skin instead, at
    most fringe_m (5 mm) in front of the head mesh: with the 12 mm shell there, mediapipe no longer
    found the sample's face turned 55 deg (tests/face/test_face_analyze.py). Astronaut: the nearest
    hair over the fringe's pixels lies on the mesh (median -0.1 mm: the fine layer at the skin) and
    95 % of it within 7.7 mm (median 7.2 mm, 95 % 12.6 mm with the scalp's 12 mm there)."""
    d = astro
    r = d["pp"].regions
    assert r.fringe is not None and r.fringe.sum() > 1000
    assert not (r.fringe & ~r.scalp).any()
    gap = _scalp_hair_depth_gap(d, d["pp"], r.fringe)
    gap = gap[np.isfinite(gap)]
    print(f"fringe: {len(gap)} px, gap median {np.median(gap) * 1000:.1f} mm, 95 % {np.percentile(gap, 95) * 1000:.1f} mm")
    assert len(gap) > 500
    assert np.median(gap) > -0.002
    assert np.median(gap) < 0.003 and np.percentile(gap, 95) < 0.009


def test_a_photo_cut_at_the_top_of_the_head_keeps_hair_over_the_scalp(astro):
    """The hair hull takes its rows from the silhouette's rows that hold hair; a photo cut at the top of
    the head shows no hair beyond the head model there (photo 17 of the shared media), only over it
    (regions.scalp), and those rows had no hull: the crown stayed paint on the bald model. The scalp's
    hair counts now, and the scalp's edge against the background needs no margin (the margin keeps
    strands off the forehead's skin). The astronaut with the hair beyond the head model matted out
    above the middle row of her scalp (its pixels black, the mask 0; the hair below keeps the hair's
    colour model): over the scalp left above that row (patchy: her crown's highlights are not hair-
    coloured) the hair part stands in front of the mesh at 0.28 of the pixels, at none before (0.24
    with the margin kept; 1.00 over the same pixels of the whole photo)."""
    from backend.avatar.portrait import portrait_parts

    d = astro
    r = d["pp"].regions
    rows = np.arange(r.head.shape[0])[:, None]
    mid = np.median(np.nonzero(r.scalp)[0])
    cut = (r.hair | r.side) & (rows < mid)
    photo, mask = d["photo"].copy(), d["mask"].copy()
    photo[cut] = 0.0
    mask[cut] = 0.0
    pp = portrait_parts(d["model"], d["fit"].params, d["fit"].camera, photo, mask, d["obs"].landmarks)
    assert not (pp.regions.hair & (rows < mid - 5)).any()
    top = pp.regions.scalp & (rows < mid)
    assert top.sum() > 2000
    gap = _scalp_hair_depth_gap(d, pp, top)
    whole = _scalp_hair_depth_gap(d, d["pp"], top)
    print(f"hair in front over the scalp above the cut: {np.mean(gap > 0):.2f} (the whole photo: {np.mean(whole > 0):.2f})")
    assert np.mean(gap > 0) >= 0.2
