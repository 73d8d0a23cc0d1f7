"""Projection-based colour sampling (HPFS) with occlusion-aware fusion (OAFF), analytically.

The paper samples a DINOv2 feature map at each projected vertex and fuses it with a global feature
only where the vertex is visible in the mesh depth buffer. Without weights the "local feature" is
the photo's colour, and the "global feature" for occluded vertices is built from the mesh itself:

1. project the source-posed LOD vertices with the source camera; a vertex is *observed* when the
   depth buffer says it is visible, it faces the camera (cos > facing_min: grazing samples are
   background-contaminated), it lies inside the image and inside the portrait mask;
2. observed vertices take the bilinear colour of the photo prefiltered to the LOD's projected
   vertex spacing (no aliasing at coarse LODs);
3. unobserved vertices whose mirror vertex (x -> -x on the rest mesh) is observed copy it (the
   skin's copies shaded for their own side, step 8);
4. mouth-pocket vertices (inside the inner lip ring, behind the lips) are pinned to a dark mouth
   colour, so neither skin nor the photo's teeth smear into the mouth when the jaw opens;
5. every remaining vertex is filled by harmonic diffusion over the mesh graph (sparse Laplacian
   solve with the known vertices as Dirichlet data). Edges between the eyeballs and the skin are
   cut, so eyes and face never bleed into each other; a tiny screening term pulls vertices of a
   region without any data towards that region's fallback colour;
6. the unseen skin/hair vertices (back, sides, behind the ears) then get texture synthesized from
   the observed ones (synthesis.py: patch-based quilting on an unwrapped head map), with the
   diffusion colour as the low-frequency base at the visibility boundary (blended seams);
7. below the hair (the jaw's sides, behind the ears, the nape) the hair the photo shows over the
   ears is no data for that fill, which is pulled to the skin's colour there and keeps no
   synthesized hair texture (below_hair.py);
8. the fill (5, 7) works on albedo: the photo's light, fitted on the skin it shows per colour
   channel (skin_shading.py), divides the data and multiplies the filled vertices back at their
   own normals, so unseen skin that faces away from the light is darker and warmer; it only
   darkens, red least, and only where the fill is skin-coloured (shaded_diffuse).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import numpy as np
import scipy.sparse as sp

from ..face.mediapipe_face import INNER_LIP
from .below_hair import BelowHairOptions, hair_coloured_below, skin_band
from .imageops import bilinear, blurred_samples
from .regions import _maha2
from .skin_shading import ShadingOptions, fit_skin_shading
from .synthesis import SynthesisOptions, synthesize_unseen

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..render.camera import Camera

REGION_SKIN, REGION_EYES = 0, 1


@dataclass
class SamplingOptions:
    facing_min: float = 0.15          # cos(normal, direction to camera) to trust a sample
    mask_min: float = 0.5             # portrait-mask value to trust a sample
    prefilter: float = 0.5            # blur sigma as a fraction of the projected vertex spacing
    use_mirror: bool = True
    mouth_color: tuple[float, float, float] = (0.30, 0.12, 0.12)
    eye_fallback: tuple[float, float, float] = (0.80, 0.78, 0.75)
    screening: float = 1e-4           # pull towards the region fallback (keeps the solve SPD)
    mouth_observed_weight: float = 0.3  # soft-data weight of photo colours in the mouth band
    mouth_weight: float = 0.3           # soft-data weight of the mouth colour where unobserved
    synthesis: SynthesisOptions = field(default_factory=SynthesisOptions)
    shading: ShadingOptions = field(default_factory=ShadingOptions)
    below_hair: BelowHairOptions = field(default_factory=BelowHairOptions)
    # skin seen at |cos| below this also gets a side colour: the shaded fill of its neighbours as if
    # unseen, shown away from the source view (view_colors.py); a grazing sample smears one pixel
    # over a strip of surface that a turn shows face-on
    side_cos: float = 0.45
    side_colors: bool = True
    # False: only the grazing samples the skin model does not explain (hair or background mixed in
    # at the face's edge), as before the fill was shaded (skin_shading.py), when the skin-coloured
    # samples held the only shading the sides had
    side_skin: bool = True
    # False: grazing samples the skin model does not explain above the nose tip (the scalp's and the
    # temples' hair, seen edge-on at the head's top and sides) keep their own colour turned: their
    # side fill is a smooth patch where the hair's texture was (a flat pale wedge over the crown of
    # the sample at +30 deg); below it the fill still replaces the jaw edge's mix of skin and hair
    side_hair: bool = False


@dataclass
class SampledColors:
    """colors (V_l, 3) float32; observed/mirrored/interior/diffused/synthesized: (V_l,) bool
    provenance (synthesized vertices are a subset of the diffused ones: texture over the fill).
    side_rows (K,) int64 / side (K, 3) float32: the skin the photo sees edge-on (|cos| <
    ``SamplingOptions.side_cos``; with ``side_skin`` False only where the skin model does not
    explain its sample), and its colour seen from elsewhere: the shaded fill of its neighbours, as
    if the photo had not seen it (view_colors.py); None when not made (no skin model)."""

    colors: np.ndarray
    observed: np.ndarray
    mirrored: np.ndarray
    interior: np.ndarray
    diffused: np.ndarray
    synthesized: np.ndarray | None = None
    side_rows: np.ndarray | None = None
    side: np.ndarray | None = None


def vertex_regions(model: "HeadModel", upsample: sp.spmatrix) -> np.ndarray:
    """(V_l,) int: REGION_EYES where the eye joints dominate the skinning weights, else skin."""
    w = np.asarray(upsample @ model.weights)
    return np.where(w[:, 3] + w[:, 4] > 0.5, REGION_EYES, REGION_SKIN).astype(np.int8)


def mirror_indices(rest: np.ndarray, spacing: np.ndarray, tol: float = 0.5) -> np.ndarray:
    """(V,) int64 index of each vertex's mirror (x -> -x) or -1 when none lies within tol*spacing."""
    from scipy.spatial import cKDTree

    reflected = rest * np.array([-1.0, 1.0, 1.0], np.float32)
    # an unbalanced tree builds in half the time and a search bounded by the largest accepted
    # distance prunes more: the same nearest vertex wherever one is accepted (0.106 -> 0.075 s of
    # CPU at LOD 2); a vertex without one within the bound gets distance inf, so -1 as before
    # (the bound a hair above the largest: the search keeps distances below it, the test <= )
    bound = np.nextafter(tol * float(np.max(spacing)), np.inf) if len(spacing) else 0.0
    dist, idx = cKDTree(rest, balanced_tree=False).query(reflected, k=1, distance_upper_bound=bound)
    return np.where(dist <= tol * spacing, idx, -1).astype(np.int64)


