"""Mouth interior and eyeball parts on the stand-in without a photo pipeline: placement inside the
head, skinning, default and photo colours (synthetic images with known colours)."""

from __future__ import annotations

import numpy as np
import pytest

from backend.avatar.eyes import IRIS, LID_LOOP, EyeOptions, build_eye_parts, photo_eye_colors
from backend.avatar.interior import mouth_band
from backend.avatar.mouth import (INNER_LIP, OUTER_LIP, MouthOptions, build_mouth_parts, cavity_color_from_photo,
                                  color_mouth_from_photo, lip_color, mouth_frame, mouth_open_ratio)
from backend.avatar.posing import shaped_vertices
from backend.head.loader import load_head_model
from backend.render.camera import Camera


@pytest.fixture(scope="module")
def standin():
    model = load_head_model(None)
    rest = shaped_vertices(model, np.zeros(model.n_shape, np.float32))
    skin = ~mouth_band(model, rest) & (model.weights[:, 3] + model.weights[:, 4] < 0.5)
    return model, rest, skin


def test_mouth_parts_sit_behind_the_lips_inside_the_head(standin):
    model, rest, skin = standin
    parts = build_mouth_parts(model, rest, skin)
    assert [p.name for p in parts] == ["teeth_upper", "teeth_lower", "gums", "tongue", "cavity"]
    f = mouth_frame(model, rest)
    assert 0.03 < f.width < 0.07  # inner mouth width of an adult, metres
    ring = model.landmarks.points(rest, model.faces)[list(INNER_LIP)]
    o = np.argsort(ring[:, 0])
    by = {p.name: p for p in parts}
    for p in parts:
        m = p.gaussians.means
        # behind the inner-lip ring where it is (its depth at the point's x)
        assert len(p) > 100 and np.all(m[:, 2] < np.interp(m[:, 0], ring[o, 0], ring[o, 2])), p.name
        assert np.all(np.abs(p.gaussians.means[:, 0] - f.center[0]) < 0.6 * f.width), p.name
    # upper crowns above the parting line, lower ones below, the tongue below both edges
    assert np.median(by["teeth_upper"].gaussians.means[:, 1]) > f.lip_y > np.median(by["teeth_lower"].gaussians.means[:, 1])
    # the tongue: its tip (front) at the lower teeth's biting edge, below the parting line, its
    # back rising towards the palate
    tm = by["tongue"].gaussians.means
    tip = tm[:, 2] > np.quantile(tm[:, 2], 0.98)
    assert tm[tip, 1].max() < f.lip_y < tm[:, 1].max()
    # default colours: teeth paler and less red than gums and tongue (but dimmed as video shows
    # them inside the mouth, not lit enamel), reddish gums/tongue, near-black cavity
    luma = lambda c: c @ np.array([0.299, 0.587, 0.114])  # noqa: E731
    t = by["teeth_upper"].gaussians
    front = np.abs(t.means[:, 0] - f.center[0]) < 0.25 * f.width  # incisors (the back is shaded)
    teeth = np.median(t.colors[front], 0)
    assert 0.45 < luma(teeth) < 0.7, teeth
    for name in ("gums", "tongue"):
        c = np.median(by[name].gaussians.colors, 0)
        assert c[0] > 1.5 * c[1], name
        assert luma(teeth) > luma(c) and teeth[0] / teeth[1] < c[0] / c[1], name
    assert luma(np.median(by["cavity"].gaussians.colors, 0)) < 0.2  # dark red-brown, as on video
    # nothing pokes out: every point is farther inside than the margin from the skin's vertices
    from scipy.spatial import cKDTree

    d, _ = cKDTree(rest[skin]).query(np.concatenate([p.gaussians.means for p in parts]))
    assert d.min() > MouthOptions().inside_margin_m * 0.99


def _parted_over_closed_jaw_teeth(model, splat_avatar, f) -> float:
    """Teeth coverage (share of the pixels) at the parting line's centre, rendered from the front
    with the lips parted over the closed jaw (mouthUpperUp + mouthLowerDown, skin keys only)."""
    from backend.head.arkit_names import ARKIT_NAMES
    from backend.head.params import HeadParams

    hp = HeadParams.zeros(model)
    for k in ("mouthUpperUpLeft", "mouthUpperUpRight", "mouthLowerDownLeft", "mouthLowerDownRight"):
        hp.expr[0, ARKIT_NAMES.index(k)] = 1.0
    cam = Camera.look_at((0, f.center[1], 0.5), (0, f.center[1], 0), width=160, height=160, fov_y_deg=10)
    _, teeth = _render_parts(model, splat_avatar, hp, cam, {"teeth_upper", "teeth_lower"})
    uv, _ = cam.project(np.array([[f.center[0], f.lip_y, f.front_z]]))
    x, y = int(uv[0, 0]), int(uv[0, 1])
    return float(teeth[y - 1:y + 2, x - 6:x + 7].mean())


def _incisor_edges(parts, f) -> dict[str, float]:
    """Each row's biting edge at the incisors, metres above the parting line."""
    out = {}
    for p in parts:
        if p.name in ("teeth_upper", "teeth_lower"):
            m = p.gaussians.means
            incisors = np.abs(m[:, 0] - f.center[0]) < 0.2 * f.width
            out[p.name] = float((m[incisors, 1].min() if p.name == "teeth_upper" else m[incisors, 1].max()) - f.lip_y)
    return out


def test_upper_teeth_show_under_parted_lips_unless_the_photo_hides_them(standin, splat_avatar):
    """By default the upper row's biting edge sits 4 mm below the parting line, in front of the
    lower row's (a relaxed face shows its upper incisors once the lips part, with an overbite):
    lips parted over the closed jaw (mouthUpperUp + mouthLowerDown, skin keys only) show teeth in
    the middle of the opening. Where the photo's open mouth shows no upper teeth
    (MouthOptions.upper_edge_hidden_m) the rows leave a relaxed jaw's rest gap, the upper edge above
    the parting line: the same lips show the cavity there (d12's pursed frames drew a white bar)."""
    import dataclasses

    model, rest, skin = standin
    opts = MouthOptions()
    f = mouth_frame(model, rest)
    shown = _incisor_edges(build_mouth_parts(model, rest, skin, opts), f)
    assert abs(shown["teeth_upper"] - opts.upper_edge_m) < 0.0005 and opts.upper_edge_m <= -0.003, shown
    assert abs(shown["teeth_lower"] - opts.lower_edge_m) < 0.0005
    assert shown["teeth_upper"] < shown["teeth_lower"] - 0.002        # 2-3 mm overbite
    hidden_opts = dataclasses.replace(opts, upper_edge_m=opts.upper_edge_hidden_m)
    hidden = _incisor_edges(build_mouth_parts(model, rest, skin, hidden_opts), f)
    assert abs(hidden["teeth_upper"] - opts.upper_edge_hidden_m) < 0.0005 and hidden["teeth_upper"] > 0
    assert hidden["teeth_upper"] - hidden["teeth_lower"] >= 0.002     # the rest gap
    # splat_avatar carries the default parts; the second render has them built with the hidden edge
    # (the stand-in's keys part the lips by about a pixel here: the opening leaves a third of the
    # centre's pixels; the default teeth fill nearly all of that, 0.30, the hidden edge's 0.07)
    shown_cover = _parted_over_closed_jaw_teeth(model, splat_avatar, f)
    from backend.avatar.interior import interior_parts

    hidden_avatar = dataclasses.replace(splat_avatar, parts=interior_parts(
        model, splat_avatar.params, splat_avatar.camera, None, None, hidden_opts))
    hidden_cover = _parted_over_closed_jaw_teeth(model, hidden_avatar, f)
    assert hidden_cover < 0.1 and shown_cover > 3 * hidden_cover, (shown_cover, hidden_cover)


