"""Numba kernel of the torso channel's whole-pixel search (torso.matte_shift): the mean absolute
difference between the shifted reference matte and the current one, for every shift at once.

Since the body window also holds the rows beside the jaw (TorsoOptions.rise) it has several
thousand pixels, and the numpy loop (one gather, subtraction and mean per shift, (2 radius + 1)^2 =
729 shifts) cost the tracker 15-27 ms a frame on the clips that show a body. Here the same sums run
in one call without temporaries. ``mad_cost_grid_reference`` is its plain numpy twin;
tests/face/test_torso.py requires both to agree.
"""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True)
def mad_cost_grid(pad, ys, xs, target, r, m):
    """(2r+1, 2r+1) float64: entry [i, j] is the mean over the window's pixels n of
    |pad[ys[n] + m - dy, xs[n] + m - dx] - target[n]|, dy = i - r, dx = j - r.

    pad (H + 2m, W + 2m) float32, the reference matte edge-padded by m >= r; ys, xs (N,) int64 the
    window's pixels; target (N,) float32 the current matte there."""
    n = ys.shape[0]
    out = np.empty((2 * r + 1, 2 * r + 1), np.float64)
    if n == 0:
        out[:] = np.nan
        return out
    for i in range(2 * r + 1):
        for j in range(2 * r + 1):
            oy = m - (i - r)
            ox = m - (j - r)
            s = 0.0
            for k in range(n):
                s += abs(np.float64(pad[ys[k] + oy, xs[k] + ox]) - np.float64(target[k]))
            out[i, j] = s / n
    return out


def mad_cost_grid_reference(pad: np.ndarray, ys: np.ndarray, xs: np.ndarray, target: np.ndarray,
                            r: int, m: int) -> np.ndarray:
    """The plain numpy twin of ``mad_cost_grid`` (one gather per shift)."""
    out = np.empty((2 * r + 1, 2 * r + 1), np.float64)
    t = target.astype(np.float64)
    for i, dy in enumerate(range(-r, r + 1)):
        for j, dx in enumerate(range(-r, r + 1)):
            out[i, j] = np.abs(pad[ys + m - dy, xs + m - dx].astype(np.float64) - t).mean()
    return out
