"""Skin below the hair: the unseen jaw side and neck are filled from skin, not from the hair over the ears.

At the source view the head mesh's ears and the sides of its jaw lie under the hair that hangs
beside the face (the hair part is built outside the head mesh's coverage, so the mesh paints that
hair itself). Those vertices are observed with the hair's colour, which is right where the source
view sees them. But they were also data for the fill of the unseen vertices around them
(sampling.py's diffusion and its synthesized texture), which carried the hair's colour down the
side of the jaw and the neck: turned 45-60 deg, the skin below the ear was blotchy brown (on the
astronaut the fill there had a median (0.58, 0.48, 0.37) between the ear's (0.26, 0.17, 0.05)
and the skin's (0.77, 0.68, 0.54); eval page, "The thirty-third session").

Below the nose tip's height (the hair at the back ends at the nape, halfway from the nose tip to
the chin: regions.nape_row) observed vertices whose colour is the hair's are left out of that
fill's data. Hair and skin are told apart by colour models of the build's own samples: skin from
the face inside its landmark oval, hair from the head above the oval's top (the scalp, which the
photo shows as hair). Clothes on the neck (a turtleneck, a collar) are neither, and stay data.
From the nape to the chin (skin_band) the unseen skin outside the face is also pulled to the skin
model's colour and keeps no synthesized texture (sampling.sample_colors), and the hair-coloured
samples there take that fill too; the face's own unseen parts (inner lips, nostrils) keep theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .regions import _color_model, _maha2


@dataclass
class BelowHairOptions:
    enabled: bool = True
    hair_max: float = 9.0        # squared Mahalanobis distance to the hair model: at most this is hair-like
    skin_max: float = 9.0        # ... to the skin model: more than this is not skin-like
    min_samples: int = 40        # fewer skin or scalp samples -> no models, nothing left out
    separation: float = 1.0      # hair and skin means closer than this (squared Mahalanobis, either
    #                              model) -> bald or skin-coloured hair: nothing to tell apart
    face_scale: float = 0.8      # skin samples from the face oval shrunk by this about its centre
    face_keep: float = 1.1       # samples inside the face oval grown by this are always data (its shadows)
    skin_pull: float = 2.0       # screening weight towards the skin colour of unseen vertices in skin_band


CLOTHES_FADE = 0.25   # skin_band's fall below the chin, as a share of the nose-to-nape height


@dataclass
class BelowHair:
    """excluded (V,) bool: observed vertices that keep their colour but do not feed the fill;
    skin (3,) float64 the skin model's mean colour, or None when hair and skin were not told apart
    (skin_icov: its (3, 3) inverse covariance);
    beyond_face (V,) bool: vertices outside the face oval grown by ``face_keep`` (the face's own
    unseen parts, inner lips and nostrils among them, keep their fill)."""

    excluded: np.ndarray
    skin: np.ndarray | None
    beyond_face: np.ndarray | None = None
    skin_icov: np.ndarray | None = None   # (3, 3) the skin model's inverse covariance (with ``skin``)


def skin_band(rest_y: np.ndarray, below_y: float, chin_y: float) -> np.ndarray:
    """(V,) float [0, 1]: how surely a vertex at rest height ``rest_y`` (V,) metres is skin below
    the hair and above clothes: 1 from the nape (halfway from ``below_y``, the nose tip, to
    ``chin_y``) down to the chin, falling to 0 at the nose tip above and CLOTHES_FADE of that
    height below the chin (a collar or a turtleneck rises about that far up the neck: the fill
    below keeps the neck's own samples)."""
    nape = 0.5 * (below_y + chin_y)
    span = max(below_y - nape, 1e-6)
    up = np.clip((below_y - rest_y) / span, 0.0, 1.0)
    fade = CLOTHES_FADE * span
    down = np.clip((rest_y - (chin_y - fade)) / fade, 0.0, 1.0)
    return np.minimum(up, down)


def hair_coloured_below(colors: np.ndarray, observed: np.ndarray, rest: np.ndarray, face_oval: np.ndarray,
                        below_y: float, chin_y: float, pixel_m: float, opts: BelowHairOptions | None = None
                        ) -> BelowHair:
    """Observed vertices lower than ``below_y`` that must not feed the skin's fill, and the skin's colour.

    Between ``below_y`` and ``chin_y`` (the ears, the jaw's sides: skin, or hair hanging over it)
    every sample that is not the skin's colour (the hair's, or a shadow in it); below the chin only
    the hair's (clothes on the neck are neither, and stay data).
    colors (V, 3) float [0, 1] sampled colours (valid where ``observed``), observed (V,) bool,
    rest (V, 3) head-frame rest vertices (metres, y up), face_oval (K, 3) the rest-frame face-oval
    landmarks (skin samples inside it, shrunk by ``face_scale``; scalp samples above its top),
    below_y, chin_y (metres) rest-frame heights, pixel_m the unwrap's pixel (the LOD's vertex spacing).
    """
    from .synthesis import face_oval_map, unwrap

    opts = opts or BelowHairOptions()
    out = np.zeros(len(colors), bool)
    zone = observed & (rest[:, 1] < below_y)
    if not opts.enabled or not zone.any() or face_oval is None or len(face_oval) < 3:
        return BelowHair(out, None)
    everywhere = np.ones(len(rest), bool)
    hmap = unwrap(rest, everywhere, pixel_m)
    H, W = hmap.size
    at = (np.clip(hmap.uv[:, 1].astype(np.int64), 0, H - 1), np.clip(hmap.uv[:, 0].astype(np.int64), 0, W - 1))
    skin = observed & face_oval_map(face_oval, rest, everywhere, hmap, opts.face_scale)[at]
    beyond = ~face_oval_map(face_oval, rest, everywhere, hmap, opts.face_keep)[at]
    zone &= beyond
    scalp = observed & (rest[:, 1] > float(face_oval[:, 1].max()))
    if skin.sum() < opts.min_samples or scalp.sum() < opts.min_samples:
        return BelowHair(out, None)
    c = colors.astype(np.float64)
    mu_s, ic_s = _color_model(c[skin])
    mu_h, ic_h = _color_model(c[scalp])
    if min(_maha2(mu_h[None], mu_s, ic_s)[0], _maha2(mu_s[None], mu_h, ic_h)[0]) < opts.separation:
        return BelowHair(out, None)
    z = np.flatnonzero(zone)
    d_h, d_s = _maha2(c[z], mu_h, ic_h), _maha2(c[z], mu_s, ic_s)
    hair = (d_h <= d_s) & (d_h <= opts.hair_max)
    not_skin = (d_s > d_h) | (d_s > opts.skin_max)
    out[z] = np.where(rest[z, 1] >= chin_y, not_skin, hair)
    return BelowHair(out, mu_s, beyond, ic_s)
