"""Split the portrait silhouette into head, hair and body pixels (no hair segmentation model needed).

mediapipe 0.10.21 bundles selfie segmentation (person vs background) and the face mesh, but no hair
model. The heuristic, in the 512 crop:

1. ``person`` = portrait mask >= 0.5; ``head`` = the fitted head mesh's source-view coverage, grown
   by the face-landmark hull (face pixels are never hair or body).
2. Above the brows every person pixel that is not head is sure hair (nothing else sits above a
   face in a portrait); without any, the portrait has no hair part.
3. Elsewhere (beside the face, below the chin) hair, ears, neck and clothes overlap in position, so
   colour decides: a Gaussian colour model of the sure hair against the face's skin colour and
   k-means clusters of the sure body (person pixels in the image's bottom band outside the head
   column, and on the chest below the chin). A cluster that looks like the hair is dropped unless
   it covers the chest: long hair reaches the bottom band too, clothes cover the chest. A pixel is
   hair when its Mahalanobis distance to the hair model is the smallest and it is connected to the
   sure hair (strands hang from the head; a dark suit under short hair is not reached).
4. ``side`` = the other person pixels beside the head above the chin (ears, hats), except clothes
   rising beside the neck (a collar, a hood: nearer a body cluster's colour than skin and hair, and
   connected to the body below the chin), which are body; ``body`` = the rest below the chin and
   those collars; ``hair_texture`` = typical hair-coloured pixels of the hair and of the head
   mesh above the brows (hair seen over the scalp), confidently inside the mask: the source of
   colour for the unseen hair.
5. ``neck_clothes`` = head-mesh pixels below the chin that show clothes by the same colour test
   as the collars (a shirt's front over the model's neck, which runs on below the collar): the
   torso carries them, so a turned view shows one shirt, not a band of it on the neck column.
   ``bare_chest`` = the skin-coloured head pixels of the rows, from the first down, where the body
   beside the head column is skin too (bare shoulders, a low neckline): the chest, not the neck.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..image_metrics import hull_mask

# mediapipe face-mesh landmarks
CHIN = 152
NOSE_TIP = 1
BROWS = (70, 63, 105, 66, 107, 336, 296, 334, 293, 300)


@dataclass
class RegionOptions:
    mask_threshold: float = 0.5
    head_grow_px: int = 1            # head coverage grown by this much: its anti-aliased rim is head
    bottom_band: float = 0.15        # sure-body band: this fraction of the image height at the bottom
    column_margin: float = 0.25      # head column = landmark x-range grown by this * face width
    body_clusters: int = 3
    hair_like: float = 2.0           # clusters within this Mahalanobis distance of the hair model look like hair
    chest_share: float = 0.2         # ... and are hair only when under this share of the chest (else: clothes)
    chest_offset: float = 0.3        # chest = head column from this * face width below the chin
    scalp_hair: float = 2.5          # head pixels above the brows within this distance are hair texture
    scalp_in_face: bool = True       # ... inside the face hull too (a fringe over the forehead)
    scalp_close_px: int = 4          # the scalp's hair closed by this many pixels, its holes filled
    open_px: int = 2
    texture_mask: float = 0.9        # hair texture only from confident mask pixels (no background bleed)
    min_hair_px: int = 40            # fewer sure-hair pixels -> no hair colour model (bald / tight crop)
    # clothes that rise above the chin beside the neck (a collar, a hood, a scarf) are body, not
    # head-attached side pixels, when their colour is nearer a body cluster than the skin (and the
    # hair) and they connect to the body below the chin: at a head turn the collar stays with the
    # torso instead of turning with the head
    collar_to_body: bool = True
    # the chest the head model's neck covers (the head column below the chest line) shows a
    # shirt front between a jacket's lapels, which the sure-body clusters (outside the head) never
    # sampled: its pixels farther than this (Mahalanobis) from the skin's colour add clothes
    # clusters for ``neck_clothes`` (a bare chest is skin, and adds none)
    chest_not_skin: float = 3.0
    # a row is the bare chest's when the body pixels within this many pixels beside the head
    # column, on both sides, are mostly (bare_share) skin-coloured (Mahalanobis <= chest_not_skin)
    bare_window_px: int = 8
    bare_share: float = 0.6


@dataclass
class PortraitRegions:
    """(H, W) bool masks of the 512 crop, plus the rows that split them (pixels, down = +).

    person: portrait mask; head: head mesh + face hull; hair / body: disjoint, outside ``head``;
    nape_row: where hair behind the head ends (halfway from the nose tip to the chin); side: the rest beside the head above the chin
    (ears, hats: head-attached, coloured from the photo); chin_row, brow_row: landmark rows;
    scalp: head pixels above the brows (the face hull's too: a fringe), whose colour is the hair's,
    closed over light strands (hair seen over the scalp: it has a thickness the bald head model
    lacks); fringe: the scalp's pixels inside the face hull (hair lying on the forehead; None
    where the regions were made without it); neck_clothes: head pixels below the chin, outside the
    face hull, whose colour is the clothes' (None: none found); bare_chest: skin-coloured head pixels
    below the chin on rows where the body beside the head is skin (None: none)."""

    person: np.ndarray
    head: np.ndarray
    hair: np.ndarray
    body: np.ndarray
    hair_texture: np.ndarray
    side: np.ndarray
    chin_row: float
    brow_row: float
    nape_row: float = float("nan")
    scalp: np.ndarray | None = None
    neck_clothes: np.ndarray | None = None
    bare_chest: np.ndarray | None = None
    fringe: np.ndarray | None = None

    def torso_pixels(self) -> np.ndarray:
        """(H, W) bool: the pixels the torso carries: the body, and the clothes and bare chest the
        photo shows over the head model's neck."""
        out = self.body.copy()
        for on_neck in (self.neck_clothes, self.bare_chest):
            if on_neck is not None:
                out |= on_neck
        return out


