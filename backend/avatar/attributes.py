"""Gaussian attributes from mesh geometry (the analytic stand-in for the paper's attribute heads).

For every vertex of a (subdivided) mesh: an area-weighted normal, the mean length of its edges,
and from those a flat Gaussian lying in the tangent plane: in-plane scale ``coverage * mean edge``
(so neighbouring Gaussians overlap and no holes open at any LOD), normal scale
``flatness * in-plane``, rotation = the local surface frame (tangent, bitangent, normal).
All vectorized over vertices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rotations import matrix_to_quat


@dataclass
class AttributeOptions:
    coverage: float = 0.55      # in-plane std-dev as a fraction of the mean edge length
    flatness: float = 0.15      # normal std-dev / in-plane std-dev
    opacity: float = 0.97       # initial opacity of head Gaussians
    max_stretch: float = 3.0    # cap on the animation-stretch enlargement of skin Gaussians
    mouth_max_stretch: float = 6.0  # ... and of the mouth band (it opens far more than the skin)


def unique_edges(faces: np.ndarray) -> np.ndarray:
    """(E, 2) int64 undirected edges of a triangle mesh, each once, (i < j)."""
    f = np.asarray(faces, np.int64)
    a = np.concatenate([f[:, 0], f[:, 1], f[:, 2]])
    b = np.concatenate([f[:, 1], f[:, 2], f[:, 0]])
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    n = int(hi.max()) + 1 if len(hi) else 1
    key = np.unique(lo * n + hi)  # 1-D unique on int64 keys: ~10x faster than unique(axis=0)
    return np.stack([key // n, key % n], 1)


def vertex_normals(verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit area-weighted vertex normals (zero-area/isolated vertices get +Z)."""
    v = verts.astype(np.float64)
    v0 = v[faces[:, 0]]
    e1, e2 = v[faces[:, 1]] - v0, v[faces[:, 2]] - v0
    idx = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    n = np.empty((len(v), 3))
    # face normal e1 x e2 (|.| = 2 area) one axis at a time, with np.cross's operations (a*b - c*d),
    # scatter-added per axis from contiguous weights: the same sums as before (0.07 -> 0.05 s of
    # CPU per call at LOD 2: np.cross's axis shuffling and the strided weight copies are gone)
    for c, (a, b) in enumerate(((1, 2), (2, 0), (0, 1))):
        w = e1[:, a] * e2[:, b] - e1[:, b] * e2[:, a]
        n[:, c] = np.bincount(idx, np.concatenate([w, w, w]), len(v))
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    out = np.where(norm > 1e-20, n / np.maximum(norm, 1e-20), np.array([0.0, 0.0, 1.0]))
    return out.astype(np.float32)


def mean_edge_length(verts: np.ndarray, faces: np.ndarray, edges: np.ndarray | None = None,
                     max_weight: float = 0.0) -> np.ndarray:
    """(V,) mean length of the edges at each vertex (metres); isolated vertices get the global mean.

    max_weight in [0, 1] blends in the longest incident edge: (1 - w) mean + w max. Meshes with
    unequal row/column spacing need it so isotropic splats still close the longer gaps."""
    if edges is None:
        edges = unique_edges(faces)
    n = verts.shape[0]
    length = np.linalg.norm(verts[edges[:, 0]].astype(np.float64) - verts[edges[:, 1]], axis=1)
    total = np.bincount(edges[:, 0], length, n) + np.bincount(edges[:, 1], length, n)
    deg = np.bincount(edges[:, 0], minlength=n) + np.bincount(edges[:, 1], minlength=n)
    mean = np.where(deg > 0, total / np.maximum(deg, 1), length.mean() if len(length) else 1e-3)
    if max_weight > 0:
        longest = mean.copy()
        np.maximum.at(longest, edges[:, 0], length)
        np.maximum.at(longest, edges[:, 1], length)
        mean = (1 - max_weight) * mean + max_weight * longest
    return mean.astype(np.float32)


def frame_from_normals(normals: np.ndarray) -> np.ndarray:
    """(V, 3, 3) rotation matrices whose columns are (tangent, bitangent, normal).

    The tangent is the model's +X projected into the tangent plane (+Y where the normal is close
    to X); in-plane scales are isotropic so this choice only has to be smooth, not meaningful.
    """
    n = normals.astype(np.float64)
    ref = np.where(np.abs(n[:, :1]) < 0.9, np.array([[1.0, 0, 0]]), np.array([[0.0, 1, 0]]))
    t = ref - (ref * n).sum(1, keepdims=True) * n
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    b = np.cross(n, t)
    return np.stack([t, b, n], axis=2)


def capped_stretch(stretch: np.ndarray, mouth: np.ndarray, opts: AttributeOptions | None = None) -> np.ndarray:
    """(V,) enlargement factors: the jaw stretch (sampling.jaw_stretch) capped at ``max_stretch``,
    or at ``mouth_max_stretch`` in the mouth band (sampling.mouth_interior). Bigger caps close the
    gaps of a wide-open mouth but blur the lips at the source view: these values balance both."""
    opts = opts or AttributeOptions()
    cap = np.where(mouth, opts.mouth_max_stretch, opts.max_stretch)
    return np.clip(stretch, 1.0, cap).astype(np.float32)


def geometry_attributes(verts: np.ndarray, faces: np.ndarray, opts: AttributeOptions | None = None,
                        edge: np.ndarray | None = None, stretch: np.ndarray | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-vertex (quats (V,4) wxyz, scales (V,3) metres, opacities (V,), normals (V,3)).

    edge: (V,) mean edge lengths when already known (mean_edge_length).
    stretch: (V,) >= 1 in-plane enlargement where animation stretches the surface (see
    ``capped_stretch``), so no gaps open when the jaw moves."""
    opts = opts or AttributeOptions()
    normals = vertex_normals(verts, faces)
    if edge is None:
        edge = mean_edge_length(verts, faces)
    s = opts.coverage * edge
    if stretch is not None:
        s = s * np.maximum(stretch, 1.0)
    scales = np.stack([s, s, np.maximum(opts.flatness * s, 1e-6)], axis=1)
    quats = matrix_to_quat(frame_from_normals(normals)).astype(np.float32)
    opac = np.full(len(verts), opts.opacity, np.float32)
    return quats, scales.astype(np.float32), opac, normals
