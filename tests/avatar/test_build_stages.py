"""Build stage shortcuts that must not change the avatar: each is compared with the long way."""

from __future__ import annotations

import numpy as np

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
