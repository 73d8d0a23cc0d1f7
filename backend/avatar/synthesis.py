"""Texture for the head's unseen regions, synthesized from what the photo shows.

The photo sees the face and the front of the hair; the back of the head, the sides beyond the
silhouette and behind the ears are unseen. Diffusion (sampling.py) fills them with a smooth,
one-colour shell. Here they get texture instead, by patch-based synthesis (image quilting, Efros
and Freeman 2001) on an unwrapped map of the head:

1. unwrap: every head vertex gets cylinder coordinates around the head's vertical axis, u = arc
   length around the axis (the map's seam at the face, which is seen), v = height; one map pixel
   is the LOD's vertex spacing. Observed vertices write their colours into the map; pixels
   without a vertex take their nearest vertex's value;
2. exemplars: map windows that are entirely observed and lie outside the face oval (no eyes,
   brows or lips get copied onto the back of the head): hair, forehead, ears, neck, skin;
3. texture layer: the observed colours minus their blur (a high-pass: strands, curls, pores),
   clipped; the low frequencies stay the diffusion colour's, which equals the boundary colour,
   so the seam at the visibility boundary is blended by construction and no dark or bright
   block of the photo is copied onto the back;
4. quilting of the texture layer: unknown map blocks are filled in onion-peel order (nearest the
   visibility boundary first), each with the exemplar window whose overlap with what is already
   there (observed or synthesized) matches best (sum of squared differences), so hair texture
   continues hair texture and skin continues skin; the copied windows keep their strand
   direction (the map is not rotated: strands that run down the front run down the back);
5. unseen vertices read diffusion colour + synthesized texture back from the map (bilinear).

Everything is vectorized but the quilting's loop over blocks (a few hundred to two thousand), which
runs in one numba kernel (synthesis_kernels.quilt_blocks, with a plain numpy twin): each block
depends on the blocks filled before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .imageops import bilinear

# mediapipe face-oval loop (FACEMESH_FACE_OVAL, in order): exemplar windows must avoid the face
FACE_OVAL = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
             148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)


@dataclass
class SynthesisOptions:
    enabled: bool = True
    patch: int = 8              # block / exemplar window side in map pixels (vertex spacings)
    overlap: int = 3            # pixels shared by neighbouring blocks (what the matching sees)
    candidates: int = 2000      # exemplar windows kept (a random subset when there are more)
    choose_among: int = 4       # pick at random among the best few matches (no visible repeats)
    detail_sigma: float = 4.0   # texture = observed colour minus its blur of this many map pixels
    detail_max: float = 0.3     # texture amplitude limit (colour units)
    guide: float = 0.0          # weight of the current content where a block is still empty
    face_margin: float = 1.15   # the face oval is grown by this factor before excluding it
    seed: int = 0


@dataclass
class HeadMap:
    """Cylindrical unwrap of one LOD's head vertices.

    uv (V, 2) float32 continuous map pixel coordinates (x = around the head, y = down);
    size (H, W); pixel_m: map pixel side in metres.
    """

    uv: np.ndarray
    size: tuple[int, int]
    pixel_m: float


def unwrap(rest: np.ndarray, use: np.ndarray, pixel_m: float) -> HeadMap:
    """Cylinder coordinates of ``rest`` (V, 3) head-frame vertices (x right, y up, z forward)
    around the vertical axis through the centre of the ``use`` (V,) bool vertices; the map's
    u = 0 column is the front (seen), so the back of the head is in the middle of the map."""
    p = rest.astype(np.float64)
    c = p[use].mean(0)
    dx, dz = p[:, 0] - c[0], p[:, 2] - c[2]
    radius = float(np.median(np.hypot(dx, dz)[use]))
    theta = np.mod(np.arctan2(dx, dz), 2.0 * np.pi)          # 0 at the front, pi at the back
    width = max(int(np.ceil(2.0 * np.pi * radius / pixel_m)), 8)
    u = theta / (2.0 * np.pi) * width
    top = p[use, 1].max()
    v = (top - p[:, 1]) / pixel_m + 0.5
    height = max(int(np.ceil(v[use].max() + 1.0)), 8)
    return HeadMap(np.stack([u, v], 1).astype(np.float32), (height, width), float(pixel_m))


def rasterize(hmap: HeadMap, colors: np.ndarray, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Average ``colors`` (V, 3) of the ``sel`` (V,) vertices per map pixel -> (map (H, W, 3),
    hit (H, W) bool); pixels without a vertex take the nearest hit pixel's colour."""
    from scipy.ndimage import distance_transform_edt

    H, W = hmap.size
    ij = np.floor(hmap.uv[sel]).astype(np.int64)
    ix = np.clip(ij[:, 0], 0, W - 1)
    iy = np.clip(ij[:, 1], 0, H - 1)
    flat = iy * W + ix
    count = np.bincount(flat, minlength=H * W).astype(np.float64)
    acc = np.stack([np.bincount(flat, colors[sel, c], minlength=H * W) for c in range(3)], 1)
    hit = count > 0
    img = np.zeros((H * W, 3), np.float64)
    img[hit] = acc[hit] / count[hit, None]
    img = img.reshape(H, W, 3)
    hit = hit.reshape(H, W)
    if hit.any() and not hit.all():
        _, (iy2, ix2) = distance_transform_edt(~hit, return_indices=True)
        img = img[iy2, ix2]
    return img.astype(np.float32), hit


