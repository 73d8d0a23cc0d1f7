"""CUDA backend: gsplat's ``rasterization`` (render_mode "RGB+ED") mapped to ``SplatResult``.

Only imported when the cuda backend is selected (gsplat JIT-compiles its CUDA extension on first
use, which needs the CUDA toolkit). Shared Gaussians use gsplat's multi-camera form (viewmats
(C, 4, 4)); per-frame Gaussians use its batch dimension with one camera per frame.
"""

from __future__ import annotations

import torch

from .splat_data import SplatInputs, SplatResult, camera_tensors


def splat_gsplat(
    inp: SplatInputs, near_plane: float, far_plane: float, eps2d: float, tile_size: int
) -> SplatResult:
    from gsplat import rasterization

    device = inp.means.device
    cam = inp.cameras[0]
    viewmats, Ks = camera_tensors(inp.cameras, device)  # [B, 4, 4], [B, 3, 3]
    common = dict(
        width=cam.width, height=cam.height, near_plane=near_plane, far_plane=far_plane, eps2d=eps2d,
        tile_size=tile_size, render_mode="RGB+ED", packed=False, rasterize_mode="classic",
    )  # fmt: skip
    if inp.batched:
        # per-frame Gaussians: batch dim B, one camera each -> outputs [B, 1, H, W, C + 1]
        # per-frame inputs may be expanded views of shared ones: the CUDA kernels want dense memory
        colors, alphas, meta = rasterization(
            inp.means.contiguous(), inp.quats.contiguous(), inp.scales.contiguous(),
            inp.opacities.contiguous(), inp.features.contiguous(),
            viewmats[:, None], Ks[:, None],
            backgrounds=None if inp.background is None else inp.background[:, None],
            **common,
        )  # fmt: skip
        colors, alphas = colors[:, 0], alphas[:, 0]
        radii = meta["radii"][:, 0]
    else:
        # shared Gaussians seen by B cameras -> outputs [B, H, W, C + 1]
        colors, alphas, meta = rasterization(
            inp.means[0].contiguous(), inp.quats[0].contiguous(), inp.scales[0].contiguous(),
            inp.opacities[0].contiguous(), inp.features[0].contiguous(),
            viewmats, Ks, backgrounds=None if inp.background is None else inp.background.contiguous(), **common,
        )  # fmt: skip
        radii = meta["radii"]
    if radii.dim() == 2:  # older gsplat: one isotropic radius per Gaussian
        radii = radii[..., None].expand(radii.shape + (2,))
    image = colors[..., :-1].permute(0, 3, 1, 2)  # [B, C, H, W]
    return SplatResult(
        image=image,
        alpha=alphas[..., 0],
        depth=colors[..., -1],
        backend="cuda",
        radii=radii.to(torch.int32),
        n_intersections=int(meta["flatten_ids"].shape[0]) if "flatten_ids" in meta else -1,
    )
