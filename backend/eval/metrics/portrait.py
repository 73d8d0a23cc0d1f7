"""Whole-portrait metrics: alpha IoU (render coverage vs the target's portrait mask), the mask
that makes full-portrait figures comparable across crops and backgrounds, and mouth PSNR inside
the inner-lip hull on open-mouth frames.

Why the union mask: ``psnr_full`` averages over the whole 512 crop, so a wider crop (more
background, black in both images) raises it without any change to the person. Scoring inside
``target portrait mask OR render alpha`` counts only pixels where either image shows someone, so
it compares crops of different framing and renders on different backgrounds fairly.
"""

from __future__ import annotations

import numpy as np

from ...image_metrics import hull_mask

from ...face.mediapipe_face import INNER_CORNER_L, INNER_CORNER_R, INNER_LIP, LOWER_INNER_MID, UPPER_INNER_MID
# A frame counts as "mouth open" when the inner-lip gap (13-14) is at least this share of the
# inner-lip width (78-308). Talking and closed smiles stay below ~0.15; a wide "O" reaches 0.5+.
MOUTH_OPEN_THRESHOLD = 0.25
# Smallest inner-lip hull (px at 512) worth a PSNR: a handful of pixels says nothing.
MIN_MOUTH_PIXELS = 50
MASK_THRESHOLD = 0.5


def alpha_iou(alpha: np.ndarray, mask: np.ndarray, threshold: float = MASK_THRESHOLD) -> float:
    """Intersection over union of ``alpha > threshold`` and ``mask > threshold``, both (H, W)
    (floats in [0, 1] or bool). Two empty masks -> NaN (nothing to compare)."""
    a = np.asarray(alpha) > threshold
    m = np.asarray(mask) > threshold
    if a.shape != m.shape:
        raise ValueError(f"alpha {a.shape} does not match mask {m.shape}")
    union = np.count_nonzero(a | m)
    return float(np.count_nonzero(a & m) / union) if union else float("nan")