def _mouth_photo(model, rest, cam: Camera, opening_px: float, colors: dict[str, tuple]) -> tuple[np.ndarray, np.ndarray]:
    """A flat photo and 478 landmarks: the model's landmarks projected, the inner lips pulled apart
    by ``opening_px`` (upper up, lower down), the upper half of the inner-lip hull painted
    colors["top"], the lower half colors["bottom"], everything else skin."""
    from skimage.measure import points_in_poly

    lm = cam.project(model.landmarks.points(rest, model.faces))[0].astype(np.float64)
    ring = np.array(INNER_LIP)
    mid = lm[ring, 1].mean()
    lm[ring[1:10], 1] -= opening_px / 2    # upper inner lip (78 ... 13 ... 308 are ring[0:11])
    lm[ring[11:], 1] += opening_px / 2     # lower inner lip
    img = np.full((cam.height, cam.width, 3), (0.8, 0.6, 0.5), np.float32)
    yy, xx = np.mgrid[0:cam.height, 0:cam.width]
    pix = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    inside = points_in_poly(pix, lm[ring]).reshape(cam.height, cam.width)
    img[inside & (yy < mid)] = colors["top"]
    img[inside & (yy >= mid)] = colors["bottom"]
    return img, lm


def test_mouth_colours_come_from_an_open_photo_mouth_when_plausible(standin):
    model, rest, skin = standin
    cam = Camera.look_at((0, -0.03, 0.45), (0, -0.03, 0), width=256, height=256, fov_y_deg=20)
    means = lambda parts: [p.gaussians.means for p in parts]  # noqa: E731  (rest = source pose here)
    # closed: defaults stay, but for the cavity: half the lips' colour (here the skin's, the photo
    # paints no lips)
    photo, lm = _mouth_photo(model, rest, cam, 0.0, {"top": (0.1, 0.1, 0.9), "bottom": (0.1, 0.1, 0.9)})
    assert mouth_open_ratio(lm) < MouthOptions().open_ratio
    parts = build_mouth_parts(model, rest, skin)
    before = [p.gaussians.colors.copy() for p in parts]
    seen = color_mouth_from_photo(parts, means(parts), cam, photo, lm)
    assert sum(seen.values()) == 0
    for p, b in zip(parts, before):
        if p.name == "cavity":
            np.testing.assert_allclose(p.gaussians.colors, np.tile([0.4, 0.3, 0.25], (len(p), 1)), atol=1e-6)
        else:
            np.testing.assert_array_equal(p.gaussians.colors, b)
    # ... and the default where asked
    parts = build_mouth_parts(model, rest, skin)
    color_mouth_from_photo(parts, means(parts), cam, photo, lm, MouthOptions(cavity_from_photo=False))
    for p, b in zip(parts, before):
        np.testing.assert_array_equal(p.gaussians.colors, b)
    # open, a pale tooth colour above and a blue below: teeth take the pale one, nothing takes blue
    tooth, blue = (0.97, 0.95, 0.9), (0.1, 0.1, 0.9)
    photo, lm = _mouth_photo(model, rest, cam, 14.0, {"top": tooth, "bottom": blue})
    assert mouth_open_ratio(lm) > MouthOptions().open_ratio
    parts = build_mouth_parts(model, rest, skin)
    seen = color_mouth_from_photo(parts, means(parts), cam, photo, lm)
    assert seen["teeth_upper"] > 20, seen
    up = parts[0].gaussians.colors
    # seen: the photo's colour (those at the tooth/blue edge blend both through the 0.7 px blur)
    assert (np.linalg.norm(up - tooth, axis=1) < 0.12).sum() >= 0.8 * seen["teeth_upper"]
    default = build_mouth_parts(model, rest, skin)[0].gaussians.colors
    assert np.median(up, 0).mean() > np.median(default, 0).mean() + 0.05  # unseen: moved towards it
    for p in parts:
        c = p.gaussians.colors
        assert not np.any((c[:, 2] > 0.6) & (c[:, 0] < 0.3)), p.name  # blue is no mouth colour


def _lipped_photo(model, rest, cam: Camera, opening_px: float, lips, top, bottom):
    """_mouth_photo with the lips (between mediapipe's outer and inner lip rings) painted ``lips``."""
    from skimage.measure import points_in_poly

    photo, lm = _mouth_photo(model, rest, cam, opening_px, {"top": top, "bottom": bottom})
    yy, xx = np.mgrid[0:cam.height, 0:cam.width]
    pix = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    ring = (points_in_poly(pix, lm[list(OUTER_LIP)]) & ~points_in_poly(pix, lm[list(INNER_LIP)])).reshape(xx.shape)
    photo[ring] = lips
    return photo, lm


def test_cavity_colour_follows_the_photo(standin):
    """The cavity's colour is the photo's (issue 14: d3's clip shows a near-black mouth, d12's a lit
    one; one default served neither): an open mouth gives the darkest quarter of its opening, a
    closed one (or an open one whose darkest pixels are no cavity's) half the lips' colour."""
    model, rest, skin = standin
    cam = Camera.look_at((0, -0.03, 0.45), (0, -0.03, 0), width=256, height=256, fov_y_deg=20)
    lips = (0.6, 0.3, 0.28)
    # closed lips of a known colour: lip_color reads them, the cavity is half of it
    photo, lm = _lipped_photo(model, rest, cam, 0.0, lips, (0.1, 0.1, 0.9), (0.1, 0.1, 0.9))
    np.testing.assert_allclose(lip_color(photo, lm), lips, atol=1e-6)
    np.testing.assert_allclose(cavity_color_from_photo(photo, lm), 0.5 * np.array(lips), atol=1e-6)
    np.testing.assert_allclose(cavity_color_from_photo(photo, lm, MouthOptions(cavity_lip_share=0.3)),
                               0.3 * np.array(lips), atol=1e-6)
    # open, pale teeth above a near-black cavity: the dark half's colour, whatever the lips are
    dark = (0.15, 0.02, 0.01)
    photo, lm = _lipped_photo(model, rest, cam, 14.0, lips, (0.9, 0.85, 0.8), dark)
    assert mouth_open_ratio(lm) > MouthOptions().open_ratio
    np.testing.assert_allclose(cavity_color_from_photo(photo, lm), dark, atol=0.02)
    parts = build_mouth_parts(model, rest, skin)
    color_mouth_from_photo(parts, [p.gaussians.means for p in parts], cam, photo, lm)
    cav = {p.name: p for p in parts}["cavity"].gaussians.colors
    assert np.all(np.abs(cav - dark).max(1) < 0.05)   # seen ones sample the dark half too
    # open, but the opening holds no cavity-like pixel (a blue screen): the lips' share again
    photo, lm = _lipped_photo(model, rest, cam, 14.0, lips, (0.1, 0.1, 0.9), (0.1, 0.1, 0.9))
    np.testing.assert_allclose(cavity_color_from_photo(photo, lm), 0.5 * np.array(lips), atol=1e-6)
    # landmarks off the image (no pixel in the opening nor on the lips): no colour, the default stays
    assert cavity_color_from_photo(photo, lm + 1000.0) is None


