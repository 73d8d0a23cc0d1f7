"""Which points lie inside the head mesh: the torso's Gaussians that the neck encloses.

The torso shell (body.py) is an ellipse per image row, fitted to the silhouette; round the neck
its rows' sides and back pass through the head mesh's neck, which is not an ellipse. Inside, they
are hidden; where the ellipse crosses the neck's surface they poke out, and a head turned 45-60
deg showed the crossing as a loop of clothing colour drawn on the side of the neck (the hair's
inner edge does the same below the ear). The build drops the torso's and the hair's Gaussians
inside the head mesh (portrait.portrait_parts).

The test is per height row of the rest-frame head mesh (its surface sampled densely, as the hair
hull's profile is): around the row's centre, the surface's largest radius per angle sector; a
point is inside when it lies nearer the centre than that radius by ``margin_m``. The head mesh
is star-shaped about its vertical axis row by row (a neck, a skull), which the test assumes.
"""

from __future__ import annotations

import numpy as np


def inside_rows(points: np.ndarray, surface: np.ndarray, bin_m: float = 0.004, sectors: int = 48,
                margin_m: float = 0.002) -> np.ndarray:
    """(N,) bool: ``points`` (N, 3) metres inside the closed-per-row surface given by ``surface``
    (M, 3) metres (dense points on it, rest frame, y up); points in rows or sectors the surface
    has no point in are outside."""
    out = np.zeros(len(points), bool)
    if len(points) == 0 or len(surface) == 0:
        return out
    y0 = float(surface[:, 1].min())
    ny = int(np.floor((surface[:, 1].max() - y0) / bin_m)) + 1
    srow = np.floor((surface[:, 1] - y0) / bin_m).astype(np.int64)
    # each row's centre: the middle of its x and z extents
    lo_x = np.full(ny, np.inf)
    hi_x = np.full(ny, -np.inf)
    lo_z = np.full(ny, np.inf)
    hi_z = np.full(ny, -np.inf)
    np.minimum.at(lo_x, srow, surface[:, 0])
    np.maximum.at(hi_x, srow, surface[:, 0])
    np.minimum.at(lo_z, srow, surface[:, 2])
    np.maximum.at(hi_z, srow, surface[:, 2])
    cx, cz = 0.5 * (lo_x + hi_x), 0.5 * (lo_z + hi_z)
    sec = _sector(surface[:, 0] - cx[srow], surface[:, 2] - cz[srow], sectors)
    radius = np.zeros(ny * sectors)
    np.maximum.at(radius, srow * sectors + sec, np.hypot(surface[:, 0] - cx[srow], surface[:, 2] - cz[srow]))
    prow = np.floor((points[:, 1] - y0) / bin_m).astype(np.int64)
    ok = (prow >= 0) & (prow < ny)
    i = np.flatnonzero(ok)
    r = prow[i]
    dx, dz = points[i, 0] - cx[r], points[i, 2] - cz[r]
    out[i] = np.hypot(dx, dz) < radius[r * sectors + _sector(dx, dz, sectors)] - margin_m
    return out


def _sector(dx: np.ndarray, dz: np.ndarray, sectors: int) -> np.ndarray:
    """Angle sector index (N,) int64 of the directions (dx, dz) about a row's centre."""
    a = np.mod(np.arctan2(dx, dz), 2.0 * np.pi)
    return np.minimum((a / (2.0 * np.pi) * sectors).astype(np.int64), sectors - 1)
