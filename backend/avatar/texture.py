"""Texture continuation: fill an image outside a source region by reflection tiling.

``continue_rows``: every pixel outside ``source`` in a row that has source pixels takes the colour
of the row's source pixels reflected about its nearest source pixel on each side (ping-pong tiling
through the row's source pixels when the gap is wider than the run), the two sides blended by
distance (no seam in the middle of a gap). Rows without source pixels copy the nearest row that has
some. Texture is copied, never averaged into a smooth diffusion colour.
``continue_columns`` does the same down the image's columns. Hair strands run mostly down the
head, so the hair texture is continued along columns: a gap below the hairline (the face, whose
back is the back of the head) repeats the strands above it, each column keeping its own strand.
``regional_lowpass`` keeps a continuation's texture but gives the filled pixels the source's own
regional mean colour as their low frequencies: a column that ping-pongs through a short, bright run
(the fringe above a face) would otherwise carry that run's brightness far down the column.
``continue_padding`` fills the crop's padding (where it reached past the photo's edges) from the
photo's own pixels: beside the photo along the rows, above and below it down the columns, so a
body cut off by the photo's edge continues as its texture mirrored, not as its edge row repeated.
"""

from __future__ import annotations

import numpy as np


def _pingpong(m: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Index m reflected into [0, n): 0..n-1, n-1..0, 0..n-1, ... (n >= 1)."""
    period = 2 * n
    r = np.mod(m, period)
    return np.where(r < n, r, period - 1 - r)


def continue_rows(image: np.ndarray, source: np.ndarray) -> np.ndarray:
    """image (H, W, C) float32, source (H, W) bool -> (H, W, C) float32 with every pixel filled
    from source pixels (unchanged where ``source``). Returns a copy of ``image`` if source is empty."""
    H, W = source.shape
    out = np.array(image, np.float32, copy=True, order="C")  # reshape below must be a view
    if not source.any():
        return out
    src_keys = np.flatnonzero(source.ravel())                 # row * W + x, sorted
    src_rows = src_keys // W
    row_start = np.searchsorted(src_keys, np.arange(H) * W)
    row_count = np.bincount(src_rows, minlength=H)
    flat = out.reshape(H * W, -1)
    src_col = flat[src_keys]                                  # (S, C)

    tgt = np.flatnonzero(~source.ravel())
    trow = tgt // W
    has = row_count[trow] > 0
    tgt, trow = tgt[has], trow[has]
    n = row_count[trow]
    start = row_start[trow]
    pos = np.searchsorted(src_keys, tgt)                      # first source key after the target
    left_ok = (pos - 1 >= start)
    right_ok = (pos < start + n)
    x = tgt - trow * W
    kl = np.where(left_ok, pos - 1 - start, 0)
    kr = np.where(right_ok, pos - start, n - 1)
    dl = np.where(left_ok, x - (src_keys[np.maximum(pos - 1, 0)] - trow * W), 0)
    dr = np.where(right_ok, (src_keys[np.minimum(pos, len(src_keys) - 1)] - trow * W) - x, 0)
    col_l = src_col[start + _pingpong(kl - dl, n)]
    col_r = src_col[start + _pingpong(kr + dr, n)]
    wl = np.where(left_ok & right_ok, dr / np.maximum(dl + dr, 1), left_ok.astype(np.float64))
    flat[tgt] = (wl[:, None] * col_l + (1 - wl[:, None]) * col_r).astype(np.float32)

    # rows without any source pixel: the nearest row that has some
    empty = row_count == 0
    if empty.any():
        full = np.flatnonzero(~empty)
        e = np.flatnonzero(empty)
        j = np.clip(np.searchsorted(full, e), 0, len(full) - 1)
        jm = np.clip(j - 1, 0, len(full) - 1)
        nearest = np.where(np.abs(full[jm] - e) <= np.abs(full[j] - e), full[jm], full[j])
        out[e] = out[nearest]
    return out


def continue_columns(image: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``continue_rows`` along columns: image (H, W, C), source (H, W) bool -> (H, W, C) float32."""
    return continue_rows(np.swapaxes(image, 0, 1), source.T).swapaxes(0, 1).copy()


def continue_padding(image: np.ndarray, real: np.ndarray, source: np.ndarray) -> np.ndarray:
    """The crop's padding continued from the photo: image (H, W, C) float32; real (H, W) bool, the
    pixels cut from the photo (False: padding, face.crop.source_coverage); source (H, W) bool, where
    texture may come from (only its real pixels count) -> (H, W, C) float32, a copy.

    Padding beside the photo (rows that hold real pixels) continues the row's source pixels
    (continue_rows); padding above or below it then continues the columns' source pixels in the
    photo's rows, the side padding just filled included (continue_columns). Only padding pixels
    whose row (beside) or column (above, below) holds source pixels change: elsewhere a whole
    row or column would be copied from the nearest one, the streak this replaces."""
    out = np.array(image, np.float32, copy=True)
    src = source & real
    pad = ~real
    if not pad.any() or not src.any():
        return out
    in_rows = real.any(1)[:, None]
    side = pad & in_rows & src.any(1)[:, None]
    if side.any():
        out[side] = continue_rows(out, src)[side]
    src_rows = source & in_rows & (real | side)
    ends = pad & ~in_rows & src_rows.any(0)[None, :]
    if ends.any():
        out[ends] = continue_columns(out, src_rows)[ends]
    return out


def regional_lowpass(filled: np.ndarray, image: np.ndarray, source: np.ndarray, sigma_px: float,
                     detail_px: float) -> np.ndarray:
    """``filled`` (H, W, C) float32, a continuation of ``image`` (H, W, C) outside ``source`` (H, W)
    bool, with its low frequencies outside ``source`` replaced: there each pixel is the source's
    regional mean (a Gaussian of ``sigma_px`` over the source pixels alone: normalized convolution)
    plus ``filled``'s own detail (``filled`` minus its blur of ``detail_px``). Source pixels and
    an empty source are returned as they are; a copy."""
    from scipy.ndimage import gaussian_filter

    out = np.array(filled, np.float32, copy=True)
    if not source.any() or source.all():
        return out
    w = gaussian_filter(source.astype(np.float64), sigma_px, mode="constant")
    mean = gaussian_filter(np.where(source[..., None], image, 0.0).astype(np.float64), (sigma_px, sigma_px, 0),
                           mode="constant") / np.maximum(w, 1e-12)[..., None]
    far = w < 1e-6   # beyond the Gaussian's reach of any source pixel: the continuation's own low-pass
    coarse = gaussian_filter(out.astype(np.float64), (sigma_px, sigma_px, 0), mode="nearest")
    mean[far] = coarse[far]
    detail = out - gaussian_filter(out.astype(np.float64), (detail_px, detail_px, 0), mode="nearest")
    fill = ~source
    out[fill] = (mean + detail)[fill].astype(np.float32)
    return out