def test_the_photo_says_whether_the_upper_teeth_show(standin):
    """upper_teeth_shown reads the top third of the photo's opening: pale teeth there -> True, a
    dark opening -> False (the upper row then sits above the parting line, hidden), a closed mouth
    -> None (the default: shown); interior_parts builds the row where the photo says."""
    from backend.avatar.interior import interior_parts
    from backend.avatar.mouth import teeth_options_from_photo, upper_teeth_shown
    from backend.head.params import HeadParams

    model, rest, skin = standin
    cam = Camera.look_at((0, -0.03, 0.45), (0, -0.03, 0), width=256, height=256, fov_y_deg=20)
    lips, tooth, dark = (0.6, 0.3, 0.28), (0.9, 0.85, 0.8), (0.15, 0.02, 0.01)
    opts = MouthOptions()
    f = mouth_frame(model, rest)
    params = HeadParams.zeros(model)
    for top, expected in ((tooth, True), (dark, False)):
        photo, lm = _lipped_photo(model, rest, cam, 14.0, lips, top, dark)
        assert upper_teeth_shown(photo, lm) is expected
        edge = opts.upper_edge_m if expected else opts.upper_edge_hidden_m
        assert teeth_options_from_photo(photo, lm).upper_edge_m == edge
        parts = interior_parts(model, params, cam, photo, lm)
        assert abs(_incisor_edges(parts, f)["teeth_upper"] - edge) < 0.0005
    photo, lm = _lipped_photo(model, rest, cam, 0.0, lips, tooth, tooth)
    assert upper_teeth_shown(photo, lm) is None
    assert teeth_options_from_photo(photo, lm).upper_edge_m == opts.upper_edge_m
    assert teeth_options_from_photo(None, None) == opts
    # a thin opening whose top third holds under cavity_min_px pixels cannot tell either
    photo, lm = _lipped_photo(model, rest, cam, 4.0, lips, dark, dark)
    assert upper_teeth_shown(photo, lm, MouthOptions(open_ratio=0.01, cavity_min_px=10 ** 6)) is None


