"""Build stage shortcuts that must not change the avatar: each is compared with the long way."""

from __future__ import annotations

import numpy as np
import pytest

from backend.avatar.attributes import unique_edges
from backend.avatar.eyes import EyeOptions, expression_stretch, eyelid_vertices
from backend.avatar.posing import model_lods, shaped_vertices
from backend.head.loader import load_head_model


def test_lid_stretch_from_the_edges_at_the_lids_equals_the_whole_mesh():
    """analytic_head measures the blink stretch only on the edges that touch the lid vertices it
    grows: at those vertices the values equal expression_stretch over every edge of the LOD."""
    model = load_head_model(None)
    lod = model_lods(model, [1])[1]
    rest = np.asarray(lod.upsample @ shaped_vertices(model, np.zeros(model.n_shape, np.float32)), np.float32)
    edges = unique_edges(lod.faces)
    _, _, around = eyelid_vertices(model, rest, lod.upsample, EyeOptions())
    sel = np.flatnonzero(around)
    near = edges[around[edges[:, 0]] | around[edges[:, 1]]]
    whole = expression_stretch(model, rest, lod.upsample, edges)[sel]
    assert len(sel) > 20 and len(near) < len(edges) / 50
    assert (whole > 1.05).any()  # a blink does stretch some of them
    np.testing.assert_array_equal(expression_stretch(model, rest, lod.upsample, near)[sel], whole)


def test_expression_stretch_moves_only_the_edges_vertices_and_equals_the_whole_upsampling():
    """expression_stretch upsamples each expression only at the vertices its edges touch (rows of
    the LOD's matrix): the same values as moving the whole LOD, at LODs 1 and 2 (the long way here)."""
    model = load_head_model(None)
    shape = np.random.default_rng(5).normal(0, 1, model.n_shape).astype(np.float32)
    for level in (1, 2):
        lod = model_lods(model, [level])[level]
        rest = np.asarray(lod.upsample @ shaped_vertices(model, shape), np.float32)
        edges = unique_edges(lod.faces)
        _, _, around = eyelid_vertices(model, rest, lod.upsample, EyeOptions())
        near = edges[around[edges[:, 0]] | around[edges[:, 1]]]
        base = rest[: model.n_verts].astype(np.float32)
        l0 = np.linalg.norm(rest[near[:, 0]] - rest[near[:, 1]], axis=1)
        ratio = np.ones(len(near), np.float32)
        for e in range(model.n_expr):
            moved = np.asarray(lod.upsample @ (base + model.exprdirs[:, :, e]), np.float32)
            ratio = np.maximum(ratio, np.linalg.norm(moved[near[:, 0]] - moved[near[:, 1]], axis=1)
                               / np.maximum(l0, 1e-9))
        want = np.ones(len(rest), np.float32)
        np.maximum.at(want, near[:, 0], ratio)
        np.maximum.at(want, near[:, 1], ratio)
        got = expression_stretch(model, rest, lod.upsample, near)
        assert (got > 1.05).any()
        np.testing.assert_array_equal(got, want)


