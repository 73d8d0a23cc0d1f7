"""Numba kernel of the silhouette fit's ellipse march (silhouette._ellipse_inside).

The numpy march it replaces sampled every step of every ray of every Gaussian to shrink (about
0.14 s of CPU per build over the three LODs, on the build's serial path after the sampling): a
(m, K, S, 2) array of sample points per chunk, then the first background sample per ray. Here each
ray stops at its first background sample, and at the step where it can no longer lower the
Gaussian's minimum over its rays (the rays' results only enter through that minimum).

``march_reference`` is its plain numpy twin (the same float32 sample points, the same steps);
tests/avatar/test_silhouette.py requires both to give the same factors.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def march(uv, radii, n_steps, person, out):
    """Fill ``out`` (M,) float64 with each Gaussian's factor in [0, 1]: the fraction of its radii
    marched before the first background pixel, the minimum over its rays.

    uv (M, 2) float32 centres (px), radii (M, K, 2) float32 ray ends (px), n_steps (M,) int64 steps
    per ray (>= 1; step j of n lies at float32(j / n) of the radius), person (H, W) bool pixels
    (beyond the image counts as person)."""
    H, W = person.shape
    M, K = radii.shape[0], radii.shape[1]
    for m in range(M):
        n = n_steps[m]
        best = n
        u0, v0 = uv[m, 0], uv[m, 1]
        for k in range(K):
            rx, ry = radii[m, k, 0], radii[m, k, 1]
            # steps j - 1 >= best cannot lower the minimum: stop there
            for j in range(1, min(best, n) + 1):
                f = np.float32(j / n)
                fu = np.floor(u0 + f * rx)
                fv = np.floor(v0 + f * ry)
                # compared as floats: the numpy twin's int32 cast of an off-image value is never inside
                if fu >= 0 and fu < W and fv >= 0 and fv < H:
                    if not person[int(fv), int(fu)]:
                        if j - 1 < best:
                            best = j - 1
                        break
        out[m] = best / n


def march_reference(uv: np.ndarray, radii: np.ndarray, n_steps: np.ndarray, person: np.ndarray,
                    chunk: int = 2048) -> np.ndarray:
    """Plain numpy twin of :func:`march` (same arguments but ``out``; returns the (M,) factors):
    every step of every ray sampled, chunk by chunk of Gaussians."""
    H, W = person.shape
    out = np.ones(len(uv))
    for c in range(0, len(uv), chunk):
        sel = np.arange(c, min(c + chunk, len(uv)))
        n = n_steps[sel]                                                       # (m,)
        j = np.arange(1, n.max() + 1)                                          # (S,) step numbers
        frac = (j[None, :] / n[:, None]).astype(np.float32)                    # (m, S) fractions of the radius
        pts = uv[sel, None, None, :] + frac[:, None, :, None] * radii[sel, :, None, :]   # (m, K, S, 2) float32
        iu, iv = np.floor(pts[..., 0]).astype(np.int32), np.floor(pts[..., 1]).astype(np.int32)
        in_img = (iu >= 0) & (iu < W) & (iv >= 0) & (iv < H)
        bg = in_img & ~person[np.clip(iv, 0, H - 1), np.clip(iu, 0, W - 1)]   # (m, K, S)
        bg &= (j[None, :] <= n[:, None])[:, None, :]                           # beyond a radius' end: not marched
        first = np.where(bg.any(2), bg.argmax(2), n[:, None])                  # (m, K) step index
        out[sel] = first.min(1) / n
    return out


def preload() -> None:
    """Load the kernel (from the numba cache) on a tiny input of the layouts the fit passes; the
    build runs this on its kernel preload thread."""
    march(np.zeros((1, 2), np.float32), np.ones((1, 2, 2), np.float32), np.full(1, 2, np.int64),
          np.ones((2, 2), bool), np.empty(1))
