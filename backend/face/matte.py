"""The portrait matte: "the person, cut out", one definition for the build and the evaluation.

mediapipe's selfie segmenter runs at 256x256: its mask is blurred over 4-8 px at 512 and, away from
the face, often half-sure (values 0.3-0.7 over background next to a neck or a collar, where it
guesses shoulders). ``refine_matte`` turns it into a matte that follows the photo:

1. a trimap from the coarse mask: sure person where it is > ``sure_fg`` (eroded by ``sure_px``),
   sure background where it is < ``sure_bg`` (eroded likewise), the rest "probably" one or the other
   by the 0.5 threshold;
2. GrabCut (colour models of person and background + a graph cut, OpenCV) decides the unsure
   pixels by colour and edges: hallucinated shoulders over a plain background go, hair the
   segmenter blurred keeps its outline;
3. a guided filter (He et al. 2010, box filters only) with the photo as guide gives the hard cut
   soft, photo-aligned edges 1-2 px wide (hair tips, anti-aliased outlines); away from the cut
   (more than ``radius`` px) the matte is the hard cut (confidence hardening of the interior).

``foreground_colors`` estimates the person's own colour at the matte's soft edge (the photo there
mixes in the background): colours sampled for edge Gaussians come from it, so they carry no
background colour. Both are pure numpy + cv2 and deterministic (OpenCV's RNG is seeded).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MatteOptions:
    sure_fg: float = 0.9        # coarse mask above this (eroded) is certainly the person
    sure_bg: float = 0.1        # below this (eroded) certainly background
    sure_px: int = 4            # erosion radius in px of both sure regions (the segmenter's blur)
    grabcut_iters: int = 4
    grabcut_side: int = 256     # GrabCut runs on a copy at most this large (4x faster at 512; the
                                # guided filter at full size puts the edge back on the photo's)
    min_pixels: int = 64        # fewer sure pixels of either kind: no GrabCut (its colour models need samples)
    radius: int = 4             # guided filter window radius, px at 512
    eps: float = 1e-3           # guided filter regularisation (colour variance units, [0, 1] images)


def box_filter(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)^2 window of each pixel (reflected borders); x (H, W) or (H, W, C) float32."""
    import cv2

    return cv2.boxFilter(np.ascontiguousarray(x, np.float32), -1, (2 * r + 1, 2 * r + 1),
                         normalize=True, borderType=cv2.BORDER_REFLECT)


def guided_filter(guide: np.ndarray, src: np.ndarray, r: int, eps: float,
                  where: np.ndarray | None = None) -> np.ndarray:
    """Colour guided filter: ``src`` (H, W) float32 smoothed along the edges of ``guide``
    (H, W, 3) float32 in [0, 1]; window radius ``r`` px, regularisation ``eps``. -> (H, W) float32.

    Per window k: src ~ a_k . I + b_k (least squares, ridge eps); the output averages the
    coefficients of every window covering a pixel (He, Sun, Tang: Guided Image Filtering).
    ``where`` (H, W) bool: the pixels the caller uses; the 3x3 solves (half the filter's CPU at
    512x512) then run only for the windows covering one of them, and the output elsewhere is not
    the filter's."""
    I = np.ascontiguousarray(guide, np.float32)
    p = np.ascontiguousarray(src, np.float32)
    mI, mp = box_filter(I, r), box_filter(p, r)                        # (H, W, 3), (H, W)
    cov = box_filter(I * p[..., None], r) - mI * mp[..., None]          # (H, W, 3)
    outer = (I[..., :, None] * I[..., None, :]).reshape(*I.shape[:2], 9)
    var = (box_filter(outer, r).reshape(*I.shape[:2], 3, 3)
           - mI[..., :, None] * mI[..., None, :] + eps * np.eye(3, dtype=np.float32))
    if where is None:
        a = np.linalg.solve(var, cov[..., None])[..., 0]                # (H, W, 3)
    else:
        import cv2

        # the windows centred within r of a used pixel: the only ones its output averages
        need = cv2.dilate(np.asarray(where, np.uint8), np.ones((2 * r + 1, 2 * r + 1), np.uint8)) > 0
        a = np.zeros_like(cov)
        a[need] = np.linalg.solve(var[need], cov[need][..., None])[..., 0]
    b = mp - (a * mI).sum(-1)
    return (box_filter(a, r) * I).sum(-1) + box_filter(b, r)


