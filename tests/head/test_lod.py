"""Midpoint subdivision LODs: counts (incl. FLAME's), watertightness, averaging, composition."""

from __future__ import annotations

import numpy as np
import pytest

from backend.head import build_lods, mesh_edges, subdivide_attributes
from backend.head.standin.geometry import grid_faces


def edge_face_counts(faces: np.ndarray) -> np.ndarray:
    e = np.sort(np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]]), 1)
    return np.unique(e, axis=0, return_counts=True)[1]


def directed_edges_unique(faces: np.ndarray) -> bool:
    d = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return len(np.unique(d, axis=0)) == len(d)


def tube(n_around: int, n_rows: int, offset: int = 0) -> np.ndarray:
    """Open cylinder: (n_rows + 1) rings of n_around vertices (Euler characteristic 0)."""
    r, c = np.meshgrid(np.arange(n_rows), np.arange(n_around), indexing="ij")
    a = offset + r * n_around + c
    b = offset + r * n_around + (c + 1) % n_around
    d, e = a + n_around, b + n_around
    return np.concatenate([np.stack([a, b, e], -1).reshape(-1, 3), np.stack([a, e, d], -1).reshape(-1, 3)])


def test_flame_sized_topology_counts():
    """A synthetic mesh with FLAME's structure: V = 5,023, F = 9,976, E = 14,995 (Euler char. 4:
    a head with 62 boundary edges plus two closed eyeballs) -> 5,023 / 20,018 / 79,936."""
    head = tube(31, 140)                      # 31 * 141 = 4,371 vertices, 62 boundary edges
    eye_v = 18 * 18 + 2                       # UV sphere: 18 longitudes x 18 rings + poles = 326
    eyes = [grid_faces(18, 18, 0, eye_v - 1, offset=4371 + k * eye_v) for k in range(2)]
    faces = np.concatenate([head, *eyes])
    V = 4371 + 2 * eye_v
    assert (V, len(faces), len(mesh_edges(faces))) == (5023, 9976, 14995)
    lods = build_lods(faces, V, levels=(0, 1, 2))
    assert [l.n_verts for l in lods] == [5023, 20018, 79936]
    assert [len(l.faces) for l in lods] == [9976, 39904, 159616]


def test_counts_follow_v_plus_e(standin):
    lods = build_lods(standin.faces, standin.n_verts)
    for prev, cur in zip(lods, lods[1:]):
        assert cur.n_verts == prev.n_verts + len(mesh_edges(prev.faces))
        assert len(cur.faces) == 4 * len(prev.faces)
        assert cur.upsample.shape == (cur.n_verts, standin.n_verts)
        assert cur.faces.max() == cur.n_verts - 1


def test_watertight_and_orientation_kept(standin):
    assert (edge_face_counts(standin.faces) == 2).all()  # the stand-in is closed
    for lod in build_lods(standin.faces, standin.n_verts):
        assert (edge_face_counts(lod.faces) == 2).all()
        assert directed_edges_unique(lod.faces)  # consistent winding: no edge used twice one way
    # an open mesh stays open with the boundary split in two
    open_faces = tube(6, 3)
    l1 = build_lods(open_faces, 24, levels=(1,))[0]
    c0, c1 = edge_face_counts(open_faces), edge_face_counts(l1.faces)
    assert (c1 == 1).sum() == 2 * (c0 == 1).sum()


def test_midpoint_averaging_and_composition():
    rng = np.random.default_rng(0)
    faces = tube(5, 2)
    V = 15
    v = rng.normal(size=(V, 3))
    l0, l1, l2 = build_lods(faces, V)
    v1 = l1.upsample @ v
    np.testing.assert_allclose(v1[:V], v)  # base vertices keep their index and value
    edges = mesh_edges(faces)
    np.testing.assert_allclose(v1[V:], 0.5 * (v[edges[:, 0]] + v[edges[:, 1]]), atol=1e-6)
    # level 2 = subdividing level 1 again (composition of the per-level steps)
    l1b = build_lods(l1.faces, l1.n_verts, levels=(1,))[0]
    np.testing.assert_allclose(l2.upsample @ v, l1b.upsample @ v1, atol=1e-6)
    np.testing.assert_array_equal(l2.faces, l1b.faces)
    # rows are convex combinations: attributes stay in range, weights still sum to one
    assert np.allclose(np.asarray(l2.upsample.sum(1)).ravel(), 1.0)
    assert l2.upsample.format == "csr" and l2.upsample.dtype == np.float32