def jaw_stretch(model: "HeadModel", rest: np.ndarray, upsample: sp.spmatrix, edges: np.ndarray,
                jaw_deg: float = 20.0) -> np.ndarray:
    """(V_l,) >= 1: the largest stretch of any edge at each vertex when the jaw opens ``jaw_deg``.

    Posing moves Gaussians but keeps their size (as the paper does), so where the mesh stretches
    the rows of Gaussians pull apart; this factor says where and by how much.
    rest (V_l, 3): the LOD's rest vertices (LOD-0 vertices first); edges (E, 2) of the LOD.
    """
    return vertex_max_stretch(rest.shape[0], edges, jaw_edge_stretch(model, rest, upsample, edges, jaw_deg))


def jaw_edge_stretch(model: "HeadModel", rest: np.ndarray, upsample: sp.spmatrix, edges: np.ndarray,
                     jaw_deg: float = 20.0) -> np.ndarray:
    """(E,) float64 >= 1: how much each edge of ``edges`` (E, 2) stretches when the jaw opens
    ``jaw_deg`` (see jaw_stretch; per edge, so a subset's stretch is this array's subset)."""
    import math

    from ..head.params import HeadParams
    from .posing import lbs_numpy

    p = HeadParams.zeros(model)
    p.pose[0, 2, 0] = math.radians(jaw_deg)
    # the template's jaw motion applied to this identity
    opened = rest[: model.n_verts] + (lbs_numpy(model, p)[0][0] - model.v_template)
    opened_l = np.asarray(upsample @ opened, np.float32)
    l0 = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    l1 = np.linalg.norm(opened_l[edges[:, 0]] - opened_l[edges[:, 1]], axis=1)
    return np.maximum(l1 / np.maximum(l0, 1e-9), 1.0)


