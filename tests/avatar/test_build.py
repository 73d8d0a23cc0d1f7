"""End-to-end analytic build on the public-domain astronaut portrait with the bundled stand-in.

One build (module fixture, LODs 0-2, a two-step refinement so the refinement path runs) serves
every test here; the CLI tests build LOD 0 only.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from backend.avatar.build import BuildOptions, build_avatar, render_source
from backend.avatar.fileformat import load_avatar, save_avatar
from backend.avatar.outputs import head_pivot
from backend.avatar.ply import read_ply, write_ply
from backend.avatar.posing import NECK_FOLLOW, model_lods, pose
from backend.avatar.posed import posed_set
from backend.head.params import HeadParams
from backend.progress import Progress

# Stated thresholds (measured on the astronaut: see docs/figures/avatar.md)
MIN_PSNR_FACE_LOD2 = 25.0        # dB, source view, inside the landmark hull, before refinement
MAX_LANDMARK_PX_LOD2 = 3.5       # mean px at 512 between mediapipe on our render and on the photo
MAX_LANDMARK_PX_YAW = 12.0       # mean px at 512, +/-30 deg yaw: mediapipe vs our model's landmarks
# mean px at 512, source view: mediapipe on our render, read as the tracker reads a clip (video mode,
# settled), vs the model's landmarks with the avatar's vertex offsets (measured 0.98 with the outline moved too,
# c823b3e; 1.66 against the model without them: avatar.landmark_detail). Mediapipe reads the same render
# differently on different CPUs: under 1.2 on the AMD EPYC of the thirty-first session, 1.233 (1.491 without
# the offsets) at ef755f0 and 1.208 (1.514) at 16c1482 on the thirty-second session's Intel Xeon (AVX-512)
MAX_LANDMARK_PX_MODEL_SOURCE = 1.3
MIN_LANDMARK_PX_OFFSET_GAIN = 0.2   # the offsets bring the render's landmarks at least this much nearer


@pytest.fixture(scope="module")
def built():
    reports: list[tuple[float, str]] = []
    opts = BuildOptions(lods=(0, 1, 2), refine=True, refine_seconds=1e4, refine_steps=2)
    result = build_avatar(None, opts, Progress(callback=lambda f, m: reports.append((f, m))))
    return result, reports


def test_build_reports_progress_and_stage_times(built):
    result, reports = built
    fractions = [f for f, _ in reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    for stage in ("detect", "fit", "sampling", "parts", "refine", "total"):
        assert result.seconds[stage] > 0
    assert result.refine_steps == {0: 2, 1: 2, 2: 2}
    fig = result.figures()
    assert set(fig["gaussians"]) == {"0", "1", "2"} and set(fig["psnr_face"]) == {"0", "1", "2"}
    json.dumps(fig)  # JSON-able as written by --json


def test_gaussian_counts_are_subdivided_vertices_plus_parts(built):
    result, _ = built
    av, model = result.avatar, result.model
    lods = model_lods(model, (0, 1, 2))
    # the torso's front "on the order of 9K", as the paper's shoulders, plus its back
    assert 9000 < len(av.part("body")) < 25000
    assert len(av.part("hair")) > 5000
    n_p = av.n_parts
    for lvl in (0, 1, 2):
        assert len(av.lods[lvl]) == lods[lvl].n_verts
        assert av.counts()[lvl] == {"head": lods[lvl].n_verts, "parts": n_p, "total": lods[lvl].n_verts + n_p}
        assert pose(av, model, av.params, lvl).shape == (1, lods[lvl].n_verts + n_p, 3)
    from backend.avatar.attributes import unique_edges

    # midpoint subdivision: one new Gaussian per edge of the coarser level
    assert len(av.lods[1]) == len(av.lods[0]) + len(unique_edges(model.faces))
    g = av.lods[2]
    assert np.all(np.isfinite(g.colors)) and g.colors.min() >= 0 and g.colors.max() <= 1
    np.testing.assert_allclose(np.linalg.norm(g.quats, axis=1), 1, atol=1e-5)


def test_zero_pose_reproduces_rest_and_posing_is_vectorized(built):
    result, _ = built
    av, model = result.avatar, result.model
    zero = HeadParams.zeros(model, 1)
    for lvl in (0, 2):
        np.testing.assert_allclose(pose(av, model, zero, lvl)[0], av.rest_set(lvl).means, atol=1e-6)
    # three frames at once equal three single-frame calls
    rng = np.random.default_rng(0)
    T = 3
    p = HeadParams(av.params.shape, rng.normal(scale=0.5, size=(T, model.n_expr)),
                   rng.normal(scale=0.1, size=(T, 5, 3)), rng.normal(scale=0.01, size=(T, 3)))
    many = pose(av, model, p, 1)
    for t in range(T):
        np.testing.assert_allclose(many[t], pose(av, model, p.frame(t), 1)[0], atol=1e-6)
    # the source frame puts the Gaussians where the build sampled them, except the few the
    # silhouette fit pulled inside the matte (silhouette.py: up to 16 + 3 px across the image)
    src = pose(av, model, av.params, 0)[0]
    n = len(av.lods[0])
    from backend.avatar.posing import lbs_numpy

    dist = np.linalg.norm(src[:n] - lbs_numpy(model, av.params)[0][0], axis=1)
    assert (dist < 5e-3).mean() > 0.99 and dist.max() < 0.025


def test_body_follows_global_and_part_of_neck_but_not_jaw(built):
    result, _ = built
    av, model = result.avatar, result.model
    n = len(av.lods[0])
    sl = av.part_slices(0)["body"]
    base = HeadParams.zeros(model, 1)
    rest_sh = pose(av, model, base, 0)[0, sl]
    jaw = HeadParams.zeros(model, 1)
    jaw.pose[0, 2, 0] = 0.4
    jaw_out = pose(av, model, jaw, 0)[0]
    np.testing.assert_allclose(jaw_out[sl], rest_sh, atol=1e-7)           # jaw: body still
    smile = av.params.frame(0)
    smile.expr[:] = np.random.default_rng(1).normal(size=smile.expr.shape)
    # expressions move no part except through the part's own shape keys (tongueOut, jawOpen, eyeLook*)
    keyed = {p.name for p in av.parts if p.shapes}
    assert {"tongue", "teeth_lower"} <= keyed and "body" not in keyed
    still = np.concatenate([np.arange(s.start, s.stop) for name, s in av.part_slices(0).items()
                            if name not in keyed])
    np.testing.assert_allclose(pose(av, model, smile, 0)[0, still], pose(av, model, av.params, 0)[0, still],
                               atol=1e-7)
    assert np.abs(jaw_out[:n] - pose(av, model, base, 0)[0, :n]).max() > 5e-3  # ...the chin moves
    glob = HeadParams.zeros(model, 1)
    glob.pose[0, 0, 1] = 0.3
    glob.transl[0] = (0.01, 0.02, 0.03)
    moved = pose(av, model, glob, 0)[0, sl]
    # a rigid motion: pairwise distances are kept
    i, j = np.arange(0, len(moved) - 1, 7), np.arange(1, len(moved), 7)
    np.testing.assert_allclose(np.linalg.norm(moved[i] - moved[j], axis=1),
                               np.linalg.norm(rest_sh[i] - rest_sh[j], axis=1), atol=1e-6)
    neck = HeadParams.zeros(model, 1)
    neck.pose[0, 1, 1] = 0.4
    head_only = pose(av, model, neck, 0)[0, sl]
    # the neck turns the shoulders by NECK_FOLLOW of its angle: small but nonzero
    d_neck = np.abs(head_only - rest_sh).max()
    assert 0 < d_neck < 0.5 * np.abs(pose(av, model, neck, 0)[0, :n] - pose(av, model, base, 0)[0, :n]).max()
    assert NECK_FOLLOW < 0.5


def test_source_view_reproduces_the_photo_in_the_face(built):
    result, _ = built
    m = result.metrics
    assert m[2]["psnr_face_raw"] >= MIN_PSNR_FACE_LOD2
    # finer LODs sample the photo more densely: quality rises with the level
    assert m[0]["psnr_face_raw"] < m[1]["psnr_face_raw"] < m[2]["psnr_face_raw"]
    assert m[2]["ssim_face_raw"] > 0.75
    # two refinement steps already improve every LOD
    for lvl in (0, 1, 2):
        assert m[lvl]["psnr_face"] > m[lvl]["psnr_face_raw"]


def test_no_holes_from_source_and_yaw(built):
    from scipy.ndimage import binary_erosion

    from backend.avatar.posing import lbs_numpy
    from backend.render.depth import rasterize_depth

    result, _ = built
    av, model = result.avatar, result.model
    verts = lbs_numpy(model, av.params)[0][0]
    pivot = head_pivot(av, model)
    person = result.observation.mask >= 0.5
    for yaw in (0.0, 30.0, -30.0):
        cam = av.camera.orbit_yaw(yaw, pivot=pivot)
        inside = binary_erosion(rasterize_depth(verts, model.faces, cam).face_id >= 0, iterations=2)
        if yaw == 0.0:
            # the mesh's neck is wider than the astronaut's: the photo shows background there,
            # and the silhouette fit carves it (avatar/silhouette.py)
            inside &= binary_erosion(person, iterations=2)
        for lvl in (0, 1, 2):
            _, alpha = render_source(av, model, lvl, camera=cam)
            # measured min 0.815 (single pixels at -30 deg next to the carved neck sliver); 0.7497
            # at LOD 1 with the ARKit-52 stand-in (its source-frame fit moves the sliver a little)
            assert alpha[inside].min() > 0.7 and (alpha[inside] > 0.9).mean() > 0.999, (yaw, lvl)


def test_mediapipe_finds_the_face_in_our_renders(built):
    from backend.face.analyze import FaceAnalyzer
    from backend.face.mediapipe_face import MediapipeFace

    result, _ = built
    av, model, obs = result.avatar, result.model, result.observation
    pivot = head_pivot(av, model)
    from backend.avatar.posing import lbs_numpy

    from backend.avatar.posing import rotate_blended

    verts, _, A = lbs_numpy(model, av.params)
    model_lm = model.landmarks.points(verts[0] + rotate_blended(av.vertex_offsets, model.weights, A)[0], model.faces)
    plain_lm = model.landmarks.points(verts[0], model.faces)
    valid = model.landmarks.valid
    with MediapipeFace(static=True) as mp:
        for yaw in (0.0, 30.0, -30.0):
            cam = av.camera.orbit_yaw(yaw, pivot=pivot)
            img, _ = render_source(av, model, 2, camera=cam, background=(1.0, 1.0, 1.0))
            lm = mp.landmarks((img * 255).astype(np.uint8))
            assert lm is not None, f"no face found at yaw {yaw}"
            if yaw == 0.0:  # against the photo's own landmarks
                d = np.linalg.norm(lm[:, :2] - obs.landmarks, axis=1)
                assert d.mean() < MAX_LANDMARK_PX_LOD2
                # the head's geometry sits where its paint is: read as the tracker reads a clip
                # (video mode, settled), the render's landmarks lie nearer the model's with the
                # avatar's offsets than without them
                inner = valid.copy()
                inner[468:] = False
                seen = FaceAnalyzer.tracker_landmarks((img * 255).astype(np.uint8))
                near = np.linalg.norm(seen[inner, :2] - cam.project(model_lm)[0][inner], axis=1).mean()
                plain = np.linalg.norm(seen[inner, :2] - cam.project(plain_lm)[0][inner], axis=1).mean()
                assert near < MAX_LANDMARK_PX_MODEL_SOURCE and near < plain - MIN_LANDMARK_PX_OFFSET_GAIN, (near, plain)
            uv, _ = cam.project(model_lm)  # against where our model says the landmarks are
            d = np.linalg.norm(lm[valid, :2] - uv[valid], axis=1)
            assert d.mean() < MAX_LANDMARK_PX_YAW, (yaw, d.mean())


def test_built_avatar_file_and_ply_round_trip(built, tmp_path):
    result, _ = built
    av, model = result.avatar, result.model
    back = load_avatar(save_avatar(av, tmp_path / "astro"))
    for lvl in av.levels:
        np.testing.assert_array_equal(pose(back, model, back.params, lvl), pose(av, model, av.params, lvl))
        np.testing.assert_array_equal(back.lods[lvl].colors, av.lods[lvl].colors)
    assert back.options["refined"] is True and back.options["lods"] == [0, 1, 2]
    gs = posed_set(av, model, av.params, 1)
    again = read_ply(write_ply(tmp_path / "l1.ply", gs))
    assert len(again) == av.counts()[1]["total"]
    np.testing.assert_array_equal(again.means, gs.means)
    np.testing.assert_allclose(again.colors, gs.colors, atol=1e-6)


def test_eyes_and_mouth_do_not_take_skin_colour(built):
    """Occluded eyeball backs are filled within the eyeball; the mouth band stays darker than skin."""
    from backend.avatar.attributes import mean_edge_length, unique_edges, vertex_normals
    from backend.avatar.imageops import to_float
    from backend.avatar.posing import lbs_numpy, shaped_vertices
    from backend.avatar.sampling import (REGION_EYES, jaw_stretch, mirror_indices, mouth_interior,
                                         sample_colors, vertex_regions)

    result, _ = built
    model, obs, fit = result.model, result.observation, result.fit
    lod = model_lods(model, (1,))[1]
    U, F = lod.upsample, lod.faces
    rest = np.asarray(U @ shaped_vertices(model, fit.params.shape), np.float32)
    posed = np.asarray(U @ lbs_numpy(model, fit.params)[0][0], np.float32)
    edges = unique_edges(F)
    spacing = mean_edge_length(rest, F, edges)
    regions = vertex_regions(model, U)
    mouth = mouth_interior(model, rest, jaw_stretch(model, rest, U, edges))
    def run(reg):
        return sample_colors(posed, F, vertex_normals(posed, F), to_float(obs.image512), obs.mask,
                             fit.camera, edges, spacing, reg, mirror_indices(rest, spacing), mouth)

    sc = run(regions)
    eyes = regions == REGION_EYES
    assert eyes.sum() > 0 and mouth.sum() > 0
    seen = eyes & (sc.observed | sc.mirrored)
    filled = eyes & sc.diffused
    assert filled.sum() > 0
    # harmonic fill inside the eyeball alone: bounded by the eyeball's own data (maximum principle)
    lo, hi = sc.colors[seen].min(0), sc.colors[seen].max(0)
    assert np.all(sc.colors[filled] >= lo - 1e-3) and np.all(sc.colors[filled] <= hi + 1e-3)
    skin = np.median(sc.colors[(regions == 0) & sc.observed], 0)
    # the unseen mouth band is pulled towards the dark mouth colour
    assert sc.colors[mouth & ~sc.observed].mean() < skin.mean()


def test_cli_build_and_export_ply(built, tmp_path):
    from PIL import Image
    from plyfile import PlyData

    from backend.cli import main

    out = tmp_path / "out"
    stats = tmp_path / "stats.json"
    assert main(["build", "-o", str(out), "--lods", "0", "--refine-seconds", "0", "--json", str(stats),
                 "--no-progress", "--metrics"]) == 0
    result, _ = built
    fig = json.loads(stats.read_text())
    assert fig["photo"] == "astronaut" and fig["refine_steps"] == {"0": 0}
    assert fig["head_model"] == result.model.name == "standin"
    assert fig["gaussians"]["0"]["head"] == result.model.n_verts
    assert fig["seconds"]["total"] > fig["seconds"]["sampling"] > 0
    assert fig["psnr_face"]["0"] > 15 and 0 < fig["ssim_face"]["0"] <= 1
    # without --metrics (and without refinement) no source-view metrics are computed
    quick = tmp_path / "quick.json"
    assert main(["build", "-o", str(tmp_path / "quick"), "--lods", "0", "--refine-seconds", "0", "--json",
                 str(quick), "--no-progress", "--no-previews"]) == 0
    q = json.loads(quick.read_text())
    assert q["psnr_face"] == {"0": None} and "metrics" not in q["seconds"]
    assert q["seconds"]["total"] >= q["seconds"]["write"] > 0 and q["seconds"]["cpu_total"] > 0
    # process: from the (pytest) process's start, so at least the build's own total
    assert q["seconds"]["process"] >= q["seconds"]["total"]
    names = sorted(p.name for p in out.iterdir())
    assert names == ["astronaut.omgavatar", "astronaut_lod0.ply", "astronaut_preview_expression.png",
                     "astronaut_preview_source.png", "astronaut_preview_yaw+30.png",
                     "astronaut_preview_yaw-30.png"]
    png = Image.open(out / "astronaut_preview_source.png")
    assert png.size == (512, 512) and any("AI" in str(v) for v in png.text.values())
    assert len(PlyData.read(str(out / "astronaut_lod0.ply"))["vertex"].data) == fig["gaussians"]["0"]["total"]

    # export-ply at an edited pose, from the fixture's avatar (all three LODs)
    av_path = save_avatar(result.avatar, tmp_path / "astro.omgavatar")
    exp = tmp_path / "exp"
    assert main(["export-ply", str(av_path), "-o", str(exp), "--lod", "2", "--expr", "mouthSmileLeft=0.8",
                 "jawOpen=0.5", "--jaw", "12"]) == 0
    gs = read_ply(exp / "astro_lod2.ply")
    src = posed_set(result.avatar, result.model, result.avatar.params, 2)
    assert len(gs) == len(src)
    n = len(result.avatar.lods[2])
    moved = np.linalg.norm(gs.means[:n] - src.means[:n], axis=1)
    assert moved.max() > 3e-3                       # the jaw and smile moved the mouth
    body = result.avatar.part_slices(2)["body"]
    np.testing.assert_allclose(gs.means[body], src.means[body], atol=1e-6)  # the body did not
    assert main(["export-ply", str(av_path), "-o", str(exp), "--expr", "no_such_expression=1"]) == 1
    assert main(["export-ply", str(av_path), "-o", str(exp), "--lod", "3"]) == 1


def test_learned_method_flags_fail_fast_and_clearly(tmp_path, capsys):
    from backend.cli import main

    missing = tmp_path / "omg.pt"
    assert main(["build", "-o", str(tmp_path), "--checkpoint", str(missing), "--no-progress"]) == 1
    assert "omg.pt: --checkpoint file not found" in capsys.readouterr().err


# -- mouth interior and eyes (issue 14) ----------------------------------------------------------
MOUTH_INTERIOR_MIN = 0.8   # share of inner-lip-hull pixels that are cavity-dark, tooth-white or tongue-red, jaw open
# share of those pixels within 0.1 (RGB distance) of the lip colour: lips smeared across the opening
# make most of it lip-like; a clean opening's rim is 0.09-0.10 at LOD 0 (0.094 before the stand-in's
# mouthClose shut the lips, 0.101 since: the photo fit moved, the astronaut's opening is a little smaller)
LIP_LIKE_MAX = 0.12
BLINK_SKIN_SHARE = 0.9     # share of closed-lid pixels nearer the photo's lid skin than its iris
BLINK_SKIN_MAX = 0.2       # mean RGB distance of closed-lid pixels to the photo's upper-lid skin
                           # (measured 0.16-0.18 at LOD 2 on the astronaut: the squashed lash line
                           # darkens the closed lid's seam)


def _posed_landmarks(model, params) -> np.ndarray:
    from backend.avatar.posing import lbs_numpy

    return model.landmarks.points(lbs_numpy(model, params)[0][0], model.faces)


def _polygon_pixels(poly: np.ndarray, shrink: float, size: int = 512) -> np.ndarray:
    """(H, W) bool: pixel centres inside ``poly`` (K, 2) shrunk towards its centre."""
    from skimage.measure import points_in_poly

    c = poly.mean(0)
    yy, xx = np.mgrid[0:size, 0:size]
    pix = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    return points_in_poly(pix, c + shrink * (poly - c)).reshape(size, size)


def shaped_vertices_of(av, model):
    from backend.avatar.posing import shaped_vertices

    return shaped_vertices(model, av.params.shape)


def test_mouth_and_eye_parts_are_rigged(built):
    result, _ = built
    av, model = result.avatar, result.model
    names = [p.name for p in av.parts]
    assert {"body", "hair"} <= set(names)
    assert names[-7:] == ["teeth_upper", "teeth_lower", "gums", "tongue", "cavity", "eye_L", "eye_R"]
    w = {p.name: p.weights for p in av.parts}
    assert np.all(w["teeth_upper"][:, 2:] == 0)                      # upper teeth: head, never the jaw
    np.testing.assert_array_equal(w["teeth_lower"], np.tile(np.eye(5, dtype=np.float32)[2], (len(w["teeth_lower"]), 1)))
    np.testing.assert_array_equal(w["tongue"][:, 2], 1.0)
    assert w["cavity"][:, 2].min() == 0.0 and w["cavity"][:, 2].max() == 1.0  # roof on the head, floor on the jaw
    for name, j in (("eye_L", 3), ("eye_R", 4)):
        np.testing.assert_array_equal(w[name][:, j], 1.0)
    # every mouth Gaussian lies inside the head at rest: behind the inner-lip ring
    ring = model.landmarks.points(shaped_vertices_of(av, model), model.faces)[[78, 308, 13, 14]]
    for name in ("teeth_upper", "teeth_lower", "gums", "tongue", "cavity"):
        assert av.part(name).gaussians.means[:, 2].max() < ring[:, 2].max(), name
    # the eyes turn with their bones: rigidly about the eye joint
    sl = av.part_slices(0)
    base = HeadParams.zeros(model)
    base.shape[:] = av.params.shape
    rest = pose(av, model, base, 0)[0]
    look = HeadParams(base.shape, base.expr, base.pose.copy(), base.transl)
    look.pose[0, 3] = (0.0, 0.4, 0.0)
    moved = pose(av, model, look, 0)[0]
    c = model.rest_joints(shaped_vertices_of(av, model))[3]
    assert np.abs(moved[sl["eye_L"]] - rest[sl["eye_L"]]).max() > 3e-3
    np.testing.assert_allclose(np.linalg.norm(moved[sl["eye_L"]] - c, axis=1),
                               np.linalg.norm(rest[sl["eye_L"]] - c, axis=1), atol=1e-6)
    np.testing.assert_allclose(moved[sl["eye_R"]], rest[sl["eye_R"]], atol=1e-7)


def test_open_jaw_shows_mouth_interior_not_lips(built):
    """With the jaw open the inner-lip hull shows the cavity, teeth and tongue, not lip colour smeared
    across the opening (pixel statistics inside the posed inner-lip ring)."""
    from backend.avatar.mouth import INNER_LIP

    result, _ = built
    av, model, obs = result.avatar, result.model, result.observation
    photo = obs.image512.astype(np.float32) / 255.0
    # the lips' colour: the photo between its outer and inner lip rings
    outer = obs.landmarks[[61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291, 375, 321, 405, 314, 17, 84, 181, 91, 146]]
    lips = _polygon_pixels(outer, 1.0) & ~_polygon_pixels(obs.landmarks[list(INNER_LIP)], 1.0)
    lip = np.median(photo[lips], 0)
    p = av.params.frame(0)
    p.pose[0, 2] = (0.35, 0.0, 0.0)
    hull = _polygon_pixels(av.camera.project(_posed_landmarks(model, p)[list(INNER_LIP)])[0], 0.8)
    assert hull.sum() > 300  # the opening is big at 0.35 rad
    for lvl in (0, 2):
        img, alpha = render_source(av, model, lvl, params=p, background=(0.0, 1.0, 0.0))
        px = img[hull]
        luma = px @ np.array([0.299, 0.587, 0.114])
        sat = px.max(1) - px.min(1)
        # dark cavity, tooth white, or the tongue at the bottom of the opening: strongly red, or a
        # muted red in the mouth's shade (since 0a9102b the tongue is (0.55, 0.38, 0.35) as on video:
        # R/G 1.44), which must be darker than the lips (lip R/G is 1.38 on this photo, so hue
        # alone cannot tell them apart)
        lip_luma = float(lip @ np.array([0.299, 0.587, 0.114]))
        red_hue = (px[:, 0] > 1.3 * px[:, 1]) & (px[:, 0] > 1.3 * px[:, 2])
        red = red_hue & ((px[:, 0] > 1.5 * px[:, 1]) | (luma < lip_luma - 0.1))
        interior = (luma < 0.3) | ((luma > 0.55) & (sat < 0.25)) | red
        lip_like = np.linalg.norm(px - lip, axis=1) < 0.1
        assert interior.mean() >= MOUTH_INTERIOR_MIN, (lvl, interior.mean())
        assert lip_like.mean() <= LIP_LIKE_MAX, (lvl, lip_like.mean())
        assert alpha[hull].min() > 0.95  # never the background through the mouth
        print(f"LOD {lvl}: interior {interior.mean():.3f}, lip-like {lip_like.mean():.3f} in {hull.sum()} px")


def test_blink_shows_lid_skin_not_the_iris(built):
    from backend.avatar.eyes import IRIS, LID_LOOP

    result, _ = built
    av, model, obs = result.avatar, result.model, result.observation
    photo = obs.image512.astype(np.float32) / 255.0
    p = av.params.frame(0)
    for name in ("eyeBlinkLeft", "eyeBlinkRight"):
        p.expr[0, model.expr_names.index(name)] = 1.0
    img, _ = render_source(av, model, 2, params=p)
    open_img, _ = render_source(av, model, 2)
    for eye in ("eye_L", "eye_R"):
        opening = _polygon_pixels(obs.landmarks[list(LID_LOOP[eye])], 0.8)
        c = obs.landmarks[IRIS[eye][0]]
        r = np.linalg.norm(obs.landmarks[list(IRIS[eye][1:])] - c, axis=1).mean()
        yy, xx = np.mgrid[0:512, 0:512]
        in_iris = opening & ((xx + 0.5 - c[0]) ** 2 + (yy + 0.5 - c[1]) ** 2 < (0.8 * r) ** 2)
        iris = np.median(photo[in_iris], 0)
        # the skin: the photo's forehead-side band 1.3..1.9 times the lid contour, above the eye
        ring = (_polygon_pixels(obs.landmarks[list(LID_LOOP[eye])], 1.9)
                & ~_polygon_pixels(obs.landmarks[list(LID_LOOP[eye])], 1.3) & (yy < c[1]))
        skin = np.median(photo[ring], 0)
        assert np.linalg.norm(skin - iris) > 0.2  # the test can tell them apart on this photo
        closed = img[opening]
        d_skin = np.linalg.norm(closed - skin, axis=1)
        d_iris = np.linalg.norm(closed - iris, axis=1)
        assert (d_skin < d_iris).mean() > BLINK_SKIN_SHARE, (eye, (d_skin < d_iris).mean())
        assert d_skin.mean() < BLINK_SKIN_MAX, (eye, d_skin.mean())
        # open, the iris is there
        assert np.linalg.norm(open_img[in_iris] - iris, axis=1).mean() < np.linalg.norm(open_img[in_iris] - skin, axis=1).mean()
        print(f"{eye}: closed lid |px - skin| {d_skin.mean():.3f}, |px - iris| {d_iris.mean():.3f}")


@pytest.mark.slow
def test_auto_refinement_is_not_turned_off_by_the_first_compile(tmp_path):
    """A fresh install's first build compiles the splatter inside its first timed render; with one
    LOD that render alone once judged the splatter too slow and skipped refinement (eval, photo 06).
    Run in a child process with an empty numba cache so the compile really happens."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    # A 30 s budget over 3 minimum steps lets a warm LOD 0 render take up to 3.3 s (a loaded CI
    # machine) while a render holding the compile (16.9-17.9 s measured) still reads too slow, so
    # the test fails without the warm re-timing and never on load alone; refine_steps caps the work.
    code = ("from backend.avatar.build import BuildOptions, build_avatar\n"
            "r = build_avatar(None, BuildOptions(lods=(0,), refine_seconds=30.0, refine_steps=2))\n"
            "print('REFINED', r.avatar.options['refined'], round(r.seconds['metrics'], 2))\n")
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True,
                         timeout=600)
    line = [l for l in out.stdout.splitlines() if l.startswith("REFINED")]
    assert out.returncode == 0 and line, out.stderr[-2000:]
    assert line[0].split()[1] == "True", line[0]