def _eye_photo(name: str, iris_rgb, sclera_rgb, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """A synthetic eye: an elliptic lid contour (16 landmarks) round an iris circle (5 landmarks)."""
    lm = np.zeros((478, 2))
    t = np.linspace(0, 2 * np.pi, len(LID_LOOP[name]), endpoint=False)
    c = np.array([64.0, 64.0])
    lm[list(LID_LOOP[name])] = c + np.stack([40 * np.cos(t), 18 * np.sin(t)], 1)
    R = 14.0
    lm[IRIS[name][0]] = c
    lm[list(IRIS[name][1:])] = c + R * np.array([[1, 0], [0, 1], [-1, 0], [0, -1]])
    yy, xx = np.mgrid[0:size, 0:size]
    d = np.hypot(xx + 0.5 - c[0], yy + 0.5 - c[1])
    img = np.full((size, size, 3), (0.8, 0.6, 0.5), np.float32)
    img[((xx + 0.5 - c[0]) / 40) ** 2 + ((yy + 0.5 - c[1]) / 18) ** 2 < 1] = sclera_rgb
    img[d < R] = iris_rgb
    img[d < 0.3 * R] = (0.0, 0.0, 0.0)
    return img, lm


def test_eye_colours_from_the_photo_and_eyeballs_on_the_eye_joints(standin):
    model, rest, _ = standin
    for name in ("eye_L", "eye_R"):
        img, lm = _eye_photo(name, (0.2, 0.4, 0.7), (0.9, 0.9, 0.88))
        col = photo_eye_colors(img, lm, name, EyeOptions())
        np.testing.assert_allclose(col["iris"], (0.2, 0.4, 0.7), atol=0.02)
        np.testing.assert_allclose(col["sclera"], (0.9, 0.9, 0.88), atol=0.02)
        # a shaded eye (d3's frame 0: the white of the eye at luma 0.3, darker than any fixed
        # floor for "white"), with lashes darkening the opening's edge: still the photo's sclera,
        # not the default white three times brighter
        img, lm = _eye_photo(name, (0.12, 0.07, 0.03), (0.36, 0.29, 0.24))
        yy, xx = np.mgrid[0:img.shape[0], 0:img.shape[1]]
        lash = (((xx + 0.5 - 64) / 40) ** 2 + ((yy + 0.5 - 64) / 18) ** 2 > 0.6) & (yy < 64)
        img[lash & (np.hypot(xx + 0.5 - 64, yy + 0.5 - 64) > 14)] *= 0.3
        col = photo_eye_colors(img, lm, name, EyeOptions())
        np.testing.assert_allclose(col["sclera"], (0.36, 0.29, 0.24), atol=0.02)
    # no visible eye (landmarks off the image): defaults
    col = photo_eye_colors(np.zeros((64, 64, 3), np.float32), np.full((478, 2), np.nan), "eye_L", EyeOptions())
    np.testing.assert_allclose(col["iris"], EyeOptions().iris_color)
    parts = build_eye_parts(model, rest)
    assert [p.name for p in parts] == ["eye_L", "eye_R"]
    for p, j in zip(parts, (3, 4)):
        np.testing.assert_array_equal(p.weights[:, j], 1.0)
        c = model.rest_joints(rest)[j]
        r = np.linalg.norm(p.gaussians.means - c, axis=1)
        eye_r = np.median(np.linalg.norm(rest[model.weights[:, j] > 0.5] - c, axis=1))
        np.testing.assert_allclose(r, eye_r + EyeOptions().radius_pad_m, atol=1e-6)  # just over the model's eyeball
        # pupil dark at the iris axis (the model's iris landmark), sclera light away from it
        iris_dir = model.landmarks.points(rest, model.faces)[IRIS[p.name][0]] - c
        cosang = (p.gaussians.means - c) @ (iris_dir / np.linalg.norm(iris_dir)) / r
        assert p.gaussians.colors[cosang > 0.999].max() < 0.1
        assert p.gaussians.colors[cosang < 0.5].mean() > 0.5


def test_open_jaw_shows_the_tongue_not_the_cavity_in_front_of_it(standin):
    """Seen from the front through an opened jaw the tongue shows at the bottom of the opening:
    no cavity Gaussian sits between the camera and the tongue's upper surface (before, the tongue
    lay low and far back with the cavity grid in front of it, and d12's wide "O" rendered black
    where the clip shows a pink tongue). Checked at rest and with the jaw open 0.3 rad: for every
    tongue Gaussian on its upper surface, no cavity Gaussian is within its footprint (x, y within
    1.5 mm) and in front of it."""
    from backend.avatar.posing import part_transforms, skin_points
    from backend.head.params import HeadParams

    model, rest, skin = standin
    parts = {p.name: p for p in build_mouth_parts(model, rest, skin)}
    for jaw in (0.0, 0.3):
        hp = HeadParams.zeros(model)
        hp.pose[0, 2, 0] = jaw
        A = part_transforms(model, hp.frame(0))
        t = skin_points(parts["tongue"].gaussians.means, parts["tongue"].weights, A)[0]
        c = skin_points(parts["cavity"].gaussians.means, parts["cavity"].weights, A)[0]
        # the middle of the half facing the camera (what the opening shows; its sides curve away)
        cx = np.median(t[:, 0])
        half_w = np.abs(t[:, 0] - cx).max()
        front = t[(t[:, 2] > np.quantile(t[:, 2], 0.5)) & (np.abs(t[:, 0] - cx) < 0.6 * half_w)]
        dxy = np.linalg.norm(front[:, None, :2] - c[None, :, :2], axis=2)
        blocked = ((dxy < 0.0015) & (c[None, :, 2] > front[:, None, 2] + 0.001)).any(1)
        assert blocked.mean() < 0.05, (jaw, blocked.mean())



def test_open_jaw_shows_the_tongues_back_lit_as_video_shows_it(standin, splat_avatar):
    """A closed-mouth photo shows no tongue, so the tongue a driven open jaw shows is the default's.
    Seen from the front through a jaw open 0.3 rad (d12's widest frames), the top quarter of the
    tongue's pixels (its back, rising behind the tip) renders at 0.65-0.8 of the tongue's colour and
    the bottom quarter (the tip) brighter still: d12's wide frames show a lit tongue at about 0.69
    of it ((0.45, 0.25, 0.29) inside the clip's inner-lip hull where the render draws the tongue),
    where a back dimmed by 70 % rendered at 0.52 (mouth PSNR 18.53 -> 19.22 dB on d12's open frames
    at 40 %; docs/figures/eval.md, "The forty-first session")."""
    from backend.head.params import HeadParams

    model, rest, _ = standin
    f = mouth_frame(model, rest)
    front = Camera.look_at((0, f.center[1], 0.5), (0, f.center[1], 0), width=160, height=160, fov_y_deg=10)
    hp = HeadParams.zeros(model)
    hp.pose[0, 2, 0] = 0.3
    rgb, cover = _render_parts(model, splat_avatar, hp, front, {"tongue"})
    m = cover > 0.95
    assert m.sum() > 500, m.sum()
    rows = np.nonzero(m)[0]
    lo, hi = np.quantile(rows, [0.25, 0.75])
    y = np.arange(m.shape[0])[:, None]
    color = np.asarray(MouthOptions().tongue_color)
    back = rgb[m & (y <= lo)].mean(0) / color
    tip = rgb[m & (y >= hi)].mean(0) / color
    assert np.all((back > 0.65) & (back < 0.8)), back
    assert np.all(tip > back + 0.05), (tip, back)

@pytest.fixture(scope="module")
def splat_avatar(standin):
    """The stand-in at LOD 1 as opaque skin-coloured Gaussians (the mouth band between the lips
    transparent, as a build makes it) plus the interior parts (no photo): enough to render what the
    lips, lids and interior show."""
    from backend.avatar.gaussians import GaussianAvatar, GaussianSet
    from backend.avatar.interior import interior_parts
    from backend.avatar.posing import model_lods
    from backend.head.params import HeadParams

    model, rest, _ = standin
    params = HeadParams.zeros(model)
    cam = Camera.look_at((0, 0, 0.6))
    lod = model_lods(model, [1])[1]
    n = lod.n_verts
    band = np.asarray(lod.upsample @ mouth_band(model, rest).astype(np.float32)).ravel() > 0.5
    head = GaussianSet(lod.upsample @ rest, np.tile([1.0, 0, 0, 0], (n, 1)), np.full((n, 3), 1.6e-3),
                       np.where(band, 0.0, 1.0), np.tile([0.85, 0.62, 0.52], (n, 1)))  # band: see-through, as built
    parts = interior_parts(model, params, cam, None, None)
    return GaussianAvatar("standin", None, params, cam, np.zeros((model.n_verts, 3), np.float32), {1: head},
                          {1: np.zeros((n, 3), np.float32)}, parts)


def _render_parts(model, av, hp, cam, names):
    """(H, W, 3) colour and (H, W) share of the pixel covered by the parts called ``names``."""
    from backend.avatar.posed import posed_set
    from backend.render.splat import splat

    gs = posed_set(av, model, hp, 1)
    mark = np.zeros((len(gs), 1), np.float32)
    for name, sl in av.part_slices(1).items():
        if name in names:
            mark[sl] = 1.0
    r = splat(gs.means, gs.quats, gs.scales, gs.opacities, np.concatenate([gs.colors, mark], 1), cam,
              backend="cpu")
    img = r.image[0].permute(1, 2, 0).numpy()
    return img[..., :3], img[..., 3]


def test_tongue_out_pushes_the_tongue_out_between_the_lips(standin, splat_avatar):
    """tongueOut moves the tongue part (its shape key), not only the lower lip: with the jaw open
    0.2 rad, seen in profile (the subject's left) no tongue shows at tongueOut 0 (it lies behind
    the lips) and a tongue-red tongue shows in front of the lips at 1; seen from the front, more of
    the opening is tongue and it reaches lower (over the lower teeth and lip)."""
    from backend.head.arkit_names import ARKIT_NAMES
    from backend.head.params import HeadParams

    model, rest, _ = standin
    av = splat_avatar
    f = mouth_frame(model, rest)
    profile = Camera.look_at((0.45, f.center[1], f.center[2] - 0.02), (0, f.center[1], f.center[2] - 0.02),
                             width=160, height=160, fov_y_deg=14)
    front = Camera.look_at((0, f.center[1], 0.5), (0, f.center[1], 0), width=160, height=160, fov_y_deg=10)
    seen = {}
    for w in (0.0, 1.0):
        hp = HeadParams.zeros(model)
        hp.pose[0, 2, 0] = 0.2
        hp.expr[0, ARKIT_NAMES.index("tongueOut")] = w
        seen[w] = {"profile": _render_parts(model, av, hp, profile, {"tongue"}),
                   "front": _render_parts(model, av, hp, front, {"tongue"})}
    rgb, cover = seen[0.0]["profile"]
    assert (cover > 0.5).sum() < 10, (cover > 0.5).sum()
    rgb, cover = seen[1.0]["profile"]
    out = cover > 0.5
    assert out.sum() > 100, out.sum()
    c = np.median(rgb[out], 0)
    assert c[0] > 1.4 * c[1], c                                  # tongue red
    # in front of the lips: the profile camera looks along -X, +Z (forward) is towards image left
    lip_z = model.landmarks.points(rest, model.faces)[list(INNER_LIP), 2].max()
    uv, _ = profile.project(np.array([[0.0, f.center[1], lip_z]]))
    assert (np.nonzero(out)[1] < uv[0, 0]).sum() > 25
    (_, c0), (_, c1) = seen[0.0]["front"], seen[1.0]["front"]
    assert (c1 > 0.5).sum() > 1.3 * (c0 > 0.5).sum()
    rows0, rows1 = np.nonzero(c0 > 0.5)[0], np.nonzero(c1 > 0.5)[0]
    assert rows1.max() > rows0.max() + 2                         # down over the lower teeth and lip


def test_open_jaw_shows_the_photos_cavity_shade(standin, splat_avatar):
    """Rendered from the front with the jaw open 0.25 rad, the opening's cavity pixels take the
    photo's shade (issue 14: d3's clip shows a near-black mouth, d12's a lit one): half the lips'
    colour behind closed lips, twice as bright for lips twice as bright, and an open photo mouth's
    own dark colour; the default colour (cavity_from_photo off) is the same for every photo."""
    import copy

    from backend.head.params import HeadParams

    model, rest, _ = standin
    f = mouth_frame(model, rest)
    pcam = Camera.look_at((0, -0.03, 0.45), (0, -0.03, 0), width=256, height=256, fov_y_deg=20)
    front = Camera.look_at((0, f.center[1], 0.5), (0, f.center[1], 0), width=160, height=160, fov_y_deg=10)
    hp = HeadParams.zeros(model)
    hp.pose[0, 2, 0] = 0.25

    def cavity_pixels(photo, lm, opts=MouthOptions()):
        av = copy.deepcopy(splat_avatar)
        mouth = [p for p in av.parts if p.name in ("teeth_upper", "teeth_lower", "gums", "tongue", "cavity")]
        color_mouth_from_photo(mouth, [p.gaussians.means for p in mouth], pcam, photo, lm, opts)
        rgb, cover = _render_parts(model, av, hp, front, {"cavity"})
        m = cover > 0.95
        assert m.sum() > 50, m.sum()
        return np.median(rgb[m], 0)

    dim, bright, dark = (0.3, 0.15, 0.14), (0.6, 0.3, 0.28), (0.12, 0.02, 0.01)
    c_dim = cavity_pixels(*_lipped_photo(model, rest, pcam, 0.0, dim, (0.1, 0.1, 0.9), (0.1, 0.1, 0.9)))
    c_bright = cavity_pixels(*_lipped_photo(model, rest, pcam, 0.0, bright, (0.1, 0.1, 0.9), (0.1, 0.1, 0.9)))
    c_dark = cavity_pixels(*_lipped_photo(model, rest, pcam, 14.0, bright, (0.9, 0.85, 0.8), dark))
    np.testing.assert_allclose(c_dim, 0.5 * np.array(dim), atol=0.02)
    np.testing.assert_allclose(c_bright, 0.5 * np.array(bright), atol=0.03)
    np.testing.assert_allclose(c_dark, dark, atol=0.03)
    off = MouthOptions(cavity_from_photo=False)
    d1 = cavity_pixels(*_lipped_photo(model, rest, pcam, 0.0, dim, (0.1, 0.1, 0.9), (0.1, 0.1, 0.9)), off)
    d2 = cavity_pixels(*_lipped_photo(model, rest, pcam, 0.0, bright, (0.1, 0.1, 0.9), (0.1, 0.1, 0.9)), off)
    np.testing.assert_allclose(d1, d2, atol=1e-6)
    np.testing.assert_allclose(d1, MouthOptions().cavity_color, atol=0.02)


def test_jaw_open_key_moves_the_lower_teeth_and_blink_closes_the_lids(standin, splat_avatar):
    """The ARKit keys that move the interior: jawOpen as a shape key (no joint rotation, as a
    Blender slider sets it) moves the lower teeth with the lower lip, as far as the jaw joint's
    own 0.35 rad rotation moves them (within 15 %), and leaves the upper teeth; eyeBlinkLeft hides
    that eyeball behind the lid (visible eyeball pixels fall by 90 %) and not the other."""
    from backend.avatar.posing import pose
    from backend.head.arkit_names import ARKIT_NAMES
    from backend.head.params import HeadParams

    model, rest, _ = standin
    av = splat_avatar
    sl = av.part_slices(1)
    zero = pose(av, model, HeadParams.zeros(model), 1)[0]
    key = HeadParams.zeros(model)
    key.expr[0, ARKIT_NAMES.index("jawOpen")] = 1.0
    joint = HeadParams.zeros(model)
    joint.pose[0, 2, 0] = 0.35
    by_key, by_joint = pose(av, model, key, 1)[0], pose(av, model, joint, 1)[0]
    d_key = np.linalg.norm(by_key[sl["teeth_lower"]] - zero[sl["teeth_lower"]], axis=1)
    d_joint = np.linalg.norm(by_joint[sl["teeth_lower"]] - zero[sl["teeth_lower"]], axis=1)
    assert np.median(d_joint) > 0.005 and abs(np.median(d_key) / np.median(d_joint) - 1) < 0.15
    np.testing.assert_array_equal(by_key[sl["teeth_upper"]], zero[sl["teeth_upper"]])
    # an "o" (mouthFunnel) parts the lips with the skin key and drops the lower teeth and tongue
    # over a centimetre with the parts' key (the jaw's 0.06 + b rad beyond the photo's own funnel,
    # here 0: b = interior.PART_JAW_BEYOND_SOURCE's; that angle times a 3.3-11.7 cm lever in front
    # of the jaw joint), so the ring shows the cavity
    from backend.avatar.interior import PART_JAW_BEYOND_SOURCE

    angle = 0.06 + PART_JAW_BEYOND_SOURCE["mouthFunnel"]
    o = HeadParams.zeros(model)
    o.expr[0, ARKIT_NAMES.index("mouthFunnel")] = 1.0
    by_o = pose(av, model, o, 1)[0]
    for name in ("teeth_lower", "tongue"):
        drop = np.median(zero[sl[name], 1] - by_o[sl[name], 1])
        assert 0.008 < drop and 0.033 * angle < drop < 0.117 * angle, (name, drop, angle)
    np.testing.assert_array_equal(by_o[sl["teeth_upper"]], zero[sl["teeth_upper"]])
    f = mouth_frame(model, rest)
    front = Camera.look_at((0, f.center[1] + 0.05, 0.6), (0, f.center[1] + 0.05, 0), width=160, height=160,
                           fov_y_deg=14)
    blink = HeadParams.zeros(model)
    blink.expr[0, ARKIT_NAMES.index("eyeBlinkLeft")] = 1.0
    open_l = (_render_parts(model, av, HeadParams.zeros(model), front, {"eye_L"})[1] > 0.5).sum()
    shut_l = (_render_parts(model, av, blink, front, {"eye_L"})[1] > 0.5).sum()
    open_r = (_render_parts(model, av, HeadParams.zeros(model), front, {"eye_R"})[1] > 0.5).sum()
    shut_r = (_render_parts(model, av, blink, front, {"eye_R"})[1] > 0.5).sum()
    assert open_l > 100 and shut_l < 0.1 * open_l, (open_l, shut_l)
    assert shut_r > 0.9 * open_r


def test_funnel_drops_the_interior_only_beyond_the_photos_own_funnel(standin, splat_avatar, monkeypatch):
    """The parts' extra funnel jaw drop (interior.PART_JAW_BEYOND_SOURCE) counts from the photo's
    own funnel: built for a photo fitted with mouthFunnel 0.35 (a toothy smile's fit) and other
    expressions, the render at that expression is the render without the extra drop (same pixels,
    same means: the extra drop is a clamped key, the rest positions are untouched), while a driven
    funnel 0.5 above it drops the lower teeth and tongue 0.5 times the extra slope b further (that
    angle times a 4.4-13 cm lever in front of the jaw joint) and leaves the upper teeth. Below the
    photo's funnel the clamped key is flat: at funnel 0.2 and 0 the parts are exactly where the
    0.06 rad key alone puts them."""
    import backend.avatar.interior as interior
    from backend.avatar.gaussians import GaussianAvatar
    from backend.avatar.posing import pose
    from backend.avatar.posed import posed_set
    from backend.head.arkit_names import ARKIT_NAMES
    from backend.head.params import HeadParams
    from backend.render.splat import splat

    model, rest, _ = standin
    f = ARKIT_NAMES.index("mouthFunnel")
    src = HeadParams.zeros(model)
    src.expr[0, f] = 0.35
    src.expr[0, ARKIT_NAMES.index("mouthSmileLeft")] = 0.5
    src.expr[0, ARKIT_NAMES.index("jawOpen")] = 0.2
    base = splat_avatar
    cam = Camera.look_at((0, mouth_frame(model, rest).center[1], 0.45),
                         (0, mouth_frame(model, rest).center[1], 0), width=160, height=160, fov_y_deg=14)

    def avatar() -> GaussianAvatar:
        parts = interior.interior_parts(model, src, cam, None, None)
        return GaussianAvatar("standin", None, src, cam, base.vertex_offsets, base.lods, base.lod_offsets, parts)

    b = interior.PART_JAW_BEYOND_SOURCE["mouthFunnel"]
    assert b > 0
    new = avatar()
    monkeypatch.setattr(interior, "PART_JAW_BEYOND_SOURCE", {})
    old = avatar()

    def render(av, hp):
        gs = posed_set(av, model, hp, 1)
        return splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, cam, backend="cpu").image[0].numpy()

    assert np.abs(render(new, src) - render(old, src)).max() < 1e-5   # the photo's view: unchanged
    sl = new.part_slices(1)
    at_src_new, at_src_old = pose(new, model, src, 1)[0], pose(old, model, src, 1)[0]
    np.testing.assert_array_equal(at_src_new, at_src_old)
    assert {p.name for p in new.parts if "mouthFunnel" in p.clamped} >= {"teeth_lower", "tongue"}
    assert all(p.clamped["mouthFunnel"].start == np.float32(0.35) for p in new.parts if "mouthFunnel" in p.clamped)
    assert not any(p.clamped for p in old.parts)
    driven = HeadParams(src.shape, src.expr.copy(), src.pose, src.transl)
    driven.expr[0, f] = 0.85
    d_new, d_old = pose(new, model, driven, 1)[0], pose(old, model, driven, 1)[0]
    angle = 0.5 * b
    for name in ("teeth_lower", "tongue"):
        extra = np.median(d_old[sl[name], 1] - d_new[sl[name], 1])  # metres further down
        assert 0.044 * angle < extra < 0.133 * angle, (name, extra, angle)
    np.testing.assert_array_equal(d_new[sl["teeth_upper"]], d_old[sl["teeth_upper"]])
    assert np.abs(render(new, driven) - render(old, driven)).max() > 0.1   # the opening shows it
    for below in (0.2, 0.0):
        closed = HeadParams(src.shape, src.expr.copy(), src.pose, src.transl)
        closed.expr[0, f] = below
        np.testing.assert_array_equal(pose(new, model, closed, 1)[0], pose(old, model, closed, 1)[0])