def portrait_union(alpha: np.ndarray, mask: np.ndarray, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """(H, W) bool: pixels where the render or the target shows the person."""
    return (np.asarray(alpha) > threshold) | (np.asarray(mask) > threshold)


def mouth_opening(landmarks: np.ndarray) -> float:
    """Inner-lip gap over inner-lip width (dimensionless) from (478, 2+) mediapipe landmarks."""
    lm = np.asarray(landmarks, np.float64)[:, :2]
    gap = np.linalg.norm(lm[UPPER_INNER_MID] - lm[LOWER_INNER_MID])
    width = np.linalg.norm(lm[INNER_CORNER_R] - lm[INNER_CORNER_L])
    return float(gap / width) if width > 0 else float("nan")


def mouth_mask(landmarks: np.ndarray | None, height: int, width: int,
               threshold: float = MOUTH_OPEN_THRESHOLD) -> np.ndarray | None:
    """(H, W) bool inside the inner-lip hull when the mouth is open (``mouth_opening >=
    threshold`` and at least MIN_MOUTH_PIXELS pixels), else None (the frame has no mouth PSNR)."""
    if landmarks is None or not mouth_opening(landmarks) >= threshold:
        return None
    mask = hull_mask(np.asarray(landmarks)[list(INNER_LIP)], height, width)
    return mask if np.count_nonzero(mask) >= MIN_MOUTH_PIXELS else None


SSIM_REGIONS = ("background", "silhouette", "face", "person")


def ssim_loss_split(ssim_map: np.ndarray, alpha: np.ndarray, portrait: np.ndarray, face: np.ndarray,
                    threshold: float = MASK_THRESHOLD, valid: np.ndarray | None = None) -> dict[str, float]:
    """Where a frame's SSIM is lost: {region: sum of (1 - SSIM) over the windows centred in that
    region / all windows}, so the four values add up to 1 - mean SSIM (``ssim_full``). With
    ``valid`` (H, W) bool only windows centred on valid pixels count (regions and denominator),
    so they add up to 1 - SSIM over ``valid`` (``image_metrics.ssim(..., mask=valid)``).

    ssim_map: (H - 2r, W - 2r) per-window SSIM (image_metrics.ssim_map, valid region, centred on
    pixel (i + r, j + r)); alpha: (H, W) render alpha; portrait: (H, W) target portrait mask;
    face: (H, W) bool, the target's face hull. Regions: "background" (neither shows the person),
    "silhouette" (exactly one does: the outline differs), "face" (both, inside the face hull),
    "person" (both, outside it: hair, ears, neck, body)."""
    s = np.asarray(ssim_map, np.float64)
    r = (np.shape(alpha)[0] - s.shape[0]) // 2
    crop = (slice(r, r + s.shape[0]), slice(r, r + s.shape[1]))
    a = (np.asarray(alpha) > threshold)[crop]
    p = (np.asarray(portrait) > threshold)[crop]
    f = np.asarray(face, bool)[crop]
    v = np.ones_like(a) if valid is None else np.asarray(valid, bool)[crop]
    n = np.count_nonzero(v)
    loss = 1.0 - s
    regions = {"background": ~a & ~p, "silhouette": a ^ p, "face": a & p & f, "person": a & p & ~f}
    if n == 0:
        return {k: float("nan") for k in regions}
    return {k: float(loss[m & v].sum() / n) for k, m in regions.items()}


ERROR_REGIONS = ("background", "silhouette", "face", "head", "body")


def error_regions(alpha: np.ndarray, portrait: np.ndarray, face: np.ndarray, chin_row: float,
                  threshold: float = MASK_THRESHOLD) -> dict[str, np.ndarray]:
    """error_split's regions as (H, W) bool masks {name: mask} in ERROR_REGIONS order; they
    partition the image (see error_split for the arguments and the regions)."""
    a = np.asarray(alpha) > threshold
    p = np.asarray(portrait) > threshold
    f = np.asarray(face, bool)
    above = (np.arange(a.shape[0])[:, None] + 0.5) < chin_row
    both = a & p & ~f
    return {"background": ~a & ~p, "silhouette": a ^ p, "face": a & p & f,
            "head": both & above, "body": both & ~above}


def error_split(render: np.ndarray, target: np.ndarray, alpha: np.ndarray, portrait: np.ndarray,
                face: np.ndarray, chin_row: float, threshold: float = MASK_THRESHOLD,
                valid: np.ndarray | None = None) -> dict[str, float]:
    """Where a frame's squared error lies: {region: its share of the summed squared RGB error over
    ``valid`` pixels} (the shares add up to 1; NaN when there is no error or no valid pixel).

    render, target: (H, W, 3) float [0, 1] (target: the frame over the render background by its
    portrait mask, Target.full); alpha: (H, W) render alpha; portrait: (H, W) target portrait
    mask; face: (H, W) bool, the target's face hull; chin_row: the target's lowest landmark row
    (px). Regions as ssim_loss_split's, with "person" cut at the chin: "background" (neither shows
    the person), "silhouette" (exactly one does), "face" (both, inside the face hull), "head"
    (both, outside the face, above the chin: hair, ears), "body" (both, below the chin: neck,
    shoulders, hair lying on them). A diagnostic for which part of the portrait to fix first."""
    err = ((np.asarray(render, np.float64) - np.asarray(target, np.float64)) ** 2).sum(-1)
    regions = error_regions(alpha, portrait, face, chin_row, threshold)
    v = np.ones(err.shape, bool) if valid is None else np.asarray(valid, bool)
    total = float(err[v].sum())
    if not total > 0:
        return {k: float("nan") for k in regions}
    return {k: float(err[m & v].sum() / total) for k, m in regions.items()}


def ssim_loss_regions(ssim_map: np.ndarray, regions: dict[str, np.ndarray],
                      valid: np.ndarray | None = None) -> dict[str, float]:
    """{region: sum of (1 - SSIM) over the windows centred in it / all (valid) windows}: the
    SSIM-loss split over any partition of the image, e.g. :func:`error_regions`' five (background,
    silhouette, face, head above the chin, body below it). ssim_map (H - 2r, W - 2r) as
    image_metrics.ssim_map's; regions {name: (H, W) bool}; valid (H, W) bool or None (all). The
    shares add up to 1 - SSIM over ``valid`` when the regions partition it."""
    s = np.asarray(ssim_map, np.float64)
    shape = next(iter(regions.values())).shape
    r = (shape[0] - s.shape[0]) // 2
    crop = (slice(r, r + s.shape[0]), slice(r, r + s.shape[1]))
    v = np.ones(s.shape, bool) if valid is None else np.asarray(valid, bool)[crop]
    n = np.count_nonzero(v)
    if n == 0:
        return {k: float("nan") for k in regions}
    loss = 1.0 - s
    return {k: float(loss[np.asarray(m, bool)[crop] & v].sum() / n) for k, m in regions.items()}


def ssim_terms(pred: np.ndarray, target: np.ndarray) -> dict[str, np.ndarray]:
    """SSIM's three factors per window, channel-averaged, (H - 2r, W - 2r) float64 each (the
    windows of image_metrics.ssim_map; SSIM = luminance x contrast x structure with the standard
    C3 = C2 / 2): "luminance" (2 mu_p mu_t + C1) / (mu_p^2 + mu_t^2 + C1), "contrast"
    (2 s_p s_t + C2) / (s_p^2 + s_t^2 + C2), "structure" (cov + C2/2) / (s_p s_t + C2/2), and
    and the local standard deviations "sigma_pred" s_p and "sigma_target" s_t (a region's
    mean s_p over mean s_t below 1: the render is smoother than the target there, blur or missing
    texture). pred, target: (H, W, 3) float [0, 1]. Says whether a region's SSIM loss is
    brightness, blur (contrast, with the render's sigma below the target's) or misplaced detail
    (structure)."""
    from ...image_metrics import SSIMOptions, ssim_moments

    opts = SSIMOptions()
    mu_a, mu_b, var_a, var_b, cov = ssim_moments(pred, target, opts)
    var_a, var_b = var_a.clamp_min(0), var_b.clamp_min(0)
    sa, sb = var_a.sqrt(), var_b.sqrt()
    c1, c2 = (opts.k1 * opts.data_range) ** 2, (opts.k2 * opts.data_range) ** 2
    terms = {"luminance": (2 * mu_a * mu_b + c1) / (mu_a ** 2 + mu_b ** 2 + c1),
             "contrast": (2 * sa * sb + c2) / (var_a + var_b + c2),
             "structure": (cov + c2 / 2) / (sa * sb + c2 / 2),
             "sigma_pred": sa, "sigma_target": sb}
    return {k: v.mean(0)[0].numpy() for k, v in terms.items()}
