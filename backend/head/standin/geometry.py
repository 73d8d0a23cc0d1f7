"""Mesh helpers for the stand-in generator: UV grids, normals, point-in-polygon, closest points."""

from __future__ import annotations

import numpy as np

TIE_D2 = 1e-12  # squared metres: closest-point distances this close are the same surface point


def grid_faces(n_rows: int, n_cols: int, top: int, bottom: int, offset: int = 0) -> np.ndarray:
    """Faces of a closed latitude/longitude grid: vertex ``offset + top``/``bottom`` are the poles and
    ``offset + first + r * n_cols + c`` the ring vertices (first = 1 after the top pole).

    Returns (2 * n_cols * n_rows, 3) int64 (fans at both poles + quads split in two)."""
    first = offset + 1
    ring = lambda r, c: first + r * n_cols + (c % n_cols)  # noqa: E731
    c = np.arange(n_cols)
    faces = [np.stack([np.full(n_cols, offset + top), ring(0, c + 1), ring(0, c)], 1)]
    for r in range(n_rows - 1):
        a, b, d, e = ring(r, c), ring(r, c + 1), ring(r + 1, c), ring(r + 1, c + 1)
        faces += [np.stack([a, b, e], 1), np.stack([a, e, d], 1)]
    last = n_rows - 1
    faces.append(np.stack([np.full(n_cols, offset + bottom), ring(last, c), ring(last, c + 1)], 1))
    return np.concatenate(faces).astype(np.int64)


def vertex_normals(v: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Area-weighted unit vertex normals (V, 3)."""
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    n = np.zeros_like(v)
    for k in range(3):
        np.add.at(n, f[:, k], fn)
    return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def signed_volume(v: np.ndarray, f: np.ndarray) -> float:
    """Signed enclosed volume (> 0 when faces wind counter-clockwise seen from outside)."""
    return float(np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0)


def inside_polygon(pts: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd test of 2D points (N,2) against a closed polygon (K,2) -> (N,) bool."""
    x, y = pts[:, 0:1], pts[:, 1:2]
    x0, y0 = poly[:, 0][None], poly[:, 1][None]
    x1, y1 = np.roll(poly[:, 0], -1)[None], np.roll(poly[:, 1], -1)[None]
    crosses = (y0 > y) != (y1 > y)
    xi = x0 + (y - y0) * (x1 - x0) / np.where(y1 == y0, 1e-12, y1 - y0)
    return (np.count_nonzero(crosses & (x < xi), axis=1) % 2) == 1


def closest_on_triangles(p: np.ndarray, tri: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest points of ``p`` (N,3) on triangles ``tri`` (N,T,3,3) (each point against its own T).

    Returns (squared distance (N,T), barycentric (N,T,3)). Region logic from Ericson,
    Real-Time Collision Detection 5.1.5, vectorised."""
    a, b, c = tri[..., 0, :], tri[..., 1, :], tri[..., 2, :]
    P = p[:, None, :]
    ab, ac, ap = b - a, c - a, P - a
    d1, d2 = (ab * ap).sum(-1), (ac * ap).sum(-1)
    bp = P - b
    d3, d4 = (ab * bp).sum(-1), (ac * bp).sum(-1)
    cp = P - c
    d5, d6 = (ab * cp).sum(-1), (ac * cp).sum(-1)
    va, vb, vc = d3 * d6 - d5 * d4, d5 * d2 - d1 * d6, d1 * d4 - d3 * d2
    denom = np.where(np.abs(va + vb + vc) < 1e-30, 1e-30, va + vb + vc)
    v, w = vb / denom, vc / denom  # interior
    bary = np.stack([1 - v - w, v, w], -1)

    def put(mask, u0, u1, u2):
        bary[mask] = np.stack([u0, u1, u2], -1)[mask]

    safe = lambda x: np.where(np.abs(x) < 1e-30, 1e-30, x)  # noqa: E731
    # edges (checked before vertices so vertex regions win where both apply)
    t_ab = d1 / safe(d1 - d3)
    put((vc <= 0) & (d1 >= 0) & (d3 <= 0), 1 - t_ab, t_ab, 0 * t_ab)
    t_ac = d2 / safe(d2 - d6)
    put((vb <= 0) & (d2 >= 0) & (d6 <= 0), 1 - t_ac, 0 * t_ac, t_ac)
    t_bc = (d4 - d3) / safe((d4 - d3) + (d5 - d6))
    put((va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0), 0 * t_bc, 1 - t_bc, t_bc)
    one, zero = np.ones_like(d1), np.zeros_like(d1)
    put((d1 <= 0) & (d2 <= 0), one, zero, zero)
    put((d3 >= 0) & (d4 <= d3), zero, one, zero)
    put((d6 >= 0) & (d5 <= d6), zero, zero, one)
    q = np.einsum("ntk,ntkc->ntc", bary, tri)
    return ((q - P) ** 2).sum(-1), bary


def embed_points(points: np.ndarray, v: np.ndarray, f: np.ndarray, face_ids: np.ndarray,
                 k: int = 24) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest surface point of each point among faces ``face_ids`` -> (face index (N,), bary (N,3),
    distance (N,)). Candidates: faces touching the ``k`` nearest vertices (exact for smooth meshes)."""
    from scipy.spatial import cKDTree

    sub = f[face_ids]
    used = np.unique(sub)
    tree = cKDTree(v[used])
    _, nn = tree.query(points, k=min(k, len(used)))
    near_v = used[nn]  # (N,k)
    # faces incident to those vertices: scan the candidate face set per point (small)
    inc = np.zeros((len(points), len(face_ids)), bool)
    for j in range(near_v.shape[1]):
        inc |= (sub == near_v[:, j, None, None]).any(-1)
    T = int(inc.sum(1).max())
    cand = np.zeros((len(points), T), np.int64)
    order = np.argsort(~inc, axis=1, kind="stable")[:, :T]
    cand[:] = order
    valid = np.take_along_axis(inc, order, 1)
    d2, bary = closest_on_triangles(points, v[sub[cand]])
    d2 = np.where(valid, d2, np.inf)
    # A point on an edge or vertex shared by several faces is equally near each of them; the
    # rounding (which the BLAS thread count changes) must not pick the stored one: the lowest face
    # index among the near-ties (same closest point to within 1 um) wins.
    tied = d2 <= d2.min(1, keepdims=True) + TIE_D2
    best = np.argmin(np.where(tied, face_ids[cand], np.iinfo(np.int64).max), 1)
    rows = np.arange(len(points))
    return (face_ids[cand[rows, best]], bary[rows, best].astype(np.float32),
            np.sqrt(d2[rows, best]))
