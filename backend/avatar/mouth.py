"""The mouth interior as skinned parts: teeth, gums, tongue and a dark oral cavity.

A head model has lips but no inside (FLAME's mouth is a hole, the stand-in's a shallow pocket), so an
opened jaw shows whatever lies behind: the back of the head from inside, or stretched lip Gaussians.
These parts fill it, placed from the model's own landmarks at rest (the inner-lip ring of
mediapipe's face mesh, through the model's landmark embedding), so they fit any identity and
topology that embeds the lips:

* teeth_upper  an arch of flat Gaussians behind the upper lip, riding the head (the upper lip's
               skinning weights without the jaw);
* teeth_lower  a slightly smaller arch behind the lower lip, on the jaw joint, its biting edge a
               rest gap below the upper row's (a relaxed jaw does not close the teeth);
* gums         a band above the upper and below the lower teeth (upper rows head, lower rows jaw);
* tongue       the upper surface of a flattened ellipsoid on the floor of the mouth, on the jaw,
               with a ``tongueOut`` shape key (SkinnedPart.shapes) that slides it out over the
               lower teeth and lip, narrowing towards the tip;
* cavity       a volume of soft, near-black Gaussians behind the lips, blended from head (roof) to
               jaw (floor), so the opening never shows the background.

Every point must lie inside the head: points within ``inside_margin`` of the skin (or outside it)
are dropped, measured against the rest mesh without its mouth band, lips and eyeballs (the lips'
inner rows fold into the opening; the parts sit behind them by construction).
Colours are defaults (teeth as video shows them in the mouth's shade, pink-red gums and tongue, a
dark cavity; the cavity's from the photo: the darkest quarter of an open mouth, half the lips' colour
behind closed ones) unless the photo shows an open mouth: then part Gaussians that are visible through the photo's inner-lip hull at the
source pose take the photo's colour when it is plausible for the part (teeth bright and pale, the
cavity dark, gums and tongue reddish), and each part's unseen Gaussians take the median of its seen
ones (keeping the default's shading pattern).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Callable

import numpy as np

from ..face.mediapipe_face import (INNER_CORNER_L, INNER_CORNER_R, INNER_LIP, LOWER_INNER_MID, OUTER_LIP,
                                   UPPER_INNER_MID)
from .attributes import frame_from_normals, matrix_to_quat
from .gaussians import GaussianSet, SkinnedPart

if TYPE_CHECKING:
    from ..head.model import HeadModel
    from ..render.camera import Camera

GLOBAL, NECK, JAW = 0, 1, 2
MOUTH_PARTS = ("teeth_upper", "teeth_lower", "gums", "tongue", "cavity")


@dataclass
class MouthOptions:
    enabled: bool = True
    # defaults as an open mouth looks on video, lit only through the opening (the inside of clip
    # d12's open-mouth frames: median (0.47, 0.27, 0.28), darkest quarter (0.2-0.4, 0.01-0.17,
    # 0.02-0.18)): teeth in the shade of the lips, a muted pink tongue, a dark red-brown cavity.
    # Teeth: the brightest 5 % of the clips' open mouths (teeth where they show) are (0.69, 0.49,
    # 0.49) on d12 and (0.50, 0.25, 0.20) on d3, shaded and tinted by the lips; lit enamel
    # (0.82, 0.77, 0.70) drew a white bar where the clips show a dim pink one (d12 mouth PSNR 13.7
    # -> 16.0 dB with this colour alone, same frames and avatar)
    teeth_color: tuple[float, float, float] = (0.69, 0.52, 0.50)
    gum_color: tuple[float, float, float] = (0.70, 0.38, 0.40)
    tongue_color: tuple[float, float, float] = (0.66, 0.38, 0.40)
    cavity_color: tuple[float, float, float] = (0.24, 0.10, 0.11)
    teeth_behind_lip_m: float = 0.004   # incisors' front face behind the inner-lip ring
    arch_depth_m: float = 0.030         # how far back the dental arch reaches
    arch_half_angle_deg: float = 75.0
    teeth_height_m: float = 0.010       # visible crown height of each row
    # the incisors' biting edges above the parting line (negative: below) at rest. Once the lips
    # part, a relaxed face shows 1-4 mm of the upper incisors under the upper lip (the incisal
    # display), the upper row overlapping the lower one in front (a 2-4 mm overbite): with the
    # upper edge 4 mm below the parting line, d12's talking and smiling frames show the upper teeth
    # under the upper lip as the clip does (1.0 mm above it, they hid behind the lip and the render
    # showed the dark cavity there: d12 mouth PSNR 18.15 -> 18.72 dB, the same avatar and driving;
    # docs/figures/eval.md, "The thirty-third session"). An open photo mouth that shows no upper teeth
    # under its upper lip (upper_teeth_shown) says this person's stay hidden (d3's dark opening,
    # 25.8 -> 15.7 dB with them shown): then ``upper_edge_hidden_m``, above the parting line, and a
    # relaxed jaw's 2-4 mm rest gap between the rows ("freeway space") shows the dark cavity
    upper_edge_m: float = -0.0040
    upper_edge_hidden_m: float = 0.0010
    lower_edge_m: float = -0.0015
    # the photo shows its upper teeth when this share of the top third of its opening (the central
    # incisors' width) looks like teeth (``_plausible``)
    teeth_shown_share: float = 0.3
    gum_height_m: float = 0.006
    tongue_rise_m: float = 0.005        # tongue back above its tip (tip at the lower biting edge)
    # share of the tongue's colour lost from its tip to its back. A closed-mouth photo shows no
    # tongue, so this default is what a driven open mouth shows: at 0.7 the tongue d12's wide
    # frames show lit (0.45, 0.25, 0.29 inside the clip's inner-lip hull where the render draws the
    # tongue) rendered at (0.31, 0.18, 0.19); d12 mouth PSNR over its 7 open frames 0.7: 18.53,
    # 0.5: 19.11, 0.4: 19.22, 0.35: 19.21, 0.2: 18.94, 0: 18.17 dB (the tip too bright then); d3's
    # four open frames (its photo's mouth is open) read the same to 0.01 dB (docs/figures/eval.md,
    # "The forty-first session")
    tongue_depth_dim: float = 0.4
    tongue_out_m: float = 0.022         # tongueOut = 1: how far the tip slides forward (the back 40 %)
    spacing_m: float = 0.0009           # Gaussian spacing on teeth, gums and tongue
    cavity_spacing_m: float = 0.003     # grid spacing of the cavity volume
    inside_margin_m: float = 0.0015     # every point at least this far inside the skin
    open_ratio: float = 0.06            # the photo's mouth counts as open above this height/width
    photo_weight: float = 1.0           # photo colour vs default for a seen, plausible Gaussian
    # the cavity's colour from the photo (cavity_from_photo; off: cavity_color): where its mouth is
    # open, the darkest quarter of the opening (the shade behind whatever the fit puts in front);
    # where it is closed, this share of the lips' colour (the same tissue, lit only through the
    # opening). A fixed default cannot serve both kinds of clip: d3's open mouth is near black
    # (0.12, 0.03, 0.02) where the render showed the default (0.24, 0.10, 0.11), d12's lit one
    # (0.39, 0.20, 0.21); the photos say which (d3's photo: darkest quarter (0.16, 0.01, 0.01);
    # d12's closed lips (0.56, 0.32, 0.30)). docs/figures/eval.md, "the cavity's colour".
    # the cavity's back wall (_throat): the view through a wide-open mouth ends on it
    throat: bool = True
    throat_below_m: float = 0.02        # it reaches this far below the cavity's floor (inside the jaw)
    throat_stretch: float = 2.0         # its discs' height over their width
    cavity_from_photo: bool = True
    cavity_lip_share: float = 0.5
    cavity_dark_quantile: float = 0.25  # the open photo's darkest share of the opening's pixels
    cavity_min_px: int = 40             # fewer pixels in the opening: its shade is not measured


@dataclass
class MouthFrame:
    """Where the mouth is at rest (metres, head-model frame): centre (3,) of the inner-lip ring,
    width between the inner corners, lip_y the parting line, front_z the ring's front,
    upper_weights (J,) the upper lip's skinning weights without the jaw (rows sum to 1)."""

    center: np.ndarray
    width: float
    lip_y: float
    front_z: float
    upper_weights: np.ndarray