def vertex_max_stretch(n: int, edges: np.ndarray, ratio: np.ndarray) -> np.ndarray:
    """(n,) float32: the largest ``ratio`` (E,) of the ``edges`` (E, 2) at each vertex, 1 where none."""
    out = np.ones(n)
    # values of the output's dtype: numpy's ufunc.at takes its fast path only without a cast
    # (float32 ratios into the float64 output: 0.126 -> 0.006 s of CPU at LOD 2); exact either way
    r = np.asarray(ratio, np.float64)
    np.maximum.at(out, edges[:, 0], r)
    np.maximum.at(out, edges[:, 1], r)
    return out.astype(np.float32)


def lip_stretch(n: int, edges: np.ndarray, ratio: np.ndarray, mouth: np.ndarray) -> np.ndarray:
    """(n,) float32: :func:`vertex_max_stretch` over the ``edges`` (E, 2) that touch no vertex of the
    mouth band ``mouth`` (n,) bool (:func:`mouth_interior`), ``ratio`` (E,) their stretch: what the
    lips are sized for when the mouth parts fill the opening (the build's rule, which per-frame growth
    repeats: stretch_growth.design_allowance), so they never grow across it."""
    lip = ~(mouth[edges[:, 0]] | mouth[edges[:, 1]])
    return vertex_max_stretch(n, edges[lip], np.asarray(ratio)[lip])


def mouth_interior(model: "HeadModel", rest: np.ndarray, stretch: np.ndarray,
                   band_stretch: float = 3.0, grow: float = 1.15, depth_m: float = 0.0005) -> np.ndarray:
    """(V_l,) bool: the mouth opening of the mesh, found two ways (union):

    - stretch band: vertices between the mouth corners, near the lip line, whose edges stretch
      more than ``band_stretch`` times when the jaw opens (jaw_stretch): they become the open mouth
      (on the stand-in, the lip pocket; works for any model with a jaw joint);
    - pocket: rest vertices inside the inner-lip landmark ring (grown by ``grow``) and at least
      ``depth_m`` behind it.
    At the source view these are a sliver between the lips; sampling.sample_colors gives them only
    soft data so they stay smooth (no stripes) and dark where the photo does not see them.
    """
    lm = model.landmarks
    idx = np.array(INNER_LIP)
    if lm.face_idx.shape[0] <= idx.max() or not lm.valid[idx].all():
        return np.zeros(rest.shape[0], bool)  # without lip landmarks the mouth cannot be placed
    from .imageops import points_in_polygons

    ring = lm.points(rest[: model.n_verts], model.faces)[idx]  # LOD-0 vertices come first
    c = ring.mean(0)
    poly = c[:2] + grow * (ring[:, :2] - c[:2])
    pocket = points_in_polygons(rest[:, :2], [poly])[0] & (rest[:, 2] < ring[:, 2].min() - depth_m)
    # the stretch band only counts between the mouth corners and near the lip line: elsewhere it is
    # the jaw line of the skin, which must keep its photo colours
    half_w = 0.5 * float(np.ptp(ring[:, 0]))
    near = (np.abs(rest[:, 0] - c[0]) < half_w) & (np.abs(rest[:, 1] - c[1]) < max(half_w * 0.4, 0.004))
    return (stretch > band_stretch) & near | pocket


def graph_laplacian(edges: np.ndarray, n: int, keep: np.ndarray | None = None) -> sp.csr_matrix:
    """Uniform-weight graph Laplacian (n, n) over ``edges`` (E, 2) (optionally a subset)."""
    if keep is not None:
        edges = edges[keep]
    i, j = edges[:, 0], edges[:, 1]
    ones = np.ones(len(edges))
    A = sp.coo_matrix((np.concatenate([ones, ones]), (np.concatenate([i, j]), np.concatenate([j, i]))),
                      shape=(n, n)).tocsr()
    return (sp.diags(np.asarray(A.sum(1)).ravel()) - A).tocsr()


