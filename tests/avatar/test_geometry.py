"""Gaussian attributes from geometry, diffusion fill and shoulder construction (no photo/model)."""

from __future__ import annotations

import numpy as np

from backend.avatar.attributes import AttributeOptions, capped_stretch, geometry_attributes, mean_edge_length
from backend.rotations import quat_to_matrix
from backend.avatar.sampling import diffuse, graph_laplacian, mirror_indices
from backend.avatar.shoulders import ShoulderOptions, build_shoulders
from backend.head.lod import build_lods, mesh_edges
from backend.render.camera import Camera


def icosphere(level: int) -> tuple[np.ndarray, np.ndarray]:
    t = (1 + 5 ** 0.5) / 2
    v = np.array([[-1, t, 0], [1, t, 0], [-1, -t, 0], [1, -t, 0], [0, -1, t], [0, 1, t], [0, -1, -t],
                  [0, 1, -t], [t, 0, -1], [t, 0, 1], [-t, 0, -1], [-t, 0, 1]], np.float64)
    f = np.array([[0, 11, 5], [0, 5, 1], [0, 1, 7], [0, 7, 10], [0, 10, 11], [1, 5, 9], [5, 11, 4],
                  [11, 10, 2], [10, 7, 6], [7, 1, 8], [3, 9, 4], [3, 4, 2], [3, 2, 6], [3, 6, 8],
                  [3, 8, 9], [4, 9, 5], [2, 4, 11], [6, 2, 10], [8, 6, 7], [9, 8, 1]], np.int64)
    lod = build_lods(f, len(v), (level,))[0]
    vv = lod.upsample @ v
    return (0.1 * vv / np.linalg.norm(vv, axis=1, keepdims=True)).astype(np.float32), lod.faces


def test_attributes_follow_the_surface_at_every_lod():
    for level in (0, 1, 2):
        v, f = icosphere(level)
        opts = AttributeOptions()
        quats, scales, opac, normals = geometry_attributes(v, f, opts)
        radial = v / np.linalg.norm(v, axis=1, keepdims=True)
        assert (normals * radial).sum(1).min() > 0.97
        R = quat_to_matrix(quats)
        np.testing.assert_allclose(R[:, :, 2], normals, atol=1e-5)  # local z = surface normal
        edge = mean_edge_length(v, f)
        np.testing.assert_allclose(scales[:, 0], opts.coverage * edge, rtol=1e-6)
        np.testing.assert_allclose(scales[:, 2], opts.flatness * scales[:, 0], rtol=1e-6)
        assert np.all(opac == np.float32(opts.opacity))
    # animation stretch enlarges the in-plane size, capped lower on skin than in the mouth band
    v, f = icosphere(1)
    stretch = np.linspace(1.0, 10.0, len(v)).astype(np.float32)
    mouth = np.arange(len(v)) % 2 == 0
    opts = AttributeOptions()
    cap = capped_stretch(stretch, mouth, opts)
    assert cap[~mouth].max() <= opts.max_stretch and cap[mouth].max() <= opts.mouth_max_stretch
    assert cap[mouth].max() > opts.max_stretch
    big = geometry_attributes(v, f, opts, stretch=cap)[1]
    np.testing.assert_allclose(big[:, 0], geometry_attributes(v, f, opts)[1][:, 0] * cap, rtol=1e-5)
    # each subdivision halves the spacing, and with it the Gaussian size
    s = [geometry_attributes(*icosphere(l))[1][:, 0].mean() for l in (1, 2)]
    assert 0.45 < s[1] / s[0] < 0.55


def test_diffusion_is_harmonic_and_respects_cut_edges():
    # a path 0-1-2-3-4 with known ends interpolates linearly
    edges = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    L = graph_laplacian(edges, 5)
    vals = np.zeros((5, 1))
    vals[0], vals[4] = 0.0, 1.0
    known = np.array([True, False, False, False, True])
    out = diffuse(vals, known, L, np.zeros((5, 1)), screening=0.0 + 1e-12)
    np.testing.assert_allclose(out[:, 0], [0, 0.25, 0.5, 0.75, 1.0], atol=1e-6)
    # cutting edge 2-3 isolates {3}: with no data it relaxes to its fallback, not to its neighbours
    keep = np.array([True, True, False, True])
    edges2 = np.array([[0, 1], [1, 2], [2, 3], [3, 4]])
    known2 = np.array([True, False, False, False, False])
    vals2 = np.zeros((5, 1))
    vals2[0] = 1.0
    fb = np.full((5, 1), 0.3)
    out2 = diffuse(vals2, known2, graph_laplacian(edges2, 5, keep), fb, screening=1e-4)
    np.testing.assert_allclose(out2[:3, 0], 1.0, atol=1e-3)
    np.testing.assert_allclose(out2[3:, 0], 0.3, atol=1e-3)