def test_steepest_funnel_drop_keeps_the_interior_inside_the_posed_head(standin, splat_avatar):
    """The parts' funnel key is steepest for a photo fitted with no funnel (0.06 +
    PART_JAW_BEYOND_SOURCE rad per unit, the chin's skin barely moving): driven to a full "o" (with
    the lower lip pulled down, and again with the jaw open 0.3 rad) every mouth Gaussian it moves
    still lies behind the posed skin (mouth band, lips and eyeballs aside, as the build measures it at rest;
    the same points pushed 2 cm forward are caught, so the check sees a part poking out), and the
    lower teeth above the chin (0.48 rad: their lowest point 51 mm below the parting line, the
    chin's 57 mm on the stand-in)."""
    from backend.avatar.attributes import vertex_normals
    from backend.avatar.mouth import MOUTH_PARTS, _inside
    from backend.avatar.posing import lbs_numpy, pose
    from backend.head.arkit_names import ARKIT_NAMES
    from backend.head.params import HeadParams

    model, rest, skin = standin
    av = splat_avatar
    f = mouth_frame(model, rest)
    lips = ((np.abs(rest[:, 0] - f.center[0]) < 0.6 * f.width) & (np.abs(rest[:, 1] - f.lip_y) < 0.012)
            & (rest[:, 2] > f.front_z - 0.012))
    sl = av.part_slices(1)
    for lower, jaw in ((0.0, 0.0), (1.0, 0.0), (1.0, 0.3)):
        hp = HeadParams.zeros(model)
        hp.expr[0, ARKIT_NAMES.index("mouthFunnel")] = 1.0
        hp.expr[0, ARKIT_NAMES.index("mouthLowerDownLeft")] = lower
        hp.expr[0, ARKIT_NAMES.index("mouthLowerDownRight")] = lower
        hp.pose[0, 2, 0] = jaw
        verts = lbs_numpy(model, hp)[0][0]
        nrm = vertex_normals(verts.astype(np.float32), model.faces)
        bound = skin & ~lips
        posed = pose(av, model, hp, 1)[0]
        # the parts the funnel key moves: the upper row rides the skull (the test above) and, its
        # edge below the parting line, hangs into the opened mouth, where the nearest skin is no
        # surface of its own to be behind (checked at rest by the build)
        pts = np.concatenate([posed[sl[name]] for name in MOUTH_PARTS if name != "teeth_upper"])
        assert _inside(pts, verts[bound], nrm[bound], 0.0).all(), (lower, jaw)
        assert not _inside(pts + [0.0, 0.0, 0.02], verts[bound], nrm[bound], 0.0).all()
        # and the dropped lower teeth stay above the chin (the skin's lowest point in front, within
        # 1 cm of the midline): a steeper key would swing them down into the neck
        chin = verts[(np.abs(verts[:, 0] - f.center[0]) < 0.01) & (verts[:, 2] > f.front_z - 0.03), 1].min()
        assert posed[sl["teeth_lower"], 1].min() > chin, (lower, jaw)