def mouth_frame(model: "HeadModel", rest: np.ndarray) -> MouthFrame | None:
    """The mouth's anchors from the landmark embedding on ``rest`` (V, 3) LOD-0 vertices, or None
    when the model does not embed the inner lips."""
    lm = model.landmarks
    idx = np.array(INNER_LIP)
    if lm.face_idx.shape[0] <= idx.max() or not lm.valid[idx].all():
        return None
    pts = lm.points(rest, model.faces)
    ring = pts[idx]
    width = float(abs(pts[INNER_CORNER_L, 0] - pts[INNER_CORNER_R, 0]))
    if width <= 1e-3:
        return None
    # the upper lip's weights: interpolated at its inner midpoint, jaw share moved to its parent
    tri = model.faces[lm.face_idx[UPPER_INNER_MID]]
    w = (lm.bary[UPPER_INNER_MID][:, None] * model.weights[tri]).sum(0).astype(np.float64)
    w[NECK] += w[JAW]
    w[JAW] = 0.0
    w[3:] = 0.0  # never the eyes
    w = w / max(w.sum(), 1e-9)
    c = ring.mean(0)
    return MouthFrame(center=c.astype(np.float32), width=width, lip_y=float(c[1]),
                      front_z=float(np.median(ring[:, 2])), upper_weights=w.astype(np.float32))