def test_lid_regions_from_the_bounding_box_equal_skimage_on_every_vertex():
    """eyelid_vertices and mouth_interior ask skimage's points_in_poly only about the vertices in
    the polygons' bounding box (imageops.points_in_polygons): the same masks as asking it about
    every vertex, on random points too (points on the polygons' corners and edges included)."""
    from skimage.measure import points_in_poly

    from backend.avatar.imageops import points_in_polygons

    rng = np.random.default_rng(11)
    poly = np.array([[0.0, 0.0], [2.0, -0.5], [3.0, 1.0], [1.5, 2.5], [-0.5, 1.5]])
    polys = [poly, 1.0 + 1.9 * (poly - 1.0), poly[::-1] * 0.5]
    pts = np.concatenate([rng.uniform(-3, 5, (4000, 2)), poly, (poly + np.roll(poly, 1, 0)) / 2,
                          [[3.0, 2.5], [-0.5, -0.5], [3.0, -0.5]]])   # corners, mid-edges, bbox corners
    for got, p in zip(points_in_polygons(pts, polys), polys, strict=True):
        want = points_in_poly(pts, p)
        assert want.sum() > 100 and (~want).sum() > 100
        np.testing.assert_array_equal(got, want)
    assert [len(m) for m in points_in_polygons(np.zeros((0, 2)), polys)] == [0, 0, 0]
    # the head's own polygons, against skimage on every vertex of LOD 2
    import backend.avatar.imageops as imageops
    from backend.avatar.sampling import jaw_stretch, mouth_interior

    model = load_head_model(None)
    lod = model_lods(model, [2])[2]
    rest = np.asarray(lod.upsample @ shaped_vertices(model, np.zeros(model.n_shape, np.float32)), np.float32)
    stretch = jaw_stretch(model, rest, lod.upsample, unique_edges(lod.faces))
    fast = eyelid_vertices(model, rest, lod.upsample, EyeOptions()), mouth_interior(model, rest, stretch)
    try:
        imageops.points_in_polygons = lambda p, polys: [points_in_poly(p, q) for q in polys]
        slow = eyelid_vertices(model, rest, lod.upsample, EyeOptions()), mouth_interior(model, rest, stretch)
    finally:
        imageops.points_in_polygons = points_in_polygons
    for a, b in zip([*fast[0], fast[1]], [*slow[0], slow[1]], strict=True):
        assert b.sum() > 10
        np.testing.assert_array_equal(a, b)


def test_lip_stretch_from_the_per_edge_jaw_stretch_equals_jaw_stretch_of_the_lip_edges():
    """analytic_head measures each edge's jaw stretch once and takes the lips' stretch as the
    subset of those values off the mouth band: equal to jaw_stretch over the lip edges alone, and
    the whole mesh's stretch equal to jaw_stretch over every edge."""
    from backend.avatar.sampling import jaw_edge_stretch, jaw_stretch, mouth_interior, vertex_max_stretch

    model = load_head_model(None)
    lod = model_lods(model, [2])[2]
    shape = np.random.default_rng(3).normal(0, 1, model.n_shape).astype(np.float32)
    rest = np.asarray(lod.upsample @ shaped_vertices(model, shape), np.float32)
    edges = unique_edges(lod.faces)
    per_edge = jaw_edge_stretch(model, rest, lod.upsample, edges)
    stretch = vertex_max_stretch(len(rest), edges, per_edge)
    np.testing.assert_array_equal(stretch, jaw_stretch(model, rest, lod.upsample, edges))
    mouth = mouth_interior(model, rest, stretch)
    lip = ~(mouth[edges[:, 0]] | mouth[edges[:, 1]])
    assert mouth.sum() > 50 and 0 < (~lip).sum() < len(edges) / 20 and (stretch > 1.5).any()
    np.testing.assert_array_equal(vertex_max_stretch(len(rest), edges[lip], per_edge[lip]),
                                  jaw_stretch(model, rest, lod.upsample, edges[lip]))


def _lod2_rest(seed: int = 3):
    model = load_head_model(None)
    lod = model_lods(model, [2])[2]
    shape = np.random.default_rng(seed).normal(0, 1, model.n_shape).astype(np.float32)
    return model, lod, np.asarray(lod.upsample @ shaped_vertices(model, shape), np.float32)


def test_mirror_indices_with_a_bounded_search_equal_the_plain_nearest_neighbour():
    """mirror_indices searches an unbalanced k-d tree only within the largest accepted distance:
    the same mirror (or -1) for every vertex as the plain nearest-neighbour query, also where the
    tolerance rejects most of them."""
    from scipy.spatial import cKDTree

    from backend.avatar.attributes import mean_edge_length
    from backend.avatar.sampling import mirror_indices

    _, lod, rest = _lod2_rest()
    spacing = mean_edge_length(rest, lod.faces, unique_edges(lod.faces))
    dist, idx = cKDTree(rest).query(rest * np.array([-1.0, 1.0, 1.0], np.float32), k=1)
    for tol in (0.5, 0.05):
        plain = np.where(dist <= tol * spacing, idx, -1)
        got = mirror_indices(rest, spacing, tol)
        assert 0 < (got >= 0).sum() < len(got)
        np.testing.assert_array_equal(got, plain)