def test_lower_lip_pull_drops_the_interior_only_beyond_the_photos_own(standin, splat_avatar, monkeypatch):
    """The parts' mouthLowerDownLeft/Right keys (interior.PART_JAW_BEYOND_SOURCE, 0 rad of their own)
    count from the photo's own lower-lip pull, as the funnel's do: built for a photo fitted with
    mouthLowerDown 0.3 / 0.2 (and a funnel, smile and jaw), the render at that expression is the
    render without them (same pixels, same means), while both sides pulled to 1 turn the lower
    teeth and gums down (0.7 + 0.8) times the extra slope further: the lower teeth drop by that angle
    times their 4.5-9.5 cm lever in front of the jaw joint; the upper teeth, the tongue and the
    cavity stay (interior.PART_JAW_BEYOND_PARTS), and the opening shows it. Below the photo's pull
    nothing moves (clamped keys). Without the extra slope the channels make no key at all (no zero
    keys in the file)."""
    import backend.avatar.interior as interior
    from backend.avatar.gaussians import GaussianAvatar
    from backend.avatar.posing import pose
    from backend.avatar.posed import posed_set
    from backend.head.arkit_names import ARKIT_NAMES
    from backend.head.params import HeadParams
    from backend.render.splat import splat

    model, rest, _ = standin
    lo_l, lo_r = ARKIT_NAMES.index("mouthLowerDownLeft"), ARKIT_NAMES.index("mouthLowerDownRight")
    src = HeadParams.zeros(model)
    src.expr[0, lo_l], src.expr[0, lo_r] = 0.3, 0.2
    src.expr[0, ARKIT_NAMES.index("mouthFunnel")] = 0.35
    src.expr[0, ARKIT_NAMES.index("mouthSmileLeft")] = 0.5
    src.expr[0, ARKIT_NAMES.index("jawOpen")] = 0.2
    base = splat_avatar
    c = mouth_frame(model, rest).center
    cam = Camera.look_at((0, c[1], 0.45), (0, c[1], 0), width=160, height=160, fov_y_deg=14)

    def avatar() -> GaussianAvatar:
        parts = interior.interior_parts(model, src, cam, None, None)
        return GaussianAvatar("standin", None, src, cam, base.vertex_offsets, base.lods, base.lod_offsets, parts)

    b = interior.PART_JAW_BEYOND_SOURCE["mouthLowerDownLeft"]
    assert b == interior.PART_JAW_BEYOND_SOURCE["mouthLowerDownRight"] > 0
    new = avatar()
    funnel_only = {k: v for k, v in interior.PART_JAW_BEYOND_SOURCE.items() if not k.startswith("mouthLowerDown")}
    monkeypatch.setattr(interior, "PART_JAW_BEYOND_SOURCE", funnel_only)
    old = avatar()
    keyed = {p.name for p in new.parts if "mouthLowerDownLeft" in p.clamped}
    assert keyed == {"teeth_lower", "gums"}
    assert not any(k.startswith("mouthLowerDown") for p in new.parts for k in p.shapes)
    assert not any(k.startswith("mouthLowerDown") for p in old.parts for k in {**p.shapes, **p.clamped})

    def render(av, hp):
        gs = posed_set(av, model, hp, 1)
        return splat(gs.means, gs.quats, gs.scales, gs.opacities, gs.colors, cam, backend="cpu").image[0].numpy()

    assert np.abs(render(new, src) - render(old, src)).max() < 1e-5    # the photo's view: unchanged
    np.testing.assert_array_equal(pose(new, model, src, 1)[0], pose(old, model, src, 1)[0])
    sl = new.part_slices(1)
    driven = HeadParams(src.shape, src.expr.copy(), src.pose, src.transl)
    driven.expr[0, lo_l] = driven.expr[0, lo_r] = 1.0
    d_new, d_old = pose(new, model, driven, 1)[0], pose(old, model, driven, 1)[0]
    angle = (0.7 + 0.8) * b
    extra = np.median(d_old[sl["teeth_lower"], 1] - d_new[sl["teeth_lower"], 1])  # metres further down
    assert 0.045 * angle < extra < 0.095 * angle, (extra, angle)
    for name in ("teeth_upper", "tongue", "cavity"):
        np.testing.assert_array_equal(d_new[sl[name]], d_old[sl[name]])
    assert np.abs(render(new, driven) - render(old, driven)).max() > 0.1   # the opening shows it
    below = HeadParams(src.shape, src.expr.copy(), src.pose, src.transl)
    below.expr[0, lo_l], below.expr[0, lo_r] = 0.1, 0.0
    np.testing.assert_array_equal(pose(new, model, below, 1)[0], pose(old, model, below, 1)[0])
    # one side alone turns the parts by its own share
    left = HeadParams(src.shape, src.expr.copy(), src.pose, src.transl)
    left.expr[0, lo_l] = 1.0
    l_new, l_old = pose(new, model, left, 1)[0], pose(old, model, left, 1)[0]
    ratio = (np.median(l_old[sl["teeth_lower"], 1] - l_new[sl["teeth_lower"], 1])
             / np.median(d_old[sl["teeth_lower"], 1] - d_new[sl["teeth_lower"], 1]))
    assert abs(ratio - 0.7 / 1.5) < 0.02, ratio


