"""The photo's shading on skin, carried into the skin the photo does not show.

The fill of the unseen skin (sampling.py's diffusion, below_hair's pull to the skin's colour)
repeats the colour of the skin at the visibility boundary, which the source view lights from the
front: turned 30-60 deg, the neck behind the jaw and the skin behind the ears were one flat pale
beige, lit as brightly as the cheek that faces the camera.

The skin the photo shows is lit at every facing it has, so its brightness against its surface
normal measures the light: a first-order spherical-harmonic fit (Ramamoorthi and Hanrahan 2001's
first two bands), brightness = a0 + a . n per colour channel, robust to freckles, shadows and stray
samples. Per channel, because skin darkens unevenly: on the sample the blue channel falls off
half again as fast as the red one with the facing (light scattered under the skin comes out red),
so the shaded neck is a warm brown, not a grey beige. The fill then works on albedo: the
observed colours are divided by the fit's shading at their normals,
diffused, and multiplied back by the shading at the unseen vertices' normals, so a neck that
faces away from the light is darker than the cheek that faces it, and the seam at the visibility
boundary stays blended (the shading is smooth in the normal). The observed vertices keep their
own colours exactly; the unseen skin that copies its mirror's colour (sampling.py, step 3) takes
the light's ratio between the two normals, since the copy is lit for the other side (turned 60
deg, the astronaut's jaw underside showed a bright patch of her lit side's skin). The fit reads
the photo's own samples only, not those copies.

A linear model extrapolated to normals the photo never saw (the back of the neck) can fall to
black; the shading is kept inside the observed skin's own brightness range (its 5th to 95th
percentile over the samples the fit explains, per channel, and the floor at least 0.45 of their
median): unseen skin is never darker than the darker skin the photo shows. And it only darkens
(sampling.shaded_diffuse): the photo's own shadows confound the fit (a fringe shading the forehead
makes skin that faces down look brighter), and a fill brighter than the seen skin it continues is
the one error a viewer reads as a light that is not there. Only fill that is skin-coloured (the
skin model's) is shaded: hair the fill carries over the scalp and behind the ears keeps its
colour, whose synthesized texture a darker base clipped at black.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ShadingOptions:
    enabled: bool = True
    low_percentile: float = 5.0     # the shading's floor: this percentile of the skin samples' brightness
    min_low: float = 0.45           # ... and never below this share of their median: a beard or a
    #                                 shadow the skin model takes for skin sets no near-black floor
    high_percentile: float = 95.0   # ... and its ceiling
    min_samples: int = 200          # fewer skin samples: no fit, the fill stays as it was
    min_spread: float = 0.1         # the samples' normals must span this much (the smallest singular
    #                                 value of their centred normals, per sample): else no fit
    irls_iterations: int = 4
    huber_k: float = 1.5            # Huber threshold in robust standard deviations of the residual


@dataclass
class SkinShading:
    """brightness_c(n) = clip(coef[0, c] + n . coef[1:, c], low[c], high[c]) per colour channel c,
    relative to the skin samples' median in that channel (1.0); n in the frame the fit's normals
    were given in (unit vectors)."""

    coef: np.ndarray    # (4, 3) float64
    low: np.ndarray     # (3,) float64
    high: np.ndarray    # (3,) float64

    def __call__(self, normals: np.ndarray) -> np.ndarray:
        """(N, 3) float64 relative brightness per channel at ``normals`` (N, 3)."""
        n = np.asarray(normals, np.float64)
        return np.clip(self.coef[0][None] + n @ self.coef[1:], self.low, self.high)


def fit_skin_shading(normals: np.ndarray, colors: np.ndarray, opts: ShadingOptions | None = None
                     ) -> SkinShading | None:
    """The shading of skin samples with unit ``normals`` (K, 3) and ``colors`` (K, 3) [0, 1], each
    channel by iteratively reweighted least squares with Huber weights; None when there are too
    few samples, their normals barely vary, or a channel's median is 0."""
    opts = opts or ShadingOptions()
    n = np.asarray(normals, np.float64)
    c = np.asarray(colors, np.float64)
    if len(c) < opts.min_samples:
        return None
    med = np.median(c, 0)
    if np.any(med <= 1e-6):
        return None
    if np.linalg.svd(n - n.mean(0), compute_uv=False)[-1] / np.sqrt(len(n)) < opts.min_spread:
        return None
    r = c / med
    X = np.concatenate([np.ones((len(r), 1)), n], 1)
    coef, low, high = np.zeros((4, 3)), np.zeros(3), np.zeros(3)
    for ch in range(3):  # the three channels' weights differ: a sample can be an outlier in one
        w = np.ones(len(r))
        for _ in range(opts.irls_iterations):
            sw = np.sqrt(w)
            coef[:, ch] = np.linalg.lstsq(X * sw[:, None], r[:, ch] * sw, rcond=None)[0]
            res = np.abs(r[:, ch] - X @ coef[:, ch])
            sigma = max(1.4826 * float(np.median(res)), 1e-6)
            w = np.minimum(1.0, opts.huber_k * sigma / np.maximum(res, 1e-12))
        # the range of the skin the fit explains: a stray dark sample (a lash, a strand) sets no floor
        low[ch], high[ch] = np.percentile(r[w >= 1.0, ch], [opts.low_percentile, opts.high_percentile])
    low = np.minimum(np.maximum(low, opts.min_low), high)
    return SkinShading(coef, low, high)