def test_vertex_max_stretch_equals_a_sorted_reduction():
    """vertex_max_stretch (ufunc.at on float64 values) against the per-vertex maximum taken by
    sorting the edge ends: equal, with float32 ratios in (the build's) and 1 where no edge is."""
    from backend.avatar.sampling import jaw_edge_stretch, vertex_max_stretch

    model, lod, rest = _lod2_rest()
    edges = unique_edges(lod.faces)
    ratio = np.asarray(jaw_edge_stretch(model, rest, lod.upsample, edges), np.float32)
    sub = edges[::3]                                        # leaves vertices without an edge
    got = vertex_max_stretch(len(rest), sub, ratio[::3])
    ends = np.concatenate([sub[:, 0], sub[:, 1]])
    order = np.argsort(ends, kind="stable")
    vals = np.concatenate([ratio[::3], ratio[::3]])[order].astype(np.float64)
    counts = np.bincount(ends, minlength=len(rest))
    want = np.ones(len(rest))
    has = counts > 0
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[has]
    want[has] = np.maximum(np.maximum.reduceat(vals, starts), 1.0)
    assert (~has).any() and (want > 1.5).any()
    np.testing.assert_array_equal(got, want.astype(np.float32))


@pytest.fixture(scope="module")
def unfitted():
    """The astronaut at LODs 0 and 1, before the silhouette fit."""
    from backend.avatar.build import BuildOptions, build_avatar

    return build_avatar(None, BuildOptions(lods=(0, 1), refine=False, metrics=False, fit_silhouette=False))


def test_silhouette_fit_of_the_head_alone_with_shared_fields_equals_the_whole_set(unfitted):
    """fit_avatar_to_matte fits only the head below the finest LOD (the parts' fit is used only
    there) and makes the matte's distance fields once: each Gaussian's fit equals the whole set's
    fit with fields of its own."""
    from backend.avatar.gaussians import GaussianSet
    from backend.avatar.posed import posed_set
    from backend.avatar.silhouette import MatteFields, SilhouetteOptions, fit_to_matte

    av, model = unfitted.avatar, unfitted.model
    matte = np.asarray(unfitted.observation.mask, np.float32)
    o = SilhouetteOptions()
    fields = MatteFields(matte, o)
    for lvl in (0, 1):
        gs = posed_set(av, model, av.params, lvl)
        n = len(av.lods[lvl])
        whole = fit_to_matte(gs, av.camera, matte, o, n_head=n)
        head = fit_to_matte(GaussianSet(gs.means[:n], gs.quats[:n], gs.scales[:n], gs.opacities[:n], gs.colors[:n]),
                            av.camera, matte, o, n_head=n, fields=fields)
        assert whole.pulled[:n].sum() > 50 and (whole.scale_factor[:n] < 1).sum() > 100
        np.testing.assert_array_equal(head.scale_factor, whole.scale_factor[:n])
        np.testing.assert_array_equal(head.carved, whole.carved[:n])
        np.testing.assert_array_equal(head.offsets, whole.offsets[:n])