def region_laplacian(edges: np.ndarray, regions: np.ndarray) -> sp.csr_matrix:
    """(V, V) graph Laplacian of ``edges`` (E, 2) without the edges between regions (V,) (eye <->
    skin edges cut: eyes and face never bleed into each other)."""
    same = regions[edges[:, 0]] == regions[edges[:, 1]]
    return graph_laplacian(edges, len(regions), same)


def diffuse(values: np.ndarray, known: np.ndarray, L: sp.csr_matrix, fallback: np.ndarray,
            screening: float | np.ndarray = 1e-4, x0: np.ndarray | None = None, cg_iters: int = 150
            ) -> np.ndarray:
    """Harmonic fill: solve (L_uu + S) x_u = -L_uk x_k + S fallback_u for unknown rows.

    values (V, C), known (V,) bool, fallback (V, C) (used only through the screening term),
    screening: scalar or (V,) per-vertex weights S (a large weight makes ``fallback`` soft data).
    Without ``x0``: a sparse direct solve (exact; used on the coarse LOD). With ``x0`` (V, C), an
    initial guess (the coarse solution upsampled): Jacobi-preconditioned CG for ``cg_iters``
    iterations, which only has to carry the coarse solution's error the last few vertex rings.
    """
    out = values.astype(np.float64).copy()
    u = np.flatnonzero(~known)
    k = np.flatnonzero(known)
    if len(u) == 0:
        return out.astype(np.float32)
    Lu = L[u]
    s = np.broadcast_to(np.asarray(screening, np.float64), (len(values),))[u]
    Luu = (Lu[:, u] + sp.diags(s)).tocsr()
    rhs = -(Lu[:, k] @ out[k]) + s[:, None] * fallback[u]
    if x0 is None:
        from scipy.sparse.linalg import factorized

        solve = factorized(Luu.tocsc())
        out[u] = np.stack([solve(np.ascontiguousarray(rhs[:, c])) for c in range(rhs.shape[1])], 1)
    else:
        out[u] = _pcg(Luu, rhs, np.asarray(x0[u], np.float64), cg_iters)
    return out.astype(np.float32)