def _grabcut(rgb: np.ndarray, coarse: np.ndarray, o: MatteOptions) -> np.ndarray | None:
    """Hard person mask (H, W) float32 {0, 1} from GrabCut on the coarse mask's trimap; None when
    either sure region is too small to model."""
    import cv2

    H, W = coarse.shape
    s = min(1.0, o.grabcut_side / max(H, W))
    if s < 1.0:
        size = (max(1, round(W * s)), max(1, round(H * s)))
        small = _grabcut(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA),
                         cv2.resize(coarse, size, interpolation=cv2.INTER_AREA),
                         MatteOptions(**{**o.__dict__, "sure_px": max(1, round(o.sure_px * s)),
                                         "min_pixels": max(1, round(o.min_pixels * s * s)),
                                         "grabcut_side": max(size)}))
        if small is None:
            return None
        return (cv2.resize(small, (W, H), interpolation=cv2.INTER_LINEAR) >= 0.5).astype(np.float32)
    k = np.ones((2 * o.sure_px + 1, 2 * o.sure_px + 1), np.uint8)
    fg = cv2.erode((coarse > o.sure_fg).astype(np.uint8), k) > 0
    bg = cv2.erode((coarse < o.sure_bg).astype(np.uint8), k) > 0
    if fg.sum() < o.min_pixels or bg.sum() < o.min_pixels:
        return None
    tri = np.where(coarse >= 0.5, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    tri[fg] = cv2.GC_FGD
    tri[bg] = cv2.GC_BGD
    cv2.setRNGSeed(0)  # the colour models start from k-means: same photo, same matte
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(rgb[..., ::-1]), tri, None, bgd, fgd, o.grabcut_iters,
                cv2.GC_INIT_WITH_MASK)
    return ((tri == cv2.GC_FGD) | (tri == cv2.GC_PR_FGD)).astype(np.float32)


def refine_matte(rgb: np.ndarray, coarse: np.ndarray, opts: MatteOptions | None = None) -> np.ndarray:
    """Photo-aligned portrait matte.

    rgb (H, W, 3) uint8 photo; coarse (H, W) float in [0, 1] (the selfie segmenter's mask at the
    photo's size). -> (H, W) float32 in [0, 1]: 1 on the person, 0 on the background, soft only
    along the photo's edges."""
    o = opts or MatteOptions()
    coarse = np.clip(np.asarray(coarse, np.float32), 0.0, 1.0)
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], np.uint8)
    hard = _grabcut(rgb, coarse, o)
    if hard is None:  # nothing sure to model (empty or all-person mask): only sharpen the edges
        hard = (coarse >= 0.5).astype(np.float32)
    # Confidence hardening: the filter follows texture too (hair, print, noise), leaving values
    # like 0.95 inside the person and 0.05 on the background; only within ``radius`` px of the cut
    # is the matte allowed to be soft (so the filter is solved for that band alone).
    import cv2

    k = np.ones((2 * o.radius + 1, 2 * o.radius + 1), np.uint8)
    h8 = hard.astype(np.uint8)
    band = (cv2.dilate(h8, k) > 0) & ~(cv2.erode(h8, k) > 0)
    matte = np.clip(guided_filter(rgb.astype(np.float32) / 255.0, hard, o.radius, o.eps, where=band), 0.0, 1.0)
    return np.where(band, matte, hard).astype(np.float32)


def foreground_colors(photo: np.ndarray, matte: np.ndarray, sure: float = 0.95, radius: int = 6) -> np.ndarray:
    """The person's colour where the matte is soft or zero: photo (H, W, 3) float32 [0, 1], matte
    (H, W) -> (H, W, 3) float32. Where matte >= ``sure`` it is the photo; elsewhere the mean of the
    sure person pixels nearby (normalised box filters of growing radius: ``radius``, 2x, 4x, ...),
    so no background colour leaks into colours sampled at the silhouette. Pixels with no sure
    person pixel within the largest window keep the photo's colour."""
    photo = np.asarray(photo, np.float32)
    m = (np.asarray(matte, np.float32) >= sure).astype(np.float32)
    out = photo.copy()
    todo = m < 1.0
    r = radius
    while todo.any() and r <= max(photo.shape[:2]):
        w = box_filter(m, r)
        acc = box_filter(photo * m[..., None], r)
        ok = todo & (w > 1e-3)
        out[ok] = acc[ok] / w[ok, None]
        todo &= ~ok
        r *= 2
    return out