def test_silhouette_fit_of_the_parts_alone_and_on_two_threads_equals_the_whole_set(unfitted):
    """fit_avatar_to_matte fits the parts apart from the finest head (posed by pose_parts, as
    pose() poses them): their rows of the whole finest set's fit; and with workers=2 (the build's,
    each LOD's head and the parts on two threads) the avatar equals the one-thread fit's."""
    import copy

    from backend.avatar.posing import pose_parts
    from backend.avatar.posed import posed_set
    from backend.avatar.silhouette import MatteFields, SilhouetteOptions, fit_avatar_to_matte, fit_to_matte

    av, model = unfitted.avatar, unfitted.model
    matte = np.asarray(unfitted.observation.mask, np.float32)
    o = SilhouetteOptions()
    fields = MatteFields(matte, o)
    n = len(av.lods[1])
    whole = fit_to_matte(posed_set(av, model, av.params, 1), av.camera, matte, o, n_head=n, fields=fields)
    means = pose_parts(av, model, av.params.frame(0))[0][0]
    np.testing.assert_array_equal(means, posed_set(av, model, av.params, 1).means[n:])
    parts = fit_to_matte(av.parts_set().with_means(means), av.camera, matte, o, n_head=0, fields=fields)
    assert (parts.scale_factor < 1).sum() > 100 and parts.carved.sum() > 10 and not parts.pulled.any()
    np.testing.assert_array_equal(parts.scale_factor, whole.scale_factor[n:])
    np.testing.assert_array_equal(parts.carved, whole.carved[n:])
    one, two = copy.deepcopy(av), copy.deepcopy(av)
    colors = np.asarray(unfitted.observation.image512, np.float32) / 255.0
    counts = fit_avatar_to_matte(one, model, matte, [0, 1], o, colors=colors)
    assert counts == fit_avatar_to_matte(two, model, matte, [0, 1], o, colors=colors, workers=2)
    assert counts["pulled"] > 50
    _assert_same_silhouette_fit(one, two)


def _assert_same_silhouette_fit(a, b, levels=(0, 1)) -> None:
    """What the silhouette fit changes (the heads' means, scales, opacities, colours and offsets,
    the parts' scales and opacities) is bit-identical in avatars ``a`` and ``b``."""
    for lvl in levels:
        for attr in ("means", "scales", "opacities", "colors"):
            np.testing.assert_array_equal(getattr(a.lods[lvl], attr), getattr(b.lods[lvl], attr))
        np.testing.assert_array_equal(a.lod_offsets[lvl], b.lod_offsets[lvl])
    for p, q in zip(a.parts, b.parts):
        np.testing.assert_array_equal(p.gaussians.scales, q.gaussians.scales)
        np.testing.assert_array_equal(p.gaussians.opacities, q.gaussians.opacities)


def test_silhouette_fit_with_fields_made_beforehand_equals_fields_made_inside(unfitted):
    """The build makes the matte's distance fields while the head model is fitted and hands them
    to fit_avatar_to_matte: the same avatar as fields made inside; fields of other options are
    refused."""
    import copy

    from backend.avatar.silhouette import MatteFields, SilhouetteOptions, fit_avatar_to_matte

    matte = np.asarray(unfitted.observation.mask, np.float32)
    inside, before = copy.deepcopy(unfitted.avatar), copy.deepcopy(unfitted.avatar)
    o = SilhouetteOptions()
    fields = MatteFields(matte, o)
    fields.pull_fields()
    counts = fit_avatar_to_matte(before, unfitted.model, matte, [0, 1], o, fields=fields)
    assert counts == fit_avatar_to_matte(inside, unfitted.model, matte, [0, 1], o) and counts["pulled"] > 50
    _assert_same_silhouette_fit(before, inside)
    with pytest.raises(ValueError, match="other SilhouetteOptions"):
        fit_avatar_to_matte(copy.deepcopy(unfitted.avatar), unfitted.model, matte, [0, 1],
                            SilhouetteOptions(pull_band_px=o.pull_band_px + 1), fields=fields)