def test_eyeball_bare_outside_the_photos_lids_takes_the_photos_skin(standin):
    """Where the fitted head's eye opening is wider than the photo's eye, the eyeball Gaussians no
    skin hides take the photo's colour there (lid skin), not the drawn white sclera; those under
    the skin keep the sclera (a lid that opens further still shows a white eye)."""
    from backend.avatar.eyes import color_eyes_from_photo
    from backend.avatar.interior import _skin_depth
    from backend.head.params import HeadParams

    model, rest, _ = standin
    params = HeadParams(np.zeros(model.n_shape, np.float32), np.zeros((1, model.n_expr), np.float32),
                        np.zeros((1, 5, 3), np.float32), np.zeros((1, 3), np.float32))
    centre = model.rest_joints(rest)[[3, 4]].mean(0)
    cam = Camera.look_at(tuple(centre + (0, 0, 0.35)), tuple(centre), width=256, height=256, fov_y_deg=20)
    lm3 = model.landmarks.points(rest, model.faces)
    uv, _ = cam.project(lm3.astype(np.float32))
    lm = np.asarray(uv, np.float64)
    skin_rgb, sclera_rgb = np.array([0.8, 0.5, 0.4]), np.array([0.95, 0.95, 0.95])
    photo = np.tile(skin_rgb.astype(np.float32), (256, 256, 1))
    from skimage.measure import points_in_poly

    yy, xx = np.mgrid[0:256, 0:256]
    pix = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    own_loops = {}
    for name in ("eye_L", "eye_R"):   # the photo's eye: the model's lid contour squashed to 40 % high
        loop = lm[list(LID_LOOP[name])]
        own_loops[name] = loop.copy()
        c = loop.mean(0)
        lm[list(LID_LOOP[name])] = c + (loop - c) * (1.0, 0.4)
        inside = points_in_poly(pix, lm[list(LID_LOOP[name])]).reshape(256, 256)
        photo[inside] = sclera_rgb
    lm[[i for n in ("eye_L", "eye_R") for i in IRIS[n]]] = np.nan  # no iris seen: colours from defaults
    depth = _skin_depth(model, params, cam)
    assert np.isfinite(depth).sum() > 1000
    for with_depth in (False, True):
        parts = build_eye_parts(model, rest, photo, lm)
        centers = [model.rest_joints(rest)[j] for j in (3, 4)]
        color_eyes_from_photo(parts, [p.gaussians.means for p in parts], centers, cam, photo, lm,
                              skin_depth=depth if with_depth else None)
        for p, ctr in zip(parts, centers):
            g = p.gaussians
            puv, z = cam.project(g.means)
            px, py = np.clip(puv.astype(int), 0, 255).T
            front = z < cam.project(ctr[None].astype(np.float32))[1][0]
            bare = front & (depth[py, px] > z)
            band = (bare & points_in_poly(puv, own_loops[p.name])
                    & ~points_in_poly(puv, lm[list(LID_LOOP[p.name])] + 0.0))
            # well outside the squashed contour (the photo's 0.6 px blur leaves the edge mixed)
            far = band & (np.abs(puv[:, 1] - lm[list(LID_LOOP[p.name])][:, 1].mean()) >
                          0.4 * np.ptp(own_loops[p.name][:, 1]) / 2 + 2)
            assert far.sum() >= 10, (p.name, far.sum())
            err = np.abs(g.colors[far] - skin_rgb).max(1)
            if with_depth:
                assert np.median(err) < 0.03, (p.name, np.median(err))
                hidden = front & (depth[py, px] < z - 1e-3)
                assert hidden.sum() > 50
                assert g.colors[hidden].mean() > 0.6   # the drawn sclera (light) under the skin
            else:
                assert np.median(err) > 0.2   # the drawn sclera: what the render showed before


