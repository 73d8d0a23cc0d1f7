"""The torso's unseen sides and back: each side's clothes continued round the ring (body.py).

The photo sees a torso row between two points on its ellipse, SIDE_VIEW_DEG each side of facing
the camera; beyond them (the front grid's grazing columns and the ring round the back) the colour
is continued from each side's band of seen columns (the outer RING_SOURCE of the row's seen width).
Reflection through that band (the rule before) mirrored every feature that leaves the band at a
slant: the sample's silver neck ring drew a butterfly on each shoulder at 30-60 deg and round the
back, a floral print its mirror image. Here each side is unwrapped into a map (rows x arc beyond
the side's end point, ``pitch`` image pixels a map pixel) and filled in two steps:

1. a level continuation: the band's colour at its outer end, fading into the band's mean over one
   band width of arc, both smoothed over rows (a ring or a stripe that meets the side runs on
   round it level, as such things go round a torso; the back takes the flank's mean colour);
2. image quilting (synthesis.quilt, Efros and Freeman 2001) of the band's own patches over it,
   blocks visited outwards from the band, each matching what is already there (weight 1) and the
   level continuation under its still-empty pixels (GUIDE): the fabric keeps its grain and colours
   where they belong, and no feature is mirrored or repeated in place.

The seen band keeps the photo's colours, so the continuation starts where the photo ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .imageops import bilinear
from .synthesis import SynthesisOptions, quilt

# how much a block's match weighs the level continuation under its still-empty pixels (1 on the
# pixels already there): 0.1 let the sample's back and photo 11's print take vertical stripes of
# the band's folds, 0.3 keeps them to where the continuation's colours are
GUIDE = 0.3
# blocks of 6 map pixels (about 10 image pixels at 512) sharing 2 with each neighbour
QUILT = SynthesisOptions(patch=6, overlap=2, candidates=1500, choose_among=4, guide=GUIDE, seed=0)
# the level continuation's smoothing over rows (map pixels): the band's end colour row by row is
# noisy (one fold, one thread of the outline) and, continued level, drew horizontal streaks
ROW_SIGMA = 4.0
# the band's end: its outermost this many map pixels give the colour the continuation starts from
END_PX = 3


@dataclass
class SideMap:
    """One side of the torso unwrapped: ``colors`` (R, K, 3) float32 [0, 1]; map row i lies at
    image row ``first + (i + 0.5) * pitch``, map column j at ``(j + 0.5 - n_seen) * pitch`` image
    pixels of arc beyond the side's end point (negative: inside the seen band, the photo's own)."""

    colors: np.ndarray
    first: float
    pitch: float
    n_seen: int

    def sample(self, rows: np.ndarray, beyond_px: np.ndarray) -> np.ndarray:
        """(n, 3) float32 colours at image rows ``rows`` (n,) (continuous: a pixel row r's centre is
        r + 0.5) and ``beyond_px`` (n,) pixels of arc beyond the end point."""
        uv = np.stack([self.n_seen + np.asarray(beyond_px, np.float64) / self.pitch,
                       (np.asarray(rows, np.float64) - self.first) / self.pitch], 1)
        return bilinear(self.colors, uv.astype(np.float32))


def _nearest(ok: np.ndarray) -> np.ndarray:
    """(R,) int64: each row's nearest ``ok`` (R,) bool row (itself where ok; ok must have a True)."""
    from scipy.ndimage import distance_transform_edt

    return distance_transform_edt(~ok, return_indices=True)[1][0]


def _smooth_rows(values: np.ndarray, ok: np.ndarray, sigma: float) -> np.ndarray:
    """(R, C) values smoothed over rows with a Gaussian of ``sigma`` rows, normalised over the ``ok``
    (R,) rows only; rows not ok take their nearest ok row's smoothed value."""
    from scipy.ndimage import gaussian_filter1d

    w = ok.astype(np.float64)
    num = gaussian_filter1d(values * w[:, None], sigma, axis=0, mode="nearest")
    den = gaussian_filter1d(w, sigma, mode="nearest")
    return (num / np.maximum(den, 1e-9)[:, None])[_nearest(ok)]


