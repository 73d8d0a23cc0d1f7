"""Per-frame growth of the head's Gaussians where posing stretches the skin beyond what they were sized for.

Posing moves Gaussians and keeps their size (as the paper poses them). The build sizes every head
Gaussian for the stretch of a 20 deg jaw opening (``attributes.capped_stretch``, the lips by their
own edges) and the upper lids for a blink (``eyes.expression_stretch``), so common motion opens no
gaps. Beyond that, rows of Gaussians pull apart and the skin breaks into stripes: the lips shut over a
wide jaw (ARKit's mouthClose with jawOpen: the chin drops away from a lower lip that stays), a jaw
past 20 deg, raised brows, a turned neck. Growing them at build time instead blurs the photo's own view.

So each frame: a LOD-0 vertex's stretch ``s`` is the largest length ratio, posed against rest, of
its counted edges, measured on the head Gaussians themselves (their LOD-0 rows: the head's LOD-0
vertices come first at every LOD, offsets included); its allowance ``a`` is the larger of what the
build sized it for and the source frame's own stretch (times GROWTH_SLACK); its Gaussians' three
scales grow by ``clip(s / a, 1, cap)``, and a finer LOD's Gaussians take their LOD's upsampling
blend of those factors. At the source frame ``s <= a`` everywhere, so the photo's view is unchanged
(factor exactly 1). Edges at the mouth band (``sampling.mouth_interior``: transparent Gaussians
where the lips part) are not counted, so the lips never grow across an opening mouth; nor are the
lids' (the build sizes them for a blink itself; grown further, the lash line's dark colours
spread over the closed lid).

The same field drives the backend's posing (``posed.pose_growth``, ``pose_torch.TorchPoser``) and
the Blender add-on's splats and Geometry Nodes display (each LOD object stores its counted edges,
rest lengths, allowance and upsampling parents: omg_blender_addon.scene_write._growth_edges).
"""

from __future__ import annotations

import hashlib
import math
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from ..head.model import HeadModel
    from .attributes import AttributeOptions
    from .eyes import EyeOptions
    from .gaussians import GaussianAvatar

GROWTH_CAP = 2.0      # the most a Gaussian grows beyond its allowance (past it, growth blurs more than gaps show)
GROWTH_SLACK = 1.01   # allowance margin: stretch within 1 % of it never grows (float noise at the source frame)


@dataclass
class GrowthField:
    """What per-frame growth needs for one avatar at one LOD. V = LOD-0 vertices, E = counted edges.

    edges: (E, 2) int64 LOD-0 vertex pairs (the mouth band's left out); rest_length: (E,) float32
    metres, at the neutral frame; allowance: (V,) float32 >= 1 (0 on the mouth band and the lids:
    their edges are not counted and they never grow); cap: the largest factor."""

    edges: np.ndarray
    rest_length: np.ndarray
    allowance: np.ndarray
    cap: float = GROWTH_CAP

    @property
    def n_verts(self) -> int:
        return int(self.allowance.shape[0])

    @staticmethod
    def from_allowance(all_edges: np.ndarray, rest: np.ndarray, allowance: np.ndarray,
                       cap: float = GROWTH_CAP) -> "GrowthField":
        """The field from every edge of the mesh (E_all, 2), the LOD-0 rest positions (V, 3) and the
        allowance (V,) (0 marks a vertex whose edges are not counted: the mouth band and the lids):
        only the edges whose two ends count are kept."""
        allowance = np.asarray(allowance, np.float32)
        e = np.asarray(all_edges, np.int64)
        e = e[(allowance[e[:, 0]] > 0) & (allowance[e[:, 1]] > 0)]
        rest = np.asarray(rest, np.float64)
        length = np.linalg.norm(rest[e[:, 0]] - rest[e[:, 1]], axis=1)
        return GrowthField(e, np.maximum(length, 1e-9).astype(np.float32), allowance, float(cap))


def vertex_stretch(points: np.ndarray, field: GrowthField) -> np.ndarray:
    """(T, V) float32: every LOD-0 vertex's largest counted-edge length ratio, posed against rest
    (0 where it has no counted edge). points (T, V, 3) or (V, 3) posed LOD-0 positions, metres."""
    p = np.asarray(points, np.float32)
    p = p if p.ndim == 3 else p[None]
    e = field.edges
    ratio = np.linalg.norm(p[:, e[:, 0]] - p[:, e[:, 1]], axis=2) / field.rest_length          # (T, E)
    ends = np.concatenate([e[:, 0], e[:, 1]])
    order = np.argsort(ends, kind="stable")
    vals = np.concatenate([ratio, ratio], 1)[:, order]
    uniq, starts = np.unique(ends[order], return_index=True)
    out = np.zeros((p.shape[0], field.n_verts), np.float32)
    if len(uniq):
        out[:, uniq] = np.maximum.reduceat(vals, starts, axis=1)
    return out


