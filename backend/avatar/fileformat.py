"""The ``.omgavatar`` file: a safetensors file whose metadata holds a JSON header.

Header (metadata key ``omgavatar``): format name, format version, creation time, method, head
model (name, path), LOD levels, Gaussian counts per LOD, camera size and the creation options, plus
a SHA-256 of every tensor's bytes so a damaged file is refused instead of loading garbage.
Tensors: ``params.*`` (source HeadParams), ``camera.K/viewmat``, ``vertex_offsets``,
``lod{l}.{means,quats,scales,opacities,colors[,features],offsets}`` and, per skinned part i (header
``parts``: the names in order), ``part{i}.{means,quats,scales,opacities,colors[,features],weights}``
and, for a part with shape keys (header ``part_shapes``: per part the expression names, in order),
``part{i}.shapes`` (N, 3, K) metres per unit weight. Files without them load with shapeless parts
(the parts then move with their joints only, as before shape keys existed). A part with clamped
keys (SkinnedPart.clamped; header ``part_clamped``: per part [expression name, start] pairs, in
order) has ``part{i}.clamped`` (N, 3, K) metres per unit beyond the start. Files without them load
with none (a reader older than them ignores both and poses the part without those keys).
A LOD with view-dependent Gaussians (GaussianAvatar.lod_views, view_colors.py) has
``lod{l}.view_rows`` (K,) int64, ``lod{l}.view_side`` (K, 3), ``lod{l}.view_toward`` (K, 3) and
``lod{l}.view_grow`` (K,); files without them load view-independent (an older reader ignores them).
Version 1 files held one ``shoulders.*`` set instead of parts; they load as the part "body" with
posing.body_weights, which poses exactly as version 1 posed the shoulders.
The loader refuses non-avatar files, corrupt files and versions newer than it understands with an
InputError naming the file.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .gaussians import ClampedShape, GaussianAvatar, GaussianSet, SkinnedPart
from .view_colors import ViewColors

FORMAT_NAME = "omgavatar"
FORMAT_VERSION = 2  # 2: skinned parts (part{i}.*) replace the shoulders set
SUFFIX = ".omgavatar"
_META_KEY = "omgavatar"
_SET_KEYS = ("means", "quats", "scales", "opacities", "colors")


def _digest(tensors: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(tensors):
        arr = np.ascontiguousarray(tensors[key])
        h.update(key.encode())
        h.update(str(arr.dtype).encode() + str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _set_tensors(prefix: str, gs: GaussianSet) -> dict[str, np.ndarray]:
    return {f"{prefix}.{k}": v for k, v in gs.arrays().items()}


def avatar_tensors(avatar: GaussianAvatar) -> dict[str, np.ndarray]:
    """Every array of the avatar under its file key (float32/int contiguous)."""
    p, cam = avatar.params, avatar.camera
    t: dict[str, np.ndarray] = {
        "params.shape": np.asarray(p.shape, np.float32),
        "params.expr": np.asarray(p.expr, np.float32),
        "params.pose": np.asarray(p.pose, np.float32),
        "params.transl": np.asarray(p.transl, np.float32),
        "camera.K": np.asarray(cam.K, np.float32),
        "camera.viewmat": np.asarray(cam.viewmat, np.float32),
        "vertex_offsets": np.asarray(avatar.vertex_offsets, np.float32),
    }
    for lvl, gs in avatar.lods.items():
        t.update(_set_tensors(f"lod{lvl}", gs))
        t[f"lod{lvl}.offsets"] = np.asarray(avatar.lod_offsets[lvl], np.float32)
        view = avatar.lod_views.get(lvl)
        if view is not None and len(view):
            t[f"lod{lvl}.view_rows"] = np.asarray(view.rows, np.int64)
            t[f"lod{lvl}.view_side"] = np.asarray(view.side, np.float32)
            t[f"lod{lvl}.view_toward"] = np.asarray(view.toward, np.float32)
            if view.grow is not None:
                t[f"lod{lvl}.view_grow"] = np.asarray(view.grow, np.float32)
    for i, part in enumerate(avatar.parts):
        t.update(_set_tensors(f"part{i}", part.gaussians))
        t[f"part{i}.weights"] = np.asarray(part.weights, np.float32)
        if part.shapes:
            t[f"part{i}.shapes"] = np.stack([part.shapes[k] for k in part.shapes], -1).astype(np.float32)
        if part.clamped:
            t[f"part{i}.clamped"] = np.stack([c.delta for c in part.clamped.values()], -1).astype(np.float32)
    return {k: np.ascontiguousarray(v) for k, v in t.items()}


def save_avatar(avatar: GaussianAvatar, path: str | Path) -> Path:
    """Write ``avatar`` to ``path`` (suffix .omgavatar added when missing); atomic replace."""
    from safetensors.numpy import save_file

    path = Path(path)
    if path.suffix != SUFFIX:
        path = path.with_suffix(SUFFIX)
    tensors = avatar_tensors(avatar)
    header = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": avatar.method,
        "head_model": {"name": avatar.head_model_name, "path": avatar.head_model_path},
        "lods": avatar.levels,
        "counts": {str(k): v for k, v in avatar.counts().items()},
        "parts": [p.name for p in avatar.parts],
        "part_shapes": [list(p.shapes) for p in avatar.parts],
        "part_clamped": [[[k, c.start] for k, c in p.clamped.items()] for p in avatar.parts],
        "camera": {"width": int(avatar.camera.width), "height": int(avatar.camera.height)},
        "options": avatar.options,
        "sha256": _digest(tensors),
    }
    from ..output_safety import atomic_path

    with atomic_path(path) as tmp:  # an earlier file at ``path`` survives a failed write
        try:
            save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(header, sort_keys=True, default=str)})
        except Exception as exc:  # noqa: BLE001 - safetensors' own error type for I/O failures
            raise OSError(str(exc)) from None  # -> atomic_path: one line naming the avatar file
    return path


def read_header(path: str | Path) -> dict[str, Any]:
    """The JSON header alone (fast: reads only the safetensors header). Raises InputError."""
    return _open(Path(path))[0]


def _open(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    from safetensors import safe_open

    if not path.is_file():
        raise InputError(path, "avatar file not found")
    try:
        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except InputError:
        raise
    except Exception as exc:  # safetensors raises its own error types for a damaged header/body
        from ..filekind import describe, wrong_kind

        if describe(path) != "a safetensors file":
            raise InputError(path, wrong_kind(path, "an avatar file (.omgavatar, written by "
                                              "python -m backend build)")) from None
        raise InputError(path, "a damaged .omgavatar file (corrupt or truncated: "
                               f"{str(exc)[:100]})") from None
    if _META_KEY not in meta:
        raise InputError(path, "not an .omgavatar file (no avatar header)")
    try:
        header = json.loads(meta[_META_KEY])
    except json.JSONDecodeError:
        raise InputError(path, "corrupt .omgavatar header (invalid JSON)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT_NAME:
        raise InputError(path, "not an .omgavatar file (wrong format name)")
    version = header.get("version")
    if not isinstance(version, int) or version < 1:
        raise InputError(path, f"corrupt .omgavatar header (bad version {version!r})")
    if version > FORMAT_VERSION:
        raise InputError(path, f"written by a newer OMG Avatar (file format version {version}; this "
                               f"version reads up to {FORMAT_VERSION}): update the add-on")
    return header, tensors


def _read_parts(header: dict[str, Any], t: dict[str, np.ndarray], gset) -> list[SkinnedPart]:
    """The skinned parts of a file (version 1: its shoulders as the part "body")."""
    if int(header["version"]) < 2:
        from .posing import body_weights

        body = gset("shoulders")
        return [SkinnedPart("body", body, body_weights(len(body)))]
    names = header["parts"]
    shape_names = header.get("part_shapes") or [[] for _ in names]
    if not isinstance(names, list) or not isinstance(shape_names, list) or len(shape_names) != len(names):
        raise TypeError("parts")
    clamped_keys = header.get("part_clamped") or [[] for _ in names]
    if not isinstance(clamped_keys, list) or len(clamped_keys) != len(names):
        raise TypeError("part_clamped")
    parts = []
    for i, name in enumerate(names):
        keys = [str(k) for k in shape_names[i]]
        D = t[f"part{i}.shapes"] if keys else None
        if D is not None and (D.ndim != 3 or D.shape[2] != len(keys)):
            raise ValueError(f"part{i}.shapes")
        shapes = {k: D[..., j] for j, k in enumerate(keys)} if keys else {}
        pairs = [(str(k), float(s)) for k, s in clamped_keys[i]]
        C = t[f"part{i}.clamped"] if pairs else None
        if C is not None and (C.ndim != 3 or C.shape[2] != len(pairs)):
            raise ValueError(f"part{i}.clamped")
        clamped = {k: ClampedShape(s, C[..., j]) for j, (k, s) in enumerate(pairs)}
        parts.append(SkinnedPart(str(name), gset(f"part{i}"), t[f"part{i}.weights"], shapes, clamped))
    return parts


def _current_expr(header: dict[str, Any], expr: np.ndarray) -> np.ndarray:
    """The source frame's expression in today's basis. Avatars built on the stand-in before its
    ARKit-52 basis (24 named expressions) get their coefficients carried over to the nearest ARKit
    shapes (head.arkit_names.legacy_to_arkit); the stand-in's geometry is unchanged, so the rest of
    the file poses as it did."""
    from ..head.arkit_names import ARKIT_NAMES, LEGACY_STANDIN_NAMES, legacy_to_arkit

    path = header["head_model"]["path"]
    expr = np.asarray(expr, np.float32)
    if (path is None or str(path) == "") and expr.ndim == 2 and expr.shape[1] == len(LEGACY_STANDIN_NAMES) \
            and len(LEGACY_STANDIN_NAMES) != len(ARKIT_NAMES):
        return legacy_to_arkit(expr)
    return expr


def load_avatar(path: str | Path) -> GaussianAvatar:
    """Read an avatar written by save_avatar; refuses corrupt/foreign/future files (InputError)."""
    from ..head.params import HeadParams
    from ..render.camera import Camera

    path = Path(path)
    header, t = _open(path)
    if header.get("sha256") != _digest(t):
        raise InputError(path, "corrupt .omgavatar file (data checksum mismatch)")
    try:
        lods = [int(x) for x in header["lods"]]

        def gset(prefix: str) -> GaussianSet:
            feats = t.get(f"{prefix}.features")
            return GaussianSet(*(t[f"{prefix}.{k}"] for k in _SET_KEYS), features=feats)

        params = HeadParams(shape=t["params.shape"], expr=_current_expr(header, t["params.expr"]),
                            pose=t["params.pose"], transl=t["params.transl"])
        camera = Camera(K=t["camera.K"], viewmat=t["camera.viewmat"],
                        width=int(header["camera"]["width"]), height=int(header["camera"]["height"]))
        avatar = GaussianAvatar(
            head_model_name=str(header["head_model"]["name"]),
            head_model_path=header["head_model"]["path"],
            params=params,
            camera=camera,
            vertex_offsets=t["vertex_offsets"],
            lods={lvl: gset(f"lod{lvl}") for lvl in lods},
            lod_offsets={lvl: t[f"lod{lvl}.offsets"] for lvl in lods},
            parts=_read_parts(header, t, gset),
            options=dict(header.get("options") or {}),
            method=str(header.get("method", "analytic")),
            lod_views={lvl: ViewColors(t[f"lod{lvl}.view_rows"], t[f"lod{lvl}.view_side"], t[f"lod{lvl}.view_toward"],
                                       t.get(f"lod{lvl}.view_grow"))
                       for lvl in lods if f"lod{lvl}.view_rows" in t},
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError(path, f"corrupt .omgavatar file (missing or malformed entry {exc})") from None
    for lvl in lods:
        if f"lod{lvl}.view_rows" in t and lvl not in avatar.lod_views:
            raise InputError(path, f"corrupt .omgavatar file (LOD {lvl} view data index beyond its Gaussians)")
        if avatar.lod_offsets[lvl].shape != avatar.lods[lvl].means.shape:
            raise InputError(path, f"corrupt .omgavatar file (LOD {lvl} offsets do not match its Gaussians)")
    # the tracker fits a clip with the vertex offsets (face.track's rest_offsets): a non-finite one
    # would turn every fitted frame into NaN
    if not np.isfinite(avatar.vertex_offsets).all():
        raise InputError(path, "corrupt .omgavatar file (non-finite vertex offsets)")
    return avatar