def test_subdivide_attributes_shapes(standin):
    l2 = build_lods(standin.faces, standin.n_verts, levels=(2,))[0]
    W2 = subdivide_attributes(l2.upsample, standin.weights)
    assert W2.shape == (l2.n_verts, 5) and W2.dtype == np.float32
    np.testing.assert_allclose(W2.sum(1), 1.0, atol=1e-5)
    E2 = l2.apply(standin.exprdirs)
    assert E2.shape == (l2.n_verts, 3, standin.n_expr)
    np.testing.assert_allclose(E2[: standin.n_verts], standin.exprdirs)


def test_cached_per_topology_and_bad_levels(standin):
    a = build_lods(standin.faces, standin.n_verts)
    assert all(x is y for x, y in zip(build_lods(standin.faces.copy(), standin.n_verts), a, strict=True))
    with pytest.raises(ValueError):
        build_lods(standin.faces, standin.n_verts, levels=(-1,))


def test_levels_asked_apart_are_one_chain_of_subdivisions():
    """A level asked for alone, before or after the others, is the same LOD object as in a call
    for all of them (each level of a topology is subdivided once per process), and equal bit for
    bit to the composition of the subdivision steps done the long way."""
    from backend.head.lod import subdivide_once

    faces = tube(7, 4, offset=0)  # a topology no other test caches
    V = 7 * 5
    one = build_lods(faces, V, (1,))[0]            # level 1 first: the chain to it
    two = build_lods(faces, V, (2,))[0]            # extended by one step
    full = build_lods(faces, V, (0, 1, 2))
    assert full[1] is one and full[2] is two
    assert build_lods(faces, V, (2, 0))[0] is two  # the caller's order is kept
    cur_f, cur_up = faces, np.eye(V, dtype=np.float32)
    for lod in full[1:]:
        cur_f, step = subdivide_once(cur_f, cur_up.shape[0])
        cur_up = (step @ cur_up).astype(np.float32)
        np.testing.assert_array_equal(lod.faces, cur_f)
        np.testing.assert_array_equal(lod.upsample.toarray(), cur_up)
        assert lod.upsample.dtype == np.float32 and lod.upsample.has_sorted_indices


def test_torch_pose_matches_scipy(standin):
    import torch

    rng = np.random.default_rng(1)
    v = rng.normal(size=(2, standin.n_verts, 3)).astype(np.float32)
    for lod in build_lods(standin.faces, standin.n_verts):
        out = lod.pose(torch.from_numpy(v)).numpy()
        assert out.shape == (2, lod.n_verts, 3)
        for b in range(2):
            np.testing.assert_allclose(out[b], lod.upsample @ v[b], atol=1e-5)


def test_upsample_parents_hold_the_upsampling_exactly() -> None:
    """(parent, weight) slots per row rebuild every LOD's upsampling exactly (the Blender display's
    growth blend and the torch poser's, which must not depend on how many frames a batch holds); a
    row with more parents than the slots gives None."""
    import scipy.sparse as sp

    from backend.head import load_head_model
    from backend.head.lod import upsample_parents

    model = load_head_model(None)
    for level, widest in ((0, 1), (1, 2), (2, 3)):
        (lod,) = build_lods(np.asarray(model.faces, np.int64), model.n_verts, (level,))
        for k in (None, 4):
            parents, weights = upsample_parents(lod.upsample, k)
            assert parents.shape == (lod.n_verts, widest if k is None else k) and parents.dtype == np.int32
            rows = np.repeat(np.arange(lod.n_verts), parents.shape[1])
            again = sp.csr_matrix((weights.ravel(), (rows, parents.ravel())), shape=lod.upsample.shape)
            assert abs(again - sp.csr_matrix(lod.upsample)).max() < 1e-7
    wide = sp.csr_matrix(np.full((2, 5), 0.2))
    assert upsample_parents(wide, 4) is None