def polygon_mask(poly: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool pixels whose centre lies inside the polygon (K, 2) map pixel coordinates."""
    from skimage.draw import polygon

    H, W = size
    m = np.zeros((H, W), bool)
    rr, cc = polygon(poly[:, 1] - 0.5, poly[:, 0] - 0.5, shape=(H, W))
    m[rr, cc] = True
    return m


def _windows(img: np.ndarray, ok: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-left corners (K, 2) (row, col) of p x p windows lying entirely inside ``ok`` and the
    windows themselves (K, p, p, C)."""
    from numpy.lib.stride_tricks import sliding_window_view

    H, W = ok.shape
    if H < p or W < p:
        return np.zeros((0, 2), np.int64), np.zeros((0, p, p, img.shape[2]), img.dtype)
    full = sliding_window_view(ok, (p, p)).all(axis=(-2, -1))   # (H-p+1, W-p+1)
    rc = np.argwhere(full)
    wins = sliding_window_view(img, (p, p), axis=(0, 1))        # (H-p+1, W-p+1, C, p, p)
    return rc, np.ascontiguousarray(wins[rc[:, 0], rc[:, 1]].transpose(0, 2, 3, 1))


def quilt(img: np.ndarray, known: np.ndarray, exemplar_ok: np.ndarray, opts: SynthesisOptions,
          fill: np.ndarray | None = None) -> np.ndarray:
    """Fill the ``fill`` (default: not ``known``) pixels of ``img`` (H, W, C) by image quilting
    from exemplar windows inside ``exemplar_ok`` (H, W) bool. Known pixels are never changed.

    Blocks of ``patch`` pixels on a grid of step ``patch - overlap`` are visited in order of their
    distance to the known pixels; each copies, into its still-empty pixels, one of the
    ``choose_among`` exemplar windows that best match (SSD) the block's already-filled pixels.
    Returns the filled (H, W, C) copy.
    """
    from scipy.ndimage import distance_transform_edt

    from .synthesis_kernels import quilt_blocks

    out = img.astype(np.float32).copy()
    fill = ~known if fill is None else fill & ~known
    if not fill.any():
        return out
    p = int(opts.patch)
    step = max(p - int(opts.overlap), 1)
    _, wins = _windows(out, exemplar_ok & known, p)
    if len(wins) == 0:
        return out
    rng = np.random.default_rng(opts.seed)
    if len(wins) > opts.candidates:
        wins = wins[rng.choice(len(wins), opts.candidates, replace=False)]
    # (p*p*C, K): one row per window value, the candidates along it (synthesis_kernels.py)
    wins_t = np.ascontiguousarray(wins.reshape(len(wins), -1).T, np.float32)
    H, W = known.shape
    done = known.copy()
    # block corners covering every pixel to fill, ordered nearest-the-boundary first
    ys = np.unique(np.clip(np.r_[np.arange(0, H - p + 1, step), H - p], 0, None))
    xs = np.unique(np.clip(np.r_[np.arange(0, W - p + 1, step), W - p], 0, None))
    by, bx = np.meshgrid(ys, xs, indexing="ij")
    by, bx = by.ravel(), bx.ravel()
    from numpy.lib.stride_tricks import sliding_window_view

    need = sliding_window_view(fill, (p, p)).any(axis=(-2, -1))[by, bx]
    by, bx = by[need].astype(np.int64), bx[need].astype(np.int64)
    dist = distance_transform_edt(~known)
    centre = dist[np.minimum(by + p // 2, H - 1), np.minimum(bx + p // 2, W - 1)]
    order = np.argsort(centre, kind="stable").astype(np.int64)
    k = max(int(opts.choose_among), 1)
    # each block takes one of its k best matches at random (no visible repeats); drawn up front
    draws = rng.integers(min(k, len(wins)), size=len(by)).astype(np.int64)
    # each block copies, into its still-empty pixels, the window whose values match the block's
    # weighted ones best: weight 1 on pixels already there (observed or synthesized), ``guide`` on
    # empty ones, where the block's current content (the diffusion colour) steers the colour
    quilt_blocks(out, done, fill, wins_t, by, bx, order, draws, p, float(opts.guide), k)
    return out


def detail_layer(img: np.ndarray, known: np.ndarray, sigma_px: float, limit: float) -> np.ndarray:
    """High-pass texture (H, W, C) of the known pixels: img - G(img), G a Gaussian blur of
    ``sigma_px`` over the known pixels only (unknown ones take their nearest known value first, so
    the boundary adds no false edge), clipped to +/- ``limit``; 0 at unknown pixels."""
    from scipy.ndimage import distance_transform_edt, gaussian_filter

    if not known.any():
        return np.zeros_like(img)
    _, (iy, ix) = distance_transform_edt(~known, return_indices=True)
    filled = img[iy, ix]
    hp = filled - gaussian_filter(filled, (sigma_px, sigma_px, 0), mode="wrap")
    return np.where(known[..., None], np.clip(hp, -limit, limit), 0.0).astype(np.float32)


def synthesize_unseen(rest: np.ndarray, colors: np.ndarray, diffused: np.ndarray, known: np.ndarray,
                      target: np.ndarray, face_oval: np.ndarray | None, pixel_m: float,
                      opts: SynthesisOptions | None = None) -> np.ndarray:
    """Per-vertex colours (V, 3) float32 with the ``target`` (V,) bool vertices (unseen skin/hair)
    re-coloured by texture synthesized from the ``known`` (V,) bool ones.

    rest (V, 3) head-frame vertices (metres), colors (V, 3) observed colours (valid where known),
    diffused (V, 3) the smooth diffusion fill (its low frequencies blend the seams), face_oval
    (K, 3) the rest-frame face-oval landmarks or None, pixel_m the map pixel (the LOD's spacing).
    Vertices outside ``known | target`` (eyes, mouth interior) neither give nor take texture.
    """
    opts = opts or SynthesisOptions()
    out = diffused.astype(np.float32).copy()
    if not opts.enabled or not target.any() or not known.any():
        return out
    use = known | target
    hmap = unwrap(rest, use, pixel_m)
    obs_map, obs_hit = rasterize(hmap, colors, known)
    smooth_map, _ = rasterize(hmap, diffused, use)
    tgt_map, tgt_hit = rasterize(hmap, np.zeros_like(colors), target)
    # a pixel is known when observed vertices land there and no unseen one does (folds: ears)
    known_map = obs_hit & ~tgt_hit
    ex_ok = np.ones(hmap.size, bool)
    if face_oval is not None and len(face_oval) >= 3:
        ex_ok &= ~face_oval_map(face_oval, rest, use, hmap, opts.face_margin)
    detail = detail_layer(obs_map, known_map, opts.detail_sigma, opts.detail_max)
    synth = quilt(detail, known_map, ex_ok, opts)
    blended = smooth_map + synth   # the diffusion colour (continuous at the boundary) + texture
    out[target] = np.clip(bilinear(blended, hmap.uv[target]), 0.0, 1.0)
    return out


def face_oval_map(face_oval: np.ndarray, rest: np.ndarray, use: np.ndarray, hmap: HeadMap,
                  scale: float = 1.0) -> np.ndarray:
    """(H, W) bool map pixels inside the face oval (K, 3) rest-frame landmarks, scaled by ``scale``
    about its centre, in ``hmap`` (the unwrap of ``rest`` (V, 3) over ``use`` (V,) bool)."""
    fm = unwrap_points(face_oval, rest, use, hmap)
    W = hmap.size[1]
    fm[:, 0] = np.where(fm[:, 0] > W / 2, fm[:, 0] - W, fm[:, 0])  # the face straddles u = 0
    c = fm.mean(0)
    poly = c + scale * (fm - c)
    return polygon_mask(poly, hmap.size) | polygon_mask(poly + [W, 0.0], hmap.size)


def unwrap_points(points: np.ndarray, rest: np.ndarray, use: np.ndarray, hmap: HeadMap) -> np.ndarray:
    """Map pixel coordinates (K, 2) of extra head-frame points (K, 3) in ``hmap``'s unwrap (the
    same axis, seam and scale as ``unwrap(rest, use, ...)``)."""
    both = np.concatenate([rest, points]).astype(np.float32)
    sel = np.concatenate([use, np.zeros(len(points), bool)])
    return unwrap(both, sel, hmap.pixel_m).uv[len(rest):]