def _color_model(pix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) colours -> mean (3,), inverse covariance (3, 3) (regularised for flat colours)."""
    mu = pix.mean(0)
    cov = np.cov(pix.T) + np.eye(3) * 2e-3
    return mu, np.linalg.inv(cov)


def _maha2(pix: np.ndarray, mu: np.ndarray, icov: np.ndarray) -> np.ndarray:
    d = pix - mu
    return np.einsum("ni,ij,nj->n", d, icov, d)


def _kmeans(pix: np.ndarray, k: int, seed: int = 0, iters: int = 12) -> np.ndarray:
    """(N, 3) -> labels (N,) of k clusters (plain Lloyd iterations, deterministic seed)."""
    rng = np.random.default_rng(seed)
    centres = pix[rng.choice(len(pix), size=min(k, len(pix)), replace=False)]
    for _ in range(iters):
        lab = np.argmin(((pix[:, None, :] - centres[None]) ** 2).sum(-1), 1)
        centres = np.stack([pix[lab == c].mean(0) if (lab == c).any() else centres[c]
                            for c in range(len(centres))])
    return lab


def _collar(photo: np.ndarray, side: np.ndarray, body_below: np.ndarray, cloth_models: list, rivals: list,
            open_px: int) -> np.ndarray:
    """(H, W) bool: the ``side`` pixels that are clothes: nearer (Mahalanobis) a body cluster than
    every rival colour model (the skin's, the hair's), speckle removed, connected to ``body_below``
    (the body under the chin). Models are (mean (3,), inverse covariance (3, 3))."""
    from scipy.ndimage import binary_opening, label

    pix = photo[side]
    d_c = np.min([_maha2(pix, mu, icov) for mu, icov in cloth_models], axis=0)
    cloth = np.zeros_like(side)
    cloth[side] = d_c < np.min([_maha2(pix, mu, icov) for mu, icov in rivals], axis=0)
    cloth = binary_opening(cloth, iterations=open_px)
    lab_img, _ = label(cloth | body_below)
    keep = np.unique(lab_img[body_below])
    return cloth & np.isin(lab_img, keep[keep > 0])


def _cluster_models(pix: np.ndarray, k: int) -> list:
    """(N, 3) colours -> colour models (mean (3,), inverse covariance (3, 3)) of their ``k``
    k-means clusters, those of at least ten pixels."""
    lab = _kmeans(pix, k)
    return [_color_model(pix[lab == c]) for c in range(int(lab.max()) + 1) if (lab == c).sum() >= 10]


def _shirt_models(photo: np.ndarray, chest: np.ndarray, skin_model: tuple, opts: RegionOptions) -> list:
    """Colour models of the clothes on the ``chest`` (H, W) bool pixels: the clusters
    (_cluster_models) of those farther than ``opts.chest_not_skin`` from ``skin_model`` (none when
    fewer than ten per cluster are left: a bare chest)."""
    pix = photo[chest]
    if len(pix) == 0:
        return []
    pix = pix[_maha2(pix, *skin_model) > opts.chest_not_skin ** 2]
    return _cluster_models(pix, opts.body_clusters) if len(pix) >= opts.body_clusters * 10 else []


def _bare_chest(photo: np.ndarray, neck: np.ndarray, head: np.ndarray, body: np.ndarray, skin_model: tuple,
                opts: RegionOptions) -> np.ndarray | None:
    """(H, W) bool or None: the skin-coloured ``neck`` pixels (head pixels below the chin) on the
    rows where the ``body`` pixels within ``opts.bare_window_px`` beside the head's left and right
    edges are at least ``opts.bare_share`` skin-coloured, from the first such row down (the chest
    continues below it). Beside a neck lie hair, a collar or the background, never body skin."""
    H, W = head.shape
    skinlike = np.zeros((H, W), bool)
    skinlike[body] = _maha2(photo[body], *skin_model) <= opts.chest_not_skin ** 2
    left = np.argmax(head, 1)
    right = W - 1 - np.argmax(head[:, ::-1], 1)
    k = opts.bare_window_px
    cb = np.concatenate([np.zeros((H, 1), np.int64), np.cumsum(body, 1)], 1)        # (H, W + 1)
    cs = np.concatenate([np.zeros((H, 1), np.int64), np.cumsum(skinlike, 1)], 1)
    r = np.arange(H)

    def share(a: np.ndarray, b: np.ndarray) -> np.ndarray:   # skin share of the body in columns [a, b)
        a, b = np.clip(a, 0, W), np.clip(b, 0, W)
        n = cb[r, b] - cb[r, a]
        return np.where(n >= k // 2, (cs[r, b] - cs[r, a]) / np.maximum(n, 1), 0.0)

    beside_left = share(left - k, left) >= opts.bare_share
    beside_right = share(right + 1, right + 1 + k) >= opts.bare_share
    rows = neck.any(1) & beside_left & beside_right   # (neck pixels are head pixels: the edges exist)
    if not rows.any():
        return None
    rows[int(np.flatnonzero(rows)[0]):] = True
    bare = neck & rows[:, None]
    bare[bare] = _maha2(photo[bare], *skin_model) <= opts.chest_not_skin ** 2
    return bare if bare.any() else None


def portrait_regions(photo: np.ndarray, mask: np.ndarray, head_mask: np.ndarray, landmarks: np.ndarray,
                     opts: RegionOptions | None = None) -> PortraitRegions:
    """Head / hair / body split of the crop.

    photo (H, W, 3) float32 [0, 1]; mask (H, W) float32 portrait mask; head_mask (H, W) bool head
    mesh coverage at the source view; landmarks (478, 2) float32 crop pixels.
    """
    from scipy.ndimage import binary_closing, binary_dilation, binary_fill_holes, binary_opening, label

    opts = opts or RegionOptions()
    H, W = mask.shape
    person = mask >= opts.mask_threshold
    head = head_mask | hull_mask(landmarks, H, W)
    if opts.head_grow_px > 0:
        head = binary_dilation(head, iterations=opts.head_grow_px)
    lm = np.asarray(landmarks, np.float64)[:, :2]
    chin_row = float(lm[CHIN, 1])
    brow_row = float(lm[list(BROWS), 1].min())
    nape_row = 0.5 * (float(lm[NOSE_TIP, 1]) + chin_row)   # the hairline at the back: about mouth level
    rows = np.arange(H)[:, None] + 0.5
    cols = np.arange(W)[None, :] + 0.5
    free = person & ~head
    above = free & (rows < chin_row)
    below = free & (rows >= chin_row)

    fw = float(lm[:, 0].max() - lm[:, 0].min())
    column = (cols > lm[:, 0].min() - opts.column_margin * fw) & (cols < lm[:, 0].max() + opts.column_margin * fw)
    face = hull_mask(landmarks, H, W)
    sure_hair = above & (rows < brow_row)
    band = free & (rows >= H * (1.0 - opts.bottom_band)) & ~column
    chest = free & column & (rows >= chin_row + opts.chest_offset * fw)
    sample = band | chest                # sure body: clothes (and long hair)
    cloth_models: list = []              # the body clusters' colour models (mean, inverse covariance)
    hair_model = None
    # the skin's colour from the face below the brows: above them a fringe often covers the forehead,
    # and a skin model that had learnt it called the fringe skin (the sample's: 58 % of the head
    # pixels above her brows were left as paint on the bald head model)
    skin_px = face & (rows > brow_row)
    skin_model = _color_model(photo[skin_px]) if skin_px.sum() > 10 else None
    hair = np.zeros_like(above)          # no hair above the brows: a bald head or a tight crop
    hair_texture = hair.copy()
    scalp = hair.copy()
    if sure_hair.sum() >= opts.min_hair_px:
        mu_h, icov_h = hair_model = _color_model(photo[sure_hair])
        mu_s, icov_s = skin_model if skin_model is not None else hair_model
        cand = free & ~sure_hair
        cand_hair = np.zeros_like(cand)
        if sample.sum() >= opts.body_clusters * 10 and cand.any():
            spix = photo[sample]
            lab = _kmeans(spix, opts.body_clusters)
            in_chest = chest[sample]
            pix = photo[cand]
            d_h = _maha2(pix, mu_h, icov_h)
            d_b = _maha2(pix, mu_s, icov_s)  # skin (ears, neck) is not hair either
            for c in range(int(lab.max()) + 1):  # a handful of clusters
                cp = spix[lab == c]
                if len(cp) < 10:
                    continue
                hair_like = np.sqrt(_maha2(cp.mean(0)[None], mu_h, icov_h))[0] < opts.hair_like
                share = float((in_chest & (lab == c)).sum()) / max(int(in_chest.sum()), 1)
                if hair_like and share < opts.chest_share:
                    continue  # hair-coloured and not on the chest: long hair, not clothes
                mu_c, icov_c = _color_model(cp)
                cloth_models.append((mu_c, icov_c))
                d_b = np.minimum(d_b, _maha2(pix, mu_c, icov_c))
            cand_hair[cand] = d_h < d_b
        else:  # no body evidence: only skin competes
            cand_hair[cand] = _maha2(photo[cand], mu_h, icov_h) < _maha2(photo[cand], mu_s, icov_s)
        cand_hair = binary_opening(cand_hair, iterations=opts.open_px)  # speckle is not hair
        # keep classified hair only where connected to the sure hair (strands hang from the head)
        lab_img, _ = label(sure_hair | cand_hair)
        keep = np.unique(lab_img[sure_hair])
        hair = sure_hair | (cand_hair & np.isin(lab_img, keep[keep > 0]))
        # the head model's pixels above the brows that show hair, the face hull's too (a fringe over
        # the forehead is hair, not paint on the skull: turned, its paint ended at the skull's outline
        # in a sharp arc across the hair), closed over its light strands and highlights (nearer the
        # skin's colour than the hair's mean: a scalp mask full of holes lost them to the hull's
        # two-sigma erosion, hair.py)
        scalp = person & head & (rows < brow_row) & (~face | opts.scalp_in_face)
        if scalp.any():
            s = np.zeros_like(scalp)
            sp = photo[scalp]
            dh = _maha2(sp, mu_h, icov_h)
            s[scalp] = (dh < opts.scalp_hair ** 2) & (dh < _maha2(sp, mu_s, icov_s))
            if opts.scalp_close_px > 0:
                # holes count with the hair around the head model too: a highlight at the crown
                # reaches the model's outline, and left open it stayed a bald patch
                s = binary_fill_holes(binary_closing(s | hair, iterations=opts.scalp_close_px))
            scalp = s & scalp
        # texture source: confident, typical hair only (no ears, background bleed or highlights
        # from the classification's fringe)
        typical = np.zeros_like(hair)
        tp = hair | scalp
        typical[tp] = _maha2(photo[tp], mu_h, icov_h) < opts.scalp_hair ** 2
        hair_texture = typical & (mask >= opts.texture_mask)
        if hair_texture.sum() < opts.min_hair_px:
            hair_texture = (hair | scalp) & (mask >= opts.texture_mask)
    side = above & ~hair
    neck = person & head & ~face & (rows >= chin_row)
    neck_clothes = None
    if opts.collar_to_body and (side.any() or neck.any()) and skin_model is not None:
        if hair_model is None and sample.sum() >= opts.body_clusters * 10:
            # no hair to tell apart (a bald head): every sure-body cluster is clothes
            cloth_models = _cluster_models(photo[sample], opts.body_clusters)
        if cloth_models:
            rivals = [skin_model] + ([hair_model] if hair_model is not None else [])
            if side.any():
                side &= ~_collar(photo, side, below & ~hair, cloth_models, rivals, opts.open_px)
            if neck.any():
                chest_under_head = person & head & column & (rows >= chin_row + opts.chest_offset * fw) & ~face
                shirt = _shirt_models(photo, chest_under_head, skin_model, opts)
                neck_clothes = _collar(photo, neck, below & ~hair, cloth_models + shirt, rivals, opts.open_px)
    body = free & ~hair & ~side
    bare = _bare_chest(photo, neck, head, body, skin_model, opts) if skin_model is not None and neck.any() else None
    return PortraitRegions(person, head, hair, body, hair_texture, side, chin_row, brow_row, nape_row, scalp,
                           neck_clothes, bare, scalp & face)