def test_mirror_indices_on_a_symmetric_mesh():
    v, f = icosphere(2)
    spacing = mean_edge_length(v, f, mesh_edges(f))
    m = mirror_indices(v, spacing)
    assert (m >= 0).all()
    np.testing.assert_allclose(v[m], v * np.array([-1, 1, 1]), atol=1e-6)
    np.testing.assert_array_equal(m[m], np.arange(len(v)))


def test_shoulders_on_a_synthetic_portrait():
    cam = Camera.look_at((0, 0, 0.6), width=256, height=256, fov_y_deg=25)
    H = W = 256
    yy, xx = np.mgrid[:H, :W]
    portrait = ((yy > 150) | (((xx - 128) / 50.0) ** 2 + ((yy - 100) / 70.0) ** 2 < 1)).astype(np.float32)
    head = ((xx - 128) / 45.0) ** 2 + ((yy - 100) / 65.0) ** 2 < 1
    photo = np.zeros((H, W, 3), np.float32)
    photo[..., 0] = xx / W
    photo[..., 2] = 0.25
    neck = np.array([0.0, -0.03, 0.0], np.float32)  # projects to row ~ 128 + ...
    opts = ShoulderOptions(target_count=2000)
    gs = build_shoulders(photo, portrait, head, cam, neck, opts)
    assert 0.8 * 2000 < len(gs) < 1.2 * 2000
    uv, z = cam.project(gs.means)
    _, neck_z = cam.project(neck[None])
    np.testing.assert_allclose(z, neck_z[0] + opts.behind_neck_m, atol=1e-5)  # image-aligned plane
    rows, cols = uv[:, 1].astype(int), uv[:, 0].astype(int)
    from scipy.ndimage import binary_erosion

    inner_head = binary_erosion(head, iterations=opts.head_erode_px)  # thin overlap is by design
    assert portrait[rows, cols].min() == 1 and not inner_head[rows, cols].any()
    assert rows.min() >= cam.project(neck[None])[0][0, 1] - 1
    np.testing.assert_allclose(gs.colors[:, 0], uv[:, 0] / W, atol=0.03)   # coloured from the photo
    R = quat_to_matrix(gs.quats)
    np.testing.assert_allclose(np.abs(R[:, :, 2] @ cam.R[2]), 1.0, atol=1e-5)  # facing the camera


def test_vertex_normals_match_the_cross_product_long_way_bit_for_bit():
    """vertex_normals (one axis at a time) gives the same normals as np.cross of the face edges
    scatter-added per axis: bit for bit, on a random mesh and on the head model's LOD 1; unit length,
    +Z where a vertex has no face."""
    from backend.avatar.attributes import vertex_normals
    from backend.avatar.posing import model_lods
    from backend.head.loader import load_head_model

    def long_way(verts, faces):
        v = verts.astype(np.float64)
        fn = np.cross(v[faces[:, 1]] - v[faces[:, 0]], v[faces[:, 2]] - v[faces[:, 0]])
        idx = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
        fn3 = np.concatenate([fn, fn, fn])
        n = np.stack([np.bincount(idx, fn3[:, c], len(v)) for c in range(3)], 1)
        norm = np.linalg.norm(n, axis=1, keepdims=True)
        return np.where(norm > 1e-20, n / np.maximum(norm, 1e-20), np.array([0.0, 0.0, 1.0])).astype(np.float32)

    rng = np.random.default_rng(3)
    v = rng.normal(size=(600, 3)).astype(np.float32)
    f = rng.integers(0, 580, (1000, 3))                      # vertices 580.. have no face
    got = vertex_normals(v, f)
    np.testing.assert_array_equal(got, long_way(v, f))
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(got[590], [0.0, 0.0, 1.0])
    model = load_head_model(None)
    lod = model_lods(model, [1])[1]
    rest = np.asarray(lod.upsample @ model.v_template, np.float32)
    np.testing.assert_array_equal(vertex_normals(rest, lod.faces), long_way(rest, lod.faces))
