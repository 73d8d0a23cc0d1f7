"""Levels of detail by midpoint subdivision, precomputed as sparse upsampling matrices.

Level l+1 adds one vertex at the midpoint of every edge of level l (attribute = mean of the edge's
two vertices, as the paper does) and splits each triangle into four. So V_{l+1} = V_l + E_l and
F_{l+1} = 4 F_l; a closed (watertight) mesh stays closed. Posing a LOD is one sparse product:
``lod.upsample @ base_vertices``.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch


@dataclass(eq=False)  # holds arrays: identity equality/hash (usable as a cache key)
class LOD:
    """level: subdivision count; faces (F_l, 3) int64; upsample: CSR (V_l, V_0) float32.

    The first V_0 rows of ``upsample`` are the identity (base vertices keep their index)."""

    level: int
    faces: np.ndarray
    upsample: sp.csr_matrix
    _torch: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n_verts(self) -> int:
        return int(self.upsample.shape[0])

    def apply(self, attributes: np.ndarray) -> np.ndarray:
        """Subdivide per-vertex attributes (V_0, ...) -> (V_l, ...) (any trailing shape)."""
        return subdivide_attributes(self.upsample, attributes)

    def torch_upsample(self, device: str | torch.device = "cpu") -> torch.Tensor:
        """``upsample`` as a torch sparse CSR tensor (V_l, V_0) float32 on ``device`` (cached)."""
        key = str(torch.device(device))
        if key not in self._torch:
            u = self.upsample
            with warnings.catch_warnings():  # torch flags sparse CSR as "beta"; CSR @ dense is stable
                warnings.simplefilter("ignore", UserWarning)
                self._torch[key] = torch.sparse_csr_tensor(
                    torch.as_tensor(u.indptr, dtype=torch.int64),
                    torch.as_tensor(u.indices, dtype=torch.int64),
                    torch.as_tensor(u.data, dtype=torch.float32), size=u.shape, device=device,
                    check_invariants=True)  # built from a valid scipy CSR; checked once here
        return self._torch[key]

    def pose(self, vertices: torch.Tensor) -> torch.Tensor:
        """LOD-l vertices from posed LOD-0 vertices: (B, V_0, 3) -> (B, V_l, 3), one sparse product
        for the whole batch (level 0 returns the input)."""
        if self.level == 0:
            return vertices
        B, V, C = vertices.shape
        flat = vertices.permute(1, 0, 2).reshape(V, B * C)  # (V_0, B*3)
        out = self.torch_upsample(vertices.device) @ flat  # (V_l, B*3)
        return out.reshape(-1, B, C).permute(1, 0, 2)


def upsample_parents(upsample, k: int | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """A LOD's upsampling (V_l, V_0) sparse matrix as ((V_l, k) int32 parent rows, (V_l, k) float32
    weights), each row's entries in order, padded with (0, 0.0); ``k`` None: the widest row's count.
    None when a row blends more than ``k`` parents. A blend summed over these slots in order is the
    same for every batch of frames (a sparse product's is not: MKL's kernels round differently with
    the column count)."""
    U = sp.csr_matrix(upsample)
    counts = np.diff(U.indptr)
    widest = int(counts.max()) if len(counts) else 0
    k = max(widest, 1) if k is None else int(k)
    if widest > k:
        return None
    rows = np.repeat(np.arange(U.shape[0]), counts)
    slot = np.arange(U.nnz) - np.repeat(U.indptr[:-1], counts)     # the entry's place in its row
    parents = np.zeros((U.shape[0], k), np.int32)
    weights = np.zeros((U.shape[0], k), np.float32)
    parents[rows, slot] = U.indices
    weights[rows, slot] = U.data
    return parents, weights


def mesh_edges(faces: np.ndarray) -> np.ndarray:
    """Unique undirected edges (E, 2) int64, each row sorted (a < b), rows lexicographically sorted."""
    f = np.asarray(faces, np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 0)
    e.sort(axis=1)
    return np.unique(e, axis=0)


def subdivide_once(faces: np.ndarray, n_verts: int) -> tuple[np.ndarray, sp.csr_matrix]:
    """One midpoint subdivision. Returns (faces (4F, 3), step matrix CSR (V + E, V) float32)."""
    f = np.asarray(faces, np.int64)
    F = f.shape[0]
    # edge id of each face corner pair (01, 12, 20) via a sorted-key lookup
    half = np.stack([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]], 1)  # (F,3,2)
    half_sorted = np.sort(half, axis=2)
    key = half_sorted[..., 0] * n_verts + half_sorted[..., 1]  # (F,3)
    uniq, inv = np.unique(key.reshape(-1), return_inverse=True)
    E = uniq.shape[0]
    edges = np.stack([uniq // n_verts, uniq % n_verts], 1)
    mid = (n_verts + inv).reshape(F, 3)  # new vertex index of edges 01, 12, 20
    a, b, c = f[:, 0], f[:, 1], f[:, 2]
    m01, m12, m20 = mid[:, 0], mid[:, 1], mid[:, 2]
    # corner triangles keep the parent's orientation; the centre one too
    new_faces = np.concatenate([
        np.stack([a, m01, m20], 1), np.stack([m01, b, m12], 1),
        np.stack([m20, m12, c], 1), np.stack([m01, m12, m20], 1)], 0)
    rows = np.concatenate([np.arange(n_verts), np.repeat(np.arange(n_verts, n_verts + E), 2)])
    cols = np.concatenate([np.arange(n_verts), edges.reshape(-1)])
    vals = np.concatenate([np.ones(n_verts, np.float32), np.full(2 * E, 0.5, np.float32)])
    step = sp.csr_matrix((vals, (rows, cols)), shape=(n_verts + E, n_verts), dtype=np.float32)
    return new_faces, step


# per topology (faces' digest, n_verts): the LODs 0..k made so far, each level once. Level l is the
# same whichever levels a caller asks for (the chain of subdivisions up to it), so a later call for
# more or other levels extends the chain instead of subdividing from level 0 again (a build asked
# for (0, 1, 2), (1,) and (2,) apart: five subdivisions of which three repeated the first two)
_CHAINS: dict[tuple[str, int], list[LOD]] = {}
_CHAINS_LOCK = threading.Lock()  # a build asks from two threads; each level is made once


def build_lods(faces: np.ndarray, n_verts: int, levels: tuple[int, ...] = (0, 1, 2)) -> list[LOD]:
    """LODs for ``levels`` (each >= 0) of a triangle mesh; cached per topology (faces, n_verts).

    Each LOD's ``upsample`` maps LOD-0 vertices to LOD-l vertices (composition of the steps).
    The same level of one topology is the same LOD object for every call."""
    faces = np.ascontiguousarray(faces, np.int64)
    levels = tuple(int(l) for l in levels)
    if any(l < 0 for l in levels):
        raise ValueError(f"LOD levels must be >= 0, got {levels}")
    key = (hashlib.sha1(faces.tobytes()).hexdigest(), int(n_verts))
    top = max(levels, default=0)
    with _CHAINS_LOCK:
        chain = _CHAINS.setdefault(key, [])
        if not chain:
            chain.append(LOD(0, faces, sp.identity(n_verts, dtype=np.float32, format="csr")))
        while len(chain) <= top:
            prev = chain[-1]
            cur_faces, step = subdivide_once(prev.faces, prev.upsample.shape[0])
            cur_up = (step @ prev.upsample).tocsr()
            cur_up.sort_indices()
            chain.append(LOD(len(chain), cur_faces, cur_up.astype(np.float32)))
        return [chain[l] for l in levels]


def subdivide_attributes(upsample: sp.spmatrix, attributes: np.ndarray) -> np.ndarray:
    """``upsample @ attributes`` for (V_0, ...) arrays of any trailing shape -> (V_l, ...).

    E.g. skinning weights (V,5), expression basis (V,3,E), colours (V,3). Keeps the dtype."""
    a = np.asarray(attributes)
    flat = a.reshape(a.shape[0], -1)
    out = upsample @ flat
    return np.asarray(out, dtype=a.dtype if a.dtype.kind == "f" else np.float32).reshape(
        (upsample.shape[0],) + a.shape[1:])
