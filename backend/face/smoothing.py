"""Temporal filtering of parameter tracks: zero-phase one-euro smoothing and gap filling.

The one-euro filter (Casiez et al., CHI 2012) is a low-pass whose cutoff rises with the signal's
speed: jitter on slow or still parameters is removed while fast motion (a mouth snapping open)
passes almost untouched. A causal filter still lags a little, so the whole track is filtered forward
and backward and the two passes are averaged: their lags have opposite signs and cancel to first
order (zero phase), which is possible because tracking is offline.

Each channel is normalised by a robust scale (median absolute frame-to-frame change) first, so one
``beta`` works for radians, metres and expression coefficients alike.
"""

from __future__ import annotations

import math

import numpy as np


def _alpha(cutoff: np.ndarray | float, fps: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau * fps)


def one_euro(x: np.ndarray, fps: float, min_cutoff: float, beta: float, d_cutoff: float = 1.0) -> np.ndarray:
    """Causal one-euro filter of (T, D) signals (each column independently)."""
    x = np.asarray(x, np.float64)
    out = np.empty_like(x)
    out[0] = x[0]
    dx_hat = np.zeros(x.shape[1])
    a_d = _alpha(d_cutoff, fps)
    for t in range(1, len(x)):  # recursive filter: a loop over frames, vectorised over channels
        dx = (x[t] - out[t - 1]) * fps
        dx_hat = dx_hat + a_d * (dx - dx_hat)
        a = _alpha(min_cutoff + beta * np.abs(dx_hat), fps)
        out[t] = out[t - 1] + a * (x[t] - out[t - 1])
    return out


def smooth_track(x: np.ndarray, fps: float, strength: float, beta: float = 0.5) -> np.ndarray:
    """Zero-phase one-euro smoothing of a (T, ...) track; ``strength`` 0 = off.

    strength s sets the still-signal cutoff to 4 / s Hz (s = 1: 4 Hz, s = 4: 1 Hz); the cutoff
    grows with normalised speed (``beta``), so fast motion is preserved.
    """
    x = np.asarray(x)
    if strength <= 0 or len(x) < 3:
        return x.copy()
    flat = x.reshape(len(x), -1).astype(np.float64)
    scale = np.median(np.abs(np.diff(flat, axis=0)), axis=0) * fps  # typical speed per channel
    scale = np.where(scale > 1e-12, scale, 1.0)
    z = flat / scale
    min_cutoff = 4.0 / float(strength)
    fwd = one_euro(z, fps, min_cutoff, beta)
    bwd = one_euro(z[::-1], fps, min_cutoff, beta)[::-1]
    return (0.5 * (fwd + bwd) * scale).reshape(x.shape).astype(x.dtype)


def fill_gaps(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Linear interpolation of (T, ...) rows where ``valid`` (T,) is False from the nearest valid
    neighbours (rows before the first / after the last valid one copy it)."""
    x = np.asarray(x)
    valid = np.asarray(valid, bool)
    if valid.all() or not valid.any():
        return x.copy()
    t = np.arange(len(x))
    flat = x.reshape(len(x), -1)
    out = np.empty_like(flat)
    for d in range(flat.shape[1]):  # columns: np.interp is 1-D
        out[:, d] = np.interp(t, t[valid], flat[valid, d])
    return out.reshape(x.shape)