def _arch(f: MouthFrame, opts: MouthOptions, scale: float, back: float, y0: float, y1: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on a U-shaped band (the dental arch) between heights y0..y1: positions (N, 3),
    outward normals (N, 3) and the arch angle (N,) in radians."""
    a = 0.5 * f.width * scale
    d = opts.arch_depth_m
    phi_max = np.radians(opts.arch_half_angle_deg)
    arc_len = 2 * phi_max * 0.5 * (a + d)  # ellipse arc, roughly
    n_arc = max(8, int(np.ceil(arc_len / opts.spacing_m)))
    n_h = max(2, int(np.ceil(abs(y1 - y0) / opts.spacing_m)))
    phi = np.linspace(-phi_max, phi_max, n_arc)
    ys = np.linspace(y0, y1, n_h)
    P, Y = np.meshgrid(phi, ys)
    P, Y = P.ravel(), Y.ravel()
    z_front = f.front_z - opts.teeth_behind_lip_m - back
    pos = np.stack([f.center[0] + a * np.sin(P), Y, z_front - d * (1 - np.cos(P))], 1)
    nrm = np.stack([np.sin(P) / a, np.zeros_like(P), np.cos(P) / d], 1)  # ellipse normal
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    return pos, nrm, P


def _flat_set(pos: np.ndarray, nrm: np.ndarray, colors: np.ndarray, size: float, opacity: float,
              flatness: float = 0.3) -> GaussianSet:
    n = len(pos)
    quats = matrix_to_quat(frame_from_normals(nrm.astype(np.float32)))
    scales = np.tile(np.array([[size, size, size * flatness]], np.float32), (n, 1))
    return GaussianSet(pos, quats, scales, np.full(n, opacity, np.float32), np.clip(colors, 0, 1))


def _teeth_shading(phi: np.ndarray, a: float, y: np.ndarray, edge_y: float, height: float,
                   base) -> np.ndarray:
    """Default teeth colours: darker gaps between teeth (every ~7 mm of arch from the midline),
    darker towards the back of the mouth and the gum line."""
    s = np.abs(phi) * a                                    # arc length from the midline (approx.)
    widths = np.array([0.0, 0.0085, 0.0150, 0.0225, 0.0295, 0.0365, 0.0460, 0.0560])
    gap = np.min(np.abs(s[:, None] - widths[None, 1:]), axis=1)
    k = 1.0 - 0.35 * np.exp(-0.5 * (gap / 0.0005) ** 2)
    k *= 1.0 - 0.45 * (np.abs(phi) / max(np.abs(phi).max(), 1e-6)) ** 1.5
    k *= 1.0 - 0.15 * np.clip(np.abs(y - edge_y) / height, 0, 1)
    return np.asarray(base, np.float32)[None] * k[:, None].astype(np.float32)


def _throat(f: MouthFrame, opts: MouthOptions, half_width: float, z: float, y_top: float, y_bot: float,
            up_w: np.ndarray, jaw_w: np.ndarray, keep: Callable[[np.ndarray], np.ndarray]
            ) -> tuple[GaussianSet, np.ndarray]:
    """The back wall of the oral cavity: a sheet of flat discs facing forward at depth ``z``, across
    the arch (``half_width`` metres either side of the mouth's centre), from ``y_top`` down to
    ``throat_below_m`` below ``y_bot``, its rows' skinning blended from the head (top) to the jaw
    (bottom) over the whole height, so an opening jaw stretches it evenly. -> (Gaussians, (N, J)
    weights). The cavity's volume stays near the rest mouth: the view through a wide-open mouth
    passed between it and the lips into the head, onto the inside of the back of the head (the
    nape's colour showed in d3's and d12's open mouths); it ends on this sheet instead."""
    cs = opts.cavity_spacing_m
    xs = np.arange(-half_width, half_width + 1e-9, cs) + f.center[0]
    ys = np.arange(y_bot - opts.throat_below_m, y_top + 1e-9, cs)
    X, Y = (v.ravel() for v in np.meshgrid(xs, ys, indexing="ij"))
    pos = np.stack([X, Y, np.full_like(X, z)], 1)
    pos = pos[keep(pos)]
    t = np.clip((y_top - pos[:, 1]) / max(y_top - y_bot, 1e-6), 0.0, 1.0)[:, None]
    w = ((1 - t) * up_w[None] + t * jaw_w[None]).astype(np.float32)
    n = len(pos)
    # flat, forward-facing, twice as tall as wide: the jaw stretches the rows apart
    scales = np.tile([0.75 * cs, opts.throat_stretch * 0.75 * cs, 0.2 * cs], (n, 1)).astype(np.float32)
    colors = np.tile(opts.cavity_color, (n, 1))   # the cavity's (the photo's shade, color_mouth_from_photo)
    return GaussianSet(pos, np.tile([1.0, 0, 0, 0], (n, 1)), scales, np.full(n, 0.98, np.float32), colors), w


def _inside(points: np.ndarray, surf: np.ndarray, normals: np.ndarray, margin: float) -> np.ndarray:
    """(N,) bool: points at least ``margin`` behind the nearest surface vertex along its normal."""
    from scipy.spatial import cKDTree

    if len(points) == 0:
        return np.zeros(0, bool)
    _, idx = cKDTree(surf).query(points, k=4)
    sd = np.einsum("nkc,nkc->nk", points[:, None] - surf[idx], normals[idx])  # signed, + outside
    return np.all(sd < -margin, axis=1)


def build_mouth_parts(model: "HeadModel", rest: np.ndarray, skin: np.ndarray,
                      opts: MouthOptions | None = None) -> list[SkinnedPart]:
    """The mouth interior parts at rest with default colours (empty without lip landmarks).

    rest (V, 3): the identity's LOD-0 rest vertices (neutral expression, zero pose); skin (V,) bool:
    the vertices that bound the head from outside (not the mouth band, not the eyeballs)."""
    from .attributes import vertex_normals

    opts = opts or MouthOptions()
    f = mouth_frame(model, rest) if opts.enabled else None
    if f is None:
        return []
    J = model.weights.shape[1]
    nrm_all = vertex_normals(rest.astype(np.float32), model.faces)
    # the lips themselves do not bound the parts: their inner rows fold into the opening (normals
    # pointing up/down into it) and the parts sit right behind them by construction
    lips = ((np.abs(rest[:, 0] - f.center[0]) < 0.6 * f.width) & (np.abs(rest[:, 1] - f.lip_y) < 0.012)
            & (rest[:, 2] > f.front_z - 0.012))
    surf, surf_n = rest[skin & ~lips], nrm_all[skin & ~lips]
    h, g, sp = opts.teeth_height_m, opts.gum_height_m, opts.spacing_m
    size = 0.6 * sp
    jaw_w = np.eye(J, dtype=np.float32)[JAW]
    up_w = f.upper_weights[:J]
    parts: list[SkinnedPart] = []

    def keep(pos):
        return _inside(pos, surf, surf_n, opts.inside_margin_m)

    # teeth: upper crowns from their biting edge (just above the parting line) up; lower ones
    # inside them, from theirs downwards: the rest gap between the edges shows the cavity
    a_up, a_lo = 0.5 * f.width * 1.0, 0.5 * f.width * 0.94
    up_edge, lo_edge = f.lip_y + opts.upper_edge_m, f.lip_y + opts.lower_edge_m
    pos, nrm, phi = _arch(f, opts, 1.0, 0.0, up_edge, up_edge + h)
    col = _teeth_shading(phi, a_up, pos[:, 1], up_edge, h, opts.teeth_color)
    m = keep(pos)
    parts.append(SkinnedPart("teeth_upper", _flat_set(pos[m], nrm[m], col[m], size, 0.98),
                             np.tile(up_w, (int(m.sum()), 1))))
    pos, nrm, phi = _arch(f, opts, 0.94, 0.0015, lo_edge, lo_edge - h)
    col = _teeth_shading(phi, a_lo, pos[:, 1], lo_edge, h, opts.teeth_color)
    m = keep(pos)
    parts.append(SkinnedPart("teeth_lower", _flat_set(pos[m], nrm[m], col[m], size, 0.98),
                             np.tile(jaw_w, (int(m.sum()), 1))))
    # gums: above the upper and below the lower crowns, a little in front of the teeth plane
    # (gums, tongue and cavity move with the rows' edges: ``up_top``/``lo_bot`` are where they
    # met the gums when the edges were 0.8 / 0.4 mm below the parting line)
    up_top, lo_bot = up_edge + 0.0008 + h, lo_edge + 0.0004 - h
    gu, gnu, _ = _arch(f, opts, 1.0, -0.0006, up_top, up_top + g)
    gl, gnl, _ = _arch(f, opts, 0.94, 0.0009, lo_bot, lo_bot - g)
    pos, nrm = np.concatenate([gu, gl]), np.concatenate([gnu, gnl])
    w = np.concatenate([np.tile(up_w, (len(gu), 1)), np.tile(jaw_w, (len(gl), 1))])
    m = keep(pos)
    parts.append(SkinnedPart("gums", _flat_set(pos[m], nrm[m], np.tile(opts.gum_color, (int(m.sum()), 1)),
                                               size, 0.98), w[m]))
    # tongue: upper half of a flattened ellipsoid on the floor of the mouth, behind the lower teeth
    # as a relaxed tongue lies: its tip right behind the lower incisors at their biting edge, its
    # back rising towards the palate, so an opened jaw shows it filling the bottom of the opening
    # (lower and further back, the cavity in front hid it: d12's wide "O" rendered black where
    # the clip shows a pink tongue)
    r = np.array([0.40 * f.width, opts.tongue_rise_m, 0.018])
    c = np.array([f.center[0], lo_edge + 0.0004 - 0.3 * h, f.front_z - opts.teeth_behind_lip_m - 0.0025 - r[2]])
    n_t = int(np.ceil(2 * np.pi * r[0] * r[2] / sp ** 2))
    k = np.arange(n_t) + 0.5
    cos_t = 1 - k / n_t                                  # upper hemisphere, even in area
    th = np.pi * (1 + 5 ** 0.5) * k
    s = np.sqrt(1 - cos_t ** 2)
    unit = np.stack([s * np.cos(th), cos_t, s * np.sin(th)], 1)
    pos = c + unit * r
    nrm = unit / r
    nrm /= np.linalg.norm(nrm, axis=1, keepdims=True)
    # a little darker at the sides, and towards the back: the mouth is lit only through the
    # opening, so a real tongue dims with depth (d3's open mouth is near-black behind the lips)
    depth = np.clip((c[2] + r[2] - pos[:, 2]) / (2 * r[2]), 0.0, 1.0)
    shade = ((0.8 + 0.2 * unit[:, 1]) * (1.0 - opts.tongue_depth_dim * depth))[:, None].astype(np.float32)
    m = keep(pos)
    parts.append(SkinnedPart("tongue", _flat_set(pos[m], nrm[m], shade[m] * np.asarray(opts.tongue_color),
                                                 size * 1.3, 0.98), np.tile(jaw_w, (int(m.sum()), 1)),
                             {"tongueOut": _tongue_out(pos[m], c, r, f, h, opts)}))
    # cavity: a grid volume behind the lips and inside the arch, soft round Gaussians
    cs = opts.cavity_spacing_m
    a = 0.5 * f.width * 1.05
    z_front = f.front_z - 0.002
    z_back = z_front - opts.teeth_behind_lip_m - opts.arch_depth_m - 0.012
    y_top, y_bot = up_top + g + 0.004, lo_bot - g - 0.006
    xs = np.arange(-a, a + 1e-9, cs) + f.center[0]
    ys = np.arange(y_bot, y_top + 1e-9, cs)
    zs = np.arange(z_back, z_front + 1e-9, cs)
    X, Y, Z = (v.ravel() for v in np.meshgrid(xs, ys, zs, indexing="ij"))
    pos = np.stack([X, Y, Z], 1)
    # behind the lips and inside the dental arch's curve (which bends back towards the cheeks)
    u = np.clip((X - f.center[0]) / a, -1.0, 1.0)
    z_arch = f.front_z - opts.arch_depth_m * (1 - np.sqrt(1 - u * u))
    # behind the teeth (never in front of them: seen through the lips they must stay bright)
    inside_arch = (np.abs(X - f.center[0]) <= a) & (Z <= z_arch - opts.teeth_behind_lip_m - 0.002 - 0.75 * cs)
    front_ok = Z <= z_front - 0.25 * np.abs(Y - f.lip_y)
    # never in front of the tongue nor inside it (soft Gaussians there poke through its surface):
    # seen from the front, the tongue is what shows; only those behind its back stay
    q = (pos - c) / (r + 0.5 * cs)
    disc = q[:, 0] ** 2 + np.maximum(q[:, 1], 0.0) ** 2
    back_z = c[2] - r[2] * np.sqrt(np.clip(1.0 - disc, 0.0, 1.0))
    at_tongue = (disc <= 1.0) & (q[:, 1] >= -1.0) & (Z > back_z - 0.5 * cs)
    m = inside_arch & front_ok & ~at_tongue
    pos = pos[m]
    m = keep(pos)
    pos = pos[m]
    t = np.clip((f.lip_y + 0.004 - pos[:, 1]) / 0.008, 0.0, 1.0)
    t = t * t * (3 - 2 * t)                              # smoothstep: roof -> head, floor -> jaw
    w = (1 - t)[:, None] * up_w[None] + t[:, None] * jaw_w[None]
    n = len(pos)
    cav = GaussianSet(pos, np.tile([1.0, 0, 0, 0], (n, 1)), np.full((n, 3), 0.75 * cs, np.float32),
                      np.full(n, 0.9, np.float32), np.tile(opts.cavity_color, (n, 1)))
    if opts.throat:
        throat, tw = _throat(f, opts, a, z_back - 0.5 * cs, y_top, y_bot, up_w, jaw_w, keep)
        cav = GaussianSet.concat([cav, throat])
        w = np.concatenate([w, tw])
    parts.append(SkinnedPart("cavity", cav, w.astype(np.float32)))
    return [p for p in parts if len(p)]


def _tongue_out(pos: np.ndarray, c: np.ndarray, r: np.ndarray, f: MouthFrame, h: float,
                opts: MouthOptions) -> np.ndarray:
    """(N, 3) float32 metres: the tongue's ``tongueOut`` shape key for its rest points ``pos``
    (ellipsoid centre ``c``, radii ``r``). The tongue slides forward, its tip most (stretching it
    to ``tongue_out_m``, the back 40 % of that), the tip rising from behind the lower incisors to
    just under the parting line so it passes over the lower teeth onto the lower lip (which the head's
    own tongueOut key pushes down 3 mm), and it narrows by a quarter towards the tip."""
    tip = np.clip((pos[:, 2] - (c[2] - r[2])) / (2 * r[2]), 0.0, 1.0)       # 0 back .. 1 tip
    d = np.zeros_like(pos, dtype=np.float64)
    d[:, 2] = opts.tongue_out_m * (0.4 + 0.6 * tip)
    d[:, 1] = ((f.lip_y - 0.0005) - c[1]) * tip * (1.0 - 0.5 * np.clip((pos[:, 1] - c[1]) / r[1], 0, 1))
    d[:, 0] = -0.25 * (pos[:, 0] - c[0]) * tip
    return d.astype(np.float32)


def _plausible(name: str, rgb: np.ndarray) -> np.ndarray:
    """(N,) bool: photo colours that can belong to the part (the fit's opening may not match the
    photo's exactly, so a tooth-white sample must not paint the cavity, nor lip red the teeth)."""
    luma = rgb @ np.array([0.299, 0.587, 0.114])
    sat = rgb.max(1) - rgb.min(1)
    if name.startswith("teeth"):
        return (luma > 0.45) & (sat < 0.35)
    if name == "cavity":  # dark, neutral to reddish (never a coloured background)
        return (luma < 0.22) & (sat < 0.3) & (rgb[:, 2] <= rgb[:, 0] + 0.05) & (rgb[:, 1] <= rgb[:, 0] + 0.05)
    return (rgb[:, 0] > 1.3 * rgb[:, 1]) & (luma > 0.2) & (luma < 0.8)  # gums, tongue: clearly red


#: the most saturated colour (max - min channel) a mouth part may take from the refinement unless it
#: had one as saturated before: the photo-sampling rule's limits (``_plausible``); gums and the tongue
#: are red, so theirs is looser
REFINED_SATURATION = {"teeth_upper": 0.35, "teeth_lower": 0.35, "gums": 0.6, "tongue": 0.6, "cavity": 0.3}


def plausible_refined_colors(name: str, before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """(N, 3) float32: a mouth part's colours after the refinement, except those more saturated than
    the part may be (REFINED_SATURATION, or the colour's own saturation before), which keep their
    colour from before. The refinement fits what the source view shows of the interior through the
    lips' corners and between the teeth; a Gaussian seen only that way can be pushed to whatever
    makes up for the layers in front of it (orange, white and red cavity at the corners of the
    astronaut's smile), which an open mouth then shows. The rest keep the refined colour: the source
    view's own mouth is painted on them. before / after (N, 3) float [0, 1]; a part not in
    MOUTH_PARTS keeps ``after``."""
    after = np.asarray(after, np.float32)
    if name not in MOUTH_PARTS:
        return after.copy()
    before = np.asarray(before, np.float32)
    sat = lambda c: c.max(1) - c.min(1)  # noqa: E731
    keep = sat(after) <= np.maximum(REFINED_SATURATION[name], sat(before))
    return np.where(keep[:, None], after, before).astype(np.float32)


def _polygon_pixels(photo: np.ndarray, *polys: np.ndarray) -> list[np.ndarray]:
    """[(H, W) bool per polygon]: the pixels of ``photo`` whose centres lie inside each ``poly``
    (K, 2) px (``imageops.points_in_polygons``, which tests only the polygons' bounding box)."""
    from .imageops import points_in_polygons

    H, W = photo.shape[:2]
    yy, xx = np.mgrid[0:H, 0:W]
    centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    return [m.reshape(H, W) for m in points_in_polygons(centres, list(polys))]


def lip_color(photo: np.ndarray, landmarks_px: np.ndarray) -> np.ndarray | None:
    """(3,) float32: the median colour of the photo's lips (inside the outer lip ring, outside the
    inner one; photo (H, W, 3) float [0, 1], landmarks_px (478, 2) in its pixels), or None when
    the ring covers no pixel."""
    p = np.asarray(landmarks_px, np.float64)[:, :2]
    outer, inner = _polygon_pixels(photo, p[list(OUTER_LIP)], p[list(INNER_LIP)])
    ring = outer & ~inner
    if not ring.any():
        return None
    return np.median(photo[ring], 0).astype(np.float32)


def cavity_color_from_photo(photo: np.ndarray, landmarks_px: np.ndarray, opts: MouthOptions | None = None
                            ) -> np.ndarray | None:
    """(3,) float32 colour of the oral cavity as the photo predicts it, or None (keep the default).

    An open photo mouth (mouth_open_ratio >= opts.open_ratio) with at least ``cavity_min_px``
    pixels in its inner-lip hull (shrunk 15 % towards its centre, away from the lips): the mean of
    the darkest ``cavity_dark_quantile`` of them by luma, when plausible for a cavity (dark, not a
    coloured background). Otherwise: ``cavity_lip_share`` times the lips' median colour: the
    inside is the lips' tissue lit only through the opening, so the photo's light and the person's
    colouring carry over. An open mouth whose darkest pixels are no cavity's (teeth or tongue fill
    the opening) is taken as a closed one. None: no lip pixels either."""
    opts = opts or MouthOptions()
    if mouth_open_ratio(landmarks_px) >= opts.open_ratio:
        poly = opening_polygon(landmarks_px)
        rgb = photo[_polygon_pixels(photo, poly)[0]].astype(np.float64)
        if len(rgb) >= opts.cavity_min_px:
            luma = rgb @ np.array([0.299, 0.587, 0.114])
            dark = rgb[luma <= np.quantile(luma, opts.cavity_dark_quantile)].mean(0)
            if _plausible("cavity", dark[None])[0]:
                return dark.astype(np.float32)
    lips = lip_color(photo, landmarks_px)
    return None if lips is None else np.clip(opts.cavity_lip_share * lips, 0, 1).astype(np.float32)


def inner_lip_polygon(landmarks_px: np.ndarray) -> np.ndarray:
    """(20, 2) the photo's inner-lip ring in pixels from mediapipe's 478 landmarks."""
    return np.asarray(landmarks_px, np.float64)[list(INNER_LIP)]


def opening_polygon(landmarks_px: np.ndarray) -> np.ndarray:
    """(20, 2) pixels: the inner-lip ring shrunk 15 % towards its centre, the opening away from the
    lips (the fit's opening may not match the photo's exactly)."""
    poly = inner_lip_polygon(landmarks_px)
    return poly.mean(0) + 0.85 * (poly - poly.mean(0))


def mouth_open_ratio(landmarks_px: np.ndarray) -> float:
    """Inner-lip opening height / inner mouth width in the photo (0 for a closed mouth)."""
    p = np.asarray(landmarks_px, np.float64)
    width = np.linalg.norm(p[INNER_CORNER_L] - p[INNER_CORNER_R])
    return float(np.linalg.norm(p[LOWER_INNER_MID] - p[UPPER_INNER_MID]) / max(width, 1e-6))


def upper_teeth_shown(photo: np.ndarray, landmarks_px: np.ndarray, opts: MouthOptions | None = None
                      ) -> bool | None:
    """Whether the photo shows the upper teeth under the upper lip: True / False for an open mouth
    (mouth_open_ratio >= opts.open_ratio) with at least ``cavity_min_px`` pixels in the top third
    of its opening (inner-lip hull shrunk 15 % towards its centre, the middle 70 % of its width: the
    incisors), by whether ``teeth_shown_share`` of them look like teeth; None when the photo cannot
    tell (a closed mouth, too few pixels). photo (H, W, 3) float [0, 1], landmarks_px (478, 2)."""
    opts = opts or MouthOptions()
    if mouth_open_ratio(landmarks_px) < opts.open_ratio:
        return None
    p = np.asarray(landmarks_px, np.float64)[:, :2]
    inside = _polygon_pixels(photo, opening_polygon(p))[0]
    top, bottom = p[UPPER_INNER_MID, 1], p[LOWER_INNER_MID, 1]
    cx = 0.5 * (p[INNER_CORNER_L, 0] + p[INNER_CORNER_R, 0])
    half = 0.5 * abs(p[INNER_CORNER_L, 0] - p[INNER_CORNER_R, 0])
    yy, xx = np.mgrid[0:photo.shape[0], 0:photo.shape[1]] + 0.5
    band = inside & (yy < top + (bottom - top) / 3.0) & (np.abs(xx - cx) < 0.7 * half)
    if band.sum() < opts.cavity_min_px:
        return None
    return bool(_plausible("teeth_upper", photo[band].astype(np.float64)).mean() >= opts.teeth_shown_share)


def teeth_options_from_photo(photo: np.ndarray | None, landmarks_px: np.ndarray | None,
                             opts: MouthOptions | None = None) -> MouthOptions:
    """``opts`` with the upper row's biting edge the photo calls for: ``upper_edge_hidden_m`` when
    its open mouth shows no upper teeth (upper_teeth_shown False), else ``upper_edge_m``."""
    opts = opts or MouthOptions()
    if photo is None or landmarks_px is None or upper_teeth_shown(photo, landmarks_px, opts) is not False:
        return opts
    return replace(opts, upper_edge_m=opts.upper_edge_hidden_m)


def color_mouth_from_photo(parts: list[SkinnedPart], posed_means: list[np.ndarray], camera: "Camera",
                           photo: np.ndarray, landmarks_px: np.ndarray, opts: MouthOptions | None = None
                           ) -> dict[str, int]:
    """Recolour mouth parts in place from the photo; returns seen counts (Gaussians that took
    their own pixel's colour). The cavity takes cavity_color_from_photo (open or closed mouth,
    unless ``opts.cavity_from_photo`` is off); the other parts change only where the mouth is open.

    posed_means: each part's means at the source pose (world, metres); photo (H, W, 3) float32 [0, 1]
    at the camera's resolution; landmarks_px (478, 2) in the same pixels. A Gaussian is seen when it
    projects inside the inner-lip hull (shrunk 15% towards its centre, away from the lips) and is
    the nearest of all mouth Gaussians in its 2-pixel cell (within 2 mm).
    """
    from skimage.measure import points_in_poly

    from .imageops import blurred_samples

    opts = opts or MouthOptions()
    seen_counts = {p.name: 0 for p in parts}
    cavity = cavity_color_from_photo(photo, landmarks_px, opts) if opts.cavity_from_photo else None
    for part in parts:
        if part.name == "cavity" and cavity is not None:
            part.gaussians.colors[:] = cavity   # (seen cavity Gaussians take their own pixel below)
    if not parts or mouth_open_ratio(landmarks_px) < opts.open_ratio:
        return seen_counts
    poly = opening_polygon(landmarks_px)
    all_means = np.concatenate(posed_means)
    uv, z = camera.project(all_means)
    ok = np.all(np.isfinite(uv), 1) & (z > 0)
    inside = ok & points_in_poly(np.where(ok[:, None], uv, -1.0), poly)
    H, W = photo.shape[:2]
    cell = np.where(inside[:, None], np.floor(uv / 2.0), 0).astype(np.int64)
    key = np.clip(cell[:, 1], 0, H) * (W + 1) + np.clip(cell[:, 0], 0, W)
    zmin = np.full(key.max() + 1 if len(key) else 1, np.inf)
    np.minimum.at(zmin, key[inside], z[inside])
    seen = inside & (z <= zmin[key] + 0.002)
    i0 = 0
    for part, means in zip(parts, posed_means):
        sl = slice(i0, i0 + len(means))
        i0 += len(means)
        s = seen[sl]
        if not s.any():
            continue
        rgb = blurred_samples(photo, 0.7, uv[sl][s].astype(np.float32)).astype(np.float32)
        good = _plausible(part.name, rgb)
        if not good.any():
            continue
        idx = np.flatnonzero(s)[good]
        cols = part.gaussians.colors
        base = np.asarray(np.median(cols, 0), np.float32)
        med = np.median(rgb[good], 0).astype(np.float32)
        # unseen Gaussians: the default pattern moved halfway towards the photo's median colour
        cols[:] = np.clip(cols + 0.5 * (med - base)[None], 0, 1)
        w = opts.photo_weight
        cols[idx] = np.clip(w * rgb[good] + (1 - w) * cols[idx], 0, 1)
        seen_counts[part.name] = int(len(idx))
    return seen_counts
