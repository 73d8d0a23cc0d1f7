"""Render a posed avatar for evaluation: pose all driving frames at once, splat them in chunks."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator

import numpy as np

if TYPE_CHECKING:  # the avatar/render/head packages load lazily
    from ...avatar.gaussians import GaussianAvatar
    from ...head.model import HeadModel
    from ...head.params import HeadParams
    from ...render.camera import Camera


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
) -> Iterator:
    """Yield one (H, W, 3) float32 [0, 1] image per frame of ``params`` (T frames); with
    ``with_alpha`` an (image, alpha (H, W) float32 [0, 1]) pair per frame.

    Positions for all frames come from one vectorized ``pose`` call (T, N, 3); the splatter takes
    ``chunk`` frames per call ((B, N, 3) means, shared attributes) to bound memory.
    """
    import torch

    from ...avatar.posing import pose
    from ...render import splat

    cam = avatar.camera if camera is None else camera
    rest = avatar.rest_set(lod)
    means = pose(avatar, model, params, lod)  # (T, N, 3)
    bg = np.asarray(background, np.float32)
    with torch.no_grad():
        for t0 in range(0, means.shape[0], chunk):
            m = means[t0 : t0 + chunk]
            res = splat(m, rest.quats, rest.scales, rest.opacities, rest.colors, [cam] * len(m),
                        background=bg, backend=backend)
            imgs = res.image.detach().cpu().numpy().transpose(0, 2, 3, 1)  # (B, H, W, 3)
            alphas = res.alpha.detach().cpu().numpy()                    # (B, H, W)
            for img, a in zip(imgs, alphas):
                img = np.clip(img, 0.0, 1.0)
                yield (img, np.clip(a, 0.0, 1.0)) if with_alpha else img
