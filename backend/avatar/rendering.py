"""Render a posed avatar exactly (no preview shortcuts) for evaluation and the tracker calibration:
pose and splat the driving frames in batches on the splatter's device (the preview loop's path:
backend.avatar.pose_torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:  # the avatar/render/head packages load lazily
    from ..head.model import HeadModel
    from ..head.params import HeadParams
    from ..render.camera import Camera
    from .gaussians import GaussianAvatar


def render_frames(
    avatar: "GaussianAvatar",
    model: "HeadModel",
    params: "HeadParams",
    lod: int,
    camera: "Camera | None" = None,
    background=(0.0, 0.0, 0.0),
    backend: str = "auto",
    chunk: int = 4,
    with_alpha: bool = False,
    grow: bool = True,
) -> Iterator:
    """Yield one (H, W, 3) float32 [0, 1] image per frame of ``params`` (T frames); with
    ``with_alpha`` an (image, alpha (H, W) float32 [0, 1]) pair per frame.

    ``chunk`` frames at a time are posed (positions and Gaussian rotations, pose_torch) on the
    splatter's device and splatted in one call; only the finished images come back to the host.
    ``grow``: the head's Gaussians grow where a frame stretches the skin beyond what they were sized
    for (avatar.stretch_growth; False: every Gaussian keeps its rest size, as the paper poses them).
    """
    import torch

    from .pose_torch import TorchPoser
    from .view_colors import for_views
    from ..render.splat import select_backend, splat

    cam = avatar.camera if camera is None else camera
    rest = avatar.rest_set(lod)
    name = select_backend(backend)
    device = torch.device("cuda" if name == "cuda" else "cpu")
    poser = TorchPoser(avatar, model, lod, device, grow=grow)
    as_t = lambda a: torch.as_tensor(np.ascontiguousarray(a), device=device)  # noqa: E731
    scales, opacities, colors = as_t(rest.scales), as_t(rest.opacities), as_t(rest.colors)
    bg = as_t(np.asarray(background, np.float32))
    view = avatar.lod_views.get(lod)
    share = None if view is None else poser.global_share(view.rows)
    with torch.no_grad():
        for t0 in range(0, params.n_frames, chunk):
            sl = slice(t0, t0 + chunk)
            posed = poser.pose(params.expr[sl], params.pose[sl], params.transl[sl],
                               None if params.torso is None else params.torso[sl])  # (B, N, ...)
            b = posed.means.shape[0]
            feats, sizes = for_views(colors, posed.scales(scales), view, posed.means, posed.joints, share,
                                     [cam.center] * b)
            res = splat(posed.means, posed.quats, sizes, opacities, feats, [cam] * b, background=bg, backend=name)
            imgs = res.image.detach().cpu().numpy().transpose(0, 2, 3, 1)  # (B, H, W, 3)
            alphas = res.alpha.detach().cpu().numpy()                    # (B, H, W)
            for img, a in zip(imgs, alphas):
                img = np.clip(img, 0.0, 1.0)
                yield (img, np.clip(a, 0.0, 1.0)) if with_alpha else img