def test_refined_mouth_colours_keep_no_colour_their_part_cannot_have() -> None:
    """The refinement may push a cavity Gaussian seen only past the lips' corners to orange or red
    (the astronaut's smile did; an open mouth showed the blobs): a mouth part keeps its refined colour
    unless it is more saturated than the part may be and than it was, and other parts keep theirs."""
    from backend.avatar.mouth import REFINED_SATURATION, plausible_refined_colors

    before = np.float32([[0.41, 0.30, 0.28], [0.41, 0.30, 0.28], [0.41, 0.30, 0.28], [0.9, 0.2, 0.1]])
    after = np.float32([[0.90, 0.39, 0.02],   # orange: saturation 0.88 > 0.3 -> reverted
                        [0.45, 0.00, 0.00],   # deep red: 0.45 -> reverted
                        [0.85, 0.80, 0.70],   # teeth-white painted on the cavity: 0.15, kept (the source view's teeth)
                        [0.95, 0.10, 0.10]])  # 0.85: over the limit and over its own 0.8 before -> reverted
    got = plausible_refined_colors("cavity", before, after)
    np.testing.assert_array_equal(got[:2], before[:2])
    np.testing.assert_array_equal(got[2], after[2])
    np.testing.assert_array_equal(got[3], before[3])
    kept = np.float32([[0.92, 0.15, 0.10]])   # 0.82: over the limit, but no more than its 0.85 before -> kept
    assert plausible_refined_colors("cavity", np.float32([[0.9, 0.1, 0.05]]), kept)[0].tolist() == kept[0].tolist()
    tongue = np.float32([[0.75, 0.30, 0.30]])  # red, 0.45 <= the tongue's 0.6
    np.testing.assert_array_equal(plausible_refined_colors("tongue", np.zeros((1, 3)), tongue), tongue)
    assert REFINED_SATURATION["tongue"] >= 0.45 > REFINED_SATURATION["cavity"]
    hair = np.float32([[0.0, 1.0, 0.0]])
    np.testing.assert_array_equal(plausible_refined_colors("hair", np.zeros((1, 3)), hair), hair)


def test_a_wide_open_mouth_shows_the_throat_not_the_inside_of_the_head(standin, splat_avatar):
    """The cavity's volume stays near the rest mouth: seen from the front through a mouth opened
    wide with its lower lip pulled down (d3's frame 315: jaw 0.3 rad, mouthFunnel and both
    mouthLowerDown at 1), the view passed between it and the lips into the head and ended on the
    inside of the back of the head (d3's and d12's open mouths showed the nape's colour in bands
    under the upper lip and over the lower one). The throat, a dark sheet behind the cavity whose
    rows stretch with the jaw, ends it: the back of the head (painted green here) shows through no
    pixel of the opening's middle; without the throat it does."""
    import copy

    from backend.avatar.attributes import unique_edges
    from backend.avatar.interior import interior_parts
    from backend.avatar.posing import model_lods
    from backend.avatar.sampling import jaw_edge_stretch, mouth_interior, vertex_max_stretch
    from backend.head.arkit_names import ARKIT_NAMES
    from backend.head.params import HeadParams

    model, rest, _ = standin
    f = mouth_frame(model, rest)
    front = Camera.look_at((0, f.center[1] - 0.01, 0.5), (0, f.center[1] - 0.01, 0), width=160, height=160,
                           fov_y_deg=10)
    av = copy.deepcopy(splat_avatar)
    head = av.lods[1]
    # the mouth's pocket behind the lips is see-through, as a build makes it (build._head_level)
    lod = model_lods(model, [1])[1]
    edges = unique_edges(lod.faces)
    stretch = vertex_max_stretch(len(head), edges, jaw_edge_stretch(model, head.means, lod.upsample, edges))
    head.opacities = np.where(mouth_interior(model, head.means, stretch), 0.0, head.opacities).astype(np.float32)
    back = head.means[:, 2] < f.front_z - 0.05        # the head's back half, far behind the mouth
    head.colors = np.where(back[:, None], np.array([0.0, 1.0, 0.0], np.float32), head.colors).astype(np.float32)
    no_throat = copy.deepcopy(av)
    no_throat.parts = interior_parts(model, HeadParams.zeros(model), av.camera, None, None,
                                     mouth=MouthOptions(throat=False))
    hp = HeadParams.zeros(model)
    hp.pose[0, 2, 0] = 0.3
    for name in ("mouthFunnel", "mouthLowerDownLeft", "mouthLowerDownRight"):
        hp.expr[0, ARKIT_NAMES.index(name)] = 1.0
    green, shown = {}, {}
    for name, a in (("throat", av), ("none", no_throat)):
        rgb, _ = _render_parts(model, a, hp, front, set())
        green[name] = (rgb[..., 1] > 0.4) & (rgb[..., 0] < 0.3)
        shown[name] = rgb
    # the opening: what is not skin in the throat's render; its middle 70 % of columns (the
    # corners, past the arch's width, show the head's inside either way)
    opening = np.abs(shown["throat"] - shown["throat"][5, 5]).max(-1) > 0.15
    cols = np.flatnonzero(opening.any(0))
    lo, hi = np.percentile(cols, [15, 85])
    middle = np.zeros_like(opening)
    middle[:, int(lo):int(hi) + 1] = True
    middle &= opening | green["none"]
    counts = {k: int((g & middle).sum()) for k, g in green.items()}
    print("green pixels in the opening's middle, with and without the throat:", counts)
    assert counts["none"] > 30 and counts["throat"] == 0
