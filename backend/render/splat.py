"""``splat``: render 3D Gaussians with any number of feature channels into one or more cameras.

Backends: "cuda" = gsplat's ``rasterization`` (render_mode "RGB+ED"), "cpu" = the project's numba
tile splatter (projection.py + rasterize.py), "auto" = cuda when torch.cuda is available and
gsplat imports, else cpu. Both are differentiable w.r.t. means, quats, scales, opacities, features
(and background). The backend that ran is reported in ``SplatResult.backend``.

Batching: per-Gaussian inputs are either shared, (N, ...), or per frame, (B, N, ...); cameras are
one Camera or a list. B = max(number of cameras, frames); a single camera or a single Gaussian set
is broadcast. All cameras must share width and height.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numba as nb
import numpy as np
import torch

from . import _kernels
from .camera import Camera
from .projection import project_gaussians
from .rasterize import TILE_SIZE, rasterize_to_pixels
from .splat_data import SplatInputs, SplatResult, camera_tensors

BackendName = Literal["auto", "cpu", "cuda"]


def cuda_available() -> bool:
    """True when torch sees a CUDA device and gsplat imports."""
    if not torch.cuda.is_available():
        return False
    try:
        import gsplat  # noqa: F401
    except Exception:
        return False
    return True


def select_backend(backend: str = "auto") -> str:
    """Resolve "auto" -> "cuda" | "cpu"; validate explicit names."""
    if backend == "auto":
        return "cuda" if cuda_available() else "cpu"
    if backend == "cpu":
        return "cpu"
    if backend == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("backend 'cuda' requested but torch.cuda is not available")
        if not cuda_available():
            raise RuntimeError("backend 'cuda' requested but gsplat is not installed (pip install gsplat==1.5.3)")
        return "cuda"
    raise ValueError(f"backend must be 'auto', 'cpu' or 'cuda', got {backend!r}")


def _tensor(x, name: str, device: torch.device) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        x = x.float()
    return x.to(device=device, dtype=torch.float32)


@nb.njit(cache=True, nogil=True)
def _min_norm2(q):
    """Smallest squared norm over the rows of q (M, 4) f32, in float32 like torch's
    ``q.square().sum(-1).amin()`` (inf when M = 0)."""
    lo = np.float32(np.inf)
    for i in range(q.shape[0]):
        n = q[i, 0] * q[i, 0] + q[i, 1] * q[i, 1] + q[i, 2] * q[i, 2] + q[i, 3] * q[i, 3]
        lo = min(lo, n)
    return lo


def _min_quat_norm2(q: torch.Tensor) -> float:
    """Smallest squared norm of the quaternions (..., 4): one numba pass on the CPU (no (B, N, 4)
    temporary per preview batch), torch elsewhere."""
    if q.device.type == "cpu":
        return float(_min_norm2(q.detach().reshape(-1, 4).contiguous().numpy()))
    return float(q.square().sum(-1).amin())


def _check_range(x: torch.Tensor) -> tuple[bool, float, float]:
    """(all finite, min, max) of ``x``: on the CPU numpy's vectorized min and max (no boolean
    array per element: these checks run on every preview batch; a NaN propagates into both and
    an inf is one of them, so both finite <=> all finite), torch reductions on other devices."""
    if x.numel() == 0:
        return True, 0.0, 0.0
    if x.device.type == "cpu":
        a = x.detach().reshape(-1).contiguous().numpy()
        lo, hi = a.min(), a.max()
        return bool(np.isfinite(lo) and np.isfinite(hi)), float(lo), float(hi)
    if not bool(torch.isfinite(x).all()):
        return False, 0.0, 0.0
    lo, hi = torch.aminmax(x)
    return True, float(lo), float(hi)


def _prepare(means, quats, scales, opacities, features, camera, background, device) -> SplatInputs:
    cams = [camera] if isinstance(camera, Camera) else list(camera)
    if not cams or not all(isinstance(c, Camera) for c in cams):
        raise TypeError("camera must be a Camera or a non-empty list of Camera")
    if len({(c.width, c.height) for c in cams}) != 1:
        raise ValueError("all cameras in one splat call must share width and height")
    t = {
        "means": _tensor(means, "means", device),
        "quats": _tensor(quats, "quats", device),
        "scales": _tensor(scales, "scales", device),
        "opacities": _tensor(opacities, "opacities", device),
        "features": _tensor(features, "features", device),
    }
    tail = {"means": 1, "quats": 1, "scales": 1, "opacities": 0, "features": 1}
    last = {"means": 3, "quats": 4, "scales": 3}
    N = t["means"].shape[-2] if t["means"].dim() >= 2 else -1
    frames = {1}
    for name, x in t.items():
        if x.dim() not in (1 + tail[name], 2 + tail[name]):
            raise ValueError(f"{name} must be (N{', ' + str(last.get(name, 'C')) if tail[name] else ''}) or (B, N, ...), got {tuple(x.shape)}")
        if name in last and x.shape[-1] != last[name]:
            raise ValueError(f"{name} must have {last[name]} components in its last axis, got {tuple(x.shape)}")
        n = x.shape[-1 - tail[name]]
        if n != N:
            raise ValueError(f"{name} has {n} Gaussians but means has {N}")
        if x.dim() == 2 + tail[name]:
            frames.add(x.shape[0])
    frames.add(len(cams))
    if len(frames - {1}) > 1:
        raise ValueError(f"inconsistent frame counts (cameras/per-frame inputs): {sorted(frames)}")
    B = max(frames)
    batched = any(x.dim() == 2 + tail[name] for name, x in t.items())
    if len(cams) == 1 and B > 1:
        cams = cams * B
    ranges = {}
    for name, x in t.items():
        ok, lo, hi = _check_range(x)
        if not ok:
            raise ValueError(f"{name} contains NaN or inf")
        ranges[name] = (lo, hi)
    if ranges["scales"][0] < 0:
        raise ValueError("scales must be >= 0 (linear metres, not log-scales)")
    if ranges["opacities"][0] < 0 or ranges["opacities"][1] > 1:
        raise ValueError("opacities must be in [0, 1] (post-sigmoid)")
    if N > 0 and _min_quat_norm2(t["quats"]) < 1e-24:  # |q| < 1e-12
        raise ValueError("quats must be non-zero (wxyz, any norm)")
    C = t["features"].shape[-1]
    if C < 1:
        raise ValueError("features need at least one channel")
    bg = None
    if background is not None:
        bg = _tensor(background, "background", device)
        if bg.shape not in ((C,), (B, C)):
            raise ValueError(f"background must be ({C},) or ({B}, {C}), got {tuple(bg.shape)}")
        bg = bg.expand(B, C)
    ex = {name: (x if x.dim() == 2 + tail[name] else x.expand((B,) + x.shape)) for name, x in t.items()}
    return SplatInputs(ex["means"], ex["quats"], ex["scales"], ex["opacities"], ex["features"], cams, bg, batched)


def _splat_cpu(inp: SplatInputs, near_plane: float, far_plane: float, eps2d: float, tile_size: int,
               transmittance_stop: float | None = None, depth: bool = True, simd: bool = False) -> SplatResult:
    cam = inp.cameras[0]
    W, H = cam.width, cam.height
    viewmats, Ks = camera_tensors(inp.cameras, "cpu")
    proj = project_gaussians(
        inp.means, inp.quats, inp.scales, viewmats, Ks, W, H,
        opacities=inp.opacities, eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
    )  # fmt: skip
    t_stop = _kernels.T_EPS if transmittance_stop is None else float(transmittance_stop)
    if not depth:  # previews: no depth channel to composite, the background added per tile
        image, alpha, bins = rasterize_to_pixels(
            proj.means2d, proj.conics, inp.opacities, inp.features, proj.extents, proj.depths, W, H, tile_size,
            t_stop, inp.background, simd,
        )  # fmt: skip
        return SplatResult(image=image.permute(0, 3, 1, 2), alpha=alpha, depth=None, backend="cpu",
                           radii=proj.radii, n_intersections=bins.n_intersections)
    # expected depth rides along as an extra channel, as in gsplat's "RGB+ED"
    colors = torch.cat([inp.features, proj.depths[..., None]], dim=-1)  # [B, N, C + 1]
    out, alpha, bins = rasterize_to_pixels(
        proj.means2d, proj.conics, inp.opacities, colors, proj.extents, proj.depths, W, H, tile_size, t_stop,
        simd=simd,
    )  # [B, H, W, C + 1], [B, H, W]
    needs_grad = out.requires_grad or (inp.background is not None and inp.background.requires_grad)
    if torch.is_grad_enabled() and needs_grad:
        image = out[..., :-1]
        if inp.background is not None:
            image = image + (1.0 - alpha)[..., None] * inp.background[:, None, None, :]
        depth = out[..., -1] / alpha.clamp(min=1e-10)
    else:  # previews: one pass instead of five tensor operations, bit-identical
        bg = inp.background if inp.background is not None else torch.zeros(out.shape[0], out.shape[-1] - 1)
        img_np, depth_np = _kernels.finish_image(out.detach().numpy(), alpha.detach().numpy(),
                                                 bg.detach().contiguous().numpy(), inp.background is not None)
        image, depth = torch.from_numpy(img_np), torch.from_numpy(depth_np)
    return SplatResult(
        image=image.permute(0, 3, 1, 2),
        alpha=alpha,
        depth=depth,
        backend="cpu",
        radii=proj.radii,
        n_intersections=bins.n_intersections,
    )


def splat(
    means,
    quats,
    scales,
    opacities,
    features,
    camera: Camera | Sequence[Camera],
    background=None,
    backend: BackendName = "auto",
    *,
    near_plane: float = 0.01,
    far_plane: float = 1e10,
    eps2d: float = 0.3,
    tile_size: int = TILE_SIZE,
    transmittance_stop: float | None = None,
    depth: bool = True,
    simd: bool = False,
) -> SplatResult:
    """Render Gaussians; see the module docstring for batching and backends.

    transmittance_stop: None = gsplat's compositing (a pixel stops only where the next Gaussian would
    bring its transmittance to 1e-4). A value t in (1e-4, 1): the cpu backend also stops a pixel
    after the Gaussian that brings it to t or below, so every output channel (background included)
    is within t x max |feature - background| of the exact render; previews use 1/255 (uint8
    frames within one level) and skip the Gaussians behind the opaque surface. The cuda backend
    ignores it (gsplat composites exactly; it is not the bottleneck there).

    depth: False = the caller needs no depth (previews): ``SplatResult.depth`` is None and the cpu
    backend composites only the features, with the background added as each tile is written (the
    same image, bit for bit, with one channel and two passes over the frames fewer). The cuda
    backend returns the depth anyway (gsplat's "RGB+ED" costs no extra pass).

    simd: True = without gradients the cpu backend composites 8 pixels at a time in float32 with a
    polynomial exp (``_kernels_simd``): colours and alpha within about 1e-6 of the exact kernel's but
    for rare flips of a Gaussian at the 1/255 alpha cut-off (uint8 frames: a few values in a
    million one level off; tested), for about half the compositing CPU (LOD 2, 512x512). Previews use it.
    Ignored when gradients flow and by the cuda backend.

    means (N, 3) | (B, N, 3) world metres; quats (N, 4) wxyz (normalized here); scales (N, 3)
    linear metres; opacities (N,) in [0, 1]; features (N, C), any C >= 1; background (C,) | (B, C).
    Tensors (or numpy arrays) of any float dtype; computed in float32. The cpu backend returns CPU
    tensors, the cuda backend CUDA tensors.
    """
    name = select_backend(backend)
    if transmittance_stop is not None and not 0.0 < float(transmittance_stop) < 1.0:
        raise ValueError(f"transmittance_stop must be in (0, 1), got {transmittance_stop!r}")
    device = torch.device("cuda" if name == "cuda" else "cpu")
    inp = _prepare(means, quats, scales, opacities, features, camera, background, device)
    if name == "cuda":
        from .cuda import splat_gsplat

        return splat_gsplat(inp, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d, tile_size=tile_size)
    return _splat_cpu(inp, near_plane, far_plane, eps2d, tile_size, transmittance_stop, bool(depth), bool(simd))