def shaded_diffuse(values: np.ndarray, known: np.ndarray, L: sp.csr_matrix, fallback: np.ndarray,
                   screening: float | np.ndarray, shade: np.ndarray | None, x0: np.ndarray | None = None,
                   skin_like: Callable[[np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """``diffuse`` of albedo: ``values`` (V, 3) RGB divided by ``shade`` (V, 3) relative brightness
    per channel (skin_shading.py; None: plain ``diffuse``), filled, and multiplied back, as a ratio
    to the plain fill that only darkens, and darkens red least and blue most (skin's shadows are
    warm: light scattered under it comes out red). A fit the photo's own shadows confound (a fringe
    over the forehead makes skin facing down look brighter) gave photo 15's neck a lilac-white,
    then, capped per channel alone, a grey-blue; capped and ordered, such a fit darkens all three
    channels alike or nothing. ``skin_like``: (N, 3) colours -> (N,) bool; only the rows whose plain
    fill it accepts are shaded (the hair the fill carries over the scalp and behind the ears is no
    skin: shaded, its synthesized texture clipped at black and lost a fifth of its contrast).
    Known rows keep ``values`` exactly."""
    if shade is None:
        return diffuse(values, known, L, fallback, screening, x0=x0)
    # both fills in one solve (six columns): one factorization of the same system, not two
    both = diffuse(np.concatenate([values, values / shade], 1), known, L, np.concatenate([fallback, fallback], 1),
                   screening, x0=None if x0 is None else np.concatenate([x0, x0 / shade], 1)).astype(np.float64)
    plain, lit = both[:, :3], both[:, 3:] * shade
    ratio = darkening(lit / np.maximum(plain, 1e-6))
    if skin_like is not None:
        ratio[~skin_like(plain)] = 1.0
    out = (plain * ratio).astype(np.float32)
    out[known] = values[known]
    return out


def darkening(ratio: np.ndarray) -> np.ndarray:
    """(N, 3) RGB brightness ratios made a skin shadow: capped at 1 and ordered red >= green >= blue
    (shaded_diffuse says why)."""
    r = np.minimum(np.asarray(ratio, np.float64), 1.0)
    r[:, 1] = np.minimum(r[:, 1], r[:, 0])
    r[:, 2] = np.minimum(r[:, 2], r[:, 1])
    return r


def _pcg(A: sp.csr_matrix, b: np.ndarray, x: np.ndarray, iters: int, rtol: float = 1e-6) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradients, column by column of b (n, C) (A is SPD).

    Columns are solved as contiguous 1-D vectors: numpy reductions over axis 0 of an (n, 3) array
    are several times slower than np.dot on a vector."""
    inv_d = 1.0 / A.diagonal()
    out = np.empty_like(x)
    for c in range(b.shape[1]):  # C = 3 colour channels
        bc, xc = np.ascontiguousarray(b[:, c]), np.ascontiguousarray(x[:, c])
        r = bc - A @ xc
        z = inv_d * r
        p = z.copy()
        rz = float(np.dot(r, z))
        stop = (rtol * float(np.linalg.norm(bc))) ** 2
        for _ in range(iters):
            if float(np.dot(r, r)) <= stop:
                break
            Ap = A @ p
            alpha = rz / max(float(np.dot(p, Ap)), 1e-300)
            xc += alpha * p
            r -= alpha * Ap
            z = inv_d * r
            rz_new = float(np.dot(r, z))
            p = z + (rz_new / max(rz, 1e-300)) * p
            rz = rz_new
        out[:, c] = xc
    return out


def sample_colors(verts: np.ndarray, faces: np.ndarray, normals: np.ndarray, photo: np.ndarray,
                  portrait_mask: np.ndarray, camera: "Camera", edges: np.ndarray, spacing: np.ndarray,
                  regions: np.ndarray, mirror: np.ndarray, interior: np.ndarray,
                  opts: SamplingOptions | None = None, x0: np.ndarray | None = None,
                  rest: np.ndarray | None = None, face_oval: np.ndarray | None = None,
                  lids: np.ndarray | None = None, lid_ref: np.ndarray | None = None,
                  laplacian: sp.csr_matrix | None = None, hair_ends_y: tuple[float, float] | None = None
                  ) -> SampledColors:
    """Per-vertex colours of one LOD.

    verts (V_l, 3) world at the source pose, faces (F_l, 3), normals (V_l, 3) at the source pose,
    photo (H, W, 3) float32 [0, 1] and portrait_mask (H, W) at the camera's resolution, edges
    (E, 2), spacing (V_l,) mean edge length (m), regions/mirror/interior from the helpers above,
    x0 (V_l, 3) optional initial guess for the diffusion (a coarser LOD's colours upsampled).
    rest (V_l, 3) head-frame rest vertices and face_oval (K, 3) rest-frame face-oval landmarks:
    with ``rest``, the unseen skin/hair vertices get synthesized texture (synthesis.py).
    lids / lid_ref (V_l,) bool (eyes.eyelid_vertices): lid vertices the photo cannot see at rest
    but a blink shows are pinned to the median observed colour of the lid_ref skin above the eyes
    (never the iris or lash colours diffusion would carry in).
    laplacian: ``region_laplacian(edges, regions)`` when the caller made it already (it depends on
    the topology alone: a build makes it while the head model is fitted).
    hair_ends_y (metres, rest frame; with ``rest`` and ``face_oval``): the nose tip's and the chin's
    heights; below the first, observed vertices with the hair's colour do not feed the fill, and
    inside below_hair.skin_band they take the fill's colour too (below_hair.py).
    """
    from ..render.depth import vertex_visibility

    opts = opts or SamplingOptions()
    V = verts.shape[0]
    uv, z = camera.project(verts)
    H, W = photo.shape[:2]
    inside = np.all(np.isfinite(uv), 1) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
    to_cam = camera.center[None].astype(np.float64) - verts
    to_cam /= np.maximum(np.linalg.norm(to_cam, axis=1, keepdims=True), 1e-12)
    cos = (to_cam * normals).sum(1)
    facing = cos > opts.facing_min
    vis = np.asarray(vertex_visibility(verts, faces, camera), bool)
    uvc = np.where(np.isfinite(uv), uv, 0.0).astype(np.float32)
    in_mask = bilinear(portrait_mask.astype(np.float32), uvc) >= opts.mask_min
    observed = vis & facing & inside & in_mask

    # prefilter to the projected vertex spacing of this LOD (median over observed vertices)
    zpos = np.where(z > 0, z, np.inf)
    px_spacing = spacing * camera.fx / zpos
    sigma = opts.prefilter * float(np.median(px_spacing[observed])) if observed.any() else 0.0

    colors = np.zeros((V, 3), np.float32)
    # the photo blurred over the observed vertices' window only (the same samples as blurring it whole)
    colors[observed] = blurred_samples(photo, sigma, uvc[observed])
    known = observed.copy()

    mirrored = np.zeros(V, bool)
    if opts.use_mirror:  # unobserved vertices whose mirror was observed take its colour
        ok = (~observed) & (mirror >= 0)
        ok[ok] = observed[mirror[ok]]
        colors[ok] = colors[mirror[ok]]
        mirrored = ok
        known |= ok

    if lids is not None and lids.any():
        ref = observed & lid_ref & (regions == REGION_SKIN) if lid_ref is not None else np.zeros(V, bool)
        skin = observed & (regions == REGION_SKIN)
        lid_color = np.median(colors[ref], 0) if ref.sum() >= 3 else (
            np.median(colors[skin], 0) if skin.any() else np.array([0.6, 0.45, 0.4]))
        colors[lids] = lid_color
        observed &= ~lids
        mirrored &= ~lids
        known |= lids

    # mouth band: no hard data. Soft data instead (screened diffusion): the photo where observed,
    # the mouth colour elsewhere, so the fold's alternating seen/unseen rows blend into a smooth
    # field that stretches without stripes when the jaw opens
    inner = interior & (regions == REGION_SKIN)
    mirrored &= ~inner
    known &= ~inner

    # region fallbacks: eyes -> median observed eye colour (or a sclera tone), skin -> median skin
    fallback = np.zeros((V, 3), np.float64)
    for r, default in ((REGION_SKIN, (0.6, 0.45, 0.4)), (REGION_EYES, opts.eye_fallback)):
        sel = regions == r
        src = observed & sel
        fallback[sel] = np.median(colors[src], 0) if src.any() else default
    screen = np.full(V, opts.screening)
    fallback[inner] = np.where(observed[inner, None], colors[inner], np.asarray(opts.mouth_color))
    screen[inner] = np.where(observed[inner], opts.mouth_observed_weight, opts.mouth_weight)
    # the skin below the hair (the jaw's sides, behind the ears) is filled from skin, not from the
    # hair the photo shows over it (below_hair.py): hair-coloured samples there feed no fill, and
    # inside the skin band they, and the unseen vertices, are pulled to the skin's colour
    hairy = np.zeros(V, bool)
    band = np.zeros(V)
    bh = None
    if rest is not None and hair_ends_y is not None:
        bh = hair_coloured_below(colors, observed & (regions == REGION_SKIN) & ~inner, rest, face_oval,
                                 *hair_ends_y, float(np.median(spacing)), opts.below_hair)
        hairy = bh.excluded
        if mirrored.any():  # copies of those colours on the other side
            hairy[mirrored] = hairy[mirror[mirrored]]
        if bh.skin is not None:
            band = np.where((~known | hairy) & (regions == REGION_SKIN) & ~inner & bh.beyond_face,
                            skin_band(rest[:, 1], *hair_ends_y), 0.0)
            sel = band > 0
            fallback[sel] = bh.skin
            screen[sel] = np.maximum(screen[sel], opts.below_hair.skin_pull * band[sel])
    data = known & ~hairy
    L = region_laplacian(edges, regions) if laplacian is None else laplacian
    is_skin = _skin_test(bh, opts.below_hair.skin_max)
    # the fill works on albedo: unseen skin takes the photo's shading at its own normal (skin_shading.py)
    shade = skin_like = None
    if opts.shading.enabled and is_skin is not None:
        skin = (regions == REGION_SKIN) & ~inner
        # the photo's own samples only: a mirrored copy's colour belongs to its mirror's normal
        lit = observed & ~hairy & skin & is_skin(colors)
        model = fit_skin_shading(normals[lit], colors[lit], opts.shading)
        if model is not None:
            skin_like = is_skin
            shade = np.ones((V, 3))
            shade[skin] = model(normals[skin])
            # a mirrored copy of skin carries the other side's light: shaded for its own side (darker only)
            m = np.flatnonzero(mirrored & skin)
            m = m[is_skin(colors[m])]
            if len(m):
                colors[m] = (colors[m] * darkening(shade[m] / shade[mirror[m]])).astype(np.float32)
    filled = np.clip(shaded_diffuse(colors, data, L, fallback, screen, shade, x0=x0, skin_like=skin_like), 0.0, 1.0)
    synthesized = np.zeros(V, bool)
    if rest is not None and opts.synthesis.enabled:
        synthesized = ~known & (regions == REGION_SKIN) & ~inner
        smooth = filled
        filled = synthesize_unseen(rest, colors, filled, known & (regions == REGION_SKIN), synthesized,
                                   face_oval, float(np.median(spacing)), opts.synthesis)
        # the texture is the hair's and the forehead's: skin in the band keeps the smooth fill
        filled = (band[:, None] * smooth + (1.0 - band[:, None]) * filled).astype(np.float32)
    keep = hairy & (band == 0)
    filled[keep] = colors[keep]
    side_rows = side = None
    if opts.side_colors and is_skin is not None:   # (bh exists: so do rest and hair_ends_y)
        grazing = observed & (cos < opts.side_cos) & (regions == REGION_SKIN) & ~inner
        if not opts.side_skin:  # only samples the skin model does not explain
            g = np.flatnonzero(grazing)
            grazing[g] = ~is_skin(colors[g])
        if not opts.side_hair:  # above the nose tip, only the skin-coloured ones
            g = np.flatnonzero(grazing & (rest[:, 1] > hair_ends_y[0]))
            grazing[g] = is_skin(colors[g])
        side_rows, side = side_fill(filled, grazing, L, fallback, screen, shade, skin_like)
    return SampledColors(filled, observed, mirrored, inner, ~known, synthesized, side_rows, side)


def _skin_test(bh, skin_max: float) -> Callable[[np.ndarray], np.ndarray] | None:
    """(N, 3) colours -> (N,) bool: the colours the skin model of ``bh`` (below_hair.BelowHair)
    explains; None without a skin model."""
    if bh is None or bh.skin is None:
        return None
    return lambda c: _maha2(np.asarray(c, np.float64), bh.skin, bh.skin_icov) <= skin_max


def side_fill(colors: np.ndarray, grazing: np.ndarray, L: sp.csr_matrix, fallback: np.ndarray,
              screening: float | np.ndarray, shade: np.ndarray | None = None,
              skin_like: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The grazing vertices' colours as if unseen: (K,) int64 rows of ``grazing`` (V,) bool and their
    (K, 3) float32 harmonic fill from every other vertex's ``colors`` (V, 3) (a direct solve over
    the band alone; L, fallback and screening as ``diffuse``'s; ``shade`` and ``skin_like`` as
    ``shaded_diffuse``'s)."""
    rows = np.flatnonzero(grazing)
    if not len(rows):
        return rows.astype(np.int64), np.zeros((0, 3), np.float32)
    fill = shaded_diffuse(colors, ~grazing, L, fallback, screening, shade, skin_like=skin_like)
    return rows.astype(np.int64), np.clip(fill[rows], 0.0, 1.0).astype(np.float32)