def growth_from_stretch(stretch: np.ndarray, field: GrowthField) -> np.ndarray:
    """(T, V) float32 factors ``clip(s / a, 1, cap)`` (1 where the allowance is 0)."""
    a = field.allowance
    g = np.where(a > 0, np.asarray(stretch, np.float32) / np.where(a > 0, a, 1.0), 1.0)
    return np.clip(g, 1.0, field.cap).astype(np.float32)


def vertex_growth(points: np.ndarray, field: GrowthField) -> np.ndarray:
    """(T, V) float32 growth factors of the LOD-0 vertices at posed positions ``points`` (T, V, 3)."""
    return growth_from_stretch(vertex_stretch(points, field), field)


def lod_growth(g0: np.ndarray, upsample) -> np.ndarray:
    """(T, V_l) float32: LOD-0 factors (T, V) blended to a LOD's vertices by its upsampling (V_l, V)."""
    g0 = np.asarray(g0, np.float32)
    return np.asarray(upsample @ g0.T, np.float32).T.copy()


def vertex_growth_torch(points: "torch.Tensor", edges: "torch.Tensor", rest_length: "torch.Tensor",
                        allowance: "torch.Tensor", cap: float) -> "torch.Tensor":
    """Torch twin of ``vertex_growth``: points (B, V, 3), edges (E, 2) int64, rest_length (E,),
    allowance (V,) on one device -> (B, V) float32 factors."""
    import torch

    B, V = points.shape[:2]
    ratio = (points[:, edges[:, 0]] - points[:, edges[:, 1]]).norm(dim=-1) / rest_length     # (B, E)
    s = torch.zeros(B, V, dtype=points.dtype, device=points.device)
    idx = torch.cat([edges[:, 0], edges[:, 1]]).expand(B, -1)
    s = s.scatter_reduce(1, idx, torch.cat([ratio, ratio], 1), reduce="amax", include_self=True)
    counted = allowance > 0
    g = torch.where(counted, s / torch.where(counted, allowance, torch.ones_like(allowance)), torch.ones_like(s))
    return g.clamp(1.0, cap)


@dataclass(frozen=True)
class SizingOptions:
    """What of a build's options sized the head's Gaussians (build._head_level): the attributes'
    stretch caps, whether the mouth parts fill the opening (the lips then grow with their own
    edges' stretch only) and the eyes' lid rules (None: the eyes were off, the lids are skin)."""

    attributes: "AttributeOptions"
    mouth_enabled: bool = True
    eyes: "EyeOptions | None" = None

    @staticmethod
    def of(options: dict | None) -> "SizingOptions":
        """The sizing options an avatar's stored creation options (GaussianAvatar.options, the
        build's BuildOptions.to_json()) name; the defaults for what they lack (a learned or an older
        avatar, a field a later version added)."""
        from .attributes import AttributeOptions
        from .eyes import EyeOptions

        options = options if isinstance(options, dict) else {}
        eyes = _stored(EyeOptions, options.get("eyes"))
        mouth = options.get("mouth")
        enabled = mouth.get("enabled", True) if isinstance(mouth, dict) else True
        return SizingOptions(_stored(AttributeOptions, options.get("attributes")),
                             enabled if isinstance(enabled, bool) else True, eyes if eyes.enabled else None)


def _stored(cls, values) -> Any:
    """``cls()`` with the fields ``values`` (a dict read from a file header) holds in the kind of the
    default: a finite positive number for a number (every sizing field is one), a bool for a bool;
    anything else (a hand-edited or crafted header) keeps the default, so no header can break the
    sizing."""
    out = cls()
    if not isinstance(values, dict):
        return out
    for f in fields(cls):
        v, default = values.get(f.name), getattr(out, f.name)
        if isinstance(default, bool):
            ok = isinstance(v, bool)
        elif isinstance(default, (int, float)):
            ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0
        else:
            ok = False   # tuples (colours): not what sizes the Gaussians
        if ok:
            setattr(out, f.name, type(default)(v) if isinstance(default, float) else v)
    return out


