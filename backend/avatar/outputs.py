"""Files a build writes next to the avatar: one .ply per LOD and watermarked preview PNGs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .expressions import edit_params, preview_expression
from .gaussians import GaussianAvatar
from .ply import write_ply
from .posed import posed_set
from .posing import lbs_numpy

if TYPE_CHECKING:
    from ..head.model import HeadModel

PREVIEW_YAW_DEG = 30.0
PREVIEW_BACKGROUND = (1.0, 1.0, 1.0)
# zlib level of the build's preview PNGs: the preview loop's (backend.preview.output.PNG_COMPRESS_LEVEL,
# not imported here: it loads the preview renderer). Level 1 encodes an avatar preview about 4x faster
# than 6 (7.5 against 30 ms of CPU at 512x512) for a file about 13 % larger (181 against 159 KB);
# the pixels are the same (tests/avatar/test_build_stages.py)
PREVIEW_PNG_COMPRESS_LEVEL = 1


def export_plys(avatar: GaussianAvatar, model: "HeadModel", out_dir: str | Path, stem: str,
                params=None, lods: list[int] | None = None) -> list[Path]:
    """Write ``<stem>_lod<l>.ply`` (head + shoulders at ``params``, default the source frame)."""
    out = []
    for l in lods if lods is not None else avatar.levels:
        gs = posed_set(avatar, model, avatar.params if params is None else params, l)
        out.append(write_ply(Path(out_dir) / f"{stem}_lod{l}.ply", gs))
    return out


def head_pivot(avatar: GaussianAvatar, model: "HeadModel") -> np.ndarray:
    """(3,) centre of the source-posed head mesh: the pivot of the preview orbits."""
    verts, _, _ = lbs_numpy(model, avatar.params)
    return verts[0].mean(0)


def preview_images(avatar: GaussianAvatar, model: "HeadModel", lod: int, backend: str = "auto"
                   ) -> dict[str, np.ndarray]:
    """Renders {source, yaw-30, yaw+30, expression} (H, W, 3) float32 of one LOD, posed (positions
    and rotations, pose_torch) and splatted as one batch of four frames by the preview loop's kernel
    (render.splat simd=True, depth=False: uint8 frames within one level of the exact kernel's)."""
    import torch

    from ..head.params import HeadParams
    from ..render.splat import select_backend, splat
    from .pose_torch import TorchPoser
    from .view_colors import for_views

    pivot = head_pivot(avatar, model)
    cam = avatar.camera
    smile, jaw = preview_expression(model)
    expression = edit_params(model, avatar.params, smile, jaw)
    views = {
        "source": (avatar.params, cam),
        f"yaw-{PREVIEW_YAW_DEG:.0f}": (avatar.params, cam.orbit_yaw(-PREVIEW_YAW_DEG, pivot=pivot)),
        f"yaw+{PREVIEW_YAW_DEG:.0f}": (avatar.params, cam.orbit_yaw(PREVIEW_YAW_DEG, pivot=pivot)),
        "expression": (expression, cam),
    }
    frames = [p.frame(0) for p, _ in views.values()]
    n_expr = max(f.expr.shape[1] for f in frames)
    expr = np.zeros((len(frames), n_expr), np.float32)
    for i, f in enumerate(frames):
        expr[i, : f.expr.shape[1]] = f.expr[0]
    params = HeadParams(avatar.params.shape, expr, np.concatenate([f.pose for f in frames]),
                        np.concatenate([f.transl for f in frames]))
    name = select_backend(backend)
    device = torch.device("cuda" if name == "cuda" else "cpu")
    rest = avatar.rest_set(lod)
    # one torch thread on the CPU, as the preview loop (PreviewOptions.cpu_torch_threads): the
    # posing's small operations cost 0.46 s of CPU with two threads' OpenMP waits against 0.07 s
    # with one (4 frames at LOD 2, load ~15); the numba splatter keeps both cores
    threads = torch.get_num_threads()
    if name == "cpu":
        torch.set_num_threads(1)
    try:
        with torch.no_grad():
            # the preview loop's kernel (8 lanes, no depth), which the build preloads: with the exact
            # kernel here, a fresh install's first build exited before the preload thread had compiled
            # this one, and the second build paid the compile (~15 s)
            cams = [c for _, c in views.values()]
            poser = TorchPoser(avatar, model, lod, device)
            posed = poser.pose_params(params)                                          # 4 frames
            view = avatar.lod_views.get(lod)
            share = None if view is None else poser.global_share(view.rows)
            colors, sizes = for_views(torch.as_tensor(rest.colors), posed.scales(torch.as_tensor(rest.scales)), view,
                                      posed.means, posed.joints, share, [c.center for c in cams])
            res = splat(posed.means, posed.quats, sizes, rest.opacities, colors,
                        cams, background=np.asarray(PREVIEW_BACKGROUND, np.float32),
                        backend=name, transmittance_stop=1.0 / 255.0,  # as preview frames: within one uint8 level
                        depth=False, simd=True)
    finally:
        torch.set_num_threads(threads)
    images = np.clip(res.image.detach().cpu().numpy().transpose(0, 2, 3, 1), 0.0, 1.0)
    return dict(zip(views, images))


def write_previews(avatar: GaussianAvatar, model: "HeadModel", out_dir: str | Path, stem: str, lod: int,
                   backend: str = "auto") -> list[Path]:
    """``<stem>_preview_<view>.png``, each stamped with the AI-generated watermark.

    The four PNGs are stamped and encoded on two threads (zlib releases the GIL) at zlib level
    ``PREVIEW_PNG_COMPRESS_LEVEL``: after the splatter, which uses both cores, one encoding after
    another left a core idle for ~0.13 s of CPU. The pool waits for every file before it returns
    or raises."""
    from concurrent.futures import ThreadPoolExecutor

    from ..render.watermark import save_png

    images = preview_images(avatar, model, lod, backend)
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="omg-png") as pool:
        jobs = [pool.submit(save_png, Path(out_dir) / f"{stem}_preview_{name}.png", img,
                            extra_text={"omg:view": name, "omg:lod": str(lod)},
                            compress_level=PREVIEW_PNG_COMPRESS_LEVEL) for name, img in images.items()]
        return [j.result() for j in jobs]