def side_map(img: np.ndarray, rows_ok: np.ndarray, u_end: np.ndarray, outward: float, width: np.ndarray,
             reach: np.ndarray, first: float, pitch: float) -> SideMap:
    """One side's map, continued.

    img (H, W, 3) float32 the clothes' colours (their outline's rim already filled from inside);
    rows_ok (H,) bool the torso's rows; u_end (H,) image column of each row's end point (where the
    photo stops being trusted); outward +1 (the right side: beyond lies rightwards) or -1; width (H,)
    the seen band's width, image pixels inwards from u_end; reach (H,) how far beyond the end point
    the map must hold colours, pixels of arc; first, pitch the map's first image row and its pixel
    (image pixels)."""
    H = img.shape[0]
    pitch = max(float(pitch), 1e-3)
    n_rows = max(int(np.ceil((H - first) / pitch)), 1)
    y = first + (np.arange(n_rows) + 0.5) * pitch
    # a map row is the torso's where any image row it spans is (a pitch over 1 px skips rows), and
    # reads that row's band where its centre row is not the torso's
    lo = np.clip(np.floor(first + np.arange(n_rows) * pitch).astype(np.int64), 0, H - 1)
    hi = np.maximum(np.ceil(first + (np.arange(n_rows) + 1) * pitch).astype(np.int64), lo + 1)
    torso = np.flatnonzero(rows_ok)
    nxt = torso[np.minimum(np.searchsorted(torso, lo), max(len(torso) - 1, 0))] if len(torso) else lo
    ok = (nxt >= lo) & (nxt < hi) if len(torso) else np.zeros(n_rows, bool)
    r = np.clip(y.astype(np.int64), 0, H - 1)
    moved = ok & ~rows_ok[r]
    r, y = np.where(moved, nxt, r), np.where(moved, nxt + 0.5, y)
    if not ok.any():  # no torso row: nothing samples the map
        return SideMap(np.zeros((n_rows, 1, 3), np.float32), float(first), pitch, 0)
    w_map = np.where(ok, width[r] / pitch, 0.0)                    # (R,) band width, map pixels
    n_seen = max(int(np.ceil(w_map.max())), QUILT.patch)
    n_beyond = max(int(np.ceil(np.where(ok, reach[r], 0.0).max() / pitch)) + 2, 1)
    K = n_seen + n_beyond
    inward_px = (n_seen - np.arange(n_seen) - 0.5) * pitch         # (n_seen,) from the end point inwards
    x = u_end[r][:, None] - outward * inward_px[None, :]
    uv = np.stack([x.ravel(), np.repeat(y, n_seen)], 1).astype(np.float32)
    seen = bilinear(img, uv).reshape(n_rows, n_seen, 3)
    known = np.zeros((n_rows, K), bool)
    known[:, :n_seen] = ok[:, None] & (inward_px[None, :] < np.maximum(w_map, 1.0)[:, None] * pitch)

    # 1. the level continuation: the band's end colour, fading into its mean over one band width
    kn = known[:, :n_seen, None]
    band = (seen * kn).sum(1) / np.maximum(kn.sum(1), 1)
    end = kn & (np.arange(n_seen) >= n_seen - END_PX)[None, :, None]
    end_c = (seen * end).sum(1) / np.maximum(end.sum(1), 1)
    band, end_c = _smooth_rows(band, ok, ROW_SIGMA), _smooth_rows(end_c, ok, ROW_SIGMA)
    beyond = (np.arange(n_beyond) + 0.5)[None, :]                   # map pixels beyond the end point
    fade = np.exp(-beyond / np.maximum(w_map, 1.0)[:, None])[..., None]
    low = band[:, None, :] + (end_c - band)[:, None, :] * fade      # (R, n_beyond, 3)

    # 2. the band's own patches quilted over it, outwards from the band
    full = np.zeros((n_rows, K, 3), np.float32)
    full[:, :n_seen] = seen
    full[:, n_seen:] = low
    fill = np.zeros_like(known)
    fill[:, n_seen:] = ok[:, None]
    out = quilt(full, known, known, QUILT, fill=fill)
    # rows outside the torso: their nearest torso row (the map is sampled between rows)
    out = out[_nearest(ok)]
    return SideMap(np.clip(out, 0.0, 1.0).astype(np.float32), float(first), pitch, n_seen)