def design_allowance(model: "HeadModel", rest: np.ndarray, sizing: SizingOptions | None = None) -> np.ndarray:
    """(V,) float32: the stretch the build sized the head's LOD-0 Gaussians for, by its own rules
    (build._head_level) with ``sizing`` (None: the default build's): >= 1, and 0 where they do not
    grow per frame (their edges are not counted): the mouth band, and, with the eyes on, the lids
    with the lid margin (eyes.eyelid_vertices' lids and "around", one edge further), which the build
    sizes for a blink.
    rest (V, 3): the head's LOD-0 rest positions, metres."""
    import scipy.sparse as sp

    from .attributes import AttributeOptions, capped_stretch, unique_edges
    from .eyes import EyeOptions, eyelid_vertices
    from .sampling import jaw_edge_stretch, lip_stretch, mouth_interior, vertex_max_stretch

    sizing = sizing or SizingOptions(AttributeOptions(), True, EyeOptions())
    V = rest.shape[0]
    eye = sp.identity(V, np.float32, format="csr")
    edges = unique_edges(model.faces)
    edge_stretch = jaw_edge_stretch(model, rest, eye, edges)
    stretch = vertex_max_stretch(V, edges, edge_stretch)
    mouth = mouth_interior(model, rest, stretch)
    if sizing.mouth_enabled:
        allowance = capped_stretch(lip_stretch(V, edges, edge_stretch, mouth), np.zeros(V, bool), sizing.attributes)
    else:
        allowance = capped_stretch(stretch, mouth, sizing.attributes)
    lid = np.zeros(V, bool)
    if sizing.eyes is not None:
        # the lids, sized by the build for a blink (capped at EyeOptions.max_lid_stretch, the lids
        # behind the eyeball grown further), and the row of lid margin between them: grown further,
        # the lash line's dark colours spread over the closed lid
        lids, _, around = eyelid_vertices(model, rest, eye, sizing.eyes)
        lid = lids | around
        lid[edges[lid[edges[:, 0]], 1]] = True
        lid[edges[lid[edges[:, 1]], 0]] = True
    allowance[mouth | lid] = 0.0
    return allowance.astype(np.float32)


def head_base_points(avatar: "GaussianAvatar", model: "HeadModel", params, lod: int) -> np.ndarray:
    """(T, V, 3) float32 metres: the posed head Gaussians' LOD-0 rows (the first V of
    ``posing.pose``'s head rows at ``lod``: LBS vertices plus their offsets turned by the blended
    skinning rotation, and the torso channel's shift by each vertex's global weight), without
    posing the LOD's other Gaussians."""
    from ..head.params import HeadParams
    from .posing import lbs_numpy, rotate_blended

    V = model.n_verts
    p = HeadParams(avatar.params.shape, params.expr, params.pose, params.transl)
    verts, _, A = lbs_numpy(model, p)
    if params.torso is not None:  # as posing.pose: the root's own transform moved by the torso channel
        verts = verts + model.weights[None, :, 0:1].astype(np.float32) * np.asarray(params.torso, np.float32)[:, None, :]
    off = avatar.vertex_offsets + avatar.lod_offsets[lod][:V]
    return verts + rotate_blended(off, np.asarray(model.weights, np.float32), A)


def growth_field(avatar: "GaussianAvatar", model: "HeadModel", lod: int, cap: float = GROWTH_CAP) -> GrowthField:
    """The GrowthField of ``avatar`` at ``lod``: rest (neutral frame) and source positions from its
    own posing, the allowance ``max(design, source stretch) * GROWTH_SLACK``. Remembered for the
    last few avatars per head model (keyed by the data it depends on), so every render and posed
    set of an avatar shares one."""
    from ..head.params import HeadParams
    from .attributes import unique_edges

    src = avatar.params.frame(0)
    key = _field_key(avatar, lod, cap)
    with _FIELD_LOCK:
        cache = _FIELDS.setdefault(model, OrderedDict())
        hit = cache.get(key)
    if hit is not None:
        return hit
    neutral = HeadParams(src.shape, np.zeros_like(src.expr), np.zeros_like(src.pose), np.zeros_like(src.transl))
    rest = head_base_points(avatar, model, neutral, lod)[0]
    design = design_allowance(model, rest.astype(np.float64), SizingOptions.of(avatar.options))
    field = GrowthField.from_allowance(unique_edges(model.faces), rest, design, cap)
    seen = vertex_stretch(head_base_points(avatar, model, src, lod), field)[0]
    allowance = np.where(design > 0, np.maximum(design, seen) * GROWTH_SLACK, 0.0).astype(np.float32)
    field = GrowthField(field.edges, field.rest_length, allowance, field.cap)
    with _FIELD_LOCK:
        cache[key] = field
        while len(cache) > 8:
            cache.popitem(last=False)
    return field


_FIELDS: "weakref.WeakKeyDictionary[HeadModel, OrderedDict]" = weakref.WeakKeyDictionary()
_FIELD_LOCK = threading.Lock()


def _field_key(avatar: "GaussianAvatar", lod: int, cap: float) -> bytes:
    """What a GrowthField depends on besides the head model: the source frame's parameters, the
    identity offsets and the LOD's offsets at its LOD-0 rows."""
    h = hashlib.blake2b(digest_size=16)
    p = avatar.params
    V = avatar.vertex_offsets.shape[0]
    for a in (p.shape, p.expr[:1], p.pose[:1], p.transl[:1], avatar.vertex_offsets, avatar.lod_offsets[lod][:V]):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(f"{int(lod)}|{float(cap)!r}|{SizingOptions.of(avatar.options)!r}".encode())
    return h.digest()