def test_previews_written_on_two_threads_equal_one_after_another(tmp_path, unfitted):
    """write_previews stamps and encodes the four PNGs on two threads: the same bytes as saving
    the same renders one after another. They are encoded at the preview loop's zlib level
    (PREVIEW_PNG_COMPRESS_LEVEL 1, not Pillow's default 6): the same pixels and text chunks as at
    level 6, in files at most a quarter larger."""
    from PIL import Image

    from backend.avatar.outputs import PREVIEW_PNG_COMPRESS_LEVEL, preview_images, write_previews
    from backend.preview.output import PNG_COMPRESS_LEVEL
    from backend.render.watermark import save_png

    assert PREVIEW_PNG_COMPRESS_LEVEL == PNG_COMPRESS_LEVEL == 1
    r = unfitted
    for d in ("pool", "one", "six"):
        (tmp_path / d).mkdir()
    paths = write_previews(r.avatar, r.model, tmp_path / "pool", "a", 0)
    for name, img in preview_images(r.avatar, r.model, 0).items():
        text = {"omg:view": name, "omg:lod": "0"}
        save_png(tmp_path / "one" / f"a_preview_{name}.png", img, extra_text=text, compress_level=1)
        save_png(tmp_path / "six" / f"a_preview_{name}.png", img, extra_text=text)
    assert [p.name for p in paths] == [f"a_preview_{n}.png" for n in ("source", "yaw-30", "yaw+30", "expression")]
    for p in paths:
        assert p.read_bytes() == (tmp_path / "one" / p.name).read_bytes(), p.name
        six = tmp_path / "six" / p.name
        assert p.read_bytes() != six.read_bytes()
        with Image.open(p) as a, Image.open(six) as b:
            assert a.text == b.text and a.text["omg:view"] in p.name
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert six.stat().st_size < p.stat().st_size < 1.25 * six.stat().st_size, p.name


def test_previews_use_the_kernel_the_build_preloads(monkeypatch, unfitted):
    """The build's previews composite with the preview loop's 8-lane kernel, which the build's
    preload thread loads (render.preload): never the exact kernel, which the build does not use
    otherwise (with it, a fresh install's first build ended before the preload thread had compiled
    the 8-lane kernel, and the second build compiled it, ~15 s)."""
    from backend.avatar.outputs import preview_images
    from backend.render import _kernels, _kernels_simd

    calls = {"simd": 0, "exact": 0}

    def counting(name, kernel):
        def call(*args, **kwargs):
            calls[name] += 1
            return kernel(*args, **kwargs)
        return call

    monkeypatch.setattr(_kernels_simd, "rasterize_image_simd",
                        counting("simd", _kernels_simd.rasterize_image_simd))
    monkeypatch.setattr(_kernels, "rasterize_image", counting("exact", _kernels.rasterize_image))
    images = preview_images(unfitted.avatar, unfitted.model, 0)
    assert calls == {"simd": 1, "exact": 0}  # one batch of four frames
    assert len(images) == 4 and all(np.isfinite(img).all() for img in images.values())


def test_sample_photo_decoded_directly_equals_skimage():
    """sample_photo reads the astronaut PNG with Pillow, skipping skimage.io's plugin scan: the
    pixels are skimage.data.astronaut()'s."""
    from skimage import data

    from backend.avatar.sample_portrait import sample_photo

    img = sample_photo()
    assert img.shape == (512, 512, 3) and img.dtype == np.uint8 and img.flags.c_contiguous
    np.testing.assert_array_equal(img, data.astronaut())