def test_the_turned_views_script_codes_each_part(built, tmp_path, monkeypatch):
    """scripts/turned_views.py: the coded row paints the head grey, the torso green and the hair
    magenta (each found where the plain row shows that part), and it never overwrites a file."""
    from tests.conftest import load_script

    tv = load_script("turned_views")
    result, _ = built
    pic = tv.turned_views(result.avatar, result.model, (0.0, 30.0))
    assert pic.shape == (1024, 1024, 3)
    plain, code = pic[:512], pic[512:]
    lit = plain.sum(-1) > 0.05                       # the avatar, not the black background
    assert lit.mean() > 0.2
    for colour, least in ((tv.PART_CODES["body"], 0.05), (tv.PART_CODES["hair"], 0.05), (tv.HEAD, 0.1)):
        share = (np.abs(code - np.asarray(colour)).max(-1) < 0.02).sum() / lit.sum()
        assert share > least, (colour, share)
    out = tmp_path / "taken.png"
    out.write_bytes(b"the user's")
    monkeypatch.setattr("sys.argv", ["turned_views.py", str(out)])
    with pytest.raises(SystemExit, match="exists"):
        tv.main()
    assert out.read_bytes() == b"the user's"


def test_hair_over_head_takes_the_hair_in_front_of_the_mesh_within_reach():
    """build.hair_over_head on a square of two triangles 1 m in front of the camera: points over it
    1 cm and 5 cm in front, within a 2 cm reach, behind it, beside it, and outside the image (its
    pixel would clip to the border)."""
    from backend.avatar.build import hair_over_head
    from backend.render.camera import Camera

    cam = Camera.look_at((0.0, 0.0, 0.0), (0.0, 0.0, 1.0), width=64, height=64, fov_y_deg=30.0)
    verts = np.array([[-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.1, 0.1, 1.0], [-0.1, 0.1, 1.0]], np.float32)
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    pts = np.array([[0.0, 0.0, 0.99], [0.02, 0.01, 0.95], [0.0, 0.0, 1.01], [0.5, 0.0, 0.99]], np.float32)
    np.testing.assert_array_equal(hair_over_head(pts, verts, faces, cam, 0.02), [True, False, False, False])
    np.testing.assert_array_equal(hair_over_head(pts, verts, faces, cam, 0.1), [True, True, False, False])
    # a square reaching the image's left edge: a point beyond the edge is not over it
    wide = verts * np.float32([[30.0, 1.0, 1.0]])
    edge = np.array([[0.0, 0.0, 0.99], [-1.0, 0.0, 0.99]], np.float32)
    np.testing.assert_array_equal(hair_over_head(edge, wide, faces, cam, 0.02), [True, False])


