"""Standard 3D Gaussian Splatting ``.ply`` files (the layout of the reference 3DGS code).

One ``vertex`` element, float32 properties in this order:
``x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 [f_rest_0..] opacity scale_0 scale_1 scale_2 rot_0..rot_3``
where f_dc is the degree-0 spherical-harmonic coefficient ``(rgb - 0.5) / C0``, opacity is stored
as a logit, scales as natural logs and rot as a unit quaternion w,x,y,z. Normals are zero. We write
no f_rest (view-independent colour); the reader accepts files with or without f_rest, in any
property order, binary little/big endian or ascii.

The column codec is written once here: ``ply_columns`` encodes, ``gaussians_from_columns`` decodes
(the Blender add-on stores the same columns as mesh attributes and uses both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import numpy as np

from ..errors import InputError
from .gaussians import GaussianSet

C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))
_OPACITY_EPS = 1e-6       # keeps the logit finite for opacity 0 or 1
_SCALE_MIN = 1e-12        # keeps the log finite


def ply_columns(gs: GaussianSet) -> dict[str, np.ndarray]:
    """The reference-layout columns (ordered dict name -> (N,) float32) for ``gs``."""
    n = len(gs)
    f_dc = (gs.colors.astype(np.float64) - 0.5) / C0
    op = np.clip(gs.opacities.astype(np.float64), _OPACITY_EPS, 1.0 - _OPACITY_EPS)
    logit = np.log(op) - np.log1p(-op)
    log_s = np.log(np.maximum(gs.scales.astype(np.float64), _SCALE_MIN))
    q = gs.quats.astype(np.float64)
    q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-30)
    cols: dict[str, np.ndarray] = {"x": gs.means[:, 0], "y": gs.means[:, 1], "z": gs.means[:, 2]}
    for name in ("nx", "ny", "nz"):
        cols[name] = np.zeros(n)
    for i in range(3):
        cols[f"f_dc_{i}"] = f_dc[:, i]
    cols["opacity"] = logit
    for i in range(3):
        cols[f"scale_{i}"] = log_s[:, i]
    for i in range(4):
        cols[f"rot_{i}"] = q[:, i]
    return {k: np.asarray(v, np.float32) for k, v in cols.items()}


def gaussians_from_columns(means: np.ndarray, cols: Mapping[str, np.ndarray],
                           colors: np.ndarray | None = None) -> GaussianSet:
    """Inverse of :func:`ply_columns`: a GaussianSet from (N, 3) means and reference-layout columns
    {name: (N,)}. Colours = f_dc * C0 + 0.5 clipped to [0, 1] (trained 3DGS files overshoot; a
    GaussianSet's colours are RGB in [0, 1]), or ``colors`` (N, 3) when given (also clipped), or grey
    without f_dc; opacity = sigmoid(logit) (1 without the column); scales = exp(log scale);
    rotations normalised, a zero quaternion becomes the identity."""
    means = np.asarray(means, np.float64)
    n = len(means)

    def stack(prefix: str, k: int) -> np.ndarray:
        return np.stack([np.asarray(cols[f"{prefix}_{i}"], np.float64) for i in range(k)], axis=1)

    if colors is None:
        colors = stack("f_dc", 3) * C0 + 0.5 if "f_dc_0" in cols else np.full((n, 3), 0.5)
    colors = np.clip(np.asarray(colors, np.float64), 0.0, 1.0)
    opac = 1.0 / (1.0 + np.exp(-np.asarray(cols["opacity"], np.float64))) if "opacity" in cols else np.ones(n)
    scales = np.exp(stack("scale", 3))
    q = stack("rot", 4)
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    q = np.where(norm > 0, q / np.maximum(norm, 1e-30), np.array([1.0, 0, 0, 0]))
    return GaussianSet(means, q, scales, opac, colors)


def write_ply(path: str | Path, gs: GaussianSet, text: bool = False) -> Path:
    """Write ``gs`` as a standard 3DGS .ply (binary little endian unless ``text``)."""
    from plyfile import PlyData, PlyElement

    path = Path(path)
    cols = ply_columns(gs)
    data = np.empty(len(gs), dtype=[(k, "<f4") for k in cols])
    for k, v in cols.items():
        data[k] = v
    from ..output_safety import atomic_path

    with atomic_path(path) as tmp:  # an earlier file at ``path`` survives a failed write
        PlyData([PlyElement.describe(data, "vertex")], text=text, byte_order="<").write(str(tmp))
    return path


def read_ply(path: str | Path) -> GaussianSet:
    """Read any standard 3DGS .ply (f_rest ignored; colours from the DC term) as a GaussianSet.

    Plain coloured point clouds (red/green/blue instead of f_dc) get colours from those. Missing
    opacity -> 1; missing scales or rotations -> InputError (they are not Gaussians).
    """
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        ply = PlyData.read(str(path))
        vert = ply["vertex"]
        data = vert.data
    except KeyError:
        raise InputError(path, "PLY has no 'vertex' element") from None
    except Exception as exc:
        raise InputError(path, f"not a readable PLY file ({exc})") from None
    names = set(data.dtype.names or ())

    def col(name: str) -> np.ndarray:
        return np.asarray(data[name], dtype=np.float64)

    def need(*keys: str) -> None:
        missing = [k for k in keys if k not in names]
        if missing:
            raise InputError(path, f"not a 3DGS PLY: missing vertex properties {', '.join(missing)}")

    need("x", "y", "z", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")
    if names & {"f_dc_0", "f_dc_1", "f_dc_2"}:  # colour columns come as a triple or not at all
        need("f_dc_0", "f_dc_1", "f_dc_2")
    n = len(data)
    means = np.stack([col("x"), col("y"), col("z")], axis=1)
    colors = None
    if not {"f_dc_0", "f_dc_1", "f_dc_2"} <= names and {"red", "green", "blue"} <= names:
        rgb = np.stack([col(c) for c in ("red", "green", "blue")], axis=1)
        colors = rgb / 255.0 if data["red"].dtype.kind in "ui" else rgb
    wanted = [f"f_dc_{i}" for i in range(3)] + ["opacity"] + [f"scale_{i}" for i in range(3)] + [f"rot_{i}" for i in range(4)]
    with np.errstate(over="ignore", invalid="ignore"):  # overflow -> inf, refused below
        gs = gaussians_from_columns(means, {k: col(k) for k in wanted if k in names}, colors)
    # the stored rotations and colours, not the decoded ones: a NaN quaternion decodes as the
    # identity and an infinite colour is clipped to [0, 1]
    q_raw = np.stack([col(f"rot_{i}") for i in range(4)], axis=1)
    c_raw = colors if colors is not None else (
        np.stack([col(f"f_dc_{i}") for i in range(3)], axis=1) if "f_dc_0" in names else gs.colors)
    for what, arr in (("positions", means), ("scales", gs.scales), ("rotations", q_raw),
                      ("opacities", gs.opacities), ("colours", c_raw)):
        bad = ~np.isfinite(arr).reshape(n, -1).all(1) if n else np.zeros(0, bool)
        if bad.any():
            raise InputError(path, f"PLY has non-finite (NaN or infinite) {what} in {int(bad.sum())} "
                                   f"of {n} Gaussians (first: vertex {int(np.argmax(bad))})")
    return gs
