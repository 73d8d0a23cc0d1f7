"""Eyeballs as skinned parts (sclera, iris, pupil on the eye joints) and the eyelids' skin.

A head model's eyeballs take the photo's colours only where the photo saw them, so an eye that
turns shows smeared sclera where the iris should be. The eyeball parts are spheres of flat Gaussians
around the eye joints, just outside the model's own eyeballs (which they hide), bound to eye_L /
eye_R alone, so they turn with the eye bones. Each is coloured as an eye: a dark pupil, an iris
(the photo's, sampled inside mediapipe's iris circle, landmarks 468-477, where the lids leave it
visible) with a darker limbal ring, and a sclera (the photo's white of the eye, or a default).
The iris sits where the model's iris landmarks are at rest (+Z when the model does not embed them).

Eyelids: the head-mesh vertices that lie over the eyeball inside the lid contour at rest (the
stand-in's eye opening, pushed behind the eyeball surface) are never seen by the photo, yet a blink
brings them in front of the eye. ``eyelid_vertices`` finds them and ``lid_reference_vertices``
the upper-lid skin whose photo colour they take (sampling.sample_colors), so a blink shows skin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .attributes import frame_from_normals, matrix_to_quat
from .gaussians import GaussianSet, SkinnedPart

if TYPE_CHECKING:
    from ..head.model import HeadModel

EYE_JOINTS = {"eye_L": 3, "eye_R": 4}
# mediapipe: iris centre then 4 contour points, and the lid contour loop, per subject side
IRIS = {"eye_L": (473, 474, 475, 476, 477), "eye_R": (468, 469, 470, 471, 472)}
LID_LOOP = {"eye_L": (263, 466, 388, 387, 386, 385, 384, 398, 362, 382, 381, 380, 374, 373, 390, 249),
            "eye_R": (33, 246, 161, 160, 159, 158, 157, 173, 133, 155, 154, 153, 145, 144, 163, 7)}


@dataclass
class EyeOptions:
    enabled: bool = True
    sclera_color: tuple[float, float, float] = (0.86, 0.83, 0.78)
    iris_color: tuple[float, float, float] = (0.33, 0.22, 0.13)
    pupil_color: tuple[float, float, float] = (0.02, 0.02, 0.02)
    points: int = 1600              # Gaussians per eyeball (on its front cap)
    cap_deg: float = 115.0          # the cap around the iris axis that gets Gaussians
    radius_pad_m: float = 0.0002    # outside the model's eyeball surface (hides it)
    iris_radius_m: float = 0.0059   # when the model does not embed the iris contour
    pupil_fraction: float = 0.38    # pupil radius / iris radius
    lid_margin_m: float = 0.0003    # lid vertices: within the eyeball radius plus this
    lid_grow: float = 2.5           # in-plane enlargement of the hidden lid Gaussians (blink cover)
    max_lid_stretch: float = 1.6    # cap on the expression-stretch enlargement above the eyes (more
                                    # closes a blink better but blurs the open lids: 1.6 costs 0.1 dB)
    photo_weight: float = 0.85      # photo over the drawn eye where the photo sees the eyeball
    sclera_share: float = 0.35      # a shaded eye's sclera (no pixel above luma 0.35): the brightest
                                    # this share of the unsaturated pixels in the opening outside the iris


@dataclass
class EyeGeometry:
    """One eyeball at rest: centre (3,), radius (m), iris axis (3,) unit, iris half-angle (rad)."""

    center: np.ndarray
    radius: float
    axis: np.ndarray
    iris_angle: float


def eye_geometry(model: "HeadModel", rest: np.ndarray, name: str, opts: EyeOptions) -> EyeGeometry | None:
    """The eyeball of joint ``name`` from the model's eye-skinned vertices on ``rest`` (V, 3), or
    None when the model has no eyeball vertices for it."""
    j = EYE_JOINTS[name]
    sel = model.weights[:, j] > 0.5
    if sel.sum() < 8:
        return None
    center = model.rest_joints(rest)[j].astype(np.float64)
    radius = float(np.median(np.linalg.norm(rest[sel] - center, axis=1)))
    lm = model.landmarks
    idx = np.array(IRIS[name])
    if lm.face_idx.shape[0] > idx.max() and lm.valid[idx].all():
        pts = lm.points(rest, model.faces)[idx].astype(np.float64)
        axis = pts[0] - center
        axis /= max(np.linalg.norm(axis), 1e-9)
        d = pts[1:] - center
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        iris = float(np.mean(np.arccos(np.clip(d @ axis, -1, 1))))
    else:
        axis = np.array([0.0, 0.0, 1.0])
        iris = float(np.arcsin(min(opts.iris_radius_m / radius, 0.9)))
    return EyeGeometry(center, radius, axis, iris)


def _cap_points(n: int, cap: float) -> np.ndarray:
    """(n, 3) unit vectors evenly spread (Fibonacci) over the cap of half-angle ``cap`` around +Z."""
    k = np.arange(n) + 0.5
    cos_t = 1 - k / n * (1 - np.cos(cap))
    th = np.pi * (1 + 5 ** 0.5) * k
    s = np.sqrt(1 - cos_t ** 2)
    return np.stack([s * np.cos(th), s * np.sin(th), cos_t], 1)


def _rotation_to(axis: np.ndarray) -> np.ndarray:
    """(3, 3) a rotation taking +Z to ``axis`` (unit)."""
    z = np.array([0.0, 0.0, 1.0])
    v = np.cross(z, axis)
    c = float(z @ axis)
    if np.linalg.norm(v) < 1e-9:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


def eyeball_part(name: str, geo: EyeGeometry, colors: dict[str, np.ndarray], opts: EyeOptions,
                 n_joints: int = 5) -> SkinnedPart:
    """The eyeball of ``name`` at rest: sclera, iris (darker limbal ring) and pupil by the angle
    from the iris axis; colors {"sclera", "iris", "pupil"} (3,) RGB."""
    unit = _cap_points(opts.points, np.radians(opts.cap_deg)) @ _rotation_to(geo.axis).T
    r = geo.radius + opts.radius_pad_m
    pos = geo.center + unit * r
    ang = np.arccos(np.clip(unit @ geo.axis, -1, 1))
    t = ang / geo.iris_angle                                 # 1 at the limbus
    col = np.tile(np.asarray(colors["sclera"], np.float64), (len(pos), 1))
    # sclera a little darker towards the corners (shadowed by the lids)
    col *= (1.0 - 0.25 * np.clip((t - 1.0) / 3.0, 0, 1))[:, None]
    iris = t < 1.0
    ring = np.clip((t - 0.75) / 0.25, 0, 1)                  # limbal darkening
    col[iris] = np.asarray(colors["iris"]) * (1.0 - 0.45 * ring[iris])[:, None]
    col[t < opts.pupil_fraction] = colors["pupil"]
    spacing = np.sqrt(2 * np.pi * r * r * (1 - np.cos(np.radians(opts.cap_deg))) / opts.points)
    quats = matrix_to_quat(frame_from_normals(unit.astype(np.float32)))
    s = 0.6 * spacing
    gs = GaussianSet(pos, quats, np.tile([[s, s, 0.2 * s]], (len(pos), 1)), np.full(len(pos), 0.99),
                     np.clip(col, 0, 1))
    w = np.zeros((len(pos), n_joints), np.float32)
    w[:, EYE_JOINTS[name]] = 1.0
    return SkinnedPart(name, gs, w)


def photo_eye_colors(photo: np.ndarray, landmarks_px: np.ndarray, name: str, opts: EyeOptions
                     ) -> dict[str, np.ndarray]:
    """{"sclera", "iris", "pupil"} colours of one eye from the photo (defaults where it does not
    show them): iris = median inside mediapipe's iris circle between 35% and 95% of its radius and
    inside the lid contour; sclera = median inside the lid contour outside 125% of it."""
    from skimage.measure import points_in_poly

    out = {"sclera": np.asarray(opts.sclera_color, np.float32), "iris": np.asarray(opts.iris_color, np.float32),
           "pupil": np.asarray(opts.pupil_color, np.float32)}
    lm = np.asarray(landmarks_px, np.float64)
    if lm.shape[0] < 478 or not np.all(np.isfinite(lm[list(IRIS[name]) + list(LID_LOOP[name])])):
        return out
    c = lm[IRIS[name][0]]
    R = float(np.mean(np.linalg.norm(lm[list(IRIS[name][1:])] - c, axis=1)))
    loop = lm[list(LID_LOOP[name])]
    H, W = photo.shape[:2]
    x0, y0 = np.floor(loop.min(0)).astype(int)
    x1, y1 = np.ceil(loop.max(0)).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, W - 1), min(y1, H - 1)
    if x1 <= x0 or y1 <= y0 or R < 1.0:
        return out
    yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
    pix = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], 1)
    inside = points_in_poly(pix, loop)
    d = np.linalg.norm(pix - c, axis=1) / R
    rgb = photo[yy.ravel(), xx.ravel()].astype(np.float32)
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    sat = rgb.max(1) - rgb.min(1)
    iris = inside & (d > 0.35) & (d < 0.95) & (luma < 0.65)
    if iris.sum() >= 6:
        out["iris"] = np.median(rgb[iris], 0)
    white = inside & (d > 1.25) & (sat < 0.3)
    sclera = white & (luma > 0.35)
    if sclera.sum() >= 6:
        out["sclera"] = np.median(rgb[sclera], 0)
    elif white.sum() >= 6:
        # A shaded eye (d3's frame 0, the white of the eye at luma 0.3) has nothing above that
        # floor; its white is then the brightest unsaturated share of the opening (lashes and the
        # lid's shadow are darker). The default white, three times the photo's there, showed as a
        # crescent beside every turned iris.
        bright = white & (luma >= np.percentile(luma[white], 100.0 * (1.0 - opts.sclera_share)))
        if bright.sum() >= 6:
            out["sclera"] = np.median(rgb[bright], 0)
    return out


def color_eyes_from_photo(parts: list[SkinnedPart], posed_means: list[np.ndarray], posed_centers: list[np.ndarray],
                          camera, photo: np.ndarray, landmarks_px: np.ndarray, weight: float = 0.85,
                          skin_depth: np.ndarray | None = None) -> dict[str, int]:
    """Give the eyeball Gaussians the photo sees at the source pose the photo's colour (in place).

    posed_means: each part's (N, 3) means at the source pose; posed_centers: each eyeball's (3,)
    centre there. Seen = projected inside the photo's lid contour (shrunk 10% towards its centre)
    and on the camera's side of the eyeball (nearer than the centre by a third of the radius).
    ``weight`` blends photo over the drawn eye. Returns seen counts per part.

    skin_depth: (H, W) float32 camera z (metres, inf = empty) of the head's skin (the mesh without
    its eyeballs) at the source pose. With it, the eyeball Gaussians on the camera's side that no
    skin hides but that project outside the photo's lid contour take the photo's colour outright:
    where the fitted head's eye opening is wider than the photo's eye (the stand-in's lower lid
    below the person's), the render showed a white crescent of drawn sclera where the photo shows
    lid skin and lashes (d3's frame 0, at the photo's own view). Gaussians under the skin keep the
    drawn sclera, so a lid that opens further still uncovers a white eye."""
    from skimage.measure import points_in_poly

    from .imageops import blurred_samples

    lm = np.asarray(landmarks_px, np.float64)
    out = {}
    for part, means, c in zip(parts, posed_means, posed_centers):
        loop = lm[list(LID_LOOP[part.name])]
        poly = loop.mean(0) + 0.9 * (loop - loop.mean(0))
        uv, z = camera.project(means)
        _, zc = camera.project(np.asarray(c, np.float32)[None])
        r = float(np.median(np.linalg.norm(means - c, axis=1)))
        ok = np.all(np.isfinite(uv), 1) & (z < zc[0] - r / 3)
        seen = ok & points_in_poly(np.where(ok[:, None], uv, -1.0), poly)
        cols = part.gaussians.colors
        if seen.any():
            rgb = blurred_samples(photo, 0.6, uv[seen].astype(np.float32))
            cols[seen] = np.clip(weight * rgb + (1 - weight) * cols[seen], 0, 1)
        n_seen = int(seen.sum())
        if skin_depth is not None:
            H, W = skin_depth.shape
            px = np.clip(np.floor(np.nan_to_num(uv[:, 0], nan=-1.0)), -1, W).astype(np.int64)
            py = np.clip(np.floor(np.nan_to_num(uv[:, 1], nan=-1.0)), -1, H).astype(np.int64)
            inb = ok & (px >= 0) & (px < W) & (py >= 0) & (py < H)
            bare = np.zeros(len(means), bool)
            bare[inb] = skin_depth[py[inb], px[inb]] > z[inb]  # no skin in front at the source view
            bare &= ~seen
            if bare.any():
                cols[bare] = np.clip(blurred_samples(photo, 0.6, uv[bare].astype(np.float32)), 0, 1)
                n_seen += int(bare.sum())
        out[part.name] = n_seen
    return out


def build_eye_parts(model: "HeadModel", rest: np.ndarray, photo: np.ndarray | None = None,
                    landmarks_px: np.ndarray | None = None, opts: EyeOptions | None = None
                    ) -> list[SkinnedPart]:
    """Both eyeball parts at rest (none for a model without eyeball vertices); colours from the
    photo when ``photo`` (H, W, 3) float32 and ``landmarks_px`` (478, 2) are given."""
    opts = opts or EyeOptions()
    if not opts.enabled:
        return []
    parts = []
    for name in ("eye_L", "eye_R"):
        geo = eye_geometry(model, rest, name, opts)
        if geo is None:
            continue
        if photo is not None and landmarks_px is not None:
            colors = photo_eye_colors(photo, landmarks_px, name, opts)
        else:
            colors = {"sclera": np.asarray(opts.sclera_color), "iris": np.asarray(opts.iris_color),
                      "pupil": np.asarray(opts.pupil_color)}
        parts.append(eyeball_part(name, geo, colors, opts, model.weights.shape[1]))
    return parts


def expression_stretch(model: "HeadModel", rest: np.ndarray, upsample, edges: np.ndarray,
                       coef: float = 1.0) -> np.ndarray:
    """(V_l,) >= 1: the largest stretch of any edge at each vertex over the model's expression
    components, each applied alone at +``coef`` (a blink pulls the upper lid's rows apart as it
    slides over the eye; posing keeps Gaussian sizes, so the rows would gap).

    rest (V_l, 3) the LOD's rest vertices (LOD-0 first); edges (E, 2) of the LOD."""
    base = rest[: model.n_verts].astype(np.float32)
    l0 = np.linalg.norm(rest[edges[:, 0]] - rest[edges[:, 1]], axis=1)
    ratio = np.ones(len(edges), np.float32)
    # only the edges' own vertices are moved: the upsampling's rows of those (a CSR row subset
    # computes each row as the whole product does), not the whole LOD once per expression (52
    # products of 84,000 rows at LOD 2 for the ~1,000 vertices around the eyes)
    touched, ends = np.unique(edges, return_inverse=True)
    ends = ends.reshape(edges.shape)
    rows = upsample[touched]
    for e in range(model.n_expr):
        moved = np.asarray(rows @ (base + coef * model.exprdirs[:, :, e]), np.float32)
        l1 = np.linalg.norm(moved[ends[:, 0]] - moved[ends[:, 1]], axis=1)
        ratio = np.maximum(ratio, l1 / np.maximum(l0, 1e-9))
    out = np.ones(rest.shape[0], np.float32)
    np.maximum.at(out, edges[:, 0], ratio)
    np.maximum.at(out, edges[:, 1], ratio)
    return out


def eyelid_vertices(model: "HeadModel", rest: np.ndarray, upsample, opts: EyeOptions | None = None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lids, reference, around) (V_l,) bool for a LOD: lid vertices over the eyeball inside the
    lid contour (not eyeball vertices themselves), the upper-lid skin above each eye whose colour
    they take, and the upper-lid skin that a blink pulls over the eye, without the lid margins
    (between the lid contour grown 1.15 and 1.9 times about its centre, above the centre).

    rest (V_l, 3) the LOD's rest vertices (LOD-0 vertices first); upsample the LOD's matrix."""
    from .imageops import points_in_polygons

    opts = opts or EyeOptions()
    n = rest.shape[0]
    lids, ref, around = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
    lm = model.landmarks
    W = np.asarray(upsample @ model.weights)
    not_eye = W[:, 3] + W[:, 4] < 0.5
    base = rest[: model.n_verts]
    for name in ("eye_L", "eye_R"):
        loop_idx = np.array(LID_LOOP[name])
        geo = eye_geometry(model, base, name, opts)
        if geo is None or lm.face_idx.shape[0] <= loop_idx.max() or not lm.valid[loop_idx].all():
            continue
        loop = lm.points(base, model.faces)[loop_idx]
        c2 = loop[:, :2].mean(0)
        poly = loop[:, :2]
        d = np.linalg.norm(rest - geo.center, axis=1)
        front = rest[:, 2] > geo.center[2]
        big = c2 + 1.9 * (poly - c2)
        small = c2 + 1.3 * (poly - c2)
        in_lid, in_big, in_small, in_margin = points_in_polygons(rest[:, :2], [poly, big, small,
                                                                              c2 + 1.15 * (poly - c2)])
        lids |= not_eye & front & in_lid & (d < geo.radius + opts.lid_margin_m)
        in_big &= not_eye & front
        ref |= in_big & ~in_small & (rest[:, 1] > c2[1])
        # not the lid margins (they border the visible eye: grown, they would cover it)
        around |= in_big & ~in_margin & (rest[:, 1] > c2[1])
    return lids, ref, around