def test_mediapipe_imports_without_matplotlib_and_leaves_no_placeholders():
    """import_mediapipe keeps matplotlib (and pyparsing) and sounddevice out of a fresh process,
    and afterwards the real matplotlib.pyplot imports (eval reports plot with it)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from backend.face.mediapipe_face import import_mediapipe\n"
            "mp = import_mediapipe()\n"
            "assert mp.solutions.face_mesh.FaceMesh and mp.solutions.selfie_segmentation\n"
            "left = [m for m in ('matplotlib', 'matplotlib.pyplot', 'pyparsing', 'sounddevice') if m in sys.modules]\n"
            "assert not left, left\n"
            "import matplotlib.pyplot as plt\n"
            "assert callable(plt.figure), plt\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_mediapipe_imports_only_the_face_solutions_and_the_rest_on_demand():
    """import_mediapipe imports the three solutions the wrapper runs and none of the others or of the
    task APIs; what mediapipe's own __init__ would have bound (mp.tasks, mp.solutions.<any>,
    mp.Image, mp.__version__) still comes when asked for, also through a later ``import mediapipe``."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from backend.face.mediapipe_face import FACE_SOLUTIONS, import_mediapipe\n"
            "mp = import_mediapipe()\n"
            "loaded = {m for m in sys.modules if m.startswith('mediapipe.')}\n"
            "want = {'mediapipe.python.solutions.' + n for n in FACE_SOLUTIONS}\n"
            "assert want <= loaded, want - loaded\n"
            "extra = {m for m in loaded if m.startswith(('mediapipe.tasks', 'mediapipe.python.solutions.'))} - want\n"
            "assert extra <= {'mediapipe.python.solutions.face_mesh_connections'}, extra\n"
            "import mediapipe\n"
            "assert mediapipe is mp\n"
            "assert mp.solutions.hands.Hands and mp.solutions.drawing_utils.draw_landmarks\n"
            "assert mp.tasks.vision.FaceLandmarker and mp.tasks.BaseOptions\n"
            "assert mp.Image and mp.ImageFormat.SRGB and mp.__version__.startswith('0.10')\n"
            "for bad in ('no_such_thing',):\n"
            "    assert not hasattr(mp, bad) and not hasattr(mp.solutions, bad)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_cli_build_freezes_its_imports_only_in_a_fresh_process(tmp_path):
    """build's imports run without the cyclic GC and are frozen in a fresh process (the GC stays
    on, collecting after 20,000 new objects) and, without refinement, OpenMP's workers sleep at
    barriers; in a process that has torch already (this one) the GC state and the environment are
    left alone."""
    import gc
    import os
    import subprocess
    import sys

    from backend.cli import main

    missing = str(tmp_path / "missing.png")
    code = ("import gc\n"
            "from backend.cli import main\n"
            f"rc = main(['build', {missing!r}, '-o', {str(tmp_path / 'a')!r}, '--refine-seconds', '0',"
            " '--no-progress'])\n"
            "assert rc != 0, rc\n"
            "assert gc.isenabled() and gc.get_freeze_count() > 50000, gc.get_freeze_count()\n"
            "assert gc.get_threshold() == (20000, 20, 20), gc.get_threshold()\n"
            "import os\n"
            "assert os.environ['OMP_WAIT_POLICY'] == 'PASSIVE'\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the user's own would win
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "missing.png" in res.stderr  # the one-line error names the file
    # a build that refines leaves OpenMP's waiting as it is
    code = ("import os\n"
            "from backend.cli import main\n"
            f"rc = main(['build', {missing!r}, '-o', {str(tmp_path / 'c')!r}, '--no-progress'])\n"
            "assert rc != 0 and 'OMP_WAIT_POLICY' not in os.environ\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stderr[-2000:]
    import torch  # noqa: F401  (as in any caller that has run the backend before)

    frozen, threshold, omp = gc.get_freeze_count(), gc.get_threshold(), os.environ.get("OMP_WAIT_POLICY")
    assert main(["build", missing, "-o", str(tmp_path / "b"), "--refine-seconds", "0", "--no-progress"]) != 0
    assert gc.isenabled() and gc.get_freeze_count() == frozen and gc.get_threshold() == threshold
    assert os.environ.get("OMP_WAIT_POLICY") == omp


def test_blurred_samples_of_a_window_equal_blurring_the_whole_photo():
    """sample_colors, the eyes and the mouth blur only the window their samples read
    (imageops.blurred_samples): the same samples bit for bit as blurring the whole image, for
    windows inside it, at its borders and corners, beyond them, and for a tiny or no blur."""
    from backend.avatar.imageops import bilinear, blur, blurred_samples

    rng = np.random.default_rng(7)
    img = rng.random((96, 128, 3)).astype(np.float32)
    windows = 0
    for sigma in (0.2, 0.6, 1.13, 2.25, 4.52):
        for centre in ([64.0, 48.0], [2.0, 3.0], [127.0, 95.0], [-4.0, 50.0], [70.0, 99.0]):
            for half in (1.5, 6.0, 30.0):
                uv = (np.asarray(centre) + rng.uniform(-half, half, (300, 2))).astype(np.float32)
                np.testing.assert_array_equal(blurred_samples(img, sigma, uv), bilinear(blur(img, sigma), uv))
                windows += 1
    assert windows == 75
    assert blurred_samples(img, 2.0, np.zeros((0, 2), np.float32)).shape == (0, 3)