def test_the_hair_keeps_half_of_the_refinement_s_colour_change():
    """HairOptions.refined_share: the refinement fits the source view through the hair's overlapping
    layers and overshoots the photo's own colours, a light-and-dark pattern only the source view
    blends away (d3's hair showed braids turned 9 deg). The hair keeps half of its colour change;
    the head and the other parts keep all of theirs. Measured on the astronaut (LOD 2, three steps):
    the share of hair Gaussians whose centres project into the portrait at the source view and
    whose colour lies beyond the colours of the 5x5 photo pixels around them (by more than 0.02)
    falls with it. The hair over the head mesh (build.hair_over_head: the scalp's and the fringe's,
    which lie on the skull as the mesh's paint did) keeps all of it (scalp_refined_share)."""
    import copy

    from scipy.ndimage import maximum_filter, minimum_filter

    from backend.avatar.build import refine_avatar
    from backend.avatar.hair import HairOptions
    from backend.avatar.imageops import to_float
    from backend.avatar.portrait import PortraitOptions
    from backend.face.matte import foreground_colors

    from backend.avatar.build import hair_over_head
    from backend.avatar.posing import lbs_numpy

    raw = build_avatar(None, BuildOptions(lods=(2,), refine=False))
    photo = to_float(raw.observation.image512)
    mask = np.asarray(raw.observation.mask, np.float32)
    src = posed_set(raw.avatar, raw.model, raw.avatar.params, 2).means[raw.avatar.part_slices(2)["hair"]]
    over = hair_over_head(src, lbs_numpy(raw.model, raw.avatar.params)[0][0], raw.model.faces, raw.avatar.camera,
                          HairOptions().over_head_m)
    print(f"hair over the head mesh: {over.sum()} of {len(over)}")
    assert 0.05 * len(over) < over.sum() < 0.5 * len(over)
    refined = {}
    for share in (1.0, 0.5):
        av = copy.deepcopy(raw.avatar)
        opts = BuildOptions(lods=(2,), refine=True, refine_seconds=1e4, refine_steps=3,
                            portrait=PortraitOptions(hair=HairOptions(refined_share=share)))
        refine_avatar(av, raw.model, photo, mask, [2], opts, Progress())
        refined[share] = av
    parts = {s: {p.name: p.gaussians for p in av.parts} for s, av in refined.items()}
    before = {p.name: p.gaussians.colors for p in raw.avatar.parts}["hair"]
    full, half = parts[1.0]["hair"].colors - before, parts[0.5]["hair"].colors - before
    assert np.abs(full).mean() > 0.01                       # the refinement did move the hair
    # two refinements of the same avatar differ by up to 2e-7 (the CPU's multi-threaded sums), and Adam's
    # normalised step can turn that into a few 1e-4 on a Gaussian whose gradient is near zero (5 of
    # 50,289 entries, at most 3.8e-4, in one suite run of the thirty-eighth session): all but a few
    # entries halve exactly, none is far off
    def nearly(off: np.ndarray) -> None:
        assert (off > 1e-4).mean() < 5e-4 and off.max() < 2e-3, ((off > 1e-4).sum(), off.max())

    nearly(np.abs(half - np.where(over[:, None], 1.0, 0.5) * full))
    assert np.abs(full[over]).mean() > 0.01                 # ... and the hair over the head mesh
    # the head and the other parts keep all of theirs (the same few-1e-5 spread: one head entry of
    # 253,458 differed by 1.6e-5 in a suite run of the forty-seventh session, beside other work)
    for name in parts[1.0]:
        if name != "hair":
            nearly(np.abs(parts[0.5][name].colors - parts[1.0][name].colors))
    nearly(np.abs(refined[0.5].lods[2].colors - refined[1.0].lods[2].colors))

    fg = foreground_colors(photo, mask)
    lo = np.stack([minimum_filter(fg[..., k], 5) for k in range(3)], -1)
    hi = np.stack([maximum_filter(fg[..., k], 5) for k in range(3)], -1)

    def overshoot(av) -> float:
        gs = posed_set(av, raw.model, av.params, 2)
        sl = av.part_slices(2)["hair"]
        cam = av.camera
        pc = gs.means[sl] @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
        u = np.clip((pc[:, 0] / pc[:, 2] * cam.fx + cam.cx).astype(int), 0, 511)
        v = np.clip((pc[:, 1] / pc[:, 2] * cam.fy + cam.cy).astype(int), 0, 511)
        c = gs.colors[sl]
        seen = (mask[v, u] > 0.5) & ~over
        out = ((c < lo[v, u] - 0.02) | (c > hi[v, u] + 0.02)).any(1)
        return float(out[seen].mean())

    o_full, o_half = overshoot(refined[1.0]), overshoot(refined[0.5])
    print(f"hair colours beyond the photo's 5x5 range: refined fully {o_full:.3f}, half {o_half:.3f}")
    assert o_half < o_full - 0.02
